//! History's engine under the objects an earn leaves: how key order changes
//! the cost of writing them and of reading them back in the order a snapshot
//! does (each table in creation order).
//!
//! `cargo bench --bench history` (`HISTORY_BENCH_OBJECTS`, default 2,000,000):
//! the same objects (about 400 bytes each, four per earn) are written into a
//! fresh history in batches of `BATCH` objects, once under random ids (the
//! id format before time-ordered ids) and once under time-ordered ids, then
//! read back one point read at a time in creation order, and a sample in
//! random order. It reports microseconds per object; it never fails on a
//! number.

use std::time::Instant;

use loyalty_ledger::domain::IdKind;
use loyalty_ledger::history::layout::object_key;
use loyalty_ledger::history::{Batch, FjallHistory, HistoryStore};
use rand::seq::SliceRandom;
use rand::Rng;

const BATCH: usize = 2_000;
const RANDOM_READS: usize = 100_000;

fn value(id: &str, i: usize) -> Vec<u8> {
    // Shaped like an encoded change: ids, numbers and a little text.
    let mut v = format!(
        "{id}|loy_{:016}|pay_{:016}|points={}|created={}|metadata=order-{}|description=purchase at store {}|",
        i % 10_000,
        i,
        i * 7 % 1000,
        1_700_000_000 + i / 5000,
        i,
        i % 50
    )
    .into_bytes();
    v.resize(400, b'.');
    v
}

fn random_id() -> String {
    const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
    let mut rng = rand::thread_rng();
    let tail: String = (0..16).map(|_| BASE62[rng.gen_range(0..62)] as char).collect();
    format!("ptx_{tail}")
}

fn run(label: &str, ids: &[String]) {
    let dir = tempfile::tempdir().expect("temp dir");
    let history = FjallHistory::open(dir.path()).expect("open history");
    let keys: Vec<Vec<u8>> = ids.iter().map(|id| object_key(4, id)).collect();
    let started = Instant::now();
    for (n, chunk) in keys.chunks(BATCH).enumerate() {
        let start = n * BATCH;
        let objects = chunk.iter().enumerate().map(|(i, k)| (k.clone(), value(&ids[start + i], start + i))).collect();
        let batch = Batch { lsn: (n + 1) as u64, objects, ..Batch::default() };
        history.write(&batch).expect("write");
    }
    history.sync().expect("sync");
    let write = started.elapsed();
    let view = history.objects_view();
    let started = Instant::now();
    for key in &keys {
        assert!(view.object(key).expect("read").is_some());
    }
    let in_order = started.elapsed();
    let mut sample: Vec<&Vec<u8>> = keys.iter().collect();
    sample.shuffle(&mut rand::thread_rng());
    sample.truncate(RANDOM_READS);
    let started = Instant::now();
    for key in &sample {
        assert!(view.object(key).expect("read").is_some());
    }
    let random = started.elapsed();
    let per = |d: std::time::Duration, n: usize| d.as_secs_f64() * 1e6 / n as f64;
    println!(
        "{label}: write {:.2} us/object; read in creation order {:.2} us/object; random order {:.2} us/object; {} MB on disk",
        per(write, keys.len()),
        per(in_order, keys.len()),
        per(random, sample.len()),
        history.disk_bytes() / 1_000_000
    );
}

fn main() {
    let n: usize = std::env::var("HISTORY_BENCH_OBJECTS").ok().and_then(|s| s.parse().ok()).unwrap_or(2_000_000);
    println!("history bench: {n} objects of 400 bytes, batches of {BATCH}");
    // The format before time-ordered ids: the prefix and 16 random digits.
    let random: Vec<String> = (0..n).map(|_| random_id()).collect();
    run("random ids", &random);
    let ordered: Vec<String> = (0..n).map(|_| IdKind::PointsTransaction.generate().to_string()).collect();
    run("time-ordered ids", &ordered);
}
