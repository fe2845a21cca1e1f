//! Starting the server: data directory, secret key, HTTP binding, replay.
//!
//! The HTTP listener comes up first so that `/healthz` answers and `/readyz`
//! says 503 while the log replays; `/v1` answers 503 `not_ready` until then.
//! Once replay is done the WAL opens for appends and the server logs
//! `listening on http://ADDR`.

use std::fs::{File, OpenOptions};
use std::io::{IsTerminal, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::Arc;

use actix_web::middleware::from_fn;
use actix_web::{web, App, HttpRequest, HttpServer};
use anyhow::Context;

use super::openapi::Hooks;
use super::routes::{self, V1};
use super::{auth, metrics};
use crate::config::Config;
use crate::domain::ids::random_secret;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::recovery;
use crate::storage::fs::{FileSystem, RealFs};
use crate::storage::lock::lock_data_dir;
use crate::storage::private::{make_private, PRIVATE_FILE_MODE};
use crate::test_hooks::faults::{Faults, FaultyFs};
use crate::test_hooks::ManualClock;
use crate::timer::{Clock, ExpiryTimer, LotTimer, SnapshotTimer, SystemClock};
use crate::webhooks::WebhookDispatcher;
use actix::Actor;

/// Name of the generated secret key file in the data directory.
pub const SECRET_KEY_FILE: &str = "secret_key";

async fn route_not_found(req: HttpRequest) -> Result<actix_web::HttpResponse, ApiError> {
    Err(ApiError::route_not_found(req.method().as_str(), req.path()))
}

/// A method the path does not have: 405 `method_not_allowed` with `Allow`
/// naming the methods it has (`HEAD` and `OPTIONS` included), or 404
/// `route_not_found` when the path is a test hook's that is off.
async fn method_not_allowed(
    req: HttpRequest,
    ledger: web::Data<Ledger>,
    path: &'static str,
) -> Result<actix_web::HttpResponse, ApiError> {
    let hooks = Hooks::of(&ledger);
    let allowed: Vec<&str> = routes::ENDPOINTS
        .iter()
        .filter(|ep| ep.path == path && hooks.describes(ep))
        .map(|ep| ep.verb.as_str())
        .collect();
    if allowed.is_empty() {
        return route_not_found(req).await;
    }
    let allowed = allowed.join(", ");
    let err = ApiError::method_not_allowed(req.method().as_str(), req.path(), &allowed);
    let mut res = actix_web::ResponseError::error_response(&err);
    if let Ok(v) = actix_web::http::header::HeaderValue::from_str(&allowed) {
        res.headers_mut().insert(actix_web::http::header::ALLOW, v);
    }
    Ok(res)
}

/// A resource whose other methods answer 405 (`method_not_allowed`).
fn resource(path: &'static str) -> actix_web::Resource {
    let local = path.strip_prefix(V1).filter(|_| path.starts_with("/v1/")).unwrap_or(path);
    web::resource(local).default_service(web::to(move |req: HttpRequest, ledger: web::Data<Ledger>| {
        method_not_allowed(req, ledger, path)
    }))
}

/// The router, built from the route table (`routes::ENDPOINTS`) and nothing
/// else, so that the OpenAPI description lists exactly what is served.
pub fn routes(cfg: &mut web::ServiceConfig) {
    let mut v1 = web::scope(V1).wrap(from_fn(auth::guard));
    for (path, endpoints) in routes::by_path() {
        let mut r = resource(path).app_data(metrics::RoutePattern(path));
        for ep in &endpoints {
            r = r.route(routes::route(ep));
        }
        if path.starts_with("/v1/") {
            v1 = v1.service(r);
        } else {
            cfg.service(r);
        }
    }
    cfg.service(v1.default_service(web::to(route_not_found))).default_service(web::to(route_not_found));
}

/// The recovery summary line (server start and the offline commands).
pub fn log_recovery(summary: &recovery::RecoverySummary) {
    let (snapshot, snapshot_lsn, snapshot_items) = match &summary.snapshot {
        Some(s) => (s.path.display().to_string(), s.lsn, s.items),
        None => ("none".to_string(), 0, 0),
    };
    tracing::info!(
        snapshot,
        snapshot_lsn,
        snapshot_items,
        snapshots_skipped = summary.skipped.len(),
        records = summary.records,
        segments = summary.segments,
        next_lsn = summary.next_lsn,
        torn_tail_cut = summary.torn_tail_cut,
        elapsed_ms = summary.elapsed.as_millis() as u64,
        "recovery done"
    );
    if let Some(h) = &summary.history {
        tracing::info!(
            from_lsn = h.from_lsn,
            lsn = h.lsn,
            remembered = h.remembered,
            from_wal = h.from_wal,
            objects = h.objects,
            evicted = h.evicted,
            elapsed_ms = h.elapsed.as_millis() as u64,
            "history caught up"
        );
    }
}

/// Runs the server until it is stopped (SIGINT/SIGTERM) or recovery fails.
pub async fn run(config: Config) -> anyhow::Result<()> {
    let dir = &config.data_dir;
    RealFs.create_dir_all(dir).with_context(|| format!("creating data directory {}", dir.display()))?;
    let _lock = lock_data_dir(dir)?;
    let closed = make_private(dir).with_context(|| format!("making {} private", dir.display()))?;
    if closed > 0 {
        tracing::warn!(dir = %dir.display(), modes_changed = closed, "the data directory was readable by others; it is now 0700 and its files 0600");
    }
    let secret_key = match &config.secret_key {
        Some(k) if !k.is_empty() => {
            warn_if_key_file_ignored(dir);
            k.clone()
        }
        _ => secret_key_from_file(dir)?,
    };
    let faults = config.test_faults.then(Faults::new);
    let fs: Arc<dyn FileSystem> = match &faults {
        Some(faults) => {
            tracing::warn!("running the WAL on a fault-injecting file system (LEDGER_FAULTS); not for production");
            Arc::new(FaultyFs::new(RealFs, faults.clone()))
        }
        None => Arc::new(RealFs),
    };
    let mut ledger = Ledger::new(dir.clone(), fs, Arc::new(SystemClock), secret_key);
    ledger.faults = faults;
    ledger.wal_segment_bytes = config.wal_segment_bytes;
    ledger.snapshot_wal_bytes = config.snapshot_wal_bytes;
    ledger.state.set_event_retention_seconds(config.event_retention_seconds);
    let webhook_tls =
        crate::webhooks::net::tls_config(config.webhook_ca_file.as_deref()).map_err(anyhow::Error::msg)?;
    if config.webhook_net.allow_private {
        tracing::warn!(
            "webhooks may go to private and loopback addresses (LEDGER_WEBHOOK_ALLOW_PRIVATE=1); not for production"
        );
    }
    if !config.webhook_net.hosts.is_empty() {
        tracing::warn!("webhook hosts resolve from LEDGER_TEST_HOSTS, not DNS; not for production");
    }
    ledger.webhook_net = config.webhook_net.clone();
    if let Some(offset) = config.test_clock_offset_seconds {
        let clock = Arc::new(ManualClock::new(SystemClock.now() + offset));
        tracing::warn!(now = clock.now(), "running on a manual test clock (LEDGER_TEST_CLOCK); not for production");
        ledger.clock = clock.clone();
        ledger.manual_clock = Some(clock);
    }
    let ledger = Arc::new(ledger);
    let data = web::Data::from(ledger.clone());
    let mut server =
        HttpServer::new(move || App::new().app_data(data.clone()).wrap(from_fn(metrics::track)).configure(routes));
    if config.workers > 0 {
        server = server.workers(config.workers);
    }
    let server = server.bind(config.listen).with_context(|| format!("binding {}", config.listen))?;
    let addr = server.addrs().first().copied().context("no bound address")?;
    let server = server.run();
    let handle = server.handle();
    let serving = actix_web::rt::spawn(server);

    tracing::info!(data_dir = %dir.display(), "replaying the write-ahead log");
    let replay_ledger = ledger.clone();
    let recovered = actix_web::rt::task::spawn_blocking(move || recovery::recover(&replay_ledger))
        .await
        .context("recovery thread panicked")?;
    match recovered {
        Ok((wal, summary)) => {
            log_recovery(&summary);
            ledger.metrics.replay_seconds.set(summary.elapsed.as_secs_f64());
            ledger.metrics.replay_records.set(summary.records as i64);
            if let Some(loaded) = &summary.snapshot {
                ledger.metrics.snapshot_lsn.set(loaded.lsn as i64);
                ledger.metrics.snapshot_created.set(loaded.created);
            }
            ledger.set_ready(wal);
            ExpiryTimer::new(ledger.clone()).start();
            LotTimer::new(ledger.clone()).start();
            SnapshotTimer::new(ledger.clone()).start();
            WebhookDispatcher::new(ledger.clone(), webhook_tls.clone()).start();
            tracing::info!(data_dir = %dir.display(), "listening on http://{addr}");
        }
        Err(e) => {
            tracing::error!(error = %e, "refusing to start: the data directory failed its checks");
            handle.stop(false).await;
            return Err(anyhow::Error::new(e).context("recovery failed"));
        }
    }
    serving.await.context("server task")?.context("server")?;
    Ok(())
}

/// With `LEDGER_SECRET_KEY` set, a `DIR/secret_key` left from an earlier
/// start is not read, so the key in it no longer works (401): says so, naming
/// the file, instead of letting clients find out one refusal at a time.
fn warn_if_key_file_ignored(dir: &Path) {
    let path = dir.join(SECRET_KEY_FILE);
    if path.exists() {
        tracing::warn!(
            path = %path.display(),
            "LEDGER_SECRET_KEY is set, so the secret key in this file is ignored and refused (401); unset LEDGER_SECRET_KEY to use it, or delete the file"
        );
    }
}

/// Reads `DIR/secret_key`, creating it (mode 0600) on first start.
fn secret_key_from_file(dir: &Path) -> anyhow::Result<String> {
    let path = dir.join(SECRET_KEY_FILE);
    match std::fs::read_to_string(&path) {
        Ok(k) if !k.trim().is_empty() => {
            tracing::info!(path = %path.display(), "using the secret key in this file");
            return Ok(k.trim().to_string());
        }
        Ok(_) => anyhow::bail!("{} is empty", path.display()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    }
    let key = random_secret("sk_", 32);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE_FILE_MODE)
        .open(&path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(format!("{key}\n").as_bytes())?;
    f.sync_all()?;
    File::open(dir)?.sync_all()?;
    tracing::info!(path = %path.display(), "generated a secret key (LEDGER_SECRET_KEY was not set); it is in this file");
    Ok(key)
}

/// Logs to stderr, filtered by `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .try_init();
}
