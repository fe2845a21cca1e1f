//! Startup: load the newest valid snapshot, replay the WAL after it, then
//! open the WAL for appends.
//!
//! Replay applies every change through the same `State::apply_change` the
//! live writer uses, each table's changes in LSN order (`state::lanes`), so
//! the state after replay is exactly the acknowledged state before the crash
//! (docs/reliability.md, invariant 2).
//!
//! Snapshots: the newest one whose checksums hold is used. A damaged newest
//! snapshot is skipped for the next older one plus the WAL after it (kept
//! for exactly that, see `snapshot::compact`); the damaged file is then set
//! aside as `<name>.snap.corrupt` with an error in the log. If nothing older
//! can replace it, the start is refused, naming the file.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::PROGRESS_LOG_EVERY;
use crate::error::StorageError;
use crate::history::{CaughtUp, History, HISTORY_DIR};
use crate::ledger::Ledger;
use crate::pipeline::decode_then_apply;
use crate::snapshot::format::{CORRUPT_SUFFIX, SNAPSHOT_SUFFIX};
use crate::snapshot::{self, SNAPSHOT_DIR};
use crate::state::{apply_in_lanes, State};
use crate::storage::fs::FileSystem;
use crate::wal::reader::{read_log, LogEnd, Mode, ReadFrom};
use crate::wal::{Lsn, Record, Wal, WAL_DIR};

/// Name of the marker file `restore` keeps in the data directory while it
/// replaces `wal/` and `snapshots/`: a start refuses while it is there.
pub const RESTORING_FILE: &str = "RESTORING";

/// The snapshot a start loaded.
#[derive(Debug, Clone)]
pub struct LoadedSnapshot {
    pub path: PathBuf,
    /// The state is exactly after this record.
    pub lsn: u64,
    pub items: u64,
    /// Unix seconds, from the snapshot's header.
    pub created: i64,
}

/// A damaged snapshot a start skipped, and why.
#[derive(Debug, Clone)]
pub struct SkippedSnapshot {
    pub path: PathBuf,
    pub reason: String,
}

#[derive(Debug)]
pub struct RecoverySummary {
    pub snapshot: Option<LoadedSnapshot>,
    /// Damaged snapshots skipped, newest first.
    pub skipped: Vec<SkippedSnapshot>,
    /// WAL records replayed after the snapshot.
    pub records: u64,
    pub segments: usize,
    pub next_lsn: u64,
    pub torn_tail_cut: bool,
    pub elapsed: Duration,
    /// What history took at startup (`recover` only).
    pub history: Option<CaughtUp>,
}

/// What `load` rebuilt, and where the log ends.
pub struct Loaded {
    pub summary: RecoverySummary,
    pub end: LogEnd,
}

/// Rebuilds `state` (empty) from `data_dir`: the newest valid snapshot, then
/// the WAL after it. With `Mode::Repair`, a torn WAL tail is set aside and cut, snapshot temp
/// files are removed and damaged snapshots that were skipped are set aside;
/// without it nothing on disk changes (`verify`).
pub fn load(fs: &dyn FileSystem, data_dir: &Path, state: &State, mode: Mode) -> Result<Loaded, StorageError> {
    load_beside(fs, data_dir, state, mode, None)
}

/// `load` beside the data directory's history, which `state` then reads its
/// cold objects from (changing nothing in it: `verify`). A local checkpoint
/// (`snapshot::Scope::Local`) loads only this way.
pub fn load_reading_history(
    fs: &dyn FileSystem,
    data_dir: &Path,
    state: &State,
    mode: Mode,
    history: &History,
) -> Result<Loaded, StorageError> {
    history.attach_reads(state);
    load_beside(fs, data_dir, state, mode, history.objects_lsn()?)
}

/// `load`, with history's `History::objects_lsn`: a snapshot at or before
/// it lets its cold items go as they load (`State::load_cold_from_history`).
fn load_beside(
    fs: &dyn FileSystem,
    data_dir: &Path,
    state: &State,
    mode: Mode,
    history_objects_lsn: Option<u64>,
) -> Result<Loaded, StorageError> {
    let started = Instant::now();
    let marker = data_dir.join(RESTORING_FILE);
    if fs.read(&marker).is_ok() {
        return Err(StorageError::Corrupt {
            path: marker.display().to_string(),
            offset: 0,
            reason:
                "a restore into this directory was interrupted: run `loyalty-ledger restore SNAPSHOT --force` again"
                    .into(),
        });
    }
    let dir = data_dir.join(WAL_DIR);
    if mode == Mode::Repair {
        fs.create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
        snapshot::load::remove_temp_files(fs, data_dir)?;
    }
    let mut skipped: Vec<SkippedSnapshot> = Vec::new();
    let mut chosen = None;
    for (lsn, path) in snapshot::list_snapshots(fs, data_dir)?.into_iter().rev() {
        match snapshot::load::read_checked(fs, &path) {
            Ok(found) => {
                chosen = Some((lsn, path, found));
                break;
            }
            Err(e) => {
                tracing::error!(file = %path.display(), error = %e, "snapshot is invalid; trying an older snapshot plus the WAL");
                skipped.push(SkippedSnapshot { path, reason: e.to_string() });
            }
        }
    }
    let mut used = None;
    let mut from_lsn = Lsn::FIRST;
    if let Some((lsn, path, (bytes, checked))) = chosen {
        tracing::info!(file = %path.display(), lsn, items = checked.header.items, "loading snapshot");
        let items = snapshot::load_snapshot(state, &path, &bytes, &checked, history_objects_lsn)?;
        state.complete_transaction_types()?;
        state.complete_lot_order()?;
        // The state is after record `lsn` (0: before the first).
        from_lsn = Lsn::new(lsn.saturating_add(1));
        used = Some(LoadedSnapshot { path, lsn, items, created: checked.header.created });
    }
    let replayed = replay_log(fs, &dir, from_lsn, mode, state);
    let records = replayed.as_ref().map(|(_, n)| *n).unwrap_or(0);
    let end = replayed
        .map(|(end, _)| end)
        .and_then(|end| {
            if end.next_lsn < from_lsn {
                return Err(StorageError::Corrupt {
                    path: dir.display().to_string(),
                    offset: 0,
                    reason: format!(
                        "the WAL ends at LSN {} but the snapshot is at LSN {}: segments are missing",
                        end.next_lsn.before(),
                        from_lsn.before()
                    ),
                });
            }
            Ok(end)
        })
        .map_err(|e| match skipped.first() {
            // Name the damaged snapshot that forced the fallback, not only the WAL.
            Some(SkippedSnapshot { path, reason }) => StorageError::Corrupt {
                path: path.display().to_string(),
                offset: 0,
                reason: format!(
                    "the newest snapshot is invalid ({reason}) and no older snapshot plus the WAL can replace it ({e})"
                ),
            },
            None => e,
        })?;
    if mode == Mode::Repair {
        for SkippedSnapshot { path, .. } in &skipped {
            set_aside(fs, path)?;
        }
    }
    let summary = RecoverySummary {
        snapshot: used,
        skipped,
        records,
        segments: end.segments.len(),
        next_lsn: end.next_lsn.get(),
        torn_tail_cut: end.torn.is_some(),
        elapsed: started.elapsed(),
        history: None,
    };
    Ok(Loaded { summary, end })
}

/// Replays the WAL from `from_lsn` into `state`: records are read, checked
/// and decoded on a second thread while this one applies them in LSN order
/// (`pipeline`), handing accounts and points transactions to a third
/// (`state::lanes`). Returns where the log ends and how many records were applied.
pub fn replay_log(
    fs: &dyn FileSystem,
    dir: &Path,
    from_lsn: Lsn,
    mode: Mode,
    state: &State,
) -> Result<(LogEnd, u64), StorageError> {
    let started = Instant::now();
    let mut records = 0u64;
    let end = apply_in_lanes(state, |lanes| {
        decode_then_apply(
            |emit| {
                read_log(fs, dir, ReadFrom::Lsn(from_lsn), mode, |lsn, payload| {
                    let record = Record::decode(payload)
                        .map_err(|e| StorageError::Inconsistent(format!("undecodable record {lsn}: {e}")))?;
                    emit((lsn, record))
                })
            },
            |(lsn, record)| {
                lanes.record(lsn.get(), record)?;
                records += 1;
                if records.is_multiple_of(PROGRESS_LOG_EVERY) {
                    tracing::info!(
                        records,
                        lsn = lsn.get(),
                        elapsed_ms = started.elapsed().as_millis() as u64,
                        "replaying the WAL"
                    );
                }
                Ok(())
            },
            || StorageError::Inconsistent("replay stopped while the WAL was being read".into()),
        )
    })?;
    Ok((end, records))
}

/// Renames a damaged snapshot to `<name>.snap.corrupt`: kept for inspection,
/// no longer counted among the snapshots kept.
fn set_aside(fs: &dyn FileSystem, path: &Path) -> Result<(), StorageError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let aside = path.with_file_name(format!("{}{CORRUPT_SUFFIX}", name.trim_end_matches(SNAPSHOT_SUFFIX)));
    fs.rename(path, &aside).map_err(|e| StorageError::io(path, e))?;
    let dir = path.parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(SNAPSHOT_DIR));
    fs.sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
    tracing::error!(file = %aside.display(), "a damaged snapshot was set aside; the server started from an older snapshot plus the WAL");
    Ok(())
}

/// Loads `ledger.state` from disk, brings history up to the WAL's end and
/// starts its thread, then starts the WAL writer after it.
pub fn recover(ledger: &Ledger) -> Result<(Wal, RecoverySummary), StorageError> {
    let opening = std::time::Instant::now();
    let history = History::open(&ledger.data_dir, ledger.metrics.history.clone())?;
    tracing::info!(elapsed_ms = opening.elapsed().as_millis() as u64, "history opened");
    let objects_lsn = history.objects_lsn()?;
    history.attach_objects(&ledger.state);
    history.attach_held_archives(&ledger.state)?;
    let mut loaded = load_beside(ledger.fs.as_ref(), &ledger.data_dir, &ledger.state, Mode::Repair, objects_lsn)?;
    let dir = ledger.data_dir.join(WAL_DIR);
    let snapshot_lsn = loaded.summary.snapshot.as_ref().map_or(0, |s| s.lsn);
    let end_lsn = loaded.end.next_lsn.get().saturating_sub(1);
    let caught_up = history.catch_up(ledger.fs.as_ref(), &dir, &ledger.state, snapshot_lsn, end_lsn)?;
    loaded.summary.history = Some(caught_up);
    history
        .start_feed(ledger.state.clone(), ledger.clock.clone())
        .map_err(|e| StorageError::io(ledger.data_dir.join(HISTORY_DIR), e))?;
    ledger.set_history(history);
    let shrinking = std::time::Instant::now();
    ledger.state.shrink_to_fit();
    crate::memory::release_free_memory();
    tracing::info!(elapsed_ms = shrinking.elapsed().as_millis() as u64, "spare memory given back");
    // Loading is done: from here memory grows a little at a time, on the request path.
    crate::memory::no_transparent_huge_pages();
    let live_state = ledger.state.clone();
    let wal = Wal::start(
        ledger.fs.clone(),
        &dir,
        &loaded.end,
        ledger.wal_segment_bytes,
        ledger.metrics.wal.clone(),
        Box::new(move |lsn: Lsn, record| live_state.apply(lsn.get(), record)),
    )?;
    Ok((wal, loaded.summary))
}
