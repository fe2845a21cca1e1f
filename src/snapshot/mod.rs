//! Snapshots: the whole state at one LSN in one checksummed file, so startup
//! replays only the WAL after it and old WAL segments can be deleted.
//!
//! - `format`: the file layout (header, framed chunks of items, trailer).
//! - `write`: temp file, fdatasync, rename, directory fsync; then `compact`
//!   keeps the newest `SNAPSHOTS_KEPT` snapshots and deletes WAL segments
//!   wholly before the oldest of them.
//! - `load`: finding the newest valid snapshot and applying it to a state.
//!
//! Taking one (`take` online, `take_blocking` offline) goes through a WAL
//! barrier: on the writer thread, between two batches, the state is exactly
//! at LSN N; it is copied there as a list of items (`State::snapshot_changes`)
//! and written to disk on another thread, so appends stall only for the copy.

pub mod format;
pub mod load;
pub mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

pub use load::{list_snapshots, load_snapshot};
pub use write::{compact, write_snapshot, Compacted, SnapshotInfo};

use crate::error::{ApiError, StorageError};
use crate::state::{SnapshotItem, State};
use crate::wal::fs::FileSystem;
use crate::wal::Wal;

/// Sub-directory of the data directory that holds the snapshots.
pub const SNAPSHOT_DIR: &str = "snapshots";

/// The state as copied at a barrier.
pub struct Captured {
    pub lsn: u64,
    pub items: Vec<SnapshotItem>,
    /// How long the copy held up the WAL writer.
    pub stall: Duration,
}

type Capturing = oneshot::Receiver<Result<Result<Captured, StorageError>, StorageError>>;

/// Asks the WAL writer for a copy of the state exactly at its current LSN.
fn capture(wal: &Wal, state: Arc<State>) -> Result<Capturing, ApiError> {
    wal.barrier(move |lsn| {
        let started = Instant::now();
        let mut items = Vec::new();
        state.snapshot_changes(|item| items.push(item));
        let stall = started.elapsed();
        if state.applied_lsn() != lsn {
            // The writer applies every record before a barrier runs; anything
            // else is a bug, and a snapshot would then lie about its LSN.
            return Err(StorageError::Inconsistent(format!(
                "barrier at LSN {lsn} but the state is at {}",
                state.applied_lsn()
            )));
        }
        Ok(Captured { lsn, items, stall })
    })
}

/// A snapshot taken and compaction done.
#[derive(Debug, Clone)]
pub struct Taken {
    pub info: SnapshotInfo,
    pub compacted: Compacted,
    pub stall: Duration,
    pub elapsed: Duration,
}

/// Writes the captured state and compacts (on a thread that may block).
/// A failed compaction is only logged: the snapshot is good either way.
pub fn persist(
    fs: &dyn FileSystem,
    data_dir: &Path,
    created: i64,
    captured: Captured,
    started: Instant,
) -> Result<Taken, StorageError> {
    let stall = captured.stall;
    let info = write_snapshot(fs, data_dir, captured.lsn, created, captured.items)?;
    let compacted = compact(fs, data_dir).unwrap_or_else(|e| {
        tracing::warn!(error = %e, "storage fault while deleting old snapshots or WAL segments; retried after the next snapshot");
        Compacted::default()
    });
    let taken = Taken { info, compacted, stall, elapsed: started.elapsed() };
    tracing::info!(
        path = %taken.info.path.display(),
        lsn = taken.info.lsn,
        bytes = taken.info.bytes,
        items = taken.info.items,
        writer_stall_ms = taken.stall.as_secs_f64() * 1e3,
        elapsed_ms = taken.elapsed.as_millis() as u64,
        snapshots_removed = taken.compacted.snapshots_removed,
        segments_removed = taken.compacted.segments_removed,
        "snapshot written"
    );
    Ok(taken)
}

fn failed(e: StorageError) -> ApiError {
    tracing::error!(error = %e, "storage fault: the snapshot was not written");
    ApiError::snapshot_failed(&e.to_string())
}

/// Takes a snapshot while the server keeps serving.
pub async fn take(
    fs: Arc<dyn FileSystem>,
    data_dir: PathBuf,
    wal: &Wal,
    state: Arc<State>,
    created: i64,
) -> Result<Taken, ApiError> {
    let started = Instant::now();
    let captured = capture(wal, state)?.await.map_err(|_| ApiError::storage_unavailable())?.and_then(|r| r).map_err(
        |e| match e {
            StorageError::Poisoned => ApiError::storage_unavailable(),
            other => failed(other),
        },
    )?;
    actix_web::rt::task::spawn_blocking(move || persist(fs.as_ref(), &data_dir, created, captured, started))
        .await
        .map_err(|_| ApiError::snapshot_failed("the snapshot thread stopped"))?
        .map_err(failed)
}

/// Takes a snapshot from outside an async runtime (the offline command).
pub fn take_blocking(
    fs: &dyn FileSystem,
    data_dir: &Path,
    wal: &Wal,
    state: Arc<State>,
    created: i64,
) -> Result<Taken, anyhow::Error> {
    let started = Instant::now();
    let captured = capture(wal, state)
        .map_err(|e| anyhow::anyhow!("{e}"))?
        .blocking_recv()
        .map_err(|_| anyhow::anyhow!("the WAL writer stopped"))?
        .and_then(|r| r)?;
    Ok(persist(fs, data_dir, created, captured, started)?)
}
