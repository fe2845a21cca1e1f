//! The apply stage: a thread that applies synced batches to the state, in
//! LSN order, and only then answers each caller.
//!
//! The writer thread hands each batch over right after its fdatasync and
//! goes back to writing the next one, so the disk is syncing batch N+1 while
//! batch N is applied and answered (one thread doing both had the WAL thread
//! saturated, a third of its CPU in the apply). Barriers travel the same
//! queue, so a barrier's function runs here once every record before it is
//! applied and none after it: the state is exactly at one LSN, as before.
//!
//! A record that cannot be applied (a bug, never a bad request) poisons the
//! log like a storage fault: it and every record after it answer an error,
//! and the writer syncs nothing more. Records the writer synced meanwhile are
//! durable but never acknowledged; a restart replays them and reports the
//! same failure.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::Arc;
use std::time::Instant;

use tokio::sync::oneshot;

use super::record::Record;
use super::writer::{ApplyFn, BarrierFn, WalStats};
use super::Lsn;
use crate::error::StorageError;

/// A synced record waiting to be applied.
pub(super) struct Synced {
    pub lsn: Lsn,
    pub record: Record,
    pub reply: oneshot::Sender<Result<Lsn, StorageError>>,
}

/// What the writer hands over, in log order.
pub(super) enum Stage {
    Batch(Vec<Synced>),
    /// Runs with the LSN of the last record before it (0: none).
    Barrier(BarrierFn, u64),
}

/// The loop of the apply thread; returns when the writer is gone.
pub(super) fn run(rx: Receiver<Stage>, mut apply: ApplyFn, poisoned: Arc<AtomicBool>, stats: Arc<WalStats>) {
    // Set by this thread only: once a record failed here, nothing after it is applied.
    let mut failed = false;
    for stage in rx {
        match stage {
            Stage::Batch(batch) => {
                let started = Instant::now();
                let mut last = None;
                for Synced { lsn, record, reply } in batch {
                    let result = if failed { Err(StorageError::Poisoned) } else { apply(lsn, record).map(|()| lsn) };
                    match &result {
                        Ok(_) => last = Some(lsn),
                        Err(e) if !failed => {
                            // Durable but not applicable: stop the write path so the log and
                            // memory cannot drift further; a restart replays and reports it.
                            tracing::error!(lsn = lsn.get(), error = %e, "a durable record could not be applied; stopping the write path");
                            poisoned.store(true, Ordering::Release);
                            failed = true;
                        }
                        Err(_) => {}
                    }
                    let _ = reply.send(result);
                }
                if let Some(lsn) = last {
                    stats.last_lsn.set(lsn.get() as i64);
                }
                stats.apply_seconds.observe(started.elapsed().as_secs_f64());
            }
            Stage::Barrier(f, lsn) => f(if failed { Err(StorageError::Poisoned) } else { Ok(lsn) }),
        }
    }
}
