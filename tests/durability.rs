//! The WAL on disk: acknowledged writes survive `kill -9`; a torn final record
//! is cut off; a corrupt middle record stops the start with file and offset.

mod common;

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use common::{copy_dir, record_offsets, records_end, wal_segments, Server};
use serde_json::{json, Value};

/// kill -9 cycles (more by hand: `LEDGER_CRASH_CYCLES=200 cargo test --test durability`).
fn crash_cycles() -> usize {
    std::env::var("LEDGER_CRASH_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(3)
}

#[test]
fn acknowledged_writes_survive_kill_9_under_load() {
    let mut s = Server::start();
    let mut acked: HashMap<String, Value> = HashMap::new();
    for cycle in 0..crash_cycles() {
        let done = Mutex::new(Vec::<(String, Value)>::new());
        let stop_at = Instant::now() + Duration::from_millis(300 + 97 * (cycle as u64 % 7));
        std::thread::scope(|scope| {
            for t in 0..6 {
                let s = &s;
                let done = &done;
                scope.spawn(move || {
                    let mut i = 0;
                    while Instant::now() < stop_at {
                        let c = s.post("/v1/customers", json!({"name": format!("c{cycle}-{t}-{i}")}));
                        if c.status != 200 {
                            continue;
                        }
                        done.lock().unwrap().push((format!("/v1/customers/{}", c.id()), c.body.clone()));
                        let a = s.post(
                            "/v1/loyalty/accounts",
                            json!({"customer": c.id(), "metadata": {"i": i.to_string()}}),
                        );
                        if a.status == 200 {
                            let mut cust = c.body.clone();
                            cust["loyalty_account"] = a.body["id"].clone();
                            let mut d = done.lock().unwrap();
                            d.push((format!("/v1/customers/{}", c.id()), cust));
                            d.push((format!("/v1/loyalty/accounts/{}", a.id()), a.body));
                        }
                        i += 1;
                    }
                });
            }
        });
        // Everything acknowledged so far, in acknowledgement order (later wins).
        for (path, body) in done.into_inner().unwrap() {
            acked.insert(path, body);
        }
        s.restart();
        for (path, body) in &acked {
            let got = s.get(path);
            assert_eq!(got.status, 200, "cycle {cycle}: {path} lost after kill -9");
            assert_eq!(&got.body, body, "cycle {cycle}: {path} changed after kill -9");
        }
    }
    assert!(acked.len() > 10, "the load did some work");
}

/// Makes a data directory whose WAL ends with a few small records.
fn data_with_records() -> (tempfile::TempDir, Vec<String>) {
    let dir = tempfile::tempdir().unwrap();
    let s = Server::start_in(dir.path());
    let ids: Vec<String> = (0..5)
        .map(|i| s.ok("/v1/customers", json!({"name": format!("n{i}")}))["id"].as_str().unwrap().to_string())
        .collect();
    drop(s);
    (dir, ids)
}

#[test]
fn a_wal_cut_at_every_byte_of_its_last_record_starts_and_keeps_the_rest() {
    let (orig, ids) = data_with_records();
    let seg = wal_segments(orig.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let last = *record_offsets(&bytes).last().unwrap();
    let end = records_end(&bytes);
    assert!(bytes[end..].iter().all(|&b| b == 0), "only zero-filled space follows the records");
    for cut in last..end {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(orig.path(), dir.path());
        let copy = dir.path().join("wal").join(seg.file_name().unwrap());
        std::fs::OpenOptions::new().write(true).open(&copy).unwrap().set_len(cut as u64).unwrap();
        let s = Server::try_start_in(dir.path(), &[])
            .unwrap_or_else(|f| panic!("cut at {cut}: refused to start:\n{}", f.log));
        for id in &ids[..4] {
            assert_eq!(s.get(&format!("/v1/customers/{id}")).status, 200, "cut at {cut}: lost {id}");
        }
        assert_eq!(s.get(&format!("/v1/customers/{}", ids[4])).status, 404, "cut at {cut}");
        if cut > last {
            assert!(s.log().contains("torn"), "cut at {cut}: a warning is logged");
        }
        if cut == last + 1 || cut + 1 == end {
            // New writes go after the cut and survive another restart.
            let fresh = s.ok("/v1/customers", json!({"name": "after"}))["id"].as_str().unwrap().to_string();
            drop(s);
            let s = Server::start_in(dir.path());
            assert_eq!(s.get(&format!("/v1/customers/{fresh}")).status, 200);
            assert_eq!(s.get(&format!("/v1/customers/{}", ids[3])).status, 200);
        }
    }
}

#[test]
fn a_flipped_bit_in_a_middle_record_refuses_to_start() {
    let (orig, _) = data_with_records();
    let seg = wal_segments(orig.path()).pop().unwrap();
    let bytes = std::fs::read(&seg).unwrap();
    let offsets = record_offsets(&bytes);
    let middle = offsets[2];
    // One bit in the length, one in the checksum, one in the payload.
    for (at, bit) in [(middle, 3u8), (middle + 9, 0), (middle + 20, 6)] {
        let dir = tempfile::tempdir().unwrap();
        copy_dir(orig.path(), dir.path());
        let copy = dir.path().join("wal").join(seg.file_name().unwrap());
        let mut damaged = bytes.clone();
        damaged[at] ^= 1 << bit;
        std::fs::write(&copy, &damaged).unwrap();
        let failed = match Server::try_start_in(dir.path(), &[]) {
            Ok(_) => panic!("a corrupt middle record at byte {at} was accepted"),
            Err(f) => f,
        };
        assert!(!failed.status.success());
        let name = seg.file_name().unwrap().to_str().unwrap();
        assert!(failed.log.contains(name), "names the file: {}", failed.log);
        assert!(failed.log.contains(&format!("offset {middle}")), "names the offset {middle}: {}", failed.log);
        // Nothing was cut: the file is as the operator left it.
        assert_eq!(std::fs::read(&copy).unwrap(), damaged);
    }
}

#[test]
fn acknowledged_completions_keep_their_award_exactly_once_after_kill_9() {
    let mut s = Server::start();
    s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
    let members: Vec<String> = (0..8)
        .map(|_| {
            let c = s.ok("/v1/customers", json!({}))["id"].as_str().unwrap().to_string();
            s.ok("/v1/loyalty/accounts", json!({"customer": c}));
            c
        })
        .collect();
    let mut acked: Vec<Value> = Vec::new();
    for cycle in 0..crash_cycles() {
        let done = Mutex::new(Vec::<Value>::new());
        let stop_at = Instant::now() + Duration::from_millis(250 + 131 * (cycle as u64 % 5));
        std::thread::scope(|scope| {
            for (t, cust) in members.iter().enumerate() {
                let (s, done) = (&s, &done);
                scope.spawn(move || {
                    let mut i = 0u64;
                    while Instant::now() < stop_at {
                        let amount = 100 + (t as u64 * 37 + i * 11) % 5000;
                        let r = if i.is_multiple_of(2) {
                            s.post(
                                "/v1/payments",
                                json!({"amount": amount, "currency": "eur", "customer": cust, "confirm": true}),
                            )
                        } else {
                            let p =
                                s.post("/v1/payments", json!({"amount": amount, "currency": "eur", "customer": cust}));
                            if p.status != 200 {
                                continue;
                            }
                            s.post(&format!("/v1/payments/{}/complete", p.id()), json!({}))
                        };
                        if r.status == 200 {
                            done.lock().unwrap().push(r.body);
                        }
                        i += 1;
                    }
                });
            }
        });
        acked.extend(done.into_inner().unwrap());
        s.restart();
        for p in &acked {
            let got = s.get_ok(&format!("/v1/payments/{}", p["id"].as_str().unwrap()));
            assert_eq!(&got, p, "cycle {cycle}: an acknowledged completion changed after kill -9");
            assert_eq!(got["status"], "completed");
            let tx = s.get_ok(&format!("/v1/loyalty/transactions/{}", got["award"].as_str().unwrap()));
            assert_eq!(tx["points"], got["points_earned"]);
        }
        common::assert_ledger_consistent(&s);
    }
    assert!(acked.len() > 10);
}
