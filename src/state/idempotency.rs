//! Stored idempotent responses, and the keys whose first request is in flight.
//!
//! A stored response arrives with the WAL record of its mutation (so it is
//! exactly as durable as the mutation) and is kept for
//! `IDEMPOTENCY_RETENTION_SECONDS`. Only successful mutations store a
//! response: a request that failed validation or conflicted changed nothing,
//! and its retry runs again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;

use parking_lot::Mutex;

use crate::config::{IDEMPOTENCY_KEYS_MAX, IDEMPOTENCY_RETENTION_SECONDS};

/// Past `IDEMPOTENCY_KEYS_MAX`, keys older than this may be dropped early
/// (the contract promises 24 hours).
const IDEMPOTENCY_RETENTION_SECONDS_MIN: i64 = 24 * 3600;
use crate::wal::IdemEntry;

#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: Arc<[u8]>,
    pub created: i64,
}

#[derive(Default)]
struct Inner {
    stored: HashMap<String, StoredResponse>,
    /// Keys by age, to forget them after the retention period.
    by_age: VecDeque<(i64, String)>,
    in_flight: HashSet<String>,
}

#[derive(Default)]
pub struct IdemStore {
    inner: Arc<Mutex<Inner>>,
}

/// What to do with a request that carries an idempotency key.
pub enum Begin {
    /// Answer the stored response again.
    Replay(StoredResponse),
    /// The key was used with another request.
    Reused,
    /// The first request with this key is still running.
    InFlight,
    /// The store is full of keys younger than 24 hours.
    Full,
    /// Run the request; the guard releases the key when dropped.
    Proceed(IdemGuard),
}

pub struct IdemGuard {
    inner: Arc<Mutex<Inner>>,
    key: String,
}

impl Drop for IdemGuard {
    fn drop(&mut self) {
        self.inner.lock().in_flight.remove(&self.key);
    }
}

impl IdemStore {
    pub fn begin(&self, key: &str, fingerprint: [u8; 32], now: i64) -> Begin {
        let mut inner = self.inner.lock();
        purge(&mut inner, now, IDEMPOTENCY_RETENTION_SECONDS);
        if let Some(stored) = inner.stored.get(key) {
            return if stored.fingerprint == fingerprint { Begin::Replay(stored.clone()) } else { Begin::Reused };
        }
        if inner.in_flight.contains(key) {
            return Begin::InFlight;
        }
        if inner.stored.len() + inner.in_flight.len() >= IDEMPOTENCY_KEYS_MAX {
            purge(&mut inner, now, IDEMPOTENCY_RETENTION_SECONDS_MIN);
            if inner.stored.len() + inner.in_flight.len() >= IDEMPOTENCY_KEYS_MAX {
                return Begin::Full;
            }
        }
        inner.in_flight.insert(key.to_string());
        Begin::Proceed(IdemGuard { inner: self.inner.clone(), key: key.to_string() })
    }

    /// Records the response of a durable mutation (called by `State::apply`).
    pub fn store(&self, entry: IdemEntry, created: i64) {
        let mut inner = self.inner.lock();
        inner.by_age.push_back((created, entry.key.clone()));
        inner.stored.insert(
            entry.key,
            StoredResponse { fingerprint: entry.fingerprint, status: entry.status, body: entry.body, created },
        );
    }

    pub fn len(&self) -> usize {
        self.inner.lock().stored.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every stored response as the entry that stored it, with its time, oldest
    /// first (for snapshots: re-storing them in this order rebuilds `by_age`).
    pub fn for_each_in_age_order(&self, mut f: impl FnMut(IdemEntry, i64)) {
        let inner = self.inner.lock();
        for (created, key) in &inner.by_age {
            // `by_age` can still hold an older use of a key that expired and was reused.
            let Some(s) = inner.stored.get(key).filter(|s| s.created == *created) else { continue };
            let entry =
                IdemEntry { key: key.clone(), fingerprint: s.fingerprint, status: s.status, body: s.body.clone() };
            f(entry, *created);
        }
    }
}

/// Forgets responses older than `retention_seconds`.
fn purge(inner: &mut Inner, now: i64, retention_seconds: i64) {
    while let Some((created, _)) = inner.by_age.front() {
        if now - *created <= retention_seconds {
            break;
        }
        let (created, key) = inner.by_age.pop_front().unwrap();
        if inner.stored.get(&key).is_some_and(|s| s.created == created) {
            inner.stored.remove(&key);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(key: &str, fp: u8) -> IdemEntry {
        IdemEntry { key: key.into(), fingerprint: [fp; 32], status: 200, body: Arc::from(&b"{}"[..]) }
    }

    #[test]
    fn replay_reuse_in_flight_and_expiry() {
        let store = IdemStore::default();
        let guard = match store.begin("k", [1; 32], 100) {
            Begin::Proceed(g) => g,
            _ => panic!("fresh key must proceed"),
        };
        assert!(matches!(store.begin("k", [1; 32], 100), Begin::InFlight));
        store.store(entry("k", 1), 100);
        drop(guard);
        assert!(matches!(store.begin("k", [1; 32], 101), Begin::Replay(r) if r.status == 200));
        assert!(matches!(store.begin("k", [2; 32], 101), Begin::Reused));
        let later = 100 + IDEMPOTENCY_RETENTION_SECONDS + 1;
        assert!(matches!(store.begin("k", [2; 32], later), Begin::Proceed(_)));
    }
}
