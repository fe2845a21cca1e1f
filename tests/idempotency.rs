//! `Idempotency-Key`: replays, conflicts, and keys that survive a restart.

mod common;

use common::Server;
use serde_json::json;

#[test]
fn a_retry_replays_the_first_response_and_changes_nothing() {
    let s = Server::start();
    let first = s.post_idem("/v1/loyalty/accounts", json!({"metadata": {"order": "1"}}), "key-1");
    assert_eq!(first.status, 200);
    assert!(!first.replayed);
    let again = s.post_idem("/v1/loyalty/accounts", json!({"metadata": {"order": "1"}}), "key-1");
    assert_eq!(again.status, 200);
    assert!(again.replayed);
    assert_eq!(again.body, first.body);
    assert_eq!(s.get_ok("/v1/loyalty/accounts")["data"].as_array().unwrap().len(), 1);

    let r = s.post_idem("/v1/loyalty/accounts", json!({"metadata": {"order": "2"}}), "key-1");
    assert_eq!((r.status, r.code()), (409, "idempotency_key_reused"));
    assert_eq!(r.body["error"]["type"], "idempotency_error");
    let r = s.post_idem("/v1/customers", json!({"metadata": {"order": "1"}}), "key-1");
    assert_eq!((r.status, r.code()), (409, "idempotency_key_reused"));
    assert_eq!(s.get_ok("/v1/loyalty/accounts")["data"].as_array().unwrap().len(), 1);

    let long = "k".repeat(256);
    let r = s.post_idem("/v1/customers", json!({}), &long);
    assert_eq!(r.status, 400);
    let ok = s.post_idem("/v1/customers", json!({}), &"k".repeat(255));
    assert_eq!(ok.status, 200);
}

#[test]
fn a_failed_request_stores_nothing_under_its_key() {
    let s = Server::start();
    let r = s.post_idem("/v1/loyalty/accounts", json!({"customer": "cust_missing"}), "key-f");
    assert_eq!(r.status, 400);
    let cust = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
    // The same key now runs the (different) request for real.
    let r = s.post_idem("/v1/loyalty/accounts", json!({"customer": cust}), "key-f");
    assert_eq!(r.status, 200);
    assert!(!r.replayed);
}

#[test]
fn keys_survive_a_kill_9() {
    let mut s = Server::start();
    let first = s.post_idem("/v1/customers", json!({"name": "Ann"}), "restart-key");
    let acct = s.post_idem("/v1/loyalty/accounts", json!({"customer": first.id()}), "restart-acct");
    assert_eq!(acct.status, 200);
    s.restart();
    let again = s.post_idem("/v1/customers", json!({"name": "Ann"}), "restart-key");
    assert!(again.replayed);
    assert_eq!(again.body, first.body, "the first response, byte for byte");
    let again = s.post_idem("/v1/loyalty/accounts", json!({"customer": first.id()}), "restart-acct");
    assert!(again.replayed);
    assert_eq!(again.body, acct.body);
    let r = s.post_idem("/v1/customers", json!({"name": "Bob"}), "restart-key");
    assert_eq!((r.status, r.code()), (409, "idempotency_key_reused"));
}
