//! Payments earn points for the member they resolve to; the ledger reconciles.

mod common;

use common::{assert_ledger_consistent, list_all, Rng, Server};
use serde_json::{json, Value};

fn id(v: &Value) -> String {
    v["id"].as_str().unwrap().to_string()
}

/// A customer with a linked account.
fn member(s: &Server) -> (String, String) {
    let c = id(&s.ok("/v1/customers", json!({})));
    let a = id(&s.ok("/v1/loyalty/accounts", json!({"customer": c})));
    (c, a)
}

#[test]
fn the_seed_example_earns_42_points() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let (cust, acct) = member(&s);
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    assert_eq!(p["status"], "completed");
    assert_eq!(p["amount_charged"], 4200);
    assert_eq!(p["points_earned"], 42);
    assert_eq!(p["loyalty_account"], acct.as_str());
    assert!(p["completed_at"].as_i64().is_some());
    let tx = s.get_ok(&format!("/v1/loyalty/transactions/{}", p["award"].as_str().unwrap()));
    assert_eq!(
        tx,
        json!({"id": tx["id"], "object": "points_transaction", "account": acct, "points": 42, "type": "earn",
               "source": {"payment": p["id"], "amount": 4200, "currency": "eur"},
               "balance_after": 42, "lots": [{"lot": tx["lots"][0]["lot"], "points": 42}],
               "available_at": tx["created"], "expires_at": null, "metadata": {}, "created": tx["created"]})
    );
    assert!(tx["id"].as_str().unwrap().starts_with("ptx_"));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 42);
}

#[test]
fn member_resolution_order() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let (cust, via_customer) = member(&s);
    let via_metadata = id(&s.ok("/v1/loyalty/accounts", json!({})));
    // Customer beats metadata.
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 1000, "currency": "eur", "customer": cust,
        "metadata": {"loyalty_account": via_metadata}, "confirm": true}),
    );
    assert_eq!(p["loyalty_account"], via_customer.as_str());
    // Metadata alone.
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 2000, "currency": "eur", "metadata": {"loyalty_account": via_metadata}, "confirm": true}),
    );
    assert_eq!((p["loyalty_account"].as_str(), p["points_earned"].as_i64()), (Some(via_metadata.as_str()), Some(20)));
    // An unlinked customer falls through to metadata, or to nobody.
    let unlinked = id(&s.ok("/v1/customers", json!({})));
    let p = s.ok("/v1/payments", json!({"amount": 3000, "currency": "eur", "customer": unlinked, "confirm": true}));
    assert_eq!(
        (p["loyalty_account"].clone(), p["points_earned"].as_i64(), p["award"].clone()),
        (Value::Null, Some(0), Value::Null)
    );
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 3000, "currency": "eur", "customer": unlinked,
        "metadata": {"loyalty_account": via_metadata}, "confirm": true}),
    );
    assert_eq!(p["loyalty_account"], via_metadata.as_str());
    // Metadata naming no account earns nothing.
    let p = s.ok(
        "/v1/payments",
        json!({"amount": 3000, "currency": "eur", "metadata": {"loyalty_account": "loy_nobody"}, "confirm": true}),
    );
    assert_eq!(p["loyalty_account"], Value::Null);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{via_customer}"))["balance"], 10);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{via_metadata}"))["balance"], 50);
    assert_ledger_consistent(&s);
}

#[test]
fn a_link_after_completion_earns_only_by_one_manual_award() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let cust = id(&s.ok("/v1/customers", json!({})));
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust}));
    assert_eq!(p["status"], "pending");
    let p = s.ok(&format!("/v1/payments/{}/complete", id(&p)), json!({}));
    assert_eq!(p["points_earned"], 0);
    let acct = id(&s.ok("/v1/loyalty/accounts", json!({"customer": cust})));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 0, "no retroactive earning");
    let awarded = s.ok("/v1/loyalty/awards", json!({"payment": p["id"]}));
    assert_eq!(
        (awarded["points_earned"].as_i64(), awarded["loyalty_account"].as_str()),
        (Some(42), Some(acct.as_str()))
    );
    let r = s.post("/v1/loyalty/awards", json!({"payment": p["id"]}));
    assert_eq!((r.status, r.code()), (409, "payment_already_awarded"));
    let r = s.post("/v1/loyalty/awards", json!({"payment": p["id"], "account": acct}));
    assert_eq!((r.status, r.code()), (409, "payment_already_awarded"));
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 42);

    // A payment that earned at completion cannot be awarded again; bad awards change nothing.
    let done = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust, "confirm": true}));
    assert_eq!(s.post("/v1/loyalty/awards", json!({"payment": done["id"]})).code(), "payment_already_awarded");
    let pending = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur"}));
    let r = s.post("/v1/loyalty/awards", json!({"payment": pending["id"], "account": acct}));
    assert_eq!((r.status, r.code()), (409, "payment_not_completed"));
    let nobody = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "confirm": true}));
    let r = s.post("/v1/loyalty/awards", json!({"payment": nobody["id"]}));
    assert_eq!((r.status, r.code()), (400, "parameter_missing"));
    assert_eq!(s.post("/v1/loyalty/awards", json!({"payment": "pay_nope"})).code(), "resource_missing");
    assert_eq!(
        s.post("/v1/loyalty/awards", json!({"payment": nobody["id"], "account": "loy_nope"})).code(),
        "resource_missing"
    );
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 43);
    assert_ledger_consistent(&s);
}

#[test]
fn a_member_payment_that_earned_nothing_can_still_be_awarded_once() {
    let s = Server::start();
    let (cust, acct) = member(&s);
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    assert_eq!((p["points_earned"].as_i64(), p["award"].clone()), (Some(0), Value::Null), "no rule yet");
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let stranger = id(&s.ok("/v1/loyalty/accounts", json!({})));
    let r = s.post("/v1/loyalty/awards", json!({"payment": p["id"], "account": stranger}));
    assert_eq!((r.status, r.code()), (409, "payment_account_mismatch"), "the member is fixed once evaluated");
    let awarded = s.ok("/v1/loyalty/awards", json!({"payment": p["id"]}));
    assert_eq!(awarded["points_earned"], 42);
    assert_eq!(s.post("/v1/loyalty/awards", json!({"payment": p["id"]})).code(), "payment_already_awarded");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 42);
}

#[test]
fn several_rules_min_amount_and_currencies() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let bonus = s.ok(
        "/v1/loyalty/earning_rules",
        json!({"currency": "eur", "points": 5, "per_amount": 1000, "min_amount": 5000}),
    );
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "usd", "points": 3, "per_amount": 100}));
    let (cust, acct) = member(&s);
    let pay = |amount: i64, currency: &str| -> i64 {
        s.ok("/v1/payments", json!({"amount": amount, "currency": currency, "customer": cust, "confirm": true}))
            ["points_earned"]
            .as_i64()
            .unwrap()
    };
    assert_eq!(pay(4999, "eur"), 49);
    assert_eq!(pay(5000, "eur"), 50 + 25);
    assert_eq!(pay(1000, "usd"), 30);
    assert_eq!(pay(100_000, "jpy"), 0, "another currency earns nothing");
    s.ok(&format!("/v1/loyalty/earning_rules/{}", id(&bonus)), json!({"active": false}));
    assert_eq!(pay(5000, "eur"), 50);
    s.ok(&format!("/v1/loyalty/earning_rules/{}", id(&bonus)), json!({"active": true, "points": 1, "min_amount": 0}));
    assert_eq!(pay(5000, "eur"), 55);
    // Zero points writes no transaction.
    assert_eq!(pay(50, "eur"), 0);
    let txs = list_all(&s, &format!("/v1/loyalty/transactions?account={acct}"));
    assert_eq!(txs.len(), 5);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 49 + 75 + 30 + 50 + 55);
    let eur_rules = s.get_ok("/v1/loyalty/earning_rules?currency=eur");
    assert_eq!(eur_rules["data"].as_array().unwrap().len(), 2);
    assert_eq!(s.get_ok("/v1/loyalty/earning_rules?active=false")["data"], json!([]));
}

#[test]
fn earning_at_the_limits_does_not_overflow() {
    let s = Server::start();
    for _ in 0..3 {
        s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1_000_000, "per_amount": 1}));
    }
    let (cust, acct) = member(&s);
    let p = s
        .ok("/v1/payments", json!({"amount": 99_999_999_999i64, "currency": "eur", "customer": cust, "confirm": true}));
    assert_eq!(p["points_earned"].as_i64(), Some(1_000_000_000_000_000), "capped at POINTS_PER_PAYMENT_MAX");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"].as_i64(), Some(1_000_000_000_000_000));
    for bad in [
        json!({"currency": "eur", "points": 1_000_001, "per_amount": 1}),
        json!({"currency": "eur", "points": 0, "per_amount": 1}),
        json!({"currency": "eur", "points": 1, "per_amount": 0}),
        json!({"currency": "eur", "points": 1, "per_amount": 1, "min_amount": -1}),
        json!({"currency": "EUR", "points": 1, "per_amount": 1}),
        json!({"currency": "eur", "points": 1}),
    ] {
        assert_eq!(s.post("/v1/loyalty/earning_rules", bad.clone()).status, 400, "{bad}");
    }
    for bad in [
        json!({"amount": 0, "currency": "eur"}),
        json!({"amount": 100_000_000_000i64, "currency": "eur"}),
        json!({"amount": 10, "currency": "eu"}),
        json!({"amount": 10, "currency": "eur", "customer": "cust_nope"}),
        json!({"amount": 10.5, "currency": "eur"}),
        json!({"amount": 10, "currency": "eur", "confirm": "yes"}),
    ] {
        assert_eq!(s.post("/v1/payments", bad.clone()).status, 400, "{bad}");
    }
    assert_eq!(list_all(&s, "/v1/payments").len(), 1, "rejected payments changed nothing");
}

#[test]
fn payment_states_and_lists() {
    let s = Server::start();
    let (cust, _) = member(&s);
    let a = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust}));
    let b = s.ok("/v1/payments", json!({"amount": 200, "currency": "eur"}));
    let failed = s.ok(&format!("/v1/payments/{}/fail", id(&b)), json!({}));
    assert_eq!(failed["status"], "failed");
    for action in ["complete", "fail"] {
        let r = s.post(&format!("/v1/payments/{}/{action}", id(&b)), json!({}));
        assert_eq!((r.status, r.code()), (409, "payment_not_pending"), "{action} after fail");
    }
    s.ok(&format!("/v1/payments/{}/complete", id(&a)), json!({}));
    let r = s.post(&format!("/v1/payments/{}/fail", id(&a)), json!({}));
    assert_eq!((r.status, r.code()), (409, "payment_not_pending"));
    assert_eq!(s.post("/v1/payments/pay_nope/complete", json!({})).status, 404);
    assert_eq!(s.post(&format!("/v1/payments/{}/complete", id(&a)), json!({"x": 1})).status, 400);
    let mine = s.get_ok(&format!("/v1/payments?customer={cust}"));
    assert_eq!(mine["data"].as_array().unwrap().len(), 1);
    assert_eq!(mine["data"][0]["status"], "completed");
    let all = s.get_ok("/v1/payments?limit=1");
    assert_eq!((all["data"][0]["id"].as_str(), all["has_more"].as_bool()), (b["id"].as_str(), Some(true)));
    let created = a["created"].as_i64().unwrap();
    assert_eq!(s.get_ok(&format!("/v1/payments?created[lt]={created}"))["data"], json!([]));
    assert_eq!(list_all(&s, &format!("/v1/payments?created[gte]={created}")).len(), 2);
}

#[test]
fn concurrent_completions_of_one_payment_earn_once() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let (cust, acct) = member(&s);
    for _ in 0..5 {
        let p = id(&s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "customer": cust})));
        let oks: usize = std::thread::scope(|scope| {
            let hs: Vec<_> = (0..6)
                .map(|_| {
                    let (s, p) = (&s, &p);
                    scope.spawn(move || s.post(&format!("/v1/payments/{p}/complete"), json!({})).status == 200)
                })
                .collect();
            hs.into_iter().map(|h| h.join().unwrap() as usize).sum()
        });
        assert_eq!(oks, 1);
    }
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 50);
    assert_ledger_consistent(&s);
}

#[test]
fn transactions_list_filters_and_pagination() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let (c1, a1) = member(&s);
    let (c2, _) = member(&s);
    let mut paid = Vec::new();
    for i in 1..=12 {
        let c = if i % 3 == 0 { &c2 } else { &c1 };
        paid.push(s.ok("/v1/payments", json!({"amount": 100 * i, "currency": "eur", "customer": c, "confirm": true})));
    }
    let mine = list_all(&s, &format!("/v1/loyalty/transactions?account={a1}"));
    assert_eq!(mine.len(), 8);
    assert!(mine.iter().all(|t| t["account"] == a1.as_str() && t["type"] == "earn"));
    let page = s.get_ok(&format!("/v1/loyalty/transactions?account={a1}&limit=3"));
    assert_eq!(page["has_more"], true);
    assert_eq!(page["data"][0]["points"], 11, "newest first");
    let next = s.get_ok(&format!(
        "/v1/loyalty/transactions?account={a1}&limit=3&starting_after={}",
        page["data"][2]["id"].as_str().unwrap()
    ));
    assert_eq!(next["data"][0]["points"], 7);
    assert_eq!(list_all(&s, "/v1/loyalty/transactions?type=earn").len(), 12);
    assert_eq!(list_all(&s, "/v1/loyalty/transactions?type=clawback").len(), 0);
    let by_payment = s.get_ok(&format!("/v1/loyalty/transactions?payment={}", paid[4]["id"].as_str().unwrap()));
    assert_eq!(by_payment["data"][0]["id"], paid[4]["award"]);
    // With a clawback too: a payment's list (walked in its member's
    // transactions) is the whole list's rows of that payment.
    let pay4 = paid[4]["id"].as_str().unwrap();
    s.ok("/v1/refunds", json!({"payment": pay4, "amount": 200}));
    let all = list_all(&s, "/v1/loyalty/transactions");
    let of_pay4: Vec<&serde_json::Value> = all.iter().filter(|t| t["source"]["payment"] == pay4).collect();
    let by_payment = list_all(&s, &format!("/v1/loyalty/transactions?payment={pay4}"));
    assert_eq!(by_payment.iter().map(|t| t["type"].as_str().unwrap()).collect::<Vec<_>>(), ["clawback", "earn"]);
    assert_eq!(by_payment.iter().collect::<Vec<_>>(), of_pay4);
    // A cursor among the member's transactions pages on; one of another member's is refused.
    let older = s.get_ok(&format!(
        "/v1/loyalty/transactions?payment={pay4}&starting_after={}",
        by_payment[0]["id"].as_str().unwrap()
    ));
    assert_eq!(older["data"].as_array().unwrap(), &vec![by_payment[1].clone()]);
    let elsewhere = all.iter().find(|t| t["account"] != by_payment[0]["account"]).unwrap();
    let r =
        s.get(&format!("/v1/loyalty/transactions?payment={pay4}&starting_after={}", elsewhere["id"].as_str().unwrap()));
    assert_eq!(
        (r.status, r.code(), r.body["error"]["param"].as_str()),
        (400, "resource_missing", Some("starting_after"))
    );
    let no_member = s.ok("/v1/payments", json!({"amount": 500, "currency": "eur", "confirm": true}));
    let none = s.get_ok(&format!("/v1/loyalty/transactions?payment={}", no_member["id"].as_str().unwrap()));
    assert_eq!((none["data"].as_array().unwrap().len(), &none["has_more"]), (0, &json!(false)));
    let t0 = paid[0]["created"].as_i64().unwrap();
    assert_eq!(
        list_all(&s, &format!("/v1/loyalty/transactions?created[gte]={t0}")).len(),
        13,
        "the twelve earns and the clawback"
    );
    assert_eq!(list_all(&s, &format!("/v1/loyalty/transactions?created[lt]={t0}")).len(), 0);
    assert_eq!(s.get("/v1/loyalty/transactions?type=bonus").status, 400);
    assert_eq!(s.get("/v1/loyalty/transactions?account=loy_nope").status, 400);
    assert_eq!(s.get("/v1/loyalty/transactions/ptx_nope").status, 404);
}

/// Random sequences of operations keep `balance == sum(points)` for every
/// account, before and after a kill -9 and restart.
#[test]
fn random_operation_sequences_keep_the_ledger_consistent() {
    let seeds: u64 = std::env::var("LEDGER_PROPTEST_SEEDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    for seed in 1..=seeds {
        let mut rng = Rng(0x2545F4914F6CDD1D ^ seed.wrapping_mul(0x9E3779B97F4A7C15));
        let mut s = Server::start();
        let mut customers: Vec<String> = Vec::new();
        let mut accounts: Vec<String> = Vec::new();
        let mut pending: Vec<String> = Vec::new();
        let mut completed: Vec<String> = Vec::new();
        let mut rules: Vec<String> = Vec::new();
        let currencies = ["eur", "usd"];
        for _ in 0..120 {
            match rng.below(10) {
                0 => customers.push(id(&s.ok("/v1/customers", json!({})))),
                1 => {
                    let body = match customers.get(rng.below(customers.len().max(1))) {
                        Some(c) if rng.below(2) == 0 => json!({"customer": c}),
                        _ => json!({}),
                    };
                    let r = s.post("/v1/loyalty/accounts", body);
                    if r.status == 200 {
                        accounts.push(r.id());
                    }
                }
                2 => {
                    let r = s.ok(
                        "/v1/loyalty/earning_rules",
                        json!({"currency": currencies[rng.below(2)],
                        "points": 1 + rng.below(5), "per_amount": 50 + rng.below(200), "min_amount": rng.below(3000)}),
                    );
                    rules.push(id(&r));
                }
                3 if !rules.is_empty() => {
                    let r = &rules[rng.below(rules.len())];
                    s.ok(&format!("/v1/loyalty/earning_rules/{r}"), json!({"active": rng.below(2) == 0}));
                }
                4 if !accounts.is_empty() && !customers.is_empty() => {
                    let a = &accounts[rng.below(accounts.len())];
                    let c = &customers[rng.below(customers.len())];
                    let r = s.post(&format!("/v1/loyalty/accounts/{a}"), json!({"customer": c}));
                    assert!(r.status == 200 || r.status == 409, "{}", r.body);
                }
                5 | 6 => {
                    let mut body = json!({"amount": 1 + rng.below(20_000), "currency": currencies[rng.below(2)]});
                    if let (Some(c), true) = (customers.get(rng.below(customers.len().max(1))), rng.below(3) > 0) {
                        body["customer"] = json!(c);
                    }
                    if let (Some(a), true) = (accounts.get(rng.below(accounts.len().max(1))), rng.below(3) == 0) {
                        body["metadata"] = json!({"loyalty_account": a});
                    }
                    let confirm = rng.below(2) == 0;
                    body["confirm"] = json!(confirm);
                    let p = s.ok("/v1/payments", body);
                    if confirm {
                        completed.push(id(&p))
                    } else {
                        pending.push(id(&p))
                    }
                }
                7 if !pending.is_empty() => {
                    let p = pending.swap_remove(rng.below(pending.len()));
                    let action = if rng.below(4) == 0 { "fail" } else { "complete" };
                    s.ok(&format!("/v1/payments/{p}/{action}"), json!({}));
                    if action == "complete" {
                        completed.push(p);
                    }
                }
                8 if !completed.is_empty() && !accounts.is_empty() => {
                    let p = &completed[rng.below(completed.len())];
                    let a = &accounts[rng.below(accounts.len())];
                    let r = s.post("/v1/loyalty/awards", json!({"payment": p, "account": a}));
                    assert!(
                        r.status == 200 || ["payment_already_awarded", "payment_account_mismatch"].contains(&r.code()),
                        "{}",
                        r.body
                    );
                }
                _ => {}
            }
        }
        assert_ledger_consistent(&s);
        let before: Vec<Value> = list_all(&s, "/v1/loyalty/accounts");
        s.restart();
        assert_eq!(list_all(&s, "/v1/loyalty/accounts"), before, "seed {seed}: state after restart");
        assert_ledger_consistent(&s);
    }
}
