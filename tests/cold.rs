//! Cold objects (docs/architecture.md, "History"): once history holds a
//! points transaction, an event, a finished payment, a refund, a closed
//! redemption or a spent lot, memory lets go of its body
//! and every read answers from history: the same objects, order, cursors and
//! filters, across a kill -9 and in a snapshot restored elsewhere. A cold
//! object that changes again (a refund of a payment whose body is only in
//! history, a cancel giving points back to a spent lot) changes exactly as a
//! hot one.

mod common;

use common::{assert_lots_reconcile, list_all, wait_until, Server};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A server with "1 point per EUR 1", a EUR 5 reward for 100 points, and a linked member.
fn setup() -> (Server, String, String) {
    setup_with(&[])
}

/// `setup`, with extra environment.
fn setup_with(env: &[(&str, &str)]) -> (Server, String, String) {
    let s = Server::start_with(env);
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_5eur_off", "name": "EUR 5 off", "points": 100, "discount": {"amount": 500, "currency": "eur"}}),
    );
    let c = id(&s.ok("/v1/customers", json!({})));
    let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
    (s, c, a)
}

/// History has every record so far and memory let go of every cold object.
fn wait_cold(s: &Server, at_least: f64) {
    wait_until("history holds the cold objects and memory let go of them", || {
        s.metric("ledger_objects_cold") >= at_least
            && s.metric("ledger_history_synced_lsn") >= s.metric("ledger_wal_last_lsn")
    });
}

/// Every list a client can read of this ledger, each walked with small pages
/// (cursors land on cold and hot objects alike), and some filters.
fn everything(s: &Server, customer: &str, account: &str) -> Vec<Vec<Value>> {
    let walk = |path: &str| {
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut out: Vec<Value> = Vec::new();
        loop {
            let page = match out.last() {
                Some(last) => s.get_ok(&format!("{path}{sep}limit=3&starting_after={}", id(last))),
                None => s.get_ok(&format!("{path}{sep}limit=3")),
            };
            out.extend(page["data"].as_array().unwrap().iter().cloned());
            if page["has_more"] != true {
                return out;
            }
        }
    };
    let lists = vec![
        walk("/v1/payments"),
        walk(&format!("/v1/payments?customer={customer}")),
        walk("/v1/refunds"),
        walk("/v1/loyalty/transactions"),
        walk(&format!("/v1/loyalty/transactions?account={account}")),
        walk(&format!("/v1/loyalty/redemptions?account={account}")),
        walk("/v1/events"),
        walk("/v1/events?type=payment.refunded"),
        list_all(s, &format!("/v1/loyalty/lots?account={account}")),
        vec![s.get_ok(&format!("/v1/loyalty/accounts/{account}"))],
        walk("/v1/loyalty/transactions?type=earn"),
        walk("/v1/loyalty/transactions?type=clawback"),
        walk("/v1/loyalty/transactions?type=redeem"),
    ];
    // Each type's list (its own index) is the whole list's transactions of that type.
    for (at, kind) in [(10, "earn"), (11, "clawback"), (12, "redeem")] {
        let of_kind: Vec<&Value> = lists[3].iter().filter(|t| t["type"] == kind).collect();
        assert_eq!(lists[at].iter().collect::<Vec<_>>(), of_kind, "type={kind}");
    }
    // The lots without `account` (the lot order's groups, state/lot_order.rs)
    // are this one account's own list, whole and by status, walked with small
    // pages forwards and back.
    let mine = &lists[8];
    for status in [None, Some("pending"), Some("available"), Some("spent"), Some("expired"), Some("clawed_back")] {
        let path = status.map_or("/v1/loyalty/lots".to_string(), |st| format!("/v1/loyalty/lots?status={st}"));
        let want: Vec<Value> = mine.iter().filter(|l| status.is_none_or(|st| l["status"] == st)).cloned().collect();
        assert_eq!(walk(&path), want, "{path}");
        let Some(last) = want.last() else { continue };
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut back = vec![last.clone()];
        loop {
            let page = s.get_ok(&format!("{path}{sep}limit=3&ending_before={}", id(&back[0])));
            let data = page["data"].as_array().unwrap();
            back.splice(0..0, data.iter().cloned());
            if page["has_more"] != true {
                break;
            }
        }
        assert_eq!(back, want, "{path}, backwards");
    }
    lists
}

#[test]
fn cold_objects_read_as_they_were_written_also_after_a_kill_and_a_restore() {
    let (mut s, c, a) = setup();
    let mut payments = Vec::new();
    for i in 0..24 {
        let confirm = i % 5 != 4; // every fifth stays pending: in memory, between cold ones
        payments.push(
            s.ok("/v1/payments", json!({"amount": 1000 + i, "currency": "eur", "customer": c, "confirm": confirm})),
        );
    }
    wait_cold(&s, 1.0);
    // Changed again once cold: refunds of completed payments.
    for p in payments.iter().filter(|p| p["status"] == "completed").take(4) {
        s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 300}));
    }
    let r = s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"}));
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"})); // open: stays in memory
    wait_cold(&s, 60.0);
    // A payment nobody changed since reads back exactly as it was answered.
    for p in payments.iter().skip(10) {
        assert_eq!(&s.get_ok(&format!("/v1/payments/{}", id(p))), p, "a cold payment as it was created");
    }
    let before = everything(&s, &c, &a);
    assert!(before[3].len() >= 20 && before[6].len() >= 40, "{:?}", before.iter().map(Vec::len).collect::<Vec<_>>());
    assert_lots_reconcile(&s);

    s.kill9();
    s.restart();
    assert_eq!(everything(&s, &c, &a), before, "the same after a kill -9");
    assert!(s.metric("ledger_objects_cold") >= 60.0, "a restart lets go of what history holds");

    let snap = s.ok("/v1/admin/snapshot", json!({}));
    let dir = tempfile::tempdir().unwrap();
    let out = common::cli(&["restore", snap["path"].as_str().unwrap(), "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let restored = Server::try_start_in(dir.path(), &[]).unwrap_or_else(|f| panic!("{}", f.log));
    assert_eq!(everything(&restored, &c, &a), before, "a snapshot holds the cold objects too");
    drop(restored);
    let out = common::cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "verify:\n{text}");
}

#[test]
fn a_cold_payment_refunds_and_a_spent_lot_comes_back_exactly_as_hot_ones() {
    let (s, c, a) = setup();
    let p = s.ok("/v1/payments", json!({"amount": 42_000, "currency": "eur", "customer": c, "confirm": true}));
    let q = s.ok("/v1/payments", json!({"amount": 10_000, "currency": "eur", "customer": c, "confirm": true}));
    // The payments, their transactions and events.
    wait_cold(&s, 8.0);
    let balance = |s: &Server| s.get_ok(&format!("/v1/loyalty/accounts/{a}"))["balance"].as_i64().unwrap();
    assert_eq!(balance(&s), 520);
    let refund = s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 10_500}));
    assert_eq!(refund["points_clawed_back"], 105);
    assert_eq!(balance(&s), 415);
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&p)))["amount_refunded"], 10_500);
    // More than is left is refused, and changes nothing.
    let over = s.post("/v1/refunds", json!({"payment": p["id"], "amount": 40_000}));
    assert_eq!(over.status, 400, "{:?}", over.body);
    // Four redemptions spend the first lot to nothing: spent, it goes cold,
    // with the four redeem transactions.
    wait_cold(&s, 12.0);
    let cold_before = s.metric("ledger_objects_cold");
    let redemptions: Vec<Value> =
        (0..4).map(|_| s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"}))).collect();
    assert_eq!(balance(&s), 15);
    let lots = list_all(&s, &format!("/v1/loyalty/lots?account={a}"));
    assert!(lots.iter().any(|l| l["status"] == "spent"), "{lots:?}");
    wait_cold(&s, cold_before + 5.0);
    // A cancel gives points back to the lots it took them from, the spent one among them.
    for r in &redemptions[2..] {
        s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(r)), json!({}));
    }
    assert_eq!(balance(&s), 215);
    let full = s.ok("/v1/refunds", json!({"payment": q["id"]}));
    assert_eq!(full["points_clawed_back"], 100);
    assert_eq!(balance(&s), 115);
    assert_lots_reconcile(&s);
}

/// A restart from a snapshot that history is ahead of: the snapshot's cold
/// payments, transactions and events leave memory as they load (history has
/// them, at their versions or newer), and the records after the snapshot
/// change some of them again (a refund of a payment cold in the snapshot, a
/// lot spent then given back): every read is the same as before the kill.
#[test]
fn a_restart_from_a_snapshot_history_is_ahead_of_reads_the_same() {
    let (mut s, c, a) = setup();
    let payments: Vec<Value> = (0..12)
        .map(|i| s.ok("/v1/payments", json!({"amount": 5_000 + i, "currency": "eur", "customer": c, "confirm": true})))
        .collect();
    wait_cold(&s, 36.0);
    s.ok("/v1/admin/snapshot", json!({}));
    // After the snapshot: payments cold in it change again, a lot is spent and given back.
    for p in &payments[..3] {
        s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 1_000}));
    }
    let r: Vec<Value> =
        (0..3).map(|_| s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"}))).collect();
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r[0])), json!({}));
    s.ok("/v1/payments", json!({"amount": 7_000, "currency": "eur", "customer": c, "confirm": true}));
    wait_cold(&s, 50.0);
    let before = everything(&s, &c, &a);
    let cold = s.metric("ledger_objects_cold");

    s.kill9();
    s.restart();
    assert_eq!(everything(&s, &c, &a), before, "the same after a kill -9");
    assert_eq!(s.metric("ledger_objects_cold"), cold, "memory holds what it held");
    // Only what the records after the snapshot put was let go of at the catch-up.
    let log = s.log();
    let caught_up = log.lines().rev().find(|l| l.contains("history caught up")).expect("a catch-up line");
    let evicted: f64 = caught_up.split("evicted=").nth(1).and_then(|v| v.split(' ').next()).unwrap().parse().unwrap();
    assert!(evicted < cold / 2.0, "{evicted} of {cold} let go of after the load: {caught_up}");
    assert_lots_reconcile(&s);
    common::assert_ledger_consistent(&s);
}

/// An automatic snapshot is a local checkpoint: it names the cold payments,
/// refunds, transactions and events that history holds instead of holding
/// them, and carries each account's figures. A restart from one, with
/// records after it that change some of those objects again, reads the same;
/// `verify` reads what it names from history; and `restore`, which makes a
/// directory without that history, refuses it and says what to use instead.
#[test]
fn a_restart_from_an_automatic_checkpoint_reads_the_same() {
    let env = [("LEDGER_SNAPSHOT_WAL_BYTES", "65536")];
    let (mut s, c, a) = setup_with(&env);
    let payments: Vec<Value> = (0..12)
        .map(|i| {
            let confirm = i % 5 != 4; // pending ones stay in memory
            s.ok("/v1/payments", json!({"amount": 5_000 + i, "currency": "eur", "customer": c, "confirm": confirm}))
        })
        .collect();
    wait_cold(&s, 30.0);
    // WAL enough for an automatic snapshot, taken while those are cold.
    let taken = s.metric("ledger_snapshots_total");
    let mut rounds = 0;
    while s.metric("ledger_snapshots_total") <= taken {
        for _ in 0..10 {
            s.ok("/v1/payments", json!({"amount": 900, "currency": "eur", "customer": c, "confirm": true}));
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
        rounds += 1;
        assert!(rounds < 100, "no automatic snapshot after {} payments", rounds * 10);
    }
    // After it: payments cold in it change again, a lot is spent and given back.
    for p in payments.iter().filter(|p| p["status"] == "completed").take(3) {
        s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 1_000}));
    }
    let r = s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"}));
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    s.ok("/v1/payments", json!({"amount": 7_000, "currency": "eur", "customer": c, "confirm": true}));
    wait_cold(&s, 60.0);
    let before = everything(&s, &c, &a);
    let cold = s.metric("ledger_objects_cold");

    s.restart_with(&env);
    assert!(s.log().contains("loading snapshot"), "{}", s.log());
    assert_eq!(everything(&s, &c, &a), before, "the same after a kill -9");
    assert_eq!(s.metric("ledger_objects_cold"), cold, "memory holds what it held");
    assert_lots_reconcile(&s);
    common::assert_ledger_consistent(&s);
    // Spending after the restart takes from the lots the checkpoint named
    // (listed as open apart): what the lots hold keeps matching the balance.
    let balance = s.get_ok(&format!("/v1/loyalty/accounts/{a}"))["balance"].as_i64().unwrap();
    assert!(balance >= 300, "{balance}");
    for _ in 0..balance / 100 {
        s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_5eur_off"}));
    }
    assert_lots_reconcile(&s);
    let left: i64 = list_all(&s, &format!("/v1/loyalty/lots?account={a}"))
        .iter()
        .filter(|l| l["status"] == "available")
        .map(|l| l["remaining"].as_i64().unwrap())
        .sum();
    let balance = s.get_ok(&format!("/v1/loyalty/accounts/{a}"))["balance"].as_i64().unwrap();
    assert_eq!(left, balance, "every point spent came out of a lot");

    s.kill9();
    let out = common::cli(&["verify", "--data", s.data.to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "verify:\n{text}");
    let newest = std::fs::read_dir(s.data.join("snapshots"))
        .unwrap()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "snap"))
        .max()
        .expect("an automatic snapshot");
    let elsewhere = tempfile::tempdir().unwrap();
    let out = common::cli(&["restore", newest.to_str().unwrap(), "--data", elsewhere.path().to_str().unwrap()]);
    let text = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "an automatic checkpoint does not restore elsewhere");
    assert!(text.contains("automatic checkpoint") && text.contains("/v1/admin/snapshot"), "{text}");
}
