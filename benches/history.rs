//! History's engine under the objects an earn leaves: how key order changes
//! the cost of writing them and of reading them back in the order a snapshot
//! does (each table in creation order).
//!
//! `cargo bench --bench history` (`HISTORY_BENCH_OBJECTS`, default 2,000,000):
//! the same objects (about 400 bytes each, four per earn) are written into a
//! fresh history in batches of `BATCH` objects, once under random ids (the
//! id format before time-ordered ids) and once under time-ordered ids, then
//! read back one point read at a time in creation order, and a sample in
//! random order. It reports microseconds per object; it never fails on a
//! number.
//!
//! Then the engine's whole cost of a keyed earn (`HISTORY_BENCH_EARNS`,
//! default 500,000; 0 skips it; `HISTORY_BENCH_EARNS_ONLY=1` skips the
//! objects part): real earn records of 10,000 members, each with its lot, its
//! two events and an idempotent response of about 600 bytes, applied to a
//! `State` and written by `History::write_applied` every `EARNS_PER_WRITE`
//! records, as the history thread writes what applied under load. It reports
//! CPU microseconds per earn: the writing thread's, and the rest of the
//! process (the engine's flush and compaction threads), which on the server
//! share its two cores with the requests. Then the time to open that history
//! again, as a start does.

mod common;

use std::sync::Arc;
use std::time::Instant;

use loyalty_ledger::domain::IdKind;
use loyalty_ledger::history::layout::object_key;
use loyalty_ledger::history::{Batch, FjallHistory, History, HistoryStats, HistoryStore};
use loyalty_ledger::state::State;
use loyalty_ledger::storage::fs::RealFs;
use loyalty_ledger::wal::{Change, IdemEntry};
use rand::seq::SliceRandom;
use rand::Rng;

const BATCH: usize = 2_000;
const RANDOM_READS: usize = 100_000;

fn value(id: &str, i: usize) -> Vec<u8> {
    // Shaped like an encoded change: ids, numbers and a little text.
    let mut v = format!(
        "{id}|loy_{:016}|pay_{:016}|points={}|created={}|metadata=order-{}|description=purchase at store {}|",
        i % 10_000,
        i,
        i * 7 % 1000,
        1_700_000_000 + i / 5000,
        i,
        i % 50
    )
    .into_bytes();
    v.resize(400, b'.');
    v
}

fn random_id() -> String {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16).map(|_| BASE62[rng.gen_range(0..62)] as char).collect();
    format!("ptx_{tail}")
}

fn run(label: &str, ids: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = FjallHistory::open(dir.path()).expect("open history");
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| object_key(4, id)).collect();
    let started = Instant::now();
    for (n, chunk) in keys.chunks(BATCH).enumerate() {
        let start = n * BATCH;
        let objects = chunk.iter().enumerate().map(|(i, k)| (k.clone(), value(&ids[start + i], start + i))).collect();
        let batch = Batch { lsn: (n + 1) as u64, objects, ..Batch::default() };
        history.write(&batch).expect("write");
    }
    history.sync().expect("sync");
    let write = started.elapsed();
    let view = history.objects_view();
    let started = Instant::now();
    for key in &keys {
        assert!(view.object(key).expect("read").is_some());
    }
    let in_order = started.elapsed();
    let mut sample: Vec<&Vec<u8>> = keys.iter().collect();
    sample.shuffle(&mut rand::thread_rng());
    sample.truncate(RANDOM_READS);
    let started = Instant::now();
    for key in &sample {
        assert!(view.object(key).expect("read").is_some());
    }
    let random = started.elapsed();
    let per = |d: std::time::Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{label}: write {:.2} us/object; read in creation order {:.2} us/object; random order {:.2} us/object; {} MB on disk",
        per(write, keys.len()),
        per(in_order, keys.len()),
        per(random, sample.len()),
        history.disk_bytes() / 1_000_000
    );
}

/// Members the keyed earns go to.
const EARN_MEMBERS: usize = 10_000;
/// Earn records between two history writes: about what the history thread
/// finds every 10 ms (`HISTORY_WRITE_EVERY`) at 16k earns a second.
const EARNS_PER_WRITE: usize = 160;

/// CPU time of `clock` (`CLOCK_THREAD_CPUTIME_ID` or `CLOCK_PROCESS_CPUTIME_ID`), in seconds.
fn cpu_seconds(clock: libc::clockid_t) -> f64 {
    let mut t = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    // SAFETY: `t` is a valid timespec for the call to write.
    unsafe { libc::clock_gettime(clock, &mut t) };
    t.tv_sec as f64 + t.tv_nsec as f64 / 1e9
}

/// An idempotent response shaped like a completed payment's (about 600 bytes).
fn response_body(payment: &str, customer: &str, account: &str, tx: &str) -> Arc<[u8]> {
    format!(
        concat!(
            r#"{{"id":"{}","object":"payment","amount":2599,"amount_discount":0,"amount_refunded":0,"#,
            r#""currency":"eur","status":"completed","customer":"{}","loyalty_account":"{}","#,
            r#""points_earned":25,"award":"{}","redemptions":[],"metadata":{{}},"#,
            r#""created":1764547200,"completed_at":1764547200,"livemode":false,"#,
            r#""points":{{"earned":25,"pending":0,"balance_after":1250,"available_at":1764547200,"#,
            r#""expires_at":null}},"description":null,"receipt_email":null,"statement_descriptor":null}}"#
        ),
        payment, customer, account, tx
    )
    .into_bytes()
    .into()
}

/// Keyed earns through the history thread's own path (`History::write_applied`).
fn keyed_earns(n: usize) {
    let dir = tempfile::tempdir().expect("temp dir");
    let data = dir.path();
    let wal_dir = data.join("wal");
    std::fs::create_dir_all(&wal_dir).expect("wal dir");
    let state = Arc::new(State::new());
    let history = History::open(data, HistoryStats::default()).expect("open history");
    history.catch_up(&RealFs, &wal_dir, &state, 0, 0).expect("first catch-up");
    let time = 1_764_547_200;
    let mut lsn = 0u64;
    let members: Vec<_> = (0..EARN_MEMBERS)
        .map(|i| {
            let (customer, account, record) = common::member_record(i, time);
            lsn += 1;
            state.apply(lsn, record).expect("apply a member");
            (customer, account)
        })
        .collect();
    let mut balances = vec![0i64; EARN_MEMBERS];
    let mut rng = rand::thread_rng();
    let (process_at_start, thread_at_start) =
        (cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID), cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID));
    let started = Instant::now();
    let mut writing = 0.0;
    for j in 1..=n {
        let m = rng.gen_range(0..EARN_MEMBERS);
        let (customer, account) = &members[m];
        let mut record =
            common::earn_record_with_lot(customer, account, rng.gen_range(100..10_000), &mut balances[m], time);
        let (Some(Change::PutPayment(payment)), Some(Change::PutTransaction(tx))) =
            (record.changes.first(), record.changes.get(1))
        else {
            unreachable!("an earn record puts its payment, then its transaction")
        };
        let body = response_body(&payment.id, customer, account, &tx.id);
        record.idem = Some(IdemEntry {
            key: format!("{:016x}{:016x}", rng.gen::<u64>(), rng.gen::<u64>()),
            fingerprint: rng.gen(),
            status: 200,
            body,
        });
        lsn += 1;
        state.apply(lsn, record).expect("apply an earn");
        if j % EARNS_PER_WRITE == 0 || j == n {
            let t = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID);
            assert!(history.write_applied(&state, j == n), "history write failed");
            writing += cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID) - t;
        }
    }
    assert!(history.sync_written(), "history sync failed");
    let wall = started.elapsed().as_secs_f64();
    let thread = cpu_seconds(libc::CLOCK_THREAD_CPUTIME_ID) - thread_at_start;
    let engine = cpu_seconds(libc::CLOCK_PROCESS_CPUTIME_ID) - process_at_start - thread;
    let per = |seconds: f64| seconds * 1e6 / n as f64;
    println!(
        "keyed earns: {n} in {wall:.1} s; CPU per earn: apply {:.1} us, history write {:.1} us, engine threads (flush, compaction) {:.1} us; history write + engine {:.1} us; {} MB on disk",
        per(thread - writing),
        per(writing),
        per(engine),
        per(writing + engine),
        common::tree_bytes(&data.join("history")) / 1_000_000
    );
    // What a start pays to open it (the engine replays its journal into
    // memtables and opens its files). The state reads cold objects through
    // history, so both go before the engine is opened again.
    drop(history);
    drop(state);
    let opening = Instant::now();
    let history = History::open(data, HistoryStats::default()).expect("reopen history");
    println!("keyed earns: history opened again in {:.2} s", opening.elapsed().as_secs_f64());
    drop(history);
}

fn main() {
    let earns = common::env_num("HISTORY_BENCH_EARNS", 500_000usize);
    if std::env::var("HISTORY_BENCH_EARNS_ONLY").is_ok_and(|v| v == "1") {
        keyed_earns(earns);
        return;
    }
    let n = common::env_num("HISTORY_BENCH_OBJECTS", 2_000_000usize);
    println!("history bench: {n} objects of 400 bytes, batches of {BATCH}");
    // The format before time-ordered ids: the prefix and 16 random digits.
    let random: Vec<String> = (0..n).map(|_| random_id()).collect();
    run("random ids", &random);
    let ordered: Vec<String> = (0..n).map(|_| IdKind::PointsTransaction.generate().to_string()).collect();
    run("time-ordered ids", &ordered);
    if earns > 0 {
        keyed_earns(earns);
    }
}
