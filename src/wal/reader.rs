//! Reading the WAL back: every segment in order, every record checked.
//!
//! Recovery policy (docs/reliability.md, invariant 6): damage confined to the final
//! group-commit batch of the newest segment (any of its pages missing, zero
//! or garbage, in any order; `format::scan_batches`) is a torn tail: that
//! batch was never acknowledged, so it is cut off with a warning and its
//! bytes are moved into a file beside the segment. Any other bad byte (a bad
//! batch with a good one after it, a bad header, a gap in LSNs) stops the
//! start and names the file and offset: data is never dropped silently.
//! Version 1 segments (no batches) keep their record-level rule: an
//! incomplete final record with only zeros after it is the torn tail.
//!
//! The newest segment is read from the device, not the page cache
//! (`FileSystem::drop_cache`), so a write that failed before a restart
//! cannot come back from memory.

use std::path::{Path, PathBuf};

use super::format::{self, SegmentHeader, Tail, SEGMENT_HEADER_BYTES};
use super::Lsn;
use crate::config::WAL_RECORD_BYTES_MAX;
use crate::error::StorageError;
use crate::storage::fs::FileSystem;

/// Whether reading the log may change it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `verify` and `wal dump`: nothing on disk changes; a torn tail is only reported.
    ReadOnly,
    /// Startup: a torn tail is set aside and cut, a segment cut short in its
    /// header is removed, and the newest segment is read from the device.
    Repair,
}

/// Which records `read_log` hands over.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReadFrom {
    /// Every record, from the oldest segment on (`wal dump`).
    Oldest,
    /// Records from this LSN on; the segments must reach back to it (replay after a snapshot).
    Lsn(Lsn),
}

/// One segment as found on disk.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub header: SegmentHeader,
    pub records: u64,
    /// Bytes of the file that hold good data (header included).
    pub valid_len: u64,
}

/// A torn tail: the end of the final batch (or record), never acknowledged.
#[derive(Debug, Clone)]
pub struct TornTail {
    pub path: PathBuf,
    /// Where the good data ends and the cut starts.
    pub offset: u64,
    pub reason: String,
    /// Where the cut bytes were moved (`Mode::Repair`, when they were not all zeros).
    pub set_aside: Option<PathBuf>,
}

/// Where the log ends after a scan: where the writer appends next.
#[derive(Debug, Clone)]
pub struct LogEnd {
    pub segments: Vec<SegmentInfo>,
    /// LSN the next appended record gets.
    pub next_lsn: Lsn,
    /// A torn tail that was found (and cut, with `Mode::Repair`).
    pub torn: Option<TornTail>,
}

/// Suffix of the file a torn tail's bytes are moved into:
/// `<segment>.wal.<offset>.torn`, beside the segment.
pub const TORN_SUFFIX: &str = ".torn";

/// Reads every segment in `dir`, calling `on_record(lsn, payload)` for each good
/// record from `from` on. Records before `from` are checked all the same.
pub fn read_log(
    fs: &dyn FileSystem,
    dir: &Path,
    from: ReadFrom,
    mode: Mode,
    mut on_record: impl FnMut(Lsn, &[u8]) -> Result<(), StorageError>,
) -> Result<LogEnd, StorageError> {
    let mut names: Vec<(u64, String)> = Vec::new();
    for name in fs.list(dir).map_err(|e| StorageError::io(dir, e))? {
        if let Some(lsn) = format::parse_segment_file_name(&name) {
            names.push((lsn, name));
        }
    }
    names.sort();
    let from_lsn = match from {
        ReadFrom::Oldest => names.first().map_or(1, |(lsn, _)| *lsn),
        ReadFrom::Lsn(lsn) => lsn.get(),
    };
    let mut segments = Vec::new();
    let mut torn = None;
    let mut expected_lsn: Option<u64> = None;
    let count = names.len();
    for (i, (name_lsn, name)) in names.into_iter().enumerate() {
        let last = i + 1 == count;
        let path = dir.join(&name);
        if last {
            // Only the newest segment can hold bytes written but never synced.
            read_from_device(fs, &path, mode)?;
        }
        let buf = fs.read(&path).map_err(|e| StorageError::io(&path, e))?;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            path: path.display().to_string(),
            offset: offset as u64,
            reason,
        };
        let (header, scan) = match format::scan_segment(&buf, WAL_RECORD_BYTES_MAX) {
            Ok(found) => found,
            Err(reason) => {
                // A segment whose creation was cut short: only the newest, and only
                // if what is there is a prefix of a header for its name, or zeros.
                let cut_short = buf.len() < SEGMENT_HEADER_BYTES && header_prefix(&buf, name_lsn);
                if last && (cut_short || buf.iter().all(|&b| b == 0)) {
                    tracing::warn!(file = %path.display(), %reason, "removing a WAL segment whose creation was cut short");
                    if mode == Mode::Repair {
                        fs.remove(&path).map_err(|e| StorageError::io(&path, e))?;
                        fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
                    }
                    torn = Some(TornTail { path: path.clone(), offset: 0, reason, set_aside: None });
                    break;
                }
                return Err(corrupt(0, reason));
            }
        };
        let first_lsn = header.first_lsn;
        if first_lsn != name_lsn {
            return Err(corrupt(16, format!("header says first LSN {first_lsn}, file name says {name_lsn}")));
        }
        match expected_lsn {
            Some(expected) if first_lsn != expected => {
                return Err(corrupt(
                    16,
                    format!("LSN gap: expected segment to start at {expected}, it starts at {first_lsn}"),
                ));
            }
            None if first_lsn > from_lsn => {
                return Err(corrupt(
                    16,
                    format!(
                        "records {from_lsn} to {} are missing: the oldest segment starts at {first_lsn}",
                        first_lsn - 1
                    ),
                ));
            }
            _ => {}
        }
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { offset, reason } if last => {
                tracing::warn!(
                    file = %path.display(), offset, %reason,
                    "cutting off a torn tail: the end of the final group commit, never acknowledged (a write cut short by a crash or power loss)"
                );
                let set_aside = match mode {
                    Mode::Repair => cut_torn_tail(fs, dir, &path, &buf, offset)?,
                    Mode::ReadOnly => None,
                };
                torn = Some(TornTail { path: path.clone(), offset: offset as u64, reason, set_aside });
            }
            Tail::Torn { offset, reason } | Tail::Corrupt { offset, reason } => {
                return Err(corrupt(offset, reason));
            }
        }
        let records = scan.payloads.len() as u64;
        let Some(next_lsn) = first_lsn.checked_add(records) else {
            return Err(corrupt(16, format!("{records} records from LSN {first_lsn} run past the largest LSN")));
        };
        for (n, range) in scan.payloads.iter().enumerate() {
            let lsn = first_lsn + n as u64;
            if lsn >= from_lsn {
                on_record(Lsn::new(lsn), &buf[range.clone()]).map_err(|e| match e {
                    StorageError::Inconsistent(reason) => corrupt(range.start - format::FRAME_HEADER_BYTES, reason),
                    other => other,
                })?;
            }
        }
        expected_lsn = Some(next_lsn);
        segments.push(SegmentInfo { path, header, records, valid_len: scan.valid_end as u64 });
    }
    let next_lsn = Lsn::new(expected_lsn.unwrap_or(from_lsn));
    Ok(LogEnd { segments, next_lsn, torn })
}

/// Whether `buf` is the start of a segment header for `first_lsn` (any salt,
/// either version): the magic and what follows it as far as `buf` goes.
fn header_prefix(buf: &[u8], first_lsn: u64) -> bool {
    let expected = SegmentHeader::new(first_lsn, 0).encode();
    let fixed = &expected[..24];
    buf.iter().zip(fixed.iter()).enumerate().all(|(i, (a, b))| a == b || (8..12).contains(&i))
}

/// Makes the next read of `path` come from the device, not from the page
/// cache: after a failed fsync the kernel may have marked pages clean that
/// never reached the disk, and a restart would replay what no crash can keep
/// (docs/reliability.md, "No resurrection after a storage fault").
fn read_from_device(fs: &dyn FileSystem, path: &Path, mode: Mode) -> Result<(), StorageError> {
    match fs.drop_cache(path) {
        Ok(()) => Ok(()),
        Err(e) if mode == Mode::Repair => Err(StorageError::io(path, e)),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "could not read the newest WAL segment from the device; reading the cached copy");
            Ok(())
        }
    }
}

/// Moves the torn bytes of `path` from `offset` on into a file beside it
/// (unless they are all zeros), then cuts `path` there. Returns the new file.
fn cut_torn_tail(
    fs: &dyn FileSystem,
    dir: &Path,
    path: &Path,
    buf: &[u8],
    offset: usize,
) -> Result<Option<PathBuf>, StorageError> {
    let kept_end = buf.iter().rposition(|&b| b != 0).map_or(offset, |last| (last + 1).max(offset));
    let mut set_aside = None;
    if kept_end > offset {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("segment");
        let mut aside = dir.join(format!("{name}.{offset}{TORN_SUFFIX}"));
        let mut n = 1;
        while fs.read(&aside).is_ok() {
            aside = dir.join(format!("{name}.{offset}.{n}{TORN_SUFFIX}"));
            n += 1;
        }
        let mut f = fs.create_new(&aside).map_err(|e| StorageError::io(&aside, e))?;
        f.append(&buf[offset..kept_end]).map_err(|e| StorageError::io(&aside, e))?;
        f.sync_data().map_err(|e| StorageError::io(&aside, e))?;
        fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
        tracing::warn!(file = %aside.display(), bytes = kept_end - offset, "the torn tail's bytes are kept here for inspection");
        set_aside = Some(aside);
    }
    fs.truncate(path, offset as u64).map_err(|e| StorageError::io(path, e))?;
    Ok(set_aside)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::fs::RealFs;
    use crate::wal::format::{begin_batch, frame_into, seal_batch, segment_file_name};

    const SALT: u32 = 77;

    /// A version 2 segment with one batch per record.
    fn write_segment(dir: &Path, first_lsn: u64, payloads: &[&[u8]]) {
        let mut buf = SegmentHeader::new(first_lsn, SALT).encode().to_vec();
        let mut batch = Vec::new();
        for (i, p) in payloads.iter().enumerate() {
            begin_batch(&mut batch);
            frame_into(p, &mut batch);
            seal_batch(&mut batch, SALT, first_lsn + i as u64, 1);
            buf.extend_from_slice(&batch);
        }
        std::fs::write(dir.join(segment_file_name(first_lsn)), buf).unwrap();
    }

    /// A version 1 segment: frames back to back.
    fn write_v1_segment(dir: &Path, first_lsn: u64, payloads: &[&[u8]]) {
        let header = SegmentHeader { version: format::FORMAT_VERSION_UNBATCHED, first_lsn, salt: 0 };
        let mut buf = header.encode().to_vec();
        for p in payloads {
            frame_into(p, &mut buf);
        }
        std::fs::write(dir.join(segment_file_name(first_lsn)), buf).unwrap();
    }

    /// Records read, as (LSN, payload).
    type Records = Vec<(u64, Vec<u8>)>;

    fn read_with(dir: &Path, from: ReadFrom, mode: Mode) -> Result<(Records, LogEnd), StorageError> {
        let mut out = Vec::new();
        let end = read_log(&RealFs, dir, from, mode, |lsn, p| {
            out.push((lsn.get(), p.to_vec()));
            Ok(())
        })?;
        Ok((out, end))
    }

    fn read(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        read_with(dir, ReadFrom::Lsn(Lsn::FIRST), Mode::ReadOnly).map(|(records, _)| records)
    }

    #[test]
    fn segments_chain_by_lsn_and_gaps_are_corruption() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[b"a", b"b"]);
        write_segment(dir.path(), 3, &[b"c"]);
        let got = read(dir.path()).unwrap();
        assert_eq!(got.iter().map(|(l, _)| *l).collect::<Vec<_>>(), vec![1, 2, 3]);

        // The oldest segment gone: records 1..2 missing, never silently.
        std::fs::remove_file(dir.path().join(segment_file_name(1))).unwrap();
        let err = read(dir.path()).unwrap_err().to_string();
        assert!(err.contains("missing"), "{err}");
        // ... unless the reader is asked to start where the log starts (`wal dump`).
        let (records, _) = read_with(dir.path(), ReadFrom::Oldest, Mode::ReadOnly).unwrap();
        assert_eq!(records, vec![(3, b"c".to_vec())]);

        // A middle segment gone.
        write_segment(dir.path(), 1, &[b"a", b"b"]);
        write_segment(dir.path(), 5, &[b"e"]);
        std::fs::remove_file(dir.path().join(segment_file_name(3))).unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("LSN gap"));
    }

    #[test]
    fn version_1_segments_are_still_read_and_continue_into_version_2() {
        let dir = tempfile::tempdir().unwrap();
        write_v1_segment(dir.path(), 1, &[b"a", b"b"]);
        write_segment(dir.path(), 3, &[b"c"]);
        let got = read(dir.path()).unwrap();
        assert_eq!(got, vec![(1, b"a".to_vec()), (2, b"b".to_vec()), (3, b"c".to_vec())]);
    }

    #[test]
    fn a_newest_segment_cut_short_in_its_header_is_torn_but_garbage_is_not() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[b"a"]);
        let newest = dir.path().join(segment_file_name(2));
        std::fs::write(&newest, &SegmentHeader::new(2, SALT).encode()[..10]).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        std::fs::write(&newest, b"garbage!!").unwrap();
        assert!(matches!(read(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn repair_moves_a_torn_tail_aside_and_cuts_it() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[b"a", b"b"]);
        let path = dir.path().join(segment_file_name(1));
        let good = std::fs::read(&path).unwrap();
        let mut torn = good.clone();
        torn.extend_from_slice(b"half a batch, then nothing");
        torn.extend_from_slice(&[0u8; 100]);
        std::fs::write(&path, &torn).unwrap();

        // Read-only: reported, nothing changes.
        let (records, end) = read_with(dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::ReadOnly).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(end.torn.as_ref().map(|t| t.offset), Some(good.len() as u64));
        assert_eq!(std::fs::read(&path).unwrap(), torn);

        let (records, end) = read_with(dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair).unwrap();
        assert_eq!(records.len(), 2);
        assert_eq!(end.next_lsn, Lsn::new(3));
        let aside = end.torn.unwrap().set_aside.unwrap();
        assert_eq!(std::fs::read(&aside).unwrap(), b"half a batch, then nothing");
        assert_eq!(std::fs::read(&path).unwrap(), good);
        // The file beside the segment is not a segment: the next read is clean.
        let (_, end) = read_with(dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair).unwrap();
        assert!(end.torn.is_none());
    }

    #[test]
    fn lsns_past_the_largest_are_corruption_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        write_v1_segment(dir.path(), u64::MAX - 1, &[b"a", b"b"]);
        let err = read_log(&RealFs, dir.path(), ReadFrom::Lsn(Lsn::new(u64::MAX - 1)), Mode::ReadOnly, |_, _| Ok(()))
            .unwrap_err();
        assert!(err.to_string().contains("run past the largest LSN"), "{err}");
    }
}
