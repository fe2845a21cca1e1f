//! Object locks: a fixed table of async mutexes striped by id.
//!
//! Account state is serialized by its actor. Objects that several accounts or
//! requests can race on (a customer being linked, a payment changing state)
//! are serialized here instead: a request holds the stripe of each object it
//! changes from its first read until its record is applied. Locks are always
//! taken before an account actor is asked, never by an actor, so there is no
//! cycle. The table has a fixed size, so it never grows with request count.

use std::hash::BuildHasher;

use tokio::sync::{Mutex, MutexGuard};

use crate::config::OBJECT_LOCK_STRIPES;

pub struct ObjectLocks {
    stripes: Box<[Mutex<()>]>,
    hasher: foldhash::fast::RandomState,
}

/// Held stripes; released on drop.
pub struct Held<'a> {
    _guards: Vec<MutexGuard<'a, ()>>,
}

impl Default for ObjectLocks {
    fn default() -> Self {
        ObjectLocks { stripes: (0..OBJECT_LOCK_STRIPES).map(|_| Mutex::new(())).collect(), hasher: Default::default() }
    }
}

impl ObjectLocks {
    fn stripe(&self, id: &str) -> usize {
        (self.hasher.hash_one(id) as usize) % self.stripes.len()
    }

    /// Locks the stripes of `ids` in a fixed order (no deadlock between requests).
    pub async fn lock(&self, ids: &[&str]) -> Held<'_> {
        let mut stripes: Vec<usize> = ids.iter().map(|id| self.stripe(id)).collect();
        stripes.sort_unstable();
        stripes.dedup();
        let mut guards = Vec::with_capacity(stripes.len());
        for s in stripes {
            guards.push(self.stripes[s].lock().await);
        }
        Held { _guards: guards }
    }
}
