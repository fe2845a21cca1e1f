//! Secondary indexes for filtered lists: a table's objects grouped by one
//! field that never changes over an object's life (a payment's customer, a
//! refund's payment, a redemption's account, an event's type, a transaction's
//! type, a delivery's endpoint), each group as
//! positions in the table's insertion order, oldest first (4 bytes each).
//!
//! A filtered list walks its group instead of the whole table
//! (`State::indexed_page`), so `GET /v1/payments?customer=` costs the
//! customer's payments, not every payment. An account's points transactions
//! are the same kind of list, kept in the account's own entry
//! (`account_index.rs`); both page through `walk_back` and `walk_forward`.
//!
//! Positions only grow, so a group is sorted and a cursor is found by binary
//! search; a cursor outside the group (any object of the table) pages from
//! where it would sit, as an unfiltered scan would. Only the thread that
//! applies to the table pushes, in insertion order. A group is walked a
//! `LIST_SCAN_CHUNK` of positions at a time, copied out of its lock, so the
//! apply thread never waits behind a long list; what lies before a page's
//! end never changes (groups only grow, at their newest end; retention only
//! trims their oldest end), and the end itself is fixed under the apply gate.

use std::collections::HashMap;
use std::hash::BuildHasher;
use std::ops::Deref;

use foldhash::fast::RandomState;
use parking_lot::RwLock;
use thin_vec::ThinVec;

use super::list::{Cursor, ListParams, PageFill};
use super::table::{Keyed, Table};
use super::State;
use crate::config::{LIST_SCAN_CHUNK, STATE_SHARDS};
use crate::domain::Id;
use crate::error::ApiError;

/// One shard of an index: each key's positions, oldest first.
type Groups = RwLock<HashMap<Id, Vec<u32>>>;

pub struct Index {
    shards: Box<[Groups]>,
    hasher: RandomState,
}

impl Default for Index {
    fn default() -> Self {
        Index { shards: (0..STATE_SHARDS).map(|_| RwLock::default()).collect(), hasher: RandomState::default() }
    }
}

impl Index {
    fn shard(&self, key: &str) -> &Groups {
        &self.shards[(self.hasher.hash_one(key) as usize) % self.shards.len()]
    }

    /// Every key with a group (a copy: the groups are read a chunk at a time, `for_each_position`).
    pub fn keys(&self) -> Vec<Id> {
        self.shards.iter().flat_map(|shard| shard.read().keys().cloned().collect::<Vec<_>>()).collect()
    }

    /// Calls `f` with every position of `key`'s group, oldest first, copied
    /// out a `LIST_SCAN_CHUNK` at a time (the apply thread never waits
    /// behind it). Each chunk starts after the last position seen, not at an
    /// offset, so retention trimming the group's old end meanwhile skips nothing.
    pub fn for_each_position(&self, key: &str, f: impl FnMut(u32)) {
        self.for_each_position_from(key, 0, f)
    }

    /// `for_each_position`, from position `from` on.
    pub fn for_each_position_from(&self, key: &str, from: u32, mut f: impl FnMut(u32)) {
        let mut after = from.checked_sub(1);
        while let Some(chunk) = self.chunk_after(key, after) {
            after = chunk.last().copied();
            chunk.into_iter().for_each(&mut f);
        }
    }

    /// Up to `LIST_SCAN_CHUNK` positions of `key`'s group after `after`; `None` past its end.
    fn chunk_after(&self, key: &str, after: Option<u32>) -> Option<Vec<u32>> {
        let shard = self.shard(key).read();
        let group = shard.get(key)?;
        let begin = after.map_or(0, |a| group.partition_point(|p| *p <= a));
        let end = group.len().min(begin + LIST_SCAN_CHUNK);
        (begin < end).then(|| group[begin..end].to_vec())
    }

    /// Adds the object at `position` (newer than every position already in
    /// `key`'s group) to the group.
    pub(super) fn push(&self, key: &str, position: u32) {
        let mut shard = self.shard(key).write();
        match shard.get_mut(key) {
            Some(group) => group.push(position),
            None => {
                shard.insert(Id::from(key), vec![position]);
            }
        }
    }

    /// Adds `positions` (ascending) to `key`'s group (`merge_into`).
    pub(super) fn merge(&self, key: &str, positions: &[u32]) {
        if positions.is_empty() {
            return;
        }
        let mut shard = self.shard(key).write();
        match shard.get_mut(key) {
            Some(group) => merge_into(group, positions),
            None => {
                shard.insert(Id::from(key), positions.to_vec());
            }
        }
    }

    /// Empties every group.
    pub(super) fn clear(&self) {
        self.shards.iter().for_each(|shard| shard.write().clear());
    }

    /// How many positions all groups hold together.
    pub(super) fn total(&self) -> usize {
        self.shards.iter().map(|shard| shard.read().values().map(Vec::len).sum::<usize>()).sum()
    }

    /// Drops from every group the positions before `first_live` (objects
    /// forgotten past retention, oldest first).
    pub(super) fn trim_before(&self, first_live: u32) {
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            shard.retain(|_, group| {
                let gone = group.partition_point(|p| *p < first_live);
                if gone > 0 {
                    group.drain(..gone);
                }
                !group.is_empty()
            });
        }
    }

    /// A copy of `key`'s group (an account's lots: a few hundred at most in
    /// a program whose lots expire).
    pub fn positions(&self, key: &str) -> Vec<u32> {
        self.shard(key).read().get(key).cloned().unwrap_or_default()
    }

    fn len(&self, key: &str) -> usize {
        self.shard(key).read().get(key).map_or(0, Vec::len)
    }

    /// How many of `key`'s positions are before `position` (`at_or_after`:
    /// also `position` itself).
    fn count_before(&self, key: &str, position: u32, at_or_after: bool) -> usize {
        let shard = self.shard(key).read();
        let Some(group) = shard.get(key) else { return 0 };
        group.partition_point(|p| *p < position || (at_or_after && *p == position))
    }

    fn chunk(&self, key: &str, begin: usize, end: usize) -> Option<Vec<u32>> {
        self.shard(key).read().get(key).and_then(|g| g.get(begin..end)).map(<[u32]>::to_vec)
    }
}

/// Adds `positions` (ascending) to `group` (ascending), each position once
/// (a checkpoint's entries beside those its objects in memory put as they
/// loaded). Only the group's part from the first new position on is
/// merged: a checkpoint's parts come in order, so each costs itself and the
/// few in memory above it, not the whole group.
pub(super) fn merge_into(group: &mut impl PositionList, positions: &[u32]) {
    let Some(first) = positions.first() else { return };
    let at = group.partition_point(|p| p < first);
    let tail = group[at..].to_vec();
    group.truncate_to(at);
    let mut merged = Vec::with_capacity(tail.len() + positions.len());
    let (mut i, mut j) = (0, 0);
    while i < tail.len() || j < positions.len() {
        let next = match (tail.get(i), positions.get(j)) {
            (Some(x), Some(y)) if x <= y => *x,
            (Some(_), Some(y)) => *y,
            (Some(x), None) => *x,
            (None, Some(y)) => *y,
            (None, None) => break,
        };
        i += usize::from(tail.get(i) == Some(&next));
        j += usize::from(positions.get(j) == Some(&next));
        merged.push(next);
    }
    group.extend(merged);
}

/// A list of positions `merge_into` grows: an index's group, or one of an
/// account's lists (`AccountEntry`, 8 bytes each).
pub(super) trait PositionList: Deref<Target = [u32]> + Extend<u32> {
    fn truncate_to(&mut self, len: usize);
}

impl PositionList for Vec<u32> {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

impl PositionList for ThinVec<u32> {
    fn truncate_to(&mut self, len: usize) {
        self.truncate(len);
    }
}

/// Offers `table`'s objects at the group entries `..end`, newest first, to
/// `page`; `chunk(begin, end)` copies entries out. Returns `has_more`.
pub(super) fn walk_back<T: Keyed, K: Fn(&T) -> bool, E: FnMut(&T)>(
    table: &Table<T>,
    mut end: usize,
    chunk: impl Fn(usize, usize) -> Option<Vec<u32>>,
    page: &mut PageFill<'_, K, E>,
) -> bool {
    while end > 0 {
        let begin = end.saturating_sub(LIST_SCAN_CHUNK);
        // A group only grows at its end, so the range is there; `None` keeps a bug from panicking.
        let Some(positions) = chunk(begin, end) else { break };
        end = begin;
        for position in positions.into_iter().rev() {
            if table.with_at(position, |t| page.offer(t, t.created())) == Some(true) {
                return true;
            }
        }
    }
    false
}

/// Offers `table`'s objects at the group entries `begin..stop`, oldest first,
/// to `page` (an `ending_before` page, emitted newest first by its caller).
/// Returns `has_more`.
pub(super) fn walk_forward<T: Keyed, K: Fn(&T) -> bool, E: FnMut(&T)>(
    table: &Table<T>,
    mut begin: usize,
    stop: usize,
    chunk: impl Fn(usize, usize) -> Option<Vec<u32>>,
    page: &mut PageFill<'_, K, E>,
) -> bool {
    while begin < stop {
        let end = (begin + LIST_SCAN_CHUNK).min(stop);
        let Some(positions) = chunk(begin, end) else { break };
        begin = end;
        for position in positions {
            if table.with_at(position, |t| page.offer(t, t.created())) == Some(true) {
                return true;
            }
        }
    }
    false
}

impl State {
    /// One page of the objects of `table` in `key`'s group of `index`, newest
    /// first, as the table was between two records: `emit` is called for each
    /// that passes `params` and `keep`. Returns `has_more`.
    pub fn indexed_page<T: Keyed + Clone>(
        &self,
        table: &Table<T>,
        index: &Index,
        key: &str,
        params: &ListParams,
        keep: impl Fn(&T) -> bool,
        emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        let between_records = self.gate.read();
        let len = index.len(key);
        let at =
            start_in_group(table, params, len, |position, at_or_after| index.count_before(key, position, at_or_after))?;
        drop(between_records);
        Ok(group_page(table, params, len, at, |begin, end| index.chunk(key, begin, end), keep, emit))
    }

    /// `indexed_page` over a group given whole: `group(state)` copies its
    /// positions, ascending, between two records (`email_index.rs`).
    pub fn positions_page<T: Keyed + Clone>(
        &self,
        table: &Table<T>,
        group: impl FnOnce(&State) -> Vec<u32>,
        params: &ListParams,
        keep: impl Fn(&T) -> bool,
        emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        let between_records = self.gate.read();
        let positions = group(self);
        let at = start_in_group(table, params, positions.len(), |position, at_or_after| {
            positions.partition_point(|p| *p < position || (at_or_after && *p == position))
        })?;
        drop(between_records);
        let chunk = |begin: usize, end: usize| positions.get(begin..end).map(<[u32]>::to_vec);
        Ok(group_page(table, params, positions.len(), at, chunk, keep, emit))
    }
}

/// Where a page of a group of `len` positions starts: its end without a
/// cursor, else how many of its positions lie before the cursor's object
/// (`count_before(position, at_or_after)`; `ending_before` counts the
/// object itself). Under the apply gate, with the group's length read there.
fn start_in_group<T: Keyed>(
    table: &Table<T>,
    params: &ListParams,
    len: usize,
    count_before: impl Fn(u32, bool) -> usize,
) -> Result<usize, ApiError> {
    let cursor = params.cursor();
    match cursor {
        Cursor::Newest => Ok(len),
        Cursor::After(id) | Cursor::Before(id) => {
            let Some(position) = table.position(id) else {
                return Err(ApiError::missing_reference(cursor.param(), id));
            };
            Ok(count_before(position, matches!(cursor, Cursor::Before(_))))
        }
    }
}

/// The page of a group from entry `at` (`start_in_group`): backwards, or
/// forwards for `ending_before` and then emitted newest first.
fn group_page<T: Keyed + Clone>(
    table: &Table<T>,
    params: &ListParams,
    len: usize,
    at: usize,
    chunk: impl Fn(usize, usize) -> Option<Vec<u32>>,
    keep: impl Fn(&T) -> bool,
    mut emit: impl FnMut(&T),
) -> bool {
    if let Cursor::Before(_) = params.cursor() {
        let mut taken: Vec<T> = Vec::new();
        let more = walk_forward(table, at, len, chunk, &mut PageFill::new(params, keep, |t: &T| taken.push(t.clone())));
        taken.iter().rev().for_each(emit);
        return more;
    }
    walk_back(table, at, chunk, &mut PageFill::new(params, keep, &mut emit))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::state::list::CreatedRange;

    #[derive(Debug, Clone)]
    struct Item {
        id: Id,
        created: i64,
    }

    impl Keyed for Item {
        fn id(&self) -> &str {
            &self.id
        }
        fn created(&self) -> i64 {
            self.created
        }
    }

    /// `n` items alternating between groups "a" and "b" (more than a scan chunk each).
    fn filled(n: usize) -> (Table<Item>, Index) {
        let (table, index) = (Table::<Item>::default(), Index::default());
        for i in 0..n {
            let group = if i % 2 == 0 { "a" } else { "b" };
            let item = Item { id: Id::from(format!("itm_{i}")), created: i as i64 };
            let position = table.put(Arc::new(item)).unwrap();
            index.push(group, position);
        }
        (table, index)
    }

    fn page(state: &State, t: &Table<Item>, index: &Index, key: &str, params: &ListParams) -> (Vec<usize>, bool) {
        let mut got = Vec::new();
        let more = state
            .indexed_page(t, index, key, params, |_| true, |i: &Item| got.push(i.id[4..].parse().unwrap()))
            .unwrap();
        (got, more)
    }

    /// A checkpoint's parts merge into a group in order, each position
    /// once, beside those put as the objects in memory loaded.
    #[test]
    fn merged_positions_keep_a_group_ascending_and_each_once() {
        let mut group = vec![3, 50, 70];
        merge_into(&mut group, &[1, 2, 3, 4]);
        assert_eq!(group, vec![1, 2, 3, 4, 50, 70]);
        merge_into(&mut group, &[5, 60, 70, 80]);
        assert_eq!(group, vec![1, 2, 3, 4, 5, 50, 60, 70, 80]);
        merge_into(&mut group, &[]);
        merge_into(&mut group, &[90]);
        assert_eq!(group, vec![1, 2, 3, 4, 5, 50, 60, 70, 80, 90]);
        let index = Index::default();
        index.merge("k", &[4, 9]);
        index.push("k", 12);
        index.merge("k", &[1, 9, 10]);
        assert_eq!(index.positions("k"), vec![1, 4, 9, 10, 12]);
        assert_eq!(index.total(), 5);
    }

    #[test]
    fn a_group_pages_both_ways_and_takes_any_cursor_of_the_table() {
        let state = State::new();
        let n = 2 * LIST_SCAN_CHUNK + 20;
        let (table, index) = filled(n);
        let last_a = n - 2;
        let first = ListParams { limit: 3, ..Default::default() };
        assert_eq!(page(&state, &table, &index, "a", &first), (vec![last_a, last_a - 2, last_a - 4], true));
        // Past a chunk boundary to the end, from a cursor in the group and from one outside it.
        let after = |id: &str| ListParams { limit: 100, starting_after: Some(Id::from(id)), ..Default::default() };
        assert_eq!(page(&state, &table, &index, "a", &after("itm_6")), (vec![4, 2, 0], false));
        assert_eq!(page(&state, &table, &index, "a", &after("itm_7")), (vec![6, 4, 2, 0], false));
        // ending_before: the ones just newer, newest first; has_more says newer ones remain.
        let before = ListParams { limit: 2, ending_before: Some(Id::from("itm_3")), ..Default::default() };
        assert_eq!(page(&state, &table, &index, "a", &before), (vec![6, 4], true));
        let before_last =
            ListParams { limit: 5, ending_before: Some(Id::from(format!("itm_{}", last_a - 2))), ..Default::default() };
        assert_eq!(page(&state, &table, &index, "a", &before_last), (vec![last_a], false));
        // Filters and bounds still apply; unknown groups are empty; unknown cursors are an error.
        let created = ListParams { created: CreatedRange { lte: Some(5), ..Default::default() }, ..Default::default() };
        assert_eq!(page(&state, &table, &index, "b", &created), (vec![5, 3, 1], false));
        assert_eq!(page(&state, &table, &index, "nobody", &ListParams::default()), (vec![], false));
        assert!(state.indexed_page(&table, &index, "a", &after("itm_nope"), |_| true, |_| {}).is_err());
    }

    #[test]
    fn retention_trims_the_oldest_positions() {
        let state = State::new();
        let (table, index) = filled(10);
        assert_eq!(table.forget_oldest(|_, created| created < 5, 100, |_| {}), 5);
        index.trim_before(table.first_live());
        assert_eq!(index.len("a"), 2, "6 and 8 are left of group a");
        assert_eq!(page(&state, &table, &index, "a", &ListParams::default()), (vec![8, 6], false));
        assert_eq!(page(&state, &table, &index, "b", &ListParams::default()), (vec![9, 7, 5], false));
        assert!(table.forget_oldest(|_, created| created < 100, 100, |_| {}) == 5);
        index.trim_before(table.first_live());
        assert_eq!((index.len("a"), index.len("b")), (0, 0));
    }
}
