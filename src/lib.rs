//! loyalty-ledger: every payment and refund tied to a loyalty member, with a
//! ledger that always reconciles against the payments.
//!
//! The map, in the order a request flows:
//!
//! - [`http`]: the actix-web facade. Authenticates, parses and validates a
//!   request, then routes it to whoever owns what it changes.
//! - [`accounts`]: one actix actor per loyalty account; it serializes that
//!   account's changes (the actor is the lock) and is stopped when idle.
//! - [`locks`]: striped async locks for objects several requests can race on
//!   (customers being linked, payments changing state).
//! - [`ledger`]: what every component shares; `commit` is the one path to disk.
//! - [`wal`]: the write-ahead log. Records are framed and checksummed; a
//!   group-commit thread writes each batch with one write and one fdatasync;
//!   an apply thread then applies it to the [`state`] in LSN order, and only
//!   then answers.
//! - [`state`]: the in-memory tables, rebuilt at startup by [`recovery`]
//!   from the newest [`snapshot`] and the WAL after it, decoding on one
//!   thread and applying on another ([`pipeline`]).
//! - [`history`]: what is only read after it is written (today: stored
//!   idempotent responses), in an embedded on-disk store fed from applied
//!   records by its own thread, off the request path.
//! - [`snapshot`]: the whole state at one LSN in one checksummed file, taken
//!   at a WAL barrier; it lets old WAL segments be deleted.
//! - [`domain`]: pure rules and objects: ids, metadata, members, API keys.
//! - [`timer`]: the clock, and the timer actor that expires redemptions.
//! - [`webhooks`]: events derived from each record's changes, signed
//!   at-least-once delivery by a dispatcher actor, and the receivers' verifier.
//! - [`metrics`]: the Prometheus series behind `/metrics`.
//! - [`memory`]: the allocator (mimalloc) and giving memory back after startup.
//! - [`ops`]: the offline operator commands: `snapshot`, `restore`, `verify`.
//! - [`storage`]: the data directory below them all: the file-system seam,
//!   the directory lock and private file modes.
//! - [`test_hooks`]: the manual clock and the fault-injecting file system,
//!   off unless a test starts the server with them.
//!
//! Limits are named constants in [`config`]; errors and their HTTP status in [`error`].
//!
//! Visibility follows who may touch what: the components that only the
//! server itself uses (`accounts`, `ledger`, `locks`, `metrics`, `pipeline`,
//! `test_hooks`, `timer`) are `pub(crate)`; the rest are public because the
//! black-box tests, the benches and the fuzz targets read formats and state
//! through them. Table writes are reachable only through `State::apply`.

pub(crate) mod accounts;
pub mod config;
pub mod domain;
pub mod error;
pub mod history;
pub mod http;
pub(crate) mod ledger;
pub(crate) mod locks;
pub mod memory;
pub(crate) mod metrics;
pub mod ops;
pub(crate) mod pipeline;
pub mod recovery;
pub mod snapshot;
pub mod state;
pub mod storage;
pub(crate) mod test_hooks;
pub(crate) mod timer;
pub mod wal;
pub mod webhooks;
