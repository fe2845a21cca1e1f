//! WAL micro-benches (criterion) and the replay rate.
//!
//! `cargo bench --bench wal`:
//! - `record/*`: bincode encode and decode of a realistic earn record (the
//!   completed payment, its `earn` points transaction and the two events they
//!   cause), with and without a stored idempotent response;
//! - `frame/*`: framing 1000 such records, and scanning them back (crc32);
//! - `earning/*`: the earning maths for 1 and 10 rules;
//! - `check/*`: `State::check` of an earn record, what every mutation runs
//!   before its append (docs/reliability.md, invariant 10);
//! - `apply/*`: `State::apply` of earn records as the WAL's apply thread does
//!   it live (one record at a time, behind the apply gate), alone and with a
//!   thread reading through the gate all along (what HTTP readers cost it);
//! - replay (timed by hand, not by criterion, since one pass is seconds):
//!   `WAL_REPLAY_RECORDS` records (default 1,000,000: 10k customers, 10k
//!   linked accounts, the rest earn records with correct balances) written as
//!   segment files, then replayed the way startup does it (`read_log`,
//!   `Record::decode`, `State::apply`) into a fresh `State`, and reported as
//!   records/s against the 1M records/s target. Phases are timed separately
//!   (read + scan, + decode, + apply) to show where replay time goes.
//!
//! It reports; it never fails on a number.

mod common;

use std::hint::black_box;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput};

use loyalty_ledger::domain::earning::{points_earned, EarningRule};
use loyalty_ledger::domain::members::{Account, Customer};
use loyalty_ledger::domain::{Id, IdKind};
use loyalty_ledger::memory::release_free_memory;
use loyalty_ledger::recovery::replay_log;
use loyalty_ledger::state::State;
use loyalty_ledger::storage::fs::RealFs;
use loyalty_ledger::wal::format::{
    begin_batch, frame_into, scan_frames, scan_segment, seal_batch, segment_file_name, SegmentBuilder,
};
use loyalty_ledger::wal::reader::{read_log, Mode, ReadFrom};
use loyalty_ledger::wal::{Change, IdemEntry, Lsn, Record};

/// The 1M records/s replay target (docs/performance.md, Targets).
const REPLAY_TARGET_PER_S: f64 = 1_000_000.0;
/// Segment size the writer rolls at (config::WAL_SEGMENT_BYTES_MAX).
const SEGMENT_BYTES: usize = 64 * 1024 * 1024;
/// Records per group commit the load bench's durable earns see (about 20, docs/performance.md).
const LOAD_BATCH_RECORDS: usize = 20;
/// Records per batch in the log the bench writes (group commits under load hold tens to thousands).
const BENCH_BATCH_RECORDS: u64 = 256;
const T0: i64 = 1_717_113_600;

fn rule(points: i64, per_amount: i64, min_amount: i64) -> EarningRule {
    EarningRule {
        id: IdKind::EarningRule.generate(),
        currency: "eur".into(),
        points,
        per_amount,
        min_amount,
        active: true,
        created: T0,
    }
}

fn sample_earn(idem: bool) -> Record {
    let mut balance = 0;
    let mut r = common::earn_record(&IdKind::Customer.generate(), &IdKind::Account.generate(), 4200, &mut balance, T0);
    if idem {
        // The stored response is the payment's JSON view (about 450 bytes).
        let body = match &r.changes[0] {
            Change::PutPayment(p) => serde_json::to_vec(&p.view()).unwrap(),
            _ => unreachable!(),
        };
        r.idem = Some(IdemEntry {
            key: "order-2024-06-01-000042".into(),
            fingerprint: [0xAB; 32],
            status: 200,
            body: body.into(),
        });
    }
    r
}

/// Records applied to one fresh `State` in the `apply/*` benches (a new
/// state each round keeps memory bounded however many iterations criterion asks).
const APPLY_ROUND_RECORDS: u64 = 10_000;

/// `iters` earn records applied live (`State::apply`), in rounds of
/// `APPLY_ROUND_RECORDS` on a fresh state, with `readers` threads reading an
/// account through the apply gate meanwhile; returns the time spent applying.
fn apply_rounds(iters: u64, readers: usize) -> Duration {
    let mut spent = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(APPLY_ROUND_RECORDS);
        left -= n;
        let state = State::new();
        let (customer, account) = (IdKind::Customer.generate(), IdKind::Account.generate());
        let member = Account { id: account.clone(), customer: None, metadata: Default::default(), created: T0 };
        state.apply(1, Record { time: T0, idem: None, changes: vec![Change::PutAccount(member.into())] }).unwrap();
        let mut balance = 0;
        let records: Vec<Record> =
            (0..n).map(|_| common::earn_record(&customer, &account, 4200, &mut balance, T0)).collect();
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for _ in 0..readers {
                scope.spawn(|| {
                    while !stop.load(Ordering::Relaxed) {
                        black_box(state.visible(|s| s.balance(&account)));
                    }
                });
            }
            let started = Instant::now();
            for (i, record) in records.into_iter().enumerate() {
                state.apply(i as u64 + 2, record).unwrap();
            }
            spent += started.elapsed();
            stop.store(true, Ordering::Relaxed);
        });
    }
    spent
}

fn live_apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply/live earn record");
    g.throughput(Throughput::Elements(1));
    g.bench_function("State::apply", |b| b.iter_custom(|iters| apply_rounds(iters, 0)));
    g.bench_function("State::apply, 1 thread reading", |b| b.iter_custom(|iters| apply_rounds(iters, 1)));
    g.finish();
}

fn micro(c: &mut Criterion) {
    for (name, idem) in [("earn", false), ("earn+idem", true)] {
        let rec = sample_earn(idem);
        let bytes = rec.encode().unwrap();
        let mut g = c.benchmark_group(format!("record/{name} ({} bytes)", bytes.len()));
        g.throughput(Throughput::Elements(1));
        g.bench_function("encode", |b| b.iter(|| black_box(&rec).encode().unwrap()));
        g.bench_function("decode", |b| b.iter(|| Record::decode(black_box(&bytes)).unwrap()));
        g.finish();
    }

    let payloads: Vec<Vec<u8>> = (0..1000).map(|_| sample_earn(false).encode().unwrap()).collect();
    let mut framed = Vec::new();
    for p in &payloads {
        frame_into(p, &mut framed);
    }
    let mut g = c.benchmark_group("frame/1000 earn records");
    g.throughput(Throughput::Elements(payloads.len() as u64));
    g.bench_function("frame_into", |b| {
        b.iter_batched_ref(
            || Vec::with_capacity(framed.len()),
            |out| {
                for p in &payloads {
                    frame_into(black_box(p), out);
                }
            },
            BatchSize::SmallInput,
        )
    });
    g.bench_function("scan_frames", |b| {
        b.iter(|| {
            let s = scan_frames(black_box(&framed), 0, 4 * 1024 * 1024);
            assert_eq!(s.payloads.len(), 1000);
            s
        })
    });
    // The same records as a segment of batches of about the size group
    // commit makes under load: the batch checksum on top of the frames'.
    let mut seg = SegmentBuilder::new(1, 0x5eed);
    for (i, p) in payloads.iter().enumerate() {
        seg.record(p);
        if (i + 1) % LOAD_BATCH_RECORDS == 0 {
            seg.end_batch();
        }
    }
    let seg = seg.finish();
    g.bench_function("scan_segment (batches of 20)", |b| {
        b.iter(|| {
            let (_, s) = scan_segment(black_box(&seg), 4 * 1024 * 1024).unwrap();
            assert_eq!(s.payloads.len(), 1000);
            s
        })
    });
    g.bench_function("seal_batch (20 records)", |b| {
        let mut batch = Vec::new();
        begin_batch(&mut batch);
        for p in &payloads[..LOAD_BATCH_RECORDS] {
            frame_into(p, &mut batch);
        }
        b.iter(|| seal_batch(black_box(&mut batch), 7, 1, LOAD_BATCH_RECORDS as u32))
    });
    g.finish();

    // What every mutation runs before its append (`State::check`, invariant
    // 10): an earn record checked against a state of 10k accounts holding
    // 10 transactions each.
    let state = State::new();
    let members: Vec<(Id, Id)> =
        (0..10_000).map(|_| (IdKind::Customer.generate(), IdKind::Account.generate())).collect();
    let mut balances = vec![0i64; members.len()];
    let mut lsn = 0u64;
    for (customer, account) in &members {
        let a = Account {
            id: account.clone(),
            customer: Some(customer.clone()),
            metadata: Default::default(),
            created: T0,
        };
        lsn += 1;
        state.apply(lsn, Record { time: T0, idem: None, changes: vec![Change::PutAccount(a.into())] }).unwrap();
    }
    for _ in 0..10 {
        for (i, (customer, account)) in members.iter().enumerate() {
            lsn += 1;
            state.apply(lsn, common::earn_record(customer, account, 4200, &mut balances[i], T0)).unwrap();
        }
    }
    let next: Vec<Record> = members
        .iter()
        .enumerate()
        .map(|(i, (customer, account))| common::earn_record(customer, account, 4200, &mut balances[i].clone(), T0))
        .collect();
    let mut g = c.benchmark_group("check");
    g.throughput(Throughput::Elements(1));
    g.bench_function("State::check, earn record (10k accounts)", |b| {
        let mut i = 0;
        b.iter(|| {
            i = (i + 1) % next.len();
            state.check(black_box(&next[i].changes)).unwrap()
        })
    });
    g.finish();
    drop(state);

    let one = [rule(1, 100, 0)];
    let ten: Vec<EarningRule> = (0..10).map(|i| rule(1 + i, 100 * (i + 1), i * 1000)).collect();
    let mut g = c.benchmark_group("earning");
    g.throughput(Throughput::Elements(1));
    g.bench_function("points_earned, 1 rule", |b| b.iter(|| points_earned(black_box(4299), black_box(&one))));
    g.bench_function("points_earned, 10 rules", |b| b.iter(|| points_earned(black_box(4299), black_box(&ten))));
    g.finish();
}

/// Writes `total` valid records as segment files in `dir`; returns the bytes written.
fn write_log(dir: &Path, total: usize) -> u64 {
    let members = 10_000.min(total / 4).max(1);
    let mut customers = Vec::with_capacity(members);
    let mut accounts = Vec::with_capacity(members);
    let mut records: Vec<Record> = Vec::new();
    let mut written = 0u64;
    let mut lsn = 1u64;
    let mut seg_first = lsn;
    let mut seg = SegmentBuilder::new(seg_first, 0x5eed);
    let mut flush = |seg: SegmentBuilder, first: u64| {
        let bytes = seg.finish();
        std::fs::write(dir.join(segment_file_name(first)), &bytes).unwrap();
        written += bytes.len() as u64;
    };
    // Batches of BENCH_BATCH_RECORDS, as group commit writes them under load.
    let mut push = |rec: &Record, seg: &mut SegmentBuilder, lsn: &mut u64, seg_first: &mut u64| {
        let payload = rec.encode().unwrap();
        if seg.len() + payload.len() + 12 > SEGMENT_BYTES {
            let full = std::mem::replace(seg, SegmentBuilder::new(*lsn, 0x5eed));
            flush(full, *seg_first);
            *seg_first = *lsn;
        }
        seg.record(&payload);
        *lsn += 1;
        if (*lsn - *seg_first).is_multiple_of(BENCH_BATCH_RECORDS) {
            seg.end_batch();
        }
    };
    let mut n = 0usize;
    // Customers, then accounts linked to them (the account record re-puts the customer).
    for i in 0..members {
        let c = Customer {
            id: IdKind::Customer.generate(),
            email: Some(format!("member{i}@example.com").into()),
            name: None,
            metadata: Default::default(),
            loyalty_account: None,
            created: T0,
        };
        customers.push(c.clone());
        records.push(Record { time: T0, idem: None, changes: vec![Change::PutCustomer(c.into())] });
    }
    for c in customers.iter_mut() {
        let a = Account {
            id: IdKind::Account.generate(),
            customer: Some(c.id.clone()),
            metadata: Default::default(),
            created: T0,
        };
        c.loyalty_account = Some(a.id.clone());
        accounts.push(a.id.clone());
        records.push(Record {
            time: T0,
            idem: None,
            changes: vec![Change::PutAccount(a.into()), Change::PutCustomer(c.clone().into())],
        });
    }
    for rec in records.drain(..) {
        if n == total {
            break;
        }
        push(&rec, &mut seg, &mut lsn, &mut seg_first);
        n += 1;
    }
    let mut balances = vec![0i64; members];
    let mut x = 0x2545_F491_4F6C_DD1Du64;
    while n < total {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let m = (x % members as u64) as usize;
        let amount = 100 + ((x >> 20) % 9901) as i64;
        let rec = common::earn_record(&customers[m].id, &accounts[m], amount, &mut balances[m], T0 + (n / 1000) as i64);
        push(&rec, &mut seg, &mut lsn, &mut seg_first);
        n += 1;
    }
    flush(seg, seg_first);
    written
}

struct Pass {
    records: u64,
    elapsed: Duration,
}

impl Pass {
    fn rate(&self) -> f64 {
        self.records as f64 / self.elapsed.as_secs_f64()
    }
}

/// One pass over the log: `decode` and `apply` choose how far each record goes.
/// The full pass is startup's own replay (`recovery::replay_log`: decode on
/// one thread, apply on another); the partial ones read (and decode) on one.
fn pass(dir: &Path, decode: bool, apply: bool) -> (Pass, Option<State>) {
    let state = State::new();
    let started = Instant::now();
    if apply {
        let (_, records) = replay_log(&RealFs, dir, Lsn::FIRST, Mode::ReadOnly, &state).expect("replay");
        return (Pass { records, elapsed: started.elapsed() }, Some(state));
    }
    let mut records = 0u64;
    read_log(&RealFs, dir, ReadFrom::Lsn(Lsn::FIRST), Mode::ReadOnly, |_, payload| {
        records += 1;
        if decode {
            black_box(Record::decode(payload).expect("decodable"));
        } else {
            black_box(payload);
        }
        Ok(())
    })
    .expect("replay");
    (Pass { records, elapsed: started.elapsed() }, None)
}

/// (busy, total) jiffies of the whole machine, and this process's CPU jiffies.
fn cpu_jiffies() -> (u64, u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let v: Vec<u64> =
        stat.lines().next().unwrap_or("").split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    let (busy, total) = if v.len() >= 5 {
        let total: u64 = v.iter().take(8).sum();
        (total - v[3] - v[4], total)
    } else {
        (0, 1)
    };
    let me = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let own = me
        .rfind(')')
        .map(|i| {
            let f: Vec<&str> = me[i + 2..].split_whitespace().collect();
            f.get(11).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
                + f.get(12).and_then(|x| x.parse::<u64>().ok()).unwrap_or(0)
        })
        .unwrap_or(0);
    (busy, total, own)
}

fn replay(total: usize) {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let t = Instant::now();
    let bytes = write_log(dir, total);
    let segments = std::fs::read_dir(dir).unwrap().count();
    println!();
    println!(
        "replay: wrote {total} records ({:.1} MB, {segments} segments, {:.0} bytes/record) in {:.1} s",
        bytes as f64 / 1e6,
        bytes as f64 / total as f64,
        t.elapsed().as_secs_f64()
    );
    // The first read warms the page cache, so every pass below reads from memory,
    // as a restart right after a shutdown would.
    let cpu_before = cpu_jiffies();
    let _ = pass(dir, false, false);
    let (read, _) = pass(dir, false, false);
    let (decode, _) = pass(dir, true, false);
    let mut full = Vec::new();
    let mut entries = 0;
    let mut state_bytes = None;
    for _ in 0..3 {
        // Resident memory the state holds, measured as the server leaves it after replay
        // (spare table capacity and freed buffers given back), on the first pass only:
        // the passes before it kept nothing.
        release_free_memory();
        let rss_before = common::rss_bytes("self");
        let (p, state) = pass(dir, true, true);
        let state = state.unwrap();
        if state_bytes.is_none() {
            state.shrink_to_fit();
            release_free_memory();
            state_bytes = Some(common::rss_bytes("self").saturating_sub(rss_before));
        }
        entries = state.payments.len() + state.transactions.len() + state.events.len() + state.accounts.len();
        full.push(p);
        let t = Instant::now();
        drop(state);
        println!("  (dropping the state took {:.2} s, not counted)", t.elapsed().as_secs_f64());
    }
    let cpu_after = cpu_jiffies();
    let cores = std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0);
    let total_j = (cpu_after.1 - cpu_before.1).max(1) as f64;
    let others = ((cpu_after.0 - cpu_before.0) as f64 - (cpu_after.2 - cpu_before.2) as f64).max(0.0) / total_j * cores;
    println!(
        "  (other processes used {others:.2} cores on average during the passes; near 0 for numbers worth keeping)"
    );
    full.sort_by_key(|a| a.elapsed);
    let median = &full[full.len() / 2];
    println!(
        "  read + scan (crc32) only:         {:>8.2} s  {:>12.0} records/s",
        read.elapsed.as_secs_f64(),
        read.rate()
    );
    println!(
        "  + Record::decode:                 {:>8.2} s  {:>12.0} records/s",
        decode.elapsed.as_secs_f64(),
        decode.rate()
    );
    println!(
        "  + State::apply (full replay: decode + 2 apply lanes):{:>8.2} s  {:>12.0} records/s  (median of 3; best {:.0}/s; {entries} objects in state)",
        median.elapsed.as_secs_f64(),
        median.rate(),
        full[0].rate()
    );
    let per = |p: &Pass| p.elapsed.as_nanos() as f64 / p.records as f64;
    println!(
        "  per record: read+scan {:.0} ns, decode {:.0} ns, apply {:.0} ns, total {:.0} ns",
        per(&read),
        per(&decode) - per(&read),
        per(median) - per(&decode),
        per(median)
    );
    if let Some(bytes) = state_bytes {
        println!(
            "  resident memory of the replayed state: {:.1} MB, {:.0} bytes per record",
            bytes as f64 / 1e6,
            bytes as f64 / total as f64
        );
    }
    let rate = median.rate();
    println!(
        "  target >= {:.0} records/s: {} ({:.2}x)",
        REPLAY_TARGET_PER_S,
        if rate >= REPLAY_TARGET_PER_S { "met" } else { "MISSED" },
        rate / REPLAY_TARGET_PER_S
    );
}

fn main() {
    let bench_mode = std::env::args().any(|a| a == "--bench");
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3))
        .configure_from_args();
    micro(&mut c);
    live_apply(&mut c);
    c.final_summary();
    let default_total = if bench_mode { 1_000_000 } else { 20_000 };
    let total = std::env::var("WAL_REPLAY_RECORDS").ok().and_then(|v| v.trim().parse().ok()).unwrap_or(default_total);
    if total > 0 {
        replay(total);
    }
}
