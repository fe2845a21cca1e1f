//! Rewards, redemptions at checkout, cancel, and expiry by the timer actor.

mod common;

use std::time::Duration;

use common::{assert_ledger_consistent, list_all, wait_until, Server};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

const MANUAL_CLOCK: (&str, &str) = ("LEDGER_TEST_CLOCK", "0");

/// "1 point per EUR 1", a EUR 5.00 reward for 100 points, and a member holding `points`.
fn setup(s: &Server, points: i64) -> (String, String) {
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let r = s.post(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_5eur_off", "name": "EUR 5 off", "points": 100,
        "discount": {"amount": 500, "currency": "eur"}}),
    );
    assert!(r.status == 200, "{}", r.body);
    let c = id(&s.ok("/v1/customers", json!({})));
    let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
    if points > 0 {
        s.ok("/v1/payments", json!({"amount": points * 100, "currency": "eur", "customer": c, "confirm": true}));
    }
    (c, a)
}

fn balance(s: &Server, acct: &str) -> i64 {
    s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"].as_i64().unwrap()
}

fn redeem(s: &Server, acct: &str) -> Value {
    s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_5eur_off"}))
}

#[test]
fn the_seed_example_charges_3700() {
    let s = Server::start();
    let (cust, acct) = setup(&s, 250);
    let reward = s.get_ok("/v1/loyalty/rewards/rwd_5eur_off");
    assert_eq!(reward["discount"], json!({"amount": 500, "currency": "eur"}));
    let r = redeem(&s, &acct);
    assert_eq!(
        (r["object"].as_str(), r["status"].as_str(), r["discount"].as_i64()),
        (Some("redemption"), Some("pending"), Some(500))
    );
    assert_eq!(r["points"], 100);
    assert_eq!(balance(&s, &acct), 150, "points are deducted at once");
    assert!(r["expires_at"].as_i64().unwrap() - r["created"].as_i64().unwrap() == 1800);
    let redeem_tx = list_all(&s, &format!("/v1/loyalty/transactions?account={acct}&type=redeem"));
    assert_eq!(redeem_tx.len(), 1);
    assert_eq!(redeem_tx[0]["points"], -100);
    assert_eq!(redeem_tx[0]["source"], json!({"redemption": r["id"], "reward": "rwd_5eur_off"}));

    let p =
        s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [r["id"]]}));
    assert_eq!((p["amount_discount"].as_i64(), p["amount_charged"].as_i64()), (Some(500), Some(3700)));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"], "attached");
    let done = s.ok(&format!("/v1/payments/{}/complete", id(&p)), json!({}));
    assert_eq!(done["points_earned"], 37, "earning uses amount_charged");
    let r = s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)));
    assert_eq!((r["status"].as_str(), r["payment"].as_str()), (Some("consumed"), p["id"].as_str()));
    assert_eq!(balance(&s, &acct), 187);
    // A consumed redemption cannot be used or canceled again.
    let r2 =
        s.post("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [r["id"]]}));
    assert_eq!((r2.status, r2.code()), (409, "redemption_not_pending"));
    let c = s.post(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    assert_eq!((c.status, c.code()), (409, "redemption_not_pending"));
    assert_ledger_consistent(&s);
}

#[test]
fn confirm_true_consumes_at_once() {
    let s = Server::start();
    let (cust, acct) = setup(&s, 100);
    let r = redeem(&s, &acct);
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [r["id"]], "confirm": true}),
    );
    assert_eq!(
        (p["status"].as_str(), p["amount_charged"].as_i64(), p["points_earned"].as_i64()),
        (Some("completed"), Some(3700), Some(37))
    );
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"], "consumed");
    assert_eq!(balance(&s, &acct), 37);
}

#[test]
fn insufficient_and_negative_balances() {
    let s = Server::start();
    let (_, acct) = setup(&s, 99);
    let r = s.post("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_5eur_off"}));
    assert_eq!((r.status, r.code()), (409, "insufficient_points"));
    // Drive the balance negative: earn 100 through a payment, spend it, refund the payment.
    let (c2, a2) = (id(&s.ok("/v1/customers", json!({}))), String::new());
    let _ = a2;
    let a2 = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c2})));
    let p = s.ok("/v1/payments", json!({"amount": 10_000, "currency": "eur", "customer": c2, "confirm": true}));
    redeem(&s, &a2);
    s.ok("/v1/refunds", json!({"payment": p["id"]}));
    assert_eq!(balance(&s, &a2), -100);
    let r = s.post("/v1/loyalty/redemptions", json!({"account": a2, "reward": "rwd_5eur_off"}));
    assert_eq!((r.status, r.code()), (409, "insufficient_points"));
    assert_eq!(balance(&s, &a2), -100);
    assert_eq!(balance(&s, &acct), 99);
    for (body, code) in [
        (json!({"account": "loy_nope", "reward": "rwd_5eur_off"}), "resource_missing"),
        (json!({"account": acct, "reward": "rwd_nope"}), "resource_missing"),
        (json!({"account": acct}), "parameter_missing"),
    ] {
        assert_eq!(s.post("/v1/loyalty/redemptions", body.clone()).code(), code, "{body}");
    }
    s.ok("/v1/loyalty/rewards/rwd_5eur_off", json!({"active": false}));
    s.ok(
        "/v1/payments",
        json!({"amount": 100, "currency": "eur", "metadata": {"loyalty_account": acct}, "confirm": true}),
    );
    let r = s.post("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_5eur_off"}));
    assert_eq!((r.status, r.code()), (409, "reward_inactive"));
    assert_ledger_consistent(&s);
}

#[test]
fn checkout_rules_reject_and_change_nothing() {
    let s = Server::start();
    let (cust, acct) = setup(&s, 300);
    let (other_cust, other) = {
        let c = id(&s.ok("/v1/customers", json!({})));
        let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
        s.ok("/v1/payments", json!({"amount": 10_000, "currency": "eur", "customer": c, "confirm": true}));
        (c, a)
    };
    let mine = redeem(&s, &acct);
    let theirs = redeem(&s, &other);
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_usd", "name": "USD 1 off", "points": 10, "discount": {"amount": 100, "currency": "usd"}}),
    );
    let usd = s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_usd"}));
    let before = balance(&s, &acct);
    let payments_before = list_all(&s, "/v1/payments").len();
    for (body, status, code) in [
        (
            json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [theirs["id"]]}),
            409,
            "redemption_account_mismatch",
        ),
        (json!({"amount": 4200, "currency": "eur", "redemptions": [mine["id"]]}), 409, "redemption_account_mismatch"),
        (
            json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [usd["id"]]}),
            400,
            "redemption_currency_mismatch",
        ),
        (
            json!({"amount": 400, "currency": "eur", "customer": cust, "redemptions": [mine["id"]]}),
            400,
            "discount_exceeds_amount",
        ),
        (
            json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [mine["id"], mine["id"]]}),
            400,
            "parameter_invalid",
        ),
        (
            json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": ["rdm_nope"]}),
            400,
            "resource_missing",
        ),
        (
            json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [mine["id"], theirs["id"]]}),
            409,
            "redemption_account_mismatch",
        ),
    ] {
        let r = s.post("/v1/payments", body.clone());
        assert_eq!((r.status, r.code()), (status, code), "{body}");
    }
    assert_eq!(list_all(&s, "/v1/payments").len(), payments_before, "rejected payments changed nothing");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&mine)))["status"], "pending");
    assert_eq!(balance(&s, &acct), before);
    // Exactly the amount is fine (charges 0, earns nothing).
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 500, "currency": "eur", "customer": cust, "redemptions": [mine["id"]], "confirm": true}),
    );
    assert_eq!((p["amount_charged"].as_i64(), p["points_earned"].as_i64()), (Some(0), Some(0)));
    let _ = other_cust;
    assert_ledger_consistent(&s);
}

#[test]
fn cancel_returns_points_once_and_failure_releases() {
    let s = Server::start();
    let (cust, acct) = setup(&s, 300);
    let r = redeem(&s, &acct);
    assert_eq!(balance(&s, &acct), 200);
    let c = s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    assert_eq!(c["status"], "canceled");
    assert_eq!(balance(&s, &acct), 300);
    let again = s.post(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    assert_eq!((again.status, again.code()), (409, "redemption_not_pending"));
    assert_eq!(balance(&s, &acct), 300);
    let release = list_all(&s, &format!("/v1/loyalty/transactions?account={acct}&type=release"));
    assert_eq!(release.len(), 1);
    assert_eq!(
        (release[0]["points"].as_i64(), release[0]["source"]["redemption"].as_str()),
        (Some(100), r["id"].as_str())
    );

    // An attached redemption cannot be canceled; failing its payment releases it.
    let r = redeem(&s, &acct);
    let p =
        s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [r["id"]]}));
    let c = s.post(&format!("/v1/loyalty/redemptions/{}/cancel", id(&r)), json!({}));
    assert_eq!((c.status, c.code()), (409, "redemption_not_pending"));
    let f = s.ok(&format!("/v1/payments/{}/fail", id(&p)), json!({}));
    assert_eq!(f["status"], "failed");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"], "canceled");
    assert_eq!(balance(&s, &acct), 300);
    assert_eq!(s.post("/v1/loyalty/redemptions/rdm_nope/cancel", json!({})).status, 404);
    assert_ledger_consistent(&s);
}

#[test]
fn expiry_through_the_manual_clock() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    let (cust, acct) = setup(&s, 300);
    let loose = redeem(&s, &acct);
    let held = redeem(&s, &acct);
    let p =
        s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [held["id"]]}));
    assert_eq!(balance(&s, &acct), 100);
    s.ok("/v1/test/clock", json!({"advance_seconds": 1799}));
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&loose)))["status"], "pending", "not yet");
    s.ok("/v1/test/clock", json!({"advance_seconds": 1}));
    wait_until("expiry", || s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&loose)))["status"] == "expired");
    wait_until("attached expiry", || {
        s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&held)))["status"] == "expired"
    });
    assert_eq!(balance(&s, &acct), 300);
    let r = s.post(&format!("/v1/payments/{}/complete", id(&p)), json!({}));
    assert_eq!((r.status, r.code()), (409, "redemption_expired"));
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&p)))["status"], "pending", "the payment stays pending");
    // Failing it now releases nothing twice.
    s.ok(&format!("/v1/payments/{}/fail", id(&p)), json!({}));
    assert_eq!(balance(&s, &acct), 300);
    let r = s.post(
        "/v1/payments",
        json!({"amount": 4200, "currency": "eur", "customer": cust, "redemptions": [loose["id"]]}),
    );
    assert_eq!((r.status, r.code()), (409, "redemption_expired"));
    assert_eq!(
        s.post(&format!("/v1/loyalty/redemptions/{}/cancel", id(&loose)), json!({})).code(),
        "redemption_not_pending"
    );
    let releases = list_all(&s, &format!("/v1/loyalty/transactions?account={acct}&type=release"));
    assert_eq!(releases.len(), 2);
    assert_ledger_consistent(&s);
}

#[test]
fn the_ttl_is_a_program_setting() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    let (_, acct) = setup(&s, 300);
    let prog = s.ok("/v1/loyalty/program", json!({"redemption_ttl_seconds": 120}));
    assert_eq!(prog["redemption_ttl_seconds"], 120);
    let r = redeem(&s, &acct);
    assert_eq!(r["expires_at"].as_i64().unwrap() - r["created"].as_i64().unwrap(), 120);
    s.ok("/v1/test/clock", json!({"advance_seconds": 120}));
    wait_until("expiry at 120 s", || s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"] == "expired");
    for bad in [json!({"redemption_ttl_seconds": 0}), json!({"redemption_ttl_seconds": 59}), json!({"clawback": {}})] {
        assert_eq!(s.post("/v1/loyalty/program", bad.clone()).status, 400, "{bad}");
    }
}

#[test]
fn a_redemption_due_while_the_server_was_down_expires_right_after_startup() {
    let mut s = Server::start();
    let (_, acct) = setup(&s, 300);
    let r = redeem(&s, &acct);
    assert_eq!(balance(&s, &acct), 200);
    // Come back an hour later (the manual clock starts one hour ahead).
    s.restart_with(&[("LEDGER_TEST_CLOCK", "3600")]);
    wait_until("expiry after restart", || {
        s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"] == "expired"
    });
    assert_eq!(balance(&s, &acct), 300);
    s.restart();
    assert_eq!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", id(&r)))["status"], "expired");
    assert_eq!(balance(&s, &acct), 300);
    assert_ledger_consistent(&s);
}

#[test]
fn rewards_create_update_list() {
    let s = Server::start();
    let r = s.ok(
        "/v1/loyalty/rewards",
        json!({"name": "Coffee", "points": 50, "discount": {"amount": 300, "currency": "eur"}}),
    );
    assert!(id(&r).starts_with("rwd_"));
    assert_eq!((r["object"].as_str(), r["active"].as_bool()), (Some("reward"), Some(true)));
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_5eur_off", "name": "5 off", "points": 100, "discount": {"amount": 500, "currency": "eur"}}),
    );
    let dup = s.post(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_5eur_off", "name": "again", "points": 1, "discount": {"amount": 1, "currency": "eur"}}),
    );
    assert_eq!((dup.status, dup.code()), (409, "resource_already_exists"));
    for bad in [
        json!({"id": "rwd_BAD", "name": "x", "points": 1, "discount": {"amount": 1, "currency": "eur"}}),
        json!({"id": "cust_x", "name": "x", "points": 1, "discount": {"amount": 1, "currency": "eur"}}),
        json!({"name": "", "points": 1, "discount": {"amount": 1, "currency": "eur"}}),
        json!({"name": "x", "points": 0, "discount": {"amount": 1, "currency": "eur"}}),
        json!({"name": "x", "points": 1, "discount": {"amount": 0, "currency": "eur"}}),
        json!({"name": "x", "points": 1, "discount": {"amount": 1, "currency": "EUR"}}),
        json!({"name": "x", "points": 1, "discount": {"amount": 1, "currency": "eur", "extra": 1}}),
        json!({"name": "x", "points": 1}),
    ] {
        assert_eq!(s.post("/v1/loyalty/rewards", bad.clone()).status, 400, "{bad}");
    }
    let u = s.ok("/v1/loyalty/rewards/rwd_5eur_off", json!({"active": false, "name": "Five off"}));
    assert_eq!((u["active"].as_bool(), u["name"].as_str()), (Some(false), Some("Five off")));
    assert_eq!(list_all(&s, "/v1/loyalty/rewards").len(), 2);
    assert_eq!(list_all(&s, "/v1/loyalty/rewards?active=true").len(), 1);
    assert_eq!(s.get("/v1/loyalty/rewards/rwd_missing").status, 404);
    assert_eq!(s.post("/v1/loyalty/rewards/rwd_missing", json!({})).status, 404);
}

/// Cancel, expiry, failure and completion racing on the same redemptions
/// return each one's points at most once and consume it at most once.
#[test]
fn racing_cancel_expiry_failure_and_completion() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    let (cust, acct) = setup(&s, 10_000);
    for round in 0..4 {
        let reds: Vec<Value> = (0..8).map(|_| redeem(&s, &acct)).collect();
        let pays: Vec<String> = reds
            .iter()
            .enumerate()
            .filter(|(i, _)| i % 2 == 0)
            .map(|(_, r)| {
                id(&s.ok(
                    "/v1/payments",
                    json!({"amount": 1000, "currency": "eur", "customer": cust, "redemptions": [r["id"]]}),
                ))
            })
            .collect();
        std::thread::scope(|scope| {
            for r in &reds {
                let (s, rid) = (&s, id(r));
                scope.spawn(move || s.post(&format!("/v1/loyalty/redemptions/{rid}/cancel"), json!({})));
            }
            for p in &pays {
                let s = &s;
                scope.spawn(move || s.post(&format!("/v1/payments/{p}/complete"), json!({})));
                scope.spawn(move || s.post(&format!("/v1/payments/{p}/fail"), json!({})));
            }
            if round % 2 == 1 {
                let s = &s;
                scope.spawn(move || s.post("/v1/test/clock", json!({"advance_seconds": 1800})));
            }
        });
        if round % 2 == 1 {
            // Let the timer finish whatever fell due.
            wait_until("due redemptions to expire", || {
                list_all(&s, &format!("/v1/loyalty/redemptions?account={acct}&status=pending")).is_empty()
                    && list_all(&s, &format!("/v1/loyalty/redemptions?account={acct}&status=attached")).is_empty()
            });
        }
    }
    let txs = list_all(&s, &format!("/v1/loyalty/transactions?account={acct}"));
    for r in list_all(&s, &format!("/v1/loyalty/redemptions?account={acct}")) {
        let releases = txs.iter().filter(|t| t["type"] == "release" && t["source"]["redemption"] == r["id"]).count();
        let redeems = txs.iter().filter(|t| t["type"] == "redeem" && t["source"]["redemption"] == r["id"]).count();
        assert_eq!(redeems, 1);
        let expected = match r["status"].as_str().unwrap() {
            "canceled" | "expired" => 1,
            "consumed" | "pending" | "attached" => 0,
            other => panic!("status {other}"),
        };
        assert_eq!(releases, expected, "redemption {} ({})", r["id"], r["status"]);
        if r["status"] == "consumed" {
            let p = s.get_ok(&format!("/v1/payments/{}", r["payment"].as_str().unwrap()));
            assert_eq!(p["status"], "completed");
        }
    }
    for p in list_all(&s, &format!("/v1/payments?customer={cust}")) {
        if p["status"] == "failed" || p["status"] == "pending" {
            for r in p["redemptions"].as_array().unwrap() {
                assert_ne!(s.get_ok(&format!("/v1/loyalty/redemptions/{}", r.as_str().unwrap()))["status"], "consumed");
            }
        }
    }
    assert_ledger_consistent(&s);
}
