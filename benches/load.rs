//! Load bench: the real server under keep-alive HTTP load, against a ceiling.
//!
//! `cargo bench --bench load` starts the release binary on a temporary data
//! directory, creates an earning rule and `LOAD_MEMBERS` members over HTTP,
//! then drives `LOAD_CONNECTIONS` keep-alive connections for `LOAD_SECONDS`
//! per workload: durable earn (`POST /v1/payments`, `confirm:true`), the
//! same with a new `Idempotency-Key` on each, read (`GET /v1/loyalty/accounts/{id}`), a mix (80 % read, 20 % earn) and
//! redemption create + cancel (`POST /v1/loyalty/redemptions`, then
//! `POST /v1/loyalty/redemptions/{id}/cancel` with the id of the answer; each
//! request is one operation). For that last one, setup also creates a reward and
//! gives every member points with one payment. The ceiling is measured
//! before the server starts and again after it is stopped: a bare actix-web
//! route in this process that parses the same JSON body and answers a small
//! JSON object, with the same two workers, driven by the same generator.
//! Ratios are against the mean of the two runs (this machine drifts).
//!
//! It reports ops/s, p50/p99/p999 latency, errors and the ratio to the ceiling,
//! with the targets of docs/performance.md ("Targets"). It reports; it never
//! fails on a number. Everything talks to 127.0.0.1 only, is bounded in time,
//! and the server child is killed at the end (also on panic).
//!
//! With `LOAD_SOAK_SECONDS=N` it runs the soak instead: keyed durable earns
//! (a new `Idempotency-Key` on every request) for N seconds, the server's
//! resident memory, WAL records and WAL and history bytes on disk sampled
//! every `SOAK_SAMPLE_SECONDS`, then kill -9 and the time until it is ready
//! again; it reports non-2xx answers, memory growth per earn after warm-up
//! and the restart time against the targets. `LOAD_SOAK_KEEP=DIR` copies the
//! killed server's data directory to DIR first, so that another build can
//! be timed restarting on the very same data.
//!
//! Options (environment): `LOAD_SECONDS` (10), `LOAD_CONNECTIONS` (64),
//! `LOAD_MEMBERS` (10000), `LOAD_WARMUP_SECONDS` (2, per workload, not
//! counted), `LOAD_CLIENT_THREADS` (2, threads of the load generator),
//! `LOAD_WORKERS` (2, HTTP workers of the server and of the ceiling).
//! Profiling (off by default, needs `perf`): `LOAD_PERF_STAT=1` counts the
//! server's fdatasync calls (WAL batches), futex calls and context switches per
//! workload; `LOAD_PERF_TRACE=1` adds `perf trace -s` (fdatasync latency per
//! thread); `LOAD_PERF_RECORD=DIR` writes `perf record` stacks of the server.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const SECRET_KEY: &str = "sk_bench_load_0123456789abcdefghij";
/// No single request may take longer than this; a slower one counts as an error.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// How long the server may take to say it is listening.
const START_TIMEOUT: Duration = Duration::from_secs(300);
/// Setup (earning rule and members) must be done within this.
const SETUP_TIMEOUT: Duration = Duration::from_secs(300);

/// The targets of docs/performance.md.
const EARN_RATIO_TARGET: f64 = 0.6;
const EARN_P99_TARGET_MS: f64 = 10.0;
const READ_RATIO_TARGET: f64 = 0.85;
/// Redemption create + cancel, counted in operations (each HTTP request is one).
const REDEEM_RATIO_TARGET: f64 = 0.5;

/// The reward the redemption workload spends, created in setup with this id.
const BENCH_REWARD: &str = "rwd_bench_load";
const BENCH_REWARD_POINTS: i64 = 10;
/// Each member's setup payment, in minor units: 10_000 points with the 1-per-100
/// rule, so 1000 open redemptions. A connection holds at most one open at a time,
/// so even 64 connections on one member (and a few failed cancels) never meet
/// `insufficient_points`.
const BENCH_GRANT_AMOUNT: i64 = 1_000_000;

#[derive(Clone, Copy, Debug)]
struct Options {
    seconds: f64,
    warmup: f64,
    connections: usize,
    members: usize,
    client_threads: usize,
    workers: usize,
}

impl Options {
    fn from_env() -> Options {
        Options {
            seconds: common::env_num("LOAD_SECONDS", 10.0),
            warmup: common::env_num("LOAD_WARMUP_SECONDS", 2.0),
            connections: common::env_num("LOAD_CONNECTIONS", 64usize).max(1),
            members: common::env_num("LOAD_MEMBERS", 10_000usize).max(1),
            client_threads: common::env_num("LOAD_CLIENT_THREADS", 2usize).max(1),
            workers: common::env_num("LOAD_WORKERS", 2usize).max(1),
        }
    }
}

// ---------------------------------------------------------------------------
// The server child, killed on drop (also when the bench panics).

struct ServerChild {
    child: Child,
    addr: SocketAddr,
    data: PathBuf,
    /// The server's "recovery done" log line.
    recovery: Option<String>,
}

impl ServerChild {
    fn start(data: &Path, workers: usize) -> ServerChild {
        let exe = env!("CARGO_BIN_EXE_loyalty-ledger");
        let mut child = Command::new(exe)
            .arg("serve")
            .arg("--data")
            .arg(data)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .arg("--workers")
            .arg(workers.to_string())
            .env("LEDGER_SECRET_KEY", SECRET_KEY)
            .env("RUST_LOG", "info")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("starting {exe}: {e}"));
        let stderr = child.stderr.take().expect("stderr is piped");
        let (tx, rx) = mpsc::channel::<Result<(String, Option<String>), String>>();
        // Reads the log until the end, so the pipe never fills and stalls the server.
        std::thread::spawn(move || {
            let mut tx = Some(tx);
            let mut seen = Vec::new();
            let mut recovery = None;
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                // What a restart spent its time on: the load and replay, then history's catch-up.
                if ["recovery done", "history opened", "history caught up", "spare memory given back"]
                    .iter()
                    .any(|m| line.contains(m))
                {
                    let before: Option<String> = recovery.take();
                    recovery = Some(before.map_or(line.clone(), |b| format!("{b}\n  {line}")));
                }
                if let Some(t) = &tx {
                    if let Some(i) = line.find("listening on http://") {
                        let addr = line[i + "listening on http://".len()..]
                            .split_whitespace()
                            .next()
                            .unwrap_or("")
                            .to_string();
                        let _ = t.send(Ok((addr, recovery.take())));
                        tx = None;
                    } else {
                        seen.push(line.clone());
                    }
                }
                if line.contains("ERROR") || line.contains("WARN") || line.contains("snapshot written") {
                    eprintln!("server: {line}");
                }
            }
            if let Some(t) = tx {
                let _ = t.send(Err(seen.join("\n")));
            }
        });
        let mut guard =
            ServerChild { child, addr: "127.0.0.1:0".parse().unwrap(), data: data.to_path_buf(), recovery: None };
        match rx.recv_timeout(START_TIMEOUT) {
            Ok(Ok((addr, recovery))) => {
                guard.addr = addr.parse().unwrap_or_else(|_| panic!("bad address in the log: {addr:?}"));
                guard.recovery = recovery;
            }
            Ok(Err(log)) => panic!("the server exited before listening:\n{log}"),
            Err(_) => panic!("the server did not say it was listening within {START_TIMEOUT:?}"),
        }
        guard
    }

    fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for ServerChild {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------
// A lean HTTP/1.1 keep-alive client: write a request, read the status line,
// the headers and a Content-Length (or chunked) body.

struct Conn {
    addr: SocketAddr,
    stream: Option<TcpStream>,
    buf: Vec<u8>,
    body: Vec<u8>,
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn io_err(msg: impl Into<String>) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, msg.into())
}

impl Conn {
    fn new(addr: SocketAddr) -> Conn {
        Conn { addr, stream: None, buf: Vec::with_capacity(16 * 1024), body: Vec::with_capacity(4 * 1024) }
    }

    /// Sends one request and reads its response; the body is left in `self.body`.
    async fn send(&mut self, req: &[u8]) -> std::io::Result<u16> {
        let r = self.exchange(req).await;
        if r.is_err() {
            self.stream = None;
        }
        r
    }

    async fn fill(stream: &mut TcpStream, buf: &mut Vec<u8>) -> std::io::Result<()> {
        buf.reserve(8 * 1024);
        if stream.read_buf(buf).await? == 0 {
            return Err(std::io::Error::new(std::io::ErrorKind::UnexpectedEof, "connection closed mid-response"));
        }
        Ok(())
    }

    async fn exchange(&mut self, req: &[u8]) -> std::io::Result<u16> {
        if self.stream.is_none() {
            let s = TcpStream::connect(self.addr).await?;
            s.set_nodelay(true)?;
            self.stream = Some(s);
        }
        let stream = self.stream.as_mut().unwrap();
        stream.write_all(req).await?;
        self.buf.clear();
        self.body.clear();
        let head_end = loop {
            if let Some(p) = find(&self.buf, b"\r\n\r\n") {
                break p + 4;
            }
            if self.buf.len() > 64 * 1024 {
                return Err(io_err("response headers over 64 KiB"));
            }
            Self::fill(stream, &mut self.buf).await?;
        };
        let head = std::str::from_utf8(&self.buf[..head_end]).map_err(|_| io_err("response headers are not UTF-8"))?;
        let mut lines = head.split("\r\n");
        let status: u16 = lines
            .next()
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| io_err("bad status line"))?;
        let (mut length, mut chunked, mut close) = (None, false, false);
        for line in lines {
            let Some((name, value)) = line.split_once(':') else {
                continue;
            };
            let value = value.trim();
            if name.eq_ignore_ascii_case("content-length") {
                length = value.parse::<usize>().ok();
            } else if name.eq_ignore_ascii_case("transfer-encoding") {
                chunked = value.eq_ignore_ascii_case("chunked");
            } else if name.eq_ignore_ascii_case("connection") {
                close = value.eq_ignore_ascii_case("close");
            }
        }
        if let Some(len) = length {
            while self.buf.len() < head_end + len {
                Self::fill(stream, &mut self.buf).await?;
            }
            self.body.extend_from_slice(&self.buf[head_end..head_end + len]);
        } else if chunked {
            let mut pos = head_end;
            loop {
                let line_end = loop {
                    if let Some(p) = find(&self.buf[pos..], b"\r\n") {
                        break pos + p;
                    }
                    Self::fill(stream, &mut self.buf).await?;
                };
                let size_text = std::str::from_utf8(&self.buf[pos..line_end]).map_err(|_| io_err("bad chunk size"))?;
                let size = usize::from_str_radix(size_text.split(';').next().unwrap().trim(), 16)
                    .map_err(|_| io_err("bad chunk size"))?;
                let data = line_end + 2;
                while self.buf.len() < data + size + 2 {
                    Self::fill(stream, &mut self.buf).await?;
                }
                if size == 0 {
                    break;
                }
                self.body.extend_from_slice(&self.buf[data..data + size]);
                pos = data + size + 2;
            }
        } else if status != 204 && status != 304 {
            return Err(io_err("response without Content-Length or chunking"));
        }
        if close {
            self.stream = None;
        }
        Ok(status)
    }
}

fn post(path: &str, body: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

/// `post` with an `Idempotency-Key`.
fn post_keyed(path: &str, body: &str, key: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(
        out,
        "POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET_KEY}\r\n\
         Idempotency-Key: {key}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
}

fn get(path: &str, out: &mut Vec<u8>) {
    use std::io::Write;
    out.clear();
    let _ = write!(out, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer {SECRET_KEY}\r\n\r\n");
}

/// xorshift64*: fast, good enough to pick members and amounts.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        ((self.next() >> 32) * n) >> 32
    }
}

// ---------------------------------------------------------------------------
// Setup over HTTP.

struct Member {
    customer: String,
    account: String,
}

fn json_id(body: &[u8]) -> Result<String, String> {
    let v: serde_json::Value = serde_json::from_slice(body).map_err(|e| format!("bad JSON ({e}): {body:?}"))?;
    v["id"].as_str().map(str::to_string).ok_or_else(|| format!("no id in {v}"))
}

async fn setup(addr: SocketAddr, members: usize, connections: usize) -> Vec<Member> {
    let mut conn = Conn::new(addr);
    let mut req = Vec::new();
    post("/v1/loyalty/earning_rules", r#"{"currency":"eur","points":1,"per_amount":100}"#, &mut req);
    let status = conn.send(&req).await.expect("creating the earning rule");
    assert_eq!(status, 200, "creating the earning rule: {}", String::from_utf8_lossy(&conn.body));
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.min(members) {
        let next = next.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut req = Vec::new();
            let mut made = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < members {
                post("/v1/customers", "{}", &mut req);
                let s = conn.send(&req).await.expect("creating a customer");
                assert_eq!(s, 200, "creating a customer: {}", String::from_utf8_lossy(&conn.body));
                let customer = json_id(&conn.body).expect("customer id");
                post("/v1/loyalty/accounts", &format!(r#"{{"customer":"{customer}"}}"#), &mut req);
                let s = conn.send(&req).await.expect("creating an account");
                assert_eq!(s, 200, "creating an account: {}", String::from_utf8_lossy(&conn.body));
                let account = json_id(&conn.body).expect("account id");
                made.push(Member { customer, account });
            }
            made
        }));
    }
    let mut all = Vec::with_capacity(members);
    for t in tasks {
        all.extend(t.await.expect("a setup task panicked"));
    }
    all
}

/// Setup of the redemption workload: the reward `BENCH_REWARD`, and one payment
/// of `BENCH_GRANT_AMOUNT` per member (its linked customer earns), over
/// `connections` connections like `setup`.
async fn setup_redemptions(addr: SocketAddr, members: Arc<Vec<Member>>, connections: usize) {
    let mut conn = Conn::new(addr);
    let mut req = Vec::new();
    let reward = format!(
        r#"{{"id":"{BENCH_REWARD}","name":"bench reward","points":{BENCH_REWARD_POINTS},"discount":{{"amount":500,"currency":"eur"}}}}"#
    );
    post("/v1/loyalty/rewards", &reward, &mut req);
    let status = conn.send(&req).await.expect("creating the reward");
    assert_eq!(status, 200, "creating the reward: {}", String::from_utf8_lossy(&conn.body));
    let expected_points = BENCH_GRANT_AMOUNT / 100;
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..connections.min(members.len()) {
        let (next, members) = (next.clone(), members.clone());
        tasks.push(tokio::spawn(async move {
            use std::fmt::Write;
            let mut conn = Conn::new(addr);
            let (mut req, mut body) = (Vec::new(), String::new());
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(m) = members.get(i) else { break };
                body.clear();
                let _ = write!(
                    body,
                    r#"{{"amount":{BENCH_GRANT_AMOUNT},"currency":"eur","customer":"{}","confirm":true}}"#,
                    m.customer
                );
                post("/v1/payments", &body, &mut req);
                let s = conn.send(&req).await.expect("paying for points");
                assert_eq!(s, 200, "paying for points: {}", String::from_utf8_lossy(&conn.body));
                let v: serde_json::Value = serde_json::from_slice(&conn.body).expect("a payment in JSON");
                assert_eq!(
                    v["points_earned"].as_i64(),
                    Some(expected_points),
                    "the setup payment of {} earned the wrong points: {v}",
                    m.customer
                );
            }
        }));
    }
    for t in tasks {
        t.await.expect("a setup task panicked");
    }
}

// ---------------------------------------------------------------------------
// The workloads.

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Workload {
    Earn,
    Read,
    /// Percent of reads; the rest are earns.
    Mix(u64),
    /// Create a redemption of `BENCH_REWARD`, then cancel it: two requests,
    /// two operations.
    RedeemCancel,
    /// The durable earn with a new `Idempotency-Key` on every request, as
    /// Stripe-style clients send it (the soak's workload).
    KeyedEarn,
}

impl Workload {
    fn name(self) -> String {
        match self {
            Workload::Earn => "durable earn".into(),
            Workload::Read => "read".into(),
            Workload::Mix(r) => format!("mix {r}% read / {}% earn", 100 - r),
            Workload::RedeemCancel => "redemption create+cancel".into(),
            Workload::KeyedEarn => "durable earn, keyed".into(),
        }
    }
}

/// The (first) request of one iteration of `w`; for `RedeemCancel` the create.
fn build(w: Workload, members: &[Member], rng: &mut Rng, req: &mut Vec<u8>, body: &mut String) {
    use std::fmt::Write;
    let read = match w {
        Workload::Earn | Workload::KeyedEarn => false,
        Workload::Read => true,
        Workload::Mix(pct) => rng.below(100) < pct,
        Workload::RedeemCancel => {
            let m = &members[rng.below(members.len() as u64) as usize];
            body.clear();
            let _ = write!(body, r#"{{"account":"{}","reward":"{BENCH_REWARD}"}}"#, m.account);
            post("/v1/loyalty/redemptions", body, req);
            return;
        }
    };
    let m = &members[rng.below(members.len() as u64) as usize];
    if read {
        body.clear();
        let _ = write!(body, "/v1/loyalty/accounts/{}", m.account);
        get(body, req);
    } else {
        let amount = 100 + rng.below(9901);
        body.clear();
        let _ = write!(body, r#"{{"amount":{amount},"currency":"eur","customer":"{}","confirm":true}}"#, m.customer);
        match w {
            // 128 random bits: no two requests of a run share a key.
            Workload::KeyedEarn => post_keyed("/v1/payments", body, &format!("{:x}{:x}", rng.next(), rng.next()), req),
            _ => post("/v1/payments", body, req),
        }
    }
}

/// The cancel of redemption `id` (an empty body is `{}`).
fn build_cancel(id: &str, req: &mut Vec<u8>, path: &mut String) {
    use std::fmt::Write;
    path.clear();
    let _ = write!(path, "/v1/loyalty/redemptions/{id}/cancel");
    post(path, "", req);
}

/// The span of the `id` in a JSON object answer: the first `"id":"` (the server
/// writes compact JSON, the object's own id first), up to the closing quote. A
/// plain search, not a parse: the generator shares the cores with the server.
fn id_span(body: &[u8]) -> Option<Range<usize>> {
    const KEY: &[u8] = b"\"id\":\"";
    let start = find(body, KEY)? + KEY.len();
    let len = body[start..].iter().position(|&b| b == b'"')?;
    let id = &body[start..start + len];
    (len > 0 && id.iter().all(|b| b.is_ascii_alphanumeric() || *b == b'_')).then_some(start..start + len)
}

/// One timed request of a workload, with the window and error accounting: it
/// counts (latency or error) only if sent at or after `window.0` and answered by
/// `window.1`. `t0` is when the iteration started building it. With
/// `id_prefix`, a 200 must also carry an `id` starting with it. Returns `None`
/// on an error, else the span of that id in `conn.body` (empty without `id_prefix`).
async fn request(
    conn: &mut Conn,
    req: &[u8],
    t0: Instant,
    window: (Instant, Instant),
    id_prefix: Option<&[u8]>,
    r: &mut TaskResult,
) -> Option<Range<usize>> {
    let res = tokio::time::timeout(REQUEST_TIMEOUT, conn.send(req)).await;
    let t1 = Instant::now();
    let counted = t0 >= window.0 && t1 <= window.1;
    let mut span = 0..0;
    let error = match res {
        Ok(Ok(200)) => match id_prefix {
            None => None,
            Some(prefix) => match id_span(&conn.body).filter(|s| conn.body[s.clone()].starts_with(prefix)) {
                Some(s) => {
                    span = s;
                    None
                }
                None => {
                    Some(("no id".to_string(), format!("200 without an id: {}", String::from_utf8_lossy(&conn.body))))
                }
            },
        },
        Ok(Ok(s)) => Some((s.to_string(), format!("{s}: {}", String::from_utf8_lossy(&conn.body)))),
        Ok(Err(e)) => Some(("io".to_string(), format!("io: {e}"))),
        Err(_) => {
            conn.stream = None;
            Some(("timeout".to_string(), "timeout".to_string()))
        }
    };
    if let Some((kind, msg)) = error {
        if counted {
            r.errors += 1;
            *r.statuses.entry(kind).or_default() += 1;
            r.first_error.get_or_insert(msg);
        }
        if conn.stream.is_none() {
            // Do not spin on a refused connection.
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        return None;
    }
    if counted {
        let us = (t1 - t0).as_micros().min(u32::MAX as u128) as u32;
        r.latencies_us.push(us);
    }
    Some(span)
}

#[derive(Default)]
struct TaskResult {
    latencies_us: Vec<u32>,
    errors: u64,
    statuses: std::collections::BTreeMap<String, u64>,
    first_error: Option<String>,
}

struct RunResult {
    ops: u64,
    seconds: f64,
    p50_ms: f64,
    p99_ms: f64,
    p999_ms: f64,
    max_ms: f64,
    errors: u64,
    statuses: std::collections::BTreeMap<String, u64>,
    first_error: Option<String>,
    /// CPU used in the measured window, in cores (1.0 = one core busy).
    server_cores: Option<f64>,
    client_cores: f64,
    machine_busy: f64,
    wal_bytes: Option<u64>,
    /// `perf stat` counters of the server in the window (LOAD_PERF_STAT=1).
    perf_stat: Vec<(String, f64)>,
    /// The server's WAL counters over the window, from `/metrics` (if it serves them).
    wal: Option<WalDelta>,
}

#[derive(Clone, Copy, Default)]
struct WalDelta {
    records: f64,
    batches: f64,
    sync_seconds: f64,
    /// Batches whose write + fdatasync, or whose apply, took over `SLOW_BATCH_SECONDS`.
    slow_syncs: f64,
    slow_applies: f64,
}

/// A WAL batch slower than this (to sync, or to apply) is counted as a stall
/// (counted from the histogram bucket at 5.12 ms: "over 5 ms" means over that).
const SLOW_BATCH_SECONDS: f64 = 0.005;

/// Observations of the histogram `metric` above `SLOW_BATCH_SECONDS` (to the
/// nearest bucket bound at or above it), from Prometheus text.
fn slow_count(text: &str, metric: &str) -> Option<f64> {
    let total = text.lines().find_map(|l| l.strip_prefix(&format!("{metric}_count ")))?.trim().parse::<f64>().ok()?;
    let bucket = format!("{metric}_bucket{{le=\"");
    let within = text
        .lines()
        .filter_map(|l| {
            let rest = l.strip_prefix(&bucket)?;
            let (le, count) = rest.split_once("\"} ")?;
            Some((le.parse::<f64>().ok()?, count.trim().parse::<f64>().ok()?))
        })
        .filter(|(le, _)| *le >= SLOW_BATCH_SECONDS)
        .min_by(|a, b| a.0.total_cmp(&b.0))?
        .1;
    Some(total - within)
}

/// The WAL counters of `/metrics`: records, batches (= fdatasyncs) and total sync time.
async fn wal_metrics(addr: SocketAddr) -> Option<WalDelta> {
    let mut conn = Conn::new(addr);
    let mut req = Vec::new();
    get("/metrics", &mut req);
    if tokio::time::timeout(REQUEST_TIMEOUT, conn.send(&req)).await.ok()?.ok()? != 200 {
        return None;
    }
    let text = String::from_utf8_lossy(&conn.body);
    let value = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name).and_then(|rest| rest.strip_prefix(' ')))
            .and_then(|v| v.trim().parse::<f64>().ok())
    };
    Some(WalDelta {
        records: value("ledger_wal_records_total")?,
        batches: value("ledger_wal_batches_total")?,
        sync_seconds: value("ledger_wal_sync_duration_seconds_sum").unwrap_or(f64::NAN),
        slow_syncs: slow_count(&text, "ledger_wal_sync_duration_seconds").unwrap_or(f64::NAN),
        slow_applies: slow_count(&text, "ledger_wal_apply_duration_seconds").unwrap_or(f64::NAN),
    })
}

impl RunResult {
    fn ops_per_s(&self) -> f64 {
        self.ops as f64 / self.seconds
    }
}

fn percentile(sorted: &[u32], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i] as f64 / 1000.0
}

/// CPU seconds (user + system) of a process, from /proc.
fn proc_cpu_seconds(pid: &str) -> Option<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    // After the command: state(0) ... utime is field 14 of the line, index 11 here.
    let utime: f64 = f.get(11)?.parse().ok()?;
    let stime: f64 = f.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn cores() -> f64 {
    std::thread::available_parallelism().map(|n| n.get() as f64).unwrap_or(1.0)
}

fn clock_ticks() -> f64 {
    // USER_HZ is 100 on every Linux this runs on; getconf would need libc.
    100.0
}

/// (busy, total) jiffies of the whole machine.
fn machine_jiffies() -> (u64, u64) {
    let stat = std::fs::read_to_string("/proc/stat").unwrap_or_default();
    let line = stat.lines().next().unwrap_or("");
    let v: Vec<u64> = line.split_whitespace().skip(1).filter_map(|x| x.parse().ok()).collect();
    if v.len() < 5 {
        return (0, 1);
    }
    let total: u64 = v.iter().take(8).sum();
    let idle = v[3] + v[4];
    (total - idle, total)
}

struct Sample {
    server_cpu: Option<f64>,
    client_cpu: f64,
    machine: (u64, u64),
    wal: Option<u64>,
}

fn sample(server_pid: Option<u32>, wal_dir: Option<&Path>) -> Sample {
    Sample {
        server_cpu: server_pid.and_then(|p| proc_cpu_seconds(&p.to_string())),
        client_cpu: proc_cpu_seconds("self").unwrap_or(0.0),
        machine: machine_jiffies(),
        wal: wal_dir.map(common::tree_bytes),
    }
}

async fn drive(
    addr: SocketAddr,
    w: Workload,
    members: Arc<Vec<Member>>,
    opts: Options,
    server_pid: Option<u32>,
    wal_dir: Option<PathBuf>,
) -> RunResult {
    let start = Instant::now() + Duration::from_millis(50);
    let measure_from = start + Duration::from_secs_f64(opts.warmup);
    let measure_to = measure_from + Duration::from_secs_f64(opts.seconds);
    let mut tasks = Vec::new();
    for c in 0..opts.connections {
        let members = members.clone();
        tasks.push(tokio::spawn(async move {
            let mut conn = Conn::new(addr);
            let mut rng = Rng::new(0x5EED + c as u64 * 7919);
            let (mut req, mut scratch) = (Vec::with_capacity(512), String::with_capacity(256));
            let mut r = TaskResult { latencies_us: Vec::with_capacity(64 * 1024), ..Default::default() };
            tokio::time::sleep_until(start.into()).await;
            let window = (measure_from, measure_to);
            let redeem = w == Workload::RedeemCancel;
            let prefix: Option<&[u8]> = if redeem { Some(b"rdm_") } else { None };
            loop {
                let t0 = Instant::now();
                if t0 >= measure_to {
                    break;
                }
                build(w, &members, &mut rng, &mut req, &mut scratch);
                let Some(id) = request(&mut conn, &req, t0, window, prefix, &mut r).await else {
                    continue;
                };
                if redeem {
                    // Cancel what was just created, even past the window (then not
                    // counted), so that no connection leaves points held.
                    let t0 = Instant::now();
                    let id = std::str::from_utf8(&conn.body[id]).expect("id_span checked ASCII");
                    build_cancel(id, &mut req, &mut scratch);
                    request(&mut conn, &req, t0, window, None, &mut r).await;
                }
            }
            r
        }));
    }
    tokio::time::sleep_until(measure_from.into()).await;
    let before = sample(server_pid, wal_dir.as_deref());
    let wal_before = if server_pid.is_some() { wal_metrics(addr).await } else { None };
    let probes = server_pid.map(|pid| Probes::attach(pid, opts.seconds, w)).unwrap_or_default();
    tokio::time::sleep_until(measure_to.into()).await;
    let after = sample(server_pid, wal_dir.as_deref());
    let wal_after = if server_pid.is_some() { wal_metrics(addr).await } else { None };
    let syscalls = probes.finish();
    let mut all = Vec::new();
    let (mut errors, mut statuses, mut first_error) = (0, std::collections::BTreeMap::new(), None);
    for t in tasks {
        let r = t.await.expect("a load task panicked");
        all.extend_from_slice(&r.latencies_us);
        errors += r.errors;
        for (k, v) in r.statuses {
            *statuses.entry(k).or_insert(0) += v;
        }
        if first_error.is_none() {
            first_error = r.first_error;
        }
    }
    all.sort_unstable();
    let secs = opts.seconds;
    let busy = (after.machine.0 - before.machine.0) as f64;
    let total = (after.machine.1 - before.machine.1).max(1) as f64;
    RunResult {
        ops: all.len() as u64,
        seconds: secs,
        p50_ms: percentile(&all, 0.50),
        p99_ms: percentile(&all, 0.99),
        p999_ms: percentile(&all, 0.999),
        max_ms: all.last().map(|&u| u as f64 / 1000.0).unwrap_or(f64::NAN),
        errors,
        statuses,
        first_error,
        server_cores: match (before.server_cpu, after.server_cpu) {
            (Some(a), Some(b)) => Some((b - a) / secs),
            _ => None,
        },
        client_cores: (after.client_cpu - before.client_cpu) / secs,
        machine_busy: busy / total,
        wal_bytes: match (before.wal, after.wal) {
            (Some(a), Some(b)) => Some(b.saturating_sub(a)),
            _ => None,
        },
        perf_stat: syscalls,
        wal: match (wal_before, wal_after) {
            (Some(a), Some(b)) => Some(WalDelta {
                records: b.records - a.records,
                batches: b.batches - a.batches,
                sync_seconds: b.sync_seconds - a.sync_seconds,
                slow_syncs: b.slow_syncs - a.slow_syncs,
                slow_applies: b.slow_applies - a.slow_applies,
            }),
            _ => None,
        },
    }
}

/// Optional profilers attached to the server for one measured window:
/// `LOAD_PERF_STAT=1` counts fdatasync calls (= WAL batches), context switches
/// and CPU time with `perf stat`; `LOAD_PERF_RECORD=DIR` samples stacks with
/// `perf record` into `DIR/<workload>.perf`. Both need `perf` and are off by default.
#[derive(Default)]
struct Probes {
    stat: Option<Child>,
    trace: Option<Child>,
    record: Option<Child>,
}

impl Probes {
    fn attach(pid: u32, seconds: f64, w: Workload) -> Probes {
        let secs = format!("{seconds}");
        let mut p = Probes::default();
        if std::env::var("LOAD_PERF_STAT").is_ok_and(|v| v == "1") {
            p.stat = Command::new("perf")
                .args(["stat", "-x", ",", "-e"])
                .arg("syscalls:sys_enter_fdatasync,syscalls:sys_enter_futex,context-switches,task-clock")
                .args(["-p", &pid.to_string(), "--", "sleep", &secs])
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| eprintln!("LOAD_PERF_STAT: cannot run perf: {e}"))
                .ok();
        }
        if std::env::var("LOAD_PERF_TRACE").is_ok_and(|v| v == "1") {
            p.trace = Command::new("timeout")
                .args(["-s", "INT", &secs, "perf", "trace", "-s", "-e", "fdatasync,write,writev,sendto"])
                .args(["-p", &pid.to_string()])
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| eprintln!("LOAD_PERF_TRACE: cannot run perf: {e}"))
                .ok();
        }
        if let Ok(dir) = std::env::var("LOAD_PERF_RECORD") {
            let slug: String = w.name().chars().map(|c| if c.is_ascii_alphanumeric() { c } else { '_' }).collect();
            let out = Path::new(&dir).join(format!("{slug}.perf"));
            p.record = Command::new("perf")
                .args(["record", "-F", "199", "--call-graph", "dwarf,16384", "-o"])
                .arg(&out)
                .args(["-p", &pid.to_string(), "--", "sleep", &secs])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .map_err(|e| eprintln!("LOAD_PERF_RECORD: cannot run perf: {e}"))
                .ok();
        }
        p
    }

    /// Waits for the probes (they stop with the window) and reads `perf stat`'s counters.
    fn finish(self) -> Vec<(String, f64)> {
        let mut counters = Vec::new();
        if let Some(child) = self.stat {
            if let Ok(out) = child.wait_with_output() {
                for line in String::from_utf8_lossy(&out.stderr).lines() {
                    let f: Vec<&str> = line.split(',').collect();
                    if f.len() >= 3 {
                        if let Ok(v) = f[0].parse::<f64>() {
                            counters.push((f[2].to_string(), v));
                        }
                    }
                }
            }
        }
        if let Some(child) = self.trace {
            if let Ok(out) = child.wait_with_output() {
                let text = String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
                for line in text.lines() {
                    let t = line.trim_start();
                    if t.contains(" events") || t.starts_with("syscall") || t.starts_with("fdatasync") {
                        counters.push((format!("trace: {}", line.trim_end()), f64::NAN));
                    }
                }
            }
        }
        if let Some(mut child) = self.record {
            let _ = child.wait();
        }
        counters
    }
}

// ---------------------------------------------------------------------------
// The ceiling: a bare actix-web route, same JSON body, no state, no disk.

mod ceiling {
    use std::collections::HashMap;
    use std::net::SocketAddr;
    use std::sync::mpsc;

    use actix_web::dev::ServerHandle;
    use actix_web::{web, App, HttpResponse, HttpServer};
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct CreatePayment {
        amount: i64,
        currency: String,
        customer: Option<String>,
        metadata: Option<HashMap<String, String>>,
        confirm: Option<bool>,
    }

    #[derive(Serialize)]
    struct Answer<'a> {
        id: &'a str,
        object: &'a str,
        amount: i64,
        currency: &'a str,
        status: &'a str,
    }

    async fn create(body: web::Bytes) -> HttpResponse {
        match serde_json::from_slice::<CreatePayment>(&body) {
            Ok(p) => HttpResponse::Ok().content_type("application/json").body(
                serde_json::to_vec(&Answer {
                    id: "pay_ceiling",
                    object: "payment",
                    amount: p.amount,
                    currency: &p.currency,
                    status: "completed",
                })
                .unwrap(),
            ),
            Err(e) => HttpResponse::BadRequest()
                .content_type("application/json")
                .body(format!(r#"{{"error":{{"message":"{e}"}}}}"#)),
        }
    }

    pub struct Ceiling {
        pub addr: SocketAddr,
        handle: ServerHandle,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl Ceiling {
        pub fn start(workers: usize) -> Ceiling {
            let (tx, rx) = mpsc::channel();
            let thread = std::thread::spawn(move || {
                actix_web::rt::System::new().block_on(async move {
                    let server = HttpServer::new(|| App::new().route("/v1/payments", web::post().to(create)))
                        .workers(workers)
                        .bind("127.0.0.1:0")
                        .expect("binding the ceiling server");
                    let addr = server.addrs()[0];
                    let server = server.run();
                    tx.send((addr, server.handle())).unwrap();
                    let _ = server.await;
                })
            });
            let (addr, handle) = rx.recv().expect("the ceiling server did not start");
            Ceiling { addr, handle, thread: Some(thread) }
        }
    }

    impl Drop for Ceiling {
        fn drop(&mut self) {
            let stop = self.handle.stop(false);
            // The handle's future must be polled for the stop to be sent.
            block_on(stop);
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }

    fn block_on<F: std::future::Future>(f: F) -> F::Output {
        tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap().block_on(f)
    }
}

// ---------------------------------------------------------------------------

fn ms(v: f64) -> String {
    if v.is_nan() {
        "-".into()
    } else {
        format!("{v:.2}")
    }
}

fn print_row(name: &str, r: &RunResult, ceiling: Option<f64>) {
    let ratio = ceiling.map(|c| format!("{:.2}x", r.ops_per_s() / c)).unwrap_or_else(|| "1.00x".into());
    println!(
        "{:<26} {:>10.0} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>7} {:>5.0}% {:>6.2}",
        name,
        r.ops_per_s(),
        ms(r.p50_ms),
        ms(r.p99_ms),
        ms(r.p999_ms),
        ms(r.max_ms),
        r.errors,
        ratio,
        r.server_cores.map(|c| format!("{c:.2}")).unwrap_or_else(|| "-".into()),
        format!("{:.2}", r.client_cores),
        r.machine_busy * 100.0,
        (r.machine_busy * cores() - r.server_cores.unwrap_or(0.0) - r.client_cores).max(0.0),
    );
}

/// The ceiling: a bare actix-web route in this process (`ceiling`), driven
/// like the durable earn, with bodies of the same size.
fn measure_ceiling(rt: &tokio::runtime::Runtime, opts: Options, label: &str) -> RunResult {
    let c = ceiling::Ceiling::start(opts.workers);
    let members = Arc::new(
        // Same ids shape as real members, so the bodies are the same size.
        (0..opts.members)
            .map(|i| Member { customer: format!("cust_{:016}", i), account: format!("loy_{:016}", i) })
            .collect::<Vec<_>>(),
    );
    let r = rt.block_on(drive(c.addr, Workload::Earn, members, opts, None, None));
    println!("  {:<24} {:.0} ops/s, p99 {} ms, {} errors", label, r.ops_per_s(), ms(r.p99_ms), r.errors);
    r
}

// ---------------------------------------------------------------------------
// The soak (`LOAD_SOAK_SECONDS`): keyed durable earns at full speed for a long
// time, resident memory and disk sampled as it goes, then kill -9 and the
// time to ready.

/// How often the soak samples the server.
const SOAK_SAMPLE_SECONDS: f64 = 5.0;
/// Memory growth is measured from this fraction of the run on (after warm-up:
/// the tables' first growth, the allocator's arenas, the first snapshot).
const SOAK_WARM_FRACTION: f64 = 1.0 / 6.0;
/// The targets of docs/performance.md.
const SOAK_GROWTH_TARGET_BYTES: f64 = 100.0;
const SOAK_RESTART_TARGET_SECONDS: f64 = 10.0;

struct SoakSample {
    seconds: f64,
    rss_bytes: u64,
    records: f64,
    wal_bytes: u64,
    history_bytes: u64,
}

fn rss_bytes(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
        .map_or(0, |kib| kib * 1024)
}

fn soak(rt: &tokio::runtime::Runtime, opts: Options, seconds: f64) {
    println!("soak: {seconds} s of keyed durable earns, {} connections, {} members", opts.connections, opts.members);
    let tmp = tempfile::tempdir().expect("temporary data directory");
    let server = ServerChild::start(tmp.path(), opts.workers);
    let (addr, pid) = (server.addr, server.pid());
    let members = rt.block_on(async {
        tokio::time::timeout(SETUP_TIMEOUT, setup(addr, opts.members, opts.connections))
            .await
            .expect("setup took too long")
    });
    let (wal_dir, history_dir) = (tmp.path().join("wal"), tmp.path().join("history"));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let sampler = {
        let (stop, handle) = (stop.clone(), rt.handle().clone());
        let (wal_dir, history_dir) = (wal_dir.clone(), history_dir.clone());
        std::thread::spawn(move || {
            let started = Instant::now();
            let mut samples = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let records = handle.block_on(wal_metrics(addr)).map_or(f64::NAN, |m| m.records);
                samples.push(SoakSample {
                    seconds: started.elapsed().as_secs_f64(),
                    rss_bytes: rss_bytes(pid),
                    records,
                    wal_bytes: common::tree_bytes(&wal_dir),
                    history_bytes: common::tree_bytes(&history_dir),
                });
                std::thread::sleep(Duration::from_secs_f64(SOAK_SAMPLE_SECONDS));
            }
            samples
        })
    };
    let soak_opts = Options { seconds, ..opts };
    let r = rt.block_on(drive(addr, Workload::KeyedEarn, Arc::new(members), soak_opts, Some(pid), None));
    stop.store(true, Ordering::Relaxed);
    let samples = sampler.join().expect("the sampler panicked");
    let metric_lines = rt.block_on(async {
        let mut conn = Conn::new(addr);
        let mut req = Vec::new();
        get("/metrics", &mut req);
        match conn.send(&req).await {
            Ok(200) => String::from_utf8_lossy(&conn.body).into_owned(),
            _ => String::new(),
        }
    });
    println!("{:>8} {:>10} {:>12} {:>10} {:>12}", "seconds", "RSS MiB", "WAL records", "WAL MiB", "history MiB");
    let step = samples.len().div_ceil(40).max(1);
    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    for s in samples.iter().step_by(step).chain(samples.last()) {
        println!(
            "{:>8.0} {:>10.1} {:>12.0} {:>10.1} {:>12.1}",
            s.seconds,
            mib(s.rss_bytes),
            s.records,
            mib(s.wal_bytes),
            mib(s.history_bytes)
        );
    }
    for line in metric_lines.lines().filter(|l| {
        !l.starts_with('#')
            && (l.starts_with("ledger_snapshots_total")
                || l.starts_with("ledger_idempotency_responses_in_memory")
                || l.starts_with("ledger_history_remembered_total")
                || l.starts_with("ledger_history_errors_total"))
    }) {
        println!("  {line}");
    }
    let warm = samples.iter().find(|s| s.seconds >= (seconds + opts.warmup) * SOAK_WARM_FRACTION);
    let growth = match (warm, samples.last()) {
        (Some(a), Some(b)) if b.records > a.records => {
            Some((b.rss_bytes as f64 - a.rss_bytes as f64) / (b.records - a.records))
        }
        _ => None,
    };
    // Restart after kill -9 at the end of the soak.
    drop(server);
    if let Ok(keep) = std::env::var("LOAD_SOAK_KEEP") {
        let copied = std::process::Command::new("cp").arg("-a").arg(tmp.path()).arg(&keep).status();
        println!("data directory copied to {keep}: {copied:?}");
    }
    let t = Instant::now();
    let restarted = ServerChild::start(tmp.path(), opts.workers);
    let ready = t.elapsed().as_secs_f64();
    println!(
        "restart after kill -9: ready in {ready:.2} s; {}",
        restarted.recovery.as_deref().unwrap_or("no recovery line")
    );
    drop(restarted);
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    println!();
    println!("soak targets (docs/performance.md, Targets):");
    println!(
        "  {:.0} keyed earns/s, p99 {} ms; non-2xx {} (target 0): {}",
        r.ops_per_s(),
        ms(r.p99_ms),
        r.errors,
        verdict(r.errors == 0)
    );
    if r.errors > 0 {
        println!("  errors by kind {:?}; first: {}", r.statuses, r.first_error.as_deref().unwrap_or(""));
    }
    match growth {
        Some(g) => println!(
            "  resident memory after warm-up: {g:.0} bytes per earn (target <= {SOAK_GROWTH_TARGET_BYTES}): {}",
            verdict(g <= SOAK_GROWTH_TARGET_BYTES)
        ),
        None => println!("  resident memory: too few samples after warm-up"),
    }
    println!(
        "  restart to ready: {ready:.2} s (target <= {SOAK_RESTART_TARGET_SECONDS} s): {}",
        verdict(ready <= SOAK_RESTART_TARGET_SECONDS)
    );
}

fn main() {
    // `cargo bench` passes `--bench` (and maybe a filter; there is nothing to filter here).
    // Built as a test (`cargo test --benches`), it does not start a load run.
    if !std::env::args().any(|a| a == "--bench") {
        println!("load bench: skipped (run it with `cargo bench --bench load`)");
        return;
    }
    let opts = Options::from_env();
    println!(
        "load bench: {} s per workload after {} s warm-up, {} connections, {} members, \
         {} client threads, {} server workers, {} cores",
        opts.seconds,
        opts.warmup,
        opts.connections,
        opts.members,
        opts.client_threads,
        opts.workers,
        std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0)
    );
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(opts.client_threads)
        .enable_all()
        .build()
        .expect("tokio runtime");
    let soak_seconds: f64 = common::env_num("LOAD_SOAK_SECONDS", 0.0);
    if soak_seconds > 0.0 {
        soak(&rt, opts, soak_seconds);
        return;
    }

    let ceiling_before = measure_ceiling(&rt, opts, "ceiling, before the server");
    let tmp = tempfile::tempdir().expect("temporary data directory");
    let mut results: Vec<(Workload, RunResult)> = Vec::new();
    {
        let server = ServerChild::start(tmp.path(), opts.workers);
        println!("server pid {} on {}", server.pid(), server.addr);
        let addr = server.addr;
        let t = Instant::now();
        let members = rt.block_on(async {
            tokio::time::timeout(SETUP_TIMEOUT, setup(addr, opts.members, opts.connections))
                .await
                .expect("setup took too long")
        });
        let setup_s = t.elapsed().as_secs_f64();
        println!(
            "setup: 1 earning rule, {} members ({} durable creates) in {:.1} s = {:.0} creates/s",
            members.len(),
            2 * members.len(),
            setup_s,
            2.0 * members.len() as f64 / setup_s
        );
        let members = Arc::new(members);
        let t = Instant::now();
        rt.block_on(async {
            tokio::time::timeout(SETUP_TIMEOUT, setup_redemptions(addr, members.clone(), opts.connections))
                .await
                .expect("setup of the redemptions took too long")
        });
        let setup_s = t.elapsed().as_secs_f64();
        println!(
            "setup: 1 reward ({BENCH_REWARD_POINTS} points), {} payments of {BENCH_GRANT_AMOUNT} minor units \
             ({} points each) in {:.1} s = {:.0} payments/s",
            members.len(),
            BENCH_GRANT_AMOUNT / 100,
            setup_s,
            members.len() as f64 / setup_s
        );
        let wal_dir = server.data.join("wal");
        for w in [Workload::Earn, Workload::KeyedEarn, Workload::Read, Workload::Mix(80), Workload::RedeemCancel] {
            let r = rt.block_on(drive(addr, w, members.clone(), opts, Some(server.pid()), Some(wal_dir.clone())));
            println!("  {:<24} {:.0} ops/s, p99 {} ms, {} errors", w.name(), r.ops_per_s(), ms(r.p99_ms), r.errors);
            results.push((w, r));
        }
        // /metrics, if this build serves it: the WAL's batches vs records.
        let metrics = rt.block_on(async {
            let mut conn = Conn::new(addr);
            let mut req = Vec::new();
            get("/metrics", &mut req);
            match conn.send(&req).await {
                Ok(200) => Some(String::from_utf8_lossy(&conn.body).into_owned()),
                _ => None,
            }
        });
        match metrics {
            Some(text) => {
                println!("server /metrics (wal lines):");
                for line in text.lines().filter(|l| l.contains("wal") && !l.starts_with('#') && !l.contains("_bucket"))
                {
                    println!("  {line}");
                }
            }
            None => println!("server /metrics: not served by this build"),
        }
        println!("WAL on disk after the run: {} bytes", common::tree_bytes(&wal_dir));
        // Replay at startup: kill the server and start it again on the same data.
        drop(server);
        let restarted = ServerChild::start(tmp.path(), opts.workers);
        match restarted.recovery.as_deref() {
            Some(line) => {
                let field = |name: &str| {
                    line.split_whitespace()
                        .find_map(|kv| kv.strip_prefix(name).and_then(|v| v.strip_prefix('=')))
                        .and_then(|v| v.parse::<f64>().ok())
                };
                match (field("records"), field("elapsed_ms")) {
                    (Some(records), Some(ms)) => {
                        let rate = records / (ms.max(1.0) / 1000.0);
                        println!(
                            "restart after kill: replayed {records:.0} WAL records (as the load wrote them) in \
                             {ms:.0} ms = {rate:.0} records/s (target >= 1000000: {}); snapshot: {}",
                            if rate >= 1e6 { "met" } else { "MISSED" },
                            line.split_whitespace().find_map(|kv| kv.strip_prefix("snapshot=")).unwrap_or("?")
                        );
                    }
                    _ => println!("restart after kill: {line}"),
                }
            }
            None => println!("restart after kill: no \"recovery done\" line in the log"),
        }
        // The server is killed here, before the ceiling runs.
    }

    let ceiling_after = measure_ceiling(&rt, opts, "ceiling, after the server");
    // The ratios use the mean of the two: the machine drifts during a run.
    let ceilings = [&ceiling_before, &ceiling_after];
    let ceiling = (ceiling_before.ops_per_s() + ceiling_after.ops_per_s()) / 2.0;

    println!();
    println!(
        "{:<26} {:>10} {:>8} {:>8} {:>8} {:>8} {:>7} {:>8} {:>7} {:>7} {:>6} {:>6}",
        "workload",
        "ops/s",
        "p50 ms",
        "p99 ms",
        "p999 ms",
        "max ms",
        "errors",
        "x ceil",
        "srv cpu",
        "cli cpu",
        "busy",
        "others"
    );
    print_row("ceiling, before the server", &ceiling_before, None);
    print_row("ceiling, after the server", &ceiling_after, None);
    for (w, r) in &results {
        print_row(&w.name(), r, Some(ceiling));
    }
    println!(
        "(srv/cli cpu: cores used by the server and by this process in the window (for the ceiling \
         its server runs inside this process); busy: the whole machine; others: cores used by \
         other processes, which should be near 0 for numbers worth keeping)"
    );
    if results.iter().any(|(w, _)| *w == Workload::RedeemCancel) {
        println!(
            "(redemption create+cancel: ops/s, latencies and x ceil count each HTTP request as one \
             operation, so one create + its cancel is 2 ops)"
        );
    }
    for (w, r) in &results {
        if let (Some(b), Workload::Earn) = (r.wal_bytes, w) {
            if r.ops > 0 {
                println!(
                    "durable earn: {:.0} WAL bytes per earn, {:.1} MB/s written",
                    b as f64 / r.ops as f64,
                    b as f64 / r.seconds / 1e6
                );
            }
        }
        if r.errors > 0 {
            println!(
                "{}: errors by kind {:?}; first: {}",
                w.name(),
                r.statuses,
                r.first_error.as_deref().unwrap_or("")
            );
        }
    }
    for (w, r) in &results {
        if let Some(d) = r.wal {
            if d.batches > 0.0 {
                println!(
                    "{}: WAL {:.0} records in {:.0} batches ({:.1} records per batch, {:.0} batches/s), \
                     mean write+fdatasync {:.2} ms, WAL thread busy syncing {:.0}% of the window; \
                     batches over {:.0} ms: {:.0} to sync, {:.0} to apply",
                    w.name(),
                    d.records,
                    d.batches,
                    d.records / d.batches,
                    d.batches / r.seconds,
                    d.sync_seconds / d.batches * 1000.0,
                    d.sync_seconds / r.seconds * 100.0,
                    SLOW_BATCH_SECONDS * 1000.0,
                    d.slow_syncs,
                    d.slow_applies
                );
            }
        }
    }
    for (w, r) in &results {
        if r.perf_stat.is_empty() {
            continue;
        }
        let get = |name: &str| r.perf_stat.iter().find(|(n, _)| n.contains(name)).map(|(_, v)| *v);
        let per_op = |v: f64| v / r.ops.max(1) as f64;
        let mut line = format!("{}: server perf stat:", w.name());
        if let Some(v) = get("fdatasync") {
            line +=
                &format!(" {v:.0} fdatasync ({:.0}/s, {:.1} ops per sync),", v / r.seconds, r.ops as f64 / v.max(1.0));
        }
        if let Some(v) = get("context-switches") {
            line += &format!(" {:.1} context switches per op,", per_op(v));
        }
        if let Some(v) = get("futex") {
            line += &format!(" {:.1} futex calls per op,", per_op(v));
        }
        if let Some(v) = get("task-clock") {
            line += &format!(" {:.1} us server CPU per op", per_op(v) * 1000.0);
        }
        println!("{line}");
        for (name, _) in r.perf_stat.iter().filter(|(n, _)| n.starts_with("trace: ")) {
            println!("  perf {name}");
        }
    }
    println!(
        "(x ceil: against the mean of the two ceiling runs, {ceiling:.0} ops/s; they differ by {:.0} %)",
        (ceiling_before.ops_per_s() - ceiling_after.ops_per_s()).abs() / ceiling.max(1.0) * 100.0
    );
    for c in ceilings {
        if c.errors > 0 {
            println!("ceiling: errors by kind {:?}; first: {}", c.statuses, c.first_error.as_deref().unwrap_or(""));
        }
    }

    println!();
    println!("targets (docs/performance.md, Targets):");
    let verdict = |ok: bool| if ok { "met" } else { "MISSED" };
    for (w, r) in &results {
        let ratio = r.ops_per_s() / ceiling;
        match w {
            Workload::Earn => {
                // Two targets, each with its own verdict: one can be met while the other is not.
                println!(
                    "  durable earn: {ratio:.2}x ceiling (target >= {EARN_RATIO_TARGET}x): {}; \
                     p99 {} ms (target <= {EARN_P99_TARGET_MS} ms): {}",
                    verdict(ratio >= EARN_RATIO_TARGET),
                    ms(r.p99_ms),
                    verdict(r.p99_ms <= EARN_P99_TARGET_MS)
                );
            }
            Workload::Read => {
                println!(
                    "  read: {ratio:.2}x ceiling (target >= {READ_RATIO_TARGET}x): {}",
                    verdict(ratio >= READ_RATIO_TARGET)
                );
            }
            Workload::Mix(_) | Workload::KeyedEarn => {
                println!("  {}: {ratio:.2}x ceiling (no target; reported)", w.name());
            }
            Workload::RedeemCancel => {
                println!(
                    "  redemption create + cancel: {ratio:.2}x ceiling in operations (each request one; \
                     target >= {REDEEM_RATIO_TARGET}x): {}",
                    verdict(ratio >= REDEEM_RATIO_TARGET)
                );
            }
        }
    }
}
