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
