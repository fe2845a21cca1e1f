//! The narrow interface in front of the history's storage engine, and its
//! one implementation on fjall (an LSM tree: docs/decisions.md, "History on
//! disk").
//!
//! Everything the server asks of the engine is here: write one batch
//! atomically with its LSN, make the writes durable, look one remembered
//! response up, forget the expired ones. A server-grade engine (PostgreSQL)
//! can stand behind the same trait: each method is one statement or one
//! transaction there. The keys and values are laid out in `layout.rs`
//! (docs/formats.md, "History").

use std::path::{Path, PathBuf};

use fjall::{Config, Keyspace, PartitionCreateOptions, PartitionHandle, PersistMode};

use super::layout::{self, Remembered};
use crate::config::{
    HISTORY_ARCHIVE_MEMTABLE_BYTES, HISTORY_CACHE_BYTES, HISTORY_COMPACTION_WORKERS, HISTORY_FLUSH_WORKERS,
    HISTORY_JOURNAL_BYTES, HISTORY_WRITE_BUFFER_BYTES,
};
use crate::error::StorageError;

/// What one write brings to history: every record up to `lsn` is then in it.
#[derive(Debug, Default)]
pub struct Batch {
    /// The last record this batch completes (history's LSN after it).
    pub lsn: u64,
    /// Responses of idempotent requests to remember.
    pub remembered: Vec<Remembered>,
    /// Objects to write, as `(layout::object_key, encoded change)`, then
    /// keys of objects to delete (forgotten past retention), in that order.
    pub objects: Vec<(Vec<u8>, Vec<u8>)>,
    pub deleted: Vec<Vec<u8>>,
    /// Objects of the archived tables to write (`layout::ARCHIVE`); a
    /// deleted key (above) goes from there too.
    pub archived: Vec<Archived>,
    /// Marks history as holding every cold object up to `lsn` (`OBJECTS_KEY`).
    pub holds_objects: bool,
    /// Marks these archived tables' objects as moved to `ARCHIVE`
    /// (`ARCHIVE_KEY` for the first ones, `archive_moved_key` for the others).
    pub archives_held: Vec<u8>,
}

/// An object of an archived table as history writes it (`layout::ARCHIVE`).
#[derive(Debug, Clone, PartialEq)]
pub struct Archived {
    pub position: u32,
    /// `layout::object_key`: its table and id.
    pub key: Vec<u8>,
    /// `layout::encode_archived`.
    pub value: Vec<u8>,
    /// Moved from `OBJECTS` (a history from before the archive, `History::catch_up`): deleted there.
    pub moved: bool,
}

/// Calls `f` with each archived object of a table in a range of positions,
/// in order, as `(position, layout::encode_archived bytes)`.
pub type ArchivedVisit<'a> = &'a mut dyn FnMut(u32, &[u8]) -> Result<(), StorageError>;

/// The operations the server needs from a history engine.
pub trait HistoryStore: Send + Sync {
    /// The last LSN whose record is wholly in history (0: none yet).
    fn lsn(&self) -> Result<u64, StorageError>;
    /// Writes `batch` atomically: after a crash, all of it or none of it is
    /// there, and the LSN says which.
    fn write(&self, batch: &Batch) -> Result<(), StorageError>;
    /// Makes every write so far durable (an fdatasync).
    fn sync(&self) -> Result<(), StorageError>;
    /// The response remembered for an idempotency key, if any.
    fn remembered(&self, key: &str) -> Result<Option<Remembered>, StorageError>;
    /// Forgets up to `max` responses created before `before`; returns how many it forgot.
    fn forget_before(&self, before: i64, max: usize) -> Result<usize, StorageError>;
    /// Bytes the store takes on disk.
    fn disk_bytes(&self) -> u64;
    /// Whether history holds every cold object up to its LSN (`Batch::holds_objects`).
    fn holds_objects(&self) -> Result<bool, StorageError>;
    /// An object's current version (`layout::object_key`), encoded (from
    /// `OBJECTS`, or from `ARCHIVE` for an archived table's).
    fn object(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// Whether `table`'s objects are in `ARCHIVE` (`Batch::archives_held`).
    fn holds_archive_of(&self, table: u8) -> Result<bool, StorageError>;
    /// Whether every archived table's objects are in `ARCHIVE`.
    fn holds_archive(&self) -> Result<bool, StorageError> {
        for table in layout::ARCHIVED_TABLES {
            if !self.holds_archive_of(table)? {
                return Ok(false);
            }
        }
        Ok(true)
    }
    /// The position of an archived object (`layout::object_key`).
    fn archived_position(&self, key: &[u8]) -> Result<Option<u32>, StorageError>;
    /// The archived object of `table` at `position` (`layout::encode_archived`).
    fn archived_at(&self, table: u8, position: u32) -> Result<Option<Vec<u8>>, StorageError>;
    /// Visits `table`'s archived objects at positions `from..to`, in order.
    fn archived_range(&self, table: u8, from: u32, to: u32, f: ArchivedVisit) -> Result<(), StorageError>;
    /// The objects as they are now, however long they are read from it (a
    /// snapshot reads the objects that were cold when it was captured).
    fn objects_view(&self) -> Box<dyn ObjectsView>;
    /// How many objects history holds (counts every entry: for tests).
    fn objects_count(&self) -> Result<usize, StorageError>;
    /// How many responses are remembered (counts every entry: for operators and tests).
    fn remembered_count(&self) -> Result<usize, StorageError>;
    /// The remembered responses as they are now, however long the walk takes
    /// and however often it is walked (the engine's read snapshot).
    fn remembered_view(&self) -> Box<dyn RememberedView>;
}

/// A fixed view of the objects (`HistoryStore::objects_view`).
pub trait ObjectsView: Send {
    fn object(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError>;
    /// `HistoryStore::archived_range` in this view.
    fn archived_range(&self, table: u8, from: u32, to: u32, f: ArchivedVisit) -> Result<(), StorageError>;
}

/// A fixed view of the remembered responses (`HistoryStore::remembered_view`).
pub trait RememberedView: Send {
    /// Calls `f` with each response, in key order.
    fn for_each(&self, f: &mut dyn FnMut(Remembered) -> Result<(), StorageError>) -> Result<(), StorageError>;
}

/// History in a fjall keyspace (`DATA/history/`), one partition per kind of key.
pub struct FjallHistory {
    dir: PathBuf,
    keyspace: Keyspace,
    /// `layout::LSN_KEY` -> history's LSN.
    meta: PartitionHandle,
    /// Idempotency key -> remembered response.
    idempotency: PartitionHandle,
    /// (created, LSN) -> idempotency key: what retention walks, oldest first.
    idempotency_by_age: PartitionHandle,
    /// Cold objects (`layout::OBJECTS`).
    objects: PartitionHandle,
    /// The archived tables' objects by position, and their positions by id
    /// (`layout::ARCHIVE`, `layout::ARCHIVE_IDS`).
    archive: PartitionHandle,
    archive_ids: PartitionHandle,
}

impl FjallHistory {
    /// Opens (or creates) the history in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StorageError> {
        let failed = |e: fjall::Error| engine_error(dir, e);
        let keyspace = Config::new(dir)
            .cache_size(HISTORY_CACHE_BYTES)
            .flush_workers(HISTORY_FLUSH_WORKERS)
            .compaction_workers(HISTORY_COMPACTION_WORKERS)
            .max_journaling_size(HISTORY_JOURNAL_BYTES)
            .max_write_buffer_size(HISTORY_WRITE_BUFFER_BYTES)
            // Durability is ours to ask for (`sync`), after the LSN is written with the data.
            .fsync_ms(None)
            .manual_journal_persist(true)
            .open()
            .map_err(failed)?;
        let partition = |name: &str| keyspace.open_partition(name, partition_options(name)).map_err(failed);
        Ok(FjallHistory {
            archive: partition(layout::ARCHIVE)?,
            archive_ids: partition(layout::ARCHIVE_IDS)?,
            meta: partition(layout::META)?,
            idempotency: partition(layout::IDEMPOTENCY)?,
            idempotency_by_age: partition(layout::IDEMPOTENCY_BY_AGE)?,
            objects: partition(layout::OBJECTS)?,
            keyspace,
            dir: dir.to_path_buf(),
        })
    }

    fn error(&self, e: fjall::Error) -> StorageError {
        engine_error(&self.dir, e)
    }
}

/// How a partition is made, when the directory is new (fjall keeps these in
/// the partition's own config, so a directory made by an earlier build keeps
/// what it was made with; docs/formats.md, "History").
///
/// History is written far more than it is read, mostly as appends: every
/// partition but the one-key `meta` compacts size-tiered, which rewrites each
/// entry far fewer times than leveled, and the archive, which takes most of
/// the bytes, fills larger memtables, so fewer and larger files reach
/// compaction (docs/performance.md, "Compaction of history's partitions").
fn partition_options(name: &str) -> PartitionCreateOptions {
    let options = PartitionCreateOptions::default();
    let options = if name == layout::META {
        options
    } else {
        options.compaction_strategy(fjall::compaction::Strategy::SizeTiered(Default::default()))
    };
    if name == layout::ARCHIVE {
        options.max_memtable_size(HISTORY_ARCHIVE_MEMTABLE_BYTES)
    } else {
        options
    }
}

fn engine_error(dir: &Path, e: fjall::Error) -> StorageError {
    match e {
        fjall::Error::Io(source) => StorageError::io(dir, source),
        other => StorageError::Corrupt { path: dir.display().to_string(), offset: 0, reason: other.to_string() },
    }
}

impl HistoryStore for FjallHistory {
    fn lsn(&self) -> Result<u64, StorageError> {
        let value = self.meta.get(layout::LSN_KEY).map_err(|e| self.error(e))?;
        match value {
            None => Ok(0),
            Some(bytes) => layout::decode_lsn(&bytes).ok_or_else(|| StorageError::Corrupt {
                path: self.dir.display().to_string(),
                offset: 0,
                reason: "history's LSN is not 8 bytes".into(),
            }),
        }
    }

    fn write(&self, batch: &Batch) -> Result<(), StorageError> {
        let mut out = self.keyspace.batch();
        for r in &batch.remembered {
            out.insert(&self.idempotency, r.entry.key.as_bytes(), layout::encode_remembered(r));
            out.insert(&self.idempotency_by_age, layout::age_key(r.created, r.lsn), r.entry.key.as_bytes());
        }
        for (key, value) in &batch.objects {
            out.insert(&self.objects, key.as_slice(), value.as_slice());
        }
        for a in &batch.archived {
            let table = a.key.first().copied().unwrap_or(0);
            out.insert(&self.archive, layout::archive_key(table, a.position), a.value.as_slice());
            out.insert(&self.archive_ids, a.key.as_slice(), a.position.to_be_bytes());
            if a.moved {
                out.remove(&self.objects, a.key.as_slice());
            }
        }
        for key in &batch.deleted {
            out.remove(&self.objects, key.as_slice());
            let table = key.first().copied().unwrap_or(0);
            if layout::is_archived(table) {
                if let Some(position) = self.archived_position(key)? {
                    out.remove(&self.archive, layout::archive_key(table, position));
                    out.remove(&self.archive_ids, key.as_slice());
                }
            }
        }
        if batch.holds_objects {
            out.insert(&self.meta, layout::OBJECTS_KEY, [1u8]);
        }
        for table in &batch.archives_held {
            if layout::FIRST_ARCHIVED_TABLES.contains(table) {
                out.insert(&self.meta, layout::ARCHIVE_KEY, [1u8]);
            } else {
                out.insert(&self.meta, layout::archive_moved_key(*table), [1u8]);
            }
        }
        out.insert(&self.meta, layout::LSN_KEY, batch.lsn.to_be_bytes());
        out.commit().map_err(|e| self.error(e))
    }

    fn sync(&self) -> Result<(), StorageError> {
        self.keyspace.persist(PersistMode::SyncData).map_err(|e| self.error(e))
    }

    fn remembered(&self, key: &str) -> Result<Option<Remembered>, StorageError> {
        let Some(bytes) = self.idempotency.get(key.as_bytes()).map_err(|e| self.error(e))? else { return Ok(None) };
        layout::decode_remembered(key, &bytes).map(Some).ok_or_else(|| StorageError::Corrupt {
            path: self.dir.display().to_string(),
            offset: 0,
            reason: format!("the remembered response of idempotency key {key:?} does not decode"),
        })
    }

    fn forget_before(&self, before: i64, max: usize) -> Result<usize, StorageError> {
        let end = layout::age_key(before, 0);
        let mut out = self.keyspace.batch();
        let mut forgotten = 0;
        for item in self.idempotency_by_age.range(..end.as_slice()).take(max) {
            let (age_key, key) = item.map_err(|e| self.error(e))?;
            out.remove(&self.idempotency_by_age, age_key.clone());
            // The key may have been used again since (after it expired): only
            // the use this age entry stands for is forgotten.
            let lsn = layout::age_key_lsn(&age_key);
            let current = self.idempotency.get(&key).map_err(|e| self.error(e))?;
            if current.as_deref().and_then(layout::remembered_lsn) == lsn {
                out.remove(&self.idempotency, key);
            }
            forgotten += 1;
        }
        if forgotten > 0 {
            out.commit().map_err(|e| self.error(e))?;
        }
        Ok(forgotten)
    }

    fn disk_bytes(&self) -> u64 {
        self.keyspace.disk_space()
    }

    fn holds_objects(&self) -> Result<bool, StorageError> {
        Ok(self.meta.get(layout::OBJECTS_KEY).map_err(|e| self.error(e))?.is_some())
    }

    fn object(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let archived = |key: &[u8]| {
            let Some(position) = self.archived_position(key)? else { return Ok(None) };
            self.archived_at(key[0], position)
        };
        object_in(key, |k| Ok(self.objects.get(k).map_err(|e| self.error(e))?.map(|v| v.to_vec())), archived, &self.dir)
    }

    fn holds_archive_of(&self, table: u8) -> Result<bool, StorageError> {
        let moved_key = layout::archive_moved_key(table);
        let key: &[u8] = if layout::FIRST_ARCHIVED_TABLES.contains(&table) { layout::ARCHIVE_KEY } else { &moved_key };
        Ok(self.meta.get(key).map_err(|e| self.error(e))?.is_some())
    }

    fn archived_position(&self, key: &[u8]) -> Result<Option<u32>, StorageError> {
        let value = self.archive_ids.get(key).map_err(|e| self.error(e))?;
        value.map(|v| decode_position(&v, &self.dir)).transpose()
    }

    fn archived_at(&self, table: u8, position: u32) -> Result<Option<Vec<u8>>, StorageError> {
        Ok(self.archive.get(layout::archive_key(table, position)).map_err(|e| self.error(e))?.map(|v| v.to_vec()))
    }

    fn archived_range(&self, table: u8, from: u32, to: u32, f: ArchivedVisit) -> Result<(), StorageError> {
        let range = layout::archive_key(table, from)..layout::archive_key(table, to);
        visit_range(self.archive.range(range).map(|item| item.map_err(|e| self.error(e))), f, &self.dir)
    }

    fn objects_view(&self) -> Box<dyn ObjectsView> {
        // One instant for the three partitions: the view is one moment of history.
        let at = self.keyspace.instant();
        Box::new(FjallObjects {
            objects: self.objects.snapshot_at(at),
            archive: self.archive.snapshot_at(at),
            archive_ids: self.archive_ids.snapshot_at(at),
            dir: self.dir.clone(),
        })
    }

    fn objects_count(&self) -> Result<usize, StorageError> {
        Ok(self.objects.len().map_err(|e| self.error(e))? + self.archive.len().map_err(|e| self.error(e))?)
    }

    fn remembered_count(&self) -> Result<usize, StorageError> {
        self.idempotency.len().map_err(|e| self.error(e))
    }

    fn remembered_view(&self) -> Box<dyn RememberedView> {
        Box::new(FjallView { snapshot: self.idempotency.snapshot(), dir: self.dir.clone() })
    }
}

/// An object's encoded change, from `objects` or, for an archived table's,
/// from `archived` (`layout::encode_archived` there).
fn object_in(
    key: &[u8],
    objects: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StorageError>,
    archived: impl Fn(&[u8]) -> Result<Option<Vec<u8>>, StorageError>,
    dir: &Path,
) -> Result<Option<Vec<u8>>, StorageError> {
    if key.first().is_some_and(|t| layout::is_archived(*t)) {
        if let Some(value) = archived(key)? {
            let Some((_, _, change)) = layout::decode_archived(&value) else {
                return Err(corrupt_archive(dir, key));
            };
            return Ok(Some(change.to_vec()));
        }
    }
    // A history from before the archive holds them here until its next start moves them.
    objects(key)
}

fn corrupt_archive(dir: &Path, key: &[u8]) -> StorageError {
    StorageError::Corrupt {
        path: dir.display().to_string(),
        offset: 0,
        reason: format!("the archived object {:?} does not decode", String::from_utf8_lossy(key)),
    }
}

fn decode_position(bytes: &[u8], dir: &Path) -> Result<u32, StorageError> {
    Ok(u32::from_be_bytes(bytes.try_into().map_err(|_| StorageError::Corrupt {
        path: dir.display().to_string(),
        offset: 0,
        reason: "an archived object's position is not 4 bytes".into(),
    })?))
}

fn visit_range(
    items: impl Iterator<Item = Result<(fjall::Slice, fjall::Slice), StorageError>>,
    f: ArchivedVisit,
    dir: &Path,
) -> Result<(), StorageError> {
    for item in items {
        let (key, value) = item?;
        let position = layout::archive_key_position(&key).ok_or_else(|| corrupt_archive(dir, &key))?;
        f(position, &value)?;
    }
    Ok(())
}

struct FjallObjects {
    objects: fjall::Snapshot,
    archive: fjall::Snapshot,
    archive_ids: fjall::Snapshot,
    dir: PathBuf,
}

impl FjallObjects {
    fn error(&self, e: impl Into<fjall::Error>) -> StorageError {
        engine_error(&self.dir, e.into())
    }
}

impl ObjectsView for FjallObjects {
    fn object(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StorageError> {
        let archived = |key: &[u8]| {
            let Some(bytes) = self.archive_ids.get(key).map_err(|e| self.error(e))? else { return Ok(None) };
            let position = decode_position(&bytes, &self.dir)?;
            Ok(self.archive.get(layout::archive_key(key[0], position)).map_err(|e| self.error(e))?.map(|v| v.to_vec()))
        };
        object_in(key, |k| Ok(self.objects.get(k).map_err(|e| self.error(e))?.map(|v| v.to_vec())), archived, &self.dir)
    }

    fn archived_range(&self, table: u8, from: u32, to: u32, f: ArchivedVisit) -> Result<(), StorageError> {
        let range = layout::archive_key(table, from)..layout::archive_key(table, to);
        visit_range(self.archive.range(range).map(|item| item.map_err(|e| self.error(e))), f, &self.dir)
    }
}

struct FjallView {
    snapshot: fjall::Snapshot,
    dir: PathBuf,
}

impl RememberedView for FjallView {
    fn for_each(&self, f: &mut dyn FnMut(Remembered) -> Result<(), StorageError>) -> Result<(), StorageError> {
        for item in self.snapshot.iter() {
            let (key, value) = item.map_err(|e| engine_error(&self.dir, e.into()))?;
            let remembered = std::str::from_utf8(&key).ok().and_then(|key| layout::decode_remembered(key, &value));
            let Some(remembered) = remembered else {
                return Err(StorageError::Corrupt {
                    path: self.dir.display().to_string(),
                    offset: 0,
                    reason: format!(
                        "a remembered response under key {:?} does not decode",
                        String::from_utf8_lossy(&key)
                    ),
                });
            };
            f(remembered)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::wal::IdemEntry;

    fn remembered(key: &str, lsn: u64, created: i64) -> Remembered {
        Remembered {
            lsn,
            created,
            entry: IdemEntry {
                key: key.into(),
                fingerprint: [lsn as u8; 32],
                status: 200,
                body: Arc::from(&b"{}"[..]),
            },
        }
    }

    #[test]
    fn batches_land_with_their_lsn_and_survive_a_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let h = FjallHistory::open(dir.path()).unwrap();
            assert_eq!(h.lsn().unwrap(), 0);
            h.write(&Batch {
                lsn: 3,
                remembered: vec![remembered("a", 2, 100), remembered("b", 3, 101)],
                ..Batch::default()
            })
            .unwrap();
            h.write(&Batch { lsn: 5, remembered: vec![], ..Batch::default() }).unwrap();
            h.sync().unwrap();
        }
        let h = FjallHistory::open(dir.path()).unwrap();
        assert_eq!(h.lsn().unwrap(), 5);
        assert_eq!(h.remembered("a").unwrap(), Some(remembered("a", 2, 100)));
        assert_eq!(h.remembered("nope").unwrap(), None);
        let mut seen = Vec::new();
        let view = h.remembered_view();
        h.write(&Batch { lsn: 6, remembered: vec![remembered("c", 6, 102)], ..Batch::default() }).unwrap();
        view.for_each(&mut |r| {
            seen.push(r.entry.key);
            Ok(())
        })
        .unwrap();
        assert_eq!(seen, vec!["a", "b"], "a view does not move");
        assert_eq!(h.remembered_count().unwrap(), 3);
    }

    fn size_tiered(partition: &PartitionHandle) -> bool {
        matches!(partition.config.compaction_strategy, fjall::compaction::Strategy::SizeTiered(_))
    }

    #[test]
    fn a_new_history_compacts_size_tiered_and_an_older_one_keeps_what_it_was_made_with() {
        let new = tempfile::tempdir().unwrap();
        let h = FjallHistory::open(new.path()).unwrap();
        for partition in [&h.archive, &h.archive_ids, &h.idempotency, &h.idempotency_by_age, &h.objects] {
            assert!(size_tiered(partition), "{} is size-tiered", partition.name);
        }
        assert!(!size_tiered(&h.meta), "meta stays leveled");

        // An archive made by a build from before: leveled, fjall's default.
        let old = tempfile::tempdir().unwrap();
        {
            let keyspace = Config::new(old.path()).open().unwrap();
            let archive = keyspace.open_partition(layout::ARCHIVE, PartitionCreateOptions::default()).unwrap();
            archive.insert(b"k", b"v").unwrap();
            keyspace.persist(PersistMode::SyncAll).unwrap();
        }
        let h = FjallHistory::open(old.path()).unwrap();
        assert!(!size_tiered(&h.archive), "an existing partition keeps its compaction");
        assert_eq!(h.archive.get(b"k").unwrap().as_deref(), Some(&b"v"[..]));
        assert!(size_tiered(&h.idempotency), "a partition new to it is made size-tiered");
    }

    #[test]
    fn retention_forgets_the_old_use_of_a_key_not_its_new_one() {
        let dir = tempfile::tempdir().unwrap();
        let h = FjallHistory::open(dir.path()).unwrap();
        h.write(&Batch {
            lsn: 2,
            remembered: vec![remembered("k", 1, 10), remembered("old", 2, 11)],
            ..Batch::default()
        })
        .unwrap();
        // "k" used again (after it expired) by record 9.
        h.write(&Batch {
            lsn: 9,
            remembered: vec![remembered("k", 9, 500), remembered("new", 9, 500)],
            ..Batch::default()
        })
        .unwrap();
        assert_eq!(h.forget_before(100, 1).unwrap(), 1, "at most `max` per call");
        assert_eq!(h.forget_before(100, 10).unwrap(), 1);
        assert_eq!(h.forget_before(100, 10).unwrap(), 0);
        assert_eq!(h.remembered("old").unwrap(), None);
        assert_eq!(h.remembered("k").unwrap().map(|r| r.lsn), Some(9), "the newer use stays");
        assert!(h.remembered("new").unwrap().is_some());
    }
}
