//! Customers, loyalty accounts and the one-to-one link between them; lists.

mod common;

use common::Server;
use serde_json::json;

#[test]
fn customer_and_account_linking() {
    let s = Server::start();
    let c = s.ok("/v1/customers", json!({"email": "ann@example.com", "name": "Ann", "metadata": {"crm": "42"}}));
    let cust = c["id"].as_str().unwrap();
    assert_eq!(c["object"], "customer");
    assert_eq!(c["loyalty_account"], json!(null));
    assert!(c["created"].as_i64().unwrap() > 1_600_000_000);

    let a = s.ok("/v1/loyalty/accounts", json!({"customer": cust}));
    let acct = a["id"].as_str().unwrap();
    assert!(acct.starts_with("loy_"));
    assert_eq!(a["object"], "loyalty_account");
    assert_eq!(a["customer"], cust);
    assert_eq!(a["balance"], 0);
    assert_eq!(s.get_ok(&format!("/v1/customers/{cust}"))["loyalty_account"], acct);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["customer"], cust);

    // The customer is taken: a second account for it, or linking it elsewhere, is a 409.
    let r = s.post("/v1/loyalty/accounts", json!({"customer": cust}));
    assert_eq!((r.status, r.code()), (409, "customer_already_linked"));
    let other = s.ok("/v1/loyalty/accounts", json!({}))["id"].as_str().unwrap().to_string();
    let r = s.post(&format!("/v1/loyalty/accounts/{other}"), json!({"customer": cust}));
    assert_eq!((r.status, r.code()), (409, "customer_already_linked"));
    // An account already linked cannot take another customer.
    let c2 = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
    let r = s.post(&format!("/v1/loyalty/accounts/{acct}"), json!({"customer": c2}));
    assert_eq!((r.status, r.code()), (409, "account_already_linked"));
    // Relinking the same pair is fine; linking the free pair works.
    assert_eq!(s.ok(&format!("/v1/loyalty/accounts/{acct}"), json!({"customer": cust}))["customer"], cust);
    let linked = s.ok(&format!("/v1/loyalty/accounts/{other}"), json!({"customer": c2}));
    assert_eq!(linked["customer"], c2.as_str());
    assert_eq!(s.get_ok(&format!("/v1/customers/{c2}"))["loyalty_account"], other.as_str());

    // References that do not exist: 400 in a body, 404 in a path.
    let r = s.post("/v1/loyalty/accounts", json!({"customer": "cust_nope"}));
    assert_eq!((r.status, r.code(), r.body["error"]["param"].as_str()), (400, "resource_missing", Some("customer")));
    let r = s.post("/v1/loyalty/accounts/loy_nope", json!({}));
    assert_eq!((r.status, r.code()), (404, "resource_missing"));
    let r = s.get("/v1/loyalty/accounts/loy_nope");
    assert_eq!((r.status, r.code()), (404, "resource_missing"));
}

#[test]
fn metadata_merges_on_update() {
    let s = Server::start();
    let a = s.ok("/v1/loyalty/accounts", json!({"metadata": {"a": "1", "b": "2"}}));
    let id = a["id"].as_str().unwrap();
    let u = s.ok(&format!("/v1/loyalty/accounts/{id}"), json!({"metadata": {"a": "", "c": "3"}}));
    assert_eq!(u["metadata"], json!({"b": "2", "c": "3"}));
    let r = s.post(&format!("/v1/loyalty/accounts/{id}"), json!({"metadata": {"x": 5}}));
    assert_eq!(r.status, 400);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{id}"))["metadata"], json!({"b": "2", "c": "3"}));
}

#[test]
fn concurrent_links_of_one_customer_link_it_once() {
    let s = Server::start();
    let cust = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
    let accounts: Vec<String> =
        (0..8).map(|_| s.ok("/v1/loyalty/accounts", json!({}))["id"].as_str().unwrap().to_string()).collect();
    let results: Vec<u16> = std::thread::scope(|scope| {
        let handles: Vec<_> = accounts
            .iter()
            .map(|a| {
                let s = &s;
                let cust = &cust;
                scope.spawn(move || s.post(&format!("/v1/loyalty/accounts/{a}"), json!({"customer": cust})).status)
            })
            .chain((0..4).map(|_| {
                let s = &s;
                let cust = &cust;
                scope.spawn(move || s.post("/v1/loyalty/accounts", json!({"customer": cust})).status)
            }))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    });
    assert_eq!(results.iter().filter(|&&st| st == 200).count(), 1, "{results:?}");
    assert!(results.iter().all(|&st| st == 200 || st == 409), "{results:?}");
    let linked_to = s.get_ok(&format!("/v1/customers/{cust}"))["loyalty_account"].as_str().unwrap().to_string();
    let all = s.get_ok("/v1/loyalty/accounts?limit=100");
    let holders: Vec<&str> = all["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["customer"] == cust.as_str())
        .map(|a| a["id"].as_str().unwrap())
        .collect();
    assert_eq!(holders, vec![linked_to.as_str()]);
}

#[test]
fn lists_paginate_newest_first_with_created_filters() {
    let s = Server::start();
    let ids: Vec<String> =
        (0..25).map(|_| s.ok("/v1/loyalty/accounts", json!({}))["id"].as_str().unwrap().to_string()).collect();
    let first = s.get_ok("/v1/loyalty/accounts");
    assert_eq!(first["object"], "list");
    assert_eq!(first["data"].as_array().unwrap().len(), 10, "default limit is 10");
    assert_eq!(first["has_more"], true);
    let mut seen = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let path = match &cursor {
            Some(c) => format!("/v1/loyalty/accounts?limit=7&starting_after={c}"),
            None => "/v1/loyalty/accounts?limit=7".to_string(),
        };
        let page = s.get_ok(&path);
        let data = page["data"].as_array().unwrap();
        seen.extend(data.iter().map(|a| a["id"].as_str().unwrap().to_string()));
        if page["has_more"] == false {
            break;
        }
        cursor = Some(seen.last().unwrap().clone());
    }
    let mut newest_first = ids.clone();
    newest_first.reverse();
    assert_eq!(seen, newest_first);

    let created = s.get_ok(&format!("/v1/loyalty/accounts/{}", ids[0]))["created"].as_i64().unwrap();
    let none = s.get_ok(&format!("/v1/loyalty/accounts?created[gt]={}", created + 3600));
    assert_eq!(none["data"], json!([]));
    let all =
        s.get_ok(&format!("/v1/loyalty/accounts?limit=100&created[gte]={created}&created[lt]={}", created + 3600));
    assert_eq!(all["data"].as_array().unwrap().len(), 25);
    assert_eq!(all["has_more"], false);

    for bad in ["limit=0", "limit=101", "limit=x", "created[gte]=yesterday", "bogus=1", "starting_after=loy_nope"] {
        let r = s.get(&format!("/v1/loyalty/accounts?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
    }
}

/// `POST /v1/customers/{id}`: only the fields given change, metadata merges
/// (a key set to "" goes), "" clears email or name; a bad update is a 4xx
/// that changes nothing; the link to an account stays.
#[test]
fn customers_update_like_stripe() {
    let s = Server::start();
    let c = s.ok("/v1/customers", json!({"email": "ann@example.com", "name": "Ann", "metadata": {"a": "1", "b": "2"}}));
    let id = c["id"].as_str().unwrap().to_string();
    let acct = s.ok("/v1/loyalty/accounts", json!({"customer": id}))["id"].as_str().unwrap().to_string();
    let path = format!("/v1/customers/{id}");

    let u = s.ok(&path, json!({"name": "Annie", "metadata": {"a": "", "c": "3"}}));
    assert_eq!(u["name"], "Annie");
    assert_eq!(u["email"], "ann@example.com", "not named: kept");
    assert_eq!(u["metadata"], json!({"b": "2", "c": "3"}));
    assert_eq!((u["loyalty_account"].as_str(), &u["created"]), (Some(acct.as_str()), &c["created"]));
    assert_eq!(s.get_ok(&path), u);
    let u = s.ok(&path, json!({"email": "annie@example.com"}));
    assert_eq!((u["email"].as_str(), u["name"].as_str()), (Some("annie@example.com"), Some("Annie")));
    let u = s.ok(&path, json!({}));
    assert_eq!(s.get_ok(&path), u, "an empty update changes nothing");

    // Bad input: a 4xx in the contract's shape, and the customer is as it was.
    let before = s.get_ok(&path);
    let many: serde_json::Map<String, serde_json::Value> = (0..49).map(|i| (format!("k{i}"), json!("v"))).collect();
    for (body, code, param) in [
        (json!({"email": "not an email"}), "parameter_invalid", "email"),
        (json!({"name": "n".repeat(513)}), "parameter_invalid", "name"),
        (json!({"metadata": {"k".repeat(41): "v"}}), "parameter_invalid", ""),
        (json!({"metadata": many}), "parameter_invalid", "metadata"),
        (json!({"metadata": {"x": 5}}), "parameter_invalid", "metadata[x]"),
        (json!({"loyalty_account": "loy_x"}), "parameter_unknown", "loyalty_account"),
        (json!({"email": 7}), "parameter_invalid", "email"),
    ] {
        let r = s.post(&path, body.clone());
        assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.body);
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
        if !param.is_empty() {
            assert_eq!(r.body["error"]["param"], param, "{body}");
        }
        assert_eq!(s.get_ok(&path), before, "{body} changed the customer");
    }
    for missing in ["/v1/customers/cust_nope", "/v1/customers/loy_x"] {
        let r = s.post(missing, json!({"name": "x"}));
        assert_eq!((r.status, r.code(), r.body["error"]["param"].as_str()), (404, "resource_missing", Some("id")));
    }

    // "" clears email and name.
    let u = s.ok(&path, json!({"email": "", "name": ""}));
    assert_eq!((&u["email"], &u["name"]), (&json!(null), &json!(null)));

    // A retry with the same key replays the first answer and changes nothing more.
    let first = s.post_idem(&path, json!({"name": "Ann B"}), "upd-1");
    s.ok(&path, json!({"name": "Ann C"}));
    let again = s.post_idem(&path, json!({"name": "Ann B"}), "upd-1");
    assert!(again.replayed && !first.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(s.get_ok(&path)["name"], "Ann C");

    // Updates are durable like every mutation.
    let mut s = s;
    let before = s.get_ok(&path);
    s.restart();
    assert_eq!(s.get_ok(&path), before);
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["customer"], id.as_str());
}

/// `GET /v1/customers?email=`: newest first, exact email, the common list
/// parameters; bad filters are 400s.
#[test]
fn customers_list_by_exact_email() {
    let s = Server::start();
    let mut ids = Vec::new();
    for i in 0..7 {
        let email = if i % 2 == 0 { "dup@example.com".to_string() } else { format!("c{i}@example.com") };
        ids.push(s.ok("/v1/customers", json!({"email": email}))["id"].as_str().unwrap().to_string());
    }
    ids.push(s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string());
    let newest_first: Vec<String> = ids.iter().rev().cloned().collect();
    let listed = |path: &str| -> (Vec<String>, bool) {
        let page = s.get_ok(path);
        assert_eq!(page["object"], "list");
        let ids = page["data"].as_array().unwrap().iter().map(|c| c["id"].as_str().unwrap().to_string()).collect();
        (ids, page["has_more"].as_bool().unwrap())
    };
    assert_eq!(listed("/v1/customers?limit=100"), (newest_first.clone(), false));
    let page = s.get_ok("/v1/customers?limit=1");
    assert_eq!(page["data"][0]["object"], "customer");
    assert_eq!(page["has_more"], true);
    let dups: Vec<String> = [6, 4, 2, 0].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(listed("/v1/customers?email=dup@example.com"), (dups.clone(), false));
    assert_eq!(listed("/v1/customers?email=dup%40example.com&limit=2"), (dups[..2].to_vec(), true));
    assert_eq!(
        listed(&format!("/v1/customers?email=dup@example.com&starting_after={}", dups[1])),
        (dups[2..].to_vec(), false)
    );
    assert_eq!(
        listed(&format!("/v1/customers?email=dup@example.com&ending_before={}&limit=2", dups[3])),
        (dups[1..3].to_vec(), true)
    );
    assert_eq!(listed("/v1/customers?email=DUP@example.com"), (vec![], false), "exact: case counts");
    assert_eq!(listed("/v1/customers?email=nobody@example.com"), (vec![], false));
    // An update moves a customer in or out of the filter, not in the order.
    s.ok(&format!("/v1/customers/{}", ids[1]), json!({"email": "dup@example.com"}));
    let (now, _) = listed("/v1/customers?email=dup@example.com");
    assert_eq!(now, [6, 4, 2, 1, 0].iter().map(|&i| ids[i].clone()).collect::<Vec<_>>());
    let created = s.get_ok(&format!("/v1/customers/{}", ids[0]))["created"].as_i64().unwrap();
    assert_eq!(listed(&format!("/v1/customers?limit=100&created[gte]={created}")).0.len(), 8);
    assert_eq!(listed(&format!("/v1/customers?created[lt]={created}")), (vec![], false));

    for bad in ["email=", &format!("email={}", "e".repeat(513)), "bogus=1", "starting_after=cust_nope", "limit=0"] {
        let r = s.get(&format!("/v1/customers?{bad}"));
        assert_eq!(r.status, 400, "{bad}: {}", r.body);
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
    }

    // Out of the filter, then cleared: the email index follows each change,
    // and a restart (replay) and a snapshot's load rebuild it the same.
    s.ok(&format!("/v1/customers/{}", ids[4]), json!({"email": "c4@example.com"}));
    s.ok(&format!("/v1/customers/{}", ids[0]), json!({"email": ""}));
    let dups: Vec<String> = [6, 2, 1].iter().map(|&i| ids[i].clone()).collect();
    assert_eq!(listed("/v1/customers?email=dup@example.com"), (dups.clone(), false));
    assert_eq!(listed("/v1/customers?email=c4@example.com"), (vec![ids[4].clone()], false));
    let mut s = s;
    s.restart();
    let page = |s: &Server, path: &str| {
        s.get_ok(path)["data"].as_array().unwrap().iter().map(|c| c["id"].clone()).collect::<Vec<_>>()
    };
    assert_eq!(page(&s, "/v1/customers?email=dup@example.com"), dups);
    assert_eq!(page(&s, "/v1/customers?email=c4@example.com"), vec![ids[4].clone()]);
    s.ok("/v1/admin/snapshot", json!({}));
    s.restart();
    assert_eq!(page(&s, "/v1/customers?email=dup@example.com"), dups);
    assert_eq!(page(&s, "/v1/customers?email=c3@example.com"), vec![ids[3].clone()]);
}

/// For the object at `i` of `all` (a whole list, newest first), the
/// `ending_before` page of `limit` is the `limit` objects just before it in
/// `all` (just newer), newest first, `has_more` when even newer ones exist.
fn check_ending_before(s: &Server, path: &str, all: &[serde_json::Value], limit: usize) {
    let sep = if path.contains('?') { '&' } else { '?' };
    for i in 0..all.len() {
        let cursor = all[i]["id"].as_str().unwrap();
        let page = s.get_ok(&format!("{path}{sep}limit={limit}&ending_before={cursor}"));
        let want: Vec<&serde_json::Value> = all[i.saturating_sub(limit)..i].iter().collect();
        let got: Vec<&serde_json::Value> = page["data"].as_array().unwrap().iter().collect();
        let ids =
            |v: &[&serde_json::Value]| v.iter().map(|o| o["id"].as_str().unwrap().to_string()).collect::<Vec<_>>();
        assert_eq!(ids(&got), ids(&want), "{path} ending_before={cursor} (index {i})");
        assert_eq!(page["has_more"], i > limit, "{path} ending_before={cursor} (index {i}): has_more");
    }
    // Paging back from the oldest to the newest with ending_before meets every object once.
    let mut back: Vec<String> = Vec::new();
    let mut cursor = all.last().map(|o| o["id"].as_str().unwrap().to_string());
    while let Some(c) = cursor.take() {
        let page = s.get_ok(&format!("{path}{sep}limit={limit}&ending_before={c}"));
        let data = page["data"].as_array().unwrap();
        let mut ids: Vec<String> = data.iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
        ids.extend(back);
        back = ids;
        if page["has_more"] == true {
            cursor = data.first().map(|o| o["id"].as_str().unwrap().to_string());
        }
    }
    let want: Vec<String> =
        all[..all.len().saturating_sub(1)].iter().map(|o| o["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(back, want, "{path}: paging back");
    // Both cursors: a 400 that names ending_before. A cursor not in the list: 400 resource_missing.
    if let Some(first) = all.first() {
        let c = first["id"].as_str().unwrap();
        let r = s.get(&format!("{path}{sep}starting_after={c}&ending_before={c}"));
        assert_eq!(
            (r.status, r.code(), r.body["error"]["param"].as_str()),
            (400, "parameter_invalid", Some("ending_before")),
            "{path}"
        );
    }
    let r = s.get(&format!("{path}{sep}ending_before=cust_nope"));
    assert_eq!(
        (r.status, r.code(), r.body["error"]["param"].as_str()),
        (400, "resource_missing", Some("ending_before")),
        "{path}"
    );
    let r = s.get(&format!("{path}{sep}ending_before="));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{path}");
}

/// `ending_before` on lists of every kind: tables (customers, accounts,
/// payments, events, transactions), with filters, with created bounds, and an
/// account's own transactions (its index).
#[test]
fn ending_before_pages_every_list_the_other_way() {
    let s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let mut members = Vec::new();
    for _ in 0..3 {
        let c = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
        let a = s.ok("/v1/loyalty/accounts", json!({"customer": c}))["id"].as_str().unwrap().to_string();
        members.push((c, a));
    }
    for i in 0..14 {
        let (c, _) = &members[i % 3];
        s.ok("/v1/payments", json!({"amount": 100 + i, "currency": "eur", "customer": c, "confirm": true}));
    }
    let (c0, a0) = &members[0];
    let lists = [
        "/v1/customers".to_string(),
        "/v1/loyalty/accounts".to_string(),
        "/v1/payments".to_string(),
        format!("/v1/payments?customer={c0}"),
        "/v1/events?type=payment.completed".to_string(),
        "/v1/loyalty/transactions".to_string(),
        format!("/v1/loyalty/transactions?account={a0}"),
        format!("/v1/loyalty/transactions?account={a0}&type=earn"),
    ];
    for path in &lists {
        let all = common::list_all(&s, path);
        assert!(all.len() >= 3, "{path}: {}", all.len());
        for limit in [1, 2, 4] {
            check_ending_before(&s, path, &all, limit);
        }
    }
    // With created bounds the page holds only objects within them.
    let all = common::list_all(&s, "/v1/payments");
    let t = all[0]["created"].as_i64().unwrap();
    let oldest = all.last().unwrap()["id"].as_str().unwrap();
    let page = s.get_ok(&format!("/v1/payments?limit=100&ending_before={oldest}&created[gt]={t}"));
    assert_eq!((page["data"].as_array().unwrap().len(), &page["has_more"]), (0, &json!(false)));
    // An account's list takes only that account's transactions as a cursor.
    let other_tx = common::list_all(&s, &format!("/v1/loyalty/transactions?account={}", members[1].1));
    let r =
        s.get(&format!("/v1/loyalty/transactions?account={a0}&ending_before={}", other_tx[0]["id"].as_str().unwrap()));
    assert_eq!(
        (r.status, r.code(), r.body["error"]["param"].as_str()),
        (400, "resource_missing", Some("ending_before"))
    );
    let r = s.get(&format!("/v1/loyalty/transactions?account={a0}&ending_before=x&starting_after=y"));
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("ending_before")));
}
