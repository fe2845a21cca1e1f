//! Reading the WAL back: every segment in order, every record checked.
//!
//! Recovery policy (DESIGN.md invariant 6): an incomplete record at the very
//! end of the newest segment is a write cut short by a crash; it was never
//! acknowledged, so it is cut off with a warning. Any other bad byte (a bad
//! record in the middle, a bad header, a gap in LSNs) stops the start and
//! names the file and offset: data is never dropped silently.

use std::path::{Path, PathBuf};

use super::format::{self, Tail, SEGMENT_HEADER_BYTES};
use super::fs::FileSystem;
use crate::config::WAL_RECORD_BYTES_MAX;
use crate::error::StorageError;

/// One segment as found on disk.
#[derive(Debug, Clone)]
pub struct SegmentInfo {
    pub path: PathBuf,
    pub first_lsn: u64,
    pub records: u64,
    /// Bytes of the file that hold good data (header included).
    pub valid_len: u64,
}

/// Where the log ends after a scan: where the writer appends next.
#[derive(Debug, Clone)]
pub struct LogEnd {
    pub segments: Vec<SegmentInfo>,
    /// LSN the next appended record gets.
    pub next_lsn: u64,
    /// A torn tail that was found (and cut, unless the scan was read-only).
    pub torn: Option<(PathBuf, u64, String)>,
}

/// Reads every segment in `dir`, calling `on_record(lsn, payload)` for each good
/// record with `lsn >= from_lsn`. With `repair`, a torn tail is truncated on disk.
pub fn read_log(
    fs: &dyn FileSystem,
    dir: &Path,
    from_lsn: u64,
    repair: bool,
    mut on_record: impl FnMut(u64, &[u8]) -> Result<(), StorageError>,
) -> Result<LogEnd, StorageError> {
    let mut names: Vec<(u64, String)> = Vec::new();
    for name in fs.list(dir).map_err(|e| StorageError::io(dir, e))? {
        if let Some(lsn) = format::parse_segment_file_name(&name) {
            names.push((lsn, name));
        }
    }
    names.sort();
    let mut segments = Vec::new();
    let mut torn = None;
    let mut expected_lsn: Option<u64> = None;
    let count = names.len();
    for (i, (name_lsn, name)) in names.into_iter().enumerate() {
        let last = i + 1 == count;
        let path = dir.join(&name);
        let buf = fs.read(&path).map_err(|e| StorageError::io(&path, e))?;
        let corrupt = |offset: usize, reason: String| StorageError::Corrupt {
            path: path.display().to_string(),
            offset: offset as u64,
            reason,
        };
        let first_lsn = match format::parse_segment_header(&buf) {
            Ok(lsn) => lsn,
            Err(reason) => {
                // A segment whose creation was cut short: only the newest, and only
                // if what is there is a prefix of its expected header, or zeros.
                let expected = format::segment_header(name_lsn);
                let cut_short = buf.len() < SEGMENT_HEADER_BYTES && expected.starts_with(&buf);
                if last && (cut_short || buf.iter().all(|&b| b == 0)) {
                    tracing::warn!(file = %path.display(), %reason, "removing a WAL segment whose creation was cut short");
                    if repair {
                        fs.remove(&path).map_err(|e| StorageError::io(&path, e))?;
                        fs.sync_dir(dir).map_err(|e| StorageError::io(dir, e))?;
                    }
                    torn = Some((path.clone(), 0, reason));
                    break;
                }
                return Err(corrupt(0, reason));
            }
        };
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
            None if first_lsn > from_lsn.max(1) => {
                return Err(corrupt(
                    16,
                    format!(
                        "records {} to {} are missing: the oldest segment starts at {first_lsn}",
                        from_lsn.max(1),
                        first_lsn - 1
                    ),
                ));
            }
            _ => {}
        }
        let scan = format::scan_frames(&buf, SEGMENT_HEADER_BYTES, WAL_RECORD_BYTES_MAX);
        match scan.tail {
            Tail::Clean => {}
            Tail::Torn { offset, reason } if last => {
                tracing::warn!(
                    file = %path.display(), offset, %reason,
                    "cutting off a torn final WAL record (a write cut short by a crash; it was never acknowledged)"
                );
                if repair {
                    fs.truncate(&path, offset as u64).map_err(|e| StorageError::io(&path, e))?;
                }
                torn = Some((path.clone(), offset as u64, reason));
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
                on_record(lsn, &buf[range.clone()]).map_err(|e| match e {
                    StorageError::Inconsistent(reason) => corrupt(range.start - format::FRAME_HEADER_BYTES, reason),
                    other => other,
                })?;
            }
        }
        expected_lsn = Some(next_lsn);
        segments.push(SegmentInfo { path, first_lsn, records, valid_len: scan.valid_end as u64 });
    }
    let next_lsn = expected_lsn.unwrap_or(from_lsn.max(1));
    Ok(LogEnd { segments, next_lsn, torn })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::wal::format::{frame_into, segment_file_name, segment_header};
    use crate::wal::fs::RealFs;

    fn write_segment(dir: &Path, first_lsn: u64, payloads: &[&[u8]]) {
        let mut buf = segment_header(first_lsn).to_vec();
        for p in payloads {
            frame_into(p, &mut buf);
        }
        std::fs::write(dir.join(segment_file_name(first_lsn)), buf).unwrap();
    }

    fn read(dir: &Path) -> Result<Vec<(u64, Vec<u8>)>, StorageError> {
        let mut out = Vec::new();
        read_log(&RealFs, dir, 1, false, |lsn, p| {
            out.push((lsn, p.to_vec()));
            Ok(())
        })?;
        Ok(out)
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

        // A middle segment gone.
        write_segment(dir.path(), 1, &[b"a", b"b"]);
        write_segment(dir.path(), 5, &[b"e"]);
        std::fs::remove_file(dir.path().join(segment_file_name(3))).unwrap();
        assert!(read(dir.path()).unwrap_err().to_string().contains("LSN gap"));
    }

    #[test]
    fn a_newest_segment_cut_short_in_its_header_is_torn_but_garbage_is_not() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), 1, &[b"a"]);
        let newest = dir.path().join(segment_file_name(2));
        std::fs::write(&newest, &segment_header(2)[..10]).unwrap();
        assert_eq!(read(dir.path()).unwrap().len(), 1);
        std::fs::write(&newest, b"garbage!!").unwrap();
        assert!(matches!(read(dir.path()), Err(StorageError::Corrupt { .. })));
    }

    #[test]
    fn lsns_past_the_largest_are_corruption_not_an_overflow() {
        let dir = tempfile::tempdir().unwrap();
        write_segment(dir.path(), u64::MAX - 1, &[b"a", b"b"]);
        let err = read_log(&RealFs, dir.path(), u64::MAX - 1, false, |_, _| Ok(())).unwrap_err();
        assert!(err.to_string().contains("run past the largest LSN"), "{err}");
    }
}
