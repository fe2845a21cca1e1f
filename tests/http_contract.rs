//! The HTTP conventions of the contract (docs/decisions.md): auth, the error shape, body limits,
//! unknown fields, unknown routes, health and readiness.

mod common;

use common::{Server, SECRET_KEY};
use serde_json::json;

#[test]
fn auth_is_required_on_v1_and_not_on_health() {
    let s = Server::start();
    let r = s.request("GET", "/v1/loyalty/accounts", None, &[]);
    assert_eq!((r.status, r.code()), (401, "api_key_missing"));
    assert_eq!(r.body["error"]["type"], "authentication_error");
    for bad in ["Bearer nope", "Bearer sk_test_012345678", &format!("Basic {SECRET_KEY}"), SECRET_KEY] {
        let r = s.request("POST", "/v1/customers", Some("{}"), &[("Authorization", bad)]);
        assert_eq!((r.status, r.code()), (401, "invalid_api_key"), "{bad}");
    }
    // A rejected request changed nothing.
    assert_eq!(s.get_ok("/v1/loyalty/accounts")["data"], json!([]));
    assert_eq!(s.request("GET", "/healthz", None, &[]).status, 200);
    assert_eq!(s.request("GET", "/readyz", None, &[]).body["status"], "ready");
}

#[test]
fn errors_have_the_contract_shape() {
    let s = Server::start();
    let r = s.post("/v1/customers", json!({"email": "a@b.c", "bogus": 1}));
    assert_eq!(r.status, 400);
    let e = &r.body["error"];
    assert_eq!(e["type"], "invalid_request_error");
    assert_eq!(e["code"], "parameter_unknown");
    assert_eq!(e["param"], "bogus");
    assert!(e["message"].as_str().unwrap().contains("bogus"));

    let r =
        s.request("POST", "/v1/customers", Some("{not json"), &[("Authorization", &format!("Bearer {SECRET_KEY}"))]);
    assert_eq!((r.status, r.code()), (400, "invalid_json"));
    let r = s.post("/v1/customers", json!({"email": 42}));
    assert_eq!((r.status, r.code(), r.body["error"]["param"].as_str()), (400, "parameter_invalid", Some("email")));
    let r = s.post("/v1/customers", json!({"email": "not-an-email"}));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
    let r = s.post("/v1/customers", json!({"metadata": {"k": 1}}));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
    let r = s.post("/v1/customers", json!([1, 2]));
    assert_eq!(r.status, 400);
    // None of that created anything: the first customer made now is alone in the log.
    let c = s.ok("/v1/customers", json!({}));
    assert!(c["id"].as_str().unwrap().starts_with("cust_"));
}

#[test]
fn unknown_routes_are_404_and_other_methods_405_with_allow() {
    let s = Server::start();
    let r = s.get("/v1/nothing/here");
    assert_eq!((r.status, r.code()), (404, "route_not_found"));
    let auth = format!("Bearer {SECRET_KEY}");
    for (method, path, allow) in [
        ("DELETE", "/v1/customers", "POST, GET"),
        ("PUT", "/v1/customers/cust_x", "GET, POST"),
        ("OPTIONS", "/v1/payments", "POST, GET"),
        ("HEAD", "/v1/events/evt_x", "GET"),
        ("POST", "/healthz", "GET"),
    ] {
        let r = s.request(method, path, None, &[("Authorization", &auth)]);
        assert_eq!(r.status, 405, "{method} {path}");
        if method != "HEAD" {
            assert_eq!((r.code(), &r.body["error"]["type"]), ("method_not_allowed", &json!("invalid_request_error")));
        }
        assert_eq!(r.allow.as_deref(), Some(allow), "{method} {path}");
    }
    // What the spec says of every POST holds on the routes that do not replay too.
    let r =
        s.request("POST", "/v1/admin/snapshot", Some("{}"), &[("Authorization", &auth), ("Idempotency-Key", "a b")]);
    assert_eq!((r.status, r.code()), (400, "idempotency_key_invalid"));
    let r = s.request("POST", "/v1/admin/snapshot", Some("[]"), &[("Authorization", &auth)]);
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
    let r = s.get("/v1/customers/cust_doesnotexist");
    assert_eq!((r.status, r.code()), (404, "resource_missing"));
    let r = s.get(&format!("/v1/customers/cust_{}", "x".repeat(5000)));
    assert_eq!(r.status, 404);
}

#[test]
fn bodies_over_64_kib_are_413_and_change_nothing() {
    let s = Server::start();
    let big = json!({"name": "x".repeat(70 * 1024)}).to_string();
    let r = s.request("POST", "/v1/customers", Some(&big), &[("Authorization", &format!("Bearer {SECRET_KEY}"))]);
    assert_eq!((r.status, r.code()), (413, "request_too_large"));
    assert_eq!(r.body["error"]["type"], "invalid_request_error");
    // Just under the limit is parsed (and rejected for the field's own limit).
    let r = s.post("/v1/customers", json!({"name": "x".repeat(60 * 1024)}));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
}

#[test]
fn metadata_limits() {
    let s = Server::start();
    let many: serde_json::Map<String, serde_json::Value> = (0..51).map(|i| (format!("k{i}"), json!("v"))).collect();
    assert_eq!(s.post("/v1/customers", json!({"metadata": many})).status, 400);
    assert_eq!(s.post("/v1/customers", json!({"metadata": {"k".repeat(41): "v"}})).status, 400);
    assert_eq!(s.post("/v1/customers", json!({"metadata": {"k": "v".repeat(501)}})).status, 400);
    let ok = s.ok("/v1/customers", json!({"metadata": {"k".repeat(40): "v".repeat(500)}}));
    assert_eq!(ok["metadata"]["k".repeat(40)], "v".repeat(500));
}

#[test]
fn the_secret_key_is_generated_once_with_mode_0600() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    // No LEDGER_SECRET_KEY: the server makes one and keeps it.
    let s = Server::try_start_in(dir.path(), &[("LEDGER_SECRET_KEY", "")]).unwrap_or_else(|f| panic!("{}", f.log));
    let path = dir.path().join("secret_key");
    let key = std::fs::read_to_string(&path).unwrap().trim().to_string();
    assert!(key.starts_with("sk_") && key.len() > 20);
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert!(s.log().contains("secret_key"), "the log says where the key is");
    assert!(!s.log().contains(&key), "the key itself is never logged");
    let r = s.request("GET", "/v1/loyalty/accounts", None, &[("Authorization", &format!("Bearer {key}"))]);
    assert_eq!(r.status, 200);
    drop(s);
    let s = Server::try_start_in(dir.path(), &[("LEDGER_SECRET_KEY", "")]).unwrap_or_else(|f| panic!("{}", f.log));
    assert_eq!(std::fs::read_to_string(&path).unwrap().trim(), key, "kept across restarts");
    let r = s.request("GET", "/v1/loyalty/accounts", None, &[("Authorization", &format!("Bearer {key}"))]);
    assert_eq!(r.status, 200);
}

#[test]
fn a_second_server_on_the_same_data_directory_refuses_to_start() {
    let s = Server::start();
    let second = Server::try_start_in(&s.data, &[]);
    let failed = second.err().expect("second server must not start");
    assert!(!failed.status.success());
    assert!(failed.log.contains("LOCK"), "{}", failed.log);
}

/// With `LEDGER_SECRET_KEY` set and a `DIR/secret_key` from an earlier start,
/// the file's key stops working: the server says so at startup, naming the file.
#[test]
fn an_ignored_secret_key_file_is_warned_about() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secret_key");
    std::fs::write(&file, "sk_from_the_file_0123\n").unwrap();
    // The helper sets LEDGER_SECRET_KEY.
    let s = Server::try_start_in(dir.path(), &[]).unwrap_or_else(|f| panic!("{}", f.log));
    let log = s.log();
    let line = log
        .lines()
        .find(|l| l.contains("WARN") && l.contains("LEDGER_SECRET_KEY") && l.contains("ignored"))
        .unwrap_or_else(|| panic!("no warning about the ignored key file:\n{log}"));
    assert!(line.contains(file.to_str().unwrap()), "the warning names the file: {line}");
    assert!(!log.contains("sk_from_the_file_0123") && !log.contains(SECRET_KEY), "keys are never logged");
    let with =
        |key: &str| s.request("GET", "/v1/loyalty/accounts", None, &[("Authorization", &format!("Bearer {key}"))]);
    assert_eq!(with("sk_from_the_file_0123").status, 401, "the file's key is refused, as the warning says");
    assert_eq!(with(SECRET_KEY).status, 200);
    drop(s);
    // Without the file there is nothing to warn about.
    std::fs::remove_file(&file).unwrap();
    let s = Server::try_start_in(dir.path(), &[]).unwrap_or_else(|f| panic!("{}", f.log));
    assert!(!s.log().contains("ignored"), "{}", s.log());
    assert!(!file.exists(), "with LEDGER_SECRET_KEY set no key file is made");
}

/// `/v1/test/*` are described in `/v1/openapi.json` only when their hook is
/// on; the new customer routes and `ending_before` always are.
#[test]
fn the_openapi_description_shows_test_hooks_only_when_they_are_on() {
    let test_paths = |s: &Server| -> Vec<String> {
        let spec = s.get_ok("/v1/openapi.json");
        spec["paths"].as_object().unwrap().keys().filter(|p| p.starts_with("/v1/test/")).cloned().collect()
    };
    let s = Server::start();
    assert_eq!(test_paths(&s), Vec::<String>::new());
    let spec = s.get_ok("/v1/openapi.json");
    assert!(spec["paths"]["/v1/customers/{id}"]["post"].is_object());
    let list = &spec["paths"]["/v1/customers"]["get"];
    let params: Vec<&str> =
        list["parameters"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    for p in ["limit", "starting_after", "ending_before", "email", "created[gte]"] {
        assert!(params.contains(&p), "{p} in {params:?}");
    }
    assert_eq!(s.post("/v1/test/clock", json!({"advance_seconds": 1})).code(), "route_not_found");
    drop(s);
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    assert_eq!(test_paths(&s), vec!["/v1/test/clock".to_string()]);
    drop(s);
    let s = Server::start_with(&[("LEDGER_FAULTS", "1")]);
    assert_eq!(test_paths(&s), vec!["/v1/test/faults".to_string()]);
    drop(s);
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0"), ("LEDGER_FAULTS", "1")]);
    assert_eq!(test_paths(&s), vec!["/v1/test/clock".to_string(), "/v1/test/faults".to_string()]);
}
