//! Automatic snapshots: every `SNAPSHOT_CHECK_EVERY` the timer compares the
//! WAL bytes written since the last snapshot (of any kind) with
//! `LEDGER_SNAPSHOT_WAL_BYTES` and takes one when they reach it. A snapshot
//! lets the WAL before it be deleted (`snapshot::compact`), so the WAL on
//! disk and the replay at the next start stay bounded whatever the load
//! (docs/operations.md, "Automatic snapshots").
//!
//! It is the same snapshot as `POST /v1/admin/snapshot` (`take_online`),
//! one at a time (a tick that finds one running waits for the next), but
//! `Scope::Local`: it leaves out the responses history already has, so its
//! cost follows memory, not 48 hours of idempotency keys.

use std::cell::Cell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;

use crate::config::{SNAPSHOT_CHECK_EVERY, SNAPSHOT_RETRY_AFTER};
use crate::ledger::Ledger;
use crate::snapshot;

pub struct SnapshotTimer {
    ledger: Arc<Ledger>,
    /// After a failed snapshot (a full disk, say), none is tried before this.
    retry_at: Rc<Cell<Option<Instant>>>,
}

impl SnapshotTimer {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        SnapshotTimer { ledger, retry_at: Rc::default() }
    }

    /// Whether the WAL written since the last snapshot calls for one.
    fn due(&self) -> bool {
        let threshold = self.ledger.snapshot_wal_bytes;
        let m = &self.ledger.metrics;
        let since = m.wal.bytes.get().saturating_sub(m.snapshot_wal_bytes.get().max(0) as u64);
        threshold > 0 && since >= threshold
    }

    fn tick(&mut self) {
        let waiting = self.retry_at.get().is_some_and(|at| Instant::now() < at);
        if waiting || !self.due() || self.ledger.snapshot_lock.try_lock().is_err() {
            return;
        }
        let (ledger, retry_at) = (self.ledger.clone(), self.retry_at.clone());
        actix::spawn(async move {
            match snapshot::take_online(&ledger, snapshot::Scope::Local).await {
                Ok(taken) => tracing::info!(lsn = taken.info.lsn, "automatic snapshot taken"),
                // One through the API began first: that one counts, nothing failed.
                Err(e) if e.code == "snapshot_in_progress" => {}
                Err(e) => {
                    retry_at.set(Some(Instant::now() + SNAPSHOT_RETRY_AFTER));
                    tracing::warn!(error = %e, retry_in_s = SNAPSHOT_RETRY_AFTER.as_secs(), "automatic snapshot failed");
                }
            }
        });
    }
}

impl Actor for SnapshotTimer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(SNAPSHOT_CHECK_EVERY, |act, _| act.tick());
    }
}
