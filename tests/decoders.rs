//! The WAL decoders on arbitrary bytes (invariant 9 of docs/reliability.md):
//! `Record::decode`, `format::scan_frames` and `recovery::replay_log` (startup's
//! own replay into a fresh `State`: read, decode, apply in two lanes) answer
//! an error or a value, never a panic.
//!
//! Inputs start from a real log (written by the server through every kind of
//! mutation) and are damaged: bits flipped, bytes overwritten, inserted or cut,
//! frames reordered, and payloads damaged *and re-framed with a good checksum*
//! so that the bytes get past the frame check into bincode and the state.
//! Plus plain random bytes. Cases: `LEDGER_FUZZ_CASES` (see common/fuzz.rs).

// `*pick(..)` stays: without the `*`, `T` is inferred as `str` and the call does not compile.
#![allow(clippy::explicit_auto_deref)]

mod common;

use std::path::Path;
use std::sync::OnceLock;

use common::fuzz::{self, pick};
use common::Server;
use loyalty_ledger::config::WAL_RECORD_BYTES_MAX;
use loyalty_ledger::state::State;
use loyalty_ledger::storage::fs::RealFs;
use loyalty_ledger::wal::format::{self, scan_frames, segment_file_name, SegmentBuilder, SegmentHeader};
use loyalty_ledger::wal::reader::Mode;
use loyalty_ledger::wal::Lsn;
use loyalty_ledger::wal::Record;
use rand::rngs::StdRng;
use rand::Rng;
use serde_json::json;

const CASES_DEFAULT: usize = 300;

/// The payloads of a real log that holds every kind of change.
fn sample_payloads() -> &'static [Vec<u8>] {
    static PAYLOADS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    PAYLOADS.get_or_init(|| {
        let s = Server::start();
        s.ok("/v1/loyalty/earning_rules", json!({"currency": "eur", "points": 1, "per_amount": 100}));
        s.ok("/v1/loyalty/program", json!({"clawback": {"allow_negative": false}}));
        let c = s.ok("/v1/customers", json!({"email": "a@b.c", "name": "Ann \u{1f600}", "metadata": {"k": "v"}}));
        let a = s.ok("/v1/loyalty/accounts", json!({"customer": c["id"]}));
        s.ok(
            "/v1/loyalty/rewards",
            json!({"id": "rwd_5off", "name": "5 off", "points": 5, "discount": {"amount": 500, "currency": "eur"}}),
        );
        let p = s.post_idem(
            "/v1/payments",
            json!({"amount": 9000, "currency": "eur", "customer": c["id"], "confirm": true}),
            "k1",
        );
        s.ok("/v1/refunds", json!({"payment": p.id(), "amount": 1000}));
        let r1 = s.ok("/v1/loyalty/redemptions", json!({"account": a["id"], "reward": "rwd_5off"}));
        let r2 = s.ok("/v1/loyalty/redemptions", json!({"account": a["id"], "reward": "rwd_5off"}));
        s.ok(&format!("/v1/loyalty/redemptions/{}/cancel", r1["id"].as_str().unwrap()), json!({}));
        s.ok(
            "/v1/payments",
            json!({"amount": 900, "currency": "eur", "customer": c["id"], "redemptions": [r2["id"]], "confirm": true}),
        );
        let seg = common::wal_segments(&s.data).pop().unwrap();
        let bytes = std::fs::read(seg).unwrap();
        let (_, scan) = format::scan_segment(&bytes, WAL_RECORD_BYTES_MAX).expect("a good header");
        assert_eq!(scan.tail, format::Tail::Clean);
        let payloads: Vec<Vec<u8>> = scan.payloads.into_iter().map(|r| bytes[r].to_vec()).collect();
        assert!(payloads.len() >= 10);
        for p in &payloads {
            Record::decode(p).expect("the sample decodes");
        }
        payloads
    })
}

/// Damages `buf` in one of several ways.
fn damage(rng: &mut StdRng, buf: &mut Vec<u8>) {
    if buf.is_empty() {
        buf.extend(fuzz::bytes(rng, 1..64));
        return;
    }
    match rng.gen_range(0..6) {
        0 => {
            for _ in 0..rng.gen_range(1..9) {
                let i = rng.gen_range(0..buf.len());
                buf[i] ^= 1 << rng.gen_range(0..8);
            }
        }
        1 => {
            let at = rng.gen_range(0..buf.len());
            let n = rng.gen_range(1..=(buf.len() - at).min(16));
            for b in &mut buf[at..at + n] {
                let any: u8 = rng.gen();
                *b = *pick(rng, &[0x00, 0xff, 0x7f, 0x80, 0xfb, 0xfc, 0xfd, any]);
            }
        }
        2 => {
            let at = rng.gen_range(0..=buf.len());
            let extra = fuzz::bytes(rng, 1..32);
            buf.splice(at..at, extra);
        }
        3 => buf.truncate(rng.gen_range(0..buf.len())),
        4 => {
            let at = rng.gen_range(0..buf.len());
            let n = rng.gen_range(1..=(buf.len() - at));
            buf.drain(at..at + n);
        }
        _ => {
            // A bincode varint length prefix claiming a huge size.
            let at = rng.gen_range(0..buf.len());
            const HUGE: [&[u8]; 3] = [&[0xfb, 0xff, 0xff], &[0xfc, 0xff, 0xff, 0xff, 0x7f], &[0xfd; 9]];
            let huge: &[u8] = *pick(rng, &HUGE);
            buf.splice(at..(at + huge.len()).min(buf.len()), huge.iter().copied());
        }
    }
}

/// A segment of `payloads` in batches of random sizes (damaged payloads
/// re-framed with good checksums).
fn segment(rng: &mut StdRng, first_lsn: u64, payloads: &[Vec<u8>]) -> Vec<u8> {
    let mut out = SegmentBuilder::new(first_lsn, rng.gen());
    for p in payloads {
        if !p.is_empty() {
            out.record(p);
            if rng.gen_bool(0.4) {
                out.end_batch();
            }
        }
    }
    out.finish()
}

/// A log as recovery reads it (startup's own `replay_log`: frames checked,
/// records decoded on one thread and applied in two lanes).
fn recover(dir: &Path, from_lsn: u64, repair: bool) -> Result<u64, String> {
    let state = State::new();
    let repair = if repair { Mode::Repair } else { Mode::ReadOnly };
    let (_, n) = loyalty_ledger::recovery::replay_log(&RealFs, dir, Lsn::new(from_lsn), repair, &state)
        .map_err(|e| e.to_string())?;
    Ok(n)
}

#[test]
fn record_decode_never_panics() {
    let samples = sample_payloads();
    fuzz::run_cases("Record::decode", fuzz::cases(CASES_DEFAULT) * 4, |rng, _| {
        let mut buf = if rng.gen_bool(0.2) {
            fuzz::bytes(rng, 0..600)
        } else {
            let mut b = pick(rng, samples).clone();
            damage(rng, &mut b);
            b
        };
        if rng.gen_bool(0.3) {
            damage(rng, &mut buf);
        }
        if let Ok(record) = Record::decode(&buf) {
            // Whatever decodes applies or fails cleanly, and encodes back.
            let _ = State::new().apply(1, record.clone());
            assert_eq!(Record::decode(&record.encode().unwrap()).unwrap(), record);
        }
    });
}

#[test]
fn scan_frames_and_batches_never_panic() {
    let samples = sample_payloads();
    fuzz::run_cases("scan_frames", fuzz::cases(CASES_DEFAULT) * 4, |rng, _| {
        let n = rng.gen_range(0..6);
        let chosen: Vec<Vec<u8>> = (0..n).map(|_| pick(rng, samples).clone()).collect();
        let mut buf = segment(rng, 1, &chosen);
        let salt = format::parse_segment_header(&buf).map(|h| h.salt).unwrap_or(0);
        if rng.gen_bool(0.8) {
            damage(rng, &mut buf);
        }
        if rng.gen_bool(0.1) {
            buf = fuzz::bytes(rng, 0..300);
        }
        let anywhere = rng.gen_range(0..buf.len() + 64);
        let start = *pick(rng, &[0, format::SEGMENT_HEADER_BYTES, anywhere]);
        let max = *pick(rng, &[WAL_RECORD_BYTES_MAX, 1, 64, usize::MAX]);
        let first_lsn = *pick(rng, &[1, u64::MAX - 1, u64::MAX]);
        for scan in [scan_frames(&buf, start, max), format::scan_batches(&buf, start, salt, first_lsn, max)] {
            assert!(scan.valid_end <= buf.len());
            for r in &scan.payloads {
                assert!(r.start <= r.end && r.end <= scan.valid_end && r.end - r.start <= max);
            }
        }
    });
}

#[test]
fn read_log_on_damaged_segments_is_an_error_or_a_prefix_never_a_panic() {
    let samples = sample_payloads();
    let dir = tempfile::tempdir().unwrap();
    fuzz::run_cases("read_log", fuzz::cases(CASES_DEFAULT), |rng, _| {
        for f in std::fs::read_dir(dir.path()).unwrap() {
            std::fs::remove_file(f.unwrap().path()).unwrap();
        }
        // The sample log split into one to three segments chained by LSN (or
        // not), from an ordinary or an extreme first LSN, each perhaps damaged
        // in its bytes or in one of its payloads (re-framed with a good checksum).
        let mut lsn = *pick(rng, &[1u64, 1, 1, 2, u64::MAX - 3, u64::MAX, 99_999_999_999_999_999]);
        // From the start, or from the first segment on (as after a snapshot).
        let from = if rng.gen_bool(0.5) { 1 } else { lsn };
        let mut rest: &[Vec<u8>] = samples;
        let segments = rng.gen_range(1..4);
        for i in 0..segments {
            let n = if i + 1 == segments { rest.len() } else { rng.gen_range(0..=rest.len()) };
            let mut payloads = rest[..n].to_vec();
            rest = &rest[n..];
            if n > 0 && rng.gen_bool(0.3) {
                let i = rng.gen_range(0..n);
                damage(rng, &mut payloads[i]);
            }
            let mut bytes = segment(rng, lsn, &payloads);
            if rng.gen_bool(0.3) {
                damage(rng, &mut bytes);
            }
            if rng.gen_bool(0.03) {
                bytes = fuzz::bytes(rng, 0..100);
            }
            std::fs::write(dir.path().join(segment_file_name(lsn)), &bytes).unwrap();
            lsn = lsn.wrapping_add(n as u64 + u64::from(rng.gen_bool(0.05)));
        }
        if rng.gen_bool(0.1) {
            std::fs::write(dir.path().join("00000000000000000001.wal.tmp"), b"junk").unwrap();
        }
        // Read-only first, then with repair, then again: a repaired log reads clean.
        let first = recover(dir.path(), from, false);
        let repaired = recover(dir.path(), from, true);
        assert_eq!(first.is_ok(), repaired.is_ok(), "{first:?} vs {repaired:?}");
        if let Ok(n) = repaired {
            assert_eq!(recover(dir.path(), from, false), Ok(n), "a repaired log reads the same records again");
        }
    });
}

#[test]
fn random_bytes_as_segments_never_panic() {
    let dir = tempfile::tempdir().unwrap();
    fuzz::run_cases("read_log(random)", fuzz::cases(CASES_DEFAULT), |rng, case| {
        let path = dir.path().join(segment_file_name(1));
        let header = SegmentHeader::new(1, rng.gen()).encode();
        let mut bytes = if rng.gen_bool(0.5) { header.to_vec() } else { Vec::new() };
        bytes.extend(fuzz::bytes(rng, 0..400));
        if case % 7 == 0 {
            // Frames with good checksums around random payloads: straight into bincode.
            let mut seg = SegmentBuilder::new(1, rng.gen());
            for _ in 0..rng.gen_range(1..4) {
                seg.record(&fuzz::bytes(rng, 1..200));
            }
            bytes = seg.finish();
        }
        std::fs::write(&path, &bytes).unwrap();
        let _ = recover(dir.path(), 1, rng.gen_bool(0.5));
    });
}
