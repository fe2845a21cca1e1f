//! The crash harness (DESIGN.md "Reliability tests: Crash"; invariants 1-4):
//! the server as a child process, concurrent clients doing a mix of earn
//! (payments with `confirm:true`), redeem, cancel, checkout with a redemption
//! and refund on a few members (two clients per member, so cancel and checkout
//! race on the same redemptions), `kill -9` at a random moment while requests
//! are in flight, restart, and check:
//!
//! - every acknowledged mutation is there, as it was answered;
//! - no payment earned twice, clawbacks never above what it earned, and
//!   `balance == sum(points)` for every account (`assert_ledger_consistent`);
//! - every redemption was spent exactly once and released at most once (only
//!   if canceled), and none is both canceled and consumed;
//! - an earn whose answer was lost in the crash, retried with its
//!   Idempotency-Key after the restart, exists exactly once.
//!
//! Cycles: `LEDGER_CRASH_CYCLES` (default 3; hundreds by hand), seed:
//! `LEDGER_CRASH_SEED`. tests/durability.rs keeps the simpler customer and
//! payment versions; this one drives the whole ledger.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{assert_ledger_consistent, list_all, Server};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// Members, and clients per member.
const MEMBERS: usize = 3;
const CLIENTS_PER_MEMBER: usize = 2;
/// The kill comes this long after the load starts, at random in the range.
const KILL_AFTER_MS: std::ops::Range<u64> = 150..1200;
/// A client stops by itself after this long, killed or not.
const CLIENT_DEADLINE: Duration = Duration::from_secs(10);
const REWARD: &str = "rwd_crash";
const REWARD_POINTS: i64 = 10;

fn cycles() -> usize {
    std::env::var("LEDGER_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

fn seed() -> u64 {
    std::env::var("LEDGER_CRASH_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0xc0ffee)
}

struct Member {
    customer: String,
    account: String,
    /// Redemptions of this member acknowledged as created (perhaps since used).
    redemptions: Mutex<Vec<String>>,
    /// Payments of this member acknowledged as completed.
    payments: Mutex<Vec<String>>,
}

/// Everything the server acknowledged, across cycles.
#[derive(Default)]
struct Acks {
    payments: HashMap<String, Value>,
    refunds: HashMap<String, Value>,
    redemptions: HashMap<String, Value>,
    canceled: HashSet<String>,
    /// Redemption -> the payment acknowledged as consuming it.
    consumed: HashMap<String, String>,
    /// Earns whose answer was lost in a crash: (idempotency key, body).
    unanswered_earns: Vec<(String, Value)>,
    /// Ids acknowledged (or canceled, or consumed) since the last check.
    fresh: HashSet<String>,
}

/// Each check reads back everything acknowledged since the last one, and a
/// rotating 1/`RECHECK_SHARDS` of the older objects, so long runs stay linear.
const RECHECK_SHARDS: usize = 8;

impl Acks {
    /// Whether the check after `cycle` reads `id` back.
    fn due(&self, id: &str, cycle: usize, all: bool) -> bool {
        all || self.fresh.contains(id)
            || id.bytes().map(usize::from).sum::<usize>() % RECHECK_SHARDS == cycle % RECHECK_SHARDS
    }
}

/// What the clients of one cycle did.
#[derive(Default)]
struct Tally {
    acked: usize,
    refused: HashMap<String, usize>,
    lost: usize,
}

fn client(s: &Server, m: &Member, rng: &mut StdRng, acks: &Mutex<Acks>, tally: &Mutex<Tally>, tag: &str) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    let mut i = 0u64;
    while Instant::now() < deadline {
        i += 1;
        let op = rng.gen_range(0..100);
        let (path, body, key) = match op {
            0..=34 => {
                let key = format!("earn-{tag}-{i}");
                let amount = rng.gen_range(100..20_000);
                let body = json!({"amount": amount, "currency": "eur", "customer": m.customer, "confirm": true,
                                  "metadata": {"op": key}});
                ("/v1/payments".to_string(), body, Some(key))
            }
            35..=54 => ("/v1/loyalty/redemptions".into(), json!({"account": m.account, "reward": REWARD}), None),
            55..=69 => {
                let Some(r) = pick(rng, &m.redemptions) else { continue };
                (format!("/v1/loyalty/redemptions/{r}/cancel"), json!({}), None)
            }
            70..=84 => {
                let Some(r) = pick(rng, &m.redemptions) else { continue };
                let body = json!({"amount": rng.gen_range(500..5000), "currency": "eur", "customer": m.customer,
                                  "redemptions": [r], "confirm": true});
                ("/v1/payments".into(), body, None)
            }
            _ => {
                let Some(p) = pick(rng, &m.payments) else { continue };
                let body = if rng.gen_bool(0.3) {
                    json!({"payment": p})
                } else {
                    json!({"payment": p, "amount": rng.gen_range(1..3000)})
                };
                ("/v1/refunds".into(), body, None)
            }
        };
        let result = match &key {
            Some(k) => s.try_request(
                "POST",
                &path,
                Some(&body.to_string()),
                &[("Authorization", &format!("Bearer {}", common::SECRET_KEY)), ("Idempotency-Key", k)],
            ),
            None => s.try_post(&path, body.clone()),
        };
        let r = match result {
            Ok(r) => r,
            Err(_) => {
                // Killed mid-request: the outcome is unknown. Stop this client.
                tally.lock().unwrap().lost += 1;
                if let Some(k) = key {
                    acks.lock().unwrap().unanswered_earns.push((k, body));
                }
                return;
            }
        };
        if r.status != 200 {
            assert!((400..500).contains(&r.status), "POST {path} {body}: {} {}", r.status, r.body);
            *tally.lock().unwrap().refused.entry(r.code().to_string()).or_default() += 1;
            continue;
        }
        tally.lock().unwrap().acked += 1;
        let id = r.id();
        let mut a = acks.lock().unwrap();
        a.fresh.insert(id.clone());
        match path.as_str() {
            "/v1/payments" => {
                assert_eq!(r.body["status"], "completed");
                for rdm in r.body["redemptions"].as_array().unwrap() {
                    let rdm = rdm.as_str().unwrap().to_string();
                    assert!(!a.canceled.contains(&rdm), "{rdm} acknowledged as canceled and then consumed by {id}");
                    assert!(a.consumed.insert(rdm.clone(), id.clone()).is_none(), "{rdm} consumed twice");
                    a.fresh.insert(rdm);
                }
                a.payments.insert(id.clone(), r.body);
                if m.payments.lock().unwrap().len() < 200 {
                    m.payments.lock().unwrap().push(id);
                }
            }
            "/v1/loyalty/redemptions" => {
                a.redemptions.insert(id.clone(), r.body);
                m.redemptions.lock().unwrap().push(id);
            }
            "/v1/refunds" => {
                a.refunds.insert(id, r.body);
            }
            _ => {
                assert!(!a.consumed.contains_key(&id), "{id} acknowledged as consumed and then canceled");
                assert!(a.canceled.insert(id.clone()), "{id} canceled twice");
                m.redemptions.lock().unwrap().retain(|x| *x != id);
            }
        }
    }
}

/// A random recent element of a shared pool.
fn pick(rng: &mut StdRng, pool: &Mutex<Vec<String>>) -> Option<String> {
    let pool = pool.lock().unwrap();
    if pool.is_empty() {
        return None;
    }
    let from = pool.len().saturating_sub(20);
    Some(pool[rng.gen_range(from..pool.len())].clone())
}

/// Every acknowledged mutation is there as answered (all of them with `all`,
/// else those `Acks::due`), and the ledger adds up.
fn verify(s: &Server, acks: &mut Acks, cycle: usize, all: bool) {
    let mut refunded: HashMap<&str, i64> = HashMap::new();
    for r in acks.refunds.values() {
        *refunded.entry(r["payment"].as_str().unwrap()).or_default() += r["amount"].as_i64().unwrap();
    }
    for (id, r) in acks.refunds.iter().filter(|(id, _)| acks.due(id, cycle, all)) {
        assert_eq!(&s.get_ok(&format!("/v1/refunds/{id}")), r, "cycle {cycle}: acknowledged refund {id}");
        if let Some(ptx) = r["clawback"].as_str() {
            let tx = s.get_ok(&format!("/v1/loyalty/transactions/{ptx}"));
            assert_eq!(tx["points"].as_i64().unwrap(), -r["points_clawed_back"].as_i64().unwrap());
        }
    }
    for (id, p) in acks.payments.iter().filter(|(id, _)| acks.due(id, cycle, all)) {
        let got = s.get_ok(&format!("/v1/payments/{id}"));
        for field in ["amount", "amount_discount", "amount_charged", "currency", "status", "customer", "redemptions"] {
            assert_eq!(got[field], p[field], "cycle {cycle}: payment {id}: {field}");
        }
        for field in ["loyalty_account", "points_earned", "award", "created", "completed_at"] {
            assert_eq!(got[field], p[field], "cycle {cycle}: payment {id}: {field}");
        }
        let at_least = refunded.get(id.as_str()).copied().unwrap_or(0);
        let got_refunded = got["amount_refunded"].as_i64().unwrap();
        assert!(got_refunded >= at_least, "cycle {cycle}: payment {id} lost acknowledged refunds");
        assert!(got_refunded <= got["amount_charged"].as_i64().unwrap(), "cycle {cycle}: {id} over-refunded");
        if let Some(award) = p["award"].as_str() {
            let tx = s.get_ok(&format!("/v1/loyalty/transactions/{award}"));
            assert_eq!(tx["points"], p["points_earned"], "cycle {cycle}: award of {id}");
        }
    }
    for (id, r) in acks.redemptions.iter().filter(|(id, _)| acks.due(id, cycle, all)) {
        let got = s.get_ok(&format!("/v1/loyalty/redemptions/{id}"));
        for field in ["account", "reward", "points", "created", "expires_at"] {
            assert_eq!(got[field], r[field], "cycle {cycle}: redemption {id}: {field}");
        }
        if acks.canceled.contains(id) {
            assert_eq!(got["status"], "canceled", "cycle {cycle}: acknowledged cancel of {id}");
        }
        if let Some(p) = acks.consumed.get(id) {
            assert_eq!((got["status"].as_str(), got["payment"].as_str()), (Some("consumed"), Some(p.as_str())));
        }
    }
    // Every redemption (acknowledged or not) spent once, released at most once.
    let mut redeems: HashMap<String, usize> = HashMap::new();
    let mut releases: HashMap<String, usize> = HashMap::new();
    for tx in list_all(s, "/v1/loyalty/transactions") {
        let Some(rdm) = tx["source"]["redemption"].as_str() else { continue };
        let counts = match tx["type"].as_str().unwrap() {
            "redeem" => &mut redeems,
            "release" => &mut releases,
            other => panic!("a {other} transaction names redemption {rdm}"),
        };
        *counts.entry(rdm.to_string()).or_default() += 1;
    }
    for r in list_all(s, "/v1/loyalty/redemptions") {
        let id = r["id"].as_str().unwrap();
        assert_eq!(redeems.get(id), Some(&1), "cycle {cycle}: {id} spent once");
        let released = releases.get(id).copied().unwrap_or(0);
        let expected = usize::from(matches!(r["status"].as_str(), Some("canceled" | "expired")));
        assert_eq!(released, expected, "cycle {cycle}: {id} is {} and was released {released} times", r["status"]);
    }
    assert_ledger_consistent(s);
    acks.fresh.clear();
}

/// Earns whose answer a crash swallowed, retried with the same key: one payment each.
fn retry_unanswered(s: &Server, acks: &mut Acks, cycle: usize) {
    let unanswered = std::mem::take(&mut acks.unanswered_earns);
    for (key, body) in &unanswered {
        let r = s.post_idem("/v1/payments", body.clone(), key);
        assert_eq!(r.status, 200, "cycle {cycle}: retry of {key}: {}", r.body);
        acks.fresh.insert(r.id());
        acks.payments.insert(r.id(), r.body);
    }
    if unanswered.is_empty() {
        return;
    }
    let mut per_key: HashMap<String, usize> = HashMap::new();
    for p in list_all(s, "/v1/payments") {
        if let Some(k) = p["metadata"]["op"].as_str() {
            *per_key.entry(k.to_string()).or_default() += 1;
        }
    }
    for (key, _) in &unanswered {
        assert_eq!(per_key.get(key), Some(&1), "cycle {cycle}: {key} retried after a crash exists exactly once");
    }
}

#[test]
fn kill_9_under_a_mixed_load_keeps_every_acknowledged_mutation_and_the_invariants() {
    let mut s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    s.ok(
        "/v1/loyalty/rewards",
        json!({"id": REWARD, "name": "1 off", "points": REWARD_POINTS, "discount": {"amount": 100, "currency": "eur"}}),
    );
    let members: Vec<Member> = (0..MEMBERS)
        .map(|_| {
            let customer = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
            let account =
                s.ok("/v1/loyalty/accounts", json!({"customer": customer}))["id"].as_str().unwrap().to_string();
            Member { customer, account, redemptions: Mutex::default(), payments: Mutex::default() }
        })
        .collect();
    let mut acks = Acks::default();
    let base = seed();
    let mut total = Tally::default();
    for cycle in 0..cycles() {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(cycle as u64));
        let kill_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let shared = Mutex::new(std::mem::take(&mut acks));
        let tally = Mutex::new(Tally::default());
        std::thread::scope(|scope| {
            for (n, m) in members.iter().enumerate() {
                for c in 0..CLIENTS_PER_MEMBER {
                    let mut rng = StdRng::seed_from_u64(rng.gen());
                    let (s, shared, tally) = (&s, &shared, &tally);
                    scope.spawn(move || client(s, m, &mut rng, shared, tally, &format!("{cycle}-{n}-{c}")));
                }
            }
            std::thread::sleep(kill_after);
            s.kill9();
        });
        acks = shared.into_inner().unwrap();
        let tally = tally.into_inner().unwrap();
        eprintln!(
            "cycle {cycle} (seed {base}): killed after {kill_after:?}; {} acknowledged, {} cut off by the kill, refused {:?}",
            tally.acked, tally.lost, tally.refused
        );
        total.acked += tally.acked;
        total.lost += tally.lost;
        s.restart();
        verify(&s, &mut acks, cycle, false);
        retry_unanswered(&s, &mut acks, cycle);
    }
    assert!(total.acked > 20 * cycles(), "the load did some work: {} acknowledged", total.acked);
    assert!(!acks.canceled.is_empty() && !acks.consumed.is_empty() && !acks.refunds.is_empty(), "every kind of op ran");
    s.restart();
    verify(&s, &mut acks, cycles(), true);
}
