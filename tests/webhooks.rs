//! Events and signed webhooks: a real HTTP receiver inside the test.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{list_all, Server};
use loyalty_ledger::webhooks::{verify, verify_at, VerifyError, SIGNATURE_HEADER};
use serde_json::{json, Value};

/// One request the receiver got.
#[derive(Clone, Debug)]
struct Got {
    headers: HashMap<String, String>,
    body: String,
}

impl Got {
    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

/// A tiny HTTP receiver: records every request and answers with the next
/// status from `answers` (200 when empty); with `hang`, holds requests unanswered.
struct Receiver {
    url: String,
    got: Arc<Mutex<Vec<Got>>>,
    answers: Arc<Mutex<Vec<u16>>>,
    hang: Arc<AtomicBool>,
    hanging: Arc<AtomicUsize>,
}

impl Receiver {
    fn start() -> Receiver {
        Receiver::on(TcpListener::bind("127.0.0.1:0").unwrap())
    }

    fn on(listener: TcpListener) -> Receiver {
        Receiver::serving(listener, None)
    }

    /// An `https://` receiver presenting `tls`'s certificate.
    fn tls(tls: Arc<rustls::ServerConfig>) -> Receiver {
        Receiver::serving(TcpListener::bind("127.0.0.1:0").unwrap(), Some(tls))
    }

    fn serving(listener: TcpListener, tls: Option<Arc<rustls::ServerConfig>>) -> Receiver {
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://{}/hooks", listener.local_addr().unwrap());
        let r = Receiver {
            url,
            got: Arc::default(),
            answers: Arc::default(),
            hang: Arc::default(),
            hanging: Arc::default(),
        };
        let (got, answers, hang, hanging) = (r.got.clone(), r.answers.clone(), r.hang.clone(), r.hanging.clone());
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (got, answers, hang, hanging) = (got.clone(), answers.clone(), hang.clone(), hanging.clone());
                let tls = tls.clone();
                std::thread::spawn(move || match tls {
                    None => serve(stream, got, answers, hang, hanging),
                    Some(config) => {
                        let Ok(conn) = rustls::ServerConnection::new(config) else { return };
                        serve(rustls::StreamOwned::new(conn, stream), got, answers, hang, hanging)
                    }
                });
            }
        });
        r
    }

    fn events(&self) -> Vec<Got> {
        self.got.lock().unwrap().clone()
    }

    fn wait_for(&self, what: &str, pred: impl Fn(&[Got]) -> bool) -> Vec<Got> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let got = self.events();
            if pred(&got) {
                return got;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}; got {got:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

fn serve(
    stream: impl Read + Write,
    got: Arc<Mutex<Vec<Got>>>,
    answers: Arc<Mutex<Vec<u16>>>,
    hang: Arc<AtomicBool>,
    hanging: Arc<AtomicUsize>,
) {
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
            }
        }
        let len: usize = headers.get("content-length").and_then(|v| v.parse().ok()).unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        got.lock().unwrap().push(Got { headers, body: String::from_utf8_lossy(&body).into_owned() });
        if hang.load(Ordering::SeqCst) {
            hanging.fetch_add(1, Ordering::SeqCst);
            while hang.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(20));
            }
            hanging.fetch_sub(1, Ordering::SeqCst);
        }
        let status = {
            let mut a = answers.lock().unwrap();
            if a.is_empty() {
                200
            } else {
                a.remove(0)
            }
        };
        let resp = format!("HTTP/1.1 {status} X\r\ncontent-length: 2\r\n\r\nok");
        if reader.get_mut().write_all(resp.as_bytes()).and_then(|_| reader.get_mut().flush()).is_err() {
            return;
        }
    }
}

/// "1 point per EUR 1" and a linked member.
fn setup(s: &Server) -> (String, String) {
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let c = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
    let a = s.ok("/v1/loyalty/accounts", json!({"customer": c}))["id"].as_str().unwrap().to_string();
    (c, a)
}

fn endpoint(s: &Server, url: &str, events: Option<Value>) -> (String, String) {
    let mut body = json!({"url": url});
    if let Some(e) = events {
        body["enabled_events"] = e;
    }
    let e = s.ok("/v1/webhook_endpoints", body);
    let secret = e["secret"].as_str().unwrap().to_string();
    assert!(secret.starts_with("whsec_"));
    (e["id"].as_str().unwrap().to_string(), secret)
}

fn of_type<'a>(got: &'a [Got], t: &str) -> Vec<&'a Got> {
    got.iter().filter(|g| g.json()["type"] == t).collect()
}

#[test]
fn earned_points_arrive_signed_and_verifiable() {
    let s = Server::start();
    let (cust, acct) = setup(&s);
    let rx = Receiver::start();
    let (_, secret) = endpoint(&s, &rx.url, None);
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let got = rx.wait_for("loyalty.points.earned", |g| !of_type(g, "loyalty.points.earned").is_empty());
    let earned = of_type(&got, "loyalty.points.earned")[0].clone();
    let header = earned.headers.get(SIGNATURE_HEADER).expect("signature header").clone();
    let event = verify(earned.body.as_bytes(), &header, &secret, 300).expect("the verifier accepts it");
    assert_eq!(event["object"], "event");
    assert_eq!(event["data"]["account"], acct.as_str());
    assert_eq!(event["data"]["points"], 42);
    assert_eq!(event["data"]["source"]["payment"], p["id"]);
    assert_eq!(event["data"]["object"], "points_transaction");
    // The same event is listed by the API.
    let listed = s.get_ok(&format!("/v1/events/{}", event["id"].as_str().unwrap()));
    assert_eq!(listed, event);

    // Tampered body, wrong secret, stale timestamp: rejected.
    let tampered = earned.body.replace("\"points\":42", "\"points\":4200");
    assert_eq!(verify(tampered.as_bytes(), &header, &secret, 300).unwrap_err(), VerifyError::SignatureMismatch);
    assert_eq!(
        verify(earned.body.as_bytes(), &header, "whsec_wrong", 300).unwrap_err(),
        VerifyError::SignatureMismatch
    );
    let t: i64 = header.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap();
    assert!(matches!(
        verify_at(earned.body.as_bytes(), &header, &secret, 300, t + 301),
        Err(VerifyError::OutsideTolerance { .. })
    ));
    // payment.completed came too.
    rx.wait_for("payment.completed", |g| !of_type(g, "payment.completed").is_empty());
}

#[test]
fn a_receiver_that_fails_first_gets_the_same_event_again() {
    let s = Server::start();
    let (cust, _) = setup(&s);
    let rx = Receiver::start();
    *rx.answers.lock().unwrap() = vec![500];
    endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "customer": cust, "confirm": true}));
    let got = rx.wait_for("a retry", |g| g.len() >= 2);
    assert_eq!(got[0].json()["id"], got[1].json()["id"], "the same event is retried");
    let deliveries = list_all(&s, "/v1/webhook_deliveries");
    let wait = Instant::now() + Duration::from_secs(10);
    let mut d = deliveries[0].clone();
    while d["status"] != "delivered" && Instant::now() < wait {
        std::thread::sleep(Duration::from_millis(50));
        d = list_all(&s, "/v1/webhook_deliveries")[0].clone();
    }
    assert_eq!((d["status"].as_str(), d["attempts"].as_i64()), (Some("delivered"), Some(2)));
    assert_eq!(deliveries.len(), 1, "only the enabled type is delivered");
    // What the dashboard and the backlog alert read (ops/).
    let metrics = s.request("GET", "/metrics", None, &[]).body.as_str().unwrap().to_string();
    assert!(metrics.contains("\nledger_webhook_delivery_failures_total 1\n"), "{metrics}");
    assert!(metrics.contains("\nledger_webhook_deliveries_pending 0\n"), "{metrics}");
}

#[test]
fn a_kill_9_after_the_mutation_and_before_delivery_still_delivers() {
    // Reserve a port with nothing listening on it yet.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    let mut s = Server::start();
    let (cust, _) = setup(&s);
    endpoint(&s, &format!("http://{addr}/hooks"), Some(json!(["loyalty.points.earned"])));
    let p = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    s.kill9();
    let rx = Receiver::on(TcpListener::bind(addr).unwrap());
    s.restart();
    let got = rx.wait_for("delivery after restart", |g| !g.is_empty());
    assert_eq!(got[0].json()["data"]["source"]["payment"], p["id"]);
}

#[test]
fn a_dead_endpoint_does_not_slow_earning() {
    let s = Server::start();
    let (cust, acct) = setup(&s);
    let rx = Receiver::start();
    rx.hang.store(true, Ordering::SeqCst);
    endpoint(&s, &rx.url, None);
    s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust, "confirm": true}));
    rx.wait_for("the first delivery to hang", |g| !g.is_empty());
    // Every earn below is answered while the endpoint holds its deliveries unanswered.
    for _ in 0..30 {
        s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust, "confirm": true}));
    }
    assert!(rx.hanging.load(Ordering::SeqCst) >= 1, "the endpoint was still hanging");
    assert!(rx.hanging.load(Ordering::SeqCst) <= 4, "bounded concurrency per endpoint");
    assert_eq!(s.get_ok(&format!("/v1/loyalty/accounts/{acct}"))["balance"], 31);
    // Nothing delivered yet: every event of the 31 payments waits, in the backlog `/metrics` shows.
    let metrics = s.request("GET", "/metrics", None, &[]).body.as_str().unwrap().to_string();
    assert!(metrics.contains("\nledger_webhook_deliveries_pending 62\n"), "{metrics}");
    rx.hang.store(false, Ordering::SeqCst);
    rx.wait_for("everything delivered", |g| g.len() >= 62);
}

#[test]
fn every_event_type_is_recorded() {
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    let (cust, acct) = setup(&s);
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": "rwd_x", "name": "x", "points": 5, "discount": {"amount": 100, "currency": "eur"}}),
    );
    let paid = s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    s.ok("/v1/refunds", json!({"payment": paid["id"], "amount": 100}));
    let failed = s.ok("/v1/payments", json!({"amount": 100, "currency": "eur"}));
    s.ok(&format!("/v1/payments/{}/fail", failed["id"].as_str().unwrap()), json!({}));
    let r1 = s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_x"}));
    s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", r1["id"].as_str().unwrap()), json!({}));
    let r2 = s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_x"}));
    s.ok(
        "/v1/payments",
        json!({"amount": 1000, "currency": "eur", "customer": cust, "redemptions": [r2["id"]], "confirm": true}),
    );
    s.ok("/v1/loyalty/redemptions", json!({"account": acct, "reward": "rwd_x"}));
    s.ok("/v1/test/clock", json!({"advance_seconds": 1800}));
    let deadline = Instant::now() + Duration::from_secs(20);
    while s.get_ok("/v1/events?type=loyalty.redemption.expired")["data"].as_array().unwrap().is_empty() {
        assert!(Instant::now() < deadline, "no expiry event");
        std::thread::sleep(Duration::from_millis(50));
    }
    let all = list_all(&s, "/v1/events");
    for t in [
        "payment.completed",
        "payment.failed",
        "payment.refunded",
        "loyalty.points.earned",
        "loyalty.points.clawed_back",
        "loyalty.redemption.created",
        "loyalty.redemption.canceled",
        "loyalty.redemption.expired",
        "loyalty.redemption.consumed",
    ] {
        let n = all.iter().filter(|e| e["type"] == t).count();
        assert!(n >= 1, "no {t} event");
        let listed = s.get_ok(&format!("/v1/events?type={t}&limit=100"));
        assert_eq!(listed["data"].as_array().unwrap().len(), n);
    }
    let refunded = &s.get_ok("/v1/events?type=payment.refunded")["data"][0];
    assert_eq!(
        (refunded["data"]["object"].as_str(), refunded["data"]["amount_refunded"].as_i64()),
        (Some("payment"), Some(100))
    );
    let clawed = &s.get_ok("/v1/events?type=loyalty.points.clawed_back")["data"][0]["data"];
    assert_eq!(clawed["type"], "clawback");
    assert_eq!(s.get("/v1/events?type=nope").status, 400);
    assert_eq!(s.get("/v1/events/evt_nope").status, 404);
    let t0 = paid["created"].as_i64().unwrap();
    assert_eq!(list_all(&s, &format!("/v1/events?created[lt]={t0}")).len(), 0);
}

#[test]
fn endpoints_hide_their_secret_and_can_be_deleted() {
    let s = Server::start();
    let (cust, _) = setup(&s);
    let rx = Receiver::start();
    let (id, _) = endpoint(&s, &rx.url, Some(json!(["payment.completed", "payment.failed"])));
    let listed = s.get_ok("/v1/webhook_endpoints");
    assert_eq!(listed["data"][0]["id"], id.as_str());
    assert!(listed["data"][0].get("secret").is_none(), "secret shown on create only");
    assert_eq!(listed["data"][0]["enabled_events"], json!(["payment.completed", "payment.failed"]));
    assert!(s.get_ok(&format!("/v1/webhook_endpoints/{id}")).get("secret").is_none());
    for bad in [
        json!({"url": "ftp://x"}),
        json!({"url": "not a url"}),
        json!({"url": "https:///hook"}),
        json!({"url": "https://[2606:4700::1111]/hook"}),
        json!({"url": rx.url, "enabled_events": ["payment.exploded"]}),
        json!({"url": rx.url, "enabled_events": []}),
        json!({"url": rx.url, "secret": "whsec_mine"}),
    ] {
        assert_eq!(s.post("/v1/webhook_endpoints", bad.clone()).status, 400, "{bad}");
    }
    let del = s.request(
        "DELETE",
        &format!("/v1/webhook_endpoints/{id}"),
        None,
        &[("Authorization", &format!("Bearer {}", common::SECRET_KEY))],
    );
    assert_eq!((del.status, del.body["deleted"].as_bool()), (200, Some(true)));
    assert_eq!(s.get(&format!("/v1/webhook_endpoints/{id}")).status, 404);
    s.ok("/v1/payments", json!({"amount": 100, "currency": "eur", "customer": cust, "confirm": true}));
    std::thread::sleep(Duration::from_millis(600));
    assert!(rx.events().is_empty(), "a deleted endpoint gets nothing");
    assert_eq!(s.get_ok("/v1/webhook_endpoints")["data"], json!([]));
}

/// The deliveries of the server, once `pred` holds for them (or a panic after 30 s).
fn deliveries_once(s: &Server, what: &str, pred: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let all = list_all(s, "/v1/webhook_deliveries");
        if pred(&all) {
            return all;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}; deliveries: {all:?}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A CA made here, and a server configuration with a certificate it signed
/// for 127.0.0.1 and localhost.
fn test_ca() -> (String, Arc<rustls::ServerConfig>) {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair, KeyUsagePurpose};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca.distinguished_name.push(DnType::CommonName, "loyalty-ledger test CA");
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    let ca_cert = ca.self_signed(&ca_key).unwrap();
    let leaf_key = KeyPair::generate().unwrap();
    let leaf = CertificateParams::new(vec!["127.0.0.1".to_string(), "localhost".to_string()]).unwrap();
    let leaf_cert = leaf.signed_by(&leaf_key, &ca_cert, &ca_key).unwrap();
    let key = rustls::pki_types::PrivateKeyDer::Pkcs8(leaf_key.serialize_der().into());
    let config = rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![leaf_cert.der().clone()], key)
        .unwrap();
    (ca_cert.pem(), Arc::new(config))
}

#[test]
fn https_endpoints_are_delivered_with_the_certificate_verified() {
    let (ca_pem, tls) = test_ca();
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    std::fs::write(&ca_file, ca_pem).unwrap();
    let rx = Receiver::tls(tls.clone());
    assert!(rx.url.starts_with("https://127.0.0.1:"), "{}", rx.url);

    // Trusting the test CA: delivered, signed, verifiable.
    let s = Server::start_with(&[("LEDGER_WEBHOOK_CA_FILE", ca_file.to_str().unwrap())]);
    let (cust, _) = setup(&s);
    let (_, secret) = endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let got = rx.wait_for("a delivery over TLS", |g| !g.is_empty());
    let header = got[0].headers.get(SIGNATURE_HEADER).unwrap();
    assert_eq!(verify(got[0].body.as_bytes(), header, &secret, 300).unwrap()["data"]["points"], 42);
    let d = deliveries_once(&s, "delivered", |d| d.len() == 1 && d[0]["status"] == "delivered");
    assert_eq!(d[0]["last_http_status"], 200);
    drop(s);

    // Without the CA the certificate is unknown: nothing reaches the receiver,
    // and the delivery records only that it failed.
    let rx = Receiver::tls(tls);
    let s = Server::start();
    let (cust, _) = setup(&s);
    endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let d = deliveries_once(&s, "a failed attempt", |d| d.len() == 1 && d[0]["attempts"].as_i64() >= Some(1));
    assert_eq!((d[0]["status"].as_str(), d[0]["last_error"].as_str()), (Some("pending"), Some("failed")));
    assert_eq!(d[0]["last_http_status"], Value::Null);
    assert!(rx.events().is_empty(), "no request went over an unverified connection");
    assert!(s.log().contains("webhook attempt failed"), "the server log has the details");

    // A CA file that is not one stops the server at start, saying why.
    std::fs::write(&ca_file, "not a certificate").unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let failed = Server::try_start_in(tmp.path(), &[("LEDGER_WEBHOOK_CA_FILE", ca_file.to_str().unwrap())])
        .err()
        .expect("a bad CA file is refused");
    assert!(failed.log.contains("LEDGER_WEBHOOK_CA_FILE"), "{}", failed.log);
}

/// A server that refuses private addresses (the test helper opens them).
const GUARDED: (&str, &str) = ("LEDGER_WEBHOOK_ALLOW_PRIVATE", "0");

#[test]
fn endpoints_at_private_addresses_are_refused() {
    let s = Server::start_with(&[GUARDED]);
    for url in [
        "http://127.0.0.1:9/hooks",
        "http://10.1.2.3/hooks",
        "http://192.168.0.10/hooks",
        "http://172.16.5.4/hooks",
        "http://169.254.169.254/latest/meta-data/",
        "http://100.64.0.1/hooks",
        "http://0.0.0.0/hooks",
        "http://[::1]:9/hooks",
        "http://[fd00::1]/hooks",
        "http://[fe80::1]/hooks",
        "http://[::ffff:127.0.0.1]/hooks",
        "http://[::ffff:169.254.169.254]/hooks",
        "http://localhost:9/hooks",
        "https://localhost/hooks",
    ] {
        let r = s.post("/v1/webhook_endpoints", json!({ "url": url }));
        assert_eq!(r.status, 400, "{url}: {:?}", r.body);
        assert_eq!(r.body["error"]["type"], "invalid_request_error", "{url}");
        assert_eq!(r.body["error"]["code"], "url_not_allowed", "{url}");
        assert_eq!(r.body["error"]["param"], "url", "{url}");
    }
    // https:// needs a host name (the certificate's): an IPv6 literal is not a URL it takes.
    let r = s.post("/v1/webhook_endpoints", json!({ "url": "https://[::ffff:169.254.169.254]/hooks" }));
    assert_eq!((r.status, r.code()), (400, "parameter_invalid"), "{:?}", r.body);
    assert_eq!(s.get_ok("/v1/webhook_endpoints")["data"], json!([]), "nothing was created");
}

#[test]
fn a_host_that_now_resolves_to_a_blocked_address_is_not_delivered_to() {
    let rx = Receiver::start();
    let port = rx.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_string();
    // At creation the name resolves to a public address ...
    let mut s = Server::start_with(&[GUARDED, ("LEDGER_TEST_HOSTS", "hooks.example=203.0.113.7")]);
    let (cust, _) = setup(&s);
    endpoint(&s, &format!("http://hooks.example:{port}/hooks"), Some(json!(["loyalty.points.earned"])));
    // ... and then to the loopback address the receiver listens on.
    s.restart_with(&[GUARDED, ("LEDGER_TEST_HOSTS", "hooks.example=198.51.100.1,hooks.example=127.0.0.1")]);
    s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let d = deliveries_once(&s, "a blocked attempt", |d| d.len() == 1 && d[0]["attempts"].as_i64() >= Some(1));
    assert_eq!((d[0]["status"].as_str(), d[0]["last_error"].as_str()), (Some("pending"), Some("blocked")));
    assert_eq!(d[0]["last_http_status"], Value::Null);
    std::thread::sleep(Duration::from_millis(300));
    assert!(rx.events().is_empty(), "nothing reached the blocked address");
}

#[test]
fn a_delivery_records_failed_or_the_receivers_status_and_nothing_more() {
    // Nothing listens on this port: connection refused, recorded as "failed".
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let closed = listener.local_addr().unwrap();
    drop(listener);
    let s = Server::start();
    let (cust, _) = setup(&s);
    let rx = Receiver::start();
    *rx.answers.lock().unwrap() = vec![418; 100];
    let (dead, _) = endpoint(&s, &format!("http://{closed}/hooks"), Some(json!(["loyalty.points.earned"])));
    let (teapot, _) = endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let all = deliveries_once(&s, "two failed attempts", |d| {
        d.len() == 2 && d.iter().all(|d| d["attempts"].as_i64() >= Some(1))
    });
    let of = |e: &str| all.iter().find(|d| d["endpoint"] == e).unwrap().clone();
    assert_eq!((of(&dead)["last_error"].as_str(), of(&dead)["last_http_status"].as_i64()), (Some("failed"), None));
    assert_eq!(
        (of(&teapot)["last_error"].as_str(), of(&teapot)["last_http_status"].as_i64()),
        (Some("endpoint answered 418"), Some(418))
    );
}

/// The `v1=` values of a signature header.
fn signatures(header: &str) -> usize {
    header.split(',').filter(|p| p.starts_with("v1=")).count()
}

/// The header's `t`.
fn signed_at(header: &str) -> i64 {
    header.split(',').next().unwrap().trim_start_matches("t=").parse().unwrap()
}

#[test]
fn a_rolled_secret_signs_beside_the_new_one_until_it_expires() {
    let s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    let (cust, _) = setup(&s);
    let rx = Receiver::start();
    let (id, old) = endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    let pay = || s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "customer": cust, "confirm": true}));
    let roll = |body: Value| s.post(&format!("/v1/webhook_endpoints/{id}/roll_secret"), body);

    // Default: the old secret signs beside the new one for 24 hours.
    let rolled = roll(json!({}));
    assert_eq!(rolled.status, 200, "{:?}", rolled.body);
    let new = rolled.body["secret"].as_str().unwrap().to_string();
    assert!(new.starts_with("whsec_") && new != old);
    assert_eq!((rolled.body["id"].as_str(), rolled.body["status"].as_str()), (Some(id.as_str()), Some("enabled")));
    assert!(s.get_ok(&format!("/v1/webhook_endpoints/{id}")).get("secret").is_none(), "shown on roll only");
    pay();
    let got = rx.wait_for("a delivery during the overlap", |g| g.len() == 1);
    let header = got[0].headers.get(SIGNATURE_HEADER).unwrap().clone();
    assert_eq!(signatures(&header), 2, "{header}");
    let t = signed_at(&header);
    for secret in [&new, &old] {
        verify_at(got[0].body.as_bytes(), &header, secret, 300, t).expect("either secret verifies");
    }
    // A day later only the new one signs.
    s.ok("/v1/test/clock", json!({"advance_seconds": 86_400}));
    pay();
    let got = rx.wait_for("a delivery after the overlap", |g| g.len() == 2);
    let header = got[1].headers.get(SIGNATURE_HEADER).unwrap().clone();
    assert_eq!(signatures(&header), 1, "{header}");
    let t = signed_at(&header);
    verify_at(got[1].body.as_bytes(), &header, &new, 300, t).unwrap();
    assert_eq!(verify_at(got[1].body.as_bytes(), &header, &old, 300, t), Err(VerifyError::SignatureMismatch));

    // Bad input is a 400 and changes nothing; an unknown endpoint is a 404.
    for bad in [
        json!({"expire_in_seconds": -1}),
        json!({"expire_in_seconds": 604_801}),
        json!({"expire_in_seconds": "60"}),
        json!({"secret": "whsec_mine"}),
    ] {
        let r = roll(bad.clone());
        assert_eq!((r.status, r.body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{bad}");
    }
    assert_eq!(s.post("/v1/webhook_endpoints/we_nope/roll_secret", json!({})).status, 404);
    // expire_in_seconds 0: the old secret stops at once. Then restart: it is all durable.
    let newest = roll(json!({"expire_in_seconds": 0})).body["secret"].as_str().unwrap().to_string();
    let mut s = s;
    s.restart_with(&[("LEDGER_TEST_CLOCK", "86400")]);
    s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "customer": cust, "confirm": true}));
    let got = rx.wait_for("a delivery after the last roll", |g| g.len() == 3);
    let header = got[2].headers.get(SIGNATURE_HEADER).unwrap().clone();
    assert_eq!(signatures(&header), 1, "{header}");
    verify_at(got[2].body.as_bytes(), &header, &newest, 300, signed_at(&header)).expect("the newest secret signs");
}

/// Each `status` filter, alone and with `endpoint`, lists exactly the whole
/// list's deliveries of that status, in its order: all at once, a page of
/// one at a time (`starting_after`), and back from the last
/// (`ending_before`). Read again while a delivery in flight changes the list.
fn status_filters_agree(s: &Server, endpoint: &str) {
    let deadline = Instant::now() + Duration::from_secs(30);
    'again: loop {
        let all = list_all(s, "/v1/webhook_deliveries");
        let mut got = Vec::new();
        for status in ["pending", "delivered", "failed"] {
            for mine in [false, true] {
                let path = match mine {
                    false => format!("/v1/webhook_deliveries?status={status}"),
                    true => format!("/v1/webhook_deliveries?status={status}&endpoint={endpoint}"),
                };
                let want: Vec<Value> = all
                    .iter()
                    .filter(|d| d["status"] == status && (!mine || d["endpoint"] == endpoint))
                    .cloned()
                    .collect();
                let mut one_by_one: Vec<Value> = Vec::new();
                loop {
                    let page = match one_by_one.last() {
                        None => s.get_ok(&format!("{path}&limit=1")),
                        Some(last) => {
                            s.get_ok(&format!("{path}&limit=1&starting_after={}", last["id"].as_str().unwrap()))
                        }
                    };
                    one_by_one.extend(page["data"].as_array().unwrap().iter().cloned());
                    if page["has_more"] != true {
                        break;
                    }
                }
                let back = match want.last() {
                    Some(last) => {
                        let page =
                            s.get_ok(&format!("{path}&limit=100&ending_before={}", last["id"].as_str().unwrap()));
                        page["data"].as_array().unwrap().clone()
                    }
                    None => Vec::new(),
                };
                got.push((path.clone(), want.clone(), list_all(s, &path), one_by_one, back));
            }
        }
        if list_all(s, "/v1/webhook_deliveries") != all {
            assert!(Instant::now() < deadline, "the deliveries never stood still");
            std::thread::sleep(Duration::from_millis(50));
            continue 'again;
        }
        for (path, want, whole, one_by_one, back) in got {
            assert_eq!(whole, want, "{path}");
            assert_eq!(one_by_one, want, "{path}, a page of one at a time");
            assert_eq!(back[..], want[..want.len().saturating_sub(1)], "{path}, back from the last");
        }
        return;
    }
}

#[test]
fn three_days_of_failures_disable_an_endpoint_which_keeps_its_queue_until_enabled() {
    let day = 86_400;
    let mut s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    let (cust, _) = setup(&s);
    let rx = Receiver::start();
    *rx.answers.lock().unwrap() = vec![500; 1000];
    let watcher = Receiver::start();
    let (id, _) = endpoint(&s, &rx.url, Some(json!(["loyalty.points.earned"])));
    endpoint(&s, &watcher.url, Some(json!(["webhook_endpoint.disabled"])));
    let pay = |s: &Server| {
        s.ok("/v1/payments", json!({"amount": 1000, "currency": "eur", "customer": cust, "confirm": true}))
    };
    let mine = |s: &Server| -> Vec<Value> {
        list_all(s, &format!("/v1/webhook_deliveries?endpoint={id}")).into_iter().rev().collect()
    };
    let wait_mine = |s: &Server, what: &str, pred: &dyn Fn(&[Value]) -> bool| {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            let d = mine(s);
            if pred(&d) {
                return d;
            }
            assert!(Instant::now() < deadline, "timed out waiting for {what}: {d:?}");
            std::thread::sleep(Duration::from_millis(50));
        }
    };

    // Day 0: the first delivery fails; day 2: it fails again, and a second one fails.
    pay(&s);
    wait_mine(&s, "a failure", &|d| d.len() == 1 && d[0]["attempts"] == 1);
    s.ok("/v1/test/clock", json!({"advance_seconds": 2 * day}));
    pay(&s);
    wait_mine(&s, "day 2's failures", &|d| d.len() == 2 && d[0]["attempts"] == 2 && d[1]["attempts"] == 1);
    assert_eq!(s.get_ok(&format!("/v1/webhook_endpoints/{id}"))["status"], "enabled");
    // Just past day 3: the first gives up, and the endpoint is disabled.
    s.ok("/v1/test/clock", json!({"advance_seconds": day + 1}));
    let d = wait_mine(&s, "the first to give up", &|d| d[0]["status"] == "failed" && d[1]["attempts"] == 2);
    let (first, second) = (d[0]["id"].as_str().unwrap().to_string(), d[1]["id"].as_str().unwrap().to_string());
    assert_eq!(d[1]["status"], "pending", "the second is still queued");
    let ep = s.get_ok(&format!("/v1/webhook_endpoints/{id}"));
    assert_eq!(ep["status"], "disabled");
    let events = s.get_ok("/v1/events?type=webhook_endpoint.disabled")["data"].as_array().unwrap().clone();
    assert_eq!(events.len(), 1, "{events:?}");
    assert_eq!(
        (events[0]["data"]["id"].as_str(), events[0]["data"]["status"].as_str()),
        (Some(id.as_str()), Some("disabled"))
    );
    assert!(events[0]["data"].get("secret").is_none(), "an event never shows the secret");
    let told = watcher.wait_for("webhook_endpoint.disabled", |g| !g.is_empty());
    assert_eq!(told[0].json()["data"]["id"], id.as_str());
    // One failed, one pending and the watcher's delivered: each status filter agrees.
    status_filters_agree(&s, &id);
    assert_eq!(s.get("/v1/webhook_deliveries?status=paused").status, 400);

    // Disabled: no new deliveries, the queued one waits untouched, a retry is a 409.
    pay(&s);
    s.ok("/v1/test/clock", json!({"advance_seconds": 3600}));
    std::thread::sleep(Duration::from_millis(600));
    let d = mine(&s);
    assert_eq!(d.len(), 2, "no delivery is queued for a disabled endpoint");
    assert_eq!((d[1]["status"].as_str(), d[1]["attempts"].as_i64()), (Some("pending"), Some(2)));
    let r = s.post(&format!("/v1/webhook_deliveries/{first}/retry"), json!({}));
    assert_eq!((r.status, r.body["error"]["code"].as_str()), (409, Some("webhook_endpoint_disabled")));

    // Durable: a restart keeps all of it.
    s.restart_with(&[("LEDGER_TEST_CLOCK", &(3 * day + 3602).to_string())]);
    assert_eq!(s.get_ok(&format!("/v1/webhook_endpoints/{id}"))["status"], "disabled");
    assert_eq!(s.get_ok(&format!("/v1/webhook_deliveries/{second}"))["status"], "pending");
    status_filters_agree(&s, &id);

    // Bad updates change nothing.
    for bad in [json!({"status": "paused"}), json!({"status": true}), json!({"url": "http://x/"})] {
        let r = s.post(&format!("/v1/webhook_endpoints/{id}"), bad.clone());
        assert_eq!((r.status, r.body["error"]["type"].as_str()), (400, Some("invalid_request_error")), "{bad}");
    }
    assert_eq!(s.post("/v1/webhook_endpoints/we_nope", json!({"status": "enabled"})).status, 404);
    assert_eq!(s.post("/v1/webhook_deliveries/whd_nope/retry", json!({})).status, 404);
    assert_eq!(s.get("/v1/webhook_deliveries/whd_nope").status, 404);
    assert_eq!(s.get_ok(&format!("/v1/webhook_endpoints/{id}"))["status"], "disabled");

    // Enabled again, with the receiver fixed: the queued delivery goes out at once.
    rx.answers.lock().unwrap().clear();
    let on = s.ok(&format!("/v1/webhook_endpoints/{id}"), json!({"status": "enabled"}));
    assert_eq!(on["status"], "enabled");
    rx.wait_for("the queued delivery", |g| g.iter().filter(|g| g.json()["id"] == d[1]["event"]).count() >= 1);
    let d = wait_mine(&s, "the queued delivery delivered", &|d| d[1]["status"] == "delivered");
    assert_eq!((d[0]["status"].as_str(), d[1]["attempts"].as_i64()), (Some("failed"), Some(3)));

    // A retry delivers the failed one now.
    let retried = s.ok(&format!("/v1/webhook_deliveries/{first}/retry"), json!({}));
    assert_eq!((retried["id"].as_str(), retried["status"].as_str()), (Some(first.as_str()), Some("pending")));
    let one = |s: &Server| s.get_ok(&format!("/v1/webhook_deliveries/{first}"));
    let deadline = Instant::now() + Duration::from_secs(30);
    while one(&s)["status"] != "delivered" {
        assert!(Instant::now() < deadline, "the retry was not delivered: {}", one(&s));
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(one(&s)["last_http_status"], 200);
    // The failed one moved to delivered through pending.
    status_filters_agree(&s, &id);
    // And a delivered one may be sent again too.
    let again = s.ok(&format!("/v1/webhook_deliveries/{second}/retry"), json!({}));
    assert_eq!(again["status"], "pending");
    let count = |g: &[Got]| g.iter().filter(|g| g.json()["id"] == d[1]["event"]).count();
    rx.wait_for("the delivered one again", |g| count(g) >= 2);
}

#[test]
fn an_attempt_connects_to_the_address_it_checked_not_to_a_second_resolution() {
    // `hooks.example` resolves only through the server's own resolver (the
    // test map): a delivery arrives only if the request goes to the address
    // that resolver answered and the check passed, never to a second lookup.
    let rx = Receiver::start();
    let port = rx.url.trim_start_matches("http://127.0.0.1:").split('/').next().unwrap().to_string();
    let s = Server::start_with(&[("LEDGER_TEST_HOSTS", "hooks.example=127.0.0.1")]);
    let (cust, _) = setup(&s);
    endpoint(&s, &format!("http://hooks.example:{port}/hooks"), Some(json!(["loyalty.points.earned"])));
    s.ok("/v1/payments", json!({"amount": 4200, "currency": "eur", "customer": cust, "confirm": true}));
    let got = rx.wait_for("a delivery by name", |g| !g.is_empty());
    assert_eq!(got[0].headers.get("host").map(String::as_str), Some(format!("hooks.example:{port}").as_str()));
}
