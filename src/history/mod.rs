//! History: what is only read after it is written lives in an embedded
//! on-disk store (`DATA/history/`, fjall), not in memory, so memory is
//! bounded by live members and in-flight work, never by request count
//! (docs/reliability.md, invariant 11; docs/architecture.md, "History").
//!
//! Today history holds the stored responses of idempotent requests: every
//! keyed `POST` leaves one, kept for `IDEMPOTENCY_RETENTION_SECONDS`, and at
//! load-test rates they were most of what memory grew by.
//!
//! - `store`: the one narrow interface to the engine (`HistoryStore`) and
//!   its fjall implementation; `layout`: its keys and values
//!   (docs/formats.md, "History").
//! - `feed`: the history thread, which writes what applied records left for
//!   it in batches, each with the LSN it completes, off the request path.
//! - `History::catch_up`: at startup, before the server is ready, history
//!   takes whatever a crash kept from it, so it is complete up to the WAL's end.
//!
//! The WAL stays the one commit point: WAL segments are deleted only below
//! both the snapshot's LSN and the LSN history has synced (`synced_lsn`).

mod feed;
pub mod layout;
pub mod store;

use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};

pub use layout::Remembered;
pub use store::{Batch, FjallHistory, HistoryStore, RememberedView};

use crate::config::{HISTORY_CATCH_UP_BATCH_MAX, HISTORY_WRITE_EVERY};
use crate::error::StorageError;
use crate::state::State;
use crate::storage::fs::FileSystem;
use crate::wal::reader::{read_log, Mode, ReadFrom};
use crate::wal::{Lsn, Record};

/// Sub-directory of the data directory that holds history.
pub const HISTORY_DIR: &str = "history";

/// What `/metrics` shows of history (shared with `metrics::Metrics`).
#[derive(Clone)]
pub struct HistoryStats {
    pub batches: Counter,
    pub remembered: Counter,
    pub forgotten: Counter,
    pub errors: Counter,
    pub synced_lsn: Gauge,
    pub disk_bytes: Gauge,
    pub write_seconds: Histogram,
}

impl Default for HistoryStats {
    fn default() -> Self {
        HistoryStats {
            batches: Counter::default(),
            remembered: Counter::default(),
            forgotten: Counter::default(),
            errors: Counter::default(),
            synced_lsn: Gauge::default(),
            disk_bytes: Gauge::default(),
            // 50 us .. ~1.6 s
            write_seconds: Histogram::new(exponential_buckets(0.000_05, 2.0, 16)),
        }
    }
}

impl HistoryStats {
    fn observe_write(&self, remembered: usize, elapsed: Duration) {
        self.batches.inc();
        self.remembered.inc_by(remembered as u64);
        self.write_seconds.observe(elapsed.as_secs_f64());
    }
}

/// History as the server uses it: the store, and how far it has come.
pub struct History {
    store: Arc<dyn HistoryStore>,
    /// Every record up to this LSN is written to history.
    written: AtomicU64,
    /// ... and synced: the WAL below it may be deleted.
    synced: AtomicU64,
    /// A snapshot waits for history to sync up to here (`wait_synced`).
    sync_wanted: AtomicU64,
    stopping: AtomicBool,
    stats: HistoryStats,
}

/// What `catch_up` did.
#[derive(Debug, Clone, Copy)]
pub struct CaughtUp {
    /// History's LSN when it was opened.
    pub from_lsn: u64,
    /// Its LSN now: the WAL's end.
    pub lsn: u64,
    /// Responses written (again, some of them).
    pub remembered: usize,
    /// ... of which read back from the WAL: what history lost in a crash
    /// and no snapshot kept.
    pub from_wal: usize,
    pub elapsed: Duration,
}

impl History {
    /// Opens the history of `data_dir` (creating it on a first start).
    pub fn open(data_dir: &Path, stats: HistoryStats) -> Result<Arc<History>, StorageError> {
        let store = FjallHistory::open(&data_dir.join(HISTORY_DIR))?;
        Ok(History::with_store(Arc::new(store), stats))
    }

    pub fn with_store(store: Arc<dyn HistoryStore>, stats: HistoryStats) -> Arc<History> {
        Arc::new(History {
            store,
            written: AtomicU64::new(0),
            synced: AtomicU64::new(0),
            sync_wanted: AtomicU64::new(0),
            stopping: AtomicBool::new(false),
            stats,
        })
    }

    pub fn store(&self) -> Arc<dyn HistoryStore> {
        self.store.clone()
    }

    pub fn written_lsn(&self) -> u64 {
        self.written.load(Ordering::Acquire)
    }

    /// What the WAL may be deleted below (with the snapshots' floor).
    pub fn synced_lsn(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// Asks the history thread to sync up to `lsn` now (records up to it
    /// must be applied) and waits for it, at most `timeout`. Returns whether it did.
    pub fn wait_synced(&self, lsn: u64, timeout: Duration) -> bool {
        self.sync_wanted.fetch_max(lsn, Ordering::AcqRel);
        let deadline = Instant::now() + timeout;
        while self.synced_lsn() < lsn {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(HISTORY_WRITE_EVERY);
        }
        true
    }

    /// Asks the history thread to write and sync what is left, then stop.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Release);
    }

    /// Brings history up to `end_lsn`, the WAL's end, with `state` rebuilt
    /// up to there from the snapshot at `snapshot_lsn` (0: none) and the WAL
    /// after it; then memory forgets what history has.
    ///
    /// History may have lost its unsynced tail in a crash. Responses of
    /// records after the snapshot are in memory (replay stored them), and so
    /// are those the snapshot kept; what left memory before the snapshot
    /// was taken, history had then, and if it lost it since, the WAL still
    /// has it (segments are kept from history's synced LSN on): read back
    /// from there. Writing a response again writes the same bytes.
    pub fn catch_up(
        &self,
        fs: &dyn FileSystem,
        wal_dir: &Path,
        state: &State,
        snapshot_lsn: u64,
        end_lsn: u64,
    ) -> Result<CaughtUp, StorageError> {
        let started = Instant::now();
        let from_lsn = self.store.lsn()?;
        let lsn = end_lsn.max(from_lsn);
        let mut remembered = 0;
        let mut write = |batch: &mut Vec<Remembered>, final_lsn: bool| -> Result<(), StorageError> {
            // Until the last batch, history's LSN stays where it was: a crash in
            // between starts this again.
            let batch_lsn = if final_lsn { lsn } else { from_lsn };
            remembered += batch.len();
            self.store.write(&Batch { lsn: batch_lsn, remembered: std::mem::take(batch) })
        };
        let mut pending = Vec::new();
        let mut from_wal = 0;
        if from_lsn > 0 && from_lsn < snapshot_lsn {
            read_log(fs, wal_dir, ReadFrom::Lsn(Lsn::new(from_lsn + 1)), Mode::ReadOnly, |at, payload| {
                if at.get() > snapshot_lsn {
                    return Ok(());
                }
                let record = Record::decode(payload)
                    .map_err(|e| StorageError::Inconsistent(format!("undecodable record {at}: {e}")))?;
                if let Some(entry) = record.idem {
                    from_wal += 1;
                    pending.push(Remembered { lsn: at.get(), created: record.time, entry });
                    if pending.len() >= HISTORY_CATCH_UP_BATCH_MAX {
                        write(&mut pending, false)?;
                    }
                }
                Ok(())
            })?;
        }
        for r in state.idempotency.unwritten(u64::MAX) {
            pending.push(r);
            if pending.len() >= HISTORY_CATCH_UP_BATCH_MAX {
                write(&mut pending, false)?;
            }
        }
        write(&mut pending, true)?;
        self.store.sync()?;
        self.written.store(lsn, Ordering::Release);
        self.synced.store(lsn, Ordering::Release);
        self.stats.synced_lsn.set(lsn as i64);
        self.stats.disk_bytes.set(self.store.disk_bytes() as i64);
        state.idempotency.forget_through(u64::MAX);
        state.idempotency.attach_history(self.store.clone());
        Ok(CaughtUp { from_lsn, lsn, remembered, from_wal, elapsed: started.elapsed() })
    }
}
