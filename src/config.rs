//! Settings of one server process and the service's limits as named constants.
//!
//! Limits of the service (bodies, queues, batches, pages) live here, with
//! their unit in the name, so that a reader can see at a glance how big
//! anything may grow (docs/reliability.md, invariant 8). Limits of a domain rule live
//! beside the rule, also named: `domain::earning`, `domain::rewards`,
//! `domain::redemptions`, `domain::webhooks`, and the timer and dispatcher
//! intervals in `timer::expiry` and `webhooks::dispatcher`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

/// Largest request body accepted, in bytes; larger bodies answer 413.
pub const REQUEST_BODY_BYTES_MAX: usize = 64 * 1024;
/// Metadata: keys per object, key length and value length, in characters.
pub const METADATA_KEYS_MAX: usize = 50;
pub const METADATA_KEY_CHARS_MAX: usize = 40;
pub const METADATA_VALUE_CHARS_MAX: usize = 500;
/// Free-text fields such as a customer's `email` and `name`, in characters.
pub const TEXT_FIELD_CHARS_MAX: usize = 512;
/// Longest object id accepted anywhere (path, body, query), in bytes.
pub const ID_BYTES_MAX: usize = 100;
/// `Idempotency-Key` header, in characters.
pub const IDEMPOTENCY_KEY_CHARS_MAX: usize = 255;
/// How long a stored idempotent response is kept (the contract says at least 24 h).
pub const IDEMPOTENCY_RETENTION_SECONDS: i64 = 48 * 3600;

/// Events and finished webhook deliveries are kept this long by default
/// (`LEDGER_EVENT_RETENTION_DAYS`; 0 keeps them for ever).
pub const EVENT_RETENTION_DAYS_DEFAULT: i64 = 30;
/// The shortest `LEDGER_EVENT_RETENTION_DAYS` accepted other than 0: longer
/// than webhook retries go on (3 days), so a pending delivery always finds its event.
pub const EVENT_RETENTION_DAYS_MIN: i64 = 4;
/// The longest `LEDGER_EVENT_RETENTION_DAYS` accepted (100 years).
pub const EVENT_RETENTION_DAYS_MAX: i64 = 36_500;
/// Expired events (and as many deliveries) one applied record forgets at most:
/// more than a record makes, so a backlog drains, and few enough that an
/// apply never stalls on it.
pub const RETENTION_FORGET_PER_RECORD: usize = 64;

/// History (`history::`): how often its thread writes what applied records
/// left for it. Memory holds a response about this long after its record.
pub const HISTORY_WRITE_EVERY: Duration = Duration::from_millis(10);
/// How often history is synced; the WAL is kept from history's synced LSN on.
pub const HISTORY_SYNC_EVERY: Duration = Duration::from_secs(1);
/// How often history forgets what is past retention.
pub const HISTORY_RETENTION_SWEEP_EVERY: Duration = Duration::from_secs(60);
/// Expired entries one sweep forgets at most (one batch), so writes go on between sweeps.
pub const HISTORY_SWEEP_BATCH_MAX: usize = 10_000;
/// Responses in one batch of the startup catch-up.
pub const HISTORY_CATCH_UP_BATCH_MAX: usize = 10_000;
/// How long a snapshot waits for history to sync up to it (so that the
/// WAL before it can go), before it goes ahead and keeps that WAL for later.
pub const HISTORY_SNAPSHOT_WAIT: Duration = Duration::from_secs(5);
/// After a failed history write or sync, the thread waits this long before trying again.
pub const HISTORY_RETRY_AFTER: Duration = Duration::from_secs(1);
/// The engine's block cache (reads of remembered responses).
pub const HISTORY_CACHE_BYTES: u64 = 32 * 1024 * 1024;
/// The engine's background threads: the machine has two cores, and the
/// request path needs them (docs/performance.md, "History").
pub const HISTORY_FLUSH_WORKERS: usize = 1;
pub const HISTORY_COMPACTION_WORKERS: usize = 1;
/// The archive partition's memtable (fjall's default is 16 MiB): the archive
/// takes most of what history writes, and larger memtables mean fewer files
/// to compact, for a longer journal replay when history opens at a start
/// (docs/performance.md, "Compaction of history's partitions").
pub const HISTORY_ARCHIVE_MEMTABLE_BYTES: u32 = 32 * 1024 * 1024;
/// The engine's journals (fjall's default): past half of this, it flushes
/// memtables to disk files; past all of it, writes halt until they shrink.
pub const HISTORY_JOURNAL_BYTES: u64 = 512 * 1024 * 1024;
/// The engine's limit on all memtables together is off: past it fjall halts
/// writes until flushes bring it down, and after a crash the memtables its
/// journals rebuilt can hold it past the limit with nothing that wakes a
/// flush, halting the start for good (seen with fjall 2.11 after a kill -9
/// during a soak). Memtables are bounded by the journal limit above instead
/// (docs/performance.md, "Soak").
pub const HISTORY_WRITE_BUFFER_BYTES: u64 = u64::MAX;

/// Lists copy this many ids at a time out of a table's order, so a long scan
/// never holds a lock the WAL writer needs.
pub const LIST_SCAN_CHUNK: usize = 256;
/// A list page that saw an object replaced in place between two chunks of
/// its scan is read again, up to this many attempts in all (`Table::page`).
pub const LIST_PAGE_ATTEMPTS: usize = 3;
/// Chunks a page's last attempt reads per hold of the apply gate (the others
/// read one): a scan that short is one moment's table by construction, and
/// the apply thread waits at most this many chunks' reads for it.
pub const LIST_HOLD_CHUNKS_LAST: usize = 16;
/// List pages: default and largest `limit`.
pub const LIST_LIMIT_DEFAULT: usize = 10;
pub const LIST_LIMIT_MAX: usize = 100;

/// API keys (`domain::api_keys`, `http/api_keys.rs`): live (not revoked) keys at most ...
pub const API_KEYS_MAX: usize = 1000;
/// ... a key's `name`, in characters ...
pub const API_KEY_NAME_CHARS_MAX: usize = 100;
/// ... random base62 characters of a secret after `sk_`/`rk_` (about 190 bits) ...
pub const API_KEY_SECRET_CHARS: usize = 32;
/// ... how long a roll may keep the old secret working (`expire_in_seconds`, 7 days) ...
pub const API_KEY_ROLL_EXPIRE_SECONDS_MAX: i64 = 7 * 24 * 3600;
/// ... and how far ahead a key's `expires_at` may be (10 years).
pub const API_KEY_LIFETIME_SECONDS_MAX: i64 = 10 * 365 * 24 * 3600;

/// Webhooks (`webhooks::net`): resolving an endpoint's host (at creation and
/// before every attempt) gives up after this long ...
pub const WEBHOOK_RESOLVE_TIMEOUT: Duration = Duration::from_secs(5);
/// ... `LEDGER_WEBHOOK_CA_FILE` is at most this many bytes of PEM ...
pub const WEBHOOK_CA_FILE_BYTES_MAX: u64 = 1024 * 1024;
/// ... a rolled secret keeps signing for `expire_in_seconds` of at most 7 days ...
pub const WEBHOOK_ROLL_EXPIRE_SECONDS_MAX: i64 = 7 * 24 * 3600;
/// ... 24 hours when the roll does not say ...
pub const WEBHOOK_ROLL_EXPIRE_SECONDS_DEFAULT: i64 = 24 * 3600;
/// ... and an endpoint whose attempts have all failed for this long (since
/// its first failure after its last success or re-enabling) is disabled.
pub const WEBHOOK_DISABLE_AFTER_FAILING_SECONDS: i64 = 3 * 24 * 3600;
/// Money: amounts are in `1..=AMOUNT_MAX` minor units.
pub const AMOUNT_MAX: i64 = 99_999_999_999;

/// Messages waiting in one account actor's mailbox before senders get 503.
pub const ACCOUNT_MAILBOX_CAPACITY: usize = 256;
/// An account actor with nothing to do for this long stops; its state stays in the map.
pub const ACCOUNT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// How often a live account actor checks whether it is idle.
pub const ACCOUNT_IDLE_CHECK_INTERVAL: Duration = Duration::from_secs(5);

/// Records waiting for the WAL writer before appends answer 503 ...
pub const WAL_QUEUE_RECORDS_MAX: usize = 16 * 1024;
/// ... and framed bytes waiting, so that a flood of large records cannot
/// hold `WAL_QUEUE_RECORDS_MAX` records of up to 4 MiB each in memory.
pub const WAL_QUEUE_BYTES_MAX: usize = 64 * 1024 * 1024;
/// One group commit writes at most this many records ...
pub const WAL_BATCH_RECORDS_MAX: usize = 4096;
/// ... and at most this many bytes.
pub const WAL_BATCH_BYTES_MAX: usize = 8 * 1024 * 1024;
/// The writer waits for more records before a sync (about one recent sync
/// time, `wal::gather`) only after a batch of at least this many records ...
pub const WAL_GATHER_AFTER_RECORDS: usize = 2;
/// ... and never longer than this.
pub const WAL_GATHER_MAX: Duration = Duration::from_micros(300);

/// Synced batches (and barriers) waiting for the apply thread; past this
/// the writer waits before it syncs more.
pub const WAL_APPLY_QUEUE_BATCHES: usize = 64;
/// A WAL segment is closed and a new one started past this size (the default
/// of `LEDGER_WAL_SEGMENT_BYTES`, which tests and operators may lower).
pub const WAL_SEGMENT_BYTES_MAX: u64 = 64 * 1024 * 1024;
/// Smallest segment size `LEDGER_WAL_SEGMENT_BYTES` accepts.
pub const WAL_SEGMENT_BYTES_MIN: u64 = 4 * 1024;
/// Largest encoded record; anything larger in a file is corruption.
pub const WAL_RECORD_BYTES_MAX: usize = 4 * 1024 * 1024;

/// Snapshots kept in `DATA/snapshots`; WAL segments wholly before the oldest
/// kept one are deleted, so the older one plus the WAL can replace a damaged newest one.
pub const SNAPSHOTS_KEPT: usize = 2;
/// An automatic snapshot is taken once this much WAL was written since the
/// last one, which bounds the WAL on disk and the replay at startup
/// (docs/operations.md, "Automatic snapshots"; `LEDGER_SNAPSHOT_WAL_BYTES`).
pub const SNAPSHOT_WAL_BYTES_DEFAULT: u64 = 256 * 1024 * 1024;
/// The smallest `LEDGER_SNAPSHOT_WAL_BYTES` other than 0 (off).
pub const SNAPSHOT_WAL_BYTES_MIN: u64 = 64 * 1024;
/// How often the snapshot timer looks at the WAL written.
pub const SNAPSHOT_CHECK_EVERY: Duration = Duration::from_secs(1);
/// After a failed automatic snapshot, the timer waits this long before the next try.
pub const SNAPSHOT_RETRY_AFTER: Duration = Duration::from_secs(60);
/// A snapshot frame holds at most this many items ...
pub const SNAPSHOT_CHUNK_ITEMS_MAX: usize = 4096;
/// ... and is closed once its payload passes this many bytes.
pub const SNAPSHOT_CHUNK_BYTES_TARGET: usize = 1024 * 1024;
/// Largest snapshot frame payload accepted when reading (one item is at most a
/// WAL record, `WAL_RECORD_BYTES_MAX`, so a chunk stays well under this).
pub const SNAPSHOT_CHUNK_BYTES_MAX: usize = 16 * 1024 * 1024;
/// Positions in one `SnapshotItem::Listed` (a checkpoint's index entries of
/// archived objects): at most 5 bytes each encoded, so an item stays well
/// inside a chunk however long the group (an event type's: one per event).
pub const SNAPSHOT_LISTED_POSITIONS_MAX: usize = 65_536;
/// Snapshot bytes buffered before one write to the file.
pub const SNAPSHOT_WRITE_BYTES: usize = 4 * 1024 * 1024;
/// An online snapshot makes room for the items the state holds when it asks
/// for the barrier, plus 1/`SNAPSHOT_ITEMS_SLACK_DIVISOR` of them and
/// `SNAPSHOT_ITEMS_SLACK` more for what is applied before the barrier runs
/// (past that the list grows, by a copy inside the writer's stall).
pub const SNAPSHOT_ITEMS_SLACK_DIVISOR: usize = 64;
pub const SNAPSHOT_ITEMS_SLACK: usize = 4096;
/// Long replays, snapshot loads and writes log a progress line this often (records or items).
pub const PROGRESS_LOG_EVERY: u64 = 1_000_000;

/// A WAL segment is zero-filled this far ahead of its last record (`storage::fs`).
/// The batch that crosses it writes and syncs that many zeros too, so a
/// larger fill means more slow syncs (docs/performance.md, "Slow syncs").
pub const WAL_PREALLOCATE_BYTES: u64 = 256 << 10;

/// Replay and snapshot loading decode on one thread and apply on another
/// (`pipeline`); items travel between them in chunks of this many (one
/// queue operation per chunk)...
pub const DECODE_CHUNK_ITEMS: usize = 256;

/// ...and at most this many chunks wait decoded but not applied.
pub const DECODE_QUEUE_CHUNKS: usize = 16;
/// WAL replay hands the ledger lane (accounts and points transactions) its
/// changes in chunks of this many (`state::lanes`).
pub const LANE_CHUNK_CHANGES: usize = 512;
/// Chunks that may wait for the ledger lane: how far the two lanes of a
/// replay may drift apart.
pub const LANE_QUEUE_CHUNKS: usize = 16;

/// Series of the per-route HTTP metrics at most (method x route pattern x status);
/// past it new combinations are counted under `route="other"`.
pub const METRICS_HTTP_SERIES_MAX: usize = 2_000;

/// Number of stripes of the object lock table (payments, customers).
pub const OBJECT_LOCK_STRIPES: usize = 1024;
/// Entries per chunk of a table's insertion order (16 bytes each: 64 KiB a
/// chunk). A full chunk is never moved, so growing the order never copies it.
pub const ORDER_CHUNK_IDS: usize = 4096;
/// Objects one table can hold: a map bucket keeps its object's position in
/// the insertion order in 32 bits. Past it an insert fails the record (it
/// would take hundreds of GB of memory first, except in an archived table,
/// whose objects leave memory and whose positions last the data directory's
/// life: docs/architecture.md, "Not yet built").
pub const TABLE_OBJECTS_MAX: usize = u32::MAX as usize;
/// Checking a record before it is written (`state::check`) keeps
/// 1/`TABLE_CHECK_HEADROOM_DIVISOR` of each table free (about 16.7M objects
/// of `TABLE_OBJECTS_MAX`) for the records other writers have checked and
/// not yet applied: at most `WAL_QUEUE_RECORDS_MAX` queued plus
/// `WAL_APPLY_QUEUE_BATCHES + 1` batches of `WAL_BATCH_RECORDS_MAX` (about
/// 283k records), which leaves each of them about 59 new objects in one
/// table; a record adds a handful.
pub const TABLE_CHECK_HEADROOM_DIVISOR: usize = 256;
/// Shards of each in-memory object table.
pub const STATE_SHARDS: usize = 64;

// Limits that must agree with each other, checked when the crate compiles.
/// A batch's body length is a u32 on disk (`wal::format`).
const _: () = assert!(WAL_BATCH_BYTES_MAX <= u32::MAX as usize);
/// Any one record fits in a batch and in the queue.
const _: () = assert!(WAL_RECORD_BYTES_MAX + 12 <= WAL_BATCH_BYTES_MAX);
const _: () = assert!(WAL_RECORD_BYTES_MAX + 12 <= WAL_QUEUE_BYTES_MAX);
/// A batch can be gathered from what the queue holds.
const _: () = assert!(WAL_BATCH_RECORDS_MAX <= WAL_QUEUE_RECORDS_MAX);
const _: () = assert!(WAL_SEGMENT_BYTES_MIN <= WAL_SEGMENT_BYTES_MAX);
/// A snapshot item is at most a record; a frame holds at least one item.
const _: () = assert!(WAL_RECORD_BYTES_MAX <= SNAPSHOT_CHUNK_BYTES_MAX);
const _: () = assert!(SNAPSHOT_CHUNK_BYTES_TARGET < SNAPSHOT_CHUNK_BYTES_MAX);
const _: () =
    assert!(SNAPSHOT_LISTED_POSITIONS_MAX * 5 + 1024 < SNAPSHOT_CHUNK_BYTES_MAX - SNAPSHOT_CHUNK_BYTES_TARGET);
const _: () = assert!(LIST_LIMIT_DEFAULT <= LIST_LIMIT_MAX);
/// The zero-filled space ahead stays inside the smallest segment's size.
const _: () = assert!(WAL_PREALLOCATE_BYTES > 0);

/// Default data directory and listen address (README, "Operate").
pub const DEFAULT_DATA_DIR: &str = "./data";
pub const DEFAULT_LISTEN_ADDR: &str = "127.0.0.1:8080";

/// How a server process is set up.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the WAL, snapshots and the generated secret key live.
    pub data_dir: PathBuf,
    /// Address the HTTP facade binds (port 0 picks a free port).
    pub listen: SocketAddr,
    /// The bearer key every `/v1` request must present; `None` means
    /// "read or create `DATA/secret_key`".
    pub secret_key: Option<String>,
    /// HTTP worker threads (0: one per core).
    pub workers: usize,
    /// Tests only: run on a manual clock starting this many seconds from now,
    /// movable with `POST /v1/test/clock` (`LEDGER_TEST_CLOCK`).
    pub test_clock_offset_seconds: Option<i64>,
    /// Size past which a WAL segment is closed (`LEDGER_WAL_SEGMENT_BYTES`;
    /// a test and operations knob, `WAL_SEGMENT_BYTES_MIN..=WAL_SEGMENT_BYTES_MAX`).
    pub wal_segment_bytes: u64,
    /// WAL bytes written since the last snapshot that make the server take
    /// one by itself (`LEDGER_SNAPSHOT_WAL_BYTES`; 0: never).
    pub snapshot_wal_bytes: u64,
    /// How long events and finished webhook deliveries are kept
    /// (`LEDGER_EVENT_RETENTION_DAYS`, in seconds here; 0: for ever).
    pub event_retention_seconds: i64,
    /// Tests only: put the fault-injecting file system under the WAL and expose
    /// `POST /v1/test/faults` (`LEDGER_FAULTS=1`).
    pub test_faults: bool,
    /// Where webhooks may go (`LEDGER_WEBHOOK_ALLOW_PRIVATE`, `LEDGER_TEST_HOSTS`).
    pub webhook_net: crate::webhooks::NetPolicy,
    /// Extra CA certificates (PEM) webhook TLS trusts (`LEDGER_WEBHOOK_CA_FILE`).
    pub webhook_ca_file: Option<PathBuf>,
}

/// `LEDGER_EVENT_RETENTION_DAYS` in seconds, checked; the default when unset.
pub fn event_retention_seconds_from_env() -> Result<i64, String> {
    let days = match std::env::var("LEDGER_EVENT_RETENTION_DAYS") {
        Err(_) => EVENT_RETENTION_DAYS_DEFAULT,
        Ok(v) => v
            .trim()
            .parse::<i64>()
            .ok()
            .filter(|d| *d == 0 || (EVENT_RETENTION_DAYS_MIN..=EVENT_RETENTION_DAYS_MAX).contains(d))
            .ok_or_else(|| {
                format!(
                    "LEDGER_EVENT_RETENTION_DAYS must be 0 (keep for ever) or a number of days from \
                     {EVENT_RETENTION_DAYS_MIN} to {EVENT_RETENTION_DAYS_MAX}"
                )
            })?,
    };
    Ok(days * 86_400)
}

/// `LEDGER_SNAPSHOT_WAL_BYTES`, checked; the default when unset. 0 turns
/// automatic snapshots off.
pub fn snapshot_wal_bytes_from_env() -> Result<u64, String> {
    match std::env::var("LEDGER_SNAPSHOT_WAL_BYTES") {
        Err(_) => Ok(SNAPSHOT_WAL_BYTES_DEFAULT),
        Ok(v) => v.trim().parse::<u64>().ok().filter(|n| *n == 0 || *n >= SNAPSHOT_WAL_BYTES_MIN).ok_or_else(|| {
            format!("LEDGER_SNAPSHOT_WAL_BYTES must be 0 (off) or a byte count of at least {SNAPSHOT_WAL_BYTES_MIN}")
        }),
    }
}

/// `LEDGER_WAL_SEGMENT_BYTES`, checked; the default when unset.
pub fn wal_segment_bytes_from_env() -> Result<u64, String> {
    match std::env::var("LEDGER_WAL_SEGMENT_BYTES") {
        Err(_) => Ok(WAL_SEGMENT_BYTES_MAX),
        Ok(v) => v
            .trim()
            .parse::<u64>()
            .ok()
            .filter(|n| (WAL_SEGMENT_BYTES_MIN..=WAL_SEGMENT_BYTES_MAX).contains(n))
            .ok_or_else(|| {
                format!(
                    "LEDGER_WAL_SEGMENT_BYTES must be a byte count from {WAL_SEGMENT_BYTES_MIN} to {WAL_SEGMENT_BYTES_MAX}"
                )
            }),
    }
}
