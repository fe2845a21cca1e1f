//! Idempotent responses, and the keys whose first request is in flight.
//!
//! A response arrives with the WAL record of its mutation (so it is exactly
//! as durable as the mutation) and is kept for `IDEMPOTENCY_RETENTION_SECONDS`.
//! Memory holds it only until history has it (`history::feed` writes the
//! responses of applied records in batches, then calls `forget_through`):
//! after that a lookup reads it from history, so memory per remembered key
//! is nothing, and no request rate can fill a store and refuse new keys
//! (docs/architecture.md, "History"). Without history attached (the offline
//! commands, unit tests) memory keeps every response for the retention period.
//!
//! Only successful mutations store a response: a request that failed
//! validation or conflicted changed nothing, and its retry runs again.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, OnceLock};

use parking_lot::Mutex;

use crate::config::IDEMPOTENCY_RETENTION_SECONDS;
use crate::history::{HistoryStore, Remembered};
use crate::wal::IdemEntry;

#[derive(Debug, Clone)]
pub struct StoredResponse {
    pub fingerprint: [u8; 32],
    pub status: u16,
    pub body: Arc<[u8]>,
    pub created: i64,
    /// The record that stored it (0: loaded from a snapshot).
    pub lsn: u64,
}

#[derive(Default)]
struct Inner {
    /// Responses history does not have yet.
    recent: HashMap<String, StoredResponse>,
    /// `recent`'s keys in LSN order: what goes to history next, and what it has taken.
    by_lsn: VecDeque<(u64, String)>,
    in_flight: HashSet<String>,
}

#[derive(Default)]
pub struct IdemStore {
    inner: Arc<Mutex<Inner>>,
    history: OnceLock<Arc<dyn HistoryStore>>,
}

/// What to do with a request that carries an idempotency key.
pub enum Begin {
    /// Answer the stored response again.
    Replay(StoredResponse),
    /// The key was used with another request.
    Reused,
    /// The first request with this key is still running.
    InFlight,
    /// History could not be read, so whether the key was used is unknown.
    Unavailable,
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

fn answer(stored: StoredResponse, fingerprint: [u8; 32]) -> Begin {
    if stored.fingerprint == fingerprint {
        Begin::Replay(stored)
    } else {
        Begin::Reused
    }
}

fn fresh(created: i64, now: i64) -> bool {
    now.saturating_sub(created) <= IDEMPOTENCY_RETENTION_SECONDS
}

impl IdemStore {
    /// From here on, responses that history has are read from it (`forget_through`).
    pub fn attach_history(&self, history: Arc<dyn HistoryStore>) {
        let _ = self.history.set(history);
    }

    pub fn begin(&self, key: &str, fingerprint: [u8; 32], now: i64) -> Begin {
        {
            let mut inner = self.inner.lock();
            purge(&mut inner, now);
            if let Some(stored) = inner.recent.get(key).filter(|s| fresh(s.created, now)) {
                return answer(stored.clone(), fingerprint);
            }
            if !inner.in_flight.insert(key.to_string()) {
                return Begin::InFlight;
            }
        }
        // The key is claimed: no other request with it runs until the guard
        // drops. A response that left memory is in history (it leaves only
        // once history has it), so the two lookups miss nothing.
        let guard = IdemGuard { inner: self.inner.clone(), key: key.to_string() };
        if let Some(history) = self.history.get() {
            match history.remembered(key) {
                Ok(Some(r)) if fresh(r.created, now) => {
                    let stored = StoredResponse {
                        fingerprint: r.entry.fingerprint,
                        status: r.entry.status,
                        body: r.entry.body,
                        created: r.created,
                        lsn: r.lsn,
                    };
                    return answer(stored, fingerprint);
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::error!(error = %e, "history could not be read for an idempotency key");
                    return Begin::Unavailable;
                }
            }
        }
        Begin::Proceed(guard)
    }

    /// Records the response of a durable mutation, applied as record `lsn`
    /// (called by `State::apply`; 0 from a snapshot).
    pub fn store(&self, entry: IdemEntry, created: i64, lsn: u64) {
        let mut inner = self.inner.lock();
        inner.by_lsn.push_back((lsn, entry.key.clone()));
        inner.recent.insert(
            entry.key,
            StoredResponse { fingerprint: entry.fingerprint, status: entry.status, body: entry.body, created, lsn },
        );
    }

    /// Responses in memory, held until history has them.
    pub fn len(&self) -> usize {
        self.inner.lock().recent.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Copies of the responses in memory of records up to `upto`, in LSN order
    /// (what history writes next).
    pub fn unwritten(&self, upto: u64) -> Vec<Remembered> {
        let mut out = Vec::new();
        self.for_each_in_order(|entry, created, lsn| {
            if lsn <= upto {
                out.push(Remembered { lsn, created, entry });
            }
        });
        out
    }

    /// Drops from memory the responses of records up to `upto`: history has them.
    pub fn forget_through(&self, upto: u64) {
        let mut inner = self.inner.lock();
        while inner.by_lsn.front().is_some_and(|(lsn, _)| *lsn <= upto) {
            let Some((lsn, key)) = inner.by_lsn.pop_front() else { break };
            if inner.recent.get(&key).is_some_and(|s| s.lsn == lsn) {
                inner.recent.remove(&key);
            }
        }
    }

    /// Every response in memory as the entry that stored it, with its time
    /// and LSN, oldest first (for snapshots: re-storing them in this order
    /// rebuilds the store).
    pub fn for_each_in_order(&self, mut f: impl FnMut(IdemEntry, i64, u64)) {
        let inner = self.inner.lock();
        for (lsn, key) in &inner.by_lsn {
            // `by_lsn` can still hold an older use of a key that expired and was reused.
            let Some(s) = inner.recent.get(key).filter(|s| s.lsn == *lsn) else { continue };
            let entry =
                IdemEntry { key: key.clone(), fingerprint: s.fingerprint, status: s.status, body: s.body.clone() };
            f(entry, s.created, *lsn);
        }
    }
}

/// Forgets responses in memory older than the retention period (with
/// history attached they leave memory long before).
fn purge(inner: &mut Inner, now: i64) {
    while let Some((_, key)) = inner.by_lsn.front() {
        match inner.recent.get(key) {
            Some(s) if fresh(s.created, now) => break,
            _ => {
                let Some((lsn, key)) = inner.by_lsn.pop_front() else { break };
                if inner.recent.get(&key).is_some_and(|s| s.lsn == lsn) {
                    inner.recent.remove(&key);
                }
            }
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
        store.store(entry("k", 1), 100, 1);
        drop(guard);
        assert!(matches!(store.begin("k", [1; 32], 101), Begin::Replay(r) if r.status == 200));
        assert!(matches!(store.begin("k", [2; 32], 101), Begin::Reused));
        let later = 100 + IDEMPOTENCY_RETENTION_SECONDS + 1;
        assert!(matches!(store.begin("k", [2; 32], later), Begin::Proceed(_)));
    }

    /// A history whose reads fail (a disk error) and which remembers nothing.
    struct Unreadable;

    impl HistoryStore for Unreadable {
        fn lsn(&self) -> Result<u64, crate::error::StorageError> {
            Ok(0)
        }
        fn write(&self, _: &crate::history::Batch) -> Result<(), crate::error::StorageError> {
            Ok(())
        }
        fn sync(&self) -> Result<(), crate::error::StorageError> {
            Ok(())
        }
        fn remembered(&self, _: &str) -> Result<Option<Remembered>, crate::error::StorageError> {
            Err(crate::error::StorageError::Poisoned)
        }
        fn forget_before(&self, _: i64, _: usize) -> Result<usize, crate::error::StorageError> {
            Ok(0)
        }
        fn disk_bytes(&self) -> u64 {
            0
        }
        fn remembered_count(&self) -> Result<usize, crate::error::StorageError> {
            Ok(0)
        }
        fn remembered_view(&self) -> Box<dyn crate::history::RememberedView> {
            unimplemented!("not read by these tests")
        }
        fn holds_objects(&self) -> Result<bool, crate::error::StorageError> {
            Ok(false)
        }
        fn object(&self, _: &[u8]) -> Result<Option<Vec<u8>>, crate::error::StorageError> {
            Err(crate::error::StorageError::Poisoned)
        }
        fn objects_view(&self) -> Box<dyn crate::history::ObjectsView> {
            unimplemented!("not read by these tests")
        }
        fn objects_count(&self) -> Result<usize, crate::error::StorageError> {
            Ok(0)
        }
        fn holds_archive_of(&self, _: u8) -> Result<bool, crate::error::StorageError> {
            Ok(false)
        }
        fn archived_position(&self, _: &[u8]) -> Result<Option<u32>, crate::error::StorageError> {
            Err(crate::error::StorageError::Poisoned)
        }
        fn archived_at(&self, _: u8, _: u32) -> Result<Option<Vec<u8>>, crate::error::StorageError> {
            Err(crate::error::StorageError::Poisoned)
        }
        fn archived_range(
            &self,
            _: u8,
            _: u32,
            _: u32,
            _: crate::history::ArchivedVisit,
        ) -> Result<(), crate::error::StorageError> {
            Err(crate::error::StorageError::Poisoned)
        }
    }

    #[test]
    fn an_unreadable_history_runs_nothing_and_frees_the_key() {
        let store = IdemStore::default();
        store.attach_history(Arc::new(Unreadable));
        // Memory still answers what it holds, without asking history.
        store.store(entry("held", 1), 10, 1);
        assert!(matches!(store.begin("held", [1; 32], 11), Begin::Replay(_)));
        // A key memory does not hold might be in history: unknown, so nothing runs.
        assert!(matches!(store.begin("new", [1; 32], 11), Begin::Unavailable));
        assert!(store.inner.lock().in_flight.is_empty(), "the claim is let go");
    }

    #[test]
    fn what_history_took_leaves_memory_in_lsn_order() {
        let store = IdemStore::default();
        for (i, key) in ["a", "b", "c"].iter().enumerate() {
            store.store(entry(key, 1), 10, i as u64 + 1);
        }
        let next: Vec<_> = store.unwritten(2).into_iter().map(|r| (r.lsn, r.entry.key)).collect();
        assert_eq!(next, vec![(1, "a".to_string()), (2, "b".to_string())]);
        store.forget_through(2);
        assert_eq!(store.len(), 1);
        assert!(matches!(store.begin("a", [1; 32], 11), Begin::Proceed(_)), "no history attached: gone");
        assert!(matches!(store.begin("c", [1; 32], 11), Begin::Replay(_)));
        // A key used again keeps its newer response when the older use leaves.
        store.store(entry("c", 2), 11, 4);
        store.forget_through(3);
        assert!(matches!(store.begin("c", [2; 32], 12), Begin::Replay(r) if r.lsn == 4));
    }
}
