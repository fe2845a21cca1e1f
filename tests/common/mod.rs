//! The one helper every black-box test uses: it starts the real
//! `loyalty-ledger` binary on a free port with its own data directory, and
//! talks to it over real HTTP.

#![allow(dead_code)]

pub mod fuzz;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

pub const SECRET_KEY: &str = "sk_test_0123456789";
/// How long a server may take to become ready.
pub const START_TIMEOUT: Duration = Duration::from_secs(60);

pub struct Server {
    /// Behind a lock so a crash test can `kill9` while client threads still use the server.
    child: Mutex<Option<Child>>,
    pub base: String,
    pub data: PathBuf,
    log: Arc<Mutex<Vec<String>>>,
    agent: ureq::Agent,
    /// Keeps the temporary data directory alive when the server made it.
    _tmp: Option<tempfile::TempDir>,
}

/// An HTTP answer.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub body: Value,
    pub replayed: bool,
    /// The `Allow` header (405 answers).
    pub allow: Option<String>,
}

impl Resp {
    /// The error code of an error answer.
    pub fn code(&self) -> &str {
        self.body["error"]["code"].as_str().unwrap_or("")
    }
    pub fn id(&self) -> String {
        self.body["id"].as_str().unwrap_or_else(|| panic!("no id in {:?}", self.body)).to_string()
    }
}

/// What a start that did not become ready ended with.
pub struct Failed {
    pub status: ExitStatus,
    pub log: String,
}

fn binary() -> &'static str {
    env!("CARGO_BIN_EXE_loyalty-ledger")
}

fn launch(
    data: &Path,
    cwd: Option<&Path>,
    extra_env: &[(&str, &str)],
) -> (Child, Arc<Mutex<Vec<String>>>, mpsc::Receiver<String>) {
    let mut cmd = Command::new(binary());
    if let Some(cwd) = cwd {
        cmd.current_dir(cwd);
    }
    cmd.arg("serve")
        .arg("--data")
        .arg(data)
        .arg("--listen")
        .arg("127.0.0.1:0")
        .arg("--workers")
        .arg("2")
        .env("LEDGER_SECRET_KEY", SECRET_KEY)
        .env("RUST_LOG", "info")
        // Test receivers listen on 127.0.0.1, which the SSRF guard refuses:
        // open it, unless a test (of the guard) passes "0" in `extra_env`.
        .env("LEDGER_WEBHOOK_ALLOW_PRIVATE", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut child = cmd.spawn().expect("start loyalty-ledger");
    let stderr = child.stderr.take().unwrap();
    let log = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = mpsc::channel();
    let sink = log.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if let Some(i) = line.find("listening on http://") {
                let addr = line[i + "listening on http://".len()..].split_whitespace().next().unwrap_or("").to_string();
                let _ = tx.send(addr);
            }
            sink.lock().unwrap().push(line);
        }
    });
    (child, log, rx)
}

impl Server {
    /// A server on a fresh temporary data directory.
    pub fn start() -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s = Server::start_in(tmp.path());
        s._tmp = Some(tmp);
        s
    }

    /// A server on a fresh temporary data directory with extra environment.
    pub fn start_with(env: &[(&str, &str)]) -> Server {
        let tmp = tempfile::tempdir().expect("tempdir");
        let mut s =
            Server::try_start_in(tmp.path(), env).unwrap_or_else(|f| panic!("server did not start:\n{}", f.log));
        s._tmp = Some(tmp);
        s
    }

    /// kill -9, then start again on the same data directory with extra environment.
    pub fn restart_with(&mut self, env: &[(&str, &str)]) {
        self.kill9();
        let tmp = self._tmp.take();
        let mut next = Server::try_start_in(&self.data, env).unwrap_or_else(|f| panic!("restart failed:\n{}", f.log));
        next._tmp = tmp;
        *self = next;
    }

    /// A server on `data` (kept by the caller).
    pub fn start_in(data: &Path) -> Server {
        Server::try_start_in(data, &[]).unwrap_or_else(|f| panic!("server did not start ({}):\n{}", f.status, f.log))
    }

    /// Starts a server on `data`; a server that exits instead gives its status and log.
    pub fn try_start_in(data: &Path, env: &[(&str, &str)]) -> Result<Server, Failed> {
        Server::try_start_from(None, data, env)
    }

    /// A server started in the working directory `cwd` with `--data data`, a
    /// path relative to `cwd` (as an operator in a shell would start it).
    pub fn start_relative(cwd: &Path, data: &str) -> Server {
        let mut s = Server::try_start_from(Some(cwd), Path::new(data), &[])
            .unwrap_or_else(|f| panic!("server did not start ({}):\n{}", f.status, f.log));
        s.data = cwd.join(data);
        s
    }

    fn try_start_from(cwd: Option<&Path>, data: &Path, env: &[(&str, &str)]) -> Result<Server, Failed> {
        let (mut child, log, rx) = launch(data, cwd, env);
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Ok(addr) = rx.recv_timeout(Duration::from_millis(20)) {
                let agent = ureq::AgentBuilder::new().timeout(Duration::from_secs(30)).build();
                return Ok(Server {
                    child: Mutex::new(Some(child)),
                    base: format!("http://{addr}"),
                    data: data.to_path_buf(),
                    log,
                    agent,
                    _tmp: None,
                });
            }
            if let Some(status) = child.try_wait().expect("wait") {
                std::thread::sleep(Duration::from_millis(50));
                let log = log.lock().unwrap().join("\n");
                return Err(Failed { status, log });
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                panic!("server not ready after {START_TIMEOUT:?}:\n{}", log.lock().unwrap().join("\n"));
            }
        }
    }

    /// `kill -9` and wait for the process to be gone (callable while other threads use the server).
    pub fn kill9(&self) {
        if let Some(mut child) = self.child.lock().unwrap().take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// The server's process id, while it runs (to read its `/proc/<pid>/status`).
    pub fn pid(&self) -> Option<u32> {
        self.child.lock().unwrap().as_ref().map(Child::id)
    }

    /// Resident memory of the server process in KiB (`VmRSS`), while it runs.
    pub fn rss_kib(&self) -> Option<u64> {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid()?)).ok()?;
        let line = status.lines().find(|l| l.starts_with("VmRSS:"))?;
        line.split_whitespace().nth(1)?.parse().ok()
    }

    /// kill -9, then start again on the same data directory.
    pub fn restart(&mut self) {
        self.kill9();
        let tmp = self._tmp.take();
        let mut next = Server::start_in(&self.data);
        next._tmp = tmp;
        *self = next;
    }

    pub fn log(&self) -> String {
        self.log.lock().unwrap().join("\n")
    }

    /// Like `request`, but a failure to get any answer (refused, reset, timed out:
    /// a killed server) is an `Err` instead of a panic. A 500 still panics.
    pub fn try_request(
        &self,
        method: &str,
        path: &str,
        body: Option<&str>,
        headers: &[(&str, &str)],
    ) -> Result<Resp, String> {
        let mut req = self.agent.request(method, &format!("{}{}", self.base, path));
        for (k, v) in headers {
            req = req.set(k, v);
        }
        let result = match body {
            Some(b) => req.set("Content-Type", "application/json").send_string(b),
            None => req.call(),
        };
        let resp = match result {
            Ok(r) => r,
            Err(ureq::Error::Status(_, r)) => r,
            Err(e) => return Err(format!("{method} {path}: {e}")),
        };
        let status = resp.status();
        let replayed = resp.header("Idempotent-Replayed") == Some("true");
        let allow = resp.header("Allow").map(String::from);
        let text = resp.into_string().unwrap_or_default();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        assert!(status != 500, "{method} {path} answered 500: {body}");
        Ok(Resp { status, body, replayed, allow })
    }

    pub fn request(&self, method: &str, path: &str, body: Option<&str>, headers: &[(&str, &str)]) -> Resp {
        self.try_request(method, path, body, headers).unwrap_or_else(|e| panic!("{e}"))
    }

    /// `try_request` of an authenticated POST.
    pub fn try_post(&self, path: &str, body: Value) -> Result<Resp, String> {
        self.try_request("POST", path, Some(&body.to_string()), &[("Authorization", &Self::auth())])
    }

    fn auth() -> String {
        format!("Bearer {SECRET_KEY}")
    }

    pub fn get(&self, path: &str) -> Resp {
        self.request("GET", path, None, &[("Authorization", &Self::auth())])
    }

    pub fn post(&self, path: &str, body: Value) -> Resp {
        self.request("POST", path, Some(&body.to_string()), &[("Authorization", &Self::auth())])
    }

    pub fn post_idem(&self, path: &str, body: Value, key: &str) -> Resp {
        self.request(
            "POST",
            path,
            Some(&body.to_string()),
            &[("Authorization", &Self::auth()), ("Idempotency-Key", key)],
        )
    }

    /// POST that must succeed; returns the body.
    /// The value of one series of `/metrics` (its full name, labels included); 0 when absent.
    pub fn metric(&self, series: &str) -> f64 {
        let r = self.request("GET", "/metrics", None, &[]);
        assert_eq!(r.status, 200);
        let text = r.body.as_str().unwrap_or_default().to_string();
        text.lines()
            .filter_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .find_map(|value| value.trim().parse().ok())
            .unwrap_or(0.0)
    }

    pub fn ok(&self, path: &str, body: Value) -> Value {
        let r = self.post(path, body);
        assert_eq!(r.status, 200, "POST {path}: {}", r.body);
        r.body
    }

    /// GET that must succeed; returns the body.
    pub fn get_ok(&self, path: &str) -> Value {
        let r = self.get(path);
        assert_eq!(r.status, 200, "GET {path}: {}", r.body);
        r.body
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// The WAL segment files of a data directory, oldest first.
pub fn wal_segments(data: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(data.join("wal"))
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    files.retain(|p| p.extension().is_some_and(|e| e == "wal"));
    files.sort();
    files
}

/// The good part of a segment file as the server reads it (either format).
fn scan(segment: &[u8]) -> loyalty_ledger::wal::format::Scan {
    let (_, scan) = loyalty_ledger::wal::format::scan_segment(segment, loyalty_ledger::config::WAL_RECORD_BYTES_MAX)
        .expect("a segment header");
    scan
}

/// Where the records of a segment end (the zero-filled space after them is not part of the log).
pub fn records_end(segment: &[u8]) -> usize {
    scan(segment).valid_end
}

/// Offsets of every record frame in a segment file.
pub fn record_offsets(segment: &[u8]) -> Vec<usize> {
    const FRAME_HEADER: usize = loyalty_ledger::wal::format::FRAME_HEADER_BYTES;
    scan(segment).payloads.iter().map(|p| p.start - FRAME_HEADER).collect()
}

/// Offsets of every group-commit batch in a segment file.
pub fn batch_offsets(segment: &[u8]) -> Vec<usize> {
    scan(segment).batches
}

/// Waits until `done` holds (up to 20 s), or fails the test naming `what`.
pub fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting until {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Bytes of the files directly in `dir` (0 when it cannot be read).
pub fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir).map(|d| d.filter_map(|e| e.ok()?.metadata().ok()).map(|m| m.len()).sum()).unwrap_or(0)
}

/// Copies a data directory (for trying many damaged variants of one original).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let entry = entry.unwrap();
        let target = to.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            copy_dir(&entry.path(), &target);
        } else if entry.file_name() != "LOCK" {
            std::fs::copy(entry.path(), target).unwrap();
        }
    }
}

/// Every object of a list route, following `starting_after` cursors.
pub fn list_all(s: &Server, path: &str) -> Vec<Value> {
    list_newer(s, path, None)
}

/// The objects of a list route newer than `marker` (the newest seen last
/// time; everything when `None`), newest first, following cursors.
pub fn list_newer(s: &Server, path: &str, marker: Option<&str>) -> Vec<Value> {
    let sep = if path.contains('?') { '&' } else { '?' };
    let mut out: Vec<Value> = Vec::new();
    loop {
        let page = match out.last() {
            Some(last) => s.get_ok(&format!("{path}{sep}limit=100&starting_after={}", last["id"].as_str().unwrap())),
            None => s.get_ok(&format!("{path}{sep}limit=100")),
        };
        for item in page["data"].as_array().unwrap() {
            if marker.is_some_and(|m| item["id"] == m) {
                return out;
            }
            out.push(item.clone());
        }
        if page["has_more"] != true {
            assert!(marker.is_none(), "{path}: {marker:?}, seen before, is no longer listed");
            return out;
        }
    }
}

/// The ledger invariants, checked through the API: for every account
/// `balance + pending_balance` is the sum of its transactions, and each
/// `balance_after` is the running sum until the account's first pending earn
/// (from then on points also move when a lot becomes available, which writes
/// no transaction); a payment earns at most once, and its clawbacks never
/// exceed what it earned.
pub fn assert_ledger_consistent(s: &Server) {
    use std::collections::HashMap;
    let accounts = list_all(s, "/v1/loyalty/accounts");
    let mut earned: HashMap<String, i64> = HashMap::new();
    let mut earn_rows: HashMap<String, usize> = HashMap::new();
    let mut clawed: HashMap<String, i64> = HashMap::new();
    for a in &accounts {
        let id = a["id"].as_str().unwrap();
        let mut txs = list_all(s, &format!("/v1/loyalty/transactions?account={id}"));
        txs.reverse(); // oldest first
        let mut running = 0i64;
        let mut exact = true;
        for tx in &txs {
            running += tx["points"].as_i64().unwrap();
            if tx["available_at"].as_i64().is_some_and(|at| at > tx["created"].as_i64().unwrap()) {
                exact = false;
            }
            if exact {
                assert_eq!(tx["balance_after"].as_i64().unwrap(), running, "account {id}: running sum at {}", tx["id"]);
            }
            let payment = tx["source"]["payment"].as_str().map(str::to_string);
            match tx["type"].as_str().unwrap() {
                "earn" => {
                    let p = payment.expect("earn names its payment");
                    *earned.entry(p.clone()).or_default() += tx["points"].as_i64().unwrap();
                    *earn_rows.entry(p).or_default() += 1;
                }
                "clawback" => {
                    *clawed.entry(payment.expect("clawback names its payment")).or_default() -=
                        tx["points"].as_i64().unwrap()
                }
                _ => {}
            }
        }
        assert_eq!(
            a["balance"].as_i64().unwrap() + a["pending_balance"].as_i64().unwrap(),
            running,
            "account {id}: balance + pending_balance == sum(points)"
        );
    }
    // One list of the payments rather than a GET per payment: long crash runs stay fast.
    let payments: HashMap<String, Value> =
        list_all(s, "/v1/payments").into_iter().map(|p| (p["id"].as_str().unwrap().to_string(), p)).collect();
    for (p, n) in &earn_rows {
        assert_eq!(*n, 1, "payment {p} earned {n} times");
        let payment = payments.get(p).unwrap_or_else(|| panic!("payment {p} earned but does not exist"));
        assert_eq!(payment["points_earned"].as_i64().unwrap(), earned[p], "payment {p}: points_earned");
    }
    for (p, c) in &clawed {
        assert!(*c <= earned.get(p).copied().unwrap_or(0), "payment {p}: clawed back {c} > earned");
    }
}

/// `balance + pending_balance = sum(points)` for every account, and every
/// lot's `remaining` is its credit less what the transactions took from it
/// plus what they gave back (`verify`'s lot rule, through the API).
pub fn assert_lots_reconcile(s: &Server) {
    assert_ledger_consistent(s);
    let mut moved: std::collections::HashMap<String, i64> = std::collections::HashMap::new();
    for tx in list_all(s, "/v1/loyalty/transactions") {
        let sign = match tx["type"].as_str().unwrap() {
            "earn" | "release" => 1,
            "adjustment" if tx["points"].as_i64().unwrap() > 0 => 1,
            _ => -1,
        };
        for share in tx["lots"].as_array().unwrap() {
            *moved.entry(share["lot"].as_str().unwrap().to_string()).or_default() +=
                sign * share["points"].as_i64().unwrap();
        }
    }
    for lot in list_all(s, "/v1/loyalty/lots") {
        let m = moved.remove(lot["id"].as_str().unwrap()).unwrap_or(0);
        let remaining = lot["remaining"].as_i64().unwrap();
        // What a lot gave to pay a debt is the only move not in a transaction.
        assert!(remaining <= m, "lot {}: remaining {remaining} > {m} its transactions leave", lot["id"]);
        if remaining > 0 {
            assert!(["pending", "available"].contains(&lot["status"].as_str().unwrap()), "{lot}");
        }
    }
    assert!(moved.is_empty(), "transactions name lots that do not exist: {moved:?}");
}

/// Runs the binary with `args` (an offline command) and waits for it.
pub fn cli(args: &[&str]) -> std::process::Output {
    Command::new(binary()).args(args).env("RUST_LOG", "info").stdin(Stdio::null()).output().expect("run loyalty-ledger")
}

/// Runs the binary with `args` in the working directory `cwd` (relative
/// `--data` paths, as an operator would type them).
pub fn cli_in(cwd: &Path, args: &[&str]) -> std::process::Output {
    Command::new(binary())
        .args(args)
        .current_dir(cwd)
        .env("RUST_LOG", "info")
        .stdin(Stdio::null())
        .output()
        .expect("run loyalty-ledger")
}

/// xorshift64: a small deterministic random source, so a failing seed can be replayed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        (!items.is_empty()).then(|| &items[self.below(items.len())])
    }
    pub fn chance(&mut self, percent: usize) -> bool {
        self.below(100) < percent
    }
}
