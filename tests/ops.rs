//! Operations: online and offline snapshots, restore, verify, compaction,
//! `/metrics` and the OpenAPI description, through the real binary.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::{assert_ledger_consistent, cli, copy_dir, dir_bytes, list_all, wal_segments, Server};
use serde_json::{json, Value};

/// Small WAL segments, so a few hundred records span many of them.
const SMALL_SEGMENTS: (&str, &str) = ("LEDGER_WAL_SEGMENT_BYTES", "4096");

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// An earning rule, a reward, `members` linked customers with points, a refund
/// (clawback), a canceled redemption (release) and an idempotent request.
fn seed(s: &Server, members: usize) -> Vec<String> {
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_5eur_off", "name": "EUR 5 off", "points": 10, "discount": {"amount": 500, "currency": "eur"}}),
    );
    s.ok("/v1/loyalty/program", json!({"redemption_ttl_seconds": 3600}));
    // Deliveries to a closed local port stay pending (retried) and are snapshotted too.
    s.ok("/v1/webhook_endpoints", json!({"url": "http://127.0.0.1:9/hooks", "enabled_events": ["payment.refunded"]}));
    let mut customers = Vec::new();
    for i in 0..members {
        let c = id(&s.ok("/v1/customers", json!({"name": format!("m{i}"), "metadata": {"i": i.to_string()}})));
        s.ok("/v1/loyalty/accounts", json!({"customer": c}));
        customers.push(c);
    }
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": customers[0], "confirm": true}));
    s.ok("/v1/refunds", json!({"payment": id(&p), "amount": 2100}));
    let acct = s.get_ok(&format!("/v1/customers/{}", customers[0]))["loyalty_account"].as_str().unwrap().to_string();
    let r = s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_5eur_off"}));
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_5eur_off"}));
    let k = s.post_idem("/v1/customers", json!({"name": "keyed"}), "ops-key-1");
    assert_eq!(k.status, 200);
    customers
}

fn pay(s: &Server, customer: &str, amount: i64) -> u16 {
    s.post("/v1/payments", json!({"amount": amount, "currency": "eur", "customer": customer, "confirm": true})).status
}

/// Everything the API shows, in list order (so order is compared too).
fn whole_state(s: &Server) -> BTreeMap<&'static str, Value> {
    let mut out = BTreeMap::new();
    let accounts = list_all(s, "/v1/loyalty/accounts");
    let customers: Vec<Value> = accounts
        .iter()
        .filter_map(|a| a["customer"].as_str())
        .map(|c| s.get_ok(&format!("/v1/customers/{c}")))
        .collect();
    out.insert("accounts", Value::Array(accounts));
    out.insert("customers", Value::Array(customers));
    out.insert("transactions", Value::Array(list_all(s, "/v1/loyalty/transactions")));
    out.insert("payments", Value::Array(list_all(s, "/v1/payments")));
    out.insert("refunds", Value::Array(list_all(s, "/v1/refunds")));
    out.insert("rewards", Value::Array(list_all(s, "/v1/loyalty/rewards")));
    out.insert("redemptions", Value::Array(list_all(s, "/v1/loyalty/redemptions")));
    out.insert("earning_rules", Value::Array(list_all(s, "/v1/loyalty/earning_rules")));
    out.insert("program", s.get_ok("/v1/loyalty/program"));
    out.insert("events", Value::Array(list_all(s, "/v1/events")));
    out.insert("webhook_endpoints", Value::Array(list_all(s, "/v1/webhook_endpoints")));
    // Attempts move on with the dispatcher's retries: compare what a delivery is, not where it is.
    let deliveries = list_all(s, "/v1/webhook_deliveries")
        .into_iter()
        .map(|d| json!([d["id"], d["endpoint"], d["event"], d["created"]]))
        .collect();
    out.insert("webhook_deliveries", Value::Array(deliveries));
    out
}

fn snapshot(s: &Server) -> Value {
    let r = s.post("/v1/admin/snapshot", json!({}));
    assert_eq!(r.status, 200, "snapshot: {}", r.body);
    assert_eq!(r.body["object"], "snapshot");
    r.body
}

fn snapshot_files(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("snapshots"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.to_string_lossy().ends_with(".snap"));
    files.sort();
    files
}

fn run_ok(args: &[&str]) -> String {
    let out = cli(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{args:?} failed ({}):\n{text}", out.status);
    text
}

fn run_fails(args: &[&str]) -> String {
    let out = cli(args);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(!out.status.success(), "{args:?} should have failed:\n{text}");
    text
}

fn restore_into(snapshot: &str, data: &Path, force: bool) -> String {
    let data = data.to_str().unwrap();
    let mut args = vec!["restore", snapshot, "--data", data];
    if force {
        args.push("--force");
    }
    run_ok(&args)
}

#[test]
fn a_snapshot_taken_under_writes_restores_to_the_same_state() {
    let s = Server::start_with(&[SMALL_SEGMENTS]);
    let customers = seed(&s, 8);
    let stop = AtomicBool::new(false);
    let acked = AtomicUsize::new(0);
    let mut mid = Vec::new();
    std::thread::scope(|scope| {
        for t in 0..3 {
            let (s, stop, acked, customers) = (&s, &stop, &acked, &customers);
            scope.spawn(move || {
                let deadline = Instant::now() + Duration::from_secs(20);
                let mut i = 0;
                while !stop.load(Ordering::Relaxed) && Instant::now() < deadline {
                    if pay(s, &customers[(t + i) % customers.len()], 100 + i as i64) == 200 {
                        acked.fetch_add(1, Ordering::Relaxed);
                    }
                    i += 1;
                }
            });
        }
        // Snapshots while the writers run.
        for _ in 0..3 {
            let before = acked.load(Ordering::Relaxed);
            let wait = Instant::now() + Duration::from_secs(10);
            while acked.load(Ordering::Relaxed) < before + 20 && Instant::now() < wait {
                std::thread::sleep(Duration::from_millis(5));
            }
            mid.push(snapshot(&s));
        }
        stop.store(true, Ordering::Relaxed);
    });
    assert!(acked.load(Ordering::Relaxed) > 40, "the writers did some work");

    // A snapshot cut mid-writes is consistent: restored, its ledger holds and
    // its points ledger is exactly the oldest part of the live one.
    let cut = mid.last().unwrap();
    let b = tempfile::tempdir().unwrap();
    restore_into(cut["path"].as_str().unwrap(), b.path(), false);
    let sb = Server::start_in(b.path());
    assert_ledger_consistent(&sb);
    let live_txs = list_all(&s, "/v1/loyalty/transactions");
    let cut_txs = list_all(&sb, "/v1/loyalty/transactions");
    assert!(!cut_txs.is_empty() && cut_txs.len() <= live_txs.len());
    assert_eq!(cut_txs[..], live_txs[live_txs.len() - cut_txs.len()..], "the cut is a prefix of the ledger");
    drop(sb);

    // After the writers stop, a snapshot restores to exactly the live state.
    let last = snapshot(&s);
    assert!(last["lsn"].as_u64() > cut["lsn"].as_u64());
    let expected = whole_state(&s);
    let c = tempfile::tempdir().unwrap();
    restore_into(last["path"].as_str().unwrap(), c.path(), false);
    let sc = Server::start_in(c.path());
    assert_eq!(whole_state(&sc), expected);
    assert_ledger_consistent(&sc);
    assert!(sc.log().contains("loading snapshot"), "{}", sc.log());
    // Idempotency keys travel in the snapshot.
    let again = sc.post_idem("/v1/customers", json!({"name": "keyed"}), "ops-key-1");
    assert!(again.replayed, "{again:?}");
    // And it keeps working after the restore: the WAL continues from the snapshot's LSN.
    assert_eq!(pay(&sc, &customers[1], 500), 200);
    let mut sc = sc;
    sc.restart();
    assert_ledger_consistent(&sc);
}

#[test]
fn a_crash_while_writing_a_snapshot_leaves_the_previous_one_usable() {
    let mut s = Server::start_with(&[SMALL_SEGMENTS]);
    let customers = seed(&s, 4);
    for i in 0..30 {
        assert_eq!(pay(&s, &customers[i % 4], 1000), 200);
    }
    snapshot(&s);
    for i in 0..30 {
        assert_eq!(pay(&s, &customers[i % 4], 700), 200);
    }
    let newest = snapshot(&s);
    for i in 0..10 {
        assert_eq!(pay(&s, &customers[i % 4], 300), 200);
    }
    let expected = whole_state(&s);
    s.kill9();
    let data = s.data.clone();
    let snaps = snapshot_files(&data);
    assert_eq!(snaps.len(), 2);
    assert_eq!(snaps[1].to_str(), newest["path"].as_str());

    // A crash mid-snapshot: a temp file of the next one, and (worse) the newest torn.
    let tmp = data.join("snapshots").join(format!("{:020}.snap.tmp", newest["lsn"].as_u64().unwrap() + 10));
    std::fs::write(&tmp, b"half a snapshot").unwrap();
    let bytes = std::fs::read(&snaps[1]).unwrap();
    std::fs::write(&snaps[1], &bytes[..bytes.len() / 2]).unwrap();
    let both_bad = tempfile::tempdir().unwrap();
    copy_dir(&data, both_bad.path());

    s.restart();
    assert_eq!(whole_state(&s), expected, "the older snapshot plus the WAL rebuilt everything");
    assert!(!tmp.exists(), "the temp file is removed");
    assert!(s.log().contains("snapshot is invalid"), "{}", s.log());
    let aside = PathBuf::from(format!("{}.corrupt", snaps[1].display()));
    assert!(aside.exists(), "the damaged snapshot is set aside as {}", aside.display());
    assert_eq!(snapshot_files(&data), vec![snaps[0].clone()]);
    assert_eq!(pay(&s, &customers[0], 100), 200);
    snapshot(&s);
    drop(s);

    // With the older one damaged too, the WAL no longer reaches back: refuse, naming the file.
    let older = both_bad.path().join("snapshots").join(snaps[0].file_name().unwrap());
    let mut b = std::fs::read(&older).unwrap();
    let mid = b.len() / 2;
    b[mid] ^= 0x40;
    std::fs::write(&older, b).unwrap();
    match Server::try_start_in(both_bad.path(), &[]) {
        Ok(_) => panic!("started without any usable snapshot"),
        Err(f) => {
            assert!(!f.status.success());
            let name = snaps[1].file_name().unwrap().to_str().unwrap();
            assert!(f.log.contains(name) && f.log.contains("no older snapshot"), "{}", f.log);
        }
    }
}

#[test]
fn verify_passes_a_sound_directory_and_catches_damage() {
    let s = Server::start_with(&[SMALL_SEGMENTS]);
    let customers = seed(&s, 3);
    for i in 0..20 {
        assert_eq!(pay(&s, &customers[i % 3], 900), 200);
    }
    snapshot(&s);
    for i in 0..20 {
        assert_eq!(pay(&s, &customers[i % 3], 400), 200);
    }
    let data = s.data.clone();
    let d = data.to_str().unwrap();
    // A running server holds the LOCK: the offline commands refuse.
    assert!(run_fails(&["verify", "--data", d]).contains("locked"));
    assert!(run_fails(&["snapshot", "--data", d]).contains("locked"));
    s.kill9();

    let report = run_ok(&["verify", "--data", d]);
    assert!(report.contains("all checks passed") && report.contains("ledger invariants hold"), "{report}");

    // A hand-altered snapshot: one byte in the middle.
    let altered = tempfile::tempdir().unwrap();
    copy_dir(&data, altered.path());
    let snap = snapshot_files(altered.path()).pop().unwrap();
    let mut b = std::fs::read(&snap).unwrap();
    let at = b.len() / 2;
    b[at] = b[at].wrapping_add(1);
    std::fs::write(&snap, b).unwrap();
    let report = run_fails(&["verify", "--data", altered.path().to_str().unwrap()]);
    assert!(
        report.contains("PROBLEM: snapshot invalid") && report.contains(snap.file_name().unwrap().to_str().unwrap()),
        "{report}"
    );

    // A corrupt WAL: a flipped bit in a middle record of the newest segment.
    let corrupt = tempfile::tempdir().unwrap();
    copy_dir(&data, corrupt.path());
    let segs = wal_segments(corrupt.path());
    let seg = segs.iter().rev().find(|p| common::record_offsets(&std::fs::read(p).unwrap()).len() >= 3).unwrap();
    let mut b = std::fs::read(seg).unwrap();
    let offsets = common::record_offsets(&b);
    b[offsets[1] + 14] ^= 0x01;
    std::fs::write(seg, b).unwrap();
    let report = run_fails(&["verify", "--data", corrupt.path().to_str().unwrap()]);
    assert!(report.contains("PROBLEM: WAL") && report.contains(seg.file_name().unwrap().to_str().unwrap()), "{report}");
}

#[test]
fn compaction_keeps_disk_bounded_over_many_snapshots() {
    let mut s = Server::start_with(&[SMALL_SEGMENTS]);
    let customers = seed(&s, 2);
    let mut wal_bytes_max = 0;
    let mut last_lsn = 0;
    for round in 0..10 {
        for i in 0..40 {
            assert_eq!(pay(&s, &customers[i % 2], 100 + round), 200);
        }
        let snap = snapshot(&s);
        let lsn = snap["lsn"].as_u64().unwrap();
        assert!(lsn > last_lsn);
        last_lsn = lsn;
        let snaps = snapshot_files(&s.data);
        assert!(snaps.len() <= 2, "round {round}: {snaps:?}");
        let segs = wal_segments(&s.data);
        // The WAL left covers at most the two newest snapshot intervals (+ the open segment).
        let wal = dir_bytes(&s.data.join("wal"));
        wal_bytes_max = wal_bytes_max.max(wal);
        assert!(segs.len() <= 12, "round {round}: {} segments", segs.len());
    }
    // 10 rounds of 40 payments is ~400 records of ~200 bytes: far more than what is kept.
    assert!(wal_bytes_max < 40 * 1024, "WAL kept {wal_bytes_max} bytes");
    let oldest = wal_segments(&s.data)[0].file_name().unwrap().to_str().unwrap().to_string();
    assert_ne!(oldest, "00000000000000000001.wal", "old segments are deleted");
    let expected = whole_state(&s);
    s.restart();
    assert_eq!(whole_state(&s), expected);
    assert_ledger_consistent(&s);
}

#[test]
fn offline_snapshot_restore_and_their_refusals() {
    let mut s = Server::start();
    let customers = seed(&s, 3);
    for i in 0..10 {
        assert_eq!(pay(&s, &customers[i % 3], 1234), 200);
    }
    let expected = whole_state(&s);
    s.kill9();
    let d = s.data.to_str().unwrap().to_string();
    let out = run_ok(&["snapshot", "--data", &d]);
    let line = out.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    let snap: Value = serde_json::from_str(line).unwrap();
    assert_eq!(snap["object"], "snapshot");
    let path = snap["path"].as_str().unwrap().to_string();
    assert!(out.contains("recovery done"), "{out}");

    let target = tempfile::tempdir().unwrap();
    restore_into(&path, target.path(), false);
    // Not over existing data without --force; --force keeps secret_key.
    std::fs::write(target.path().join("secret_key"), "sk_kept\n").unwrap();
    let t = target.path().to_str().unwrap();
    assert!(run_fails(&["restore", &path, "--data", t]).contains("--force"));
    restore_into(&path, target.path(), true);
    assert_eq!(std::fs::read_to_string(target.path().join("secret_key")).unwrap(), "sk_kept\n");
    // A damaged file is refused before anything changes.
    let bad = target.path().join("bad.snap");
    let mut b = std::fs::read(&path).unwrap();
    b.truncate(b.len() - 1);
    std::fs::write(&bad, b).unwrap();
    assert!(run_fails(&["restore", bad.to_str().unwrap(), "--data", t, "--force"]).contains("not a usable snapshot"));
    // Good checksums but items that do not load: refused while its copy was being
    // written, and the copy is removed again.
    let unloadable = tempfile::tempdir().unwrap();
    let info = loyalty_ledger::snapshot::write_snapshot(
        &loyalty_ledger::storage::fs::RealFs,
        unloadable.path(),
        7,
        0,
        vec![loyalty_ledger::state::SnapshotItem::Sizes(Box::new(loyalty_ledger::state::TableSizes {
            customers: 1_000,
            ..Default::default()
        }))]
        .into_iter(),
        None,
        None,
    )
    .unwrap();
    let before = snapshot_files(target.path());
    let err = run_fails(&["restore", info.path.to_str().unwrap(), "--data", t, "--force"]);
    assert!(err.contains("not a usable snapshot") && err.contains("table sizes"), "{err}");
    let left: Vec<String> = std::fs::read_dir(target.path().join("snapshots"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(snapshot_files(target.path()), before);
    assert!(left.iter().all(|n| n.ends_with(".snap")), "no temp copy is left: {left:?}");

    let r = Server::start_in(target.path());
    assert_eq!(whole_state(&r), expected);
    drop(r);
    // The original directory still starts, from its snapshot.
    s.restart();
    assert_eq!(whole_state(&s), expected);
}

#[test]
fn the_openapi_description_lists_every_route_the_router_serves() {
    // Both test hooks on, so their routes are served like the others.
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0"), ("LEDGER_FAULTS", "1")]);
    let spec = s.get_ok("/v1/openapi.json");
    assert_eq!(spec["openapi"], "3.0.3");
    let paths = spec["paths"].as_object().unwrap();
    assert!(paths.len() > 20);
    let mut operations = 0;
    for (path, methods) in paths {
        let concrete = path.replace("{id}", "x_missing");
        let methods = methods.as_object().unwrap();
        for method in ["get", "post", "delete"] {
            let body = (method == "post").then_some("{}");
            let auth = format!("Bearer {}", common::SECRET_KEY);
            let r = s.request(&method.to_uppercase(), &concrete, body, &[("Authorization", &auth)]);
            if methods.contains_key(method) {
                operations += 1;
                assert_ne!(r.code(), "route_not_found", "{method} {path} is described but not served: {}", r.body);
                // Every documented filter is accepted.
                for p in methods[method]["parameters"].as_array().into_iter().flatten() {
                    if p["in"] == "query" && method == "get" {
                        let name = p["name"].as_str().unwrap();
                        let value = if p["schema"]["type"] == "integer" { "1" } else { "true" };
                        let q = s.get(&format!("{concrete}?{name}={value}"));
                        assert_ne!(q.code(), "parameter_unknown", "{path} documents {name}: {}", q.body);
                    }
                }
            } else {
                assert_eq!(r.code(), "method_not_allowed", "{method} {path} is served but not described");
                assert_eq!(r.status, 405, "{method} {path}");
            }
        }
    }
    assert!(operations >= 44, "{operations} operations");
    // Objects referenced by the operations are defined.
    let schemas = spec["components"]["schemas"].as_object().unwrap();
    for name in ["Customer", "LoyaltyAccount", "Payment", "PointsTransaction", "Snapshot", "Error"] {
        assert!(schemas.contains_key(name), "{name}");
    }
}

#[test]
fn metrics_expose_the_expected_series() {
    let mut s = Server::start();
    let customers = seed(&s, 2);
    assert_eq!(pay(&s, &customers[0], 500), 200);
    assert_eq!(s.get("/v1/customers/cust_doesnotexist").status, 404);
    assert_eq!(s.request("GET", "/v1/customers/x", None, &[]).status, 401);
    s.get("/no/such/route");
    let snap = snapshot(&s);
    let r = s.request("GET", "/metrics", None, &[]);
    assert_eq!(r.status, 200);
    let text = r.body.as_str().unwrap().to_string();
    for series in [
        r#"ledger_http_requests_total{method="POST",route="/v1/payments",status="200"}"#,
        r#"ledger_http_requests_total{method="GET",route="/v1/customers/{id}",status="404"}"#,
        r#"ledger_http_requests_total{method="GET",route="/v1/customers/{id}",status="401"}"#,
        r#"ledger_http_request_duration_seconds_bucket{method="POST",route="/v1/payments",status="200",le="0.0001"}"#,
        r#"route="unmatched""#,
        "ledger_wal_records_total ",
        "ledger_wal_batches_total ",
        "ledger_wal_bytes_total ",
        "ledger_wal_sync_duration_seconds_bucket{le=",
        "ledger_wal_sync_duration_seconds_count ",
        "ledger_wal_batch_records_bucket{le=",
        "ledger_wal_apply_duration_seconds_bucket{le=",
        "ledger_accounts 2",
        "ledger_account_actors_live ",
        "ledger_replay_duration_seconds ",
        "ledger_snapshots_total 1",
        "ledger_snapshot_bytes ",
        "ledger_snapshot_writer_stall_seconds ",
        "ledger_snapshot_timestamp_seconds ",
        "ledger_webhook_deliveries_pending ",
        "ledger_webhook_delivery_failures_total ",
    ] {
        assert!(text.contains(series), "missing {series} in:\n{text}");
    }
    // Snapshot age is `time() - ledger_snapshot_timestamp_seconds` (ops/prometheus/alerts.yml):
    // the snapshot's `created`, and after a restart the loaded snapshot's, with its LSN.
    let gauge = |text: &str, name: &str| -> i64 {
        let prefix = format!("{name} ");
        text.lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("no {name} in:\n{text}"))
    };
    assert_eq!(gauge(&text, "ledger_snapshot_timestamp_seconds"), snap["created"].as_i64().unwrap());
    assert_eq!(gauge(&text, "ledger_snapshot_lsn"), snap["lsn"].as_i64().unwrap());
    s.restart();
    let after = s.request("GET", "/metrics", None, &[]).body.as_str().unwrap().to_string();
    assert_eq!(gauge(&after, "ledger_snapshot_timestamp_seconds"), snap["created"].as_i64().unwrap());
    assert_eq!(gauge(&after, "ledger_snapshot_lsn"), snap["lsn"].as_i64().unwrap());
    assert!(!text.contains("cust_doesnotexist"), "raw paths never become labels");
    // No key needed.
    assert!(text.contains("# TYPE ledger_http_request_duration_seconds histogram"));
}

/// operations.md, "Run": once the state is loaded the server turns transparent huge
/// pages off for itself (a huge-page fault on the apply thread stalled a whole batch).
#[test]
fn a_ready_server_has_transparent_huge_pages_off() {
    let before = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    if !before.lines().any(|l| l.starts_with("THP_enabled:")) {
        eprintln!("this kernel does not report THP_enabled in /proc/<pid>/status; nothing to check");
        return;
    }
    let s = Server::start();
    let pid = s.pid().expect("the server runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("the server's status");
    let line = status.lines().find(|l| l.starts_with("THP_enabled:")).expect("THP_enabled line");
    assert_eq!(line.split_whitespace().nth(1), Some("0"), "{line}");
}

/// A snapshot's `path` is absolute, also for a server or a command started
/// with a relative `--data`, so `restore PATH` works from anywhere.
#[test]
fn snapshot_paths_are_absolute_whatever_the_working_directory() {
    let cwd = tempfile::tempdir().unwrap();
    let s = Server::start_relative(cwd.path(), "data");
    seed(&s, 2);
    let snap = snapshot(&s);
    let path = PathBuf::from(snap["path"].as_str().unwrap());
    assert!(path.is_absolute(), "{}", path.display());
    assert!(path.is_file(), "{}", path.display());
    let data = cwd.path().canonicalize().unwrap().join("data");
    assert!(path.starts_with(&data), "{} is under {}", path.display(), data.display());
    let expected = whole_state(&s);
    s.kill9();

    // The offline command, from the same directory, answers an absolute path too.
    let out = common::cli_in(cwd.path(), &["snapshot", "--data", "data"]);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let line = text.lines().find(|l| l.starts_with('{')).expect("a JSON line");
    let offline = PathBuf::from(serde_json::from_str::<Value>(line).unwrap()["path"].as_str().unwrap());
    assert!(offline.is_absolute() && offline.is_file() && offline.starts_with(&data), "{}", offline.display());

    // Used as answered, from another directory: a complete data directory.
    let target = tempfile::tempdir().unwrap();
    restore_into(offline.to_str().unwrap(), target.path(), false);
    let r = Server::start_in(target.path());
    assert_eq!(whole_state(&r), expected);
}
