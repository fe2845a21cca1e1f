//! History on disk (docs/architecture.md, "History"): an idempotent response
//! leaves memory once history has it and is read back from there byte for
//! byte, also after a kill -9 and after a restore elsewhere; what history
//! lost of its unsynced tail is taken back from the WAL at the next start;
//! and what is past retention is forgotten, freeing the key.

mod common;

use std::path::Path;
use std::time::Duration;

use common::{copy_dir, dir_bytes, wait_until, Resp, Server};
use serde_json::json;

/// `IDEMPOTENCY_RETENTION_SECONDS` (48 h).
const RETENTION_SECONDS: i64 = 48 * 3600;
/// Automatic snapshots at the smallest WAL volume the server accepts.
const SNAPSHOT_EARLY: (&str, &str) = ("LEDGER_SNAPSHOT_WAL_BYTES", "65536");

fn customer(s: &Server, key: &str, name: &str) -> Resp {
    s.post_idem("/v1/customers", json!({"name": name}), key)
}

/// History has every response so far (synced), and memory holds none.
fn wait_for_history(s: &Server) {
    wait_until("history has synced every record and memory let go", || {
        s.metric("ledger_idempotency_responses_in_memory") == 0.0
            && s.metric("ledger_history_synced_lsn") >= s.metric("ledger_wal_last_lsn")
    });
}

/// Every `(key, first answer)` replays exactly, and the key refuses another request.
fn assert_replays(s: &Server, firsts: &[(String, Resp)]) {
    for (key, first) in firsts {
        let name = first.body["name"].as_str().unwrap();
        let again = customer(s, key, name);
        assert!(again.replayed, "{key}: {again:?}");
        assert_eq!((again.status, &again.body), (first.status, &first.body), "{key}: the first answer again");
        let other = customer(s, key, "someone else");
        assert_eq!((other.status, other.code()), (409, "idempotency_key_reused"), "{key}");
    }
}

fn keyed_customers(s: &Server, prefix: &str, n: usize) -> Vec<(String, Resp)> {
    (0..n)
        .map(|i| {
            let key = format!("{prefix}-{i}");
            let first = customer(s, &key, &format!("{prefix} {i}"));
            assert_eq!(first.status, 200, "{first:?}");
            (key, first)
        })
        .collect()
}

#[test]
fn a_response_only_history_has_replays_byte_for_byte() {
    let mut s = Server::start();
    let firsts = keyed_customers(&s, "only-history", 40);
    wait_for_history(&s);
    assert!(s.metric("ledger_history_remembered_total") >= 40.0);
    let lsn = s.metric("ledger_wal_last_lsn");
    assert_replays(&s, &firsts);
    assert_eq!(s.metric("ledger_wal_last_lsn"), lsn, "the replays wrote nothing");

    s.restart();
    assert_replays(&s, &firsts);

    // A snapshot the operator takes holds them, so a restore elsewhere remembers them too.
    let snap = s.post("/v1/admin/snapshot", json!({}));
    assert_eq!(snap.status, 200, "{:?}", snap.body);
    let elsewhere = tempfile::tempdir().unwrap();
    let out =
        common::cli(&["restore", snap.body["path"].as_str().unwrap(), "--data", elsewhere.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = Server::start_in(elsewhere.path());
    assert_replays(&restored, &firsts);
    drop(restored);

    // The `history` command shows what a stopped server's history holds.
    let dir = elsewhere.path().to_str().unwrap();
    let out = common::cli(&["history", "--data", dir]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let summary: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(summary["lsn"].as_u64() > Some(0) && summary["idempotency_responses"].as_u64() >= Some(40), "{summary}");
    assert!(summary["objects"].as_u64().is_some(), "{summary}");
    let (key, first) = &firsts[7];
    let out = common::cli(&["history", "--data", dir, "--idempotency-key", key]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let one: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!((one["status"].as_u64(), &one["body"]), (Some(200), &first.body), "{one}");
    let out = common::cli(&["history", "--data", dir, "--idempotency-key", "never-used"]);
    assert!(!out.status.success());
}

#[test]
fn responses_acknowledged_just_before_a_kill_replay_after_it() {
    let mut s = Server::start();
    let firsts: Vec<(String, Resp)> = std::thread::scope(|scope| {
        let s = &s;
        let workers: Vec<_> =
            (0..4).map(|w| scope.spawn(move || keyed_customers(s, &format!("crash-{w}"), 50))).collect();
        workers.into_iter().flat_map(|w| w.join().unwrap()).collect()
    });
    // No wait: some of these are in the WAL and not yet in history.
    s.restart();
    assert!(s.log().contains("history caught up"), "{}", s.log());
    assert_replays(&s, &firsts);
}

/// History syncs about once a second, so a power loss can take its last
/// second back. Simulated here by putting back an older copy of it: the next
/// start reads what it lacks from the WAL, which is kept from history's
/// synced LSN on, even past an automatic snapshot (which leaves out what
/// history had).
#[test]
fn history_that_lost_its_tail_takes_it_back_from_the_wal() {
    let mut s = Server::start_with(&[SNAPSHOT_EARLY]);
    let mut firsts = keyed_customers(&s, "before", 10);
    assert_eq!(s.post("/v1/admin/snapshot", json!({})).status, 200);
    wait_for_history(&s);
    s.kill9();
    let old = tempfile::tempdir().unwrap();
    copy_dir(&s.data.join("history"), old.path());

    s.restart_with(&[SNAPSHOT_EARLY]);
    let mut n = 0;
    while s.metric("ledger_snapshots_total") < 1.0 {
        firsts.extend(keyed_customers(&s, &format!("during-{n}"), 50));
        n += 1;
        assert!(n < 100, "no automatic snapshot after {} requests", n * 50);
    }
    firsts.extend(keyed_customers(&s, "after", 10));
    wait_for_history(&s);
    s.kill9();
    put_back(old.path(), &s.data.join("history"));

    s.restart_with(&[SNAPSHOT_EARLY]);
    let line = s.log().lines().find(|l| l.contains("history caught up")).map(str::to_string);
    let line = line.unwrap_or_else(|| panic!("{}", s.log()));
    let from_wal: usize =
        line.split("from_wal=").nth(1).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(from_wal > 0, "the responses the automatic snapshot left out came from the WAL: {line}");
    assert_replays(&s, &firsts);
}

fn put_back(copy: &Path, dir: &Path) {
    std::fs::remove_dir_all(dir).unwrap();
    copy_dir(copy, dir);
}

#[test]
fn responses_past_retention_are_forgotten_and_free_their_key() {
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    let first = customer(&s, "old-key", "Ann");
    wait_for_history(&s);
    assert_eq!(customer(&s, "old-key", "Bob").status, 409);
    let before = s.metric("ledger_history_forgotten_total");
    let advance = RETENTION_SECONDS + 120;
    assert_eq!(s.post("/v1/test/clock", json!({"advance_seconds": advance})).status, 200);
    wait_until("the retention sweep forgot the response", || s.metric("ledger_history_forgotten_total") > before);
    let again = customer(&s, "old-key", "Bob");
    assert_eq!(again.status, 200, "{again:?}");
    assert!(!again.replayed, "a new request under the freed key");
    assert_ne!(again.id(), first.id());
}

#[test]
fn automatic_snapshots_keep_the_wal_bounded() {
    const REQUESTS: usize = 6000;
    let env = [SNAPSHOT_EARLY, ("LEDGER_WAL_SEGMENT_BYTES", "4096")];
    let mut s = Server::start_with(&env);
    std::thread::scope(|scope| {
        let s = &s;
        for w in 0..4 {
            scope.spawn(move || keyed_customers(s, &format!("bulk-{w}"), REQUESTS / 4));
        }
    });
    let written = s.metric("ledger_wal_bytes_total");
    assert!(written > 16.0 * 65536.0, "enough WAL for many automatic snapshots: {written}");
    // The timer looks once a second: let it catch up with the end of the writes.
    std::thread::sleep(Duration::from_millis(2500));
    assert!(s.metric("ledger_snapshots_total") >= 2.0);
    // What is left: the WAL since the older of the two kept snapshots, a
    // second or so of writes apart.
    let on_disk = dir_bytes(&s.data.join("wal"));
    assert!((on_disk as f64) < written / 2.0, "WAL on disk {on_disk} of {written} written");
    // The start after it replays only what follows the newest snapshot.
    s.restart_with(&env);
    let line = s.log().lines().find(|l| l.contains("recovery done")).unwrap_or_default().to_string();
    let records: f64 = line.split("records=").nth(1).and_then(|v| v.split_whitespace().next()?.parse().ok()).unwrap();
    assert!(records < (REQUESTS / 2) as f64, "replayed {records} records: {line}");
}

#[test]
fn events_are_forgotten_after_the_retention_period_also_across_a_restart() {
    const RETENTION_DAYS: i64 = 30;
    let clock = ("LEDGER_TEST_CLOCK", "0");
    let mut s = Server::start_with(&[clock]);
    let pay =
        |s: &Server| s.ok("/v1/payments", json!({"amount": 500, "currency": "eur", "confirm": true}))["id"].clone();
    let old_payment = pay(&s);
    let events = s.get_ok("/v1/events")["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    let old_event = events[0]["id"].as_str().unwrap().to_string();
    assert_eq!(events[0]["data"]["id"], old_payment);

    // A day short of retention, it stays.
    let day = 86_400;
    s.ok("/v1/test/clock", json!({"advance_seconds": (RETENTION_DAYS - 1) * day}));
    pay(&s);
    assert_eq!(s.get(&format!("/v1/events/{old_event}")).status, 200);
    // Past it, the next record forgets it: a 404, gone from lists too.
    s.ok("/v1/test/clock", json!({"advance_seconds": day + 60}));
    let new_payment = pay(&s);
    assert_eq!(s.get(&format!("/v1/events/{old_event}")).status, 404);
    let listed: Vec<String> =
        s.get_ok("/v1/events")["data"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().into()).collect();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(!listed.contains(&old_event));
    // The ledger keeps its history: the payment is still there.
    assert_eq!(s.get(&format!("/v1/payments/{}", old_payment.as_str().unwrap())).status, 200);
    assert_eq!(s.get(&format!("/v1/payments/{}", new_payment.as_str().unwrap())).status, 200);

    // Replay forgets it again, by the records' own times.
    s.restart_with(&[clock]);
    assert_eq!(s.get(&format!("/v1/events/{old_event}")).status, 404);
    assert_eq!(s.get_ok("/v1/events")["data"].as_array().unwrap().len(), 2);
}

#[test]
fn bad_retention_and_snapshot_settings_refuse_to_start_naming_the_variable() {
    for (name, value) in [
        ("LEDGER_EVENT_RETENTION_DAYS", "3"),
        ("LEDGER_EVENT_RETENTION_DAYS", "36501"),
        ("LEDGER_EVENT_RETENTION_DAYS", "thirty"),
        ("LEDGER_SNAPSHOT_WAL_BYTES", "100"),
        ("LEDGER_SNAPSHOT_WAL_BYTES", "-1"),
    ] {
        let dir = tempfile::tempdir().unwrap();
        match Server::try_start_in(dir.path(), &[(name, value)]) {
            Ok(_) => panic!("started with {name}={value}"),
            Err(f) => {
                assert!(!f.status.success());
                assert!(f.log.contains(name), "{name}={value}: {}", f.log);
            }
        }
    }
    // The edges of what is taken: 0 (keep for ever / no automatic snapshots) and the smallest values.
    for env in [
        [("LEDGER_EVENT_RETENTION_DAYS", "0"), ("LEDGER_SNAPSHOT_WAL_BYTES", "0")],
        [("LEDGER_EVENT_RETENTION_DAYS", "4"), ("LEDGER_SNAPSHOT_WAL_BYTES", "65536")],
    ] {
        let s = Server::start_with(&env);
        assert_eq!(s.get("/readyz").status, 200);
    }
}
