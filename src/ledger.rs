//! The ledger: everything a request needs, shared by the HTTP workers, the
//! account actors and the timer.
//!
//! `commit` is the one way a mutation reaches disk: it renders the response,
//! checks the record against the state it will be applied to (`State::check`,
//! the same rules applying runs: docs/reliability.md, invariant 10), attaches the
//! response to the record when the request was idempotent, appends the
//! record to the WAL and returns once the record is synced and applied.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use serde::Serialize;

use crate::accounts::Registry;
use crate::config::WAL_SEGMENT_BYTES_MAX;
use crate::error::ApiError;
use crate::history::History;
use crate::locks::ObjectLocks;
use crate::metrics::Metrics;
use crate::state::State;
use crate::storage::fs::FileSystem;
use crate::test_hooks::faults::Faults;
use crate::test_hooks::ManualClock;
use crate::timer::Clock;
use crate::wal::{Change, IdemEntry, Record, Wal};

/// The idempotency key of the request being served, with its fingerprint.
#[derive(Debug, Clone)]
pub struct IdemRequest {
    pub key: String,
    pub fingerprint: [u8; 32],
}

/// Context of one mutating request.
#[derive(Debug, Clone, Default)]
pub struct Mutation {
    pub idem: Option<IdemRequest>,
}

/// A rendered answer: status and JSON body.
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn json<T: Serialize>(status: u16, value: &T) -> Result<Reply, ApiError> {
        let body = serde_json::to_vec(value).map_err(|e| ApiError::internal(format!("rendering a response: {e}")))?;
        Ok(Reply { status, body })
    }
}

pub struct Ledger {
    pub data_dir: PathBuf,
    pub fs: Arc<dyn FileSystem>,
    pub state: Arc<State>,
    pub accounts: Registry,
    pub locks: ObjectLocks,
    pub clock: Arc<dyn Clock>,
    /// Set when the server runs on a manual clock (tests only: `LEDGER_TEST_CLOCK`).
    pub manual_clock: Option<Arc<ManualClock>>,
    /// Set when the WAL runs on the fault-injecting file system (tests only: `LEDGER_FAULTS`).
    pub faults: Option<Arc<Faults>>,
    /// The bearer key for `/v1`.
    pub secret_key: String,
    /// Size past which a WAL segment is closed (`Config::wal_segment_bytes`).
    pub wal_segment_bytes: u64,
    /// WAL written since the last snapshot that makes the server take one (0: never).
    pub snapshot_wal_bytes: u64,
    /// Where webhooks may go (`Config::webhook_net`); blocks private addresses by default.
    pub webhook_net: crate::webhooks::NetPolicy,
    /// What `/metrics` shows; the WAL writer updates `metrics.wal`.
    pub metrics: Metrics,
    /// Held while a snapshot is taken: one at a time.
    pub snapshot_lock: tokio::sync::Mutex<()>,
    wal: OnceLock<Wal>,
    /// Set by recovery, once history has caught up with the WAL.
    history: OnceLock<Arc<History>>,
    ready: AtomicBool,
}

impl Ledger {
    pub fn new(data_dir: PathBuf, fs: Arc<dyn FileSystem>, clock: Arc<dyn Clock>, secret_key: String) -> Self {
        Ledger {
            data_dir,
            fs,
            state: Arc::new(State::new()),
            accounts: Registry::default(),
            locks: ObjectLocks::default(),
            clock,
            manual_clock: None,
            faults: None,
            secret_key,
            wal_segment_bytes: WAL_SEGMENT_BYTES_MAX,
            snapshot_wal_bytes: 0,
            webhook_net: crate::webhooks::NetPolicy::default(),
            metrics: Metrics::new(),
            snapshot_lock: tokio::sync::Mutex::new(()),
            wal: OnceLock::new(),
            history: OnceLock::new(),
            ready: AtomicBool::new(false),
        }
    }

    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Whether replay is done and the WAL is open for appends.
    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Opens the write path once recovery is done.
    pub fn set_ready(&self, wal: Wal) {
        let _ = self.wal.set(wal);
        self.ready.store(true, Ordering::Release);
    }

    pub fn wal(&self) -> Option<&Wal> {
        self.wal.get()
    }

    pub fn set_history(&self, history: Arc<History>) {
        let _ = self.history.set(history);
    }

    /// History, once recovery has brought it up to the WAL's end.
    pub fn history(&self) -> Option<&Arc<History>> {
        self.history.get()
    }

    /// Makes `changes` durable and answers `response` with `status`.
    pub async fn commit<T: Serialize>(
        &self,
        m: &Mutation,
        changes: Vec<Change>,
        status: u16,
        response: &T,
    ) -> Result<Reply, ApiError> {
        let reply = Reply::json(status, response)?;
        self.commit_reply(m, changes, reply).await
    }

    /// Makes `changes` durable and answers the already rendered `reply`.
    /// The record also carries the events the changes cause (and their webhook
    /// deliveries), derived while the caller still holds its locks. The whole
    /// record is checked before it is appended; a refusal writes nothing.
    pub async fn commit_reply(&self, m: &Mutation, changes: Vec<Change>, reply: Reply) -> Result<Reply, ApiError> {
        self.commit_keeping(m, changes, reply, None).await
    }

    /// `commit_reply`, keeping `kept` instead of `reply` as the idempotent
    /// answer: for answers that show a secret once (an API key's), which must
    /// not be written anywhere; a retry with the same key then answers `kept`.
    pub async fn commit_reply_keeping(
        &self,
        m: &Mutation,
        changes: Vec<Change>,
        reply: Reply,
        kept: Reply,
    ) -> Result<Reply, ApiError> {
        self.commit_keeping(m, changes, reply, Some(kept)).await
    }

    async fn commit_keeping(
        &self,
        m: &Mutation,
        mut changes: Vec<Change>,
        reply: Reply,
        kept: Option<Reply>,
    ) -> Result<Reply, ApiError> {
        let now = self.now();
        let derived = crate::webhooks::outbox::derive(&self.state, &changes, now);
        changes.extend(derived);
        // Nothing is written that cannot be applied: a refused record answers
        // (409 `balance_limit`, say) and leaves no trace.
        self.state.check(&changes)?;
        let kept = kept.as_ref().unwrap_or(&reply);
        let idem = m.idem.as_ref().map(|r| IdemEntry {
            key: r.key.clone(),
            fingerprint: r.fingerprint,
            status: kept.status,
            body: Arc::from(&kept.body[..]),
        });
        let record = Record { time: now, idem, changes };
        let wal = self.wal.get().ok_or_else(ApiError::not_ready)?;
        wal.append(record).await?;
        Ok(reply)
    }
}
