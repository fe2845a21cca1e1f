//! Every lot in spending order, by status: what `GET /v1/loyalty/lots`
//! without `account` walks instead of the whole lots table.
//!
//! A lot's place in spending order is its `expires_at` (never-expiring last),
//! then its `created`, then its id (`PointsLot::spending_key`); the first two
//! never change over its life, its status does. So the lots are grouped by
//! (status, expiry, created): a group holds the positions of the lots made in
//! one second with one expiry (4 bytes each; a busy ledger makes many lots a
//! second, a quiet one few), ascending. A list reads whole groups in order
//! and orders each group's lots by id itself, so no id is kept here; it stops
//! once a status has given a page past its cursor, since every later group
//! of that status sorts after all of them.
//!
//! Each new version of a lot takes its position out of the groups of the
//! other statuses and puts it in its own (`put`): it does not need the
//! version it replaces, so a checkpoint's list of the groups, read after its
//! barrier, is set right by the records replayed after it. A checkpoint lists
//! every group (`ListedIn::LotOrder`, key `Key::encode`), since a cold lot's
//! reference carries neither its status nor its expiry.

use std::collections::BTreeMap;
use std::ops::Bound;

use parking_lot::RwLock;
use thin_vec::ThinVec;

use super::index::merge_into;
use crate::domain::lots::{LotStatus, PointsLot};
use crate::domain::Id;

/// A group's place: status, expiry (`i64::MAX`: never), `created`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Key {
    pub status: u8,
    pub expires: i64,
    pub created: i64,
}

impl Key {
    pub fn of(lot: &PointsLot) -> Key {
        let (expires, created, _) = lot.spending_key();
        Key { status: status_code(lot.status), expires, created }
    }

    /// The group's name in a checkpoint: `status:expires:created`.
    pub fn encode(self) -> Id {
        Id::from(format!("{}:{}:{}", self.status, self.expires, self.created))
    }

    pub fn decode(name: &str) -> Option<Key> {
        let mut parts = name.split(':');
        let key = Key {
            status: parts.next()?.parse().ok().filter(|s| usize::from(*s) < LotStatus::ALL.len())?,
            expires: parts.next()?.parse().ok()?,
            created: parts.next()?.parse().ok()?,
        };
        parts.next().is_none().then_some(key)
    }
}

pub fn status_code(status: LotStatus) -> u8 {
    LotStatus::ALL.iter().position(|s| *s == status).unwrap_or(0) as u8
}

#[derive(Default)]
pub struct LotOrder(RwLock<BTreeMap<Key, ThinVec<u32>>>);

impl LotOrder {
    /// The lot at `position` now sorts at `key`: out of the other statuses'
    /// groups, into its own (each once).
    pub(super) fn put(&self, position: u32, key: Key) {
        let mut groups = self.0.write();
        for status in 0..LotStatus::ALL.len() as u8 {
            let at = Key { status, ..key };
            if status == key.status {
                let group = groups.entry(at).or_default();
                if let Err(i) = group.binary_search(&position) {
                    group.insert(i, position);
                }
            } else if let Some(group) = groups.get_mut(&at) {
                if let Ok(i) = group.binary_search(&position) {
                    group.remove(i);
                    if group.is_empty() {
                        groups.remove(&at);
                    }
                }
            }
        }
    }

    /// Adds a checkpoint's `positions` (ascending) to the group `key`.
    pub(super) fn merge(&self, key: Key, positions: &[u32]) {
        merge_into(self.0.write().entry(key).or_default(), positions);
    }

    /// The group after (or, `backwards`, before) `from` among `status`'s
    /// groups, `from` itself too when `inclusive`, with a copy of its positions.
    pub fn next_group(
        &self,
        status: u8,
        from: Option<Key>,
        inclusive: bool,
        backwards: bool,
    ) -> Option<(Key, Vec<u32>)> {
        let groups = self.0.read();
        let lowest = Key { status, expires: i64::MIN, created: i64::MIN };
        let highest = Key { status, expires: i64::MAX, created: i64::MAX };
        let edge = |k: Key| if inclusive { Bound::Included(k) } else { Bound::Excluded(k) };
        let found = match (from, backwards) {
            (None, false) => groups.range(lowest..=highest).next(),
            (None, true) => groups.range(lowest..=highest).next_back(),
            (Some(k), false) => groups.range((edge(Key { status, ..k }), Bound::Included(highest))).next(),
            (Some(k), true) => groups.range((Bound::Included(lowest), edge(Key { status, ..k }))).next_back(),
        };
        found.map(|(k, g)| (*k, g.to_vec()))
    }

    /// A copy of every group, in order (what a checkpoint lists).
    pub fn groups(&self) -> Vec<(Key, Vec<u32>)> {
        self.0.read().iter().map(|(k, g)| (*k, g.to_vec())).collect()
    }

    /// How many positions the groups hold together: one per lot when whole.
    pub(super) fn total(&self) -> usize {
        self.0.read().values().map(|g| g.len()).sum()
    }

    pub(super) fn clear(&self) {
        self.0.write().clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(status: LotStatus, expires: i64, created: i64) -> Key {
        Key { status: status_code(status), expires, created }
    }

    /// A new status moves a position between its groups, once; a
    /// checkpoint's list merges in; the names read back.
    #[test]
    fn a_lot_moves_between_its_statuses_groups() {
        let order = LotOrder::default();
        let available = key(LotStatus::Available, i64::MAX, 10);
        let spent = key(LotStatus::Spent, i64::MAX, 10);
        for p in [4, 1, 9] {
            order.put(p, available);
        }
        order.put(4, available);
        assert_eq!(order.groups(), vec![(available, vec![1, 4, 9])]);
        order.put(4, spent);
        assert_eq!(order.groups(), vec![(available, vec![1, 9]), (spent, vec![4])]);
        order.put(1, spent);
        order.put(9, spent);
        assert_eq!(order.groups(), vec![(spent, vec![1, 4, 9])], "an emptied group goes");
        order.merge(available, &[2, 3]);
        order.merge(spent, &[4, 7]);
        assert_eq!(order.groups(), vec![(available, vec![2, 3]), (spent, vec![1, 4, 7, 9])]);
        assert_eq!(order.total(), 6);
        let s = status_code(LotStatus::Spent);
        assert_eq!(order.next_group(s, None, false, false), Some((spent, vec![1, 4, 7, 9])));
        assert_eq!(order.next_group(s, Some(spent), false, false), None);
        assert_eq!(order.next_group(s, Some(spent), true, true).map(|g| g.0), Some(spent));
        assert_eq!(order.next_group(s, Some(key(LotStatus::Spent, 5, 0)), false, true), None);
        for k in [available, spent, key(LotStatus::Pending, -3, 0)] {
            assert_eq!(Key::decode(&k.encode()), Some(k));
        }
        for bad in ["", "9:1:2", "1:2", "1:2:3:4", "x:1:2"] {
            assert_eq!(Key::decode(bad), None, "{bad}");
        }
    }
}
