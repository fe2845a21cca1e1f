//! Storage faults through the real server (docs/reliability.md, invariant 7).
//!
//! The server runs with `LEDGER_FAULTS=1`: its WAL writes through the
//! fault-injecting file system, armed with `POST /v1/test/faults`. With a
//! fault armed, a mutation answers 503 `storage_unavailable` and nothing is
//! acknowledged; every later mutation answers the same even once the disk
//! works again (a failed fsync is never retried into a false success); reads
//! still work; and a kill -9 and a start without faults recover exactly the
//! acknowledged state, the failed mutation being there or not.

mod common;

use std::sync::Mutex;

use common::{assert_ledger_consistent, list_all, Server};
use serde_json::{json, Value};

const FAULTS: &[(&str, &str)] = &[("LEDGER_FAULTS", "1")];

/// A server with faults available, a rule, a member with points and a reward.
struct Rig {
    s: Server,
    customer: String,
    account: String,
    reward: String,
    hook: String,
    /// Every acknowledged object: its path and body as answered.
    acked: Vec<(String, Value)>,
}

fn rig() -> Rig {
    let s = Server::start_with(FAULTS);
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let customer = s.ok("/v1/customers", json!({"name": "Ann"}))["id"].as_str().unwrap().to_string();
    let account = s.ok("/v1/loyalty/accounts", json!({"customer": customer}))["id"].as_str().unwrap().to_string();
    let reward = s.ok(
        "/v1/loyalty/rewards",
        json!({"name": "5 off", "points": 10, "discount": {"amount": 500, "currency": "eur"}}),
    )["id"]
        .as_str()
        .unwrap()
        .to_string();
    // For an event the tests never cause: no delivery writes race the armed fault.
    let hook = json!({"url": "http://127.0.0.1:9/hook", "enabled_events": ["payment.failed"]});
    let hook = s.ok("/v1/webhook_endpoints", hook)["id"].as_str().unwrap().to_string();
    let mut acked = Vec::new();
    let pay = s.ok("/v1/payments", json!({"amount": 10_000, "currency": "eur", "customer": customer, "confirm": true}));
    acked.push((format!("/v1/payments/{}", pay["id"].as_str().unwrap()), pay));
    let rdm = s.ok("/v1/loyalty/redemptions", json!({"account": account, "reward": reward}));
    acked.push((format!("/v1/loyalty/redemptions/{}", rdm["id"].as_str().unwrap()), rdm));
    Rig { s, customer, account, reward, hook, acked }
}

fn faults(s: &Server) -> Value {
    s.get_ok("/v1/test/faults")["ops"].clone()
}

fn arm(s: &Server, body: Value) {
    let r = s.post("/v1/test/faults", body.clone());
    assert_eq!(r.status, 200, "arming {body}: {}", r.body);
}

fn assert_storage_unavailable(r: &common::Resp, what: &str) {
    assert_eq!((r.status, r.code()), (503, "storage_unavailable"), "{what}: {}", r.body);
    assert_eq!(r.body["error"]["type"], "api_error", "{what}");
}

/// Every kind of mutation the API has, against the rig's objects.
fn every_mutation(r: &Rig) -> Vec<(String, Value)> {
    let pay = r.acked[0].1["id"].as_str().unwrap();
    let rdm = r.acked[1].1["id"].as_str().unwrap();
    vec![
        ("/v1/customers".into(), json!({"name": "Bob"})),
        ("/v1/loyalty/accounts".into(), json!({})),
        (format!("/v1/loyalty/accounts/{}", r.account), json!({"metadata": {"k": "v"}})),
        ("/v1/loyalty/program".into(), json!({"redemption_ttl_seconds": 600})),
        ("/v1/loyalty/earning_rules".into(), json!({"currency": "usd", "points": 1, "per_amount": 100})),
        ("/v1/loyalty/rewards".into(), json!({"name": "x", "points": 1, "discount": {"amount": 1, "currency": "eur"}})),
        (format!("/v1/loyalty/rewards/{}", r.reward), json!({"active": false})),
        ("/v1/payments".into(), json!({"amount": 100, "currency": "eur"})),
        ("/v1/payments".into(), json!({"amount": 100, "currency": "eur", "customer": r.customer, "confirm": true})),
        ("/v1/refunds".into(), json!({"payment": pay, "amount": 100})),
        ("/v1/loyalty/redemptions".into(), json!({"account": r.account, "reward": r.reward})),
        (format!("/v1/loyalty/redemptions/{rdm}/cancel"), json!({})),
        ("/v1/webhook_endpoints".into(), json!({"url": "http://127.0.0.1:9/hook"})),
    ]
}

/// Arms `error` on `op`, makes one mutation fail, then checks the write path
/// stays stopped, reads work, and a restart recovers the acknowledged state.
/// `reaches_disk`: whether the failed record is in the file afterwards (a
/// failed sync of a complete write leaves it in the page cache, which a kill -9
/// keeps); the contract allows either, the test pins what this fault does.
fn fault_stops_writes_until_restart(op: &str, error: &str, reaches_disk: bool) {
    let mut r = rig();
    let before = faults(&r.s);
    arm(&r.s, json!({"op": op, "error": error}));
    let failed = r.s.post_idem(
        "/v1/payments",
        json!({"amount": 4200, "currency": "eur", "customer": r.customer, "confirm": true, "metadata": {"order": "o-1"}}),
        "order-o-1",
    );
    assert_storage_unavailable(&failed, &format!("{error} on {op}"));
    let after_fault = faults(&r.s);
    assert_eq!(after_fault[op]["fired"], before[op]["fired"].as_u64().unwrap() + 1, "{after_fault}");
    assert_eq!(after_fault[op]["armed"], Value::Null, "the fault fired once: the disk works again");

    // Disarmed (and the disk fine again), writes still answer 503: nothing is
    // written or synced again in this process.
    arm(&r.s, json!({"op": op, "error": "none"}));
    for (path, body) in every_mutation(&r) {
        assert_storage_unavailable(&r.s.post(&path, body), &format!("POST {path} after {error} on {op}"));
    }
    let auth = format!("Bearer {}", common::SECRET_KEY);
    let del = r.s.request("DELETE", &format!("/v1/webhook_endpoints/{}", r.hook), None, &[("Authorization", &auth)]);
    assert_storage_unavailable(&del, "DELETE a webhook endpoint");
    let retry = r.s.post_idem(
        "/v1/payments",
        json!({"amount": 4200, "currency": "eur", "customer": r.customer, "confirm": true, "metadata": {"order": "o-1"}}),
        "order-o-1",
    );
    assert_storage_unavailable(&retry, "a retry with the same key before the restart");
    // Readiness says so, so a load balancer stops sending writes here.
    let ready = r.s.request("GET", "/readyz", None, &[]);
    assert_eq!((ready.status, ready.body["status"].as_str()), (503, Some("storage_unavailable")));
    let stopped = faults(&r.s);
    for o in ["append", "sync"] {
        assert_eq!(stopped[o]["calls"], after_fault[o]["calls"], "{o} after the fault: {stopped}");
    }

    // Reads still work, and show nothing of the failed mutations.
    for (path, body) in &r.acked {
        assert_eq!(&r.s.get_ok(path), body, "{path}");
    }
    assert_eq!(r.s.get_ok(&format!("/v1/payments?customer={}", r.customer))["data"].as_array().unwrap().len(), 1);
    assert_eq!(r.s.request("GET", "/healthz", None, &[]).status, 200);
    assert_eq!(r.s.get_ok(&format!("/v1/loyalty/accounts/{}", r.account))["balance"], 90);
    assert_ledger_consistent(&r.s);

    // kill -9, start without faults: exactly the acknowledged state, plus
    // perhaps the one failed payment (it may have reached the disk).
    r.s.restart_with(&[]);
    assert_eq!(r.s.get("/v1/test/faults").status, 404, "the hook is off without LEDGER_FAULTS");
    for (path, body) in &r.acked {
        assert_eq!(&r.s.get_ok(path), body, "{path} after restart");
    }
    let payments = list_all(&r.s, "/v1/payments");
    let survivors: Vec<&Value> = payments.iter().filter(|p| p["metadata"]["order"] == "o-1").collect();
    assert!(payments.len() <= 2 && survivors.len() <= 1, "{payments:?}");
    assert_eq!(survivors.len(), usize::from(reaches_disk), "{error} on {op}: {payments:?}");
    if (op, error) == ("append", "torn") {
        assert!(r.s.log().contains("cutting off a torn tail"), "{}", r.s.log());
    }
    assert_eq!(payments.len(), 1 + survivors.len(), "only the failed payment may have survived");
    // None of the mutations tried after the fault was written.
    let count = |path: &str| list_all(&r.s, path).len();
    assert_eq!(count("/v1/loyalty/accounts"), 1);
    assert_eq!(count("/v1/loyalty/earning_rules"), 1);
    assert_eq!(count("/v1/refunds"), 0);
    assert_eq!(count("/v1/loyalty/redemptions"), 1);
    assert_eq!(list_all(&r.s, "/v1/loyalty/rewards")[0]["active"], true);
    assert_eq!(r.s.get_ok("/v1/loyalty/program")["redemption_ttl_seconds"], 1800);
    assert_eq!(r.s.get_ok(&format!("/v1/loyalty/accounts/{}", r.account))["metadata"], json!({}));
    assert_eq!(count("/v1/webhook_endpoints"), 1);
    let balance = r.s.get_ok(&format!("/v1/loyalty/accounts/{}", r.account))["balance"].as_i64().unwrap();
    assert_eq!(balance, if survivors.is_empty() { 90 } else { 90 + 42 });
    assert_ledger_consistent(&r.s);

    // The retry the 503 advises: same key, same body. It either replays the
    // first answer (the record had reached the disk) or runs now; one payment.
    let retry = r.s.post_idem(
        "/v1/payments",
        json!({"amount": 4200, "currency": "eur", "customer": r.customer, "confirm": true, "metadata": {"order": "o-1"}}),
        "order-o-1",
    );
    assert_eq!(retry.status, 200, "{}", retry.body);
    assert_eq!(retry.replayed, !survivors.is_empty());
    let orders = list_all(&r.s, "/v1/payments").into_iter().filter(|p| p["metadata"]["order"] == "o-1").count();
    assert_eq!(orders, 1, "the retried payment exists exactly once");
    assert_eq!(r.s.get_ok(&format!("/v1/loyalty/accounts/{}", r.account))["balance"], 132);

    // Writes work again, and survive another restart.
    let c = r.s.ok("/v1/customers", json!({"name": "after"}));
    r.s.restart_with(&[]);
    assert_eq!(r.s.get_ok(&format!("/v1/customers/{}", c["id"].as_str().unwrap())), c);
    assert_ledger_consistent(&r.s);
}

#[test]
fn eio_on_sync_stops_writes_until_restart() {
    fault_stops_writes_until_restart("sync", "eio", true);
}

#[test]
fn enospc_on_sync_stops_writes_until_restart() {
    fault_stops_writes_until_restart("sync", "enospc", true);
}

#[test]
fn a_sync_that_loses_its_data_stops_writes_until_restart() {
    fault_stops_writes_until_restart("sync", "torn", false);
}

#[test]
fn eio_on_append_stops_writes_until_restart() {
    fault_stops_writes_until_restart("append", "eio", false);
}

#[test]
fn enospc_on_append_stops_writes_until_restart() {
    fault_stops_writes_until_restart("append", "enospc", false);
}

#[test]
fn a_torn_append_stops_writes_and_its_tail_is_cut_at_restart() {
    fault_stops_writes_until_restart("append", "torn", false);
}

#[test]
fn a_fault_under_concurrent_load_acknowledges_only_durable_writes() {
    let mut r = rig();
    // Let some group commits through, then fail one sync in the middle of the load.
    arm(&r.s, json!({"op": "sync", "error": "eio", "after": 40}));
    let acked = Mutex::new(Vec::<(String, Value)>::new());
    std::thread::scope(|scope| {
        for t in 0..6 {
            let (s, acked, customer) = (&r.s, &acked, &r.customer);
            scope.spawn(move || {
                let mut failed = false;
                for i in 0..60 {
                    let resp = if t % 2 == 0 {
                        s.post("/v1/customers", json!({"name": format!("c{t}-{i}")}))
                    } else {
                        s.post(
                            "/v1/payments",
                            json!({"amount": 100 + i, "currency": "eur", "customer": customer, "confirm": true}),
                        )
                    };
                    match resp.status {
                        200 => {
                            assert!(!failed, "client {t}: a 200 after a 503: a write after a failed sync");
                            let path = if t % 2 == 0 { "/v1/customers" } else { "/v1/payments" };
                            acked.lock().unwrap().push((format!("{path}/{}", resp.id()), resp.body));
                        }
                        _ => {
                            assert_storage_unavailable(&resp, &format!("client {t} request {i}"));
                            failed = true;
                        }
                    }
                }
                assert!(failed, "client {t} saw the fault");
            });
        }
    });
    let acked = acked.into_inner().unwrap();
    assert!(!acked.is_empty());
    let status = faults(&r.s);
    assert_eq!(status["sync"]["fired"], 1);
    r.s.restart_with(&[]);
    for (path, body) in r.acked.iter().chain(&acked) {
        assert_eq!(&r.s.get_ok(path), body, "{path}: acknowledged before the fault, lost after restart");
    }
    assert_ledger_consistent(&r.s);
}

#[test]
fn the_fault_hook_validates_its_input() {
    let s = Server::start_with(FAULTS);
    for bad in [
        json!({"op": "fsync", "error": "eio"}),
        json!({"op": "sync", "error": "boom"}),
        json!({"op": "rename", "error": "torn"}),
        json!({"op": "sync", "error": "slow"}),
        json!({"op": "sync", "error": "slow", "delay_ms": 60_000}),
        json!({"op": "sync", "error": "eio", "delay_ms": 5}),
        json!({"op": "sync", "error": "eio", "after": -1}),
        json!({"op": "sync", "error": "eio", "bogus": 1}),
        json!({"op": "sync"}),
    ] {
        let r = s.post("/v1/test/faults", bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert!(faults(&s).as_object().unwrap().values().all(|o| o["armed"].is_null()), "nothing was armed");
    // A fault on rename (snapshots) can be armed; the WAL never renames.
    arm(&s, json!({"op": "rename", "error": "enospc", "times": 0}));
    assert_eq!(faults(&s)["rename"]["armed"]["error"], "enospc");
    s.ok("/v1/customers", json!({}));
}

/// Snapshot files in the data directory (complete ones and temp files).
fn snapshot_files(s: &Server) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(s.data.join("snapshots"))
        .map(|d| d.filter_map(|e| e.ok()?.file_name().into_string().ok()).collect())
        .unwrap_or_default();
    names.sort();
    names
}

#[test]
fn a_failed_snapshot_acknowledges_nothing_loses_nothing_and_leaves_the_wal_writing() {
    let mut r = rig();
    // A rename fault (the snapshot's last step), a sync fault (its file's
    // fdatasync) and a write fault: each fails the snapshot, and only the
    // snapshot. (`after: 1` lets through the header write and sync of the new
    // WAL segment the snapshot starts; a fault there would stop the WAL.)
    for (op, error) in [("rename", "eio"), ("rename", "enospc"), ("sync", "eio"), ("append", "enospc")] {
        arm(&r.s, json!({"op": op, "error": error, "after": if op == "rename" { 0 } else { 1 }}));
        let snap = r.s.post("/v1/admin/snapshot", json!({}));
        assert_eq!((snap.status, snap.code()), (503, "snapshot_failed"), "{error} on {op}: {}", snap.body);
        assert_eq!(snap.body["error"]["type"], "api_error");
        assert!(faults(&r.s)[op]["fired"].as_u64().unwrap() >= 1, "{error} on {op} fired");
        assert!(
            snapshot_files(&r.s).is_empty(),
            "{error} on {op}: no snapshot and no temp file: {:?}",
            snapshot_files(&r.s)
        );
        // The WAL is untouched by a failed snapshot: writes go on.
        let c = r.s.ok("/v1/customers", json!({"name": format!("after {error} on {op}")}));
        r.acked.push((format!("/v1/customers/{}", c["id"].as_str().unwrap()), c));
    }
    r.s.restart_with(FAULTS);
    for (path, body) in &r.acked {
        assert_eq!(&r.s.get_ok(path), body, "{path} after a failed snapshot and a restart");
    }
    // With the disk well again, a snapshot works, and a start from it has everything.
    let snap = r.s.post("/v1/admin/snapshot", json!({}));
    assert_eq!(snap.status, 200, "{}", snap.body);
    assert_eq!(snapshot_files(&r.s).len(), 1);
    r.s.restart_with(&[]);
    for (path, body) in &r.acked {
        assert_eq!(&r.s.get_ok(path), body, "{path} after a start from the snapshot");
    }
    assert_ledger_consistent(&r.s);
}
