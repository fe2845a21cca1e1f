//! On-disk format of a snapshot file (documented in docs/formats.md).
//!
//! `snapshots/<lsn:020>.snap`:
//! - a 48-byte header: magic `LLSNP\r\n\x1a`, format version (u32 LE), flags
//!   (u32 LE, 0), LSN (u64 LE: the state is exactly after that record), item
//!   count (u64 LE), created (i64 LE, unix seconds), crc32 of the preceding
//!   40 bytes (u32 LE), 4 zero bytes;
//! - frames exactly like WAL records (`wal::format::frame_into`: len, !len,
//!   crc32, payload), each payload a chunk: item count (u32 LE) then that many
//!   bincode-encoded `SnapshotItem`s back to back;
//! - a 16-byte trailer: magic `LLSNPEND`, frame count (u32 LE), crc32 of every
//!   byte of the file before this field (u32 LE).
//!
//! Unlike the WAL there is no torn-tail leniency: a snapshot is renamed into
//! place only once complete and synced, so any bad byte makes it invalid.

use crate::config::SNAPSHOT_CHUNK_BYTES_MAX;
use crate::state::SnapshotItem;
use crate::wal::format::{scan_frames, Tail};

pub const SNAPSHOT_MAGIC: [u8; 8] = *b"LLSNP\r\n\x1a";
pub const TRAILER_MAGIC: [u8; 8] = *b"LLSNPEND";
/// Written now: items hold lots and the transaction and program layouts of
/// the points lifecycle (`Change::PutLot`, `PutTransaction`, `PutProgram`),
/// which a build that reads only versions 1 and 2 cannot decode; such a
/// build then gives the version as the reason it cannot use the file, not an
/// undecodable item.
pub const SNAPSHOT_FORMAT_VERSION: u32 = 3;
/// Written before lots (items may hold API keys); still read: their old
/// layouts are upgraded as they load (`Change::upgrade`).
pub const SNAPSHOT_FORMAT_VERSION_BEFORE_LOTS: u32 = 2;
/// Written before API keys existed; still read (the same layout, no key items).
pub const SNAPSHOT_FORMAT_VERSION_BEFORE_API_KEYS: u32 = 1;
pub const HEADER_BYTES: usize = 48;
pub const TRAILER_BYTES: usize = 16;
/// Suffix of a complete snapshot, of one being written, and of one set aside as damaged.
pub const SNAPSHOT_SUFFIX: &str = ".snap";
pub const TEMP_SUFFIX: &str = ".snap.tmp";
pub const CORRUPT_SUFFIX: &str = ".snap.corrupt";

/// What a snapshot's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub lsn: u64,
    pub items: u64,
    pub created: i64,
}

pub fn file_name(lsn: u64) -> String {
    format!("{lsn:020}{SNAPSHOT_SUFFIX}")
}

pub fn temp_file_name(lsn: u64) -> String {
    format!("{lsn:020}{TEMP_SUFFIX}")
}

/// The LSN in a snapshot file name, if it is one.
pub fn parse_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(SNAPSHOT_SUFFIX)?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub fn encode_header(h: &Header) -> [u8; HEADER_BYTES] {
    let mut b = [0u8; HEADER_BYTES];
    b[0..8].copy_from_slice(&SNAPSHOT_MAGIC);
    b[8..12].copy_from_slice(&SNAPSHOT_FORMAT_VERSION.to_le_bytes());
    b[12..16].copy_from_slice(&0u32.to_le_bytes());
    b[16..24].copy_from_slice(&h.lsn.to_le_bytes());
    b[24..32].copy_from_slice(&h.items.to_le_bytes());
    b[32..40].copy_from_slice(&h.created.to_le_bytes());
    let crc = crc32fast::hash(&b[0..40]);
    b[40..44].copy_from_slice(&crc.to_le_bytes());
    b
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    let mut w = [0u8; 4];
    w.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(w)
}

fn u64_at(b: &[u8], at: usize) -> u64 {
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(w)
}

/// Parses and checks a header; the error says what is wrong.
pub fn decode_header(b: &[u8]) -> Result<Header, String> {
    if b.len() < HEADER_BYTES {
        return Err(format!("file is {} bytes, shorter than a snapshot header", b.len()));
    }
    if b[0..8] != SNAPSHOT_MAGIC {
        return Err("bad magic: not a loyalty-ledger snapshot".into());
    }
    if u32_at(b, 40) != crc32fast::hash(&b[0..40]) {
        return Err("snapshot header checksum mismatch".into());
    }
    let version = u32_at(b, 8);
    let read = [SNAPSHOT_FORMAT_VERSION_BEFORE_API_KEYS, SNAPSHOT_FORMAT_VERSION_BEFORE_LOTS, SNAPSHOT_FORMAT_VERSION];
    if !read.contains(&version) {
        return Err(format!(
            "unsupported snapshot format version {version} (this build reads \
             {SNAPSHOT_FORMAT_VERSION_BEFORE_API_KEYS} to {SNAPSHOT_FORMAT_VERSION})"
        ));
    }
    Ok(Header { lsn: u64_at(b, 16), items: u64_at(b, 24), created: u64_at(b, 32) as i64 })
}

pub fn encode_trailer(frames: u32, crc_so_far: &crc32fast::Hasher) -> [u8; TRAILER_BYTES] {
    let mut t = [0u8; TRAILER_BYTES];
    t[0..8].copy_from_slice(&TRAILER_MAGIC);
    t[8..12].copy_from_slice(&frames.to_le_bytes());
    let mut h = crc_so_far.clone();
    h.update(&t[0..12]);
    t[12..16].copy_from_slice(&h.finalize().to_le_bytes());
    t
}

/// A snapshot whose every checksum holds: where its frames are.
#[derive(Debug, Clone)]
pub struct Checked {
    pub header: Header,
    pub frames: Vec<std::ops::Range<usize>>,
}

/// An invalid snapshot: the byte offset of the first problem and what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub offset: u64,
    pub reason: String,
}

fn invalid(offset: usize, reason: impl Into<String>) -> Invalid {
    Invalid { offset: offset as u64, reason: reason.into() }
}

/// Checks every checksum of a whole snapshot file without decoding items.
pub fn check(b: &[u8]) -> Result<Checked, Invalid> {
    let header = decode_header(b).map_err(|r| invalid(0, r))?;
    if b.len() < HEADER_BYTES + TRAILER_BYTES {
        return Err(invalid(b.len(), "file ends before its trailer (cut short)"));
    }
    let body_end = b.len() - TRAILER_BYTES;
    let t = &b[body_end..];
    if t[0..8] != TRAILER_MAGIC {
        return Err(invalid(body_end, "no trailer at the end of the file (cut short or damaged)"));
    }
    if u32_at(t, 12) != crc32fast::hash(&b[..b.len() - 4]) {
        return Err(invalid(b.len() - 4, "whole-file checksum mismatch"));
    }
    let scan = scan_frames(&b[..body_end], HEADER_BYTES, SNAPSHOT_CHUNK_BYTES_MAX);
    match scan.tail {
        Tail::Clean => {}
        Tail::Torn { offset, reason } | Tail::Corrupt { offset, reason } => return Err(invalid(offset, reason)),
    }
    let frames_declared = u32_at(t, 8) as usize;
    if scan.payloads.len() != frames_declared {
        return Err(invalid(
            body_end + 8,
            format!("trailer counts {frames_declared} frames, the file holds {}", scan.payloads.len()),
        ));
    }
    Ok(Checked { header, frames: scan.payloads })
}

fn bincode_config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<SNAPSHOT_CHUNK_BYTES_MAX>()
}

/// Appends one item's encoding to `chunk`.
pub fn encode_item(item: &SnapshotItem, chunk: &mut Vec<u8>) -> Result<(), String> {
    bincode::serde::encode_into_std_write(item, chunk, bincode_config()).map(|_| ()).map_err(|e| e.to_string())
}

/// The payload of one frame: its item count, then the items.
pub fn chunk_payload(items: u32, encoded: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(&items.to_le_bytes());
    out.extend_from_slice(encoded);
}

/// Decodes every item of a checked snapshot, in order, into `f`. Never panics.
pub fn decode_items<E>(
    b: &[u8],
    checked: &Checked,
    mut f: impl FnMut(SnapshotItem) -> Result<(), E>,
    bad: impl Fn(Invalid) -> E,
) -> Result<u64, E> {
    let mut total = 0u64;
    for frame in &checked.frames {
        let payload = &b[frame.clone()];
        let at = frame.start - crate::wal::format::FRAME_HEADER_BYTES;
        if payload.len() < 4 {
            return Err(bad(invalid(at, "chunk shorter than its item count")));
        }
        let count = u32_at(payload, 0);
        let mut rest = &payload[4..];
        for _ in 0..count {
            let (item, used): (SnapshotItem, usize) = bincode::serde::borrow_decode_from_slice(rest, bincode_config())
                .map_err(|e| bad(invalid(at, format!("undecodable item: {e}"))))?;
            rest = &rest[used..];
            f(item)?;
            total += 1;
        }
        if !rest.is_empty() {
            return Err(bad(invalid(at, format!("{} bytes after the chunk's {count} items", rest.len()))));
        }
    }
    if total != checked.header.items {
        return Err(bad(invalid(24, format!("header counts {} items, the file holds {total}", checked.header.items))));
    }
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_header_round_trip() {
        assert_eq!(parse_file_name(&file_name(42)), Some(42));
        assert_eq!(parse_file_name(&temp_file_name(42)), None);
        assert_eq!(parse_file_name("42.snap"), None);
        let h = Header { lsn: 7, items: 3, created: -5 };
        assert_eq!(decode_header(&encode_header(&h)), Ok(h));
        let mut bad = encode_header(&h);
        bad[20] ^= 1;
        assert!(decode_header(&bad).is_err());
    }

    /// A header as `version` writes it (the crc covers the version).
    fn header_of_version(h: &Header, version: u32) -> [u8; HEADER_BYTES] {
        let mut b = encode_header(h);
        b[8..12].copy_from_slice(&version.to_le_bytes());
        let crc = crc32fast::hash(&b[0..40]);
        b[40..44].copy_from_slice(&crc.to_le_bytes());
        b
    }

    #[test]
    fn version_3_is_written_and_versions_1_and_2_still_read() {
        let h = Header { lsn: 9, items: 1, created: 5 };
        assert_eq!(u32_at(&encode_header(&h), 8), 3);
        assert_eq!(decode_header(&header_of_version(&h, 1)), Ok(h));
        assert_eq!(decode_header(&header_of_version(&h, 2)), Ok(h));
        let err = decode_header(&header_of_version(&h, 4)).unwrap_err();
        assert!(err.contains("unsupported snapshot format version 4"), "{err}");
    }

    #[test]
    fn garbage_never_panics() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in [0usize, 1, 47, 48, 63, 64, 65, 200, 1000] {
            for _ in 0..50 {
                let mut bytes: Vec<u8> = (0..len)
                    .map(|_| {
                        seed ^= seed << 13;
                        seed ^= seed >> 7;
                        seed ^= seed << 17;
                        seed as u8
                    })
                    .collect();
                if len >= HEADER_BYTES {
                    bytes[..HEADER_BYTES].copy_from_slice(&encode_header(&Header { lsn: 1, items: 2, created: 3 }));
                }
                if let Ok(c) = check(&bytes) {
                    let _ = decode_items(&bytes, &c, |_| Ok::<(), ()>(()), |_| ());
                }
            }
        }
    }
}
