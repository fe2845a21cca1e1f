//! Customers by email: what `GET /v1/customers?email=` walks instead of
//! every customer.
//!
//! Unlike the other indexes (`index.rs`), a customer's email changes
//! (`POST /v1/customers/{id}`), so a position moves between groups, and the
//! customers table is all in memory for ever, one entry per customer. So
//! the groups are kept by the email's hash, not the email: 8 bytes an email
//! (31 bits of the hash, a flag, the one customer's position), and a list of
//! positions apart only for an email more than one customer shares, where a
//! group keyed by the email, as the other indexes keep theirs, holds a copy
//! of the email and a list for every customer; about 25 bytes per idle
//! member in all (docs/performance.md, "Scale"). Two emails whose hashes agree
//! share a group; the list compares the email of each customer it reads, so
//! a neighbour's customers are read and passed over.

use std::collections::HashMap;
use std::hash::BuildHasher;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use parking_lot::RwLock;

use crate::config::STATE_SHARDS;

/// One email hash's entry: 31 bits of the hash and whether it is shared,
/// and the one customer's position when it is not (8 bytes).
#[derive(Clone, Copy)]
struct Entry {
    /// The email hash's 31 bits (`tag >> 1`), and in the low bit whether
    /// more than one customer has them (their positions in `Shard::shared`).
    tag: u32,
    position: u32,
}

impl Entry {
    fn hash(self) -> u32 {
        self.tag >> 1
    }

    fn is_shared(self) -> bool {
        self.tag & 1 == 1
    }
}

#[derive(Default)]
struct Shard {
    entries: HashTable<Entry>,
    /// The positions of each hash more than one customer has, ascending.
    shared: HashMap<u32, Vec<u32>>,
}

pub struct EmailIndex {
    shards: Box<[RwLock<Shard>]>,
    hasher: RandomState,
}

impl Default for EmailIndex {
    fn default() -> Self {
        EmailIndex { shards: (0..STATE_SHARDS).map(|_| RwLock::default()).collect(), hasher: RandomState::default() }
    }
}

/// Where a shard's map places an entry, from the 31 bits it keeps.
fn spread(hash: u32) -> u64 {
    u64::from(hash).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

impl EmailIndex {
    /// The hash of `email` that the index keeps it by.
    pub(super) fn hash(&self, email: &str) -> u64 {
        self.hasher.hash_one(email)
    }

    /// The shard of an email hashed `hash` and the 31 bits of it an entry keeps.
    fn place(&self, hash: u64) -> (&RwLock<Shard>, u32) {
        (&self.shards[(hash as usize) % self.shards.len()], (hash >> 33) as u32)
    }

    /// The customer at `position` had an email hashed `before` and has one
    /// hashed `after` now (`hash`; `None`: no email, or a new customer's
    /// `before`); one thread applies, so the version replaced is the one
    /// `before` was read from. Hashes, not emails: a load hashes each
    /// customer's email once and copies none.
    pub(super) fn put(&self, position: u32, before: Option<u64>, after: Option<u64>) {
        if before == after {
            return;
        }
        if let Some(hash) = before {
            let (shard, hash) = self.place(hash);
            shard.write().remove(hash, position);
        }
        if let Some(hash) = after {
            let (shard, hash) = self.place(hash);
            shard.write().insert(hash, position);
        }
    }

    /// The positions of the customers whose email may be `email` (those of
    /// another email with the same hash too), oldest first.
    pub fn positions(&self, email: &str) -> Vec<u32> {
        let (shard, hash) = self.place(self.hash(email));
        let shard = shard.read();
        match shard.entries.find(spread(hash), |e| e.hash() == hash) {
            None => Vec::new(),
            Some(e) if e.is_shared() => shard.shared.get(&hash).cloned().unwrap_or_default(),
            Some(e) => vec![e.position],
        }
    }

    /// Makes room for `customers` more (before a snapshot load).
    pub(super) fn reserve(&self, customers: usize) {
        let share = customers.div_ceil(self.shards.len());
        for shard in self.shards.iter() {
            shard.write().entries.reserve(share, |e| spread(e.hash()));
        }
    }

    /// Gives back spare capacity (after replay, when the maps grew by doubling).
    pub(super) fn shrink_to_fit(&self) {
        for shard in self.shards.iter() {
            let mut shard = shard.write();
            shard.entries.shrink_to_fit(|e| spread(e.hash()));
            shard.shared.shrink_to_fit();
        }
    }

    /// Entries in the index, and lists of shared emails (tests: an email
    /// changed away leaves nothing behind).
    #[cfg(test)]
    fn entries(&self) -> (usize, usize) {
        self.shards
            .iter()
            .map(|s| (s.read().entries.len(), s.read().shared.len()))
            .fold((0, 0), |a, b| (a.0 + b.0, a.1 + b.1))
    }
}

impl Shard {
    fn insert(&mut self, hash: u32, position: u32) {
        let Some(entry) = self.entries.find_mut(spread(hash), |e| e.hash() == hash) else {
            self.entries.insert_unique(spread(hash), Entry { tag: hash << 1, position }, |e| spread(e.hash()));
            return;
        };
        if !entry.is_shared() {
            if entry.position == position {
                return;
            }
            entry.tag |= 1;
            self.shared.insert(hash, vec![entry.position]);
        }
        let positions = self.shared.entry(hash).or_default();
        if let Err(at) = positions.binary_search(&position) {
            positions.insert(at, position);
        }
    }

    fn remove(&mut self, hash: u32, position: u32) {
        let Ok(mut found) = self.entries.find_entry(spread(hash), |e| e.hash() == hash) else { return };
        let entry = found.get_mut();
        if !entry.is_shared() {
            if entry.position == position {
                found.remove();
            }
            return;
        }
        let Some(positions) = self.shared.get_mut(&hash) else { return };
        if let Ok(at) = positions.binary_search(&position) {
            positions.remove(at);
        }
        // Back to one customer: its position goes inline again.
        if positions.len() <= 1 {
            match positions.first() {
                Some(&last) => *entry = Entry { tag: hash << 1, position: last },
                None => {
                    found.remove();
                }
            }
            self.shared.remove(&hash);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `EmailIndex::put` with emails.
    fn put(index: &EmailIndex, position: u32, before: Option<&str>, after: Option<&str>) {
        index.put(position, before.map(|e| index.hash(e)), after.map(|e| index.hash(e)));
    }

    #[test]
    fn a_position_follows_its_email_and_groups_stay_ascending() {
        let index = EmailIndex::default();
        put(&index, 0, None, Some("a@x"));
        put(&index, 1, None, Some("b@x"));
        put(&index, 2, None, Some("a@x"));
        put(&index, 3, None, None);
        assert_eq!(index.positions("a@x"), vec![0, 2]);
        assert_eq!(index.positions("b@x"), vec![1]);
        assert!(index.positions("c@x").is_empty());
        // Customer 1 takes a@x: it goes in the middle of that group.
        put(&index, 1, Some("b@x"), Some("a@x"));
        assert_eq!(index.positions("a@x"), vec![0, 1, 2]);
        assert!(index.positions("b@x").is_empty());
        assert_eq!(index.entries(), (1, 1), "b@x's entry is gone; a@x's positions are listed apart");
        // Customers leave until one is left (inline again), then none.
        put(&index, 0, Some("a@x"), Some("c@x"));
        assert_eq!(index.positions("a@x"), vec![1, 2]);
        put(&index, 1, Some("a@x"), None);
        put(&index, 2, Some("a@x"), Some("a@x"));
        assert_eq!(index.positions("a@x"), vec![2]);
        put(&index, 2, Some("a@x"), None);
        assert!(index.positions("a@x").is_empty());
        assert_eq!(index.entries(), (1, 0), "only c@x is left");
        assert_eq!(index.positions("c@x"), vec![0]);
    }

    #[test]
    fn a_shared_email_keeps_every_customer() {
        let index = EmailIndex::default();
        for p in 0..1_000 {
            put(&index, p, None, Some("same@x"));
        }
        for p in (0..1_000).step_by(2) {
            put(&index, p, Some("same@x"), Some("other@x"));
        }
        assert_eq!(index.positions("same@x"), (1..1_000).step_by(2).collect::<Vec<_>>());
        assert_eq!(index.positions("other@x"), (0..1_000).step_by(2).collect::<Vec<_>>());
    }

    #[test]
    fn an_entry_is_eight_bytes() {
        assert_eq!(std::mem::size_of::<Entry>(), 8);
    }
}
