//! What can go wrong appending to the WAL, in the WAL's own terms. The HTTP
//! facade maps it to an answer in one place (`http::respond`).

use super::record::RecordError;

#[derive(Debug, thiserror::Error)]
pub enum WalError {
    /// The queue to the writer is full (records or bytes): try again later.
    #[error("the write-ahead log's queue is full")]
    Overloaded,
    /// The encoded record is larger than `WAL_RECORD_BYTES_MAX`.
    #[error("a record of {bytes} bytes is larger than the {max}-byte limit")]
    RecordTooLarge { bytes: usize, max: usize },
    /// The record could not be encoded (a bug, never a bad request).
    #[error("a record could not be encoded: {0}")]
    Encode(#[from] RecordError),
    /// A storage fault stopped the write path (now or earlier): nothing more
    /// is acknowledged until a restart.
    #[error("the write path is stopped after a storage fault")]
    Unavailable,
    /// The record was made durable but contradicts the state (a bug that
    /// `State::check` exists to prevent); the write path is stopped.
    #[error("a durable record could not be applied: {0}")]
    Unapplied(String),
}
