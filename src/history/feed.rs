//! The history thread: off the request path, it writes what applied records
//! left in memory for history, one atomic batch at a time, each with the
//! LSN it completes; syncs history now and then; and forgets what is past
//! retention.
//!
//! A 2xx still means one thing: the WAL record is fdatasync'd. History
//! follows the WAL, and a crash at any instant loses nothing and duplicates
//! nothing: memory lets go of a response only once a batch that holds it is
//! committed, the WAL keeps every record history has not synced
//! (`History::synced_lsn` is a floor for deleting segments), and at the next
//! start `catch_up` writes again whatever the crash took (writing a key again
//! writes the same value).

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use super::store::Batch;
use super::{encode_cold, EncodedCold, History};
use crate::config::{
    HISTORY_RETENTION_SWEEP_EVERY, HISTORY_RETRY_AFTER, HISTORY_SWEEP_BATCH_MAX, HISTORY_SYNC_EVERY,
    HISTORY_WRITE_EVERY, IDEMPOTENCY_RETENTION_SECONDS,
};
use crate::state::State;
use crate::timer::Clock;

impl History {
    /// Starts the history thread; it runs until `stop`.
    pub(crate) fn start_feed(
        self: &Arc<Self>,
        state: Arc<State>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<JoinHandle<()>> {
        let history = self.clone();
        std::thread::Builder::new().name("history".into()).spawn(move || history.feed(&state, clock.as_ref()))
    }

    fn feed(&self, state: &State, clock: &dyn Clock) {
        let mut last_sync = Instant::now();
        // Retention follows the ledger's clock (a test moves it by hand).
        let mut last_sweep = clock.now();
        while !self.stopping.load(Ordering::Acquire) {
            std::thread::sleep(HISTORY_WRITE_EVERY);
            let wanted = self.sync_wanted.load(Ordering::Acquire) > self.synced_lsn();
            let sync_due = wanted || last_sync.elapsed() >= HISTORY_SYNC_EVERY;
            // Records that left nothing for history move its LSN only when it
            // syncs: a write every turn would cost the WAL's disk for nothing.
            let mut healthy = self.write_applied(state, sync_due);
            if healthy && sync_due {
                healthy = self.sync_written();
                last_sync = Instant::now();
            }
            let now = clock.now();
            if healthy && now.saturating_sub(last_sweep) >= HISTORY_RETENTION_SWEEP_EVERY.as_secs() as i64 {
                match self.sweep_once(now) {
                    // More is due: sweep again at the next turn, between writes.
                    Some(true) => {}
                    Some(false) => last_sweep = now,
                    None => healthy = false,
                }
            }
            if !healthy {
                // Memory keeps what history could not take, and the WAL keeps
                // every record it has not synced: nothing is lost while it waits.
                std::thread::sleep(HISTORY_RETRY_AFTER);
            }
        }
        // A clean stop leaves history synced as far as it got.
        self.write_applied(state, true);
        self.sync_written();
    }

    /// Writes what records up to the state's applied LSN left for history
    /// (idempotent responses, cold objects, objects forgotten past
    /// retention), then lets memory forget it. Returns whether it went well.
    /// With nothing to write, it writes only when `move_lsn` (before a sync).
    pub fn write_applied(&self, state: &State, move_lsn: bool) -> bool {
        // Every record up to `upto` has stored its response and queued its
        // objects (`State::finish_record` runs after its changes, and moves
        // `applied_lsn` last).
        let upto = state.applied_lsn();
        if upto <= self.written_lsn() {
            return true;
        }
        let remembered = state.idempotency.unwritten(upto);
        let cold = state.cold_through(upto);
        if remembered.is_empty() && cold.is_empty() && !move_lsn {
            return true;
        }
        let started = Instant::now();
        let written = encode_cold(&cold, |o| state.position_of(o)).and_then(|encoded| {
            let EncodedCold { objects, archived, deleted } = encoded;
            let batch = Batch { lsn: upto, remembered, objects, deleted, archived, ..Batch::default() };
            self.store.write(&batch).map(|()| (batch.remembered.len(), batch.objects.len() + batch.archived.len()))
        });
        match written {
            Ok((remembered, objects)) => {
                self.written.store(upto, Ordering::Release);
                state.idempotency.forget_through(upto);
                for (_, object) in &cold.written {
                    state.evict(object);
                }
                state.drop_cold_through(upto);
                self.stats.observe_write(remembered, objects, started.elapsed());
                true
            }
            Err(e) => {
                self.stats.errors.inc();
                tracing::error!(error = %e, lsn = upto, "history write failed; retrying");
                false
            }
        }
    }

    /// Syncs history; the WAL below what it synced may then be deleted.
    pub fn sync_written(&self) -> bool {
        let written = self.written_lsn();
        if written <= self.synced_lsn() {
            return true;
        }
        match self.store.sync() {
            Ok(()) => {
                self.synced.store(written, Ordering::Release);
                self.stats.synced_lsn.set(written as i64);
                self.stats.disk_bytes.set(self.store.disk_bytes() as i64);
                true
            }
            Err(e) => {
                self.stats.errors.inc();
                tracing::error!(error = %e, "history sync failed; retrying");
                false
            }
        }
    }

    /// Forgets up to `HISTORY_SWEEP_BATCH_MAX` idempotent responses past
    /// retention. `Some(more)`: whether more may be due; `None`: it failed.
    fn sweep_once(&self, now: i64) -> Option<bool> {
        let before = now.saturating_sub(IDEMPOTENCY_RETENTION_SECONDS);
        match self.store.forget_before(before, HISTORY_SWEEP_BATCH_MAX) {
            Ok(n) => {
                self.stats.forgotten.inc_by(n as u64);
                Some(n == HISTORY_SWEEP_BATCH_MAX)
            }
            Err(e) => {
                self.stats.errors.inc();
                tracing::error!(error = %e, "history retention sweep failed; retrying");
                None
            }
        }
    }
}
