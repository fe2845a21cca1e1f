//! Customers by email: what `GET /v1/customers?email=` walks instead of
//! every customer.
//!
//! Unlike the other indexes (`index.rs`), a customer's email changes
//! (`POST /v1/customers/{id}`), so a position moves between groups, and the
//! customers table is all in memory for ever, one entry per customer. So
//! the groups are kept by the email's hash, not the email: 16 bytes a group
//! (32 bits of the hash, the oldest position, the rest boxed only when an
//! email is shared), where a group keyed by the email as the other indexes
//! do cost about 100 bytes a customer (docs/performance.md, "Scale"). Two
//! emails whose hashes agree share a group; the list compares the email of
//! each customer it reads, so a neighbour's customers are read and passed over.

use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::config::STATE_SHARDS;

/// The customers of one email hash: positions ascending, the oldest inline.
struct Group {
    /// The high 32 bits of the email's hash (its low bits chose the shard).
    hash: u32,
    first: u32,
    /// Boxed so that a group of one email (nearly all) is 16 bytes, not 32.
    #[allow(clippy::box_collection)]
    rest: Option<Box<Vec<u32>>>,
}

impl Group {
    fn positions(&self) -> impl Iterator<Item = u32> + '_ {
        std::iter::once(self.first).chain(self.rest.iter().flat_map(|rest| rest.iter().copied()))
    }

    /// Adds `position` in its place (a new customer's is the newest: at the end).
    fn insert(&mut self, position: u32) {
        if position == self.first {
            return;
        }
        if position < self.first {
            let old = std::mem::replace(&mut self.first, position);
            self.rest.get_or_insert_default().insert(0, old);
            return;
        }
        let rest = self.rest.get_or_insert_default();
        if let Err(at) = rest.binary_search(&position) {
            rest.insert(at, position);
        }
    }

    /// Takes `position` out; returns whether the group is empty now.
    fn remove(&mut self, position: u32) -> bool {
        if position == self.first {
            match self.rest.as_mut().filter(|rest| !rest.is_empty()) {
                Some(rest) => self.first = rest.remove(0),
                None => return true,
            }
        } else if let Some(rest) = self.rest.as_mut() {
            if let Ok(at) = rest.binary_search(&position) {
                rest.remove(at);
            }
        }
        if self.rest.as_ref().is_some_and(|rest| rest.is_empty()) {
            self.rest = None;
        }
        false
    }
}

pub struct EmailIndex {
    shards: Box<[RwLock<HashTable<Group>>]>,
    hasher: RandomState,
}

impl Default for EmailIndex {
    fn default() -> Self {
        EmailIndex { shards: (0..STATE_SHARDS).map(|_| RwLock::default()).collect(), hasher: RandomState::default() }
    }
}

/// Where a shard's map places a group, from the 32 bits it keeps.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl EmailIndex {
    /// The shard of `email` and the 32 bits of its hash a group keeps.
    fn place(&self, email: &str) -> (&RwLock<HashTable<Group>>, u32) {
        let hash = self.hasher.hash_one(email);
        (&self.shards[(hash as usize) % self.shards.len()], (hash >> 32) as u32)
    }

    /// The customer at `position` had email `before` and has `after` now
    /// (a new customer: `before` is `None`); one thread applies, so the
    /// version replaced is the one `before` was read from.
    pub(super) fn put(&self, position: u32, before: Option<&str>, after: Option<&str>) {
        if before == after {
            return;
        }
        if let Some(email) = before {
            let (shard, hash) = self.place(email);
            let mut map = shard.write();
            if let Ok(mut entry) = map.find_entry(spread(hash), |g| g.hash == hash) {
                if entry.get_mut().remove(position) {
                    entry.remove();
                }
            }
        }
        if let Some(email) = after {
            let (shard, hash) = self.place(email);
            let mut map = shard.write();
            match map.find_mut(spread(hash), |g| g.hash == hash) {
                Some(group) => group.insert(position),
                None => {
                    map.insert_unique(spread(hash), Group { hash, first: position, rest: None }, |g| spread(g.hash));
                }
            }
        }
    }

    /// The positions of the customers whose email may be `email` (those of
    /// another email with the same hash too), oldest first.
    pub fn positions(&self, email: &str) -> Vec<u32> {
        let (shard, hash) = self.place(email);
        shard.read().find(spread(hash), |g| g.hash == hash).map(|g| g.positions().collect()).unwrap_or_default()
    }

    /// Groups in the index (tests: an email changed away leaves none behind).
    #[cfg(test)]
    fn groups(&self) -> usize {
        self.shards.iter().map(|s| s.read().len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_follows_its_email_and_groups_stay_ascending() {
        let index = EmailIndex::default();
        index.put(0, None, Some("a@x"));
        index.put(1, None, Some("b@x"));
        index.put(2, None, Some("a@x"));
        index.put(3, None, None);
        assert_eq!(index.positions("a@x"), vec![0, 2]);
        assert_eq!(index.positions("b@x"), vec![1]);
        assert!(index.positions("c@x").is_empty());
        // Customer 1 takes a@x: it goes in the middle of that group.
        index.put(1, Some("b@x"), Some("a@x"));
        assert_eq!(index.positions("a@x"), vec![0, 1, 2]);
        assert!(index.positions("b@x").is_empty());
        assert_eq!(index.groups(), 1, "b@x's empty group is gone");
        // The oldest leaves: the next one becomes the group's first.
        index.put(0, Some("a@x"), Some("c@x"));
        assert_eq!(index.positions("a@x"), vec![1, 2]);
        index.put(1, Some("a@x"), None);
        index.put(2, Some("a@x"), Some("a@x"));
        assert_eq!(index.positions("a@x"), vec![2]);
        index.put(2, Some("a@x"), None);
        assert!(index.positions("a@x").is_empty());
        assert_eq!(index.groups(), 1, "only c@x is left");
        assert_eq!(index.positions("c@x"), vec![0]);
    }

    #[test]
    fn a_shared_email_keeps_every_customer() {
        let index = EmailIndex::default();
        for p in 0..1_000 {
            index.put(p, None, Some("same@x"));
        }
        for p in (0..1_000).step_by(2) {
            index.put(p, Some("same@x"), Some("other@x"));
        }
        assert_eq!(index.positions("same@x"), (1..1_000).step_by(2).collect::<Vec<_>>());
        assert_eq!(index.positions("other@x"), (0..1_000).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn a_group_is_sixteen_bytes() {
        assert_eq!(std::mem::size_of::<Group>(), 16);
    }
}
