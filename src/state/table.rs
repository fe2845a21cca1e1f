//! A sharded id -> object map that also remembers insertion order for lists.
//!
//! Values are `Arc<T>`: an insert or a map resize moves a pointer, not a
//! few-hundred-byte object; an event shares the payment or transaction it
//! shows instead of copying it; and a snapshot copies pointers. A change in
//! place (`upsert`, `update`) goes through `Arc::make_mut`, so a value someone
//! still holds (an event, a snapshot) keeps the version it had.
//!
//! An id is stored once, in its object (`Keyed`), or, once the object is
//! cold (its body only in history, `state/cold.rs`), inline in its bucket in
//! place of the pointer. A map bucket holds the body (the value's pointer or
//! the id), its position in the insertion order and 32 bits of its id's hash
//! (32 bytes), and the order holds each object's whole hash and its
//! `created` (16 bytes). Before, the map key and the order each held a copy
//! of the id (a bucket of 40 bytes, an order entry of 32): the tables
//! are most of the memory a replay touches for the first time, and first
//! touches are what replay spends its time on (docs/performance.md, "Replay").
//! The kept hash bits re-place a bucket when its map grows without reading
//! the object, and rule out nearly every wrong candidate of a lookup before
//! its id is compared.
//!
//! An archived table (points transactions and events: objects that never
//! change once written) goes further: once history holds its oldest objects,
//! memory lets go of them wholly, slot and order entry, and history keeps
//! them by position (`attach_archive`, `first_hot`). Lookups by id, reads by
//! position, pages and walks read what lies below `first_hot` from there;
//! the secondary indexes keep their positions (4 bytes an object).
//!
//! An archived table whose objects change again (payments and lots: a
//! refund of one archived long ago, a spend) revives such an object in place (`attach_archive` with
//! `revives`): the put of an id memory does not hold asks history where it
//! is, when it could be there at all (its id is at most the greatest id
//! archived: ids are made in time order, so a new one never asks), and the
//! new version takes a slot at that position below `first_hot`, listed in
//! `revived`. Reads by id, by position and by range find it there before
//! history; once history holds the new version, memory lets go of it again.
//!
//! Hashing is foldhash (ids are random already, so no need for SipHash's
//! flood resistance), one hash per id: its low bits pick the shard, its
//! high 32 bits (spread over 64 again) place it within the shard's map, so
//! the keys of one shard do not share the bits their map indexes buckets by.

use std::hash::BuildHasher;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use foldhash::fast::RandomState;
use hashbrown::hash_table::Entry;
use hashbrown::HashTable;
use parking_lot::RwLock;

use super::gate::Gate;
use super::list::{Cursor, ListParams, PageFill};
use super::order::Order;
use crate::config::{
    LIST_HOLD_CHUNKS_LAST, LIST_LIMIT_MAX, LIST_PAGE_ATTEMPTS, LIST_SCAN_CHUNK, ORDER_CHUNK_IDS, STATE_SHARDS,
    TABLE_OBJECTS_MAX,
};
use crate::domain::{Id, IdKind};
use crate::error::{ApiError, StorageError};

/// Whether a table holding `len` objects, of at most `max`, has room for
/// `additional` more while keeping `headroom` free: the one rule both an
/// insert (`push_order`, no headroom) and a record's check before it is
/// written (`state::check`) apply, so they cannot disagree.
pub(super) fn has_room(len: usize, additional: usize, headroom: usize, max: usize) -> bool {
    len.checked_add(additional).and_then(|n| n.checked_add(headroom)).is_some_and(|n| n <= max)
}

/// What a table needs from the objects it holds: the id they are found by
/// and their creation time, neither of which changes over an object's life.
pub trait Keyed {
    fn id(&self) -> &str;
    fn created(&self) -> i64;
}

/// A stored object: in memory (hot), or only its id while history holds
/// it (cold: `Table::evict`). Reads of a cold object load it from history
/// (`Table::attach_history`) and do not keep it.
enum Body<T> {
    Hot(Arc<T>),
    Cold(Id),
}

impl<T: Keyed> Body<T> {
    fn id(&self) -> &str {
        match self {
            Body::Hot(value) => value.id(),
            Body::Cold(id) => id,
        }
    }
}

/// An object as a walk over the whole table sees it (`Table::for_each_placed`).
pub enum Stored<'a, T> {
    Hot(&'a Arc<T>),
    /// In history only: its id.
    Cold(&'a Id),
}

/// Loads a cold object's current version from history by its id.
pub type ColdLoader<T> = Box<dyn Fn(&str) -> Result<Option<Arc<T>>, StorageError> + Send + Sync>;

/// Reads of an archived table's objects from history by position
/// (`Table::attach_archive`; docs/formats.md, "History").
pub trait ArchiveRead<T>: Send + Sync {
    /// The objects history holds at positions `from..to`, in order, with their `created`.
    fn range(&self, from: u32, to: u32) -> Result<Vec<(u32, i64, Arc<T>)>, StorageError>;
    /// The object at `position`.
    fn at(&self, position: u32) -> Result<Option<Arc<T>>, StorageError>;
    /// Where object `id` is.
    fn position(&self, id: &str) -> Result<Option<u32>, StorageError>;
}

/// Which ids an archived table may have archived (`Table::may_have_archived`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchivedIds {
    /// None: nothing is archived.
    Nothing,
    /// Ids up to this one (byte order, as history's keys sort).
    UpTo(Id),
    /// Any id (a table loaded without its bound): every lookup asks history.
    Any,
}

impl ArchivedIds {
    fn may_hold(&self, id: &str) -> bool {
        match self {
            ArchivedIds::Nothing => false,
            ArchivedIds::UpTo(greatest) => id <= greatest.as_str(),
            ArchivedIds::Any => true,
        }
    }

    fn widen(&mut self, id: &str) {
        match self {
            ArchivedIds::Nothing => *self = ArchivedIds::UpTo(Id::from(id)),
            ArchivedIds::UpTo(greatest) if id > greatest.as_str() => *greatest = Id::from(id),
            _ => {}
        }
    }
}

struct Slot<T> {
    body: Body<T>,
    /// Position in `order`: lists walk `order` backwards (newest first).
    seq: u32,
    /// The high half of the id's hash (`in_shard`).
    hash: u32,
}

type Shard<T> = RwLock<HashTable<Slot<T>>>;

/// The part of an id's hash a shard's map works with (the low bits chose the shard).
fn in_shard(hash: u64) -> u32 {
    (hash >> 32) as u32
}

/// The hash a shard's map places a bucket by: 32 bits spread over 64 (the
/// map takes its bucket index from the low bits and a tag from the top 7).
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

pub struct Table<T> {
    shards: Box<[Shard<T>]>,
    /// The ids' hashes with their `created`, in the order they were first applied.
    order: RwLock<Order>,
    hasher: RandomState,
    /// `TABLE_OBJECTS_MAX`, lower in tests.
    objects_max: usize,
    /// Positions before this were forgotten past retention (`forget_oldest`);
    /// their order entries stay, their objects are gone. Written by the one
    /// thread that applies to this table.
    first_live: AtomicUsize,
    /// How many times an object was replaced in place (a new version of an
    /// id already here; inserts do not count): a list scan that let the gate
    /// go between stretches compares it to tell whether what it read is still
    /// one moment's table (`page`). Written by the one thread that applies
    /// to this table, read by list scans under the gate.
    replaced: AtomicU64,
    /// Where cold objects are read from (`attach_history`); a table that is
    /// never evicted has none.
    cold: OnceLock<ColdLoader<T>>,
    /// How many objects are cold now (their slots in memory).
    cold_count: AtomicUsize,
    /// An archived table's reads of what lies below `first_hot`.
    archive: OnceLock<Box<dyn ArchiveRead<T>>>,
    /// Positions below this are archived: in history only, nothing of them
    /// in memory but their index entries. Only grows; 0 for a table that is
    /// not archived.
    first_hot: AtomicUsize,
    /// How many objects are archived (below `first_hot`, not forgotten,
    /// not revived).
    archived: AtomicUsize,
    /// Whether an archived object may change again (`attach_archive`).
    revives: std::sync::atomic::AtomicBool,
    /// Objects below `first_hot` whose newer version is in memory (their
    /// slots hold that position): position -> the id's hash. Few: an
    /// archived payment refunded, until history holds the refunded version;
    /// an open lot that spending reached, while it is open.
    revived: RwLock<std::collections::BTreeMap<u32, u64>>,
    /// Which ids may be archived: a put of an id above them is new without
    /// asking history. Widened by `advance`, set by a checkpoint's load.
    archived_ids: parking_lot::Mutex<ArchivedIds>,
    /// Positions from `first_hot` on whose object is in memory and of which
    /// history holds a version at that position all the same (an open lot
    /// that spending reached: `State::queue_cold`). `advance` passes them
    /// and keeps them as revived, so they do not hold back the archiving of
    /// everything after them.
    written_hot: parking_lot::Mutex<std::collections::BTreeSet<u32>>,
    /// The last archived object history located (id, position): a change
    /// of one asks where it is three times in a row (whether it exists, the
    /// read of the version it replaces, the put), and an archived object's
    /// position never changes.
    located: parking_lot::Mutex<Option<(Id, u32)>>,
    /// Held while `advance` archives and while a snapshot's copy walks the
    /// table, so the copy sees one `first_hot` and the slots above it.
    archiving: parking_lot::Mutex<()>,
    /// The `created` of the object at `first_live` when it is archived
    /// (`UNKNOWN_CREATED`: not read yet): retention runs on every record and
    /// asks it first, instead of reading history each time (`forget_oldest`).
    oldest_created: AtomicI64,
}

/// `Table::oldest_created` before it is read from history.
const UNKNOWN_CREATED: i64 = i64::MIN;

/// Where a table's memory started when a snapshot's copy walked it: positions
/// `first_live..first_hot` were archived (in history only).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub first_live: u32,
    pub first_hot: u32,
}

/// How one attempt at a list page ended (`Table::scan`).
enum Scan {
    /// The page, read to its end; `has_more`. The table as it was at one
    /// moment, unless this was a last attempt that raced (`Table::page`).
    Whole(bool),
    /// An object was replaced between two stretches of the scan: the page
    /// may mix two moments, so it is read again (unless this was the last try).
    Raced,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            shards: (0..STATE_SHARDS).map(|_| RwLock::new(HashTable::new())).collect(),
            order: RwLock::new(Order::default()),
            hasher: RandomState::default(),
            objects_max: TABLE_OBJECTS_MAX,
            first_live: AtomicUsize::new(0),
            replaced: AtomicU64::new(0),
            cold: OnceLock::new(),
            cold_count: AtomicUsize::new(0),
            archive: OnceLock::new(),
            first_hot: AtomicUsize::new(0),
            archived: AtomicUsize::new(0),
            revives: std::sync::atomic::AtomicBool::new(false),
            revived: RwLock::new(std::collections::BTreeMap::new()),
            archived_ids: parking_lot::Mutex::new(ArchivedIds::Nothing),
            written_hot: parking_lot::Mutex::new(std::collections::BTreeSet::new()),
            located: parking_lot::Mutex::new(None),
            archiving: parking_lot::Mutex::new(()),
            oldest_created: AtomicI64::new(UNKNOWN_CREATED),
        }
    }
}

impl<T> Table<T> {
    /// An empty table that holds at most `objects_max` objects (tests of the limit).
    #[cfg(test)]
    pub(super) fn with_objects_max(objects_max: usize) -> Self {
        Table { objects_max, ..Table::default() }
    }
}

impl<T: Keyed> Table<T> {
    fn hash(&self, id: &str) -> u64 {
        self.hasher.hash_one(id)
    }

    fn shard(&self, hash: u64) -> &Shard<T> {
        &self.shards[(hash as usize) % self.shards.len()]
    }

    /// Whether a bucket holds the object `id`, whose hash is `hash` (the kept
    /// hash bits are compared first, so a wrong candidate is nearly never read).
    fn holds(hash: u64, id: &str) -> impl Fn(&Slot<T>) -> bool + '_ {
        let part = in_shard(hash);
        move |slot| slot.hash == part && slot.body.id() == id
    }

    /// Where a shard's map places a bucket, from the hash bits it keeps.
    fn placed(slot: &Slot<T>) -> u64 {
        spread(slot.hash)
    }

    /// The bucket of `id`, whose hash is `hash`.
    fn slot<'a>(map: &'a HashTable<Slot<T>>, hash: u64, id: &str) -> Option<&'a Slot<T>> {
        map.find(spread(in_shard(hash)), Self::holds(hash, id))
    }

    /// The bucket of the object at `seq` in the insertion order, whose id's hash is `hash`
    /// (positions are unique: no id needed).
    fn slot_at(map: &HashTable<Slot<T>>, hash: u64, seq: u32) -> Option<&Slot<T>> {
        map.find(spread(in_shard(hash)), |slot| slot.seq == seq)
    }

    fn with_slot<R>(&self, id: &str, f: impl FnOnce(&Slot<T>) -> R) -> Option<R> {
        let hash = self.hash(id);
        Self::slot(&self.shard(hash).read(), hash, id).map(f)
    }

    /// Lets history's reads of cold objects in (before anything is evicted).
    pub fn attach_history(&self, load: ColdLoader<T>) {
        let _ = self.cold.set(load);
    }

    /// A cold object's current version, from history.
    fn load(&self, id: &str) -> Result<Arc<T>, StorageError> {
        let load = self
            .cold
            .get()
            .ok_or_else(|| StorageError::Inconsistent(format!("{id} is in history, which is not attached")))?;
        load(id)?.ok_or_else(|| StorageError::Inconsistent(format!("{id} is missing from history")))
    }

    /// Calls `f` with the object in the bucket `find` picks from the id's
    /// shard (hashed `hash`): under the shard's lock when it is in memory,
    /// after loading it from history (the lock let go) when it is cold.
    fn read_slot<R>(
        &self,
        hash: u64,
        find: impl for<'a> FnOnce(&'a HashTable<Slot<T>>) -> Option<&'a Slot<T>>,
        f: impl FnOnce(&Arc<T>) -> R,
    ) -> Result<Option<R>, StorageError> {
        let cold = {
            let shard = self.shard(hash).read();
            match find(&shard).map(|slot| &slot.body) {
                None => return Ok(None),
                Some(Body::Hot(value)) => return Ok(Some(f(value))),
                Some(Body::Cold(id)) => id.clone(),
            }
        };
        let value = self.load(&cold)?;
        Ok(Some(f(&value)))
    }

    /// Calls `f` with the object, if there is one; an error if it is cold
    /// and history cannot give it (what the apply path and its checks use,
    /// where a missing version must not pass for a new object).
    pub fn try_with<R>(&self, id: &str, f: impl FnOnce(&T) -> R) -> Result<Option<R>, StorageError> {
        let hash = self.hash(id);
        if self.archive.get().is_none() {
            return self.read_slot(hash, |map| Self::slot(map, hash, id), |value| f(value));
        }
        match self.read_slot(hash, |map| Self::slot(map, hash, id), Arc::clone)? {
            Some(value) => Ok(Some(f(&value))),
            None => Ok(self.archived_by_id(id)?.map(|value| f(&value))),
        }
    }

    /// Lets the table read its archived objects from history; from then on,
    /// memory lets go of its oldest objects wholly once history holds them
    /// (`evict`, `advance`). With `revives`, an archived object may change
    /// again: a put of an id memory does not hold looks for it in history
    /// first, when it may be there (`revivable`).
    pub fn attach_archive(&self, archive: Box<dyn ArchiveRead<T>>, revives: bool) {
        self.revives.store(revives, Ordering::Release);
        let _ = self.archive.set(archive);
    }

    /// Whether `id` may be archived: ids above the greatest one archived are
    /// not (they are made in time order, so a new object's id is above them
    /// and costs no history read).
    fn may_have_archived(&self, id: &str) -> bool {
        self.archived_ids.lock().may_hold(id)
    }

    /// Which ids may be archived (what a checkpoint writes, `ArchivedIds`).
    pub fn archived_ids(&self) -> ArchivedIds {
        self.archived_ids.lock().clone()
    }

    /// Sets which ids may be archived (a checkpoint's load, after `start_archived`).
    pub(super) fn set_archived_ids(&self, ids: ArchivedIds) {
        *self.archived_ids.lock() = ids;
    }

    /// Where the archived object `id` is, unless forgotten past retention (it
    /// may be in memory still, cold or revived: callers look there first).
    fn archived_position(&self, id: &str) -> Result<Option<u32>, StorageError> {
        let Some(archive) = self.archive.get() else { return Ok(None) };
        if !self.may_have_archived(id) {
            return Ok(None);
        }
        let located = self.located.lock().as_ref().filter(|(at, _)| at == id).map(|(_, position)| *position);
        let position = match located {
            Some(position) => Some(position),
            None => {
                let position = archive.position(id)?;
                if let Some(position) = position {
                    *self.located.lock() = Some((Id::from(id), position));
                }
                position
            }
        };
        Ok(position.filter(|position| *position >= self.first_live()))
    }

    /// The position below `first_hot` of an archived object that a put of
    /// `id` (not in memory) changes (`None`: a new object). Only a table
    /// whose objects change again asks, and only for an id that may be
    /// archived. One history has at `first_hot` or past it (history ahead
    /// of a checkpoint whose records are replayed) is new to memory.
    fn revivable(&self, id: &str) -> Result<Option<u32>, StorageError> {
        if !self.revives.load(Ordering::Acquire) {
            return Ok(None);
        }
        Ok(self.archived_position(id)?.filter(|position| self.is_archived(*position)))
    }

    /// The hash of the object revived at `position`, if one is.
    fn revived_hash(&self, position: u32) -> Option<u64> {
        let revived = self.revived.read();
        if revived.is_empty() {
            return None;
        }
        revived.get(&position).copied()
    }

    /// How many archived objects memory holds a newer version of.
    pub fn revived_len(&self) -> usize {
        self.revived.read().len()
    }

    /// The archived objects at positions `from..to` (below `first_hot`),
    /// in order: history's, each revived one as memory has it.
    fn archived_range(
        &self,
        archive: &dyn ArchiveRead<T>,
        from: u32,
        to: u32,
    ) -> Result<Vec<(u32, i64, Arc<T>)>, StorageError> {
        let mut objects = archive.range(from, to)?;
        let revived: Vec<(u32, u64)> = self.revived.read().range(from..to).map(|(p, h)| (*p, *h)).collect();
        for (position, hash) in revived {
            // Gone since (history holds that version now): history's is it.
            let Some(value) = self.value_at(hash, position)? else { continue };
            match objects.binary_search_by_key(&position, |(p, _, _)| *p) {
                Ok(i) => objects[i].2 = value,
                Err(i) => objects.insert(i, (position, value.created(), value)),
            }
        }
        Ok(objects)
    }

    /// The first position whose object may be in memory: those below are
    /// archived (or forgotten).
    pub fn first_hot(&self) -> u32 {
        self.first_hot.load(Ordering::Acquire) as u32
    }

    fn is_archived(&self, position: u32) -> bool {
        (position as usize) < self.first_hot.load(Ordering::Acquire)
    }

    /// How many positions from `first_hot` on: about what memory holds of
    /// the table (what a checkpoint's load makes room for).
    pub fn held_len(&self) -> usize {
        self.len().saturating_sub(self.first_hot.load(Ordering::Acquire))
    }

    /// The archived object `id`, unless forgotten past retention.
    fn archived_by_id(&self, id: &str) -> Result<Option<Arc<T>>, StorageError> {
        match self.archived_position(id)? {
            Some(position) => self.archived_at(position),
            None => Ok(None),
        }
    }

    /// The archived object at `position`, unless forgotten past retention:
    /// memory's version if it was revived, else history's.
    fn archived_at(&self, position: u32) -> Result<Option<Arc<T>>, StorageError> {
        if let Some(hash) = self.revived_hash(position) {
            // Let go of since (`evict`): history holds that version now.
            if let Some(value) = self.value_at(hash, position)? {
                return Ok(Some(value));
            }
        }
        match self.archive.get() {
            Some(archive) if position >= self.first_live() => archive.at(position),
            _ => Ok(None),
        }
    }

    /// The object at `position`, in memory or archived (it may be archived
    /// while it is looked for: memory lets go of a slot only after
    /// `first_hot` has passed it, so a miss then is read from history).
    fn value_at_position(&self, position: u32) -> Result<Option<Arc<T>>, StorageError> {
        if self.is_archived(position) {
            return self.archived_at(position);
        }
        let entry = self.order.read().get(position as usize);
        let found = match entry {
            Some((hash, _)) => self.value_at(hash, position)?,
            None => None,
        };
        if found.is_none() && self.is_archived(position) {
            return self.archived_at(position);
        }
        Ok(found)
    }

    /// Calls `f` with the object, if there is one. A cold object history
    /// cannot give is logged and read as missing.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.try_with(id, f).unwrap_or_else(|e| {
            tracing::error!(error = %e, id, "history could not give an object");
            None
        })
    }

    /// A copy of the object `id`, if `id` has the shape of `kind` and exists
    /// (ids of the wrong shape are refused without a lookup).
    pub fn find(&self, kind: IdKind, id: &str) -> Option<T>
    where
        T: Clone,
    {
        if kind.accepts(id) {
            self.with(id, Clone::clone)
        } else {
            None
        }
    }

    /// Whether the object exists (in memory or cold: no load). An archived
    /// object is looked for (a history read) only in a table whose objects
    /// change again (`attach_archive`): the others' ids are made by the
    /// server and never put twice.
    pub fn contains(&self, id: &str) -> bool {
        if self.revives.load(Ordering::Acquire) {
            return self.position(id).is_some();
        }
        self.with_slot(id, |_| ()).is_some()
    }

    /// How many objects are cold (in history only).
    pub fn cold_len(&self) -> usize {
        self.cold_count.load(Ordering::Relaxed) + self.archived.load(Ordering::Relaxed)
    }

    /// Lets go of the object's body once history holds exactly this version:
    /// only if `value` is still the stored version (a newer one stays until
    /// history has it too). Returns whether it did.
    pub(super) fn evict(&self, value: &Arc<T>) -> bool {
        let id = value.id();
        let hash = self.hash(id);
        let mut shard = self.shard(hash).write();
        let Ok(entry) = shard.find_entry(spread(in_shard(hash)), Self::holds(hash, id)) else { return false };
        let seq = entry.get().seq;
        if self.is_archived(seq) {
            // Revived: history holds this version at its position now, so
            // memory lets go of it wholly, as `advance` does.
            if !matches!(&entry.get().body, Body::Hot(stored) if Arc::ptr_eq(stored, value)) {
                return false;
            }
            entry.remove();
            self.revived.write().remove(&seq);
            self.archived.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        let slot = entry.into_mut();
        match &slot.body {
            Body::Hot(stored) if Arc::ptr_eq(stored, value) => {
                slot.body = Body::Cold(Id::from(id));
                self.cold_count.fetch_add(1, Ordering::Relaxed);
                drop(shard);
                if self.archive.get().is_some() {
                    self.advance();
                }
                true
            }
            // A newer version stays; history holds this one at its position,
            // which lets `advance` pass the newer one without waiting for it.
            Body::Hot(_) if self.revives.load(Ordering::Acquire) => {
                drop(shard);
                self.written_hot.lock().insert(seq);
                self.advance();
                false
            }
            _ => false,
        }
    }

    /// Archives the cold objects at `first_hot` and on, up to the first one
    /// still in memory: `first_hot` passes each before its slot goes, so a
    /// reader that misses the slot finds it in history (`value_at_position`).
    /// Positions forgotten past retention are passed over. One in memory
    /// whose position history holds a version at (`written_hot`) is passed
    /// too, its slot kept as revived. Then the order's chunks wholly below go.
    pub(super) fn advance(&self) {
        if self.archive.get().is_none() {
            return;
        }
        let _archiving = self.archiving.lock();
        let len = self.order.read().len();
        let mut at = self.first_hot.load(Ordering::Acquire);
        while at < len {
            let Some((hash, _)) = self.order.read().get(at) else { break };
            let mut shard = self.shard(hash).write();
            let seq = at as u32;
            let written = self.written_hot.lock().remove(&seq);
            if let Ok(entry) = shard.find_entry(spread(in_shard(hash)), |slot| slot.seq == seq) {
                if matches!(entry.get().body, Body::Hot(_)) {
                    if !written {
                        break;
                    }
                    // Below `first_hot` from now on, its slot kept: revived.
                    self.archived_ids.lock().widen(entry.get().body.id());
                    self.revived.write().insert(seq, hash);
                    self.first_hot.store(at + 1, Ordering::Release);
                    at += 1;
                    continue;
                }
                // Before the slot goes, as `first_hot`: a put of this id
                // that misses the slot must ask history (`revivable`).
                self.archived_ids.lock().widen(entry.get().body.id());
                self.first_hot.store(at + 1, Ordering::Release);
                entry.remove();
                self.cold_count.fetch_sub(1, Ordering::Relaxed);
                self.archived.fetch_add(1, Ordering::Relaxed);
            } else {
                self.first_hot.store(at + 1, Ordering::Release);
            }
            at += 1;
        }
        if at - at % ORDER_CHUNK_IDS > self.order.read().first_held() {
            self.order.write().drop_below(at);
        }
    }

    /// Starts an empty archived table at a local checkpoint's place: positions
    /// `first_live..first_hot` archived, the next object at `first_hot`.
    pub(super) fn start_archived(&self, first_live: u32, first_hot: u32) -> Result<(), StorageError> {
        if !self.is_empty() || first_live > first_hot {
            return Err(StorageError::Inconsistent(format!(
                "an archived table starts empty, with its first object in memory after its first live one \
                 ({first_live}..{first_hot})"
            )));
        }
        *self.order.write() = Order::with_base(first_hot as usize);
        self.oldest_created.store(UNKNOWN_CREATED, Ordering::Relaxed);
        self.first_live.store(first_live as usize, Ordering::Relaxed);
        self.first_hot.store(first_hot as usize, Ordering::Release);
        self.archived.store((first_hot - first_live) as usize, Ordering::Relaxed);
        // Until the checkpoint says which ids (`set_archived_ids`), any may be.
        let ids = if first_live < first_hot { ArchivedIds::Any } else { ArchivedIds::Nothing };
        self.set_archived_ids(ids);
        Ok(())
    }

    /// Makes the slot's body hot with `value`, counting a cold one that warms.
    fn set_hot(&self, slot: &mut Slot<T>, value: Arc<T>) {
        if matches!(slot.body, Body::Cold(_)) {
            self.cold_count.fetch_sub(1, Ordering::Relaxed);
        }
        slot.body = Body::Hot(value);
    }

    /// The slot's body made hot (loaded from history if it was cold), to change in place.
    fn warm<'a>(&self, slot: &'a mut Slot<T>) -> Result<&'a mut Arc<T>, StorageError> {
        if let Body::Cold(id) = &slot.body {
            let value = self.load(id)?;
            self.set_hot(slot, value);
        }
        match &mut slot.body {
            Body::Hot(value) => Ok(value),
            Body::Cold(id) => Err(StorageError::Inconsistent(format!("{id} stayed cold after it was loaded"))),
        }
    }

    /// Makes room for `additional` more objects, spread over the shards
    /// (ids are random, so each shard gets about its share, plus a sixteenth
    /// for the shards that get more than their share).
    pub fn reserve(&self, additional: usize) {
        let share = additional.div_ceil(self.shards.len());
        let per_shard = share + share / 16;
        for shard in self.shards.iter() {
            shard.write().reserve(per_shard, Self::placed);
        }
        self.order.write().reserve(additional);
    }

    /// Gives back the spare capacity that growing during replay left behind.
    pub fn shrink_to_fit(&self) {
        for shard in self.shards.iter() {
            shard.write().shrink_to_fit(Self::placed);
        }
        self.order.write().shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.order.read().len()
    }

    /// Most objects this table can hold (`TABLE_OBJECTS_MAX`, lower in tests).
    pub fn objects_max(&self) -> usize {
        self.objects_max
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts `value`, or replaces the stored version of its id; returns
    /// its position in the insertion order.
    pub(super) fn put(&self, value: Arc<T>) -> Result<u32, StorageError> {
        self.put_telling(value).map(|(seq, _)| seq)
    }

    /// `put`, also telling whether the object is new (for the indexes, which
    /// take an object once, when it is first inserted).
    pub(super) fn put_telling(&self, value: Arc<T>) -> Result<(u32, bool), StorageError> {
        let (seq, replaced) = self.put_with(value, |table, slot, value| {
            table.set_hot(slot, value);
            Ok(())
        })?;
        Ok((seq, replaced.is_none()))
    }

    /// `put_telling` for a table whose objects never go cold: gives back the
    /// version replaced (`None`: a new object), read in the same lookup.
    pub(super) fn put_replacing(&self, value: Arc<T>) -> Result<(u32, Option<Arc<T>>), StorageError> {
        self.put_with(value, |_, slot, value| match &mut slot.body {
            Body::Hot(current) => Ok(std::mem::replace(current, value)),
            Body::Cold(id) => Err(StorageError::Inconsistent(format!("{id} was cold in a table that keeps all"))),
        })
    }

    /// Inserts `value`, or hands its slot to `replace` when its id is here
    /// (and counts the change in place). Returns its position and what
    /// `replace` gave (`None`: inserted).
    fn put_with<R>(
        &self,
        value: Arc<T>,
        replace: impl FnOnce(&Self, &mut Slot<T>, Arc<T>) -> Result<R, StorageError>,
    ) -> Result<(u32, Option<R>), StorageError> {
        let hash = self.hash(value.id());
        let part = in_shard(hash);
        let mut shard = self.shard(hash).write();
        match shard.entry(spread(part), Self::holds(hash, value.id()), Self::placed) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                let replaced = replace(self, slot, value)?;
                self.count_replaced();
                Ok((slot.seq, Some(replaced)))
            }
            Entry::Vacant(slot) => {
                if let Some(seq) = self.revivable(value.id())? {
                    // An archived object changes: its new version takes a
                    // slot at its position, below `first_hot`.
                    let mut revived = Slot { body: Body::Cold(Id::from(value.id())), seq, hash: part };
                    self.cold_count.fetch_add(1, Ordering::Relaxed);
                    let replaced = replace(self, &mut revived, value)?;
                    slot.insert(revived);
                    self.revived.write().insert(seq, hash);
                    self.archived.fetch_sub(1, Ordering::Relaxed);
                    self.count_replaced();
                    return Ok((seq, Some(replaced)));
                }
                let seq = self.push_order(hash, value.created(), value.id())?;
                slot.insert(Slot { body: Body::Hot(value), seq, hash: part });
                Ok((seq, None))
            }
        }
    }

    /// Inserts an object that only history holds, by its id and `created`
    /// (a local checkpoint's reference, `state/checkpoint.rs`): a cold slot
    /// and an order entry, no body. Returns its position; an error if the
    /// id is already here.
    pub(super) fn put_cold(&self, id: Id, created: i64) -> Result<u32, StorageError> {
        let hash = self.hash(&id);
        let part = in_shard(hash);
        let mut shard = self.shard(hash).write();
        match shard.entry(spread(part), Self::holds(hash, &id), Self::placed) {
            Entry::Occupied(_) => Err(StorageError::Inconsistent(format!("{id} is in the snapshot twice"))),
            Entry::Vacant(slot) => {
                let seq = self.push_order(hash, created, &id)?;
                slot.insert(Slot { body: Body::Cold(id), seq, hash: part });
                self.cold_count.fetch_add(1, Ordering::Relaxed);
                Ok(seq)
            }
        }
    }

    /// Inserts or updates `id`: `f` gets the current object (to change in place,
    /// returning `None`) or `None` for a new one (returning the object to insert,
    /// which must have the id `id`, or a replacement).
    pub(super) fn upsert(&self, id: &str, f: impl FnOnce(Option<&mut T>) -> Option<T>) -> Result<(), StorageError>
    where
        T: Clone,
    {
        let hash = self.hash(id);
        let part = in_shard(hash);
        let mut shard = self.shard(hash).write();
        match shard.entry(spread(part), Self::holds(hash, id), Self::placed) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                if let Some(value) = f(Some(Arc::make_mut(self.warm(slot)?))) {
                    slot.body = Body::Hot(Arc::new(value));
                }
                self.count_replaced();
            }
            Entry::Vacant(slot) => {
                if let Some(value) = f(None) {
                    let seq = self.push_order(hash, value.created(), id)?;
                    slot.insert(Slot { body: Body::Hot(Arc::new(value)), seq, hash: part });
                }
            }
        }
        Ok(())
    }

    /// Appends a new object's hash to `order`; returns its position, or an
    /// error if the table already holds `TABLE_OBJECTS_MAX` objects (positions
    /// are u32s).
    ///
    /// Called with the id's shard write-locked: one lookup per insert. The
    /// lock order is always shard, then order; nothing takes a shard while
    /// holding `order` (readers copy a chunk of it and let go first), so this
    /// cannot deadlock. Only one thread applies to a table (the WAL's apply thread, or
    /// one lane of recovery before it), so inserts never race each other.
    fn push_order(&self, hash: u64, created: i64, id: &str) -> Result<u32, StorageError> {
        let mut order = self.order.write();
        match u32::try_from(order.len()) {
            Ok(seq) if has_room(order.len(), 1, 0, self.objects_max) => {
                order.push((hash, created));
                Ok(seq)
            }
            _ => Err(StorageError::Inconsistent(format!(
                "cannot add {id}: its table already holds {} objects",
                self.objects_max
            ))),
        }
    }

    /// Changes an existing object in place; `None` if there is none.
    pub(super) fn update<R>(&self, id: &str, f: impl FnOnce(&mut T) -> R) -> Option<R>
    where
        T: Clone,
    {
        let hash = self.hash(id);
        let mut shard = self.shard(hash).write();
        let slot = shard.find_mut(spread(in_shard(hash)), Self::holds(hash, id))?;
        let value = match self.warm(slot) {
            Ok(value) => value,
            Err(e) => {
                tracing::error!(error = %e, id, "history could not give an object to change");
                return None;
            }
        };
        let changed = f(Arc::make_mut(value));
        self.count_replaced();
        Some(changed)
    }

    /// Forgets objects from the oldest on while `expired` says so, at most
    /// `max` of them: retention (`State::forget_expired`). `expired` gets the
    /// object when it is in memory (`None` when it is cold: history has it)
    /// and its `created`; `gone` gets the id of each one forgotten. Stops at
    /// the first object that is not expired, so one that lingers (created out
    /// of order) holds back the ones after it until it goes too. An object's
    /// order entry (16 bytes) stays; lists and lookups skip it as if it never was.
    ///
    /// In an archived table, `expired(None, created)` is asked first with the
    /// oldest archived object's `created` as last read, and must say `false`
    /// whenever the object itself would not expire: a record that forgets
    /// nothing reads nothing from history.
    ///
    /// Not counted as a replacement (`replaced`): what goes is the old end of
    /// every list, which a page reaches last, and a page that still showed
    /// an object forgotten meanwhile showed it whole.
    pub(super) fn forget_oldest(
        &self,
        expired: impl Fn(Option<&T>, i64) -> bool,
        max: usize,
        mut gone: impl FnMut(Id),
    ) -> usize {
        let mut at = self.first_live.load(Ordering::Relaxed);
        let mut forgotten = 0;
        'walk: while forgotten < max {
            // Archived: read from history, a stretch at a time.
            let first_hot = self.first_hot.load(Ordering::Acquire);
            if at < first_hot {
                let Some(archive) = self.archive.get() else { break };
                // The oldest one's `created` as last read: most records forget nothing.
                let oldest = self.oldest_created.load(Ordering::Relaxed);
                if oldest != UNKNOWN_CREATED && !expired(None, oldest) {
                    break;
                }
                let to = first_hot.min(at + (max - forgotten));
                let objects = match self.archived_range(archive.as_ref(), at as u32, to as u32) {
                    Ok(objects) => objects,
                    Err(e) => {
                        tracing::error!(error = %e, "history could not give archived objects to forget; later then");
                        break;
                    }
                };
                for (position, created, value) in objects {
                    if !expired(Some(&value), created) {
                        at = position as usize;
                        self.oldest_created.store(created, Ordering::Relaxed);
                        break 'walk;
                    }
                    gone(Id::from(value.id()));
                    self.archived.fetch_sub(1, Ordering::Relaxed);
                    forgotten += 1;
                }
                self.oldest_created.store(UNKNOWN_CREATED, Ordering::Relaxed);
                at = to;
                continue;
            }
            let Some((hash, created)) = self.order.read().get(at) else { break };
            let mut shard = self.shard(hash).write();
            let seq = at as u32;
            match shard.find_entry(spread(in_shard(hash)), |slot| slot.seq == seq) {
                Ok(entry) => {
                    let value = match &entry.get().body {
                        Body::Hot(value) => Some(&**value),
                        Body::Cold(_) => None,
                    };
                    if !expired(value, created) {
                        break;
                    }
                    let (slot, _) = entry.remove();
                    if let Body::Cold(id) = slot.body {
                        self.cold_count.fetch_sub(1, Ordering::Relaxed);
                        gone(id);
                    } else {
                        gone(Id::from(slot.body.id()));
                    }
                    forgotten += 1;
                }
                // Archived meanwhile (`advance`): read from history on the next turn.
                Err(_) if self.is_archived(seq) => continue,
                // Already gone (it cannot be, but a gap must not stop retention): skipped.
                Err(_) => {}
            }
            at += 1;
        }
        self.first_live.store(at, Ordering::Relaxed);
        forgotten
    }

    /// The first position not forgotten past retention (`forget_oldest`).
    pub(super) fn first_live(&self) -> u32 {
        self.first_live.load(Ordering::Relaxed) as u32
    }

    /// Notes an in-place change (`replaced`). One thread writes a table, so
    /// a load and a store do (no locked read-modify-write on the apply path);
    /// the gate orders it for the scans that read it.
    fn count_replaced(&self) {
        self.replaced.store(self.replaced.load(Ordering::Relaxed).wrapping_add(1), Ordering::Relaxed);
    }

    /// Calls `f` for every object, in no particular order (used by checks
    /// and reports); cold ones are loaded from history, a shard at a time
    /// with its lock let go. One history cannot give is logged and skipped.
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        let skipped = |e: StorageError| {
            tracing::error!(error = %e, "history could not give an object");
            Ok(())
        };
        let _ = self.walk(|_, value| f(value), skipped);
    }

    /// Calls `f` with every live object and its position, as `for_each`
    /// finds them, but stops at the first one history cannot give (a
    /// rebuild that must see every object: `State::complete_transaction_types`).
    pub(super) fn try_for_each_placed(&self, f: impl FnMut(u32, &T)) -> Result<(), StorageError> {
        self.walk(f, Err)
    }

    /// Every live object with its position: archived ones first, in order,
    /// as far as `first_hot` is now (a walk while memory archives more may
    /// see one twice), then each shard's, its cold ones loaded with its lock
    /// let go. A read history cannot give goes to `failed`, whose error
    /// stops the walk.
    fn walk(
        &self,
        mut f: impl FnMut(u32, &T),
        mut failed: impl FnMut(StorageError) -> Result<(), StorageError>,
    ) -> Result<(), StorageError> {
        let (mut at, first_hot) = (self.first_live(), self.first_hot());
        while let Some(archive) = self.archive.get().filter(|_| at < first_hot) {
            let to = first_hot.min(at.saturating_add(LIST_SCAN_CHUNK as u32));
            match self.archived_range(archive.as_ref(), at, to) {
                Ok(objects) => objects.iter().for_each(|(position, _, value)| f(*position, value)),
                Err(e) => failed(e)?,
            }
            at = to;
        }
        for shard in self.shards.iter() {
            let mut cold = Vec::new();
            // Revived ones were given with the archived ones above.
            for slot in shard.read().iter().filter(|slot| slot.seq >= first_hot) {
                match &slot.body {
                    Body::Hot(value) => f(slot.seq, value),
                    Body::Cold(id) => cold.push((slot.seq, id.clone())),
                }
            }
            for (seq, id) in cold {
                match self.load(&id) {
                    Ok(value) => f(seq, &value),
                    Err(e) => failed(e)?,
                }
            }
        }
        Ok(())
    }

    /// Calls `f` for every object in memory, in no particular order: for a
    /// reader that knows the cold ones cannot matter to it.
    pub fn for_each_hot(&self, mut f: impl FnMut(&T)) {
        for shard in self.shards.iter() {
            for slot in shard.read().iter() {
                if let Body::Hot(value) = &slot.body {
                    f(value)
                }
            }
        }
    }

    /// Changes every object in memory in place (after a snapshot load,
    /// before anything reads; only tables that are never evicted use it).
    pub(super) fn for_each_mut(&self, mut f: impl FnMut(&mut T))
    where
        T: Clone,
    {
        for shard in self.shards.iter() {
            for slot in shard.write().iter_mut() {
                if let Body::Hot(value) = &mut slot.body {
                    f(Arc::make_mut(value));
                }
            }
        }
    }

    /// Calls `f` with every object and its place in the insertion order (a
    /// cold one as its id, for the caller to read from history later), in
    /// no particular order: the snapshot's copy at the WAL barrier, which
    /// sorts by place once the writer has gone on (`state::in_place`), so
    /// that a restored table lists in the same order. Reading the buckets one
    /// after another touches each once; placing each object first and then
    /// walking the places costs a second cache miss per object while every
    /// request waits (docs/performance.md, "The snapshot's writer stall").
    ///
    /// For snapshots, on the WAL's apply thread (nothing else writes): it
    /// holds every shard's read lock at once (in shard order, so it cannot
    /// deadlock with a writer, which takes one at a time), with no
    /// per-object hashing or locking.
    ///
    /// Returns what was archived then (nothing unless the table is archived).
    pub fn for_each_placed(&self, mut f: impl FnMut(u32, Stored<'_, T>)) -> Bounds {
        let _archiving = self.archiving.lock();
        let bounds = self.bounds();
        let guards: Vec<_> = self.shards.iter().map(|shard| shard.read()).collect();
        for guard in &guards {
            for slot in guard.iter() {
                f(
                    slot.seq,
                    match &slot.body {
                        Body::Hot(value) => Stored::Hot(value),
                        Body::Cold(id) => Stored::Cold(id),
                    },
                );
            }
        }
        bounds
    }

    /// What is archived now: `first_hot` at least `first_live`.
    fn bounds(&self) -> Bounds {
        let first_live = self.first_live();
        Bounds { first_live, first_hot: self.first_hot().max(first_live) }
    }

    /// `for_each_placed` for a local checkpoint: only the objects in memory,
    /// with their places (revived ones too: below `first_hot`, which is
    /// fixed while this runs). A cold one costs a look at its bucket, not a copy
    /// of its id (the writer names it after the barrier, `id_at`), which is
    /// most of the copy when most objects are cold (docs/performance.md,
    /// "Local checkpoints"). Returns the positions that hold an object now,
    /// `first_live..len`, and how many of them were given to `f`.
    pub fn for_each_hot_placed(&self, mut f: impl FnMut(u32, &Arc<T>)) -> (u32, u32, u32, Bounds) {
        let _archiving = self.archiving.lock();
        let bounds = self.bounds();
        let guards: Vec<_> = self.shards.iter().map(|shard| shard.read()).collect();
        let mut hot = 0;
        for guard in &guards {
            for slot in guard.iter() {
                if let Body::Hot(value) = &slot.body {
                    f(slot.seq, value);
                    // A revived one (below `first_hot`) is not in the run of positions counted.
                    hot += u32::from(slot.seq >= bounds.first_hot);
                }
            }
        }
        let len = self.order.read().len();
        // An archived table's positions below `first_hot` are not in memory to name.
        (bounds.first_hot, u32::try_from(len).unwrap_or(u32::MAX), hot, bounds)
    }

    /// The id and `created` of the object at `position` of the insertion
    /// order, in memory or not (no history read); `None` once forgotten.
    pub fn id_at(&self, position: u32) -> Option<(Id, i64)> {
        if self.is_archived(position) {
            // Archived after the checkpoint's barrier: history has it.
            let value = self.archived_at(position).unwrap_or_else(|e| {
                tracing::error!(error = %e, position, "history could not give an archived object");
                None
            })?;
            return Some((Id::from(value.id()), value.created()));
        }
        let (hash, created) = self.order.read().get(position as usize)?;
        let shard = self.shard(hash).read();
        Self::slot_at(&shard, hash, position).map(|slot| (Id::from(slot.body.id()), created))
    }

    /// When the object at `position` was created, from the order: no
    /// history read for a cold one (one below `first_hot` is read).
    pub fn created_at(&self, position: u32) -> Option<i64> {
        if self.is_archived(position) {
            return self.id_at(position).map(|(_, created)| created);
        }
        self.order.read().get(position as usize).map(|(_, created)| created)
    }

    /// One page of a list, newest first: `emit` is called for each object that
    /// passes `params` and `keep`. Returns `has_more`.
    ///
    /// The page shows the table as it was between two records (`gate.rs`):
    /// the scan walks the insertion order a stretch at a time, each stretch
    /// under the gate, and letting go between stretches lets records apply.
    /// New objects land past the page's end (a backward scan starts below
    /// them; a forward one, for `ending_before`, stops at the order's length
    /// as it was when the scan began), so only an object replaced in
    /// place could make a page mix two moments; the table counts those
    /// (`replaced`), and a scan that sees the count move reads the page again,
    /// up to `LIST_PAGE_ATTEMPTS` times. The last attempt holds the gate for
    /// `LIST_HOLD_CHUNKS_LAST` chunks at a time, so a scan that short is whole
    /// by construction; a longer one that raced every attempt is served as
    /// read (each object still a whole version at a record boundary), which
    /// is what keeps a long filtered scan from stalling the apply thread.
    /// Objects are emitted after the scan, with the gate let go, newest
    /// first (a forward scan's are emitted in reverse).
    pub fn page(
        &self,
        gate: &Gate,
        params: &ListParams,
        keep: impl Fn(&T) -> bool,
        mut emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        let mut taken: Vec<Arc<T>> = Vec::with_capacity(params.limit.min(LIST_LIMIT_MAX) + 1);
        let mut has_more = false;
        for attempt in 1..=LIST_PAGE_ATTEMPTS {
            taken.clear();
            let last = attempt == LIST_PAGE_ATTEMPTS;
            let hold_chunks = if last { LIST_HOLD_CHUNKS_LAST } else { 1 };
            match self.scan(gate, params, &keep, &mut taken, hold_chunks, last)? {
                Scan::Whole(more) => {
                    has_more = more;
                    break;
                }
                Scan::Raced => continue,
            }
        }
        if matches!(params.cursor(), Cursor::Before(_)) {
            taken.reverse();
        }
        for value in &taken {
            emit(value);
        }
        Ok(has_more)
    }

    /// One attempt at a page (`page`): holds the gate for `hold_chunks`
    /// chunks of the order at a time; between holds, checks whether an object
    /// was replaced, and gives up (`Raced`) if one was, unless `to_the_end`.
    /// Walks backwards from `starting_after` (or the newest object), or
    /// forwards from `ending_before` up to the order's length at the start.
    fn scan(
        &self,
        gate: &Gate,
        params: &ListParams,
        keep: &impl Fn(&T) -> bool,
        taken: &mut Vec<Arc<T>>,
        hold_chunks: usize,
        to_the_end: bool,
    ) -> Result<Scan, ApiError> {
        let mut page = PageFill::new(params, |value: &Arc<T>| keep(value), |value: &Arc<T>| taken.push(value.clone()));
        let cursor = params.cursor();
        let forwards = matches!(cursor, Cursor::Before(_));
        // The next position to read walking backwards is `pos - 1`; walking
        // forwards it is `pos`, up to (not including) `stop`.
        let mut pos: Option<usize> = None;
        let mut stop = 0;
        let mut replaced_at_start = 0;
        loop {
            let _between_records = gate.read();
            let mut at = match pos {
                None => {
                    replaced_at_start = self.replaced.load(Ordering::Relaxed);
                    let len = self.order.read().len();
                    let seq = match cursor {
                        Cursor::After(id) | Cursor::Before(id) => match self.position(id) {
                            Some(seq) => Some(seq as usize),
                            None => return Err(ApiError::missing_reference(cursor.param(), id)),
                        },
                        Cursor::Newest => None,
                    };
                    match seq {
                        Some(seq) if forwards => {
                            stop = len;
                            seq + 1
                        }
                        Some(seq) => seq.min(len),
                        None => len,
                    }
                }
                Some(pos) => {
                    if !to_the_end && self.replaced.load(Ordering::Relaxed) != replaced_at_start {
                        return Ok(Scan::Raced);
                    }
                    pos
                }
            };
            // Walk `order` a chunk at a time, never holding the order lock
            // while a shard is read (the writer takes them one at a time too).
            for _ in 0..hold_chunks {
                let (begin, end) = if forwards {
                    if at >= stop {
                        return Ok(Scan::Whole(false));
                    }
                    (at, (at + LIST_SCAN_CHUNK).min(stop))
                } else {
                    if at == 0 {
                        return Ok(Scan::Whole(false));
                    }
                    (at.saturating_sub(LIST_SCAN_CHUNK), at)
                };
                // What is archived is read from history: below `first_hot` as
                // it was just now, or below what the order still holds if
                // memory archived more since (`advance` moves `first_hot` first).
                let first_hot = self.first_hot.load(Ordering::Acquire);
                let (held, chunk) = {
                    let order = self.order.read();
                    let held = begin.max(first_hot).max(order.first_held()).min(end);
                    (held, order.copy_range(held, end))
                };
                let archived = match self.archive.get() {
                    Some(archive) if begin < held => {
                        let live = self.first_live();
                        match self.archived_range(archive.as_ref(), begin as u32, held as u32) {
                            Ok(objects) => objects.into_iter().filter(|(p, _, _)| *p >= live).collect(),
                            Err(e) => {
                                tracing::error!(error = %e, "history could not give archived objects of a list");
                                return Err(ApiError::storage_unavailable());
                            }
                        }
                    }
                    _ => Vec::new(),
                };
                at = if forwards { end } else { begin };
                let mut failed = None;
                // `archived`: an object read from history with its position.
                let mut offer = |seq: u32, created: i64, hash: u64, archived: Option<&Arc<T>>| {
                    if !params.created.contains(created) {
                        return false;
                    }
                    let value = match archived {
                        Some(value) => Ok(Some(value.clone())),
                        None if self.archive.get().is_some() => self.value_at_position(seq),
                        None => self.value_at(hash, seq),
                    };
                    match value {
                        Ok(Some(value)) => page.offer(&value, created),
                        Ok(None) => false,
                        Err(e) => {
                            failed = Some(e);
                            true
                        }
                    }
                };
                let held_at = |offset: usize| (held + offset) as u32;
                let full = if forwards {
                    archived.iter().any(|(p, created, value)| offer(*p, *created, 0, Some(value)))
                        || chunk.iter().enumerate().any(|(o, (hash, created))| offer(held_at(o), *created, *hash, None))
                } else {
                    chunk.iter().enumerate().rev().any(|(o, (hash, created))| offer(held_at(o), *created, *hash, None))
                        || archived.iter().rev().any(|(p, created, value)| offer(*p, *created, 0, Some(value)))
                };
                if let Some(e) = failed {
                    tracing::error!(error = %e, "history could not give an object of a list");
                    return Err(ApiError::storage_unavailable());
                }
                if full {
                    return Ok(Scan::Whole(true));
                }
            }
            pos = Some(at);
        }
    }

    /// The position of `id` in the insertion order, if it exists.
    pub fn position(&self, id: &str) -> Option<u32> {
        if let Some(seq) = self.with_slot(id, |slot| slot.seq) {
            return Some(seq);
        }
        self.archived_position(id).unwrap_or_else(|e| {
            tracing::error!(error = %e, id, "history could not tell where an archived object is");
            None
        })
    }

    /// Calls `f` with the object at `position` of the insertion order, if
    /// there is one (found by the hash the order keeps, without its id).
    /// A cold object history cannot give is logged and read as missing.
    pub fn with_at<R>(&self, position: u32, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.try_with_at(position, f).unwrap_or_else(|e| {
            tracing::error!(error = %e, position, "history could not give an object");
            None
        })
    }

    /// `with_at`, with an error if the object is cold and history cannot
    /// give it (for a command that must not take a missing object for none).
    pub fn try_with_at<R>(&self, position: u32, f: impl FnOnce(&T) -> R) -> Result<Option<R>, StorageError> {
        if self.archive.get().is_some() {
            return Ok(self.value_at_position(position)?.map(|value| f(&value)));
        }
        let Some((hash, _)) = self.order.read().get(position as usize) else { return Ok(None) };
        self.read_slot(hash, |map| Self::slot_at(map, hash, position), |value| f(value))
    }

    /// The object at `seq` of the insertion order, whose id hashes to `hash`
    /// (a pointer copy when it is in memory, a load when it is cold).
    fn value_at(&self, hash: u64, seq: u32) -> Result<Option<Arc<T>>, StorageError> {
        self.read_slot(hash, |map| Self::slot_at(map, hash, seq), Arc::clone)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::Id;
    use crate::state::list::CreatedRange;

    #[derive(Debug, Clone, PartialEq)]
    struct Thing {
        id: Id,
        created: i64,
        version: u32,
    }

    impl Keyed for Thing {
        fn id(&self) -> &str {
            &self.id
        }

        fn created(&self) -> i64 {
            self.created
        }
    }

    fn thing(i: usize, version: u32) -> Arc<Thing> {
        Arc::new(Thing { id: Id::from(format!("thg_{i}").as_str()), created: i as i64, version })
    }

    fn ids(table: &Table<Thing>, params: &ListParams) -> (Vec<String>, bool) {
        let mut out = Vec::new();
        let more = table.page(&Gate::default(), params, |_| true, |t| out.push(t.id.to_string())).unwrap();
        (out, more)
    }

    /// History as an archived table reads it: objects by position.
    #[derive(Default, Clone)]
    struct FakeArchive(Arc<parking_lot::Mutex<std::collections::BTreeMap<u32, Arc<Thing>>>>);

    impl ArchiveRead<Thing> for FakeArchive {
        fn range(&self, from: u32, to: u32) -> Result<Vec<(u32, i64, Arc<Thing>)>, StorageError> {
            Ok(self.0.lock().range(from..to).map(|(p, t)| (*p, t.created, t.clone())).collect())
        }
        fn at(&self, position: u32) -> Result<Option<Arc<Thing>>, StorageError> {
            Ok(self.0.lock().get(&position).cloned())
        }
        fn position(&self, id: &str) -> Result<Option<u32>, StorageError> {
            Ok(self.0.lock().iter().find(|(_, t)| t.id == id).map(|(p, _)| *p))
        }
    }

    /// Everything a reader asks of `table`, as text: pages with each kind of
    /// cursor and a created range, lookups by id and by position, a walk.
    fn reads(table: &Table<Thing>, n: usize) -> Vec<String> {
        let mut out = Vec::new();
        let at = |i: usize| Some(Id::from(format!("thg_{i}").as_str()));
        let mut params = vec![ListParams { limit: 100, ..Default::default() }];
        for i in [1, 5, 4095, 4096, 4097, 6000, n / 2, n - 3] {
            params.push(ListParams { limit: 7, starting_after: at(i), ..Default::default() });
            params.push(ListParams { limit: 7, ending_before: at(i), ..Default::default() });
        }
        let created = CreatedRange { gte: Some(4090), lt: Some(4200), ..Default::default() };
        params.push(ListParams { limit: 100, created: created.clone(), ..Default::default() });
        params.push(ListParams { limit: 100, starting_after: at(n - 1), created, ..Default::default() });
        for p in &params {
            let mut page = Vec::new();
            let more = table.page(&Gate::default(), p, |_| true, |t| page.push(t.id.to_string()));
            out.push(format!("{page:?} {more:?}"));
        }
        for i in [0, 3, 4095, 4096, 7000, n - 1, n + 5] {
            let id = format!("thg_{i}");
            out.push(format!("{id}: {:?} at {:?}", table.with(&id, |t| t.version), table.position(&id)));
            out.push(format!("{i}: {:?}", table.with_at(i as u32, |t| t.id.to_string())));
        }
        let mut walked = Vec::new();
        table.for_each(|t| walked.push(t.id.to_string()));
        walked.sort();
        out.push(format!("walk: {} {:?}", walked.len(), walked.first()));
        out
    }

    /// Memory lets go of an archived table's oldest objects wholly, in
    /// order, once history holds them, and every read answers as before;
    /// one cold out of order waits for those before it; retention forgets
    /// from history too.
    #[test]
    fn archived_objects_read_as_they_did_in_memory() {
        let n = ORDER_CHUNK_IDS * 2 + 900;
        let table = Table::<Thing>::default();
        for i in 0..n {
            table.put(thing(i, 1)).unwrap();
        }
        let before = reads(&table, n);
        let archive = FakeArchive::default();
        table.attach_archive(Box::new(archive.clone()), false);
        let loader = archive.clone();
        table.attach_history(Box::new(move |id| {
            let position = loader.position(id)?;
            Ok(position.and_then(|p| loader.0.lock().get(&p).cloned()))
        }));
        // History takes them oldest first; one further on goes cold early.
        let k = ORDER_CHUNK_IDS + 10;
        let early = k + 5;
        let write = |i: usize| {
            let value = table.with_at(i as u32, |t| Arc::new(t.clone())).unwrap();
            archive.0.lock().insert(i as u32, value.clone());
            // The table's own pointer: what `evict` compares.
            let stored = table.value_at_position(i as u32).unwrap().unwrap();
            assert!(table.evict(&stored));
        };
        write(early);
        assert_eq!(table.first_hot(), 0, "cold out of order: nothing before it is in history yet");
        for i in 0..k {
            write(i);
        }
        assert_eq!(table.first_hot(), k as u32);
        assert_eq!(table.cold_len(), k + 1);
        assert_eq!(table.order.read().first_held(), ORDER_CHUNK_IDS, "the first chunk went");
        assert_eq!(reads(&table, n), before, "reads across memory and history");
        for i in k..early {
            write(i);
        }
        assert_eq!(table.first_hot(), early as u32 + 1, "the early one goes with the rest");
        assert_eq!(table.shards.iter().map(|s| s.read().len()).sum::<usize>(), n - early - 1);
        assert_eq!(reads(&table, n), before);

        // Retention: the oldest 10 go, from history first.
        let mut gone = Vec::new();
        assert_eq!(table.forget_oldest(|_, created| created < 10, 100, |id| gone.push(id)), 10);
        assert_eq!(gone.len(), 10);
        assert_eq!(table.first_live(), 10);
        assert_eq!(table.cold_len(), early + 1 - 10);
        assert_eq!(table.with("thg_3", |_| ()), None, "forgotten, though this history still has it");
        assert_eq!(table.position("thg_3"), None);
        let (newest_first, _) =
            ids(&table, &ListParams { limit: 100, starting_after: Some("thg_20".into()), ..Default::default() });
        assert_eq!(newest_first.last().map(String::as_str), Some("thg_10"));

        // A checkpoint's load: the table starts where memory started.
        let loaded = Table::<Thing>::default();
        loaded.start_archived(10, table.first_hot()).unwrap();
        loaded.attach_archive(Box::new(archive.clone()), false);
        for i in table.first_hot() as usize..n {
            assert_eq!(loaded.put(thing(i, 1)).unwrap(), i as u32, "in its place");
        }
        assert_eq!(reads(&loaded, n), reads(&table, n));
        assert_eq!(loaded.len(), n);
    }

    /// Ids with their versions.
    type Versions = Vec<(String, u32)>;

    /// Every object with its version, as pages newest first show them, then
    /// as a walk finds them (sorted).
    fn versions(table: &Table<Thing>) -> (Versions, Versions) {
        let (mut paged, mut after) = (Vec::new(), None);
        loop {
            let params = ListParams { limit: 100, starting_after: after.clone(), ..Default::default() };
            let mut page = Vec::new();
            let more =
                table.page(&Gate::default(), &params, |_| true, |t| page.push((t.id.to_string(), t.version))).unwrap();
            after = page.last().map(|(id, _)| Id::from(id.as_str()));
            paged.extend(page);
            if !more {
                break;
            }
        }
        let mut walked = Vec::new();
        table.for_each(|t| walked.push((t.id.to_string(), t.version)));
        walked.sort();
        (paged, walked)
    }

    /// An archived object that changes again (a table attached with
    /// `revives`) takes its new version at its old position, below
    /// `first_hot`, and every read shows it as a table that kept everything
    /// in memory would; once history holds it, memory lets go of it again.
    /// A new object never asks history, and a checkpoint's load revives an
    /// object in its place too.
    #[test]
    fn an_archived_object_changes_in_place() {
        let n = ORDER_CHUNK_IDS * 2 + 300;
        let (table, memory) = (Table::<Thing>::default(), Table::<Thing>::default());
        for i in 0..n {
            table.put(thing(i, 1)).unwrap();
            memory.put(thing(i, 1)).unwrap();
        }
        let archive = FakeArchive::default();
        table.attach_archive(Box::new(archive.clone()), true);
        let loader = archive.clone();
        table.attach_history(Box::new(move |id| {
            let position = loader.position(id)?;
            Ok(position.and_then(|p| loader.0.lock().get(&p).cloned()))
        }));
        let write = |table: &Table<Thing>, i: usize| {
            let stored = table.value_at_position(i as u32).unwrap().unwrap();
            archive.0.lock().insert(i as u32, stored.clone());
            assert!(table.evict(&stored));
        };
        let k = ORDER_CHUNK_IDS + 10;
        for i in 0..k {
            write(&table, i);
        }
        assert_eq!(table.first_hot(), k as u32);
        assert_eq!(table.archived_ids(), ArchivedIds::UpTo("thg_999".into()), "the greatest archived id");

        // Archived ones change; one in memory changes; a new one comes.
        for (i, version) in [(3, 2), (4095, 2), (3, 3), (k + 7, 2), (n, 1)] {
            let (position, new) = table.put_telling(thing(i, version)).unwrap();
            assert_eq!(memory.put_telling(thing(i, version)).unwrap(), (position, new), "thg_{i}");
        }
        assert_eq!(table.revived_len(), 2);
        assert_eq!(table.first_hot(), k as u32, "memory still archives from where it was");
        assert_eq!(table.with("thg_3", |t| t.version), Some(3));
        assert_eq!(table.with_at(4095, |t| t.version), Some(2));
        assert_eq!(table.position("thg_3"), Some(3));
        assert!(table.contains("thg_5") && table.contains("thg_3") && !table.contains("thg_99999"));
        assert_eq!(versions(&table), versions(&memory), "pages and walks across memory and history");
        assert_eq!(reads(&table, n), reads(&memory, n));

        // A checkpoint's load: archived ids and the revived version in its place.
        let loaded = Table::<Thing>::default();
        loaded.start_archived(0, table.first_hot()).unwrap();
        assert_eq!(loaded.archived_ids(), ArchivedIds::Any, "until the checkpoint says which");
        loaded.set_archived_ids(table.archived_ids());
        loaded.attach_archive(Box::new(archive.clone()), true);
        assert_eq!(loaded.put_telling(thing(3, 3)).unwrap(), (3, false));
        for i in k..=n {
            let version = memory.with(&format!("thg_{i}"), |t| t.version).unwrap();
            assert_eq!(loaded.put_telling(thing(i, version)).unwrap(), (i as u32, true), "in its place");
        }
        loaded.put(thing(4095, 2)).unwrap();
        assert_eq!(versions(&loaded), versions(&memory));

        // History takes the new versions: memory lets go of them wholly.
        for i in [3, 4095] {
            write(&table, i);
        }
        assert_eq!(table.revived_len(), 0);
        assert_eq!(table.shards.iter().map(|s| s.read().len()).sum::<usize>(), n + 1 - k);
        assert_eq!(versions(&table), versions(&memory));
        assert_eq!(table.with("thg_3", |t| t.version), Some(3), "history's version now");
        // An older version's eviction lets go of nothing.
        table.put(thing(3, 4)).unwrap();
        assert!(!table.evict(&thing(3, 3)));
        assert_eq!(table.with_at(3, |t| t.version), Some(4));
    }

    /// A full table refuses a new object (put or upsert) and is left as it
    /// was; replacing an object it holds still works.
    #[test]
    fn a_full_table_refuses_new_objects_and_keeps_its_own() {
        let table = Table::<Thing> { objects_max: 3, ..Default::default() };
        for i in 0..3 {
            assert_eq!(table.put(thing(i, 1)).unwrap(), i as u32);
        }
        let refused = table.put(thing(3, 1)).unwrap_err().to_string();
        assert!(refused.contains("thg_3") && refused.contains("3 objects"), "{refused}");
        assert!(table.upsert("thg_4", |_| Some((*thing(4, 1)).clone())).is_err());
        assert_eq!(table.len(), 3);
        assert!(!table.contains("thg_3") && !table.contains("thg_4"));
        assert_eq!(table.put(thing(1, 2)).unwrap(), 1, "a new version takes no new position");
        assert_eq!(table.with("thg_1", |t| t.version), Some(2));
        assert_eq!(ids(&table, &ListParams::default()), (vec!["thg_2".into(), "thg_1".into(), "thg_0".into()], false));
    }

    #[test]
    fn retention_forgets_from_the_oldest_and_lists_skip_what_went() {
        let table = Table::<Thing>::default();
        for i in [1, 2, 3, 9, 4, 5] {
            table.put(thing(i, 1)).unwrap();
        }
        assert_eq!(table.forget_oldest(|_, created| created < 5, 2, |_| {}), 2, "at most `max`");
        assert_eq!(
            table.forget_oldest(|_, created| created < 5, 10, |_| {}),
            1,
            "stops at the first one kept (created 9)"
        );
        assert!(!table.contains("thg_1") && !table.contains("thg_3") && table.contains("thg_9"));
        let all = ListParams { limit: 100, ..Default::default() };
        assert_eq!(ids(&table, &all).0, vec!["thg_5", "thg_4", "thg_9"]);
        // A cursor at a forgotten object is unknown, as for any missing id.
        let at_gone = ListParams { starting_after: Some(Id::from("thg_2")), ..Default::default() };
        assert!(table.page(&Gate::default(), &at_gone, |_| true, |_| {}).is_err());
        // Later, once 9 expires too, what it held back goes with it.
        assert_eq!(table.forget_oldest(|_, created| created < 10, 10, |_| {}), 3);
        assert_eq!(ids(&table, &all).0, Vec::<String>::new());
        assert_eq!(table.len(), 6, "the order keeps its entries; only objects go");
        table.put(thing(7, 1)).unwrap();
        assert_eq!(ids(&table, &all).0, vec!["thg_7"]);
    }

    /// Enough objects to grow every shard's map several times: each is found
    /// by its id after the moves, versions replace in place, lists walk the
    /// insertion order, and a shrink keeps everything findable.
    #[test]
    fn finds_replaces_and_lists_through_growth() {
        let table = Table::<Thing>::default();
        let n = 20_000;
        for i in 0..n {
            table.put(thing(i, 1)).unwrap();
        }
        assert_eq!(table.len(), n);
        for i in (0..n).step_by(3) {
            table.put(thing(i, 2)).unwrap();
        }
        assert_eq!(table.len(), n, "a new version is not a new object");
        assert_eq!(table.update("thg_7", |t| t.version = 9), Some(()));
        assert_eq!(table.update("thg_missing", |t| t.version = 9), None);
        table.shrink_to_fit();
        for i in 0..n {
            let want = if i == 7 {
                9
            } else if i % 3 == 0 {
                2
            } else {
                1
            };
            assert_eq!(table.with(&format!("thg_{i}"), |t| t.version), Some(want), "thg_{i}");
        }
        assert!(!table.contains("thg_20000") && !table.contains("thg_") && table.contains("thg_0"));

        let (page, more) = ids(&table, &ListParams { limit: 3, ..Default::default() });
        assert_eq!((page, more), (vec!["thg_19999".into(), "thg_19998".into(), "thg_19997".into()], true));
        let after = ListParams { limit: 2, starting_after: Some(Id::from("thg_2")), ..Default::default() };
        assert_eq!(ids(&table, &after), (vec!["thg_1".into(), "thg_0".into()], false));
        let created = CreatedRange { gte: Some(5000), lt: Some(5002), ..Default::default() };
        assert_eq!(
            ids(&table, &ListParams { created, ..Default::default() }),
            (vec!["thg_5001".into(), "thg_5000".into()], false)
        );
        let unknown = ListParams { starting_after: Some(Id::from("thg_nope")), ..Default::default() };
        assert!(table.page(&Gate::default(), &unknown, |_| true, |_| {}).is_err());

        let mut in_order = Vec::new();
        table.for_each_placed(|seq, t| match t {
            Stored::Hot(t) => in_order.push((seq, t.created, t.version)),
            Stored::Cold(id) => panic!("{id} is not cold"),
        });
        in_order.sort_unstable();
        assert!(in_order.iter().enumerate().all(|(i, (seq, ..))| *seq == i as u32));
        let in_order: Vec<(i64, u32)> = in_order.into_iter().map(|(_, created, version)| (created, version)).collect();
        assert_eq!(in_order.len(), n);
        assert!(in_order.iter().enumerate().all(|(i, (created, _))| *created == i as i64));
        assert_eq!(in_order[3].1, 2);

        let at = table.position("thg_4321").unwrap();
        assert_eq!(at, 4321);
        assert_eq!(table.with_at(at, |t| t.id.to_string()), Some("thg_4321".into()));
        assert_eq!(table.with_at(n as u32, |_| ()), None);
        assert_eq!(table.position("thg_nope"), None);
    }

    /// Records that each replace two objects far apart in the table (the
    /// oldest and the newest) with the same new version, while a reader pages
    /// through a filter that keeps only those two, so its scan crosses every
    /// chunk: every page shows both at one version, never one of each.
    #[test]
    fn a_page_never_shows_part_of_a_record() {
        const VERSIONS: u32 = 1_000;
        let gate = Gate::default();
        let table = Table::<Thing>::default();
        let n = LIST_SCAN_CHUNK * 3;
        for i in 0..n {
            table.put(thing(i, 0)).unwrap();
        }
        let (oldest, newest) = ("thg_0".to_string(), format!("thg_{}", n - 1));
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let (mut pages, mut mixed) = (0, 0);
                while !done.load(Ordering::Acquire) || pages == 0 {
                    let mut seen = Vec::new();
                    let keep = |t: &Thing| *t.id == *oldest || *t.id == *newest;
                    table.page(&gate, &ListParams::default(), keep, |t| seen.push(t.version)).unwrap();
                    assert_eq!(seen.len(), 2);
                    mixed += usize::from(seen[0] != seen[1]);
                    pages += 1;
                }
                (pages, mixed)
            });
            for version in 1..=VERSIONS {
                let _whole = gate.apply();
                table.put(thing(0, version)).unwrap();
                // Room for a reader between the two changes, were it let in.
                std::thread::yield_now();
                table.put(thing(n - 1, version)).unwrap();
            }
            done.store(true, Ordering::Release);
            let (pages, mixed) = reader.join().unwrap();
            assert_eq!(mixed, 0, "{mixed} of {pages} pages mixed two records");
        });
        assert_eq!(table.with("thg_0", |t| t.version), Some(VERSIONS));
    }

    /// `ending_before`: the page just newer than the cursor, newest first,
    /// across chunks and filters; `has_more` when newer ones remain.
    #[test]
    fn ending_before_pages_forwards_and_emits_newest_first() {
        let table = Table::<Thing>::default();
        let n = LIST_SCAN_CHUNK * 2 + 5;
        for i in 0..n {
            table.put(thing(i, 1)).unwrap();
        }
        let before =
            |id: &str, limit: usize| ListParams { limit, ending_before: Some(Id::from(id)), ..Default::default() };
        let want = |ids: &[usize]| ids.iter().map(|i| format!("thg_{i}")).collect::<Vec<_>>();
        assert_eq!(ids(&table, &before("thg_2", 3)), (want(&[5, 4, 3]), true));
        assert_eq!(ids(&table, &before(&format!("thg_{}", n - 4), 10)), (want(&[n - 1, n - 2, n - 3]), false));
        assert_eq!(ids(&table, &before(&format!("thg_{}", n - 1), 10)), (vec![], false), "nothing is newer");
        // Exactly `limit` newer: no more.
        assert_eq!(ids(&table, &before(&format!("thg_{}", n - 3), 2)), (want(&[n - 1, n - 2]), false));
        // A filter that keeps few objects scans forwards across every chunk.
        let mut seen = Vec::new();
        let more = table
            .page(&Gate::default(), &before("thg_0", 2), |t| t.created % 200 == 0, |t| seen.push(t.id.to_string()))
            .unwrap();
        assert_eq!((seen, more), (want(&[400, 200]), false));
        let created = CreatedRange { lt: Some(10), ..Default::default() };
        assert_eq!(ids(&table, &ListParams { created, ..before("thg_5", 100) }), (want(&[9, 8, 7, 6]), false));
        // Paging back and forth gives the same pages.
        let (older, _) =
            ids(&table, &ListParams { limit: 3, starting_after: Some(Id::from("thg_50")), ..Default::default() });
        assert_eq!(older, want(&[49, 48, 47]));
        assert_eq!(ids(&table, &before("thg_47", 3)).0, want(&[50, 49, 48]));
        let err = table.page(&Gate::default(), &before("thg_nope", 3), |_| true, |_| {}).unwrap_err();
        assert_eq!((err.status, err.param.as_deref()), (400, Some("ending_before")));
    }

    #[test]
    fn upsert_inserts_or_changes_in_place() {
        let table = Table::<Thing>::default();
        table.upsert("thg_1", |old| old.map_or(Some(Thing::clone(&thing(1, 1))), |_| None)).unwrap();
        table
            .upsert("thg_1", |old| {
                old.expect("stored").version = 5;
                None
            })
            .unwrap();
        table.upsert("thg_2", |_| None).unwrap();
        assert_eq!(table.with("thg_1", |t| t.version), Some(5));
        assert_eq!(table.len(), 1, "an upsert that returns nothing for a new id adds nothing");
    }
}
