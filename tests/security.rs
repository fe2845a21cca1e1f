//! Security checks: no secret in any log line, every `/v1` route behind the
//! key, test hooks off unless asked for, and a limit on every input (body
//! size, metadata, list limits, id lengths in paths and queries, header and
//! URL sizes, idempotency keys). The secret key file's mode 0600 is checked in
//! http_contract.rs.

mod common;

use common::fuzz::raw_http;
use common::{Server, SECRET_KEY};
use serde_json::{json, Value};

use loyalty_ledger::config::{
    IDEMPOTENCY_KEY_CHARS_MAX, ID_BYTES_MAX, LIST_LIMIT_MAX, METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX,
    METADATA_VALUE_CHARS_MAX, REQUEST_BODY_BYTES_MAX, TEXT_FIELD_CHARS_MAX,
};
use loyalty_ledger::http::routes::ENDPOINTS;

/// Every `/v1` route of the API, with a path id of the right kind where it takes one.
const ROUTES: &[(&str, &str)] = &[
    ("POST", "/v1/customers"),
    ("GET", "/v1/customers"),
    ("GET", "/v1/customers/cust_x"),
    ("POST", "/v1/customers/cust_x"),
    ("POST", "/v1/loyalty/accounts"),
    ("GET", "/v1/loyalty/accounts"),
    ("GET", "/v1/loyalty/accounts/loy_x"),
    ("POST", "/v1/loyalty/accounts/loy_x"),
    ("GET", "/v1/loyalty/program"),
    ("POST", "/v1/loyalty/program"),
    ("POST", "/v1/loyalty/earning_rules"),
    ("GET", "/v1/loyalty/earning_rules"),
    ("GET", "/v1/loyalty/earning_rules/erl_x"),
    ("POST", "/v1/loyalty/earning_rules/erl_x"),
    ("POST", "/v1/loyalty/rewards"),
    ("GET", "/v1/loyalty/rewards"),
    ("GET", "/v1/loyalty/rewards/rwd_x"),
    ("POST", "/v1/loyalty/rewards/rwd_x"),
    ("POST", "/v1/payments"),
    ("GET", "/v1/payments"),
    ("GET", "/v1/payments/pay_x"),
    ("POST", "/v1/payments/pay_x/complete"),
    ("POST", "/v1/payments/pay_x/fail"),
    ("POST", "/v1/loyalty/awards"),
    ("POST", "/v1/refunds"),
    ("GET", "/v1/refunds"),
    ("GET", "/v1/refunds/re_x"),
    ("POST", "/v1/loyalty/redemptions"),
    ("GET", "/v1/loyalty/redemptions"),
    ("GET", "/v1/loyalty/redemptions/rdm_x"),
    ("POST", "/v1/loyalty/redemptions/rdm_x/cancel"),
    ("GET", "/v1/loyalty/transactions"),
    ("GET", "/v1/loyalty/transactions/ptx_x"),
    ("POST", "/v1/loyalty/adjustments"),
    ("GET", "/v1/loyalty/lots"),
    ("GET", "/v1/loyalty/lots/lot_x"),
    ("GET", "/v1/loyalty/reports/liability"),
    ("GET", "/v1/loyalty/reports/activity"),
    ("GET", "/v1/loyalty/exports/transactions"),
    ("GET", "/v1/events"),
    ("GET", "/v1/events/evt_x"),
    ("POST", "/v1/webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints/we_x"),
    ("DELETE", "/v1/webhook_endpoints/we_x"),
    ("POST", "/v1/webhook_endpoints/we_x"),
    ("POST", "/v1/webhook_endpoints/we_x/roll_secret"),
    ("GET", "/v1/webhook_deliveries"),
    ("GET", "/v1/webhook_deliveries/whd_x"),
    ("POST", "/v1/webhook_deliveries/whd_x/retry"),
    ("POST", "/v1/api_keys"),
    ("GET", "/v1/api_keys"),
    ("GET", "/v1/api_keys/key_x"),
    ("DELETE", "/v1/api_keys/key_x"),
    ("POST", "/v1/api_keys/key_x/roll"),
    ("POST", "/v1/admin/snapshot"),
    ("GET", "/v1/openapi.json"),
    ("POST", "/v1/test/clock"),
    ("POST", "/v1/test/faults"),
    ("GET", "/v1/test/faults"),
];

#[test]
fn the_route_list_here_is_every_route_served() {
    // A new route must join `ROUTES`, so the checks below cover it.
    for ep in ENDPOINTS.iter().filter(|ep| ep.path.starts_with("/v1/")) {
        let concrete = ep.path.replace("{id}", "X");
        let listed = ROUTES.iter().any(|(m, p)| {
            *m == ep.verb.as_str()
                && concrete.split('/').eq(p.split('/').map(|seg| if seg.ends_with("_x") { "X" } else { seg }))
        });
        assert!(listed, "{} {} is served but not in ROUTES", ep.verb.as_str(), ep.path);
    }
    assert_eq!(ROUTES.len(), ENDPOINTS.iter().filter(|ep| ep.path.starts_with("/v1/")).count());
}

/// Every list route.
const LISTS: &[&str] = &[
    "/v1/customers",
    "/v1/loyalty/accounts",
    "/v1/loyalty/earning_rules",
    "/v1/loyalty/rewards",
    "/v1/payments",
    "/v1/refunds",
    "/v1/loyalty/redemptions",
    "/v1/loyalty/transactions",
    "/v1/loyalty/lots",
    "/v1/events",
    "/v1/webhook_endpoints",
    "/v1/webhook_deliveries",
    "/v1/api_keys",
];

fn auth() -> String {
    format!("Bearer {SECRET_KEY}")
}

/// Requests of every kind, good and bad, with `key`: what could make a server
/// log a secret (auth failures, errors, webhook secrets, storage faults).
fn traffic(s: &Server, key: &str) -> Vec<String> {
    let good = format!("Bearer {key}");
    let mut secrets = vec![key.to_string()];
    for bad in [format!("Bearer {}", &key[..key.len() - 1]), format!("Bearer {key}x"), key.to_string()] {
        let r = s.request("GET", "/v1/loyalty/accounts", None, &[("Authorization", &bad)]);
        assert_eq!(r.status, 401);
    }
    let post = |path: &str, body: Value| {
        s.request("POST", path, Some(&body.to_string()), &[("Authorization", &good), ("Idempotency-Key", key)])
    };
    let c = post("/v1/customers", json!({"name": key}));
    assert_eq!(c.status, 200);
    let hook = s.request(
        "POST",
        "/v1/webhook_endpoints",
        Some(&json!({"url": "http://127.0.0.1:9/hook"}).to_string()),
        &[("Authorization", &good)],
    );
    assert_eq!(hook.status, 200, "{}", hook.body);
    secrets.push(hook.body["secret"].as_str().unwrap().to_string());
    let rolled = s.request(
        "POST",
        &format!("/v1/webhook_endpoints/{}/roll_secret", hook.body["id"].as_str().unwrap()),
        Some("{}"),
        &[("Authorization", &good)],
    );
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    secrets.push(rolled.body["secret"].as_str().unwrap().to_string());
    // An API key: made, used, used wrongly, rolled.
    let made = json!({"name": "reporting", "permissions": "read_only"}).to_string();
    let api_key = s.request("POST", "/v1/api_keys", Some(&made), &[("Authorization", &good)]);
    assert_eq!(api_key.status, 200, "{}", api_key.body);
    let api_secret = api_key.body["secret"].as_str().unwrap().to_string();
    let with_api_key = format!("Bearer {api_secret}");
    assert_eq!(s.request("GET", "/v1/events", None, &[("Authorization", &with_api_key)]).status, 200);
    assert_eq!(s.request("POST", "/v1/customers", Some("{}"), &[("Authorization", &with_api_key)]).status, 403);
    let roll = format!("/v1/api_keys/{}/roll", api_key.body["id"].as_str().unwrap());
    let rolled = s.request("POST", &roll, Some(r#"{"expire_in_seconds":60}"#), &[("Authorization", &good)]);
    assert_eq!(rolled.status, 200, "{}", rolled.body);
    secrets.push(api_secret);
    secrets.push(rolled.body["secret"].as_str().unwrap().to_string());
    assert_eq!(post("/v1/customers", json!({"bogus": key})).status, 409, "a reused idempotency key");
    assert_eq!(s.request("GET", "/v1/nothing", None, &[("Authorization", &good)]).status, 404);
    // An event for the endpoint, so the dispatcher tries (and fails) a delivery.
    let pay = json!({"amount": 100, "currency": "eur", "confirm": true}).to_string();
    assert_eq!(s.request("POST", "/v1/payments", Some(&pay), &[("Authorization", &good)]).status, 200);
    std::thread::sleep(std::time::Duration::from_millis(500));
    let r = s.request("POST", "/v1/test/faults", Some(r#"{"op":"sync","error":"eio"}"#), &[("Authorization", &good)]);
    if r.status == 200 {
        // A storage fault and what follows it are logged at error level.
        for _ in 0..2 {
            let r = s.request("POST", "/v1/payments", Some(&pay), &[("Authorization", &good)]);
            assert_eq!(r.status, 503);
        }
    }
    secrets
}

fn assert_not_logged(s: &Server, secrets: &[String], what: &str) {
    let log = s.log();
    assert!(log.lines().count() > 3, "{what}: the server logged something: {log}");
    for secret in secrets {
        assert!(!log.contains(secret.as_str()), "{what}: a secret is in the log:\n{log}");
    }
}

#[test]
fn no_secret_in_any_log_line_with_the_key_from_the_environment() {
    for level in ["info", "debug", "trace"] {
        let s = Server::start_with(&[("RUST_LOG", level), ("LEDGER_FAULTS", "1")]);
        let secrets = traffic(&s, SECRET_KEY);
        assert_not_logged(&s, &secrets, &format!("RUST_LOG={level}"));
    }
}

#[test]
fn no_secret_in_any_log_line_with_a_generated_key() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("LEDGER_SECRET_KEY", ""), ("RUST_LOG", "debug"), ("LEDGER_FAULTS", "1")];
    let s = Server::try_start_in(dir.path(), &env).unwrap_or_else(|f| panic!("{}", f.log));
    let key = std::fs::read_to_string(dir.path().join("secret_key")).unwrap().trim().to_string();
    let secrets = traffic(&s, &key);
    assert_not_logged(&s, &secrets, "generated key, first start");
    drop(s);
    // The second start reads the key back from the file.
    let s = Server::try_start_in(dir.path(), &env[..2]).unwrap_or_else(|f| panic!("{}", f.log));
    let secrets = traffic(&s, &key);
    assert_not_logged(&s, &secrets, "generated key, read back");
}

#[test]
fn every_v1_route_needs_the_key() {
    let s = Server::start_with(&[("LEDGER_FAULTS", "1"), ("LEDGER_TEST_CLOCK", "0")]);
    for (method, path) in ROUTES {
        for auth in [None, Some("Bearer nope"), Some("Bearer "), Some(SECRET_KEY)] {
            let headers: Vec<(&str, &str)> = auth.iter().map(|a| ("Authorization", *a)).collect();
            let body = (*method == "POST").then_some("{}");
            let r = s.request(method, path, body, &headers);
            assert_eq!(r.status, 401, "{method} {path} with {auth:?}: {}", r.body);
            assert_eq!(r.body["error"]["type"], "authentication_error");
        }
        let r = s.request(method, path, (*method == "POST").then_some("{}"), &[("Authorization", &auth())]);
        assert_ne!(r.status, 401, "{method} {path} with the key");
    }
}

#[test]
fn test_hooks_are_off_unless_asked_for() {
    let s = Server::start();
    for (method, path, body) in [
        ("POST", "/v1/test/faults", Some(r#"{"op":"sync","error":"eio"}"#)),
        ("GET", "/v1/test/faults", None),
        ("POST", "/v1/test/clock", Some(r#"{"advance_seconds":3600}"#)),
    ] {
        let r = s.request(method, path, body, &[("Authorization", &auth())]);
        assert_eq!((r.status, r.code()), (404, "route_not_found"), "{method} {path}");
    }
    // Nothing was armed: writes work.
    s.ok("/v1/customers", json!({}));
    assert!(!s.log().contains("LEDGER_FAULTS") && !s.log().contains("manual test clock"));
}

/// Bodies of every POST route that are valid but for one field too long.
#[test]
fn bodies_over_the_limit_are_413_on_every_post_route() {
    let s = Server::start();
    let big = "x".repeat(REQUEST_BODY_BYTES_MAX + 1);
    for (method, path) in ROUTES.iter().filter(|(m, p)| *m == "POST" && !p.starts_with("/v1/test/")) {
        let body = json!({"metadata": {"k": big}}).to_string();
        let r = s.request(method, path, Some(&body), &[("Authorization", &auth())]);
        assert_eq!((r.status, r.code()), (413, "request_too_large"), "{path}");
        // Chunked, with no Content-Length to refuse it up front.
        let mut req = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
            auth()
        )
        .into_bytes();
        for _ in 0..3 {
            req.extend_from_slice(format!("{:x}\r\n{}\r\n", 30 * 1024, "y".repeat(30 * 1024)).as_bytes());
        }
        req.extend_from_slice(b"0\r\n\r\n");
        let (status, _) = raw_http(&s.base, &req).unwrap_or_else(|e| panic!("{path} chunked: {e}"));
        assert_eq!(status, 413, "{path} chunked");
    }
    assert_eq!(s.get_ok("/v1/loyalty/accounts")["data"], json!([]), "nothing was created");
}

#[test]
fn metadata_is_bounded_on_every_route_that_takes_it() {
    let s = Server::start();
    let c = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
    let a = s.ok("/v1/loyalty/accounts", json!({}))["id"].as_str().unwrap().to_string();
    let routes: Vec<(String, Value)> = vec![
        ("/v1/customers".into(), json!({})),
        (format!("/v1/customers/{c}"), json!({})),
        ("/v1/loyalty/accounts".into(), json!({})),
        (format!("/v1/loyalty/accounts/{a}"), json!({})),
        ("/v1/payments".into(), json!({"amount": 100, "currency": "eur", "customer": c})),
    ];
    let too_many: serde_json::Map<String, Value> =
        (0..=METADATA_KEYS_MAX).map(|i| (format!("k{i}"), json!("v"))).collect();
    let at_limit: serde_json::Map<String, Value> = (0..METADATA_KEYS_MAX)
        .map(|i| (format!("{i:0>width$}", width = METADATA_KEY_CHARS_MAX), json!("v".repeat(METADATA_VALUE_CHARS_MAX))))
        .collect();
    for (path, base) in &routes {
        let with = |md: Value| {
            let mut b = base.clone();
            b["metadata"] = md;
            s.post(path, b)
        };
        for bad in [
            Value::Object(too_many.clone()),
            json!({"k".repeat(METADATA_KEY_CHARS_MAX + 1): "v"}),
            json!({"k": "v".repeat(METADATA_VALUE_CHARS_MAX + 1)}),
            json!({"": "v"}),
            json!({"k": 1}),
            json!({"k": {"nested": "v"}}),
            json!(["k", "v"]),
        ] {
            let r = with(bad.clone());
            assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{path} with {bad}: {}", r.body);
        }
        let r = with(Value::Object(at_limit.clone()));
        assert_eq!(r.status, 200, "{path}: metadata at every limit is accepted: {}", r.body);
    }
}

#[test]
fn list_limits_and_ids_in_paths_and_queries_are_bounded() {
    let s = Server::start();
    let long_id = |prefix: &str| format!("{prefix}{}", "a".repeat(ID_BYTES_MAX + 1 - prefix.len()));
    for list in LISTS {
        for bad in ["0", &(LIST_LIMIT_MAX + 1).to_string(), "-1", "1e2", "", "99999999999999999999999"] {
            let r = s.get(&format!("{list}?limit={bad}"));
            assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("limit")), "{list}?limit={bad}");
        }
        assert_eq!(s.get(&format!("{list}?limit={LIST_LIMIT_MAX}")).status, 200, "{list}");
        let r = s.get(&format!("{list}?starting_after={}", long_id("cust_")));
        assert_eq!(r.status, 400, "{list}: an over-long starting_after");
        let r = s.get(&format!("{list}?ending_before={}", long_id("cust_")));
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some("ending_before")), "{list}");
    }
    for (list, filter, prefix) in [
        ("/v1/loyalty/accounts", "customer", "cust_"),
        ("/v1/payments", "customer", "cust_"),
        ("/v1/refunds", "payment", "pay_"),
        ("/v1/loyalty/redemptions", "account", "loy_"),
        ("/v1/loyalty/redemptions", "payment", "pay_"),
        ("/v1/loyalty/transactions", "account", "loy_"),
        ("/v1/loyalty/transactions", "payment", "pay_"),
        ("/v1/webhook_deliveries", "endpoint", "we_"),
        ("/v1/webhook_deliveries", "event", "evt_"),
    ] {
        let r = s.get(&format!("{list}?{filter}={}", long_id(prefix)));
        assert_eq!((r.status, r.body["error"]["param"].as_str()), (400, Some(filter)), "{list}?{filter}=<long>");
    }
    for (method, path) in ROUTES.iter().filter(|(_, p)| !p.starts_with("/v1/test/")) {
        // Swap the path's id (if any) for one a byte over the limit, and for a huge one.
        let Some(seg) = path.split('/').find(|seg| seg.ends_with("_x")) else { continue };
        let prefix = &seg[..seg.len() - 1];
        let body = (*method == "POST").then_some("{}");
        let r = s.request(method, &path.replace(seg, &long_id(prefix)), body, &[("Authorization", &auth())]);
        assert_eq!(r.status, 404, "{method} {path} with an id one byte over the limit");
        // A 100 KB id makes the request head too large: refused (on a fresh
        // connection, which the server then closes).
        let huge = path.replace(seg, &format!("{prefix}{}", "a".repeat(100_000)));
        let req = format!(
            "{method} {huge} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}",
            auth()
        );
        let (status, _) = raw_http(&s.base, req.as_bytes()).unwrap_or_else(|e| panic!("{method} {path}: {e}"));
        assert!((400..500).contains(&status), "{method} {path} with a 100 KB id: {status}");
    }
    assert_eq!(s.request("GET", "/healthz", None, &[]).status, 200);
}

#[test]
fn headers_urls_keys_and_fields_are_bounded() {
    let s = Server::start();
    // Idempotency keys.
    let key = "k".repeat(IDEMPOTENCY_KEY_CHARS_MAX);
    assert_eq!(s.post_idem("/v1/customers", json!({}), &key).status, 200);
    let r = s.post_idem("/v1/customers", json!({}), &format!("{key}k"));
    assert_eq!((r.status, r.code()), (400, "idempotency_key_invalid"));
    // Free-text fields, lists in bodies, webhook URLs.
    let r = s.post("/v1/customers", json!({"name": "n".repeat(TEXT_FIELD_CHARS_MAX + 1)}));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
    assert_eq!(s.post("/v1/customers", json!({"name": "n".repeat(TEXT_FIELD_CHARS_MAX)})).status, 200);
    let many: Vec<String> = (0..21).map(|i| format!("rdm_{i}")).collect();
    let r = s.post("/v1/payments", json!({"amount": 100, "currency": "eur", "redemptions": many}));
    assert_eq!(r.status, 400, "{}", r.body);
    let r = s.post("/v1/webhook_endpoints", json!({"url": format!("http://127.0.0.1:9/{}", "p".repeat(3000))}));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"));
    // A huge header, a huge URL, a huge query string: refused, and the server lives on.
    let big_header = format!(
        "GET /v1/loyalty/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nX-Junk: {}\r\nConnection: close\r\n\r\n",
        auth(),
        "j".repeat(128 * 1024)
    );
    let big_url = format!(
        "GET /v1/loyalty/accounts?customer={} HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\nConnection: close\r\n\r\n",
        "c".repeat(128 * 1024),
        auth()
    );
    let many_headers = format!(
        "GET /v1/loyalty/accounts HTTP/1.1\r\nHost: x\r\nAuthorization: {}\r\n{}Connection: close\r\n\r\n",
        auth(),
        (0..500).map(|i| format!("X-H{i}: v\r\n")).collect::<String>()
    );
    for (what, req) in [("a 128 KiB header", big_header), ("a 128 KiB URL", big_url), ("500 headers", many_headers)] {
        match raw_http(&s.base, req.as_bytes()) {
            Ok((status, _)) => assert!((400..500).contains(&status), "{what}: {status}"),
            // Refusing to read on (closing) is also bounded; what matters is the server lives.
            Err(e) => eprintln!("{what}: connection closed without an answer ({e})"),
        }
        assert_eq!(s.request("GET", "/healthz", None, &[]).status, 200, "alive after {what}");
    }
}
