//! A sharded id -> object map that also remembers insertion order for lists.
//!
//! Values are `Arc<T>`: an insert or a map resize moves a pointer, not a
//! few-hundred-byte object; an event shares the payment or transaction it
//! shows instead of copying it; and a snapshot copies pointers. A change in
//! place (`upsert`, `update`) goes through `Arc::make_mut`, so a value someone
//! still holds (an event, a snapshot) keeps the version it had.
//!
//! Hashing is foldhash (ids are random already, so no need for SipHash's
//! flood resistance); every map and the shard picker get their own seed, so
//! the keys of one shard do not share the bits their map indexes buckets by.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use foldhash::fast::RandomState;
use parking_lot::RwLock;

use super::list::ListParams;
use super::order::Order;
use crate::config::{LIST_SCAN_CHUNK, STATE_SHARDS};
use crate::domain::{Id, IdKind};
use crate::error::ApiError;

struct Slot<T> {
    /// Position in `order`: lists walk `order` backwards (newest first).
    seq: usize,
    value: Arc<T>,
}

type Shard<T> = RwLock<HashMap<Id, Slot<T>, RandomState>>;

pub struct Table<T> {
    shards: Box<[Shard<T>]>,
    /// Ids with their `created`, in the order they were first applied.
    order: RwLock<Order>,
    hasher: RandomState,
}

impl<T> Default for Table<T> {
    fn default() -> Self {
        Table {
            shards: (0..STATE_SHARDS).map(|_| RwLock::new(HashMap::default())).collect(),
            order: RwLock::new(Order::default()),
            hasher: RandomState::default(),
        }
    }
}

impl<T> Table<T> {
    fn shard(&self, id: &str) -> &Shard<T> {
        &self.shards[(self.hasher.hash_one(id) as usize) % self.shards.len()]
    }

    /// Calls `f` with the object, if there is one.
    pub fn with<R>(&self, id: &str, f: impl FnOnce(&T) -> R) -> Option<R> {
        self.shard(id).read().get(id).map(|slot| f(&slot.value))
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

    pub fn contains(&self, id: &str) -> bool {
        self.shard(id).read().contains_key(id)
    }

    /// Makes room for `additional` more objects, spread over the shards
    /// (ids are random, so each shard gets about its share, plus a sixteenth
    /// for the shards that get more than their share).
    pub fn reserve(&self, additional: usize) {
        let share = additional.div_ceil(self.shards.len());
        let per_shard = share + share / 16;
        for shard in self.shards.iter() {
            shard.write().reserve(per_shard);
        }
        self.order.write().reserve(additional);
    }

    /// Gives back the spare capacity that growing during replay left behind.
    pub fn shrink_to_fit(&self) {
        for shard in self.shards.iter() {
            shard.write().shrink_to_fit();
        }
        self.order.write().shrink_to_fit();
    }

    pub fn len(&self) -> usize {
        self.order.read().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Inserts `value` as `id`, or replaces the stored version.
    pub fn put(&self, id: Id, created: i64, value: Arc<T>) {
        let mut shard = self.shard(&id).write();
        match shard.entry(id) {
            Entry::Occupied(mut slot) => slot.get_mut().value = value,
            Entry::Vacant(slot) => {
                let seq = self.push_order(slot.key(), created);
                slot.insert(Slot { seq, value });
            }
        }
    }

    /// Inserts or updates `id`: `f` gets the current object (to change in place,
    /// returning `None`) or `None` for a new one (returning the object to insert,
    /// or a replacement).
    pub fn upsert(&self, id: Id, created: i64, f: impl FnOnce(Option<&mut T>) -> Option<T>)
    where
        T: Clone,
    {
        let mut shard = self.shard(&id).write();
        match shard.entry(id) {
            Entry::Occupied(mut slot) => {
                let slot = slot.get_mut();
                if let Some(value) = f(Some(Arc::make_mut(&mut slot.value))) {
                    slot.value = Arc::new(value);
                }
            }
            Entry::Vacant(slot) => {
                if let Some(value) = f(None) {
                    let seq = self.push_order(slot.key(), created);
                    slot.insert(Slot { seq, value: Arc::new(value) });
                }
            }
        }
    }

    /// Appends a new id to `order`; returns its position.
    ///
    /// Called with the id's shard write-locked: one lookup per insert. The
    /// lock order is always shard, then order; nothing takes a shard while
    /// holding `order` (readers copy a chunk of it and let go first), so this
    /// cannot deadlock. Only one thread applies to a table (the WAL's apply thread, or
    /// one lane of recovery before it), so inserts never race each other.
    fn push_order(&self, id: &Id, created: i64) -> usize {
        let mut order = self.order.write();
        order.push((id.clone(), created))
    }

    /// Changes an existing object in place; `None` if there is none.
    pub fn update<R>(&self, id: &str, f: impl FnOnce(&mut T) -> R) -> Option<R>
    where
        T: Clone,
    {
        self.shard(id).write().get_mut(id).map(|slot| f(Arc::make_mut(&mut slot.value)))
    }

    /// Calls `f` for every object, in no particular order (used by checks).
    pub fn for_each(&self, mut f: impl FnMut(&T)) {
        for shard in self.shards.iter() {
            for slot in shard.read().values() {
                f(&slot.value);
            }
        }
    }

    /// Calls `f` for every object in insertion order (oldest first), as
    /// snapshots need so that a restored table lists in the same order.
    ///
    /// For snapshots, on the WAL's apply thread (nothing else writes): it
    /// holds every shard's read lock at once (in shard order, so it cannot
    /// deadlock with a writer, which takes one at a time) and places each
    /// object by its `seq`, with no per-object hashing or locking.
    pub fn for_each_in_order(&self, mut f: impl FnMut(&Arc<T>)) {
        let len = self.order.read().len();
        let guards: Vec<_> = self.shards.iter().map(|shard| shard.read()).collect();
        let mut in_order: Vec<Option<&Arc<T>>> = vec![None; len];
        for guard in &guards {
            for slot in guard.values() {
                if let Some(place) = in_order.get_mut(slot.seq) {
                    *place = Some(&slot.value);
                }
            }
        }
        for value in in_order.into_iter().flatten() {
            f(value);
        }
    }

    /// One page of a list, newest first: `emit` is called for each object that
    /// passes `params` and `keep`. Returns `has_more`.
    pub fn page(
        &self,
        params: &ListParams,
        keep: impl Fn(&T) -> bool,
        mut emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        let start = match &params.starting_after {
            Some(cursor) => match self.shard(cursor).read().get(cursor.as_str()) {
                Some(slot) => slot.seq,
                None => return Err(ApiError::missing_reference("starting_after", cursor)),
            },
            None => usize::MAX,
        };
        let mut end = start.min(self.order.read().len());
        let mut emitted = 0;
        // Walk `order` backwards a chunk at a time, never holding the order lock
        // while a shard is read (the writer takes them one at a time too).
        while end > 0 {
            let begin = end.saturating_sub(LIST_SCAN_CHUNK);
            let chunk = self.order.read().copy_range(begin, end);
            end = begin;
            for (id, created) in chunk.iter().rev() {
                if !params.created.contains(*created) {
                    continue;
                }
                let shard = self.shard(id).read();
                let Some(slot) = shard.get(id) else { continue };
                if !keep(&slot.value) {
                    continue;
                }
                if emitted == params.limit {
                    return Ok(true);
                }
                emit(&slot.value);
                emitted += 1;
            }
        }
        Ok(false)
    }

    /// Like `page`, over a subset of this table's ids given oldest first
    /// (a per-account index, say); `created_of` reads an object's `created`.
    pub fn page_subset(
        &self,
        ids: &[Id],
        params: &ListParams,
        created_of: impl Fn(&T) -> i64,
        keep: impl Fn(&T) -> bool,
        mut emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        let end = match &params.starting_after {
            Some(cursor) => ids
                .iter()
                .rposition(|id| id == cursor)
                .ok_or_else(|| ApiError::missing_reference("starting_after", cursor))?,
            None => ids.len(),
        };
        let mut emitted = 0;
        for id in ids[..end].iter().rev() {
            let shard = self.shard(id).read();
            let Some(slot) = shard.get(id) else { continue };
            if !params.created.contains(created_of(&slot.value)) || !keep(&slot.value) {
                continue;
            }
            if emitted == params.limit {
                return Ok(true);
            }
            emit(&slot.value);
            emitted += 1;
        }
        Ok(false)
    }
}
