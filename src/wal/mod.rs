//! The write-ahead log: every mutation is a record here before it is answered.
//!
//! - `record`: what a record holds (the changes it makes, its idempotency entry).
//! - `format`: segment files and record framing (magic, version, length, crc32).
//! - `fs`: the file-system seam the WAL and snapshots write through.
//! - `faults`: a fault-injecting `FileSystem` over it (EIO, ENOSPC, torn writes; tests only).
//! - `reader`: scanning segments; a torn tail is cut off, anything else bad refuses to start.
//! - `writer`: the group-commit thread: one write and one fdatasync per batch,
//!   then the batch goes to `applier`, a thread that applies it to the state in
//!   log order and answers each caller, while the writer syncs the next batch.
//!   Under load it waits about one sync time for company first (`gather`).

mod applier;
pub mod dump;
pub mod faults;
pub mod format;
pub mod fs;
mod gather;
pub mod reader;
pub mod record;
pub mod writer;

pub use record::{Change, IdemEntry, Record};
pub use writer::Wal;

/// Sub-directory of the data directory that holds the segments.
pub const WAL_DIR: &str = "wal";
