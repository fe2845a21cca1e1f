//! `loyalty-ledger snapshot --data DIR`: the snapshot of a stopped server.
//!
//! It starts the data directory exactly as the server would (snapshot, WAL
//! replay, torn tail cut), takes the snapshot through the same WAL barrier
//! as `POST /v1/admin/snapshot`, and compacts, without serving anything.

use std::path::Path;
use std::sync::Arc;

use anyhow::Context;

use super::lock_existing;
use crate::config::{event_retention_seconds_from_env, wal_segment_bytes_from_env};
use crate::ledger::Ledger;
use crate::recovery;
use crate::snapshot;
use crate::storage::fs::RealFs;
use crate::timer::{Clock, SystemClock};

pub fn run(data_dir: &Path) -> anyhow::Result<()> {
    let _lock = lock_existing(data_dir)?;
    let mut ledger = Ledger::new(data_dir.to_path_buf(), Arc::new(RealFs), Arc::new(SystemClock), String::new());
    ledger.wal_segment_bytes = wal_segment_bytes_from_env().map_err(anyhow::Error::msg)?;
    // Replay forgets expired events as the server does.
    ledger.state.set_event_retention_seconds(event_retention_seconds_from_env().map_err(anyhow::Error::msg)?);
    tracing::info!(data_dir = %data_dir.display(), "replaying before the snapshot");
    let (wal, summary) = recovery::recover(&ledger).context("recovery failed")?;
    crate::http::server::log_recovery(&summary);
    let history = ledger.history().context("history was not opened")?.clone();
    let taken = snapshot::take_blocking(&RealFs, data_dir, &wal, ledger.state.clone(), &history, SystemClock.now())?;
    history.stop();
    drop(wal);
    // Freeing the replayed state object by object takes about a second per
    // million members, and this command ends right after: the OS takes the
    // memory back at exit.
    std::mem::forget(ledger);
    let info = &taken.info;
    println!(
        "{}",
        serde_json::json!({
            "object": "snapshot",
            "path": super::absolute(&info.path).display().to_string(),
            "lsn": info.lsn,
            "bytes": info.bytes,
            "created": info.created,
            "items": info.items,
            "snapshots_removed": taken.compacted.snapshots_removed,
            "segments_removed": taken.compacted.segments_removed,
        })
    );
    Ok(())
}
