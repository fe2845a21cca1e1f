//! Writing a snapshot file safely, and compacting what it makes unneeded.
//!
//! A snapshot is written to `<lsn>.snap.tmp`, fdatasync'd, renamed to
//! `<lsn>.snap`, and the directory fsync'd: a crash at any point leaves
//! either no new snapshot (a temp file that startup removes) or a complete
//! one. Only then are old snapshots and WAL segments deleted.

use std::path::{Path, PathBuf};
use std::time::Instant;

use super::format::{self, Header};
use super::{list_snapshots, SNAPSHOT_DIR};
use crate::config::{
    PROGRESS_LOG_EVERY, SNAPSHOTS_KEPT, SNAPSHOT_CHUNK_BYTES_TARGET, SNAPSHOT_CHUNK_ITEMS_MAX, SNAPSHOT_WRITE_BYTES,
};
use crate::error::StorageError;
use crate::state::SnapshotItem;
use crate::storage::fs::{AppendFile, FileSystem};
use crate::wal::format::{frame_into, parse_segment_file_name};
use crate::wal::WAL_DIR;

/// A snapshot on disk (the answer of `POST /v1/admin/snapshot`).
#[derive(Debug, Clone)]
pub struct SnapshotInfo {
    pub path: PathBuf,
    pub lsn: u64,
    pub bytes: u64,
    pub items: u64,
    pub created: i64,
}

/// Where a snapshot's items after the captured ones come from (history's
/// remembered responses): `count` of them, pushed one at a time by `push_all`,
/// so they never sit in memory together.
pub struct Extra<'a> {
    pub count: u64,
    pub push_all: ExtraItems<'a>,
}

/// Pushes each item into the function it is given.
pub type ExtraItems<'a> =
    Box<dyn FnOnce(&mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>) -> Result<(), StorageError> + 'a>;

/// How the writer reads what was cold or archived at the capture from
/// history (`history::resolve_cold`) as it writes: each item it stands for
/// goes to the function given.
pub type Resolve<'a> =
    &'a dyn Fn(SnapshotItem, &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>) -> Result<(), StorageError>;

/// Writes `items` (the state exactly at `lsn`; cold ones through `resolve`),
/// then `extra`'s, as the snapshot `<lsn>.snap`.
pub fn write_snapshot(
    fs: &dyn FileSystem,
    data_dir: &Path,
    lsn: u64,
    created: i64,
    items: impl ExactSizeIterator<Item = SnapshotItem>,
    resolve: Option<Resolve>,
    extra: Option<Extra>,
) -> Result<SnapshotInfo, StorageError> {
    let dir = data_dir.join(SNAPSHOT_DIR);
    fs.create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
    fs.sync_dir(data_dir).map_err(|e| StorageError::io(data_dir, e))?;
    let tmp = dir.join(format::temp_file_name(lsn));
    let path = dir.join(format::file_name(lsn));
    match fs.remove(&tmp) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(StorageError::io(&tmp, e)),
    }
    let file = fs.create_new(&tmp).map_err(|e| StorageError::io(&tmp, e))?;
    let extra_count = extra.as_ref().map_or(0, |e| e.count);
    let header = Header { lsn, items: items.len() as u64 + extra_count, created };
    let written = write_body(file, &tmp, &header, items, resolve, extra).and_then(|bytes| {
        fs.rename(&tmp, &path).map_err(|e| StorageError::io(&path, e))?;
        fs.sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
        Ok(bytes)
    });
    match written {
        Ok(bytes) => Ok(SnapshotInfo { path, lsn, bytes, items: header.items, created }),
        Err(e) => {
            // Best effort: the temp file is garbage (startup would remove it too).
            let _ = fs.remove(&tmp);
            Err(e)
        }
    }
}

/// Streams the header, the framed chunks and the trailer into `file`, then
/// syncs it. Returns the file's size.
fn write_body(
    mut file: Box<dyn AppendFile>,
    path: &Path,
    header: &Header,
    items: impl Iterator<Item = SnapshotItem>,
    resolve: Option<Resolve>,
    extra: Option<Extra>,
) -> Result<u64, StorageError> {
    let started = Instant::now();
    let io = |e| StorageError::io(path, e);
    let mut crc = crc32fast::Hasher::new();
    let mut out: Vec<u8> = Vec::with_capacity(SNAPSHOT_WRITE_BYTES + SNAPSHOT_CHUNK_BYTES_TARGET);
    let mut encoded: Vec<u8> = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES_TARGET);
    let mut payload: Vec<u8> = Vec::with_capacity(SNAPSHOT_CHUNK_BYTES_TARGET);
    let mut in_chunk = 0u32;
    let mut frames = 0u32;
    let mut bytes = 0u64;
    let mut done = 0u64;
    out.extend_from_slice(&format::encode_header(header));
    let mut flush_chunk = |encoded: &mut Vec<u8>, in_chunk: &mut u32, out: &mut Vec<u8>| {
        if *in_chunk > 0 {
            format::chunk_payload(*in_chunk, encoded, &mut payload);
            frame_into(&payload, out);
            frames += 1;
            encoded.clear();
            *in_chunk = 0;
        }
    };
    let mut write_out = |out: &mut Vec<u8>, file: &mut Box<dyn AppendFile>| -> Result<(), StorageError> {
        crc.update(out);
        file.append(out).map_err(io)?;
        bytes += out.len() as u64;
        out.clear();
        Ok(())
    };
    let mut put = |item: SnapshotItem| -> Result<(), StorageError> {
        format::encode_item(&item, &mut encoded)
            .map_err(|e| StorageError::Inconsistent(format!("encoding a snapshot item: {e}")))?;
        in_chunk += 1;
        done += 1;
        if in_chunk as usize >= SNAPSHOT_CHUNK_ITEMS_MAX || encoded.len() >= SNAPSHOT_CHUNK_BYTES_TARGET {
            flush_chunk(&mut encoded, &mut in_chunk, &mut out);
            if out.len() >= SNAPSHOT_WRITE_BYTES {
                write_out(&mut out, &mut file)?;
            }
        }
        if done.is_multiple_of(PROGRESS_LOG_EVERY) {
            tracing::info!(
                items = done,
                of = header.items,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "writing snapshot"
            );
        }
        Ok(())
    };
    for item in items {
        match (&item, resolve) {
            (SnapshotItem::Cold { .. } | SnapshotItem::ArchivedRun { .. }, Some(resolve)) => resolve(item, &mut put)?,
            (SnapshotItem::ArchivedRun { table, from, .. }, None) => {
                return Err(StorageError::Inconsistent(format!(
                    "archived {table:?} from position {from} on were to be read from history, which is not there"
                )))
            }
            (SnapshotItem::ColdRun { table, from, .. }, _) => {
                return Err(StorageError::Inconsistent(format!(
                    "the object at position {from} of {table:?} was cold at the snapshot and is gone"
                )))
            }
            _ => put(item.written())?,
        }
    }
    if let Some(extra) = extra {
        (extra.push_all)(&mut put)?;
    }
    if done != header.items {
        // The header was written first: a count that moved would make a file that never loads.
        return Err(StorageError::Inconsistent(format!(
            "the snapshot was to hold {} items and got {done}",
            header.items
        )));
    }
    flush_chunk(&mut encoded, &mut in_chunk, &mut out);
    write_out(&mut out, &mut file)?;
    let trailer = format::encode_trailer(frames, &crc);
    file.append(&trailer).map_err(io)?;
    bytes += trailer.len() as u64;
    file.sync_data().map_err(io)?;
    Ok(bytes)
}

/// What `compact` removed.
#[derive(Debug, Default, Clone)]
pub struct Compacted {
    pub snapshots_removed: usize,
    pub segments_removed: usize,
}

/// Keeps the newest `SNAPSHOTS_KEPT` snapshots and deletes every WAL segment
/// wholly before the oldest kept one: that one plus the WAL can still replace
/// a damaged newest one, and disk use stays bounded. Segments history may
/// still need are kept too: only records up to `history_lsn` (what history
/// has synced) may go. The open (newest) segment is never deleted.
pub fn compact(fs: &dyn FileSystem, data_dir: &Path, history_lsn: u64) -> Result<Compacted, StorageError> {
    let mut done = Compacted::default();
    let dir = data_dir.join(SNAPSHOT_DIR);
    let snapshots = list_snapshots(fs, data_dir)?;
    let keep_from = snapshots.len().saturating_sub(SNAPSHOTS_KEPT);
    for (_, path) in &snapshots[..keep_from] {
        fs.remove(path).map_err(|e| StorageError::io(path, e))?;
        done.snapshots_removed += 1;
    }
    if done.snapshots_removed > 0 {
        fs.sync_dir(&dir).map_err(|e| StorageError::io(&dir, e))?;
    }
    let Some((snapshot_floor, _)) = snapshots.get(keep_from) else { return Ok(done) };
    let floor = (*snapshot_floor).min(history_lsn);
    let wal_dir = data_dir.join(WAL_DIR);
    let mut segments: Vec<(u64, PathBuf)> = fs
        .list(&wal_dir)
        .map_err(|e| StorageError::io(&wal_dir, e))?
        .into_iter()
        .filter_map(|name| parse_segment_file_name(&name).map(|lsn| (lsn, wal_dir.join(name))))
        .collect();
    segments.sort();
    // Segment i holds LSNs first[i] .. first[i+1]-1: wholly before the floor
    // snapshot when first[i+1] <= floor + 1.
    for pair in segments.windows(2) {
        let (_, path) = &pair[0];
        let (next_first, _) = pair[1];
        if next_first > floor.saturating_add(1) {
            break;
        }
        fs.remove(path).map_err(|e| StorageError::io(path, e))?;
        done.segments_removed += 1;
    }
    if done.segments_removed > 0 {
        fs.sync_dir(&wal_dir).map_err(|e| StorageError::io(&wal_dir, e))?;
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::ColdTable;
    use crate::storage::fs::RealFs;

    /// A checkpoint's run of cold objects that was not named (an object gone
    /// that only retention may take) fails the write and leaves no file.
    #[test]
    fn an_unnamed_run_fails_the_write() {
        let dir = tempfile::tempdir().unwrap();
        let items = vec![
            SnapshotItem::Checkpoint,
            SnapshotItem::ColdRun { table: ColdTable::Payments, from: 3, to: 4, hot: 0 },
        ];
        let err = write_snapshot(&RealFs, dir.path(), 7, 1, items.into_iter(), None, None).unwrap_err();
        assert!(err.to_string().contains("position 3 of Payments"), "{err}");
        assert!(list_snapshots(&RealFs, dir.path()).unwrap().is_empty());
        assert_eq!(std::fs::read_dir(dir.path().join(SNAPSHOT_DIR)).unwrap().count(), 0, "no temp file left");
    }
}
