//! What `/metrics` exposes, in the Prometheus text format (0.0.4), through
//! `prometheus-client` (small: it adds `dtoa` and a derive macro).
//!
//! - HTTP: a request counter and a latency histogram per method, matched
//!   route *pattern* (`/v1/payments/{id}`, never the raw path, so ids cannot
//!   grow the series) and status; fed by the middleware in `http::metrics`.
//! - WAL: records, batches, bytes, fdatasync latency and batch sizes
//!   (`wal::writer::WalStats`, the same atomics the writer updates).
//! - History: batches and responses written, forgotten, errors, synced LSN,
//!   disk bytes, write time (`history::HistoryStats`).
//! - State: accounts, live account actors (set when scraped).
//! - Recovery and snapshots: replay time and records, the last snapshot's
//!   size, LSN, creation time (loaded at startup or written since), duration
//!   and the time it held up the WAL writer.
//! - Webhooks: pending deliveries (set when scraped) and failed attempts.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};

use crate::config::METRICS_HTTP_SERIES_MAX;
use crate::history::HistoryStats;
use crate::wal::writer::WalStats;

/// Labels of the HTTP series.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct HttpLabels {
    pub method: &'static str,
    /// The matched route pattern, `unmatched`, or `other` past `METRICS_HTTP_SERIES_MAX`.
    pub route: String,
    pub status: u16,
}

type HistogramFamily = Family<HttpLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 50 us .. ~1.6 s
    Histogram::new(exponential_buckets(0.000_05, 2.0, 16))
}

pub struct Metrics {
    registry: Registry,
    http_requests: Family<HttpLabels, Counter>,
    http_seconds: HistogramFamily,
    /// Label sets created so far (an upper bound: two racing first requests both count).
    http_series: AtomicUsize,
    pub wal: WalStats,
    pub history: HistoryStats,
    pub accounts: Gauge,
    pub live_actors: Gauge,
    pub replay_seconds: Gauge<f64, AtomicU64>,
    pub replay_records: Gauge,
    pub snapshots: Counter,
    pub snapshot_failures: Counter,
    pub snapshot_seconds: Gauge<f64, AtomicU64>,
    pub snapshot_stall_seconds: Gauge<f64, AtomicU64>,
    pub snapshot_bytes: Gauge,
    pub snapshot_lsn: Gauge,
    /// `ledger_wal_bytes` when the last snapshot began: automatic snapshots
    /// are taken by the WAL written since (`timer::snapshots`).
    pub snapshot_wal_bytes: Gauge,
    /// Unix seconds; 0 until a snapshot is loaded or written.
    pub snapshot_created: Gauge,
    pub webhook_pending: Gauge,
    pub webhook_failures: Counter,
    /// Idempotent responses in memory, waiting for history (set when scraped).
    pub idempotency_in_memory: Gauge,
    pub objects_cold: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    pub fn new() -> Self {
        let mut m = Metrics {
            registry: Registry::default(),
            http_requests: Family::default(),
            http_seconds: Family::new_with_constructor(latency_histogram as fn() -> Histogram),
            http_series: AtomicUsize::new(0),
            wal: WalStats::default(),
            history: HistoryStats::default(),
            accounts: Gauge::default(),
            live_actors: Gauge::default(),
            replay_seconds: Gauge::default(),
            replay_records: Gauge::default(),
            snapshots: Counter::default(),
            snapshot_failures: Counter::default(),
            snapshot_seconds: Gauge::default(),
            snapshot_stall_seconds: Gauge::default(),
            snapshot_bytes: Gauge::default(),
            snapshot_lsn: Gauge::default(),
            snapshot_wal_bytes: Gauge::default(),
            snapshot_created: Gauge::default(),
            webhook_pending: Gauge::default(),
            webhook_failures: Counter::default(),
            idempotency_in_memory: Gauge::default(),
            objects_cold: Gauge::default(),
        };
        let r = &mut m.registry;
        let p = "ledger";
        r.register(
            format!("{p}_http_requests"),
            "HTTP requests answered, by method, route pattern and status",
            m.http_requests.clone(),
        );
        r.register(
            format!("{p}_http_request_duration_seconds"),
            "Time from request to response, by method, route pattern and status",
            m.http_seconds.clone(),
        );
        r.register(format!("{p}_wal_records"), "WAL records written and fdatasync'd", m.wal.records.clone());
        r.register(
            format!("{p}_wal_batches"),
            "WAL group commits (one write and one fdatasync each)",
            m.wal.batches.clone(),
        );
        r.register(format!("{p}_wal_bytes"), "WAL bytes written, frames included", m.wal.bytes.clone());
        r.register(format!("{p}_wal_last_lsn"), "LSN of the last record written and applied", m.wal.last_lsn.clone());
        r.register(
            format!("{p}_wal_sync_duration_seconds"),
            "Time of one group commit's write and fdatasync",
            m.wal.sync_seconds.clone(),
        );
        r.register(format!("{p}_wal_batch_records"), "Records in one group commit", m.wal.batch_records.clone());
        r.register(
            format!("{p}_wal_apply_duration_seconds"),
            "Time the apply thread takes to apply and answer one synced group commit",
            m.wal.apply_seconds.clone(),
        );
        let h = &m.history;
        r.register(format!("{p}_history_batches"), "Batches written to history", h.batches.clone());
        r.register(format!("{p}_history_remembered"), "Idempotent responses written to history", h.remembered.clone());
        r.register(format!("{p}_history_objects"), "Versions of cold objects written to history", h.objects.clone());
        r.register(
            format!("{p}_objects_cold"),
            "Objects whose body is in history only (memory keeps their id and position)",
            m.objects_cold.clone(),
        );
        r.register(
            format!("{p}_history_forgotten"),
            "Idempotent responses history forgot past retention",
            h.forgotten.clone(),
        );
        r.register(
            format!("{p}_idempotency_responses_in_memory"),
            "Idempotent responses held in memory until history has them",
            m.idempotency_in_memory.clone(),
        );
        r.register(format!("{p}_history_errors"), "Failed history writes, syncs and sweeps", h.errors.clone());
        r.register(
            format!("{p}_history_synced_lsn"),
            "Every record up to this LSN is synced in history",
            h.synced_lsn.clone(),
        );
        r.register(format!("{p}_history_disk_bytes"), "Bytes history takes on disk", h.disk_bytes.clone());
        r.register(
            format!("{p}_history_write_duration_seconds"),
            "Time of one history batch write",
            h.write_seconds.clone(),
        );
        r.register(format!("{p}_accounts"), "Loyalty accounts", m.accounts.clone());
        r.register(
            format!("{p}_account_actors_live"),
            "Account actors running (the rest are idle and stopped)",
            m.live_actors.clone(),
        );
        r.register(
            format!("{p}_replay_duration_seconds"),
            "Time the last startup took to load the snapshot and replay the WAL",
            m.replay_seconds.clone(),
        );
        r.register(format!("{p}_replay_records"), "WAL records replayed at the last startup", m.replay_records.clone());
        r.register(format!("{p}_snapshots"), "Snapshots written by this process", m.snapshots.clone());
        r.register(
            format!("{p}_snapshot_failures"),
            "Snapshots that failed in this process",
            m.snapshot_failures.clone(),
        );
        r.register(
            format!("{p}_snapshot_duration_seconds"),
            "Time the last snapshot took, end to end",
            m.snapshot_seconds.clone(),
        );
        r.register(
            format!("{p}_snapshot_writer_stall_seconds"),
            "Time the last snapshot held up the WAL writer (copying the state)",
            m.snapshot_stall_seconds.clone(),
        );
        r.register(format!("{p}_snapshot_bytes"), "Size of the last snapshot", m.snapshot_bytes.clone());
        r.register(format!("{p}_snapshot_lsn"), "LSN of the last snapshot", m.snapshot_lsn.clone());
        r.register(
            format!("{p}_snapshot_wal_bytes"),
            "WAL bytes written by this process when the last snapshot began",
            m.snapshot_wal_bytes.clone(),
        );
        r.register(
            format!("{p}_snapshot_timestamp_seconds"),
            "Unix time the last snapshot was created (loaded at startup or written since; 0: none)",
            m.snapshot_created.clone(),
        );
        r.register(
            format!("{p}_webhook_deliveries_pending"),
            "Webhook deliveries not yet delivered nor given up (due now or waiting for a retry)",
            m.webhook_pending.clone(),
        );
        r.register(
            format!("{p}_webhook_delivery_failures"),
            "Webhook delivery attempts that failed (error, timeout or non-2xx answer)",
            m.webhook_failures.clone(),
        );
        m
    }

    /// Counts one answered request. `route` is the matched pattern (or `None`).
    pub fn observe_request(&self, method: &str, route: Option<String>, status: u16, seconds: f64) {
        let method = match method {
            "GET" => "GET",
            "POST" => "POST",
            "HEAD" => "HEAD",
            "PUT" => "PUT",
            "DELETE" => "DELETE",
            "PATCH" => "PATCH",
            "OPTIONS" => "OPTIONS",
            _ => "other",
        };
        let mut labels = HttpLabels { method, route: route.unwrap_or_else(|| "unmatched".into()), status };
        // Bounded: patterns, methods and statuses are few, but never trust that.
        let known = self.http_requests.get(&labels).is_some();
        if !known && self.http_series.fetch_add(1, Ordering::Relaxed) >= METRICS_HTTP_SERIES_MAX {
            self.http_series.fetch_sub(1, Ordering::Relaxed);
            labels.route = "other".into();
        }
        self.http_requests.get_or_create(&labels).inc();
        self.http_seconds.get_or_create(&labels).observe(seconds);
    }

    /// The exposition text.
    pub fn render(&self) -> String {
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::prometheus_text::encode(&mut out, &self.registry);
        out
    }
}

/// The `Content-Type` of `render`'s output.
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;
