//! The crash harness (invariants 1-4 of docs/reliability.md):
//! the server as a child process, concurrent clients doing a mix of earn
//! (payments with `confirm:true`), redeem, cancel, checkout with a redemption,
//! refund and adjustments (credits, and debits that may go below zero) on a few members (two clients per member, so cancel and checkout
//! race on the same redemptions), the expiry timer racing them (a manual clock
//! moved forward under the load, past the program's redemption TTL), `kill -9`
//! at a random moment while requests are in flight, restart, and check:
//!
//! - every acknowledged mutation is there, as it was answered;
//! - no payment earned twice, clawbacks never above what it earned, each
//!   `balance_after` the running sum, and `balance == sum(points)` for every
//!   account;
//! - every redemption was spent exactly once, released exactly once if
//!   canceled or expired and never otherwise (so none is both canceled and
//!   consumed), and some did expire;
//! - an earn whose answer was lost in the crash, retried with its
//!   Idempotency-Key after the restart, exists exactly once;
//! - every acknowledged adjustment is there as answered; points lots expire
//!   (the program's expiry is one day, and every other restart moves the
//!   clock a day on, so expiries race the load and the checks), and every
//!   lot's `remaining` agrees with the transactions' lot shares.
//!
//! Linear in the cycles: each check reads what the cycle added (the
//! acknowledgements since the last check, the objects and transactions listed
//! newer than the last ones seen, the redemptions still open) plus a random
//! sample of older acknowledgements (`RECHECK_SAMPLE`); every
//! `FULL_CHECK_EVERY` cycles and at the end it reads everything back and
//! rebuilds the books from nothing. Before, every check re-read every
//! acknowledgement, so 68 cycles took 10 minutes.
//!
//! The timer keeps expiring redemptions while the checks read (right after a
//! restart the clock is moved past every open redemption's deadline), so no
//! check relies on two reads agreeing unless it can tell they were taken at
//! one moment: redemptions are read before the transactions (an expiry or
//! cancel writes the status and its release in one record, and a reader sees
//! records whole), an open redemption whose release shows up later is read
//! again, and a balance is compared with the newest transaction only when a
//! listing after it found nothing newer.
//!
//! Every `SNAPSHOT_EVERY` cycles an online snapshot runs during the load
//! (or, when the kill cut it off, after the check), so kills also land in
//! the middle of a snapshot, and restarts load a snapshot and replay the
//! WAL after it (as a long-running server does).
//!
//! Cycles: `LEDGER_CRASH_CYCLES` (default 3; hundreds by hand, in a release
//! build), seed: `LEDGER_CRASH_SEED`. tests/durability.rs keeps the simpler
//! customer and payment versions; this one drives the whole ledger.

mod common;

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{list_all, list_newer, Server};
use rand::rngs::StdRng;
use rand::seq::IteratorRandom;
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
/// The program's redemption TTL: the shortest the API takes.
const REDEMPTION_TTL_SECONDS: i64 = 60;
/// The program's lot expiry, in days: the shortest the API takes.
const EXPIRY_DAYS: i64 = 1;
/// Every this many cycles the restart moves the clock past every lot's expiry.
const EXPIRE_LOTS_EVERY: usize = 2;
/// Under the load the manual clock moves this many seconds ...
const CLOCK_STEP_SECONDS: i64 = 10;
/// ... this often, so redemptions expire while clients cancel and spend them.
const CLOCK_STEP_EVERY: Duration = Duration::from_millis(100);
/// Older acknowledgements of each kind re-read by each check, at random.
const RECHECK_SAMPLE: usize = 20;
/// Every this many cycles (and at the end) the check reads everything back.
const FULL_CHECK_EVERY: usize = 100;
/// Every this many cycles an online snapshot is asked for at a random moment
/// of the load (so some kills land in the middle of one); if the kill cut it
/// off, one is taken once the cycle's check is done. Two kept snapshots let
/// the server delete the WAL before the older one, which keeps each
/// restart's replay short (it was half the time of a 500-cycle run).
const SNAPSHOT_EVERY: usize = 5;
/// Reads of an account's balance and newest transactions before they must
/// agree (only the timer writes during a check, in bursts).
const STABLE_READ_ATTEMPTS: usize = 50;
/// Pause between two such reads that did not agree.
const STABLE_READ_PAUSE: Duration = Duration::from_millis(20);

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
    /// Adjustments acknowledged: their transactions as answered.
    adjustments: HashMap<String, Value>,
    /// Ids acknowledged (or canceled, or consumed) since the last check.
    fresh: HashSet<String>,
}

/// What the clients of one cycle did.
#[derive(Default)]
struct Tally {
    acked: usize,
    /// Online snapshots answered 200.
    snapshots: usize,
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
            70..=77 => {
                let points = if rng.gen_bool(0.5) { rng.gen_range(1..50) } else { -rng.gen_range(1..50) };
                let body = json!({"account": m.account, "points": points, "reason": format!("crash {tag}-{i}"),
                                  "allow_negative": rng.gen_bool(0.3)});
                ("/v1/loyalty/adjustments".into(), body, None)
            }
            78..=84 => {
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
            "/v1/loyalty/adjustments" => {
                a.adjustments.insert(id, r.body);
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

/// Moves the manual clock forward under the load until `stop` (or the
/// kill), adding each step asked for to `advanced`, answered or not (a
/// restart must not start the clock before a time the server reached).
fn clock_mover(s: &Server, stop: &AtomicBool, advanced: &AtomicI64) {
    let deadline = Instant::now() + CLIENT_DEADLINE;
    while !stop.load(Ordering::Acquire) && Instant::now() < deadline {
        std::thread::sleep(CLOCK_STEP_EVERY);
        advanced.fetch_add(CLOCK_STEP_SECONDS, Ordering::AcqRel);
        if s.try_post("/v1/test/clock", json!({"advance_seconds": CLOCK_STEP_SECONDS})).is_err() {
            return;
        }
    }
}

/// Fields of an acknowledged payment that never change after it completed.
const PAYMENT_FIELDS: [&str; 12] = [
    "amount",
    "amount_discount",
    "amount_charged",
    "currency",
    "status",
    "customer",
    "redemptions",
    "loyalty_account",
    "points_earned",
    "award",
    "created",
    "completed_at",
];
/// Fields of an acknowledged redemption that never change.
const REDEMPTION_FIELDS: [&str; 5] = ["account", "reward", "points", "created", "expires_at"];

/// Checks `got` (a payment as read now) against its acknowledgement.
fn check_payment(got: &Value, acked: &Value, refunded: i64, cycle: usize) {
    let id = &acked["id"];
    for field in PAYMENT_FIELDS {
        assert_eq!(got[field], acked[field], "cycle {cycle}: payment {id}: {field}");
    }
    let got_refunded = got["amount_refunded"].as_i64().unwrap();
    assert!(got_refunded >= refunded, "cycle {cycle}: payment {id} lost acknowledged refunds");
    assert!(got_refunded <= got["amount_charged"].as_i64().unwrap(), "cycle {cycle}: {id} over-refunded");
}

/// Checks `got` (a redemption as read now) against what was acknowledged of it.
fn check_redemption(got: &Value, acks: &Acks, cycle: usize) {
    let id = got["id"].as_str().unwrap();
    if let Some(acked) = acks.redemptions.get(id) {
        for field in REDEMPTION_FIELDS {
            assert_eq!(got[field], acked[field], "cycle {cycle}: redemption {id}: {field}");
        }
    }
    if acks.canceled.contains(id) {
        assert_eq!(got["status"], "canceled", "cycle {cycle}: acknowledged cancel of {id}");
    }
    if let Some(p) = acks.consumed.get(id) {
        let got = (got["status"].as_str(), got["payment"].as_str());
        assert_eq!(got, (Some("consumed"), Some(p.as_str())), "cycle {cycle}: acknowledged consumption of {id}");
    }
}

/// Refunded amount per payment, as acknowledged.
fn refunded(acks: &Acks) -> HashMap<&str, i64> {
    let mut refunded: HashMap<&str, i64> = HashMap::new();
    for r in acks.refunds.values() {
        *refunded.entry(r["payment"].as_str().unwrap()).or_default() += r["amount"].as_i64().unwrap();
    }
    refunded
}

/// The ledger as read back so far: what each check adds to (reading only
/// what is newer than it saw), and what a full check rebuilds from nothing.
#[derive(Default)]
struct Books {
    /// Per account, its newest transaction seen: (id, balance_after).
    tails: HashMap<String, (String, i64)>,
    /// Every points transaction seen: its points.
    tx_points: HashMap<String, i64>,
    /// Per payment: points earned, earn rows, points clawed back.
    earned: HashMap<String, i64>,
    earn_rows: HashMap<String, usize>,
    clawed: HashMap<String, i64>,
    /// Per redemption: its redeem and release transactions.
    redeems: HashMap<String, usize>,
    releases: HashMap<String, usize>,
    /// Redemptions last seen pending or attached (they may still expire or be spent).
    open: HashSet<String>,
    /// Every redemption listed, and those seen expired.
    redemptions: HashSet<String>,
    expired: HashSet<String>,
    /// Every payment listed: its `points_earned`.
    payments: HashMap<String, i64>,
    /// Every refund listed.
    refunds: HashSet<String>,
    /// `expire` transactions seen.
    expirations: usize,
    /// Payments listed, by the `metadata.op` key of the earns.
    per_key: HashMap<String, usize>,
    /// Awards of listed payments not yet checked against their transaction:
    /// (transaction, points, payment).
    awards_unchecked: Vec<(String, i64, String)>,
    /// The newest object of each list seen (where the next sync stops).
    newest_redemption: Option<String>,
    newest_payment: Option<String>,
    newest_refund: Option<String>,
}

/// Sets `marker` to the newest of `listed` (newest first), if any.
fn advance(marker: &mut Option<String>, listed: &[Value]) {
    if let Some(newest) = listed.first() {
        *marker = Some(newest["id"].as_str().unwrap().to_string());
    }
}

impl Books {
    /// Reads what changed since the last sync (everything, on empty books),
    /// checks it, and checks what was acknowledged of it (see the module doc
    /// for the order of the reads).
    fn sync(&mut self, s: &Server, acks: &Acks, accounts: &[String], cycle: usize) {
        // 1. Redemptions first: the new ones and those still open.
        let new = list_newer(s, "/v1/loyalty/redemptions", self.newest_redemption.as_deref());
        advance(&mut self.newest_redemption, &new);
        let mut status: HashMap<String, String> = HashMap::new();
        for r in &new {
            let id = r["id"].as_str().unwrap().to_string();
            check_redemption(r, acks, cycle);
            assert!(self.redemptions.insert(id.clone()), "cycle {cycle}: {id} listed twice");
            status.insert(id, r["status"].as_str().unwrap().to_string());
        }
        let open: Vec<String> = self.open.iter().filter(|id| !status.contains_key(*id)).cloned().collect();
        for id in open {
            let got = s.get_ok(&format!("/v1/loyalty/redemptions/{id}"));
            status.insert(id, got["status"].as_str().unwrap().to_string());
        }
        // 2. The new payments and refunds, against their acknowledgements.
        self.sync_payments(s, acks, cycle);
        let refunds = list_newer(s, "/v1/refunds", self.newest_refund.as_deref());
        advance(&mut self.newest_refund, &refunds);
        for r in &refunds {
            let id = r["id"].as_str().unwrap();
            if let Some(acked) = acks.refunds.get(id) {
                assert_eq!(r, acked, "cycle {cycle}: acknowledged refund {id}");
            }
            self.refunds.insert(id.to_string());
        }
        // 3. Then every account's new transactions, until its balance agrees.
        let mut payments_touched = HashSet::new();
        for account in accounts {
            self.sync_account(s, account, cycle, &mut payments_touched);
        }
        for (award, points, payment) in std::mem::take(&mut self.awards_unchecked) {
            assert_eq!(self.tx_points.get(&award), Some(&points), "cycle {cycle}: award {award} of {payment}");
        }
        for r in &refunds {
            if let Some(ptx) = r["clawback"].as_str() {
                let clawed = r["points_clawed_back"].as_i64().map(|p| -p);
                assert_eq!(self.tx_points.get(ptx).copied(), clawed, "cycle {cycle}: clawback {ptx} of {}", r["id"]);
            }
        }
        // 4. Each redemption read in 1 against the transactions read after it.
        for (id, st) in &status {
            assert_eq!(self.redeems.get(id), Some(&1), "cycle {cycle}: {id} ({st}) spent once");
            let released = self.releases.get(id).copied().unwrap_or(0);
            let st = match (st.as_str(), released) {
                // Released after it was read: read again, it must be final now.
                ("pending" | "attached", 1) => {
                    let again = s.get_ok(&format!("/v1/loyalty/redemptions/{id}"));
                    let again = again["status"].as_str().unwrap().to_string();
                    assert!(
                        matches!(again.as_str(), "canceled" | "expired"),
                        "cycle {cycle}: {id} was released once but is {again}"
                    );
                    again
                }
                _ => st.clone(),
            };
            let expected = usize::from(matches!(st.as_str(), "canceled" | "expired"));
            let still_open = matches!(st.as_str(), "pending" | "attached");
            assert!(
                released == expected || still_open && released == 0,
                "cycle {cycle}: {id} is {st:?} and was released {released} times"
            );
            if still_open {
                self.open.insert(id.clone());
            } else {
                self.open.remove(id);
            }
            if st == "expired" {
                self.expired.insert(id.clone());
            }
        }
        for id in self.redeems.keys().chain(self.releases.keys()) {
            assert!(self.redemptions.contains(id), "cycle {cycle}: a transaction names {id}, which is not listed");
        }
        // 5. The payments the new earns and clawbacks name.
        for p in &payments_touched {
            let n = self.earn_rows.get(p).copied().unwrap_or(0);
            assert!(n <= 1, "cycle {cycle}: payment {p} earned {n} times");
            let earned = self.earned.get(p).copied().unwrap_or(0);
            let clawed = self.clawed.get(p).copied().unwrap_or(0);
            assert!(clawed <= earned, "cycle {cycle}: payment {p}: clawed back {clawed} > earned {earned}");
            if n == 1 {
                let listed = self.payments.get(p).unwrap_or_else(|| panic!("cycle {cycle}: {p} earned but not listed"));
                assert_eq!(*listed, earned, "cycle {cycle}: payment {p}: points_earned");
            }
        }
    }

    /// Reads `account`'s transactions newer than its tail, checking each
    /// `balance_after`, until a balance read before a listing that found
    /// nothing newer equals the tail's (then it is the balance of that moment).
    fn sync_account(&mut self, s: &Server, account: &str, cycle: usize, payments_touched: &mut HashSet<String>) {
        for _ in 0..STABLE_READ_ATTEMPTS {
            let balance = s.get_ok(&format!("/v1/loyalty/accounts/{account}"))["balance"].as_i64().unwrap();
            let path = format!("/v1/loyalty/transactions?account={account}");
            let tail = self.tails.get(account).cloned();
            let new = list_newer(s, &path, tail.as_ref().map(|(id, _)| id.as_str()));
            if new.is_empty() {
                let at = tail.map_or(0, |(_, b)| b);
                assert_eq!(balance, at, "cycle {cycle}: account {account}: balance == sum(points)");
                return;
            }
            let mut running = tail.map_or(0, |(_, b)| b);
            for tx in new.iter().rev() {
                let id = tx["id"].as_str().unwrap();
                let points = tx["points"].as_i64().unwrap();
                running += points;
                assert_eq!(
                    tx["balance_after"].as_i64(),
                    Some(running),
                    "cycle {cycle}: {account}: running sum at {id}"
                );
                assert!(self.tx_points.insert(id.to_string(), points).is_none(), "cycle {cycle}: {id} listed twice");
                let payment = tx["source"]["payment"].as_str().map(str::to_string);
                let redemption = tx["source"]["redemption"].as_str().map(str::to_string);
                match tx["type"].as_str().unwrap() {
                    "earn" => {
                        let p = payment.expect("an earn names its payment");
                        *self.earned.entry(p.clone()).or_default() += points;
                        *self.earn_rows.entry(p.clone()).or_default() += 1;
                        payments_touched.insert(p);
                    }
                    "clawback" => {
                        let p = payment.expect("a clawback names its payment");
                        *self.clawed.entry(p.clone()).or_default() -= points;
                        payments_touched.insert(p);
                    }
                    "redeem" => {
                        *self.redeems.entry(redemption.expect("a redeem names its redemption")).or_default() += 1
                    }
                    "release" => {
                        *self.releases.entry(redemption.expect("a release names its redemption")).or_default() += 1
                    }
                    "adjustment" => {
                        assert!(tx["source"]["reason"].is_string(), "cycle {cycle}: an adjustment has its reason")
                    }
                    "expire" => {
                        assert!(tx["source"]["lot"].is_string(), "cycle {cycle}: an expiry names its lot");
                        self.expirations += 1;
                    }
                    other => panic!("cycle {cycle}: a transaction of type {other}"),
                }
            }
            self.tails.insert(account.to_string(), (new[0]["id"].as_str().unwrap().to_string(), running));
            std::thread::sleep(STABLE_READ_PAUSE);
        }
        panic!(
            "cycle {cycle}: account {account}: balance and transactions never agreed in {STABLE_READ_ATTEMPTS} reads"
        );
    }

    /// Lists the payments newer than the last seen, checks them against their
    /// acknowledgements, and counts them by their earn key (their awards are
    /// checked once the transactions are read).
    fn sync_payments(&mut self, s: &Server, acks: &Acks, cycle: usize) {
        let refunded = refunded(acks);
        let new = list_newer(s, "/v1/payments", self.newest_payment.as_deref());
        advance(&mut self.newest_payment, &new);
        for p in &new {
            let id = p["id"].as_str().unwrap();
            if let Some(acked) = acks.payments.get(id) {
                check_payment(p, acked, refunded.get(id).copied().unwrap_or(0), cycle);
            }
            let points_earned = p["points_earned"].as_i64().unwrap();
            self.payments.insert(id.to_string(), points_earned);
            if let Some(award) = p["award"].as_str() {
                self.awards_unchecked.push((award.to_string(), points_earned, id.to_string()));
            }
            if let Some(k) = p["metadata"]["op"].as_str() {
                let n = self.per_key.entry(k.to_string()).or_default();
                *n += 1;
                assert_eq!(*n, 1, "cycle {cycle}: two payments carry the earn key {k}");
            }
        }
    }
}

/// What the lists in `Books::sync` did not cover: every acknowledgement since
/// the last check was listed; acknowledged cancels and consumptions, and the
/// payments of acknowledged refunds, read again; and `RECHECK_SAMPLE` older
/// acknowledgements of each kind read again one by one.
fn verify_acks(s: &Server, acks: &Acks, books: &Books, rng: &mut StdRng, cycle: usize) {
    let refunded = refunded(acks);
    for id in &acks.fresh {
        let listed = books.payments.contains_key(id)
            || books.refunds.contains(id)
            || books.redemptions.contains(id)
            || books.tx_points.contains_key(id);
        assert!(listed, "cycle {cycle}: acknowledged {id} is not listed");
        if acks.canceled.contains(id) || acks.consumed.contains_key(id) {
            check_redemption(&s.get_ok(&format!("/v1/loyalty/redemptions/{id}")), acks, cycle);
        }
        if let Some(r) = acks.refunds.get(id) {
            let p = r["payment"].as_str().unwrap();
            if let Some(acked) = acks.payments.get(p) {
                let got = s.get_ok(&format!("/v1/payments/{p}"));
                check_payment(&got, acked, refunded.get(p).copied().unwrap_or(0), cycle);
            }
        }
    }
    for id in acks.payments.keys().choose_multiple(rng, RECHECK_SAMPLE) {
        let got = s.get_ok(&format!("/v1/payments/{id}"));
        check_payment(&got, &acks.payments[id], refunded.get(id.as_str()).copied().unwrap_or(0), cycle);
    }
    for (id, r) in acks.refunds.iter().choose_multiple(rng, RECHECK_SAMPLE) {
        assert_eq!(&s.get_ok(&format!("/v1/refunds/{id}")), r, "cycle {cycle}: acknowledged refund {id}");
    }
    for id in acks.redemptions.keys().choose_multiple(rng, RECHECK_SAMPLE) {
        check_redemption(&s.get_ok(&format!("/v1/loyalty/redemptions/{id}")), acks, cycle);
    }
    for (id, tx) in &acks.adjustments {
        if acks.fresh.contains(id) || rng.gen_bool(0.1) {
            assert_eq!(books.tx_points.get(id), tx["points"].as_i64().as_ref(), "cycle {cycle}: adjustment {id}");
            let got = s.get_ok(&format!("/v1/loyalty/transactions/{id}"));
            assert_eq!(&got, tx, "cycle {cycle}: acknowledged adjustment {id}");
        }
    }
}

/// Checks the books (rebuilt from nothing with `full`: every object listed
/// and compared with its acknowledgement) and the acknowledgements, then
/// forgets what was fresh.
fn verify(
    s: &Server,
    acks: &mut Acks,
    books: &mut Books,
    accounts: &[String],
    rng: &mut StdRng,
    cycle: usize,
    full: bool,
) {
    if full {
        *books = Books::default();
        let listed = list_all(s, "/v1/loyalty/accounts");
        assert_eq!(listed.len(), accounts.len(), "cycle {cycle}: the accounts");
    }
    books.sync(s, acks, accounts, cycle);
    verify_acks(s, acks, books, rng, cycle);
    if full {
        let acked = acks.payments.keys().chain(acks.refunds.keys()).chain(acks.redemptions.keys());
        for id in acked.chain(acks.adjustments.keys()) {
            let listed = books.payments.contains_key(id)
                || books.refunds.contains(id)
                || books.redemptions.contains(id)
                || books.tx_points.contains_key(id);
            assert!(listed, "cycle {cycle}: acknowledged {id} is not listed");
        }
    }
    acks.fresh.clear();
}

/// Earns whose answer a crash swallowed, retried with the same key: one payment each.
fn retry_unanswered(s: &Server, acks: &mut Acks, books: &mut Books, cycle: usize) {
    let unanswered = std::mem::take(&mut acks.unanswered_earns);
    for (key, body) in &unanswered {
        let r = s.post_idem("/v1/payments", body.clone(), key);
        assert_eq!(r.status, 200, "cycle {cycle}: retry of {key}: {}", r.body);
        acks.fresh.insert(r.id());
        acks.payments.insert(r.id(), r.body);
    }
    books.sync_payments(s, acks, cycle);
    for (key, _) in &unanswered {
        assert_eq!(books.per_key.get(key), Some(&1), "cycle {cycle}: {key} retried after a crash exists exactly once");
    }
}

/// kill -9 and start again, the manual clock no earlier than it was.
/// Asks for an online snapshot after `at`. The kill may come before it is
/// answered (the next start removes the half-written file); any answer but
/// 200 is counted as refused, like a client's.
fn snapshot_at(s: &Server, at: Duration, tally: &Mutex<Tally>) {
    std::thread::sleep(at);
    if let Ok(r) = s.try_post("/v1/admin/snapshot", json!({})) {
        let mut tally = tally.lock().unwrap();
        if r.status == 200 {
            tally.snapshots += 1;
        } else {
            *tally.refused.entry(format!("snapshot {}", r.status)).or_default() += 1;
        }
    }
}

fn restart(s: &mut Server, advanced: i64) {
    s.restart_with(&[("LEDGER_TEST_CLOCK", &advanced.to_string())]);
}

#[test]
fn kill_9_under_a_mixed_load_keeps_every_acknowledged_mutation_and_the_invariants() {
    let started = Instant::now();
    let mut s = Server::start_with(&[("LEDGER_TEST_CLOCK", "0")]);
    s.ok(
        "/v1/loyalty/program",
        json!({"redemption_ttl_seconds": REDEMPTION_TTL_SECONDS, "expiry": {"days": EXPIRY_DAYS}}),
    );
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
    let accounts: Vec<String> = members.iter().map(|m| m.account.clone()).collect();
    let mut acks = Acks::default();
    let mut books = Books::default();
    let base = seed();
    let mut check_rng = StdRng::seed_from_u64(base ^ 0x5eed);
    let mut total = Tally::default();
    // Seconds the manual clock was asked to move, over every server so far.
    let advanced = AtomicI64::new(0);
    for cycle in 0..cycles() {
        let mut rng = StdRng::seed_from_u64(base.wrapping_add(cycle as u64));
        let kill_after = Duration::from_millis(rng.gen_range(KILL_AFTER_MS));
        let shared = Mutex::new(std::mem::take(&mut acks));
        let tally = Mutex::new(Tally::default());
        let stop_clock = AtomicBool::new(false);
        std::thread::scope(|scope| {
            for (n, m) in members.iter().enumerate() {
                for c in 0..CLIENTS_PER_MEMBER {
                    let mut rng = StdRng::seed_from_u64(rng.gen());
                    let (s, shared, tally) = (&s, &shared, &tally);
                    scope.spawn(move || client(s, m, &mut rng, shared, tally, &format!("{cycle}-{n}-{c}")));
                }
            }
            scope.spawn(|| clock_mover(&s, &stop_clock, &advanced));
            if cycle % SNAPSHOT_EVERY == 1 {
                let at = Duration::from_millis(rng.gen_range(0..kill_after.as_millis() as u64));
                let (s, tally) = (&s, &tally);
                scope.spawn(move || snapshot_at(s, at, tally));
            }
            std::thread::sleep(kill_after);
            stop_clock.store(true, Ordering::Release);
            s.kill9();
        });
        acks = shared.into_inner().unwrap();
        let tally = tally.into_inner().unwrap();
        total.acked += tally.acked;
        total.snapshots += tally.snapshots;
        total.lost += tally.lost;
        let restarting = Instant::now();
        restart(&mut s, advanced.load(Ordering::Acquire));
        let restarted_in = restarting.elapsed();
        // Past every open redemption's deadline (and every other time past every
        // lot's expiry): the timer expires them while the check reads.
        let step = if cycle % EXPIRE_LOTS_EVERY == 0 { EXPIRY_DAYS * 86_400 } else { REDEMPTION_TTL_SECONDS };
        s.ok("/v1/test/clock", json!({"advance_seconds": step}));
        advanced.fetch_add(step, Ordering::AcqRel);
        // The last cycle's full check is the one after the loop.
        let full = (cycle + 1) % FULL_CHECK_EVERY == 0 && cycle + 1 < cycles();
        let checking = Instant::now();
        verify(&s, &mut acks, &mut books, &accounts, &mut check_rng, cycle, full);
        retry_unanswered(&s, &mut acks, &mut books, cycle);
        if cycle % SNAPSHOT_EVERY == 1 && tally.snapshots == 0 {
            s.ok("/v1/admin/snapshot", json!({}));
            total.snapshots += 1;
        }
        eprintln!(
            "cycle {cycle} (seed {base}) at {:.1?}: killed after {kill_after:?}; {} acknowledged, {} cut off by the kill, \
             refused {:?}, {} snapshot(s); restarted in {restarted_in:.1?}, checked{} in {:.1?}; {} redemptions expired so far",
            started.elapsed(),
            tally.acked,
            tally.lost,
            tally.refused,
            tally.snapshots,
            if full { " everything" } else { "" },
            checking.elapsed(),
            books.expired.len(),
        );
    }
    assert!(total.acked > 20 * cycles(), "the load did some work: {} acknowledged", total.acked);
    if cycles() > 1 {
        assert!(total.snapshots > 0, "an online snapshot ran under the load");
    }
    assert!(!acks.canceled.is_empty() && !acks.consumed.is_empty() && !acks.refunds.is_empty(), "every kind of op ran");
    restart(&mut s, advanced.load(Ordering::Acquire));
    verify(&s, &mut acks, &mut books, &accounts, &mut check_rng, cycles(), true);
    assert!(!books.expired.is_empty(), "the timer expired some redemptions");
    assert!(books.expirations > 0 && !acks.adjustments.is_empty(), "lots expired and adjustments were made");
    common::assert_lots_reconcile(&s);
    eprintln!("{} cycles in {:.1?}", cycles(), started.elapsed());
}
