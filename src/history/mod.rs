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
pub use store::{Archived, ArchivedVisit, Batch, FjallHistory, HistoryStore, ObjectsView, RememberedView};

use crate::config::{HISTORY_CATCH_UP_BATCH_MAX, HISTORY_WRITE_EVERY};
use crate::error::StorageError;
use crate::state::{ArchiveRead, ColdBatch, ColdLoad, ColdObject, ColdTable, Keyed, SnapshotItem, State};
use crate::storage::fs::FileSystem;
use crate::wal::reader::{read_log, Mode, ReadFrom};
use crate::wal::{Change, Lsn, Record};

/// A key and its value, as history writes them.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// What history writes for a `ColdBatch`: objects by id, the archived
/// tables' objects by position, and the keys of forgotten ones.
#[derive(Debug, Default)]
pub(crate) struct EncodedCold {
    pub objects: Vec<KeyValue>,
    pub archived: Vec<Archived>,
    pub deleted: Vec<Vec<u8>>,
}

/// `cold`'s objects as history writes them (`layout::object_key`, the
/// encoded change; an archived table's under its position, which `position`
/// tells), and the keys of its forgotten ones.
///
/// An object both written and deleted in one batch is only deleted, and
/// one written twice is written once, at its newest version: the engine
/// gives a batch's entries one sequence number, so two for a key would leave
/// it to chance which stays.
pub(crate) fn encode_cold(
    cold: &ColdBatch,
    position: impl Fn(&ColdObject) -> Option<u32>,
) -> Result<EncodedCold, StorageError> {
    let deleted: Vec<Vec<u8>> =
        cold.forgotten.iter().map(|(_, table, id)| layout::object_key(*table as u8, id)).collect();
    // foldhash, not SipHash: the keys are ours (it was 0.4 % of the server's samples).
    let mut seen: std::collections::HashSet<Vec<u8>, foldhash::fast::RandomState> = deleted.iter().cloned().collect();
    let mut out = EncodedCold { objects: Vec::with_capacity(cold.written.len()), ..EncodedCold::default() };
    // Newest first, so the first version of a key met is the one kept.
    for (_, object) in cold.written.iter().rev() {
        let table = object.table() as u8;
        let key = layout::object_key(table, object.id());
        if !seen.insert(key.clone()) {
            continue;
        }
        let value = object
            .change()
            .encode_alone()
            .map_err(|e| StorageError::Inconsistent(format!("encoding {} for history: {e}", object.id())))?;
        if layout::is_archived(table) {
            let unplaced = || StorageError::Inconsistent(format!("{} has no place in its table", object.id()));
            let at = match position(object) {
                Some(at) => at,
                // Forgotten past retention since its record was applied (a
                // later batch deletes it): nothing to write.
                None if object.table() == ColdTable::Events => continue,
                None => return Err(unplaced()),
            };
            let value = layout::encode_archived(object.created(), object.id(), &value).ok_or_else(unplaced)?;
            out.archived.push(Archived { position: at, key, value, moved: false });
        } else {
            out.objects.push((key, value));
        }
    }
    out.objects.reverse();
    out.archived.reverse();
    out.deleted = deleted;
    Ok(out)
}

/// Sub-directory of the data directory that holds history.
pub const HISTORY_DIR: &str = "history";

/// What `/metrics` shows of history (shared with `metrics::Metrics`).
#[derive(Clone)]
pub struct HistoryStats {
    pub batches: Counter,
    pub remembered: Counter,
    pub objects: Counter,
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
            objects: Counter::default(),
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
    fn observe_write(&self, remembered: usize, objects: usize, elapsed: Duration) {
        self.batches.inc();
        self.remembered.inc_by(remembered as u64);
        self.objects.inc_by(objects as u64);
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
    /// Cold objects written (history did not have their versions yet).
    pub objects: usize,
    /// Objects memory let go of, history holding them.
    pub evicted: usize,
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

    /// The LSN through which history holds every cold object, as it is on
    /// disk before `catch_up` (`None`: a history made before objects went
    /// there holds none).
    pub fn objects_lsn(&self) -> Result<Option<u64>, StorageError> {
        Ok(if self.store.holds_objects()? { Some(self.store.lsn()?) } else { None })
    }

    /// Lets `state` read what only history holds: remembered responses,
    /// cold objects and the archived tables' objects by position.
    pub fn attach_reads(&self, state: &State) {
        state.idempotency.attach_history(self.store.clone());
        self.attach_objects(state);
        self.attach_archive(state);
    }

    /// Lets `state`'s tables read their cold objects from history: before
    /// the WAL is replayed, since a lot the snapshot let go of as it loaded
    /// (`ColdObject::replaced_unread`) is read back by the record that
    /// changes it next (`recovery::recover`).
    pub fn attach_objects(&self, state: &State) {
        state.attach_cold_loader(cold_loader(self.store.clone()));
    }

    /// Lets `state`'s archived tables read below `first_hot` from history
    /// (payments, which change again, revive in memory: `Table::attach_archive`).
    pub fn attach_archive(&self, state: &State) {
        let _ = self.attach_archive_where(state, |_| Ok(true));
    }

    /// `attach_archive` for the tables whose objects history holds in
    /// `ARCHIVE` already: before the WAL is replayed, so that retention
    /// forgets archived events in the replay exactly as it did live
    /// (`recovery::recover`). A table history has not moved yet is attached
    /// after `catch_up` moves it: memory must not let go of its objects
    /// before then.
    pub fn attach_held_archives(&self, state: &State) -> Result<(), StorageError> {
        self.attach_archive_where(state, |table| self.store.holds_archive_of(table as u8))
    }

    fn attach_archive_where(
        &self,
        state: &State,
        attach: impl Fn(ColdTable) -> Result<bool, StorageError>,
    ) -> Result<(), StorageError> {
        // Each table with how its objects come out of the change that puts
        // them, and whether they change again once archived (`Table::attach_archive`).
        macro_rules! attach {
            ($field:ident, $table:ident, $put:ident, $revives:expr) => {
                if attach(ColdTable::$table)? {
                    let object = |c| match c {
                        Change::$put(o) => Some(o),
                        _ => None,
                    };
                    let archive = StoreArchive::new(self.store.clone(), ColdTable::$table, object);
                    state.$field.attach_archive(Box::new(archive), $revives);
                }
            };
        }
        attach!(payments, Payments, PutPayment, true);
        attach!(transactions, Transactions, PutTransaction, false);
        attach!(lots, Lots, PutLot, true);
        attach!(events, Events, PutEvent, false);
        Ok(())
    }

    /// Moves the archived tables' cold objects of a history from before the
    /// archive (in `OBJECTS`, memory holding their slots) under their
    /// positions, a batch at a time with history's LSN left at `lsn` (a
    /// crash in between starts the move again: a moved object is read from
    /// `ARCHIVE` then). Returns how many it moved.
    fn move_to_archive(&self, state: &State, lsn: u64) -> Result<usize, StorageError> {
        let mut cold: Vec<(ColdTable, u32, crate::domain::Id)> = Vec::new();
        fn cold_of<T>(
            table: ColdTable,
            into: &mut Vec<(ColdTable, u32, crate::domain::Id)>,
        ) -> impl FnMut(u32, crate::state::Stored<'_, T>) + '_ {
            move |seq, stored| {
                if let crate::state::Stored::Cold(id) = stored {
                    into.push((table, seq, id.clone()));
                }
            }
        }
        if !self.store.holds_archive_of(ColdTable::Payments as u8)? {
            state.payments.for_each_placed(cold_of(ColdTable::Payments, &mut cold));
        }
        if !self.store.holds_archive_of(ColdTable::Lots as u8)? {
            state.lots.for_each_placed(cold_of(ColdTable::Lots, &mut cold));
        }
        if !self.store.holds_archive_of(ColdTable::Transactions as u8)? {
            state.transactions.for_each_placed(cold_of(ColdTable::Transactions, &mut cold));
            state.events.for_each_placed(cold_of(ColdTable::Events, &mut cold));
        }
        let moved = cold.len();
        for chunk in cold.chunks(HISTORY_CATCH_UP_BATCH_MAX) {
            let mut archived = Vec::with_capacity(chunk.len());
            for (table, position, id) in chunk {
                let key = layout::object_key(*table as u8, id);
                let missing = || StorageError::Inconsistent(format!("{id} is missing from history"));
                let bytes = self.store.object(&key)?.ok_or_else(missing)?;
                let change = Change::decode_alone(&bytes)
                    .map_err(|e| StorageError::Inconsistent(format!("{id} in history does not decode: {e}")))?;
                let created = match &change {
                    Change::PutPayment(p) => p.created,
                    Change::PutLot(l) => l.created,
                    Change::PutTransaction(t) => t.created,
                    Change::PutEvent(e) => e.created,
                    _ => return Err(StorageError::Inconsistent(format!("history holds something else under {id}"))),
                };
                let value = layout::encode_archived(created, id, &bytes).ok_or_else(missing)?;
                archived.push(Archived { position: *position, key, value, moved: true });
            }
            self.store.write(&Batch { lsn, archived, ..Batch::default() })?;
        }
        Ok(moved)
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
    ///
    /// Cold objects the same way: what the snapshot and the replay put is in
    /// memory; history gets the versions it does not have, then memory lets
    /// go of them all (`state::cold`).
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
        // Until the last batch, history's LSN stays where it was: a crash in
        // between starts this again.
        let mut write = |batch: &mut Vec<Remembered>| -> Result<(), StorageError> {
            remembered += batch.len();
            self.store.write(&Batch { lsn: from_lsn, remembered: std::mem::take(batch), ..Batch::default() })
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
                        write(&mut pending)?;
                    }
                }
                Ok(())
            })?;
        }
        // History holds every record up to its LSN wholly: what memory holds
        // of those (a snapshot's items have LSN 0 and are the snapshot's) is
        // in history already, and writing it again would only cost the start.
        let history_has = |at: u64| (if at == 0 { snapshot_lsn } else { at }) <= from_lsn;
        for r in state.idempotency.unwritten(u64::MAX) {
            if history_has(r.lsn) {
                continue;
            }
            pending.push(r);
            if pending.len() >= HISTORY_CATCH_UP_BATCH_MAX {
                write(&mut pending)?;
            }
        }
        write(&mut pending)?;
        // Cold objects: what the snapshot and the replay queued. History has
        // those of records up to its LSN already (a snapshot's are the
        // snapshot's versions), if it holds objects at all: a history made
        // before objects went there gets every one once.
        let holds_objects = self.store.holds_objects()?;
        let has = |at: u64| holds_objects && history_has(at);
        let cold = state.take_cold();
        let missing = ColdBatch {
            written: cold.written.iter().filter(|(at, _)| !has(*at)).cloned().collect(),
            forgotten: cold.forgotten.iter().filter(|(at, _, _)| !has(*at)).cloned().collect(),
        };
        let EncodedCold { objects, archived, deleted } = encode_cold(&missing, |o| state.position_of(o))?;
        // A history from before the archive: the archived tables' cold
        // objects move from `OBJECTS` to `ARCHIVE`, once.
        let moved = if self.store.holds_archive()? { 0 } else { self.move_to_archive(state, from_lsn)? };
        let written_objects = objects.len() + archived.len() + moved;
        let mut objects = objects.into_iter().peekable();
        while objects.peek().is_some() {
            let chunk: Vec<_> = objects.by_ref().take(HISTORY_CATCH_UP_BATCH_MAX).collect();
            self.store.write(&Batch { lsn: from_lsn, objects: chunk, ..Batch::default() })?;
        }
        let mut archived = archived.into_iter().peekable();
        while archived.peek().is_some() {
            let chunk: Vec<_> = archived.by_ref().take(HISTORY_CATCH_UP_BATCH_MAX).collect();
            self.store.write(&Batch { lsn: from_lsn, archived: chunk, ..Batch::default() })?;
        }
        // The last batch moves history's LSN: a crash before it starts all this again.
        let archives_held = layout::ARCHIVED_TABLES.to_vec();
        self.store.write(&Batch { lsn, deleted, holds_objects: true, archives_held, ..Batch::default() })?;
        self.store.sync()?;
        self.written.store(lsn, Ordering::Release);
        self.synced.store(lsn, Ordering::Release);
        self.stats.synced_lsn.set(lsn as i64);
        self.stats.disk_bytes.set(self.store.disk_bytes() as i64);
        state.idempotency.forget_through(u64::MAX);
        self.attach_reads(state);
        let mut evicted = 0;
        for (_, object) in &cold.written {
            evicted += usize::from(state.evict(object));
        }
        state.archive_cold();
        Ok(CaughtUp {
            from_lsn,
            lsn,
            remembered,
            from_wal,
            objects: written_objects,
            evicted,
            elapsed: started.elapsed(),
        })
    }
}

/// An archived table's reads from `store` (`Table::attach_archive`).
struct StoreArchive<T> {
    store: Arc<dyn HistoryStore>,
    table: ColdTable,
    /// The table's object in the change that puts it.
    object: fn(Change) -> Option<Arc<T>>,
}

impl<T> StoreArchive<T> {
    fn new(store: Arc<dyn HistoryStore>, table: ColdTable, object: fn(Change) -> Option<Arc<T>>) -> Self {
        StoreArchive { store, table, object }
    }

    fn decode(&self, position: u32, bytes: &[u8]) -> Result<(i64, Arc<T>), StorageError> {
        let bad = |why: String| {
            StorageError::Inconsistent(format!("the archived object {position} of {:?} {why}", self.table))
        };
        let (created, _, change) = layout::decode_archived(bytes).ok_or_else(|| bad("does not decode".into()))?;
        let change = Change::decode_alone(change).map_err(|e| bad(format!("does not decode: {e}")))?;
        let object = (self.object)(change).ok_or_else(|| bad("is something else".into()))?;
        Ok((created, object))
    }
}

impl<T: Keyed + Send + Sync> ArchiveRead<T> for StoreArchive<T> {
    fn range(&self, from: u32, to: u32) -> Result<Vec<(u32, i64, Arc<T>)>, StorageError> {
        let mut out = Vec::with_capacity(to.saturating_sub(from) as usize);
        self.store.archived_range(self.table as u8, from, to, &mut |position, bytes| {
            let (created, object) = self.decode(position, bytes)?;
            out.push((position, created, object));
            Ok(())
        })?;
        Ok(out)
    }

    fn at(&self, position: u32) -> Result<Option<Arc<T>>, StorageError> {
        let Some(bytes) = self.store.archived_at(self.table as u8, position)? else { return Ok(None) };
        Ok(Some(self.decode(position, &bytes)?.1))
    }

    fn position(&self, id: &str) -> Result<Option<u32>, StorageError> {
        self.store.archived_position(&layout::object_key(self.table as u8, id))
    }
}

/// How a table reads its cold objects from `store` (`State::attach_cold_loader`).
fn cold_loader(store: Arc<dyn HistoryStore>) -> ColdLoad {
    Arc::new(move |table, id| {
        let Some(bytes) = store.object(&layout::object_key(table as u8, id))? else { return Ok(None) };
        Change::decode_alone(&bytes)
            .map(Some)
            .map_err(|e| StorageError::Inconsistent(format!("{id} in history does not decode: {e}")))
    })
}

/// Reads the snapshot items that were cold at a capture (`SnapshotItem::Cold`)
/// or archived then (`SnapshotItem::ArchivedRun`, every object of the run,
/// in order) from the view of history taken then, into `put`; any other item
/// goes as it is.
pub fn resolve_cold(
    view: &dyn ObjectsView,
    item: SnapshotItem,
    put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>,
) -> Result<(), StorageError> {
    let decode = |id: &str, bytes: &[u8]| {
        Change::decode_alone(bytes)
            .map(SnapshotItem::Change)
            .map_err(|e| StorageError::Inconsistent(format!("{id} in history does not decode: {e}")))
    };
    match item {
        SnapshotItem::Cold { table, id } => {
            let bytes = view.object(&layout::object_key(table as u8, &id))?.ok_or_else(|| {
                StorageError::Inconsistent(format!("{id} was cold at the snapshot and is not in history"))
            })?;
            put(decode(&id, &bytes)?)
        }
        SnapshotItem::ArchivedRun { table, from, to, revived } => {
            let mut next = from;
            let mut revived = revived.into_vec().into_iter().peekable();
            view.archived_range(table as u8, from, to, &mut |position, bytes| {
                let (_, id, change) = layout::decode_archived(bytes).ok_or_else(|| {
                    StorageError::Inconsistent(format!("the archived object {position} of {table:?} does not decode"))
                })?;
                if position != next {
                    return Err(StorageError::Inconsistent(format!(
                        "position {next} of {table:?} was archived at the snapshot and is not in history"
                    )));
                }
                next += 1;
                // Revived: memory's newer version, in this place.
                if let Some((_, item)) = revived.next_if(|(at, _)| *at == position) {
                    return put(item);
                }
                put(decode(id, change)?)
            })?;
            if next != to {
                return Err(StorageError::Inconsistent(format!(
                    "position {next} of {table:?} was archived at the snapshot and is not in history"
                )));
            }
            Ok(())
        }
        other => put(other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::redemptions::RedemptionStatus;
    use crate::state::test_changes::{earn, redemption};
    use crate::state::{ColdObject, ColdTable};

    fn object(change: Change) -> ColdObject {
        ColdObject::of(&change).unwrap()
    }

    /// One batch never holds two entries for a key: a key written twice is
    /// written once, at its newest version, and one also deleted is only deleted.
    #[test]
    fn a_batch_writes_each_key_once_at_its_newest_version_and_deletes_win() {
        let first = object(redemption("rdm_1", "loy_a", 2, RedemptionStatus::Canceled));
        let newest = object(redemption("rdm_1", "loy_a", 3, RedemptionStatus::Canceled));
        let gone = object(earn("ptx_1", "loy_a", 1, 1, 1));
        let cold = ColdBatch {
            written: vec![(1, first), (2, newest.clone()), (2, gone)],
            forgotten: vec![(3, ColdTable::Transactions, "ptx_1".into())],
        };
        let EncodedCold { objects, archived, deleted } = encode_cold(&cold, |_| Some(7)).unwrap();
        assert!(archived.is_empty(), "the transaction is deleted, not written");
        assert_eq!(objects.len(), 1);
        assert_eq!(objects[0].0, layout::object_key(ColdTable::Redemptions as u8, "rdm_1"));
        assert_eq!(Change::decode_alone(&objects[0].1).unwrap(), newest.change());
        assert_eq!(deleted, vec![layout::object_key(ColdTable::Transactions as u8, "ptx_1")]);
    }
}
