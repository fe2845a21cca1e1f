//! Snapshots: the whole state at one LSN in one checksummed file, so startup
//! replays only the WAL after it and old WAL segments can be deleted.
//!
//! - `format`: the file layout (header, framed chunks of items, trailer).
//! - `write`: temp file, fdatasync, rename, directory fsync; then `compact`
//!   keeps the newest `SNAPSHOTS_KEPT` snapshots and deletes WAL segments
//!   wholly before the oldest of them.
//! - `load`: finding the newest valid snapshot and applying it to a state.
//!
//! Taking one (`take` online, `take_blocking` offline) goes through a WAL
//! barrier: on the WAL's apply thread, between two batches, the state is exactly
//! at LSN N; it is copied there as a list of items (`State::snapshot_placed`)
//! and written to disk on another thread, so appends stall only for the copy.
//! The list's memory is made and touched before the barrier (`touched_buffer`),
//! so the kernel's page faults and zeroing are not part of that stall.

pub mod format;
pub mod load;
pub mod write;

use std::collections::HashSet;
use std::mem::MaybeUninit;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use load::{list_snapshots, load_snapshot};
pub use write::{compact, write_snapshot, Compacted, Extra, ExtraItems, Resolve, SnapshotInfo};

use crate::config::{
    HISTORY_SNAPSHOT_WAIT, IDEMPOTENCY_RETENTION_SECONDS, SNAPSHOT_ITEMS_SLACK, SNAPSHOT_ITEMS_SLACK_DIVISOR,
};
use crate::error::{ApiError, StorageError};
use crate::history::{resolve_cold, History, ObjectsView, Remembered};
use crate::ledger::Ledger;
use crate::state::{CheckpointItems, Counted, Placed, SnapshotItem, State};
use crate::storage::fs::FileSystem;
use crate::wal::Wal;

/// Sub-directory of the data directory that holds the snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The state as copied at a barrier.
pub struct Captured {
    pub lsn: u64,
    /// In bucket order with their places (`State::snapshot_placed`): the
    /// writer puts them in order (`state::in_place`).
    pub items: Vec<Placed>,
    /// History's objects as they were at the capture: where the items that
    /// were cold then are read from as the file is written.
    pub cold: Option<Box<dyn ObjectsView>>,
    /// The state copied (a local checkpoint names its cold objects from it, `CheckpointItems`).
    pub state: Arc<State>,
    /// Whether the items are a local checkpoint's (`State::snapshot_placed`).
    pub checkpoint: bool,
    /// How long the copy held up the WAL writer.
    pub stall: Duration,
}

type Capturing = oneshot::Receiver<Result<Result<Captured, StorageError>, StorageError>>;

/// Room for the items of `state` as it is now, plus `SNAPSHOT_ITEMS_SLACK`
/// for what is applied before the barrier, with every page of it touched.
/// Filling fresh memory costs the kernel a fault and a zeroing per page: done
/// here, not in the writer's stall (docs/performance.md, "Why the code is the way it is").
fn touched_buffer(state: &State, scope: Scope) -> Vec<Placed> {
    let capacity = state.snapshot_items_hint(scope == Scope::Local);
    let mut items = Vec::with_capacity(capacity + capacity / SNAPSHOT_ITEMS_SLACK_DIVISOR + SNAPSHOT_ITEMS_SLACK);
    for slot in items.spare_capacity_mut() {
        *slot = MaybeUninit::zeroed();
    }
    // The zeros are never read: keep the compiler from dropping the stores.
    std::hint::black_box(&mut items);
    items
}

/// Asks the WAL writer for a copy of the state exactly at its current LSN,
/// into `items` (from `touched_buffer`).
/// History's view of its objects is taken right after the copy: every object
/// cold in the copy is in it at the version memory let go of, and no later
/// version is (the apply thread waits at the barrier).
fn capture(
    wal: &Wal,
    state: Arc<State>,
    history: Arc<History>,
    mut items: Vec<Placed>,
    scope: Scope,
) -> Result<Capturing, ApiError> {
    let checkpoint = scope == Scope::Local;
    let capturing = wal.barrier(move |lsn| {
        let started = Instant::now();
        state.snapshot_placed(checkpoint, |placed| items.push(placed));
        // After the copy: the history thread may let go of an object while
        // it runs, and history holds that version by then. Nothing newer is
        // in history either way: it holds only records up to this barrier's LSN.
        let cold = history.store().objects_view();
        let stall = started.elapsed();
        if state.applied_lsn() != lsn {
            // Every record before a barrier is applied before it runs; anything
            // else is a bug, and a snapshot would then lie about its LSN.
            return Err(StorageError::Inconsistent(format!(
                "barrier at LSN {lsn} but the state is at {}",
                state.applied_lsn()
            )));
        }
        Ok(Captured { lsn, items, cold: Some(cold), state, checkpoint, stall })
    })?;
    Ok(capturing)
}

/// A snapshot taken and compaction done.
#[derive(Debug, Clone)]
pub struct Taken {
    pub info: SnapshotInfo,
    pub compacted: Compacted,
    pub stall: Duration,
    pub elapsed: Duration,
}

/// What a snapshot holds of history.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// Also every response history remembers: the file restores a complete
    /// data directory elsewhere (`POST /v1/admin/snapshot`, the `snapshot` command).
    Portable,
    /// Only what memory holds: a checkpoint of this data directory, next to
    /// its history (the automatic snapshots, which must stay cheap however
    /// much history there is). Cold payments, refunds, transactions and
    /// events are named, not written, once history has synced through the
    /// snapshot (`state::CheckpointItems`); such a file loads only beside that history.
    Local,
}

/// Writes the captured state and compacts (on a thread that may block).
/// A failed compaction is only logged: the snapshot is good either way.
pub fn persist(
    fs: &dyn FileSystem,
    data_dir: &Path,
    created: i64,
    captured: Captured,
    started: Instant,
    history: &History,
    scope: Scope,
) -> Result<Taken, StorageError> {
    let stall = captured.stall;
    // Segments history has not synced are kept; asking now lets this snapshot delete them.
    let synced = history.wait_synced(captured.lsn, HISTORY_SNAPSHOT_WAIT);
    if !synced {
        tracing::warn!(lsn = captured.lsn, "history did not sync up to the snapshot in time; its WAL is kept for now");
    }
    let extra = match scope {
        Scope::Portable => Some(remembered_items(history, &captured, created)?),
        Scope::Local => None,
    };
    let resolve = captured.cold.map(|view| {
        move |item, put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>| {
            resolve_cold(view.as_ref(), item, put)
        }
    });
    let resolve = resolve.as_ref().map(|r| r as Resolve);
    // A checkpoint refers to its cold objects only once history has them for
    // good; otherwise it reads them like any snapshot (and still loads as a checkpoint).
    let items: Box<dyn ExactSizeIterator<Item = SnapshotItem>> = match captured.checkpoint {
        true => Box::new(CheckpointItems::new(captured.state, captured.items, synced)),
        false => Box::new(Counted::in_place(captured.items)),
    };
    let info = write_snapshot(fs, data_dir, captured.lsn, created, items, resolve, extra)?;
    let compacted = compact(fs, data_dir, history.synced_lsn()).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "storage fault while deleting old snapshots or WAL segments; retried after the next snapshot");
        Compacted::default()
    });
    let taken = Taken { info, compacted, stall, elapsed: started.elapsed() };
    tracing::info!(
        path = %taken.info.path.display(),
        lsn = taken.info.lsn,
        bytes = taken.info.bytes,
        items = taken.info.items,
        writer_stall_ms = taken.stall.as_secs_f64() * 1e3,
        elapsed_ms = taken.elapsed.as_millis() as u64,
        snapshots_removed = taken.compacted.snapshots_removed,
        segments_removed = taken.compacted.segments_removed,
        "snapshot written"
    );
    Ok(taken)
}

/// History's remembered responses as snapshot items: those of records up to
/// the snapshot's LSN, not expired at `now`, and not already among the
/// captured items (memory holds a response until history has it, so
/// together they are every response, each once). Read twice from one fixed
/// view: once to count them for the header, once to write them.
fn remembered_items(history: &History, captured: &Captured, now: i64) -> Result<Extra<'static>, StorageError> {
    let in_memory: HashSet<String> = captured
        .items
        .iter()
        .filter_map(|(_, item)| match item {
            SnapshotItem::Idempotency { entry, .. } => Some(entry.key.clone()),
            _ => None,
        })
        .collect();
    let lsn = captured.lsn;
    let keep = move |r: &Remembered| {
        r.lsn <= lsn
            && now.saturating_sub(r.created) <= IDEMPOTENCY_RETENTION_SECONDS
            && !in_memory.contains(&r.entry.key)
    };
    let view = history.store().remembered_view();
    let mut count = 0u64;
    view.for_each(&mut |r| {
        count += u64::from(keep(&r));
        Ok(())
    })?;
    let push_all: ExtraItems<'static> = Box::new(move |put| {
        view.for_each(&mut |r| {
            if !keep(&r) {
                return Ok(());
            }
            put(SnapshotItem::Idempotency { entry: Box::new(r.entry), created: r.created })
        })
    });
    Ok(Extra { count, push_all })
}

fn failed(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "storage fault: the snapshot was not written");
    ApiError::snapshot_failed(&e.to_string())
}

/// Takes a snapshot while the server keeps serving.
pub async fn take(
    fs: Arc<dyn FileSystem>,
    data_dir: PathBuf,
    wal: &Wal,
    state: Arc<State>,
    history: Arc<History>,
    created: i64,
    scope: Scope,
) -> Result<Taken, ApiError> {
    let started = Instant::now();
    let for_items = state.clone();
    let items = actix_web::rt::task::spawn_blocking(move || touched_buffer(&for_items, scope))
        .await
        .map_err(|_| ApiError::snapshot_failed("the snapshot thread stopped"))?;
    let captured = capture(wal, state, history.clone(), items, scope)?
        .await
        .map_err(|_| ApiError::storage_unavailable())?
        .and_then(|r| r)
        .map_err(|e| match e {
            StorageError::Poisoned => ApiError::storage_unavailable(),
            other => failed(other),
        })?;
    actix_web::rt::task::spawn_blocking(move || {
        persist(fs.as_ref(), &data_dir, created, captured, started, &history, scope)
    })
    .await
    .map_err(|_| ApiError::snapshot_failed("the snapshot thread stopped"))?
    .map_err(failed)
}

/// Takes a snapshot of the running server (`POST /v1/admin/snapshot` and the
/// automatic ones, `timer::snapshots`): one at a time, counted in `/metrics`.
pub(crate) async fn take_online(ledger: &Ledger, scope: Scope) -> Result<Taken, ApiError> {
    let _one_at_a_time = ledger.snapshot_lock.try_lock().map_err(|_| ApiError::snapshot_in_progress())?;
    let wal = ledger.wal().ok_or_else(ApiError::not_ready)?;
    let history = ledger.history().ok_or_else(ApiError::not_ready)?.clone();
    let m = &ledger.metrics;
    let wal_bytes = m.wal.bytes.get();
    let taken =
        take(ledger.fs.clone(), ledger.data_dir.clone(), wal, ledger.state.clone(), history, ledger.now(), scope).await;
    let taken = match taken {
        Ok(t) => t,
        Err(e) => {
            m.snapshot_failures.inc();
            return Err(e);
        }
    };
    m.snapshots.inc();
    m.snapshot_wal_bytes.set(wal_bytes as i64);
    m.snapshot_seconds.set(taken.elapsed.as_secs_f64());
    m.snapshot_stall_seconds.set(taken.stall.as_secs_f64());
    m.snapshot_bytes.set(taken.info.bytes as i64);
    m.snapshot_lsn.set(taken.info.lsn as i64);
    m.snapshot_created.set(taken.info.created);
    Ok(taken)
}

/// Takes a snapshot from outside an async runtime (the offline command).
pub fn take_blocking(
    fs: &dyn FileSystem,
    data_dir: &Path,
    wal: &Wal,
    state: Arc<State>,
    history: &Arc<History>,
    created: i64,
) -> Result<Taken, anyhow::Error> {
    let started = Instant::now();
    let items = touched_buffer(&state, Scope::Portable);
    let captured = capture(wal, state, history.clone(), items, Scope::Portable)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .blocking_recv()
        .map_err(|_| anyhow::anyhow!("the WAL writer stopped"))?
        .and_then(|r| r)?;
    Ok(persist(fs, data_dir, created, captured, started, history, Scope::Portable)?)
}

/// Writes a local checkpoint of `state`, exactly at `lsn`, into `data_dir`
/// when nothing else applies to it and history has synced through `lsn`:
/// what the scale bench builds a data directory with (a ledger too large to
/// replay from its WAL), the same items an automatic snapshot writes.
pub fn write_checkpoint(
    fs: &dyn FileSystem,
    data_dir: &Path,
    state: Arc<State>,
    history: &History,
    lsn: u64,
    created: i64,
) -> Result<SnapshotInfo, StorageError> {
    let mut items = touched_buffer(&state, Scope::Local);
    state.snapshot_placed(true, |item| items.push(item));
    let view = history.store().objects_view();
    let resolve =
        |item, put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>| resolve_cold(view.as_ref(), item, put);
    let items = CheckpointItems::new(state, items, true);
    write_snapshot(fs, data_dir, lsn, created, items, Some(&resolve), None)
}

#[cfg(test)]
mod measure {
    use super::*;
    use crate::domain::events::{Event, EventData, EventType};
    use crate::domain::members::{Account, Customer};
    use crate::domain::payments::{Payment, PaymentStatus};
    use crate::domain::points::{PointsTransaction, Source, TxType};
    use crate::storage::fs::RealFs;
    use crate::wal::{Change, Record};

    /// Accounts in the measured state (override with LEDGER_MEASURE_ACCOUNTS).
    const MEASURE_ACCOUNTS: usize = 100_000;
    /// With `LEDGER_MEASURE_IDEMPOTENT=1`, each account's record also stores an
    /// idempotent response of this many bytes (a payment's JSON is about 450).
    const MEASURE_RESPONSE_BYTES: usize = 400;

    /// How long a snapshot of a realistic state stalls the writer, writes and
    /// loads. By hand: `cargo test --release --lib measure_snapshot -- --ignored --nocapture`.
    #[test]
    #[ignore]
    fn measure_snapshot() {
        let n: usize =
            std::env::var("LEDGER_MEASURE_ACCOUNTS").ok().and_then(|v| v.parse().ok()).unwrap_or(MEASURE_ACCOUNTS);
        let idempotent = std::env::var("LEDGER_MEASURE_IDEMPOTENT").is_ok_and(|v| v == "1");
        let state = Arc::new(State::new());
        let meta = |i: usize| [("crm".to_string(), format!("c{i}")), ("tier".to_string(), "gold".to_string())].into();
        let started = Instant::now();
        for i in 0..n {
            let (c, a, p, t) =
                (format!("cust_{i:016}"), format!("loy_{i:016}"), format!("pay_{i:016}"), format!("ptx_{i:016}"));
            let tx = PointsTransaction {
                id: t.as_str().into(),
                account: a.as_str().into(),
                points: 42,
                kind: TxType::Earn,
                source: Source::Payment { payment: p.as_str().into(), amount: 4200, currency: "eur".into() },
                balance_after: 42,
                created: 1_700_000_000,
                pending: 0,
                lots: Vec::new(),
                available_at: None,
                expires_at: None,
            };
            let payment = Payment {
                id: p.as_str().into(),
                amount: 4200,
                amount_discount: 0,
                amount_refunded: 0,
                currency: "eur".into(),
                status: PaymentStatus::Completed,
                customer: Some(c.as_str().into()),
                metadata: meta(i),
                redemptions: vec![],
                loyalty_account: Some(a.as_str().into()),
                points_earned: 42,
                award: Some(t.as_str().into()),
                created: 1_700_000_000,
                completed_at: Some(1_700_000_000),
            };
            let changes = vec![
                Change::PutCustomer(
                    Customer {
                        id: c.as_str().into(),
                        email: Some(format!("member{i}@example.com").into()),
                        name: Some(format!("Member {i}").into()),
                        metadata: meta(i),
                        loyalty_account: Some(a.as_str().into()),
                        created: 1_700_000_000,
                    }
                    .into(),
                ),
                Change::PutAccount(
                    Account {
                        id: a.as_str().into(),
                        customer: Some(c.as_str().into()),
                        metadata: meta(i),
                        created: 1_700_000_000,
                    }
                    .into(),
                ),
                Change::PutEvent(
                    Event {
                        id: format!("evt_{i:016}").as_str().into(),
                        kind: EventType::PointsEarned,
                        created: 1_700_000_000,
                        data: EventData::Transaction(tx.clone().into()),
                    }
                    .into(),
                ),
                Change::PutPayment(payment.into()),
                Change::PutTransaction(tx.into()),
            ];
            let idem = idempotent.then(|| crate::wal::IdemEntry {
                key: format!("order-{i:016}"),
                fingerprint: [3; 32],
                status: 200,
                body: vec![b'x'; MEASURE_RESPONSE_BYTES].into(),
            });
            state.apply(i as u64 + 1, Record { time: 1_700_000_000, idem, changes }).unwrap();
        }
        println!("built {n} accounts (5 objects each) in {:?}", started.elapsed());
        // `LEDGER_MEASURE_COLD=1`: memory lets go of what goes cold (the
        // event, payment and transaction), as if history had them, and the
        // snapshot is a local checkpoint that names them (`CheckpointItems`).
        let cold = std::env::var("LEDGER_MEASURE_COLD").is_ok_and(|v| v == "1");
        if cold {
            let evicted = state.take_cold().written.iter().filter(|(_, o)| state.evict(o)).count();
            println!("{evicted} objects let go of");
        }

        if cold {
            // The copy a portable snapshot makes of the same state, for comparison.
            let mut items = touched_buffer(&state, Scope::Portable);
            let t = Instant::now();
            state.snapshot_placed(false, |i| items.push(i));
            println!("writer stall of a portable snapshot's copy {:?}", t.elapsed());
        }
        let t = Instant::now();
        let mut items = touched_buffer(&state, if cold { Scope::Local } else { Scope::Portable });
        let prepare = t.elapsed();
        let t = Instant::now();
        state.snapshot_placed(cold, |i| items.push(i));
        let stall = t.elapsed();
        let count = items.len();
        let dir = tempfile::tempdir().unwrap();
        if cold {
            // A local checkpoint: the cold objects as references, then a load
            // beside history (nothing reads the bodies, so none is needed here).
            let t = Instant::now();
            let items = CheckpointItems::new(state.clone(), items, true);
            let keys = t.elapsed();
            let t = Instant::now();
            let info = write_snapshot(&RealFs, dir.path(), n as u64, 1_700_000_000, items, None, None).unwrap();
            let write = t.elapsed();
            let t = Instant::now();
            let (bytes, checked) = load::read_checked(&RealFs, &info.path).unwrap();
            let fresh = State::new();
            load_snapshot(&fresh, &info.path, &bytes, &checked, Some(n as u64)).unwrap();
            let load = t.elapsed();
            assert_eq!(fresh.balance(&format!("loy_{:016}", n - 1)), Some(42));
            assert_eq!(fresh.cold_objects(), state.cold_objects());
            println!(
                "{n} accounts, {count} items copied, a local checkpoint: buffer {prepare:?}; writer stall \
                 (copy) {stall:?}; sort and keys {keys:?}; name+encode+write+fsync {write:?}; {} bytes ({} per \
                 account); check+load {load:?}",
                info.bytes,
                info.bytes / n as u64
            );
            return;
        }

        let t = Instant::now();
        let info =
            write_snapshot(&RealFs, dir.path(), n as u64, 1_700_000_000, Counted::in_place(items), None, None).unwrap();
        let write = t.elapsed();

        let t = Instant::now();
        let (bytes, checked) = load::read_checked(&RealFs, &info.path).unwrap();
        let fresh = State::new();
        load_snapshot(&fresh, &info.path, &bytes, &checked, None).unwrap();
        let load = t.elapsed();
        assert_eq!(fresh.accounts.len(), n);
        assert_eq!(fresh.balance(&format!("loy_{:016}", n - 1)), Some(42));
        println!(
            "{n} accounts, {count} items: buffer {prepare:?}; writer stall (copy) {stall:?}; encode+write+fsync {write:?}; \
             {} bytes ({} per account); check+load {load:?}",
            info.bytes,
            info.bytes / n as u64
        );
    }
}
