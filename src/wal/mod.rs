//! The write-ahead log: every mutation is a record here before it is answered.
//!
//! - `record`: what a record holds (the changes it makes, its idempotency entry).
//! - `format`: segment files, group-commit batches and record framing
//!   (magic, version, lengths, crc32).
//! - `reader`: scanning segments; damage confined to the final batch is a
//!   torn tail, set aside and cut; anything else bad refuses to start.
//! - `lsn`: the `Lsn` type, a record's position in the log.
//! - `error`: what an append can fail with (`WalError`), mapped to HTTP by the facade.
//! - `writer`: the group-commit thread: one write and one fdatasync per batch,
//!   then the batch goes to `applier`, a thread that applies it to the state in
//!   log order and answers each caller, while the writer syncs the next batch.
//!   Under load it waits about one sync time for company first (`gather`).

mod applier;
pub mod dump;
mod error;
pub mod format;
mod gather;
mod lsn;
pub mod reader;
pub mod record;
pub mod writer;

pub use error::WalError;
pub use lsn::Lsn;
pub use record::{Change, IdemEntry, Record, RecordError};
pub use writer::Wal;

/// Sub-directory of the data directory that holds the segments.
pub const WAL_DIR: &str = "wal";
