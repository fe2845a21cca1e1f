//! Test hooks: what lets tests drive the real server into states it would
//! otherwise reach only by waiting or by a sick disk. Both are off unless the
//! server is started with their environment variable, and their routes
//! (`http::testing`) answer 404 otherwise.
//!
//! - `clock`: `ManualClock`, moved by `POST /v1/test/clock` (`LEDGER_TEST_CLOCK`).
//! - `faults`: `FaultyFs`, a `storage::fs::FileSystem` that injects EIO,
//!   ENOSPC, torn writes, lost syncs and slow operations, armed by
//!   `POST /v1/test/faults` (`LEDGER_FAULTS=1`).

pub mod clock;
pub mod faults;

pub use clock::ManualClock;
