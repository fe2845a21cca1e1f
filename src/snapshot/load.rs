//! Finding snapshots on disk, checking them, and applying one to a state.
//!
//! Loading is two passes over the file held in memory: first every checksum
//! (so a damaged file is rejected before anything is applied and recovery
//! can fall back to an older snapshot), then decode (on a second thread,
//! `pipeline`) and apply item by item through `State::restore_item`, the
//! same upserts the WAL uses.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::{self, Checked};
use super::SNAPSHOT_DIR;
use crate::config::PROGRESS_LOG_EVERY;
use crate::error::StorageError;
use crate::pipeline::decode_then_apply;
use crate::state::{SnapshotItem, State};
use crate::storage::fs::FileSystem;

/// Names in `DATA/snapshots`, or none if the directory does not exist.
fn names(fs: &dyn FileSystem, data_dir: &Path) -> Result<Vec<String>, StorageError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    match fs.list(&dir) {
        Ok(names) => Ok(names),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(StorageError::io(&dir, e)),
    }
}

/// Complete snapshots (`<lsn>.snap`), oldest first.
pub fn list_snapshots(fs: &dyn FileSystem, data_dir: &Path) -> Result<Vec<(u64, PathBuf)>, StorageError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    let mut found: Vec<(u64, PathBuf)> = names(fs, data_dir)?
        .into_iter()
        .filter_map(|name| format::parse_file_name(&name).map(|lsn| (lsn, dir.join(name))))
        .collect();
    found.sort();
    Ok(found)
}

/// Removes temp files left by a snapshot that a crash cut short.
pub fn remove_temp_files(fs: &dyn FileSystem, data_dir: &Path) -> Result<usize, StorageError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    let mut removed = 0;
    for name in names(fs, data_dir)? {
        if name.ends_with(format::TEMP_SUFFIX) {
            let path = dir.join(&name);
            tracing::warn!(file = %path.display(), "removing a snapshot temp file left by an interrupted snapshot");
            fs.remove(&path).map_err(|e| StorageError::io(&path, e))?;
            removed += 1;
        }
    }
    if removed > 0 {
        fs.sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
    }
    Ok(removed)
}

/// Reads a snapshot file and checks every checksum (nothing decoded yet).
pub fn read_checked(fs: &dyn FileSystem, path: &Path) -> Result<(Vec<u8>, Checked), StorageError> {
    let bytes = fs.read(path).map_err(|e| StorageError::io(path, e))?;
    let checked = format::check(&bytes).map_err(|bad| corrupt(path, bad))?;
    if let Some(lsn) = path.file_name().and_then(|n| n.to_str()).and_then(format::parse_file_name) {
        if lsn != checked.header.lsn {
            return Err(StorageError::Corrupt {
                path: path.display().to_string(),
                offset: 16,
                reason: format!("header says LSN {}, file name says {lsn}", checked.header.lsn),
            });
        }
    }
    Ok((bytes, checked))
}

fn corrupt(path: &Path, bad: format::Invalid) -> StorageError {
    StorageError::Corrupt { path: path.display().to_string(), offset: bad.offset, reason: bad.reason }
}

/// Applies a checked snapshot to `state` (which must be empty) and returns
/// the number of items. An error here leaves the state half-loaded: the
/// caller must not use it. `history_lsn`: how far the history beside the
/// file holds objects (`History::objects_lsn`; `None`: no history): at or
/// past the snapshot, its cold items leave memory as they load
/// (`State::load_cold_from_history`), and a local checkpoint's references
/// load at all.
pub fn load_snapshot(
    state: &State,
    path: &Path,
    bytes: &[u8],
    checked: &Checked,
    history_lsn: Option<u64>,
) -> Result<u64, StorageError> {
    state.load_cold_from_history(history_lsn.is_some_and(|h| h >= checked.header.lsn));
    let loaded = apply_items(state, path, bytes, checked);
    state.load_cold_from_history(false);
    loaded
}

fn apply_items(state: &State, path: &Path, bytes: &[u8], checked: &Checked) -> Result<u64, StorageError> {
    let started = Instant::now();
    let total = checked.header.items;
    let mut done = 0u64;
    let items = decode_then_apply(
        |emit| format::decode_items(bytes, checked, emit, |bad| corrupt(path, bad)),
        |item| {
            if let SnapshotItem::Sizes(sizes) = &item {
                // Sizes only make room ahead of the objects: never more than the file holds.
                if sizes.total() > total {
                    return Err(StorageError::Corrupt {
                        path: path.display().to_string(),
                        offset: 0,
                        reason: format!(
                            "its table sizes count {} objects; the file holds {total} items",
                            sizes.total()
                        ),
                    });
                }
            }
            state.restore_item(item).map_err(|e| match e {
                StorageError::Inconsistent(reason) => StorageError::Corrupt {
                    path: path.display().to_string(),
                    offset: 0,
                    reason: format!("item {done} cannot be applied: {reason}"),
                },
                other => other,
            })?;
            done += 1;
            if done.is_multiple_of(PROGRESS_LOG_EVERY) {
                tracing::info!(file = %path.display(), items = done, of = total, elapsed_ms = started.elapsed().as_millis() as u64, "loading snapshot");
            }
            Ok(())
        },
        || StorageError::Inconsistent("loading stopped while the snapshot was being decoded".into()),
    )?;
    state.finish_restore(checked.header.lsn);
    Ok(items)
}

/// Reads, checks and decodes a snapshot into a scratch state: what `verify`
/// uses to prove a file good. `history_lsn`: the LSN of the history beside
/// it (what a local checkpoint's references need; `None`: no history).
pub fn load_file(
    fs: &dyn FileSystem,
    path: &Path,
    history_lsn: Option<u64>,
) -> Result<(State, format::Header, Vec<u8>), StorageError> {
    let (bytes, checked) = read_checked(fs, path)?;
    let state = State::new();
    load_snapshot(&state, path, &bytes, &checked, history_lsn)?;
    Ok((state, checked.header, bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::TableSizes;
    use crate::storage::fs::RealFs;
    use crate::wal::Change;

    fn file_with(sizes: TableSizes) -> (tempfile::TempDir, PathBuf) {
        let dir = tempfile::tempdir().unwrap();
        let items =
            vec![SnapshotItem::Sizes(Box::new(sizes)), SnapshotItem::Change(Change::PutProgram(Default::default()))];
        let info = super::super::write_snapshot(&RealFs, dir.path(), 1, 0, items.into_iter(), None, None).unwrap();
        (dir, info.path)
    }

    #[test]
    fn table_sizes_make_room_but_never_more_than_the_file_holds() {
        let (_dir, path) = file_with(TableSizes { customers: 1, ..Default::default() });
        let (state, header, _) = load_file(&RealFs, &path, None).unwrap();
        assert_eq!((header.items, state.customers.len()), (2, 0), "a size is a hint, not an object");

        let (_dir, path) = file_with(TableSizes { events: u64::MAX, customers: 5, ..Default::default() });
        let err = load_file(&RealFs, &path, None).err().unwrap().to_string();
        assert!(err.contains("table sizes count"), "{err}");
    }
}
