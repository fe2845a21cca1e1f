//! Seeded random inputs for the property tests (bad input, decoders).
//!
//! No property-test framework: a seeded `StdRng` per case, so a failure
//! names the seed that reproduces it. The number of cases is bounded for CI
//! and raised by hand:
//! `LEDGER_FUZZ_CASES=20000 LEDGER_FUZZ_SEED=$RANDOM cargo test --test bad_input`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Cases per property: `LEDGER_FUZZ_CASES`, else `default`.
pub fn cases(default: usize) -> usize {
    std::env::var("LEDGER_FUZZ_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

/// The base seed: `LEDGER_FUZZ_SEED`, else a fixed one (CI is reproducible).
pub fn seed() -> u64 {
    std::env::var("LEDGER_FUZZ_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or(0x5eed_1ed9)
}

/// Runs `n` cases of `property`, each with its own seeded rng; a failing case
/// says how to run it again.
pub fn run_cases(name: &str, n: usize, mut property: impl FnMut(&mut StdRng, usize)) {
    let base = seed();
    for case in 0..n {
        let case_seed = base.wrapping_add(case as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut rng = StdRng::seed_from_u64(case_seed);
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| property(&mut rng, case)));
        if let Err(panic) = outcome {
            eprintln!("{name}: case {case} failed (LEDGER_FUZZ_SEED={base}, case seed {case_seed})");
            std::panic::resume_unwind(panic);
        }
    }
}

/// Picks one of `items`.
pub fn pick<'a, T>(rng: &mut StdRng, items: &'a [T]) -> &'a T {
    &items[rng.gen_range(0..items.len())]
}

/// Random bytes, as many as a random pick from `len`.
pub fn bytes(rng: &mut StdRng, len: std::ops::Range<usize>) -> Vec<u8> {
    let n = rng.gen_range(len);
    (0..n).map(|_| rng.gen()).collect()
}

const BASE62: &[u8] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";
const PREFIXES: &[&str] = &["cust_", "loy_", "pay_", "re_", "ptx_", "rdm_", "rwd_", "erl_", "evt_", "we_"];
/// Characters that tend to break things: controls, quotes, escapes, RTL,
/// zero-width, combining marks, astral-plane emoji, a byte-order mark.
const NASTY: &[&str] = &[
    "\u{0}",
    "\u{1f}",
    "\"",
    "\\",
    "/",
    "%",
    "&",
    "=",
    "?",
    "#",
    "\n",
    "\r\n",
    "\t",
    "\u{202e}",
    "\u{200b}",
    "\u{301}",
    "\u{1f600}",
    "\u{feff}",
    "\u{fffd}",
    "é",
    "日本",
    "𝔘",
    "'",
    "<script>",
    "${x}",
    "%00",
    "../",
];

/// A string from a mix of shapes: empty, short ASCII, unicode and control
/// characters, valid-looking ids, one of `known`, or long (up to 70 KiB, over
/// the body limit).
pub fn string(rng: &mut StdRng, known: &[String]) -> String {
    match rng.gen_range(0..10) {
        0 => String::new(),
        1 | 2 => (0..rng.gen_range(1..12)).map(|_| rng.gen_range(b'a'..=b'z') as char).collect(),
        3 | 4 => (0..rng.gen_range(1..8)).map(|_| *pick(rng, NASTY)).collect(),
        5 => id_like(rng),
        6 if !known.is_empty() => pick(rng, known).clone(),
        7 => {
            let n = *pick(rng, &[39usize, 40, 41, 255, 256, 499, 500, 501, 512, 513, 1000]);
            "x".repeat(n)
        }
        8 if rng.gen_bool(0.1) => "y".repeat(rng.gen_range(60_000..72_000)),
        _ => (0..rng.gen_range(1..20)).map(|_| rng.gen_range('\u{20}'..='\u{2fff}')).collect(),
    }
}

/// An id of some kind: a known prefix and a base62 tail of some length.
pub fn id_like(rng: &mut StdRng) -> String {
    let mut s = pick(rng, PREFIXES).to_string();
    let len = *pick(rng, &[0usize, 1, 16, 16, 16, 60, 95, 96, 200]);
    s.extend((0..len).map(|_| *pick(rng, BASE62) as char));
    s
}

/// A JSON number as text, including ones no i64/u64/f64 holds.
pub fn number(rng: &mut StdRng) -> String {
    const EDGES: &[&str] = &[
        "0",
        "-0",
        "1",
        "-1",
        "2",
        "99",
        "100",
        "99999999999",
        "100000000000",
        "9223372036854775807",
        "9223372036854775808",
        "-9223372036854775808",
        "-9223372036854775809",
        "18446744073709551615",
        "18446744073709551616",
        "123456789012345678901234567890",
        "1.5",
        "-0.0",
        "1e3",
        "1E400",
        "-1e400",
        "1e-400",
        "4.2e1",
        "0.1",
        "1000000",
        "1000001",
        "2592000",
        "2592001",
        "1000000000000000",
        "1000000000000001",
        "4000000000000000000",
    ];
    match rng.gen_range(0..4) {
        0 => rng.gen::<i64>().to_string(),
        1 => rng.gen_range(0..10_000).to_string(),
        _ => pick(rng, EDGES).to_string(),
    }
}

/// `s` as a JSON string literal.
pub fn quote(s: &str) -> String {
    serde_json::Value::String(s.to_string()).to_string()
}

/// Any JSON value as text, nested up to `depth` more levels; with a small
/// chance of very deep nesting (past serde_json's recursion limit).
pub fn any_value(rng: &mut StdRng, depth: u32, known: &[String]) -> String {
    let top = if depth == 0 { 5 } else { 8 };
    match rng.gen_range(0..top) {
        0 => "null".into(),
        1 => pick(rng, &["true", "false"]).to_string(),
        2 => number(rng),
        3 | 4 => quote(&string(rng, known)),
        5 => {
            let n = rng.gen_range(0..5);
            let items: Vec<String> = (0..n).map(|_| any_value(rng, depth - 1, known)).collect();
            format!("[{}]", items.join(","))
        }
        6 => {
            let n = rng.gen_range(0..5);
            let items: Vec<String> = (0..n)
                .map(|_| format!("{}:{}", quote(&string(rng, known)), any_value(rng, depth - 1, known)))
                .collect();
            format!("{{{}}}", items.join(","))
        }
        _ if rng.gen_bool(0.1) => {
            let n = rng.gen_range(100..3000);
            format!("{}{}", "[".repeat(n), "]".repeat(n))
        }
        _ => "{}".into(),
    }
}

/// Text that is not JSON, or not quite.
pub fn broken_json(rng: &mut StdRng) -> Vec<u8> {
    match rng.gen_range(0..6) {
        0 => bytes(rng, 0..200),
        1 => b"{\"amount\": 100, \"currency\": \"eur\"".to_vec(),
        2 => b"{\"name\": \"\xff\xfe\"}".to_vec(),
        3 => b"{\"name\": \"\\ud800\"}".to_vec(),
        4 => b"{\"a\":1}{\"a\":1}".to_vec(),
        _ => b"\xef\xbb\xbf{}".to_vec(),
    }
}

/// Percent-encodes every byte of `s` outside `[A-Za-z0-9_.~-]`.
pub fn pct(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"_.~-".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// How long a raw exchange may take.
pub const RAW_TIMEOUT: Duration = Duration::from_secs(30);

/// Sends `request` (a whole HTTP/1.1 request, which should say
/// `Connection: close`) to `base` (`http://ADDR`) and reads the answer to the
/// end: its status and body. `Err` when the server drops the connection
/// without an answer.
pub fn raw_http(base: &str, request: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let addr = base.trim_start_matches("http://");
    let mut conn = TcpStream::connect(addr).map_err(|e| format!("connect {addr}: {e}"))?;
    conn.set_read_timeout(Some(RAW_TIMEOUT)).unwrap();
    conn.set_write_timeout(Some(RAW_TIMEOUT)).unwrap();
    // The server may answer (413) and close before it has read everything.
    let _ = conn.write_all(request);
    let mut answer = Vec::new();
    if let Err(e) = conn.read_to_end(&mut answer) {
        if answer.is_empty() {
            return Err(format!("reading the answer: {e}"));
        }
    }
    let text = String::from_utf8_lossy(&answer);
    let status = text
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .ok_or_else(|| format!("no HTTP answer: {:?}", &text[..text.len().min(200)]))?;
    let body = match answer.windows(4).position(|w| w == b"\r\n\r\n") {
        Some(i) => answer[i + 4..].to_vec(),
        None => Vec::new(),
    };
    Ok((status, body))
}
