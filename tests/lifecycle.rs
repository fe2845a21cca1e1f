//! The points lifecycle through the real server on the test clock: pending
//! points and the return window, lots and the order spending takes them in,
//! expiry exactly once (across restarts and `kill -9`), adjustments, the
//! liability and activity reports and the CSV export (docs/api.md, "Points
//! lifecycle").

mod common;

use common::{assert_lots_reconcile, list_all, wait_until, Rng, Server};
use serde_json::{json, Value};

const DAY: i64 = 86_400;
const MANUAL_CLOCK: (&str, &str) = ("LEDGER_TEST_CLOCK", "0");

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// "1 point per EUR 1", a 100-point reward, and `program` set.
fn setup(s: &Server, program: Value) {
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_100", "name": "EUR 5 off", "points": 100, "discount": {"amount": 500, "currency": "eur"}}),
    );
    s.ok("/v1/loyalty/program", program);
}

/// A new member: (customer, account).
fn member(s: &Server) -> (String, String) {
    let c = id(&s.ok("/v1/customers", json!({})));
    let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
    (c, a)
}

/// A completed payment of `points` EUR for `customer`.
fn buy(s: &Server, customer: &str, points: i64) -> Value {
    s.ok("/v1/payments", json!({"amount": points * 100, "currency": "eur", "customer": customer, "confirm": true}))
}

fn account(s: &Server, a: &str) -> Value {
    s.get_ok(&format!("/v1/loyalty/accounts/{a}"))
}

fn balances(s: &Server, a: &str) -> (i64, i64) {
    let v = account(s, a);
    (v["balance"].as_i64().unwrap(), v["pending_balance"].as_i64().unwrap())
}

fn advance(s: &Server, seconds: i64) -> i64 {
    s.ok("/v1/test/clock", json!({"advance_seconds": seconds}))["now"].as_i64().unwrap()
}

fn now(s: &Server) -> i64 {
    advance(s, 0)
}

fn lots(s: &Server, a: &str) -> Vec<Value> {
    list_all(s, &format!("/v1/loyalty/lots?account={a}"))
}

fn txs_of_type(s: &Server, a: &str, kind: &str) -> Vec<Value> {
    list_all(s, &format!("/v1/loyalty/transactions?account={a}&type={kind}"))
}

/// How long `settle` waits for the lots timer: thousands of lots coming due
/// at once take one actor command each (a WAL commit), on a debug build.
const SETTLE_SECONDS: u64 = 300;

/// Waits until no lot is due any more at the server's `now`: every pending
/// lot's `available_at` and every spendable lot's `expires_at` is ahead.
fn settle(s: &Server) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(SETTLE_SECONDS);
    loop {
        let t = now(s);
        let pending = list_all(s, "/v1/loyalty/lots?status=pending");
        let available = list_all(s, "/v1/loyalty/lots?status=available");
        let due = pending.iter().filter(|l| l["available_at"].as_i64().unwrap() <= t).count()
            + available.iter().filter(|l| l["expires_at"].as_i64().is_some_and(|e| e <= t)).count();
        if due == 0 {
            return;
        }
        assert!(std::time::Instant::now() < deadline, "{due} lots still due after {SETTLE_SECONDS} s");
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
}

#[test]
fn points_are_pending_for_the_return_window_then_become_available() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"pending_days": 14}));
    let (c, a) = member(&s);
    let t0 = now(&s);
    let p = buy(&s, &c, 250);
    let earn = s.get_ok(&format!("/v1/loyalty/transactions/{}", p["award"].as_str().unwrap()));
    assert_eq!(earn["available_at"], t0 + 14 * DAY);
    assert_eq!(earn["expires_at"], Value::Null);
    assert_eq!(earn["balance_after"], 0, "balance_after is the spendable balance");
    assert_eq!(balances(&s, &a), (0, 250));
    let lot = &lots(&s, &a)[0];
    assert_eq!((lot["status"].as_str(), lot["remaining"].as_i64()), (Some("pending"), Some(250)));
    assert_eq!(lot["transaction"], earn["id"]);
    assert_eq!(lot["object"], "points_lot");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/lots/{}", id(lot)))["remaining"], 250);
    // Pending points are never spent.
    let r = s.post("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
    assert_eq!((r.status, r.code()), (409, "insufficient_points"));
    let r = s.post("/v1/loyalty/adjustments", json!({"account": a, "points": -1, "reason": "test"}));
    assert_eq!((r.status, r.code()), (409, "insufficient_points"));

    advance(&s, 14 * DAY - 1);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(balances(&s, &a), (0, 250), "not a second early");
    advance(&s, 1);
    wait_until("available", || balances(&s, &a) == (250, 0));
    let lot = s.get_ok(&format!("/v1/loyalty/lots/{}", id(lot)));
    assert_eq!(lot["status"], "available");
    let events = list_all(&s, "/v1/events?type=loyalty.points.available");
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["data"]["id"], lot["id"]);
    assert_eq!(txs_of_type(&s, &a, "earn").len(), 1, "becoming available writes no transaction");
    s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
    assert_eq!(balances(&s, &a), (150, 0));
    assert_lots_reconcile(&s);
}

#[test]
fn spending_takes_the_soonest_expiring_lot_first_and_never_expiring_last() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"expiry": {"days": 365}}));
    let (c, a) = member(&s);
    let first = buy(&s, &c, 80); // expires in 365 days
    advance(&s, 10 * DAY);
    s.ok("/v1/loyalty/program", json!({"expiry": {"days": 30}}));
    let second = buy(&s, &c, 50); // expires in 30 days: sooner than the first
    s.ok("/v1/loyalty/program", json!({"expiry": null}));
    let third = buy(&s, &c, 60); // never expires
    let lot_of = |p: &Value| {
        let tx = s.get_ok(&format!("/v1/loyalty/transactions/{}", p["award"].as_str().unwrap()));
        tx["lots"][0]["lot"].as_str().unwrap().to_string()
    };
    let (l1, l2, l3) = (lot_of(&first), lot_of(&second), lot_of(&third));
    let listed: Vec<String> = lots(&s, &a).iter().map(id).collect();
    assert_eq!(listed, vec![l2.clone(), l1.clone(), l3.clone()], "listed soonest to expire first");
    // Cursors page in that order, both ways.
    let page = s.get_ok(&format!("/v1/loyalty/lots?account={a}&limit=1&starting_after={l2}"));
    assert_eq!((page["data"][0]["id"].as_str(), page["has_more"].as_bool()), (Some(&*l1), Some(true)));
    let page = s.get_ok(&format!("/v1/loyalty/lots?account={a}&limit=1&ending_before={l3}"));
    assert_eq!((page["data"][0]["id"].as_str(), page["has_more"].as_bool()), (Some(&*l1), Some(true)));
    let page = s.get_ok(&format!("/v1/loyalty/lots?limit=2&ending_before={l3}"));
    let ids: Vec<&str> = page["data"].as_array().unwrap().iter().map(|l| l["id"].as_str().unwrap()).collect();
    assert_eq!((ids, page["has_more"].as_bool()), (vec![&*l2, &*l1], Some(false)));
    let r = s.get("/v1/loyalty/lots?starting_after=lot_nothing00000000");
    assert_eq!((r.status, r.code()), (400, "resource_missing"));
    for (query, code) in [
        ("status=bogus", "parameter_invalid"),
        ("account=loy_nobody000000000", "resource_missing"),
        ("account=cust_x", "parameter_invalid"),
        ("colour=red", "parameter_unknown"),
    ] {
        let r = s.get(&format!("/v1/loyalty/lots?{query}"));
        assert_eq!((r.status, r.code()), (400, code), "{query}: {}", r.body);
    }
    assert_eq!(s.get("/v1/loyalty/lots/lot_nothing00000000").status, 404);
    let next = &account(&s, &a)["next_expiry"];
    assert_eq!(next["points"], 50);
    let r = s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
    let redeem = &txs_of_type(&s, &a, "redeem")[0];
    assert_eq!(redeem["lots"], json!([{"lot": l2, "points": 50}, {"lot": l1, "points": 50}]));
    let remaining = |l: &str| s.get_ok(&format!("/v1/loyalty/lots/{l}"))["remaining"].as_i64().unwrap();
    assert_eq!((remaining(&l2), remaining(&l1), remaining(&l3)), (0, 30, 60));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/lots/{l2}"))["status"], "spent");
    // Cancel: the points go back where they came from.
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    assert_eq!((remaining(&l2), remaining(&l1), remaining(&l3)), (50, 80, 60));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/lots/{l2}"))["status"], "available");
    // A negative adjustment spends in the same order.
    let adj = s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": -130, "reason": "fraud review"}));
    assert_eq!(adj["lots"], json!([{"lot": l2, "points": 50}, {"lot": l1, "points": 80}]));
    assert_eq!(remaining(&l3), 60);
    let statuses: Vec<String> =
        list_all(&s, &format!("/v1/loyalty/lots?account={a}&status=spent")).iter().map(id).collect();
    assert_eq!(statuses.len(), 2);
    assert_lots_reconcile(&s);
}

#[test]
fn a_lot_expires_once_and_points_returned_to_it_afterwards_expire_at_once() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    // The redemption outlives the lot: it is canceled after the lot expired.
    setup(&s, json!({"expiry": {"days": 20}, "redemption_ttl_seconds": 30 * DAY}));
    let (c, a) = member(&s);
    buy(&s, &c, 150);
    let r = s.ok("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
    assert_eq!(balances(&s, &a), (50, 0));
    advance(&s, 20 * DAY);
    wait_until("expired", || balances(&s, &a) == (0, 0));
    let expired = txs_of_type(&s, &a, "expire");
    assert_eq!(expired.len(), 1);
    assert_eq!(expired[0]["points"], -50);
    let lot = expired[0]["source"]["lot"].as_str().unwrap().to_string();
    assert_eq!(s.get_ok(&format!("/v1/loyalty/lots/{lot}"))["status"], "expired");
    assert_eq!(list_all(&s, "/v1/events?type=loyalty.points.expired").len(), 1);
    // The redemption is canceled after its lot expired: the points come back
    // and leave at once.
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    let release = &txs_of_type(&s, &a, "release")[0];
    assert_eq!(release["points"], 100);
    let expired = txs_of_type(&s, &a, "expire");
    assert_eq!(expired.len(), 2);
    assert_eq!((expired[0]["points"].as_i64(), expired[0]["source"]["lot"].as_str()), (Some(-100), Some(&*lot)));
    assert_eq!(balances(&s, &a), (0, 0), "expired points do not come back");
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(txs_of_type(&s, &a, "expire").len(), 2, "nothing expires twice");
    assert_lots_reconcile(&s);
}

#[test]
fn a_refund_in_the_return_window_takes_the_pending_points_first_and_never_goes_negative_for_them() {
    for allow_negative in [true, false] {
        let s = Server::start_with(&[MANUAL_CLOCK]);
        setup(&s, json!({"pending_days": 14, "clawback": {"allow_negative": allow_negative}}));
        let (c, a) = member(&s);
        // 100 available points, then a pending purchase of 200.
        s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": 100, "reason": "welcome"}));
        let p = buy(&s, &c, 200);
        assert_eq!(balances(&s, &a), (100, 200));
        // Refund half inside the window: 100 points back, all pending.
        let r = s.ok("/v1/refunds", json!({"payment": id(&p), "amount": 10_000}));
        assert_eq!(r["points_clawed_back"], 100);
        assert_eq!(balances(&s, &a), (100, 100), "allow_negative {allow_negative}");
        let claw = &txs_of_type(&s, &a, "clawback")[0];
        assert_eq!(claw["balance_after"], 100);
        // Spend the available points, then refund the rest: the pending lot pays.
        s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": -100, "reason": "spent in store"}));
        s.ok("/v1/refunds", json!({"payment": id(&p)}));
        assert_eq!(balances(&s, &a), (0, 0), "allow_negative {allow_negative}: never negative for pending points");
        let own = lots(&s, &a).into_iter().find(|l| l["points"] == 200).unwrap();
        assert_eq!((own["status"].as_str(), own["remaining"].as_i64()), (Some("clawed_back"), Some(0)));

        // After the window: a refund takes available points, then goes
        // below zero only when allowed.
        let q = buy(&s, &c, 50);
        advance(&s, 14 * DAY);
        wait_until("available", || balances(&s, &a) == (50, 0));
        s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": -30, "reason": "correction"}));
        let r = s.ok("/v1/refunds", json!({"payment": id(&q)}));
        let expected = if allow_negative { (50, -30) } else { (20, 0) };
        assert_eq!(
            (r["points_clawed_back"].as_i64().unwrap(), balances(&s, &a).0),
            expected,
            "allow_negative {allow_negative}"
        );
        // A credit pays the debt first: its lot keeps only what is left.
        let adj = s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": 40, "reason": "goodwill"}));
        let lot = s.get_ok(&format!("/v1/loyalty/lots/{}", adj["lots"][0]["lot"].as_str().unwrap()));
        let kept = if allow_negative { 10 } else { 40 };
        assert_eq!(lot["remaining"], kept, "allow_negative {allow_negative}");
        assert_eq!(balances(&s, &a).0, kept);
        assert_lots_reconcile(&s);
    }
}

#[test]
fn expiry_happens_exactly_once_across_a_restart_and_a_kill_at_the_due_time() {
    let mut s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"expiry": {"days": 10}, "expiry_warning_days": 3}));
    let (c, a) = member(&s);
    buy(&s, &c, 70);
    let t0 = now(&s);
    // Down past the warning and the expiry: both happen right after startup, once.
    s.restart_with(&[("LEDGER_TEST_CLOCK", &(11 * DAY).to_string())]);
    wait_until("expired after restart", || balances(&s, &a) == (0, 0));
    assert!(now(&s) >= t0 + 10 * DAY);
    assert_eq!(txs_of_type(&s, &a, "expire").len(), 1);
    s.restart_with(&[("LEDGER_TEST_CLOCK", &(12 * DAY).to_string())]);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(txs_of_type(&s, &a, "expire").len(), 1, "not again after another restart");
    assert_eq!(list_all(&s, "/v1/events?type=loyalty.points.expired").len(), 1);

    // A kill -9 right at the due time: whatever was acknowledged stays, and
    // the expiry happens exactly once after the restart.
    buy(&s, &c, 30);
    advance(&s, 10 * DAY);
    s.kill9();
    s.restart_with(&[("LEDGER_TEST_CLOCK", &(23 * DAY).to_string())]);
    wait_until("expired after kill", || balances(&s, &a) == (0, 0));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(txs_of_type(&s, &a, "expire").len(), 2);
    assert_lots_reconcile(&s);
}

#[test]
fn the_expiry_warning_goes_once_ahead_of_the_expiry() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"expiry": {"days": 10}, "expiry_warning_days": 3}));
    let (c, a) = member(&s);
    buy(&s, &c, 70);
    advance(&s, 7 * DAY - 1);
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert!(list_all(&s, "/v1/events?type=loyalty.points.expiring").is_empty());
    advance(&s, 1);
    wait_until("warned", || list_all(&s, "/v1/events?type=loyalty.points.expiring").len() == 1);
    let e = &list_all(&s, "/v1/events?type=loyalty.points.expiring")[0];
    assert_eq!((e["data"]["object"].as_str(), e["data"]["remaining"].as_i64()), (Some("points_lot"), Some(70)));
    assert_eq!(balances(&s, &a), (70, 0));
    std::thread::sleep(std::time::Duration::from_millis(1200));
    assert_eq!(list_all(&s, "/v1/events?type=loyalty.points.expiring").len(), 1, "once");
}

#[test]
fn adjustments_are_idempotent_need_a_reason_and_refuse_bad_input_changing_nothing() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({}));
    let (_, a) = member(&s);
    let body = json!({"account": a, "points": 25, "reason": "support ticket 42", "metadata": {"ticket": "42"}});
    let first = s.post_idem("/v1/loyalty/adjustments", body.clone(), "adj-1");
    assert_eq!(first.status, 200, "{}", first.body);
    let again = s.post_idem("/v1/loyalty/adjustments", body, "adj-1");
    assert_eq!(again.body, first.body);
    let tx = first.body.clone();
    assert_eq!((tx["type"].as_str(), tx["points"].as_i64()), (Some("adjustment"), Some(25)));
    assert_eq!(tx["source"], json!({"reason": "support ticket 42"}));
    assert_eq!(tx["metadata"], json!({"ticket": "42"}));
    assert_eq!(balances(&s, &a), (25, 0));
    assert_eq!(list_all(&s, "/v1/events?type=loyalty.points.adjusted").len(), 1);
    let before = list_all(&s, "/v1/loyalty/transactions").len();
    for (bad, code) in [
        (json!({"account": a, "points": 0, "reason": "x"}), "parameter_invalid"),
        (json!({"account": a, "points": 5, "reason": ""}), "parameter_invalid"),
        (json!({"account": a, "points": 5, "reason": "   "}), "parameter_invalid"),
        (json!({"account": a, "points": 5, "reason": "x".repeat(501)}), "parameter_invalid"),
        (json!({"account": a, "points": 5}), "parameter_missing"),
        (json!({"account": "loy_nobody", "points": 5, "reason": "x"}), "resource_missing"),
        (json!({"account": a, "points": 5, "reason": "x", "extra": 1}), "parameter_unknown"),
        (json!({"account": a, "points": i64::MAX, "reason": "x"}), "parameter_invalid"),
        (json!({"account": a, "points": "5", "reason": "x"}), "parameter_invalid"),
    ] {
        let r = s.post("/v1/loyalty/adjustments", bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.code(), code, "{bad}: {}", r.body);
    }
    let r = s.post("/v1/loyalty/adjustments", json!({"account": a, "points": -26, "reason": "x"}));
    assert_eq!((r.status, r.code()), (409, "insufficient_points"));
    assert_eq!(list_all(&s, "/v1/loyalty/transactions").len(), before, "a refused adjustment writes nothing");
    let neg =
        s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": -26, "reason": "x", "allow_negative": true}));
    assert_eq!(neg["balance_after"], -1);
    assert_lots_reconcile(&s);
}

#[test]
fn program_settings_are_checked_and_apply_to_new_lots_only() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"pending_days": 3}));
    let (c, a) = member(&s);
    buy(&s, &c, 10);
    let p = s.ok(
        "/v1/loyalty/program",
        json!({"pending_days": 0, "expiry": {"days": 90}, "expiry_warning_days": 7,
               "point_value": {"points": 100, "amount": 100, "currency": "eur"}}),
    );
    assert_eq!(p["expiry"], json!({"days": 90}));
    assert_eq!(p["point_value"], json!({"points": 100, "amount": 100, "currency": "eur"}));
    buy(&s, &c, 20);
    let all = lots(&s, &a);
    let old = all.iter().find(|l| l["points"] == 10).unwrap();
    let new = all.iter().find(|l| l["points"] == 20).unwrap();
    assert_eq!((old["status"].as_str(), old["expires_at"].clone()), (Some("pending"), Value::Null));
    assert_eq!(new["status"], "available");
    assert_eq!(new["expires_at"].as_i64().unwrap() - new["available_at"].as_i64().unwrap(), 90 * DAY);
    for bad in [
        json!({"pending_days": -1}),
        json!({"pending_days": 366}),
        json!({"expiry": {"days": 0}}),
        json!({"expiry": {"days": 3651}}),
        json!({"expiry": {}}),
        json!({"expiry_warning_days": 366}),
        json!({"point_value": {"points": 0, "amount": 1, "currency": "eur"}}),
        json!({"point_value": {"points": 1, "amount": 1, "currency": "EUR"}}),
    ] {
        let r = s.post("/v1/loyalty/program", bad.clone());
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
    assert_eq!(s.get_ok("/v1/loyalty/program")["expiry"], json!({"days": 90}), "a refused update changes nothing");
    let off = s.ok("/v1/loyalty/program", json!({"expiry": null, "point_value": null}));
    assert_eq!((off["expiry"].clone(), off["point_value"].clone()), (Value::Null, Value::Null));
}

/// Sums the activity report's movements.
fn movements(r: &Value) -> i64 {
    ["earned", "adjusted", "redeemed", "released", "clawed_back", "expired"]
        .iter()
        .map(|k| r[*k].as_i64().unwrap())
        .sum()
}

#[test]
fn the_reports_and_the_export_agree_with_the_ledger_over_random_sequences() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(
        &s,
        json!({"pending_days": 2, "expiry": {"days": 5}, "point_value": {"points": 100, "amount": 50, "currency": "eur"}}),
    );
    let members: Vec<(String, String)> = (0..4).map(|_| member(&s)).collect();
    let mut rng = Rng(0x5eed_11fe);
    let mut payments: Vec<String> = Vec::new();
    let mut redemptions: Vec<String> = Vec::new();
    let start = now(&s);
    let mut marks = vec![start];
    for step in 0..120 {
        let (c, a) = rng.pick(&members).unwrap().clone();
        match rng.below(7) {
            0 | 1 => payments.push(id(&buy(&s, &c, 50 + rng.below(200) as i64))),
            2 => {
                if let Some(p) = rng.pick(&payments) {
                    let _ = s.post("/v1/refunds", json!({"payment": p, "amount": 1 + rng.below(8000)}));
                }
            }
            3 => {
                let r = s.post("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
                if r.status == 200 {
                    redemptions.push(r.id());
                }
            }
            4 => {
                if let Some(r) = rng.pick(&redemptions) {
                    let _ = s.post(&format!("/v1/loyalty/redemptions/{r}/cancel"), json!({}));
                }
            }
            5 => {
                let points = rng.below(120) as i64 - 60;
                if points != 0 {
                    let _ = s.post(
                        "/v1/loyalty/adjustments",
                        json!({"account": a, "points": points, "reason": "random", "allow_negative": rng.chance(50)}),
                    );
                }
            }
            _ => {
                advance(&s, DAY / 2 + rng.below(DAY as usize) as i64);
                if step % 3 == 0 {
                    settle(&s);
                }
                marks.push(now(&s));
            }
        }
    }
    advance(&s, 1);
    settle(&s);
    marks.push(now(&s) + 1);
    assert_lots_reconcile(&s);
    let total: i64 = list_all(&s, "/v1/loyalty/transactions").iter().map(|t| t["points"].as_i64().unwrap()).sum();
    // The activity report's identity over consecutive periods.
    let mut closing_before: Option<i64> = None;
    for w in marks.windows(2) {
        let r = s.get_ok(&format!("/v1/loyalty/reports/activity?created[gte]={}&created[lt]={}", w[0], w[1]));
        assert_eq!(r["object"], "activity_report");
        let (opening, closing) = (r["opening"].as_i64().unwrap(), r["closing"].as_i64().unwrap());
        assert_eq!(closing, opening + movements(&r), "{r}");
        if let Some(before) = closing_before {
            assert_eq!(opening, before, "one period's closing is the next one's opening");
        }
        closing_before = Some(closing);
    }
    let whole = s.get_ok("/v1/loyalty/reports/activity");
    assert_eq!((whole["opening"].as_i64(), whole["closing"].as_i64()), (Some(0), Some(total)));
    // The liability report: the accounts' balances, summed.
    let accounts = list_all(&s, "/v1/loyalty/accounts");
    let l = s.get_ok("/v1/loyalty/reports/liability");
    let sum = |f: &dyn Fn(&Value) -> i64| accounts.iter().map(f).sum::<i64>();
    assert_eq!(l["available"].as_i64().unwrap(), sum(&|a| a["balance"].as_i64().unwrap().max(0)));
    assert_eq!(l["negative"].as_i64().unwrap(), sum(&|a| a["balance"].as_i64().unwrap().min(0)));
    assert_eq!(l["pending"].as_i64().unwrap(), sum(&|a| a["pending_balance"].as_i64().unwrap()));
    assert_eq!(
        l["available"].as_i64().unwrap() + l["negative"].as_i64().unwrap() + l["pending"].as_i64().unwrap(),
        total
    );
    let value = (l["available"].as_i64().unwrap() + l["pending"].as_i64().unwrap()) * 50 / 100;
    assert_eq!(l["value"], json!({"amount": value, "currency": "eur"}));
    // Pending lots count too: they expire unless spent, like the available ones.
    let mut open = list_all(&s, "/v1/loyalty/lots?status=available");
    open.extend(list_all(&s, "/v1/loyalty/lots?status=pending"));
    let t = now(&s);
    let due_within = |days: i64| -> i64 {
        open.iter()
            .filter(|l| l["expires_at"].as_i64().is_some_and(|e| e <= t + days * DAY))
            .map(|l| l["remaining"].as_i64().unwrap())
            .sum()
    };
    assert_eq!(l["expiring"], json!({"30": due_within(30), "60": due_within(60), "90": due_within(90)}));
    // The export: one row per transaction in the period, oldest first.
    let whole_csv = csv(&s, "");
    let mut lines = whole_csv.split("\r\n").filter(|l| !l.is_empty());
    assert_eq!(lines.next(), Some("id,account,type,points,balance_after,payment,refund,redemption,lot,reason,created"));
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    let mut listed = list_all(&s, "/v1/loyalty/transactions");
    listed.reverse();
    assert_eq!(rows.len(), listed.len());
    for (row, tx) in rows.iter().zip(&listed) {
        assert_eq!(row[0], tx["id"].as_str().unwrap());
        assert_eq!(row[3].parse::<i64>().unwrap(), tx["points"].as_i64().unwrap());
        assert_eq!(row[10].parse::<i64>().unwrap(), tx["created"].as_i64().unwrap());
    }
    let (a, b) = (marks[1], marks[marks.len() / 2]);
    let part = csv(&s, &format!("?created[gte]={a}&created[lt]={b}"));
    let in_period = listed.iter().filter(|t| (a..b).contains(&t["created"].as_i64().unwrap())).count();
    assert_eq!(part.split("\r\n").filter(|l| !l.is_empty()).count(), 1 + in_period);
    // An end before the start is an empty period at the start.
    let empty = s.get_ok(&format!("/v1/loyalty/reports/activity?created[gte]={b}&created[lt]={a}"));
    assert_eq!(empty["opening"], empty["closing"]);
    assert_eq!((movements(&empty), empty["closing"].as_i64()), (0, Some(closing_at(&listed, b))));
    assert_eq!(csv(&s, &format!("?created[gte]={b}&created[lt]={a}")).matches("\r\n").count(), 1, "the header alone");
    let r = s.get("/v1/loyalty/reports/liability?created[gte]=5");
    assert_eq!((r.status, r.code()), (400, "parameter_unknown"), "the liability report takes no parameters");
    for bad in ["created[gt]=5", "created[gte]=x", "created[lt]=", "limit=3"] {
        let r = s.get(&format!("/v1/loyalty/exports/transactions?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
        let r = s.get(&format!("/v1/loyalty/reports/activity?{bad}"));
        assert_eq!(r.status, 400, "{bad}");
    }
}

/// The "done when": a program with a 14-day return window and a
/// 365-day expiry runs through a year of test-clock time; every balance,
/// lot, report and CSV row agrees with the transactions, before and after
/// restarts. `LIFECYCLE_MEMBERS` (default 200) sets how many members.
#[test]
fn a_year_of_a_program_with_a_return_window_and_expiry_reconciles_before_and_after_restarts() {
    let members_n: usize = std::env::var("LIFECYCLE_MEMBERS").ok().and_then(|v| v.parse().ok()).unwrap_or(200);
    let mut s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"pending_days": 14, "expiry": {"days": 365}, "expiry_warning_days": 30}));
    let members: Vec<(String, String)> = (0..members_n).map(|_| member(&s)).collect();
    let mut rng = Rng(42);
    for week in 0..56 {
        for _ in 0..members_n / 4 {
            let (c, a) = rng.pick(&members).unwrap().clone();
            let p = buy(&s, &c, 20 + rng.below(300) as i64);
            if rng.chance(10) {
                s.ok("/v1/refunds", json!({"payment": id(&p), "amount": 100 + rng.below(1900)}));
            }
            if rng.chance(20) {
                let _ = s.post("/v1/loyalty/redemptions", json!({"account": a, "reward": "rwd_100"}));
            }
        }
        advance(&s, 7 * DAY);
        if week % 13 == 12 {
            settle(&s);
            assert_lots_reconcile(&s);
            let t = now(&s);
            s.restart_with(&[("LEDGER_TEST_CLOCK", &(t - real_now()).to_string())]);
        }
    }
    settle(&s);
    let before = snapshot_of(&s);
    assert!(!list_all(&s, "/v1/loyalty/transactions?type=expire").is_empty(), "a year in, lots expired");
    let t = now(&s);
    s.restart_with(&[("LEDGER_TEST_CLOCK", &(t - real_now()).to_string())]);
    assert_eq!(snapshot_of(&s), before, "the same ledger after a restart");
    assert_lots_reconcile(&s);
}

/// Sum of the points of `txs` created before `t`.
fn closing_at(txs: &[Value], t: i64) -> i64 {
    txs.iter().filter(|tx| tx["created"].as_i64().unwrap() < t).map(|tx| tx["points"].as_i64().unwrap()).sum()
}

fn real_now() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64
}

/// What a restart must keep: every account's balances, every lot, the
/// reports and the export.
fn snapshot_of(s: &Server) -> (Vec<Value>, Vec<Value>, Value, String) {
    let accounts = list_all(s, "/v1/loyalty/accounts");
    let lots = list_all(s, "/v1/loyalty/lots");
    let activity = s.get_ok("/v1/loyalty/reports/activity");
    (accounts, lots, activity, csv(s, ""))
}

/// The CSV export (`query`: its query string, with the `?`).
fn csv(s: &Server, query: &str) -> String {
    let r = s.get(&format!("/v1/loyalty/exports/transactions{query}"));
    assert_eq!(r.status, 200, "{}", r.body);
    r.body.as_str().expect("CSV, not JSON").to_string()
}

/// A snapshot taken with a lot that became available and was spent, one
/// still pending and one available restores to the same balances and lots
/// (the load settles the balance/pending split); the restored server then
/// makes the pending one available and expires the other on time, and
/// `verify` passes on its directory.
#[test]
fn a_snapshot_with_pending_and_expired_lots_restores_and_carries_on() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    setup(&s, json!({"pending_days": 2, "expiry": {"days": 3}}));
    let (c, a) = member(&s);
    buy(&s, &c, 100); // available at 2 days, expires at 5
    advance(&s, 2 * DAY);
    wait_until("available", || balances(&s, &a) == (100, 0));
    s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": -100, "reason": "spent in store"}));
    buy(&s, &c, 40); // pending until 4 days
    s.ok("/v1/loyalty/adjustments", json!({"account": a, "points": 30, "reason": "goodwill"})); // expires at 5 days
    advance(&s, DAY);
    assert_eq!(balances(&s, &a), (30, 40));
    let snap = s.ok("/v1/admin/snapshot", json!({}));
    let before = (list_all(&s, "/v1/loyalty/accounts"), list_all(&s, "/v1/loyalty/lots"));
    let t = now(&s);
    let dir = tempfile::tempdir().unwrap();
    let out = common::cli(&["restore", snap["path"].as_str().unwrap(), "--data", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let offset = (t - real_now()).to_string();
    let r = Server::try_start_in(dir.path(), &[("LEDGER_TEST_CLOCK", &offset)]).unwrap_or_else(|f| panic!("{}", f.log));
    assert_eq!((list_all(&r, "/v1/loyalty/accounts"), list_all(&r, "/v1/loyalty/lots")), before);
    // Day 4: the 40 become available; day 5: the adjustment's 30 expire.
    advance(&r, DAY);
    wait_until("available after restore", || balances(&r, &a) == (70, 0));
    advance(&r, DAY);
    wait_until("expired after restore", || balances(&r, &a) == (40, 0));
    assert_eq!(txs_of_type(&r, &a, "expire").len(), 1);
    assert_lots_reconcile(&r);
    drop(r);
    let out = common::cli(&["verify", "--data", dir.path().to_str().unwrap()]);
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "verify:\n{text}");
}
