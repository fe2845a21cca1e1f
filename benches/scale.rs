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
//!   size, and how long the WAL writer was held up copying the state.
//!
//! `cargo bench --bench scale`. It reports against the targets (1M accounts in
//! <= 1 KiB each; snapshot and restore-and-start <= 3 s each); it never fails on a number.

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use loyalty_ledger::domain::members::{Account, Customer};
use loyalty_ledger::domain::IdKind;
use loyalty_ledger::wal::format::{segment_file_name, SegmentBuilder};
use loyalty_ledger::wal::{Change, Record};

/// Segment size the writer rolls at (config::WAL_SEGMENT_BYTES_MAX).
const SEGMENT_BYTES: usize = 64 * 1024 * 1024;
/// Records per group-commit batch in the log the bench writes.
const SCALE_BATCH_RECORDS: u64 = 256;
/// Memory target per idle account, in bytes.
const IDLE_ACCOUNT_BYTES_TARGET: f64 = 1024.0;
/// Snapshot and restore-and-start targets, in seconds.
const SNAPSHOT_SECONDS_TARGET: f64 = 3.0;
const T0: i64 = 1_717_113_600;

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
        let account = IdKind::Account.generate();
        let customer = Customer {
            id: IdKind::Customer.generate(),
            email: Some(format!("member{i}@example.com")),
            name: None,
            metadata: Default::default(),
            loyalty_account: Some(account.clone()),
            created: T0,
        };
        let a = Account { id: account, customer: Some(customer.id.clone()), metadata: Default::default(), created: T0 };
        let rec = Record {
            time: T0,
            idem: None,
            changes: vec![Change::PutCustomer(customer.into()), Change::PutAccount(a.into())],
        };
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
        .env("LEDGER_SECRET_KEY", "sk_scale_bench")
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
        .set("Authorization", "Bearer sk_scale_bench")
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

fn main() {
    let n: usize = std::env::var("SCALE_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(1_000_000);
    let tmp = tempfile::tempdir().unwrap();
    let empty = tmp.path().join("empty");
    let big = tmp.path().join("big");
    let restored = tmp.path().join("restored");

    let base = {
        let s = serve(&empty);
        std::thread::sleep(Duration::from_millis(300));
        common::rss_bytes(&s.child.id().to_string())
    };

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
}
