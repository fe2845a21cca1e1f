//! On-disk format of WAL segments (documented in docs/formats.md).
//!
//! A segment file `wal/<first_lsn:020>.wal` starts with a 32-byte header:
//! magic `LLWAL\r\n\x1a`, format version (u32 LE), flags (u32 LE, 0),
//! first LSN (u64 LE), crc32 of the preceding 24 bytes (u32 LE), 4 zero bytes.
//! Records follow back to back, each framed as
//! `len (u32 LE) | !len (u32 LE) | crc32(payload) (u32 LE) | payload`.
//! The inverted length guards the length itself, so a flipped bit in a length
//! is seen as corruption instead of a record that "runs past the end".

pub const SEGMENT_MAGIC: [u8; 8] = *b"LLWAL\r\n\x1a";
pub const FORMAT_VERSION: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const FRAME_HEADER_BYTES: usize = 12;

pub fn segment_file_name(first_lsn: u64) -> String {
    format!("{first_lsn:020}.wal")
}

/// The first LSN encoded in a segment file name, if it is one.
pub fn parse_segment_file_name(name: &str) -> Option<u64> {
    let stem = name.strip_suffix(".wal")?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    stem.parse().ok()
}

pub fn segment_header(first_lsn: u64) -> [u8; SEGMENT_HEADER_BYTES] {
    let mut h = [0u8; SEGMENT_HEADER_BYTES];
    h[0..8].copy_from_slice(&SEGMENT_MAGIC);
    h[8..12].copy_from_slice(&FORMAT_VERSION.to_le_bytes());
    h[12..16].copy_from_slice(&0u32.to_le_bytes());
    h[16..24].copy_from_slice(&first_lsn.to_le_bytes());
    let crc = crc32fast::hash(&h[0..24]);
    h[24..28].copy_from_slice(&crc.to_le_bytes());
    h
}

/// The first LSN of a segment whose header is `h`, or why the header is bad.
pub fn parse_segment_header(h: &[u8]) -> Result<u64, String> {
    if h.len() < SEGMENT_HEADER_BYTES {
        return Err(format!("header is {} bytes, expected {SEGMENT_HEADER_BYTES}", h.len()));
    }
    if h[0..8] != SEGMENT_MAGIC {
        return Err("bad magic: not a loyalty-ledger WAL segment".into());
    }
    let crc = u32::from_le_bytes(h[24..28].try_into().unwrap());
    if crc != crc32fast::hash(&h[0..24]) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32::from_le_bytes(h[8..12].try_into().unwrap());
    if version != FORMAT_VERSION {
        return Err(format!("unsupported WAL format version {version} (this build reads {FORMAT_VERSION})"));
    }
    Ok(u64::from_le_bytes(h[16..24].try_into().unwrap()))
}

/// Appends `payload` framed to `out`.
pub fn frame_into(payload: &[u8], out: &mut Vec<u8>) {
    let len = payload.len() as u32;
    out.extend_from_slice(&len.to_le_bytes());
    out.extend_from_slice(&(!len).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

/// What scanning a run of frames found after the last good record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tail {
    /// The data ended exactly after a good record.
    Clean,
    /// An incomplete final record (a write cut short by a crash): safe to cut at `offset`.
    Torn { offset: usize, reason: String },
    /// A bad record with data after it: never cut silently.
    Corrupt { offset: usize, reason: String },
}

/// Good records found in `buf[start..]`: the payload ranges, and what follows them.
pub struct Scan {
    pub payloads: Vec<std::ops::Range<usize>>,
    pub valid_end: usize,
    pub tail: Tail,
}

/// Scans frames from `start`. Only zeros where a record would start end the
/// scan cleanly (`valid_end` there). A bad frame is a torn tail only when
/// nothing but zero bytes follows it (or it runs past the end); otherwise it
/// is corruption.
/// A `start` past the end of `buf` is corruption too (never a panic).
pub fn scan_frames(buf: &[u8], start: usize, record_bytes_max: usize) -> Scan {
    if start > buf.len() {
        let reason = format!("records should start at offset {start}, past the end ({} bytes)", buf.len());
        return Scan { payloads: Vec::new(), valid_end: buf.len(), tail: Tail::Corrupt { offset: buf.len(), reason } };
    }
    let mut payloads = Vec::new();
    let mut pos = start;
    let tail = loop {
        let rest = buf.len() - pos;
        if rest == 0 {
            break Tail::Clean;
        }
        if buf[pos] == 0 && buf[pos..].iter().all(|&b| b == 0) {
            // Zeros where a record would start: space the writer filled ahead
            // (`AppendFile::reserve`), or a write that left nothing behind.
            // Either way nothing was acknowledged from here on.
            break Tail::Clean;
        }
        if rest < FRAME_HEADER_BYTES {
            break classify(buf, pos, buf.len(), format!("incomplete record header ({rest} bytes)"));
        }
        let len = u32::from_le_bytes(buf[pos..pos + 4].try_into().unwrap());
        let inv = u32::from_le_bytes(buf[pos + 4..pos + 8].try_into().unwrap());
        let crc = u32::from_le_bytes(buf[pos + 8..pos + 12].try_into().unwrap());
        if len != !inv || len == 0 || len as usize > record_bytes_max {
            break classify(buf, pos, pos + FRAME_HEADER_BYTES, format!("bad record header (length {len})"));
        }
        let body = pos + FRAME_HEADER_BYTES;
        let end = body + len as usize;
        if end > buf.len() {
            break Tail::Torn { offset: pos, reason: format!("record of {len} bytes runs past the end of the file") };
        }
        if crc32fast::hash(&buf[body..end]) != crc {
            break classify(buf, pos, end, "record checksum mismatch".to_string());
        }
        payloads.push(body..end);
        pos = end;
    };
    Scan { payloads, valid_end: pos, tail }
}

/// A bad frame at `offset` whose bytes reach to `end`: torn if only zeros follow.
fn classify(buf: &[u8], offset: usize, end: usize, reason: String) -> Tail {
    let end = end.min(buf.len());
    if buf[end..].iter().all(|&b| b == 0) {
        Tail::Torn { offset, reason }
    } else {
        Tail::Corrupt { offset, reason }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(payloads: &[&[u8]]) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            frame_into(p, &mut out);
        }
        out
    }

    #[test]
    fn header_round_trip_and_checks() {
        let h = segment_header(42);
        assert_eq!(parse_segment_header(&h), Ok(42));
        let mut bad = h;
        bad[17] ^= 1;
        assert!(parse_segment_header(&bad).is_err());
        assert!(parse_segment_header(&h[..10]).is_err());
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        assert_eq!(parse_segment_file_name("7.wal"), None);
    }

    #[test]
    fn every_truncation_of_the_last_record_is_torn() {
        let buf = frames(&[b"one", b"two", b"three-three"]);
        let last_start = buf.len() - (FRAME_HEADER_BYTES + 11);
        for cut in last_start..buf.len() {
            let s = scan_frames(&buf[..cut], 0, 1 << 20);
            assert_eq!(s.payloads.len(), 2, "cut at {cut}");
            assert_eq!(s.valid_end, last_start);
            if cut == last_start {
                assert_eq!(s.tail, Tail::Clean);
            } else {
                assert!(
                    matches!(s.tail, Tail::Torn { offset, .. } if offset == last_start),
                    "cut at {cut}: {:?}",
                    s.tail
                );
            }
        }
    }

    #[test]
    fn a_flipped_bit_in_a_middle_record_is_corruption() {
        let buf = frames(&[b"one", b"two", b"three"]);
        let second = FRAME_HEADER_BYTES + 3;
        for byte in second..second + FRAME_HEADER_BYTES + 3 {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                let s = scan_frames(&b, 0, 1 << 20);
                assert!(
                    matches!(s.tail, Tail::Corrupt { offset, .. } if offset == second),
                    "byte {byte} bit {bit}: {:?}",
                    s.tail
                );
            }
        }
    }

    #[test]
    fn zeros_where_a_record_would_start_end_the_log_cleanly() {
        let mut buf = frames(&[b"one"]);
        let end = buf.len();
        buf.extend_from_slice(&[0u8; 100]);
        let s = scan_frames(&buf, 0, 1 << 20);
        assert_eq!(s.payloads.len(), 1);
        assert!(matches!(s.tail, Tail::Clean), "{:?}", s.tail);
        assert_eq!(s.valid_end, end);
    }

    #[test]
    fn a_record_cut_short_before_the_zero_filled_space_is_torn() {
        let mut buf = frames(&[b"one"]);
        let end = buf.len();
        let two = frames(&[b"two two two"]);
        buf.extend_from_slice(&two[..7]);
        buf.extend_from_slice(&[0u8; 100]);
        let s = scan_frames(&buf, 0, 1 << 20);
        assert_eq!(s.payloads.len(), 1);
        assert!(matches!(s.tail, Tail::Torn { offset, .. } if offset == end), "{:?}", s.tail);
        // Anything but zeros after it is corruption, not a torn write.
        buf.push(1);
        assert!(matches!(scan_frames(&buf, 0, 1 << 20).tail, Tail::Corrupt { .. }));
    }

    #[test]
    fn a_start_past_the_end_is_corruption() {
        let s = scan_frames(b"short", 32, 1 << 20);
        assert!(s.payloads.is_empty());
        assert!(matches!(s.tail, Tail::Corrupt { offset: 5, .. }), "{:?}", s.tail);
    }
}
