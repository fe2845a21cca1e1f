//! How history lays out its keys and values (docs/formats.md, "History").
//!
//! Integers are big-endian, so keys sort as their numbers do. Values are
//! fixed fields followed by the bytes of a response: no framing library, so
//! the layout is exactly what the docs say and an operator's tool (or a
//! second engine) can read it without this code.

use std::sync::Arc;

use crate::wal::IdemEntry;

/// Partition of single values: `LSN_KEY`.
pub const META: &str = "meta";
/// Key of history's LSN in `META`: 8 bytes, the last record wholly written.
pub const LSN_KEY: &[u8] = b"lsn";
/// Partition: idempotency key (its bytes) -> `encode_remembered`.
pub const IDEMPOTENCY: &str = "idempotency";
/// Partition: `age_key(created, lsn)` -> idempotency key, for retention.
pub const IDEMPOTENCY_BY_AGE: &str = "idempotency_by_age";

/// Partition: `object_key(table, id)` -> the object's current version, as
/// the WAL change that puts it (`Change::encode_alone`, bincode).
pub const OBJECTS: &str = "objects";
/// Key in `META` present once history holds every cold object of the
/// records up to its LSN (a history made before objects went there has
/// none until its first catch-up writes them all).
pub const OBJECTS_KEY: &[u8] = b"objects";

/// An object's key: its table's byte (`state::ColdTable`), then its id.
pub fn object_key(table: u8, id: &str) -> Vec<u8> {
    let mut key = Vec::with_capacity(1 + id.len());
    key.push(table);
    key.extend_from_slice(id.as_bytes());
    key
}

/// Partition: `archive_key(table, position)` -> `encode_archived`: the
/// objects of the archived tables (`ARCHIVED_TABLES`) by their place in their
/// table's insertion order, which is how lists read them.
pub const ARCHIVE: &str = "archive";
/// Partition: `object_key(table, id)` -> position (4 bytes): where an
/// archived object is in `ARCHIVE`.
pub const ARCHIVE_IDS: &str = "archive_ids";
/// Key in `META` present once every object of the first archived tables
/// (`FIRST_ARCHIVED_TABLES`) is in `ARCHIVE` rather than `OBJECTS` (a
/// history from before has its first start after the change move them,
/// `History::catch_up`); a table archived later has its own key
/// (`archive_moved_key`).
pub const ARCHIVE_KEY: &[u8] = b"archive";

/// The tables whose objects history keeps by position (`state::ColdTable`
/// bytes: payments, points transactions, lots and events). Memory lets go
/// of them wholly, in their order; an archived payment or lot may still
/// change (a refund, a spend), and its new version is written over the old
/// one at its position (docs/architecture.md, "History").
pub const ARCHIVED_TABLES: [u8; 4] = [1, 4, 5, 6];

/// The tables archived first, whose move `ARCHIVE_KEY` marks.
pub const FIRST_ARCHIVED_TABLES: [u8; 2] = [4, 6];

/// Key in `META` present once every object of `table`, archived after the
/// first ones, is in `ARCHIVE`: `archive:` then the table's byte.
pub fn archive_moved_key(table: u8) -> [u8; 9] {
    let mut key = *b"archive:\0";
    key[8] = table;
    key
}

/// Whether history keeps `table`'s objects by position.
pub fn is_archived(table: u8) -> bool {
    ARCHIVED_TABLES.contains(&table)
}

/// An archived object's key: its table's byte, then its position (big-endian).
pub fn archive_key(table: u8, position: u32) -> [u8; 5] {
    let mut key = [0u8; 5];
    key[0] = table;
    key[1..].copy_from_slice(&position.to_be_bytes());
    key
}

/// The position in an `archive_key`.
pub fn archive_key_position(key: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(key.get(1..5)?.try_into().ok()?))
}

/// Bytes before the id in an archived value: created (8), the id's length (1).
const ARCHIVED_HEADER_BYTES: usize = 8 + 1;

/// created | id length | id | the encoded change (`None` for an id over 255 bytes).
pub fn encode_archived(created: i64, id: &str, change: &[u8]) -> Option<Vec<u8>> {
    let id_len = u8::try_from(id.len()).ok()?;
    let mut out = Vec::with_capacity(ARCHIVED_HEADER_BYTES + id.len() + change.len());
    out.extend_from_slice(&created.to_be_bytes());
    out.push(id_len);
    out.extend_from_slice(id.as_bytes());
    out.extend_from_slice(change);
    Some(out)
}

/// An archived value's `created`, id and encoded change.
pub fn decode_archived(bytes: &[u8]) -> Option<(i64, &str, &[u8])> {
    let created = i64::from_be_bytes(bytes.get(0..8)?.try_into().ok()?);
    let id_len = usize::from(*bytes.get(8)?);
    let id = std::str::from_utf8(bytes.get(ARCHIVED_HEADER_BYTES..ARCHIVED_HEADER_BYTES + id_len)?).ok()?;
    Some((created, id, &bytes[ARCHIVED_HEADER_BYTES + id_len..]))
}

/// Bytes before the response body in a remembered value: LSN (8), created
/// (8), status (2), fingerprint (32).
const REMEMBERED_HEADER_BYTES: usize = 8 + 8 + 2 + 32;

/// A remembered idempotent response: the entry its record carried, with the
/// record's LSN and time.
#[derive(Debug, Clone, PartialEq)]
pub struct Remembered {
    pub lsn: u64,
    pub created: i64,
    pub entry: IdemEntry,
}

pub fn decode_lsn(bytes: &[u8]) -> Option<u64> {
    Some(u64::from_be_bytes(bytes.try_into().ok()?))
}

/// LSN | created | status | fingerprint | body.
pub fn encode_remembered(r: &Remembered) -> Vec<u8> {
    let mut out = Vec::with_capacity(REMEMBERED_HEADER_BYTES + r.entry.body.len());
    out.extend_from_slice(&r.lsn.to_be_bytes());
    out.extend_from_slice(&r.created.to_be_bytes());
    out.extend_from_slice(&r.entry.status.to_be_bytes());
    out.extend_from_slice(&r.entry.fingerprint);
    out.extend_from_slice(&r.entry.body);
    out
}

pub fn decode_remembered(key: &str, bytes: &[u8]) -> Option<Remembered> {
    if bytes.len() < REMEMBERED_HEADER_BYTES {
        return None;
    }
    let lsn = u64::from_be_bytes(bytes[0..8].try_into().ok()?);
    let created = i64::from_be_bytes(bytes[8..16].try_into().ok()?);
    let status = u16::from_be_bytes(bytes[16..18].try_into().ok()?);
    let fingerprint: [u8; 32] = bytes[18..50].try_into().ok()?;
    let body = Arc::from(&bytes[REMEMBERED_HEADER_BYTES..]);
    Some(Remembered { lsn, created, entry: IdemEntry { key: key.to_string(), fingerprint, status, body } })
}

/// The LSN of an encoded remembered response.
pub fn remembered_lsn(bytes: &[u8]) -> Option<u64> {
    decode_lsn(bytes.get(0..8)?)
}

/// Retention's key: `created` (offset so that negative times sort first) then the LSN.
pub fn age_key(created: i64, lsn: u64) -> [u8; 16] {
    let mut key = [0u8; 16];
    key[..8].copy_from_slice(&((created as u64) ^ (1 << 63)).to_be_bytes());
    key[8..].copy_from_slice(&lsn.to_be_bytes());
    key
}

/// The LSN part of an `age_key`.
pub fn age_key_lsn(key: &[u8]) -> Option<u64> {
    decode_lsn(key.get(8..16)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_remembered_response_round_trips() {
        let r = Remembered {
            lsn: 42,
            created: -5,
            entry: IdemEntry {
                key: "k-1".into(),
                fingerprint: [7; 32],
                status: 201,
                body: Arc::from(&b"{\"a\":1}"[..]),
            },
        };
        let bytes = encode_remembered(&r);
        assert_eq!(decode_remembered("k-1", &bytes), Some(r));
        assert_eq!(remembered_lsn(&bytes), Some(42));
        assert_eq!(decode_remembered("k-1", &bytes[..REMEMBERED_HEADER_BYTES - 1]), None);
    }

    #[test]
    fn an_archived_object_round_trips_and_keys_sort_by_position() {
        let bytes = encode_archived(-7, "evt_1", b"change").unwrap();
        assert_eq!(encode_archived(0, &"x".repeat(256), b""), None);
        assert_eq!(decode_archived(&bytes), Some((-7, "evt_1", &b"change"[..])));
        assert_eq!(decode_archived(&bytes[..9]), None);
        let keys =
            [archive_key(4, 0), archive_key(4, 255), archive_key(4, 256), archive_key(4, u32::MAX), archive_key(6, 0)];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(archive_key_position(&archive_key(6, 70_000)), Some(70_000));
    }

    #[test]
    fn age_keys_sort_by_time_then_lsn() {
        let keys = [age_key(-1, 9), age_key(0, 1), age_key(0, 2), age_key(1_700_000_000, 0), age_key(i64::MAX, 0)];
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(age_key_lsn(&age_key(3, 77)), Some(77));
    }
}
