//! On-disk format of WAL segments (documented in docs/formats.md).
//!
//! A segment file `wal/<first_lsn:020>.wal` starts with a 32-byte header:
//! magic `LLWAL\r\n\x1a`, format version (u32 LE), flags (u32 LE, 0),
//! first LSN (u64 LE), crc32 (u32 LE), and in version 2 a random salt (u32 LE).
//!
//! Version 2 (written now) groups records into *batches*, one per group
//! commit: a 28-byte batch header (magic, body length, record count, first
//! LSN, crc32 of the body, crc32 of the salt and the header) and then the
//! body, the batch's record frames. Knowing where each batch starts and ends
//! is what lets recovery tell the final, unacknowledged batch (whose pages may
//! reach the disk in any order after a power loss) from damage to an earlier
//! batch: a batch is written only after the one before it was synced, so
//! damage with a good batch header anywhere after it is damage to
//! acknowledged data. The salt makes a header inside a record's bytes (a
//! client's metadata, say) fail its checksum.
//!
//! Version 1 (still read) has no batches: record frames follow the header
//! back to back.
//!
//! A record frame is `len (u32 LE) | !len (u32 LE) | crc32(payload) (u32 LE) | payload`.
//! The inverted length guards the length itself, so a flipped bit in a length
//! is seen as corruption instead of a record that "runs past the end".

use std::ops::Range;

pub const SEGMENT_MAGIC: [u8; 8] = *b"LLWAL\r\n\x1a";
/// The format this build writes.
pub const FORMAT_VERSION: u32 = 2;
/// The older format this build still reads (records without batches).
pub const FORMAT_VERSION_UNBATCHED: u32 = 1;
pub const SEGMENT_HEADER_BYTES: usize = 32;
pub const FRAME_HEADER_BYTES: usize = 12;
/// First bytes of every batch header: `LLBT`.
pub const BATCH_MAGIC: [u8; 4] = *b"LLBT";
pub const BATCH_HEADER_BYTES: usize = 28;

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

/// What a segment header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentHeader {
    pub version: u32,
    pub first_lsn: u64,
    /// Mixed into every batch header's checksum (version 2; 0 in version 1).
    pub salt: u32,
}

impl SegmentHeader {
    /// A header of the format this build writes.
    pub fn new(first_lsn: u64, salt: u32) -> SegmentHeader {
        SegmentHeader { version: FORMAT_VERSION, first_lsn, salt }
    }

    pub fn encode(&self) -> [u8; SEGMENT_HEADER_BYTES] {
        let mut h = [0u8; SEGMENT_HEADER_BYTES];
        h[0..8].copy_from_slice(&SEGMENT_MAGIC);
        h[8..12].copy_from_slice(&self.version.to_le_bytes());
        h[12..16].copy_from_slice(&0u32.to_le_bytes());
        h[16..24].copy_from_slice(&self.first_lsn.to_le_bytes());
        if self.version != FORMAT_VERSION_UNBATCHED {
            h[28..32].copy_from_slice(&self.salt.to_le_bytes());
        }
        let crc = header_crc(&h);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// Whether records come in batches (version 2) or back to back (version 1).
    pub fn batched(&self) -> bool {
        self.version != FORMAT_VERSION_UNBATCHED
    }
}

/// crc32 of a segment header: bytes 0..24, and in version 2 the salt too.
fn header_crc(h: &[u8; SEGMENT_HEADER_BYTES]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&h[0..24]);
    if h[8..12] != FORMAT_VERSION_UNBATCHED.to_le_bytes() {
        crc.update(&h[28..32]);
    }
    crc.finalize()
}

/// The header of a segment whose first bytes are `h`, or why they are no header.
pub fn parse_segment_header(h: &[u8]) -> Result<SegmentHeader, String> {
    let Some(h) = h.get(..SEGMENT_HEADER_BYTES) else {
        return Err(format!("header is {} bytes, expected {SEGMENT_HEADER_BYTES}", h.len()));
    };
    let h: &[u8; SEGMENT_HEADER_BYTES] = h.try_into().map_err(|_| "header size".to_string())?;
    if h[0..8] != SEGMENT_MAGIC {
        return Err("bad magic: not a loyalty-ledger WAL segment".into());
    }
    if u32_at(h, 24) != header_crc(h) {
        return Err("segment header checksum mismatch".into());
    }
    let version = u32_at(h, 8);
    if version != FORMAT_VERSION && version != FORMAT_VERSION_UNBATCHED {
        return Err(format!(
            "unsupported WAL format version {version} (this build reads {FORMAT_VERSION_UNBATCHED} and {FORMAT_VERSION})"
        ));
    }
    let salt = if version == FORMAT_VERSION_UNBATCHED { 0 } else { u32_at(h, 28) };
    Ok(SegmentHeader { version, first_lsn: u64_at(h, 16), salt })
}

fn u32_at(buf: &[u8], at: usize) -> u32 {
    let mut b = [0u8; 4];
    b.copy_from_slice(&buf[at..at + 4]);
    u32::from_le_bytes(b)
}

fn u64_at(buf: &[u8], at: usize) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&buf[at..at + 8]);
    u64::from_le_bytes(b)
}

/// The header of one batch: what `BatchHeader::encode` writes before its frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// Bytes of frames after the header.
    pub body_len: u32,
    pub records: u32,
    pub first_lsn: u64,
    /// crc32 of the body.
    pub body_crc: u32,
}

impl BatchHeader {
    /// Layout: magic `LLBT` | body length u32 | records u32 | first LSN u64 |
    /// crc32(body) u32 | crc32(salt LE, bytes 0..24) u32.
    pub fn encode(&self, salt: u32) -> [u8; BATCH_HEADER_BYTES] {
        let mut h = [0u8; BATCH_HEADER_BYTES];
        h[0..4].copy_from_slice(&BATCH_MAGIC);
        h[4..8].copy_from_slice(&self.body_len.to_le_bytes());
        h[8..12].copy_from_slice(&self.records.to_le_bytes());
        h[12..20].copy_from_slice(&self.first_lsn.to_le_bytes());
        h[20..24].copy_from_slice(&self.body_crc.to_le_bytes());
        let crc = batch_header_crc(salt, &h);
        h[24..28].copy_from_slice(&crc.to_le_bytes());
        h
    }

    /// The batch header at `buf[at..]`, if one is there whole with a good checksum.
    pub fn parse(buf: &[u8], at: usize, salt: u32) -> Option<BatchHeader> {
        let h: &[u8; BATCH_HEADER_BYTES] = buf.get(at..at.checked_add(BATCH_HEADER_BYTES)?)?.try_into().ok()?;
        if h[0..4] != BATCH_MAGIC || u32_at(h, 24) != batch_header_crc(salt, h) {
            return None;
        }
        Some(BatchHeader {
            body_len: u32_at(h, 4),
            records: u32_at(h, 8),
            first_lsn: u64_at(h, 12),
            body_crc: u32_at(h, 20),
        })
    }
}

fn batch_header_crc(salt: u32, h: &[u8; BATCH_HEADER_BYTES]) -> u32 {
    let mut crc = crc32fast::Hasher::new();
    crc.update(&salt.to_le_bytes());
    crc.update(&h[0..24]);
    crc.finalize()
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
    pub payloads: Vec<Range<usize>>,
    /// Where each good batch starts (version 2; empty for version 1).
    pub batches: Vec<usize>,
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
        return past_the_end(buf, start, "records");
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
    Scan { payloads, batches: Vec::new(), valid_end: pos, tail }
}

/// What a scan asked to start past the end of `buf` finds: corruption, no record.
fn past_the_end(buf: &[u8], start: usize, what: &str) -> Scan {
    let reason = format!("{what} should start at offset {start}, past the end ({} bytes)", buf.len());
    Scan {
        payloads: Vec::new(),
        batches: Vec::new(),
        valid_end: buf.len(),
        tail: Tail::Corrupt { offset: buf.len(), reason },
    }
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

/// Scans the batches of a version 2 segment from `start`, the first holding
/// `first_lsn`. Zeros where a batch would start end the log cleanly. A bad
/// batch (header, checksum, LSN, or frames that do not fill it) is the torn
/// tail, cut at its start, only if no good batch header follows it anywhere
/// in the file; otherwise it is corruption at the first bad byte found.
pub fn scan_batches(buf: &[u8], start: usize, salt: u32, first_lsn: u64, record_bytes_max: usize) -> Scan {
    if start > buf.len() {
        return past_the_end(buf, start, "batches");
    }
    let mut payloads = Vec::new();
    let mut batches = Vec::new();
    let mut pos = start;
    let mut lsn = first_lsn;
    let tail = loop {
        if pos == buf.len() || buf[pos..].iter().all(|&b| b == 0) {
            // The end, or zeros where a batch would start: space the writer
            // filled ahead (`AppendFile::reserve`). Nothing was written here.
            break Tail::Clean;
        }
        let Damage { offset, reason } = match check_batch(buf, pos, salt, lsn, record_bytes_max) {
            Ok(GoodBatch { header, frames }) => {
                payloads.extend(frames);
                batches.push(pos);
                pos += BATCH_HEADER_BYTES + header.body_len as usize;
                lsn += u64::from(header.records);
                continue;
            }
            Err(damage) => damage,
        };
        break match find_batch_after(buf, pos + 1, salt, lsn) {
            Some(later) => Tail::Corrupt {
                offset,
                reason: format!(
                    "{reason}; a good batch follows at offset {later}, so this batch was written (and acknowledged) before it"
                ),
            },
            None => Tail::Torn { offset: pos, reason },
        };
    };
    Scan { payloads, batches, valid_end: pos, tail }
}

/// A batch that passed every check, with its records' payload ranges.
struct GoodBatch {
    header: BatchHeader,
    frames: Vec<Range<usize>>,
}

/// Where a batch is bad (the first bad byte found) and why.
struct Damage {
    offset: usize,
    reason: String,
}

fn damage(offset: usize, reason: impl Into<String>) -> Damage {
    Damage { offset, reason: reason.into() }
}

/// The batch at `pos` holding `lsn` first, or where and why it is bad.
fn check_batch(buf: &[u8], pos: usize, salt: u32, lsn: u64, record_bytes_max: usize) -> Result<GoodBatch, Damage> {
    let rest = buf.len() - pos;
    let Some(header) = BatchHeader::parse(buf, pos, salt) else {
        return Err(if rest < BATCH_HEADER_BYTES {
            damage(pos, format!("incomplete batch header ({rest} bytes)"))
        } else {
            damage(pos, "bad batch header (magic or checksum)")
        });
    };
    if header.first_lsn != lsn {
        return Err(damage(pos, format!("batch says its first LSN is {}, expected {lsn}", header.first_lsn)));
    }
    if header.records == 0 || lsn.checked_add(u64::from(header.records)).is_none() {
        return Err(damage(pos, format!("batch of {} records from LSN {lsn} is impossible", header.records)));
    }
    let body = pos + BATCH_HEADER_BYTES;
    let end = body + header.body_len as usize;
    if end > buf.len() {
        return Err(damage(pos, format!("batch of {} bytes runs past the end of the file", header.body_len)));
    }
    let frames = scan_frames(&buf[..end], body, record_bytes_max);
    if crc32fast::hash(&buf[body..end]) != header.body_crc {
        let at = match frames.tail {
            Tail::Torn { offset, .. } | Tail::Corrupt { offset, .. } => offset,
            Tail::Clean => body,
        };
        return Err(damage(at, "batch checksum mismatch"));
    }
    if frames.tail != Tail::Clean || frames.valid_end != end || frames.payloads.len() != header.records as usize {
        return Err(damage(pos, format!("batch body does not hold exactly its {} records", header.records)));
    }
    Ok(GoodBatch { header, frames: frames.payloads })
}

/// Offset of the first good batch header at or after `from` whose first LSN
/// is past `lsn`, if any.
fn find_batch_after(buf: &[u8], from: usize, salt: u32, lsn: u64) -> Option<usize> {
    let mut at = from;
    while at + BATCH_HEADER_BYTES <= buf.len() {
        let next = buf[at..].windows(BATCH_MAGIC.len()).position(|w| w == BATCH_MAGIC)? + at;
        if BatchHeader::parse(buf, next, salt).is_some_and(|h| h.first_lsn > lsn) {
            return Some(next);
        }
        at = next + 1;
    }
    None
}

/// Starts a batch in `out` (emptied first): room for its header, which
/// `seal_batch` fills in once the frames follow it.
pub fn begin_batch(out: &mut Vec<u8>) {
    out.clear();
    out.resize(BATCH_HEADER_BYTES, 0);
}

/// Writes the header of the batch `out` holds (begun by `begin_batch`, then
/// its `records` frames), whose first record gets `first_lsn`.
pub fn seal_batch(out: &mut [u8], salt: u32, first_lsn: u64, records: u32) {
    let body = &out[BATCH_HEADER_BYTES..];
    let header = BatchHeader { body_len: body.len() as u32, records, first_lsn, body_crc: crc32fast::hash(body) };
    out[..BATCH_HEADER_BYTES].copy_from_slice(&header.encode(salt));
}

/// Scans a whole segment file, whichever version: its header, then its
/// batches (version 2) or frames (version 1).
pub fn scan_segment(buf: &[u8], record_bytes_max: usize) -> Result<(SegmentHeader, Scan), String> {
    let header = parse_segment_header(buf)?;
    let scan = if header.batched() {
        scan_batches(buf, SEGMENT_HEADER_BYTES, header.salt, header.first_lsn, record_bytes_max)
    } else {
        scan_frames(buf, SEGMENT_HEADER_BYTES, record_bytes_max)
    };
    Ok((header, scan))
}

/// Lays out a segment file the way the writer does: header, then batches
/// of framed records. For tests, benches and tools that need a log on disk.
pub struct SegmentBuilder {
    bytes: Vec<u8>,
    salt: u32,
    next_lsn: u64,
    batch: Vec<u8>,
    batch_records: u32,
}

impl SegmentBuilder {
    pub fn new(first_lsn: u64, salt: u32) -> SegmentBuilder {
        let mut batch = Vec::new();
        begin_batch(&mut batch);
        SegmentBuilder {
            bytes: SegmentHeader::new(first_lsn, salt).encode().to_vec(),
            salt,
            next_lsn: first_lsn,
            batch,
            batch_records: 0,
        }
    }

    /// Adds a record to the open batch.
    pub fn record(&mut self, payload: &[u8]) -> &mut Self {
        frame_into(payload, &mut self.batch);
        self.batch_records += 1;
        self
    }

    /// Closes the open batch (nothing if it holds no record).
    pub fn end_batch(&mut self) -> &mut Self {
        if self.batch_records > 0 {
            seal_batch(&mut self.batch, self.salt, self.next_lsn, self.batch_records);
            self.bytes.extend_from_slice(&self.batch);
            // Wrapping: tests write logs that run past the largest LSN on purpose.
            self.next_lsn = self.next_lsn.wrapping_add(u64::from(self.batch_records));
            begin_batch(&mut self.batch);
            self.batch_records = 0;
        }
        self
    }

    /// Bytes so far, the open batch included once closed.
    pub fn len(&self) -> usize {
        self.bytes.len() + if self.batch_records > 0 { self.batch.len() } else { 0 }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == SEGMENT_HEADER_BYTES
    }

    /// The segment's bytes, the open batch closed.
    pub fn finish(mut self) -> Vec<u8> {
        self.end_batch();
        self.bytes
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
        let h = SegmentHeader::new(42, 0xdead_beef);
        assert_eq!(parse_segment_header(&h.encode()), Ok(h));
        let mut bad = h.encode();
        bad[17] ^= 1;
        assert!(parse_segment_header(&bad).is_err());
        let mut bad = h.encode();
        bad[30] ^= 1; // the salt is covered too
        assert!(parse_segment_header(&bad).is_err());
        assert!(parse_segment_header(&h.encode()[..10]).is_err());
        assert_eq!(parse_segment_file_name(&segment_file_name(7)), Some(7));
        assert_eq!(parse_segment_file_name("7.wal"), None);
    }

    #[test]
    fn a_version_1_header_still_reads() {
        // The bytes docs/formats.md shows for the first segment of version 1.
        let v1: [u8; 32] = [
            0x4c, 0x4c, 0x57, 0x41, 0x4c, 0x0d, 0x0a, 0x1a, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0x3e, 0xef,
            0xbd, 0xd2, 0, 0, 0, 0,
        ];
        let h = parse_segment_header(&v1).unwrap();
        assert_eq!(h, SegmentHeader { version: 1, first_lsn: 1, salt: 0 });
        assert!(!h.batched());
        assert_eq!(h.encode(), v1);
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

    /// A version 2 segment body: batches of the given record payloads, from LSN 1.
    fn batches(salt: u32, batches: &[&[&[u8]]]) -> (Vec<u8>, Vec<usize>) {
        let mut out = vec![0u8; SEGMENT_HEADER_BYTES];
        let mut starts = Vec::new();
        let mut lsn = 1;
        let mut batch = Vec::new();
        for records in batches {
            begin_batch(&mut batch);
            for p in *records {
                frame_into(p, &mut batch);
            }
            seal_batch(&mut batch, salt, lsn, records.len() as u32);
            starts.push(out.len());
            out.extend_from_slice(&batch);
            lsn += records.len() as u64;
        }
        (out, starts)
    }

    fn scan(buf: &[u8], salt: u32) -> Scan {
        scan_batches(buf, SEGMENT_HEADER_BYTES, salt, 1, 1 << 20)
    }

    const SALT: u32 = 0x5a17;

    #[test]
    fn batches_read_back_and_zeros_end_them() {
        let (mut buf, _) = batches(SALT, &[&[b"a", b"bb"], &[b"ccc"]]);
        let end = buf.len();
        buf.extend_from_slice(&[0u8; 4096]);
        let s = scan(&buf, SALT);
        assert_eq!(s.tail, Tail::Clean);
        assert_eq!(s.valid_end, end);
        let got: Vec<&[u8]> = s.payloads.iter().map(|r| &buf[r.clone()]).collect();
        assert_eq!(got, vec![&b"a"[..], b"bb", b"ccc"]);
        // Another segment's salt: not one header is believed.
        assert!(matches!(scan(&buf, SALT + 1).tail, Tail::Torn { offset: SEGMENT_HEADER_BYTES, .. }));
    }

    /// The final batch spans several pages; any of them zero or garbage, in any
    /// combination, is a torn tail cut at the batch's start.
    #[test]
    fn any_damage_to_the_final_batch_is_torn() {
        let big = vec![7u8; 3000];
        let records: Vec<&[u8]> = vec![&big; 4];
        let (clean, starts) = batches(SALT, &[&[b"first"], &records]);
        let last = starts[1];
        let pages: Vec<std::ops::Range<usize>> =
            (last..clean.len()).step_by(4096).map(|p| p..(p + 4096).min(clean.len())).collect();
        assert!(pages.len() >= 3);
        for mask in 1..(1u32 << pages.len()) {
            for fill in [0u8, 0xa5] {
                let mut buf = clean.clone();
                for (i, page) in pages.iter().enumerate() {
                    if mask & (1 << i) != 0 {
                        buf[page.clone()].fill(fill);
                    }
                }
                let s = scan(&buf, SALT);
                assert_eq!(s.payloads.len(), 1, "mask {mask:b} fill {fill}");
                assert_eq!(s.valid_end, last);
                let zeros_from_start = fill == 0 && mask & 1 != 0 && buf[last..].iter().all(|&b| b == 0);
                if zeros_from_start {
                    assert_eq!(s.tail, Tail::Clean, "mask {mask:b}");
                } else {
                    assert!(
                        matches!(s.tail, Tail::Torn { offset, .. } if offset == last),
                        "mask {mask:b}: {:?}",
                        s.tail
                    );
                }
            }
        }
        // Every truncation too.
        for cut in last + 1..clean.len() {
            let s = scan(&clean[..cut], SALT);
            assert!(matches!(s.tail, Tail::Torn { offset, .. } if offset == last), "cut {cut}");
        }
        // And garbage after the last batch.
        let mut buf = clean.clone();
        buf.extend_from_slice(b"garbage after the log");
        let s = scan(&buf, SALT);
        assert_eq!(s.payloads.len(), 5);
        assert!(matches!(s.tail, Tail::Torn { offset, .. } if offset == clean.len()));
    }

    #[test]
    fn a_flipped_bit_before_the_final_batch_is_corruption() {
        let (buf, starts) = batches(SALT, &[&[b"one", b"two"], &[b"three"], &[b"four"]]);
        for byte in starts[0]..starts[1] {
            for bit in 0..8 {
                let mut b = buf.clone();
                b[byte] ^= 1 << bit;
                let s = scan(&b, SALT);
                assert!(
                    matches!(&s.tail, Tail::Corrupt { offset, reason } if *offset >= starts[0] && *offset < starts[1] && reason.contains("good batch follows")),
                    "byte {byte} bit {bit}: {:?}",
                    s.tail
                );
            }
        }
        // A bad record names its own offset: the first batch's second frame.
        let mut b = buf.clone();
        let second = starts[0] + BATCH_HEADER_BYTES + FRAME_HEADER_BYTES + 3;
        b[second + FRAME_HEADER_BYTES] ^= 1;
        assert!(matches!(scan(&b, SALT).tail, Tail::Corrupt { offset, .. } if offset == second));
    }
}
