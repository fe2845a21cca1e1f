//! Bad input through the real server (docs/reliability.md, invariant 9): every endpoint's
//! body built from arbitrary JSON (random nesting and types, numbers no integer
//! holds, unicode and control characters, long strings, nulls, unknown and
//! repeated keys, valid-looking and real ids), arbitrary ids in paths and
//! arbitrary list query strings. The answer is always a 2xx or a 4xx: never a
//! 500, a 503 or a dropped connection. Afterwards the ledger invariants hold
//! and a kill -9 and restart gives back exactly the same objects.
//!
//! Bounded for CI: `CASES_DEFAULT` rounds over every endpoint; more with
//! `LEDGER_FUZZ_CASES`, another seed with `LEDGER_FUZZ_SEED` (common/fuzz.rs).

// `*pick(..)` stays: without the `*`, `T` is inferred as `str` and the call does not compile.
#![allow(clippy::explicit_auto_deref)]

mod common;

use std::collections::HashMap;

use common::fuzz::{self, any_value, id_like, number, pct, pick, quote, string};
use common::{assert_ledger_consistent, list_all, Server, SECRET_KEY};
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::{json, Value};

/// Rounds over every endpoint by default.
const CASES_DEFAULT: usize = 200;
/// Known ids kept per kind (the pool new objects join).
const POOL_MAX: usize = 64;
/// Longest random string put into a URL path.
const PATH_CHARS_MAX: usize = 3000;

/// What a body field holds when it is well-formed.
#[derive(Clone, Copy)]
enum F {
    Amount,
    Currency,
    /// An id of this prefix.
    Id(&'static str),
    /// An array of ids of this prefix.
    Ids(&'static str),
    Metadata,
    Bool,
    Int,
    Text,
    Email,
    RewardId,
    Clawback,
    Discount,
    Ttl,
    /// A webhook URL: only ever on 127.0.0.1 (a closed port), or invalid.
    Url,
    /// `enabled_events`.
    Events,
    /// A webhook endpoint's `status`.
    EndpointStatus,
    /// A secret roll's `expire_in_seconds`.
    RollExpire,
}

/// `(path, fields)` of every POST route; `{cust_}` etc. in a path is an id of that kind.
const POSTS: &[(&str, &[(&str, F)])] = &[
    ("/v1/customers", &[("email", F::Email), ("name", F::Text), ("metadata", F::Metadata)]),
    ("/v1/customers/{cust_}", &[("email", F::Email), ("name", F::Text), ("metadata", F::Metadata)]),
    ("/v1/loyalty/accounts", &[("customer", F::Id("cust_")), ("metadata", F::Metadata)]),
    ("/v1/loyalty/accounts/{loy_}", &[("customer", F::Id("cust_")), ("metadata", F::Metadata)]),
    ("/v1/loyalty/program", &[("clawback", F::Clawback), ("redemption_ttl_seconds", F::Ttl)]),
    (
        "/v1/loyalty/earning_rules",
        &[("currency", F::Currency), ("points", F::Int), ("per_amount", F::Amount), ("min_amount", F::Amount)],
    ),
    (
        "/v1/loyalty/earning_rules/{erl_}",
        &[("active", F::Bool), ("points", F::Int), ("per_amount", F::Amount), ("min_amount", F::Amount)],
    ),
    ("/v1/loyalty/rewards", &[("id", F::RewardId), ("name", F::Text), ("points", F::Int), ("discount", F::Discount)]),
    ("/v1/loyalty/rewards/{rwd_}", &[("active", F::Bool), ("name", F::Text)]),
    (
        "/v1/payments",
        &[
            ("amount", F::Amount),
            ("currency", F::Currency),
            ("customer", F::Id("cust_")),
            ("metadata", F::Metadata),
            ("redemptions", F::Ids("rdm_")),
            ("confirm", F::Bool),
        ],
    ),
    ("/v1/payments/{pay_}/complete", &[]),
    ("/v1/payments/{pay_}/fail", &[]),
    ("/v1/loyalty/awards", &[("payment", F::Id("pay_")), ("account", F::Id("loy_"))]),
    ("/v1/refunds", &[("payment", F::Id("pay_")), ("amount", F::Amount)]),
    ("/v1/loyalty/redemptions", &[("account", F::Id("loy_")), ("reward", F::Id("rwd_"))]),
    ("/v1/loyalty/redemptions/{rdm_}/cancel", &[]),
    ("/v1/webhook_endpoints", &[("url", F::Url), ("enabled_events", F::Events)]),
    ("/v1/webhook_endpoints/{we_}", &[("status", F::EndpointStatus)]),
    ("/v1/webhook_endpoints/{we_}/roll_secret", &[("expire_in_seconds", F::RollExpire)]),
    ("/v1/webhook_deliveries/{whd_}/retry", &[]),
    ("/v1/admin/snapshot", &[]),
];

/// `(path, filters)` of every list route.
const LISTS: &[(&str, &[&str])] = &[
    ("/v1/customers", &["email"]),
    ("/v1/loyalty/accounts", &["customer"]),
    ("/v1/loyalty/earning_rules", &["currency", "active"]),
    ("/v1/payments", &["customer", "status"]),
    ("/v1/refunds", &["payment"]),
    ("/v1/loyalty/rewards", &["active"]),
    ("/v1/loyalty/redemptions", &["account", "status", "payment"]),
    ("/v1/loyalty/transactions", &["account", "type", "payment"]),
    ("/v1/events", &["type"]),
    ("/v1/webhook_endpoints", &[]),
    ("/v1/webhook_deliveries", &["endpoint", "event", "status"]),
];

/// Lists whose content changes on its own (delivery attempts): not compared across a restart.
const LISTS_THAT_MOVE: &[&str] = &["/v1/webhook_deliveries"];

/// Every GET-one route, by the id prefix it serves.
const GETS: &[(&str, &str)] = &[
    ("/v1/customers/", "cust_"),
    ("/v1/loyalty/accounts/", "loy_"),
    ("/v1/payments/", "pay_"),
    ("/v1/refunds/", "re_"),
    ("/v1/loyalty/rewards/", "rwd_"),
    ("/v1/loyalty/redemptions/", "rdm_"),
    ("/v1/loyalty/transactions/", "ptx_"),
    ("/v1/loyalty/earning_rules/", "erl_"),
    ("/v1/events/", "evt_"),
    ("/v1/webhook_endpoints/", "we_"),
    ("/v1/webhook_deliveries/", "whd_"),
];

/// A server with objects of every kind, and the ids known so far.
struct World {
    s: Server,
    /// Answers seen per route template and status (printed, to see what the fuzz reached).
    seen: std::collections::BTreeMap<(String, u16), usize>,
    ids: HashMap<&'static str, Vec<String>>,
    all: Vec<String>,
}

const PREFIXES: &[&str] = &["cust_", "loy_", "pay_", "re_", "ptx_", "rdm_", "rwd_", "erl_", "evt_", "we_", "whd_"];

impl World {
    fn new() -> World {
        let s = Server::start();
        let mut w = World { s, seen: Default::default(), ids: HashMap::new(), all: Vec::new() };
        let rule = w.s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
        w.learn(&rule);
        let reward = w.s.ok(
            "/v1/loyalty/rewards",
            json!({"id": "rwd_fuzz", "name": "fuzz", "points": 5, "discount": {"amount": 100, "currency": "eur"}}),
        );
        w.learn(&reward);
        for i in 0..4 {
            let c = w.s.ok("/v1/customers", json!({"name": format!("c{i}")}));
            w.learn(&c);
            let a = w.s.ok("/v1/loyalty/accounts", json!({"customer": c["id"]}));
            w.learn(&a);
            let p = w
                .s
                .ok("/v1/payments", json!({"amount": 5000, "currency": "eur", "customer": c["id"], "confirm": true}));
            w.learn(&p);
            w.learn(&w.s.get_ok(&format!("/v1/loyalty/transactions/{}", p["award"].as_str().unwrap())));
            let pending = w.s.ok("/v1/payments", json!({"amount": 700, "currency": "eur", "customer": c["id"]}));
            w.learn(&pending);
            let r = w.s.ok("/v1/loyalty/redemptions", json!({"account": a["id"], "reward": "rwd_fuzz"}));
            w.learn(&r);
            let refund = w.s.ok("/v1/refunds", json!({"payment": p["id"], "amount": 100}));
            w.learn(&refund);
        }
        let hook = w.s.ok("/v1/webhook_endpoints", json!({"url": "http://127.0.0.1:9/hook"}));
        w.learn(&hook);
        for e in w.s.get_ok("/v1/events?limit=20")["data"].as_array().unwrap().clone() {
            w.learn(&e);
        }
        w
    }

    /// Remembers the id of an object the server answered with.
    fn learn(&mut self, body: &Value) {
        let Some(id) = body["id"].as_str() else { return };
        let Some(prefix) = PREFIXES.iter().find(|p| id.starts_with(**p)) else { return };
        let pool = self.ids.entry(prefix).or_default();
        if pool.len() < POOL_MAX && !pool.iter().any(|x| x == id) {
            pool.push(id.to_string());
            self.all.push(id.to_string());
        }
    }

    /// A known id of kind `prefix` (a made-up one if none is known).
    fn real_id(&self, rng: &mut StdRng, prefix: &str) -> String {
        match self.ids.get(prefix) {
            Some(pool) if !pool.is_empty() => pick(rng, pool).clone(),
            _ => id_like(rng),
        }
    }

    /// An id for a `prefix` slot: usually a real one, sometimes another kind's,
    /// a made-up one or junk.
    fn id(&self, rng: &mut StdRng, prefix: &str) -> String {
        match rng.gen_range(0..10) {
            0..=5 => self.real_id(rng, prefix),
            6 => pick(rng, &self.all).clone(),
            7 | 8 => id_like(rng),
            _ => string(rng, &self.all),
        }
    }

    /// A well-formed value of `f`: valid about three times in four, else just
    /// past a limit.
    fn good(&self, rng: &mut StdRng, f: F, force_valid: bool) -> String {
        let valid = force_valid || rng.gen_bool(0.75);
        match f {
            F::Amount if valid => pick(rng, &["1", "99", "100", "250", "4200", "99999999999"]).to_string(),
            F::Amount => pick(rng, &["0", "-5", "100000000000"]).to_string(),
            F::Currency if valid => quote(*pick(rng, &["eur", "eur", "eur", "usd", "jpy"])),
            F::Currency => quote(*pick(rng, &["EUR", "eu", "euro", ""])),
            F::Id(p) if force_valid => quote(&self.real_id(rng, p)),
            F::Id(p) => quote(&self.id(rng, p)),
            F::Ids(p) => {
                let n = rng.gen_range(0..3);
                let ids: Vec<String> =
                    (0..n).map(|_| quote(&if force_valid { self.real_id(rng, p) } else { self.id(rng, p) })).collect();
                format!("[{}]", ids.join(","))
            }
            F::Metadata => {
                let n = if valid { rng.gen_range(0..4) } else { *pick(rng, &[50usize, 51]) };
                let mut entries: Vec<String> = (0..n)
                    .map(|i| {
                        let key = if rng.gen_bool(0.8) { format!("k{i}") } else { string(rng, &[]) };
                        let value = if rng.gen_bool(0.8) { format!("v{i}") } else { string(rng, &self.all) };
                        format!("{}:{}", quote(&key), quote(&value))
                    })
                    .collect();
                if rng.gen_bool(0.3) {
                    entries.push(format!("\"loyalty_account\":{}", quote(&self.id(rng, "loy_"))));
                }
                format!("{{{}}}", entries.join(","))
            }
            F::Bool => pick(rng, &["true", "false"]).to_string(),
            F::Int if valid => pick(rng, &["1", "2", "5", "100", "1000000"]).to_string(),
            F::Int => number(rng),
            F::Text if valid => quote(*pick(rng, &["Ann", "x", "5 off", "\u{1f600} ünï"])),
            F::Text => quote(&string(rng, &self.all)),
            F::Email if valid => quote(*pick(rng, &["a@b.c", "x@y", "ünï@cödé.de"])),
            F::Email => quote(*pick(rng, &["@b", "a@", "a b@c.d", ""])),
            F::RewardId => {
                let len = if valid { *pick(rng, &[1usize, 5, 60]) } else { 61 };
                let chars: &[char] = if valid { &['a', 'z', '0', '_'] } else { &['a', 'Q', '-'] };
                let tail: String = (0..len).map(|_| *pick(rng, chars)).collect();
                quote(&format!("rwd_{tail}"))
            }
            F::Clawback => format!("{{\"allow_negative\":{}}}", self.value(rng, F::Bool, force_valid)),
            F::Discount => format!(
                "{{\"amount\":{},\"currency\":{}}}",
                self.value(rng, F::Amount, force_valid),
                self.value(rng, F::Currency, force_valid)
            ),
            // Never a valid TTL under an hour: redemptions must not expire mid-test.
            F::Ttl if valid => pick(rng, &["3600", "86400", "2592000"]).to_string(),
            F::Ttl => pick(rng, &["0", "59", "2592001", "-1"]).to_string(),
            // Port 9 (discard) has no listener here: deliveries fail and retry, locally.
            F::Url if valid => {
                quote(*pick(rng, &["http://127.0.0.1:9/hook", "http://127.0.0.1:9/h?x=1", "http://127.0.0.1:9"]))
            }
            F::Url => quote(*pick(rng, &["https://", "ftp://127.0.0.1/", "http://", "127.0.0.1:9", "http:///x", ""])),
            F::Events if valid => {
                let all = ["*", "payment.completed", "loyalty.points.earned", "loyalty.redemption.canceled"];
                let n = rng.gen_range(1..4);
                let names: Vec<String> = (0..n).map(|_| quote(*pick(rng, &all))).collect();
                format!("[{}]", names.join(","))
            }
            F::Events => pick(rng, &["[]", "[\"nope\"]", "[\"*\",1]", "\"*\""]).to_string(),
            F::EndpointStatus if valid => quote(*pick(rng, &["enabled", "disabled"])),
            F::EndpointStatus => quote(*pick(rng, &["paused", "ENABLED", ""])),
            F::RollExpire if valid => pick(rng, &["0", "60", "86400", "604800"]).to_string(),
            F::RollExpire => pick(rng, &["-1", "604801", "99999999999999"]).to_string(),
        }
    }

    /// A field's value: well-formed more often than not, else anything.
    fn value(&self, rng: &mut StdRng, f: F, force_valid: bool) -> String {
        if force_valid || rng.gen_bool(0.85) {
            self.good(rng, f, force_valid)
        } else {
            any_value(rng, 3, &self.all)
        }
    }

    fn body(&self, rng: &mut StdRng, fields: &[(&str, F)]) -> Vec<u8> {
        match rng.gen_range(0..100) {
            0..=84 => {
                // One body in three is meant to be valid, to get deep into the routes.
                let force_valid = rng.gen_bool(0.33);
                let mut entries: Vec<String> = Vec::new();
                for (name, f) in fields {
                    if rng.gen_bool(0.8) {
                        entries.push(format!("{}:{}", quote(name), self.value(rng, *f, force_valid)));
                    }
                }
                if rng.gen_bool(0.08) {
                    entries.push(format!("{}:{}", quote(&string(rng, &[])), any_value(rng, 2, &self.all)));
                }
                if rng.gen_bool(0.05) && !entries.is_empty() {
                    entries.push(entries[0].clone());
                }
                format!("{{{}}}", entries.join(",")).into_bytes()
            }
            85..=92 => any_value(rng, 4, &self.all).into_bytes(),
            93..=96 => fuzz::broken_json(rng),
            _ => Vec::new(),
        }
    }

    fn path(&self, rng: &mut StdRng, template: &str) -> String {
        let Some(open) = template.find('{') else { return template.to_string() };
        let close = template.find('}').unwrap();
        let mut id = self.id(rng, &template[open + 1..close]);
        if id.chars().count() > PATH_CHARS_MAX {
            id = id.chars().take(PATH_CHARS_MAX).collect();
        }
        format!("{}{}{}", &template[..open], pct(&id), &template[close + 1..])
    }

    /// Sends one request and checks the answer is a 2xx or a 4xx.
    fn send(&mut self, rng: &mut StdRng, route: &str, method: &str, path: &str, body: Option<Vec<u8>>) {
        let auth = format!("Bearer {SECRET_KEY}");
        let mut headers: Vec<(&str, String)> = vec![("Authorization", auth)];
        if method == "POST" && rng.gen_bool(0.2) {
            let len = *pick(rng, &[1usize, 16, 255, 256, 400]);
            let key: String = (0..len).map(|_| rng.gen_range(b'!'..=b'~') as char).collect();
            headers.push(("Idempotency-Key", key));
        }
        let shown = body.as_ref().map(|b| String::from_utf8_lossy(&b[..b.len().min(300)]).into_owned());
        let (status, answer) = match body.as_ref().map(|b| String::from_utf8(b.clone())) {
            Some(Err(_)) => {
                // Not UTF-8: only a raw request can carry it.
                let b = body.as_ref().unwrap();
                let mut req = format!(
                    "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n",
                    b.len()
                );
                for (k, v) in &headers {
                    req.push_str(&format!("{k}: {v}\r\n"));
                }
                req.push_str("\r\n");
                let mut bytes = req.into_bytes();
                bytes.extend_from_slice(b);
                let (status, answer) = fuzz::raw_http(&self.s.base, &bytes)
                    .unwrap_or_else(|e| panic!("{method} {path} with {shown:?}: no answer: {e}"));
                (status, serde_json::from_slice(&answer).unwrap_or(Value::Null))
            }
            text => {
                let text = text.map(Result::unwrap);
                let hs: Vec<(&str, &str)> = headers.iter().map(|(k, v)| (*k, v.as_str())).collect();
                let r = self
                    .s
                    .try_request(method, path, text.as_deref(), &hs)
                    .unwrap_or_else(|e| panic!("{method} {path} with {shown:?}: no answer: {e}"));
                (r.status, r.body)
            }
        };
        assert!(
            (200..300).contains(&status) || (400..500).contains(&status),
            "{method} {path} with {shown:?} answered {status}: {answer}"
        );
        if status == 200 {
            self.learn(&answer);
        }
        let code = answer["error"]["code"].as_str().unwrap_or("");
        *self.seen.entry((format!("{method} {route} {code}"), status)).or_default() += 1;
    }

    /// Every list of the API, for comparing before and after a restart.
    fn everything(&self) -> Vec<Value> {
        let mut out: Vec<Value> = LISTS
            .iter()
            .filter(|(path, _)| !LISTS_THAT_MOVE.contains(path))
            .map(|(path, _)| Value::Array(list_all(&self.s, path)))
            .collect();
        out.push(self.s.get_ok("/v1/loyalty/program"));
        for c in self.ids.get("cust_").into_iter().flatten() {
            out.push(self.s.get(&format!("/v1/customers/{c}")).body);
        }
        out
    }
}

/// The state survives a kill -9 exactly, and still adds up.
fn check_after(w: &mut World) {
    for ((route, status), n) in &w.seen {
        eprintln!("{n:6} x {status} {route}");
    }
    assert_eq!(w.s.request("GET", "/healthz", None, &[]).status, 200);
    assert_ledger_consistent(&w.s);
    let before = w.everything();
    w.s.restart();
    assert_eq!(w.everything(), before, "the state after a restart differs");
}

#[test]
fn arbitrary_bodies_on_every_post_route_never_500() {
    let mut w = World::new();
    let mut created = 0usize;
    fuzz::run_cases("POST bodies", fuzz::cases(CASES_DEFAULT), |rng, _| {
        for (template, fields) in POSTS {
            let path = w.path(rng, template);
            let body = w.body(rng, fields);
            let before = w.all.len();
            w.send(rng, template, "POST", &path, Some(body));
            created += w.all.len() - before;
        }
    });
    assert!(created > 0, "some fuzzed requests were valid and created objects");
    check_after(&mut w);
}

#[test]
fn arbitrary_ids_and_list_queries_never_500() {
    let mut w = World::new();
    const KEYS: &[&str] = &[
        "limit",
        "starting_after",
        "ending_before",
        "created",
        "created[gte]",
        "created[gt]",
        "created[lte]",
        "created[lt]",
        "customer",
        "account",
        "payment",
        "status",
        "type",
        "active",
        "currency",
        "created[]",
        "limit[]",
        "",
    ];
    fuzz::run_cases("GET", fuzz::cases(CASES_DEFAULT), |rng, _| {
        for (path, filters) in LISTS {
            let n = rng.gen_range(0..5);
            let mut pairs: Vec<String> = Vec::new();
            for _ in 0..n {
                let own = !filters.is_empty() && rng.gen_bool(0.5);
                let key = if own { pick(rng, filters).to_string() } else { pick(rng, KEYS).to_string() };
                let value = match rng.gen_range(0..8) {
                    0 | 1 => number(rng),
                    2 => pick(rng, &["true", "false", "pending", "completed", "earn", "eur", ""]).to_string(),
                    3 | 4 => {
                        let prefix = *pick(rng, PREFIXES);
                        w.id(rng, prefix)
                    }
                    5 => "%zz%".into(),
                    _ => string(rng, &w.all).chars().take(PATH_CHARS_MAX).collect(),
                };
                pairs.push(match rng.gen_range(0..10) {
                    0 => pct(&key),
                    1 => format!("{}=", pct(&key)),
                    2 if value == "%zz%" => format!("{}={value}", pct(&key)),
                    _ => format!("{}={}", pct(&key), pct(&value)),
                });
            }
            let sep = *pick(rng, &["&", "&", "&&", ";"]);
            w.send(rng, path, "GET", &format!("{path}?{}", pairs.join(sep)), None);
        }
        for (path, prefix) in GETS {
            let prefix = if rng.gen_bool(0.8) { *prefix } else { *pick(rng, PREFIXES) };
            let id = w.id(rng, prefix);
            let id: String = id.chars().take(PATH_CHARS_MAX).collect();
            w.send(rng, path, "GET", &format!("{path}{}", pct(&id)), None);
        }
        let id = w.id(rng, "we_");
        w.send(rng, "/v1/webhook_endpoints/{we_}", "DELETE", &format!("/v1/webhook_endpoints/{}", pct(&id)), None);
    });
    check_after(&mut w);
}
