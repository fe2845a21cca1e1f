//! Refunds claw back earned points in proportion; balances may go negative
//! unless the program caps clawbacks at the balance.

mod common;

use common::{assert_ledger_consistent, list_all, Server};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A server with "1 point per EUR 1" and one linked member.
fn setup() -> (Server, String, String) {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let c = id(&s.ok("/v1/customers", json!({})));
    let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
    (s, c, a)
}

fn pay(s: &Server, cust: &str, amount: i64) -> Value {
    s.ok("/v1/payments", json!({"amount": amount, "currency": "eur", "customer": cust, "confirm": true}))
}

fn balance(s: &Server, acct: &str) -> i64 {
    s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"].as_i64().unwrap()
}

#[test]
fn the_seed_table() {
    let (s, cust, acct) = setup();
    let p = pay(&s, &cust, 4200);
    let full = s.ok("/v1/refunds", json!({"payment": p["id"]}));
    assert_eq!(full["object"], "refund");
    assert_eq!((full["amount"].as_i64(), full["points_clawed_back"].as_i64()), (Some(4200), Some(42)));
    let tx = s.get_ok(&format!("/v1/loyalty/transactions/{}", full["clawback"].as_str().unwrap()));
    assert_eq!(tx["type"], "clawback");
    assert_eq!(tx["points"], -42);
    assert_eq!(tx["source"], json!({"refund": full["id"], "payment": p["id"]}));
    assert_eq!(tx["balance_after"], 0);
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&p)))["amount_refunded"], 4200);

    let p = pay(&s, &cust, 4200);
    let half = s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 2100}));
    assert_eq!(half["points_clawed_back"], 21);
    assert_eq!(balance(&s, &acct), 21);
    assert_ledger_consistent(&s);
}

#[test]
fn four_quarter_refunds_claw_10_11_10_11() {
    let (s, cust, acct) = setup();
    let p = pay(&s, &cust, 4200);
    let parts: Vec<i64> = (0..4)
        .map(|_| {
            s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 1050}))["points_clawed_back"].as_i64().unwrap()
        })
        .collect();
    assert_eq!(parts, vec![10, 11, 10, 11]);
    assert_eq!(balance(&s, &acct), 0);
    let r = s.post("/v1/refunds", json!({"payment": p["id"], "amount": 1}));
    assert_eq!((r.status, r.code()), (400, "amount_too_large"));
    let r = s.post("/v1/refunds", json!({"payment": p["id"]}));
    assert_eq!((r.status, r.code()), (400, "amount_too_large"), "nothing left to refund");
    let refunds = list_all(&s, &format!("/v1/refunds?payment={}", id(&p)));
    assert_eq!(refunds.len(), 4);
}

#[test]
fn random_partial_refunds_never_exceed_and_sum_to_what_was_earned() {
    let (s, cust, acct) = setup();
    let mut seed = 0x5DEECE66Du64;
    let mut next = move |n: i64| {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        (seed % n as u64) as i64
    };
    for _ in 0..6 {
        let amount = 100 + next(20_000);
        let p = pay(&s, &cust, amount);
        let earned = p["points_earned"].as_i64().unwrap();
        let mut left = amount;
        let mut clawed = 0;
        while left > 0 {
            let part = 1 + next(left.min(3000));
            let r = s.ok("/v1/refunds", json!({"payment": p["id"], "amount": part}));
            clawed += r["points_clawed_back"].as_i64().unwrap();
            left -= part;
            assert!(clawed <= earned, "clawed {clawed} > earned {earned}");
        }
        assert_eq!(clawed, earned);
    }
    assert_eq!(balance(&s, &acct), 0);
    assert_ledger_consistent(&s);
}

#[test]
fn balances_go_negative_by_default_and_later_earnings_absorb_it() {
    let (s, cust, acct) = setup();
    assert_eq!(s.get_ok("/v1/loyalty/program")["clawback"]["allow_negative"], true, "the default");
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_spend", "name": "Spend", "points": 40, "discount": {"amount": 100, "currency": "eur"}}),
    );
    let p = pay(&s, &cust, 4200);
    // The member spends most of what the payment earned, then the payment is refunded in full.
    s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_spend"}));
    assert_eq!(balance(&s, &acct), 2);
    let r = s.ok("/v1/refunds", json!({"payment": p["id"]}));
    assert_eq!(r["points_clawed_back"], 42, "the whole clawback is taken");
    assert_eq!(balance(&s, &acct), -40);
    let tx = s.get_ok(&format!("/v1/loyalty/transactions/{}", r["clawback"].as_str().unwrap()));
    assert_eq!(tx["balance_after"], -40);
    // A later purchase absorbs the deficit.
    pay(&s, &cust, 5000);
    assert_eq!(balance(&s, &acct), 10);
    assert_ledger_consistent(&s);
}

#[test]
fn the_cap_forgives_what_it_cannot_take() {
    let (s, cust, acct) = setup();
    let prog = s.ok("/v1/loyalty/program", json!({"clawback": {"allow_negative": false}}));
    assert_eq!(prog["clawback"]["allow_negative"], false);
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_spend", "name": "Spend", "points": 30, "discount": {"amount": 100, "currency": "eur"}}),
    );
    let p = pay(&s, &cust, 4200);
    s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_spend"}));
    assert_eq!(balance(&s, &acct), 12);
    // Half refunded: 21 due, only 12 held: 12 taken, 9 forgiven, the balance stops at 0.
    let r = s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 2100}));
    assert_eq!(r["points_clawed_back"], 12);
    assert_eq!(balance(&s, &acct), 0);
    // A later purchase earns 10; the rest of the refund claws back only its own new part
    // (21 due), capped at what is held (10): the forgiven 9 are not collected.
    pay(&s, &cust, 1000);
    let r = s.ok("/v1/refunds", json!({"payment": p["id"]}));
    assert_eq!(r["points_clawed_back"], 10);
    assert_eq!(balance(&s, &acct), 0);
    assert_eq!(list_all(&s, &format!("/v1/loyalty/transactions?account={acct}&type=clawback")).len(), 2);
    assert_ledger_consistent(&s);
}

#[test]
fn refunds_of_unearned_and_manually_awarded_payments() {
    let (s, cust, acct) = setup();
    // No member: refunds with no clawback.
    let anon = s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "confirm": true}));
    let r = s.ok("/v1/refunds", json!({"payment": anon["id"], "amount": 400}));
    assert_eq!((r["points_clawed_back"].as_i64(), r["clawback"].clone()), (Some(0), Value::Null));
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&anon)))["amount_refunded"], 400);
    // A payment completed before the link, awarded by hand, claws back what the award gave.
    let late = id(&s.ok("/v1/customers", json!({})));
    let p = s.ok("/v1/payments", json!({"amount": 3000, "currency": "eur", "customer": late, "confirm": true}));
    assert_eq!(p["points_earned"], 0);
    let acct2 = id(&s.ok("/v1/loyalty/accounts", json!({"customer": late})));
    s.ok("/v1/loyalty/awards", json!({"payment": p["id"]}));
    assert_eq!(balance(&s, &acct2), 30);
    assert_eq!(s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 1500}))["points_clawed_back"], 15);
    assert_eq!(balance(&s, &acct2), 15);
    // Award after a refund is refused.
    let q = s.ok("/v1/payments", json!({"amount": 3000, "currency": "eur", "confirm": true}));
    s.ok("/v1/refunds", json!({"payment": q["id"], "amount": 1}));
    let r = s.post("/v1/loyalty/awards", json!({"payment": q["id"], "account": acct}));
    assert_eq!((r.status, r.code()), (409, "payment_refunded"));
    let _ = cust;
    assert_ledger_consistent(&s);
}

#[test]
fn bad_refunds_are_400_or_409_and_change_nothing() {
    let (s, cust, acct) = setup();
    let p = pay(&s, &cust, 4200);
    let pending = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust}));
    let failed = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur"}));
    s.ok(&format!("/v1/payments/{}/fail", id(&failed)), json!({}));
    for (body, status, code) in [
        (json!({"payment": p["id"], "amount": 4201}), 400, "amount_too_large"),
        (json!({"payment": p["id"], "amount": 0}), 400, "parameter_invalid"),
        (json!({"payment": p["id"], "amount": -5}), 400, "parameter_invalid"),
        (json!({"payment": "pay_nope"}), 400, "resource_missing"),
        (json!({"amount": 5}), 400, "parameter_missing"),
        (json!({"payment": p["id"], "reason": "x"}), 400, "parameter_unknown"),
        (json!({"payment": pending["id"]}), 409, "payment_not_completed"),
        (json!({"payment": failed["id"]}), 409, "payment_not_completed"),
    ] {
        let r = s.post("/v1/refunds", body.clone());
        assert_eq!((r.status, r.code()), (status, code), "{body}");
    }
    assert_eq!(balance(&s, &acct), 42);
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&p)))["amount_refunded"], 0);
    assert_eq!(s.get_ok("/v1/refunds")["data"], json!([]));
    assert_eq!(s.get("/v1/refunds/re_nope").status, 404);
}

#[test]
fn concurrent_refunds_never_refund_or_claw_back_too_much() {
    let (mut s, cust, acct) = setup();
    let p = pay(&s, &cust, 4200);
    let oks: usize = std::thread::scope(|scope| {
        let hs: Vec<_> = (0..10)
            .map(|_| {
                let (s, p) = (&s, &p);
                scope.spawn(move || {
                    (s.post("/v1/refunds", json!({"payment": p["id"], "amount": 1000})).status == 200) as usize
                })
            })
            .collect();
        hs.into_iter().map(|h| h.join().unwrap()).sum()
    });
    assert_eq!(oks, 4);
    let got = s.get_ok(&format!("/v1/payments/{}", id(&p)));
    assert_eq!(got["amount_refunded"], 4000);
    assert_eq!(balance(&s, &acct), 42 - 40);
    s.restart();
    assert_eq!(balance(&s, &acct), 2);
    assert_eq!(s.get_ok(&format!("/v1/payments/{}", id(&p)))["amount_refunded"], 4000);
    assert_ledger_consistent(&s);
}
