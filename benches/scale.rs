//! Scale figures for the targets of docs/performance.md, with the real release binary:
//!
//! - a data directory holding `SCALE_MEMBERS` idle members (default 1,000,000:
//!   a customer and its linked loyalty account each, one WAL record per member);
//! - startup from that WAL: time to ready, and resident memory per idle account
//!   (RSS of the ready server minus RSS of a ready empty server, over N);
//! - `loyalty-ledger snapshot --data DIR` (offline replay + snapshot): time and size;
//! - `loyalty-ledger restore FILE --data NEW` and a start from the snapshot: time
//!   to ready and RSS per account again;
//! - `POST /v1/admin/snapshot` on that running server (online snapshot): time,
//!   size, and how long the WAL writer was held up copying the state;
//! - history at scale: a data directory holding the same number of members and
//!   `SCALE_HISTORY_ROWS` history rows (default 10,000,000: earn records of
//!   random members, each a completed payment, its points transaction, its
//!   lot and two events), built by a child process of this bench through the library
//!   (records applied to a `State`, written to history in batches as the
//!   history thread writes them, then a local checkpoint, as an automatic
//!   snapshot writes one): a ledger that size cannot be replayed from a WAL in
//!   memory. Then the release server starts on it: time to ready, resident
//!   memory, history on disk, and `GET /v1/loyalty/transactions?account=`
//!   (a list by account, newest 10) of random members one after another: p50, p99.
//!
//! `cargo bench --bench scale`. It reports against the targets (1M accounts in
//! <= 1 KiB each; snapshot and restore-and-start <= 3 s each; 10M members and
//! 100M history rows in <= 8 GiB with a list by account p99 <= 20 ms, which
//! `SCALE_MEMBERS=10000000 SCALE_HISTORY_ROWS=100000000` measures;
//! `SCALE_HISTORY_ONLY=1` skips the member-only part); it never fails on a number.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

use loyalty_ledger::history::{History, HistoryStats};
use loyalty_ledger::snapshot::write_checkpoint;
use loyalty_ledger::state::State;
use loyalty_ledger::storage::fs::RealFs;

use loyalty_ledger::wal::format::{segment_file_name, SegmentBuilder};

/// Segment size the writer rolls at (config::WAL_SEGMENT_BYTES_MAX).
const SEGMENT_BYTES: usize = 64 * 1024 * 1024;
/// Records per group-commit batch in the log the bench writes.
const SCALE_BATCH_RECORDS: u64 = 256;
/// Memory target per idle account, in bytes.
const IDLE_ACCOUNT_BYTES_TARGET: f64 = 1024.0;
/// Snapshot and restore-and-start targets, in seconds.
const SNAPSHOT_SECONDS_TARGET: f64 = 3.0;
const T0: i64 = 1_717_113_600;
/// History rows one earn record makes: its payment, its points transaction,
/// its lot and two events (`common::earn_record_with_lot`, as the server
/// writes an earn).
const ROWS_PER_EARN: usize = 5;
/// Earn records applied between two history writes while building (the
/// history thread writes what applied every few milliseconds; fewer, larger
/// batches only build faster).
const BUILD_WRITE_EVERY: usize = 20_000;
/// Members whose transactions are listed for the latency figures.
const LIST_SAMPLES: usize = 2_000;
/// Targets for 10M members and 100M history rows (docs/performance.md).
const HISTORY_RESIDENT_TARGET_BYTES: f64 = 8.0 * 1024.0 * 1024.0 * 1024.0;
const LIST_P99_MS_TARGET: f64 = 20.0;
/// Set (to a directory) in the child process that builds the history data directory.
const BUILD_ENV: &str = "SCALE_BUILD_HISTORY_INTO";
/// Secret key of the servers the bench starts.
const SECRET_KEY: &str = "sk_scale_bench";

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_loyalty-ledger")
}

/// Writes `n` member records as WAL segments under `data/wal`.
fn write_members(data: &Path, n: usize) -> u64 {
    let dir = data.join("wal");
    std::fs::create_dir_all(&dir).unwrap();
    let mut seg: Option<SegmentBuilder> = None;
    let mut first = 1u64;
    let mut written = 0u64;
    let mut flush = |seg: &mut Option<SegmentBuilder>, first: u64| {
        if let Some(full) = seg.take() {
            let bytes = full.finish();
            std::fs::write(dir.join(segment_file_name(first)), &bytes).unwrap();
            written += bytes.len() as u64;
        }
    };
    for (lsn, i) in (1u64..).zip(0..n) {
        let (_, _, rec) = common::member_record(i, T0);
        let payload = rec.encode().unwrap();
        if seg.as_ref().is_some_and(|s| s.len() + payload.len() + 12 > SEGMENT_BYTES) {
            flush(&mut seg, first);
        }
        let open = seg.get_or_insert_with(|| {
            first = lsn;
            SegmentBuilder::new(lsn, 0x5eed)
        });
        open.record(&payload);
        if (lsn - first + 1).is_multiple_of(SCALE_BATCH_RECORDS) {
            open.end_batch();
        }
    }
    flush(&mut seg, first);
    written
}

struct Running {
    child: Child,
    ready_after: Duration,
    /// `http://127.0.0.1:PORT`, from the server's "listening on" line.
    base_url: String,
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data: &Path) -> Running {
    let started = Instant::now();
    let mut child = Command::new(binary())
        .args(["serve", "--data"])
        .arg(data)
        .args(["--listen", "127.0.0.1:0"])
        .env("LEDGER_SECRET_KEY", SECRET_KEY)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("start loyalty-ledger");
    let stderr = child.stderr.take().unwrap();
    let mut lines = BufReader::new(stderr).lines();
    let base_url = loop {
        match lines.next() {
            Some(Ok(line)) if line.contains("listening on http://") => {
                let at = line.find("http://").unwrap();
                break line[at..].split_whitespace().next().unwrap().trim_end_matches('"').to_string();
            }
            Some(Ok(_)) => continue,
            _ => panic!("the server exited before it was ready"),
        }
    };
    let ready_after = started.elapsed();
    // Keep draining stderr so the server never blocks on a full pipe.
    std::thread::spawn(move || for _ in lines {});
    Running { child, ready_after, base_url }
}

fn run(args: &[&str], data: &Path) -> Duration {
    let started = Instant::now();
    let out = Command::new(binary()).args(args).arg("--data").arg(data).output().expect("run loyalty-ledger");
    assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    started.elapsed()
}

/// `POST /v1/admin/snapshot` on a running server: how long the request took,
/// and how long the WAL writer was held up copying the state (`/metrics`).
struct Online {
    elapsed: Duration,
    stall_seconds: f64,
    bytes: u64,
}

fn online_snapshot(base_url: &str) -> Online {
    let started = Instant::now();
    let answer: serde_json::Value = ureq::post(&format!("{base_url}/v1/admin/snapshot"))
        .set("Authorization", &format!("Bearer {SECRET_KEY}"))
        .send_string("{}")
        .expect("POST /v1/admin/snapshot")
        .into_json()
        .expect("a JSON answer");
    let elapsed = started.elapsed();
    let metrics = ureq::get(&format!("{base_url}/metrics")).call().expect("GET /metrics").into_string().unwrap();
    let stall_seconds = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ledger_snapshot_writer_stall_seconds "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(f64::NAN);
    Online { elapsed, stall_seconds, bytes: answer["bytes"].as_u64().unwrap_or(0) }
}

fn newest_snapshot(data: &Path) -> PathBuf {
    let mut snaps: Vec<PathBuf> = std::fs::read_dir(data.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .collect();
    snaps.sort();
    snaps.pop().expect("a snapshot")
}

fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "MISSED"
    }
}

fn now_seconds() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(T0, |d| d.as_secs() as i64)
}

/// The child process: builds `data` with `members` members and `rows`
/// history rows, and the ids of `LIST_SAMPLES` random members beside it
/// (`accounts.txt`); exits without freeing the state (the OS takes it back).
fn build_history(data: &Path, members: usize, rows: usize) -> ! {
    let started = Instant::now();
    // Recent, so that event retention keeps every event while the server runs.
    let time = now_seconds();
    let wal_dir = data.join("wal");
    std::fs::create_dir_all(&wal_dir).unwrap();
    let state = Arc::new(State::new());
    let history = History::open(data, HistoryStats::default()).unwrap();
    // What a first start does: an empty history that holds objects from here on.
    history.catch_up(&RealFs, &wal_dir, &state, 0, 0).unwrap();
    let mut lsn = 0u64;
    let mut ids = Vec::with_capacity(members);
    for i in 0..members {
        let (customer, account, record) = common::member_record(i, time);
        lsn += 1;
        state.apply(lsn, record).unwrap();
        ids.push((customer, account));
    }
    println!("  built {members} members in {:.1} s", started.elapsed().as_secs_f64());
    let mut balances = vec![0i64; members];
    let mut rng = StdRng::seed_from_u64(0x5ca1e);
    let earns = rows / ROWS_PER_EARN;
    for j in 1..=earns {
        let m = rng.gen_range(0..members);
        let (customer, account) = (&ids[m].0, &ids[m].1);
        let record =
            common::earn_record_with_lot(customer, account, rng.gen_range(100..10_000), &mut balances[m], time);
        lsn += 1;
        state.apply(lsn, record).unwrap();
        if j % BUILD_WRITE_EVERY == 0 || j == earns {
            assert!(history.write_applied(&state, true), "history write failed");
        }
        if j % (earns / 10).max(1) == 0 {
            println!(
                "  {j} earn records ({} rows) applied and in history after {:.1} s",
                j * ROWS_PER_EARN,
                started.elapsed().as_secs_f64()
            );
        }
    }
    assert!(history.sync_written(), "history sync failed");
    let t = Instant::now();
    let info = write_checkpoint(&RealFs, data, state.clone(), &history, lsn, time).unwrap();
    println!(
        "  checkpoint at LSN {lsn}: {} items, {:.1} MB, written in {:.1} s; built in {:.1} s in all",
        info.items,
        info.bytes as f64 / 1e6,
        t.elapsed().as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    let sample: String = (0..LIST_SAMPLES).map(|_| format!("{}\n", ids[rng.gen_range(0..members)].1)).collect();
    std::fs::write(data.with_extension("accounts"), sample).unwrap();
    std::process::exit(0)
}

/// The percentile `p` (0..=1) of sorted `values`.
fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Builds the history data directory in a child process, starts the server
/// on it and lists random members' transactions; prints the figures.
fn history_at_scale(tmp: &Path, members: usize, rows: usize, empty_rss: u64) {
    let data = tmp.join("history-scale");
    println!("history at scale: {members} members and {rows} history rows");
    let t = Instant::now();
    let status = Command::new(std::env::current_exe().unwrap())
        .env(BUILD_ENV, &data)
        .env("SCALE_MEMBERS", members.to_string())
        .env("SCALE_HISTORY_ROWS", rows.to_string())
        .status()
        .expect("run the builder");
    assert!(status.success(), "building the history data directory failed");
    let build = t.elapsed();
    let history_bytes = common::tree_bytes(&data.join("history"));
    let snapshot_bytes = common::tree_bytes(&data.join("snapshots"));
    let accounts: Vec<String> =
        std::fs::read_to_string(data.with_extension("accounts")).unwrap().lines().map(str::to_string).collect();

    let s = serve(&data);
    std::thread::sleep(Duration::from_millis(300));
    let rss = common::rss_bytes(&s.child.id().to_string());
    let agent = ureq::agent();
    let mut latencies = Vec::with_capacity(accounts.len());
    let mut listed = 0;
    for account in &accounts {
        let t = Instant::now();
        let page: serde_json::Value = agent
            .get(&format!("{}/v1/loyalty/transactions?account={account}&limit=10", s.base_url))
            .set("Authorization", &format!("Bearer {SECRET_KEY}"))
            .call()
            .expect("GET /v1/loyalty/transactions?account=")
            .into_json()
            .expect("a JSON page");
        latencies.push(t.elapsed());
        listed += page["data"].as_array().map_or(0, Vec::len);
    }
    latencies.sort();
    let (p50, p99, max) = (percentile(&latencies, 0.5), percentile(&latencies, 0.99), latencies[latencies.len() - 1]);
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!();
    println!("scale with history: {members} members, {rows} history rows");
    println!("  built (child process)                    {:>10.1} s", build.as_secs_f64());
    println!("  history on disk                          {:>10.1} MB", history_bytes as f64 / 1e6);
    println!("  checkpoint on disk                       {:>10.1} MB", snapshot_bytes as f64 / 1e6);
    println!("  start from the checkpoint: ready after   {:>10.2} s", s.ready_after.as_secs_f64());
    println!(
        "  RSS                                      {:>10.1} MB   ({:.0} B per member, {:.1} B per history row over an empty server's {:.1} MB, counted as members' first)",
        rss as f64 / 1e6,
        rss.saturating_sub(empty_rss) as f64 / members as f64,
        rss.saturating_sub(empty_rss) as f64 / rows.max(1) as f64,
        empty_rss as f64 / 1e6
    );
    println!(
        "  list by account (limit 10, {} members one after another, {listed} transactions): p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        latencies.len(),
        ms(p50),
        ms(p99),
        ms(max)
    );
    println!(
        "  targets at 10M members + 100M rows: resident {:.2} GiB (<= 8 GiB): {}; list by account p99 {:.2} ms (<= {LIST_P99_MS_TARGET} ms): {}",
        rss as f64 / (1024.0 * 1024.0 * 1024.0),
        verdict(rss as f64 <= HISTORY_RESIDENT_TARGET_BYTES),
        ms(p99),
        verdict(ms(p99) <= LIST_P99_MS_TARGET)
    );
}

fn main() {
    let n = common::env_num("SCALE_MEMBERS", 1_000_000);
    let rows = common::env_num("SCALE_HISTORY_ROWS", 10_000_000);
    if let Some(dir) = std::env::var_os(BUILD_ENV) {
        build_history(Path::new(&dir), n, rows);
    }
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    let big = tmp.path().join("big");
    let restored = tmp.path().join("restored");

    let base = {
        let s = serve(&empty);
        std::thread::sleep(Duration::from_millis(300));
        common::rss_bytes(&s.child.id().to_string())
    };
    if std::env::var("SCALE_HISTORY_ONLY").is_ok_and(|v| v == "1") {
        history_at_scale(tmp.path(), n, rows, base);
        return;
    }

    let t = Instant::now();
    let wal_bytes = write_members(&big, n);
    println!("wrote {n} members ({:.1} MB of WAL) in {:.1} s", wal_bytes as f64 / 1e6, t.elapsed().as_secs_f64());

    let (replay_ready, replay_rss) = {
        let s = serve(&big);
        std::thread::sleep(Duration::from_millis(300));
        (s.ready_after, common::rss_bytes(&s.child.id().to_string()))
    };
    let per_account_wal = (replay_rss.saturating_sub(base)) as f64 / n as f64;

    let snap_time = run(&["snapshot"], &big);
    let snap = newest_snapshot(&big);
    let snap_bytes = std::fs::metadata(&snap).unwrap().len();

    let restore_time = run(&["restore", snap.to_str().unwrap()], &restored);
    // The online snapshot runs here, not on `big`: it compacts the WAL away,
    // and the offline snapshot above is meant to replay it.
    let (restart_ready, restart_rss, online) = {
        let s = serve(&restored);
        std::thread::sleep(Duration::from_millis(300));
        let rss = common::rss_bytes(&s.child.id().to_string());
        (s.ready_after, rss, online_snapshot(&s.base_url))
    };
    let per_account_snap = (restart_rss.saturating_sub(base)) as f64 / n as f64;
    let restore_and_start = restore_time + restart_ready;

    println!();
    println!("scale: {n} idle members (customer + linked account each)");
    println!("  empty server RSS                         {:>10.1} MB", base as f64 / 1e6);
    println!(
        "  start from WAL: ready after              {:>10.2} s   ({:.0} records/s)",
        replay_ready.as_secs_f64(),
        n as f64 / replay_ready.as_secs_f64()
    );
    println!(
        "  RSS after WAL replay                     {:>10.1} MB   {per_account_wal:.0} bytes per idle account",
        replay_rss as f64 / 1e6
    );
    println!(
        "  online snapshot (POST /v1/admin/snapshot){:>9.2} s   {:.1} MB; WAL writer held up {:.0} ms",
        online.elapsed.as_secs_f64(),
        online.bytes as f64 / 1e6,
        online.stall_seconds * 1e3
    );
    println!(
        "  offline snapshot (replay + write)        {:>10.2} s   {:.1} MB",
        snap_time.as_secs_f64(),
        snap_bytes as f64 / 1e6
    );
    println!("  restore                                  {:>10.2} s", restore_time.as_secs_f64());
    println!("  start from the snapshot: ready after     {:>10.2} s", restart_ready.as_secs_f64());
    println!(
        "  RSS after snapshot load                  {:>10.1} MB   {per_account_snap:.0} bytes per idle account",
        restart_rss as f64 / 1e6
    );
    println!();
    println!("targets (docs/performance.md):");
    println!(
        "  memory per idle account: {per_account_wal:.0} B (target <= {IDLE_ACCOUNT_BYTES_TARGET:.0} B): {}",
        verdict(per_account_wal <= IDLE_ACCOUNT_BYTES_TARGET)
    );
    println!(
        "  snapshot of {n} accounts, online: {:.2} s (target <= {SNAPSHOT_SECONDS_TARGET} s): {}",
        online.elapsed.as_secs_f64(),
        verdict(online.elapsed.as_secs_f64() <= SNAPSHOT_SECONDS_TARGET)
    );
    println!(
        "  snapshot of {n} accounts, offline including the replay: {:.2} s (target <= {SNAPSHOT_SECONDS_TARGET} s): {}",
        snap_time.as_secs_f64(),
        verdict(snap_time.as_secs_f64() <= SNAPSHOT_SECONDS_TARGET)
    );
    println!(
        "  restore and start from it: {:.2} s (target <= {SNAPSHOT_SECONDS_TARGET} s): {}",
        restore_and_start.as_secs_f64(),
        verdict(restore_and_start.as_secs_f64() <= SNAPSHOT_SECONDS_TARGET)
    );
    if rows > 0 {
        println!();
        history_at_scale(tmp.path(), n, rows, base);
    }
}
