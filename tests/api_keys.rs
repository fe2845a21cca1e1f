//! API keys through the real server: full and read-only keys, what each may
//! do, revocation, rolls with and without a grace period, expiry, restarts
//! (WAL and snapshot), secrets shown once and never written, bad input.

mod common;

use common::{wal_segments, Resp, Server};
use serde_json::{json, Value};

use loyalty_ledger::config::{API_KEY_NAME_CHARS_MAX, API_KEY_ROLL_EXPIRE_SECONDS_MAX};

const MANUAL_CLOCK: (&str, &str) = ("LEDGER_TEST_CLOCK", "0");

/// A request made with `secret` as the Bearer key.
fn with_key(s: &Server, secret: &str, method: &str, path: &str, body: Option<Value>) -> Resp {
    let auth = format!("Bearer {secret}");
    let body = body.map(|b| b.to_string());
    s.request(method, path, body.as_deref(), &[("Authorization", &auth)])
}

/// Creates a key with the root key; returns its answer (with the secret).
fn create(s: &Server, name: &str, permissions: &str) -> Value {
    s.ok("/v1/api_keys", json!({"name": name, "permissions": permissions}))
}

fn secret(key: &Value) -> String {
    key["secret"].as_str().unwrap_or_else(|| panic!("no secret in {key}")).to_string()
}

/// The manual clock's now, moved `seconds` ahead.
fn advance(s: &Server, seconds: i64) -> i64 {
    s.ok("/v1/test/clock", json!({"advance_seconds": seconds}))["now"].as_i64().unwrap()
}

fn assert_denied(r: &Resp, what: &str) {
    assert_eq!(r.status, 403, "{what}: {}", r.body);
    assert_eq!(r.body["error"]["type"], "invalid_request_error", "{what}");
    assert_eq!(r.code(), "permission_denied", "{what}");
}

fn assert_refused(r: &Resp, what: &str) {
    assert_eq!((r.status, r.code()), (401, "invalid_api_key"), "{what}: {}", r.body);
    assert_eq!(r.body["error"]["type"], "authentication_error", "{what}");
}

#[test]
fn full_and_read_only_keys_do_what_their_permissions_allow() {
    let s = Server::start();
    let full = create(&s, "backend", "full");
    let ro = create(&s, "reporting", "read_only");
    for (key, permissions, prefix) in [(&full, "full", "sk_"), (&ro, "read_only", "rk_")] {
        assert!(key["id"].as_str().unwrap().starts_with("key_"), "{key}");
        assert_eq!(key["object"], "api_key");
        assert_eq!(key["permissions"], permissions);
        assert!(secret(key).starts_with(prefix), "{key}");
        assert!(secret(key).len() >= 3 + 32, "{key}");
        assert!(key["created"].is_i64() && key["expires_at"].is_null() && key["last_used_at"].is_null(), "{key}");
    }
    assert_ne!(secret(&full), secret(&ro));
    let (full_secret, ro_secret) = (secret(&full), secret(&ro));
    let account = s.ok("/v1/loyalty/accounts", json!({}))["id"].as_str().unwrap().to_string();

    // Read-only: GET of objects and lists, nothing else, and never the key routes.
    for path in [format!("/v1/loyalty/accounts/{account}"), "/v1/loyalty/accounts".into(), "/v1/events".into()] {
        let r = with_key(&s, &ro_secret, "GET", &path, None);
        assert_eq!(r.status, 200, "GET {path} with a read-only key: {}", r.body);
    }
    let listed = with_key(&s, &ro_secret, "GET", "/v1/loyalty/accounts", None);
    assert_eq!(listed.body["data"][0]["id"], account.as_str());
    for (method, path, body) in [
        ("POST", "/v1/customers".to_string(), Some(json!({}))),
        ("POST", "/v1/loyalty/accounts".into(), Some(json!({}))),
        ("POST", format!("/v1/loyalty/accounts/{account}"), Some(json!({"metadata": {"k": "v"}}))),
        ("POST", "/v1/admin/snapshot".into(), Some(json!({}))),
        ("DELETE", "/v1/webhook_endpoints/we_x".into(), None),
        ("GET", "/v1/api_keys".into(), None),
        ("GET", format!("/v1/api_keys/{}", ro["id"].as_str().unwrap()), None),
        ("POST", "/v1/api_keys".into(), Some(json!({"name": "mine", "permissions": "full"}))),
        ("POST", format!("/v1/api_keys/{}/roll", ro["id"].as_str().unwrap()), Some(json!({}))),
        ("DELETE", format!("/v1/api_keys/{}", ro["id"].as_str().unwrap()), None),
        // The router decodes %5F to '_': the same route, the same refusal.
        ("GET", "/v1/api%5Fkeys".into(), None),
    ] {
        let r = with_key(&s, &ro_secret, method, &path, body);
        assert_denied(&r, &format!("{method} {path} with a read-only key"));
    }
    let accounts = s.get_ok("/v1/loyalty/accounts")["data"].as_array().unwrap().len();
    assert_eq!(accounts, 1, "a refused write changed nothing");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{account}"))["metadata"], json!({}));

    // Full: writes, and manages keys.
    let r = with_key(&s, &full_secret, "POST", "/v1/customers", Some(json!({"name": "Ann"})));
    assert_eq!(r.status, 200, "{}", r.body);
    let r = with_key(&s, &full_secret, "POST", "/v1/api_keys", Some(json!({"name": "ci", "permissions": "read_only"})));
    assert_eq!(r.status, 200, "a full key creates keys: {}", r.body);
    let r = with_key(&s, &full_secret, "GET", "/v1/api_keys", None);
    assert_eq!((r.status, r.body["data"].as_array().unwrap().len()), (200, 3), "{}", r.body);

    // The secret is never shown again, and last_used_at follows use.
    for key in s.get_ok("/v1/api_keys")["data"].as_array().unwrap() {
        assert!(key.get("secret").is_none(), "a list shows no secret: {key}");
    }
    let got = s.get_ok(&format!("/v1/api_keys/{}", ro["id"].as_str().unwrap()));
    assert!(got.get("secret").is_none(), "{got}");
    assert!(got["last_used_at"].is_i64(), "the read-only key was used: {got}");
    assert_eq!(got["name"], "reporting");
    // The root key works as before.
    assert_eq!(s.get("/v1/api_keys").status, 200);
    s.ok("/v1/customers", json!({}));
}

#[test]
fn a_revoked_key_is_refused_and_gone() {
    let s = Server::start();
    let ro = create(&s, "dashboard", "read_only");
    let full = create(&s, "ops", "full");
    let id = ro["id"].as_str().unwrap();
    assert_eq!(with_key(&s, &secret(&ro), "GET", "/v1/payments", None).status, 200);
    // A full API key may revoke keys (its own too).
    let r = with_key(&s, &secret(&full), "DELETE", &format!("/v1/api_keys/{id}"), None);
    assert_eq!((r.status, &r.body), (200, &json!({"id": id, "object": "api_key", "deleted": true})));
    assert_refused(&with_key(&s, &secret(&ro), "GET", "/v1/payments", None), "a revoked key");
    let r = s.get(&format!("/v1/api_keys/{id}"));
    assert_eq!((r.status, r.code()), (404, "resource_missing"));
    let r = s.request("DELETE", &format!("/v1/api_keys/{id}"), None, &[("Authorization", "Bearer sk_test_0123456789")]);
    assert_eq!(r.status, 404, "a second revoke");
    let listed: Vec<Value> = s.get_ok("/v1/api_keys")["data"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0]["id"], full["id"]);
    let own = full["id"].as_str().unwrap();
    let r = with_key(&s, &secret(&full), "DELETE", &format!("/v1/api_keys/{own}"), None);
    assert_eq!(r.status, 200);
    assert_refused(&with_key(&s, &secret(&full), "GET", "/v1/payments", None), "a key that revoked itself");
}

#[test]
fn a_roll_keeps_the_old_secret_working_until_expire_in_seconds() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    let key = create(&s, "backend", "full");
    let id = key["id"].as_str().unwrap();
    let old = secret(&key);

    let rolled = s.ok(&format!("/v1/api_keys/{id}/roll"), json!({"expire_in_seconds": 3600}));
    assert_eq!((rolled["id"].as_str(), rolled["object"].as_str()), (Some(id), Some("api_key")));
    let new = secret(&rolled);
    assert!(new.starts_with("sk_") && new != old);
    for (which, secret) in [("old", &old), ("new", &new)] {
        assert_eq!(with_key(&s, secret, "GET", "/v1/payments", None).status, 200, "the {which} secret");
    }
    advance(&s, 3599);
    assert_eq!(with_key(&s, &old, "GET", "/v1/payments", None).status, 200, "the old secret, a second before");
    advance(&s, 1);
    assert_refused(&with_key(&s, &old, "GET", "/v1/payments", None), "the old secret once expired");
    assert_eq!(with_key(&s, &new, "POST", "/v1/customers", Some(json!({}))).status, 200);

    // expire_in_seconds 0, or none: the old secret stops at once.
    for body in [json!({"expire_in_seconds": 0}), json!({})] {
        let before = secret(&s.ok(&format!("/v1/api_keys/{id}/roll"), json!({})));
        let after = secret(&s.ok(&format!("/v1/api_keys/{id}/roll"), body.clone()));
        assert_refused(&with_key(&s, &before, "GET", "/v1/payments", None), &format!("rolled with {body}"));
        assert_eq!(with_key(&s, &after, "GET", "/v1/payments", None).status, 200);
    }
    // A read-only key rolls to a read-only secret.
    let ro = create(&s, "reporting", "read_only");
    let rolled = s.ok(&format!("/v1/api_keys/{}/roll", ro["id"].as_str().unwrap()), json!({}));
    assert!(secret(&rolled).starts_with("rk_"));
    assert_denied(&with_key(&s, &secret(&rolled), "POST", "/v1/customers", Some(json!({}))), "rolled read-only key");
    // A GET shows the key, never a secret.
    let got = s.get_ok(&format!("/v1/api_keys/{id}"));
    assert!(got.get("secret").is_none(), "{got}");
}

#[test]
fn a_key_stops_at_its_expires_at() {
    let s = Server::start_with(&[MANUAL_CLOCK]);
    let now = advance(&s, 0);
    let key = s.ok("/v1/api_keys", json!({"name": "temp", "permissions": "read_only", "expires_at": now + 60}));
    assert_eq!(key["expires_at"], now + 60);
    assert_eq!(with_key(&s, &secret(&key), "GET", "/v1/events", None).status, 200);
    advance(&s, 60);
    assert_refused(&with_key(&s, &secret(&key), "GET", "/v1/events", None), "an expired key");
    // Still listed (it was not revoked), with its expiry.
    let got = s.get_ok(&format!("/v1/api_keys/{}", key["id"].as_str().unwrap()));
    assert_eq!(got["expires_at"], now + 60);
}

#[test]
fn keys_survive_a_restart_from_the_wal_and_from_a_snapshot() {
    let mut s = Server::start_with(&[MANUAL_CLOCK]);
    let before_snapshot = create(&s, "from the snapshot", "read_only");
    s.ok("/v1/admin/snapshot", json!({}));
    let full = create(&s, "from the wal", "full");
    let revoked = create(&s, "revoked", "full");
    assert_eq!(
        s.request(
            "DELETE",
            &format!("/v1/api_keys/{}", revoked["id"].as_str().unwrap()),
            None,
            &[("Authorization", "Bearer sk_test_0123456789")]
        )
        .status,
        200
    );
    let rolled =
        s.ok(&format!("/v1/api_keys/{}/roll", full["id"].as_str().unwrap()), json!({"expire_in_seconds": 600}));

    s.restart_with(&[MANUAL_CLOCK]);
    let ro = secret(&before_snapshot);
    assert_eq!(with_key(&s, &ro, "GET", "/v1/loyalty/accounts", None).status, 200);
    assert_denied(&with_key(&s, &ro, "POST", "/v1/customers", Some(json!({}))), "read-only after a restart");
    for (which, secret) in [("rolled", secret(&rolled)), ("replaced, in its grace period", secret(&full))] {
        let r = with_key(&s, &secret, "POST", "/v1/customers", Some(json!({})));
        assert_eq!(r.status, 200, "the {which} secret after a restart: {}", r.body);
    }
    assert_refused(&with_key(&s, &secret(&revoked), "GET", "/v1/payments", None), "revoked, after a restart");
    let names: Vec<String> =
        s.get_ok("/v1/api_keys")["data"].as_array().unwrap().iter().map(|k| k["name"].to_string()).collect();
    assert_eq!(names, vec!["\"from the wal\"", "\"from the snapshot\""]);
    assert_eq!(s.get("/v1/events").status, 200, "the root key after a restart");

    // A snapshot taken now holds them all; a restart from it alone.
    s.ok("/v1/admin/snapshot", json!({}));
    s.restart_with(&[MANUAL_CLOCK]);
    assert_eq!(with_key(&s, &ro, "GET", "/v1/events", None).status, 200);
    assert_eq!(with_key(&s, &secret(&rolled), "GET", "/v1/events", None).status, 200);
    assert_refused(&with_key(&s, &secret(&revoked), "GET", "/v1/events", None), "revoked, after a snapshot");
}

/// Every byte under the data directory (WAL segments and snapshots).
fn data_bytes(dir: &std::path::Path, out: &mut Vec<u8>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            data_bytes(&path, out);
        } else {
            out.extend(std::fs::read(&path).unwrap());
        }
    }
}

#[test]
fn a_secret_is_written_nowhere_and_an_idempotent_retry_shows_the_key_without_it() {
    let s = Server::start();
    let body = json!({"name": "retry me", "permissions": "full"});
    let first = s.post_idem("/v1/api_keys", body.clone(), "create-key-1");
    assert_eq!(first.status, 200);
    let replay = s.post_idem("/v1/api_keys", body, "create-key-1");
    assert!(replay.replayed);
    assert_eq!(replay.body["id"], first.body["id"], "the same key, not a second one");
    assert!(replay.body.get("secret").is_none(), "the secret is not kept for a replay: {}", replay.body);
    assert_eq!(s.get_ok("/v1/api_keys")["data"].as_array().unwrap().len(), 1);
    let id = first.body["id"].as_str().unwrap();
    let rolled = s.post_idem(&format!("/v1/api_keys/{id}/roll"), json!({"expire_in_seconds": 60}), "roll-1");
    let replay = s.post_idem(&format!("/v1/api_keys/{id}/roll"), json!({"expire_in_seconds": 60}), "roll-1");
    assert!(replay.replayed && replay.body.get("secret").is_none(), "{}", replay.body);

    s.ok("/v1/admin/snapshot", json!({}));
    assert!(!wal_segments(&s.data).is_empty());
    let mut bytes = Vec::new();
    data_bytes(&s.data, &mut bytes);
    for secret in [secret(&first.body), secret(&rolled.body)] {
        let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
        assert!(!found, "the secret {secret} is written in the data directory");
    }
    assert!(!s.log().contains(&secret(&first.body)), "nor logged");
}

#[test]
fn bad_input_is_a_400_and_changes_nothing() {
    let s = Server::start();
    let key = create(&s, "keep", "read_only");
    let id = key["id"].as_str().unwrap();
    let long = "n".repeat(API_KEY_NAME_CHARS_MAX + 1);
    for (body, code, param) in [
        (json!({"permissions": "full"}), "parameter_missing", "name"),
        (json!({"name": "x"}), "parameter_missing", "permissions"),
        (json!({"name": "", "permissions": "full"}), "parameter_invalid", "name"),
        (json!({"name": "   ", "permissions": "full"}), "parameter_invalid", "name"),
        (json!({"name": long, "permissions": "full"}), "parameter_invalid", "name"),
        (json!({"name": 7, "permissions": "full"}), "parameter_invalid", "name"),
        (json!({"name": "x", "permissions": "admin"}), "parameter_invalid", "permissions"),
        (json!({"name": "x", "permissions": "full", "expires_at": 1}), "parameter_invalid", "expires_at"),
        (json!({"name": "x", "permissions": "full", "expires_at": i64::MAX}), "parameter_invalid", "expires_at"),
        (json!({"name": "x", "permissions": "full", "expires_at": "soon"}), "parameter_invalid", "expires_at"),
        (json!({"name": "x", "permissions": "full", "secret": "sk_mine"}), "parameter_unknown", "secret"),
    ] {
        let r = s.post("/v1/api_keys", body.clone());
        assert_eq!((r.status, r.code()), (400, code), "{body}: {}", r.body);
        assert_eq!(r.body["error"]["param"], param, "{body}");
        assert_eq!(r.body["error"]["type"], "invalid_request_error");
    }
    let name_at_limit = "n".repeat(API_KEY_NAME_CHARS_MAX);
    let ok = s.post("/v1/api_keys", json!({"name": name_at_limit, "permissions": "full"}));
    assert_eq!(ok.status, 200, "a name at the limit: {}", ok.body);
    for bad in [json!(-1), json!(API_KEY_ROLL_EXPIRE_SECONDS_MAX + 1), json!("1h"), json!(1.5)] {
        let r = s.post(&format!("/v1/api_keys/{id}/roll"), json!({"expire_in_seconds": bad}));
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("expire_in_seconds")), "{bad}");
    }
    let r = s.post(&format!("/v1/api_keys/{id}/roll"), json!({"expires": 5}));
    assert_eq!((r.status, r.code()), (400, "parameter_unknown"));
    assert_eq!(with_key(&s, &secret(&key), "GET", "/v1/events", None).status, 200, "no bad roll changed the key");
    assert_eq!(s.get_ok("/v1/api_keys")["data"].as_array().unwrap().len(), 2, "only the good create made a key");
    // Unknown ids, and ids of another kind: 404 like every resource.
    for id in ["key_nope", "we_x", "x"] {
        for (method, path) in [
            ("GET", format!("/v1/api_keys/{id}")),
            ("DELETE", format!("/v1/api_keys/{id}")),
            ("POST", format!("/v1/api_keys/{id}/roll")),
        ] {
            let body = (method == "POST").then_some("{}");
            let r = s.request(method, &path, body, &[("Authorization", "Bearer sk_test_0123456789")]);
            assert_eq!((r.status, r.code()), (404, "resource_missing"), "{method} {path}");
        }
    }
}

#[test]
fn the_list_pages_newest_first() {
    let s = Server::start();
    let ids: Vec<String> =
        (0..5).map(|i| create(&s, &format!("k{i}"), "read_only")["id"].as_str().unwrap().to_string()).collect();
    let page = s.get_ok("/v1/api_keys?limit=2");
    assert_eq!(page["object"], "list");
    assert_eq!(page["has_more"], true);
    let first: Vec<&str> = page["data"].as_array().unwrap().iter().map(|k| k["id"].as_str().unwrap()).collect();
    assert_eq!(first, vec![ids[4].as_str(), ids[3].as_str()]);
    let all: Vec<String> =
        common::list_all(&s, "/v1/api_keys").iter().map(|k| k["id"].as_str().unwrap().to_string()).collect();
    assert_eq!(all, ids.iter().rev().cloned().collect::<Vec<_>>());
    let r = s.get("/v1/api_keys?limit=0");
    assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("limit")));
    let r = s.get("/v1/api_keys?permissions=full");
    assert_eq!((r.status, r.code()), (400, "parameter_unknown"));
}
