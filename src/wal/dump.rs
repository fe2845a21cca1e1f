//! `loyalty-ledger wal dump`: every record of a (stopped) data directory, one
//! line each: LSN, time, idempotency key, then each change as JSON. It starts
//! where the log starts: after a snapshot deleted the oldest segments, that
//! is the first LSN of the oldest segment left, not LSN 1.

use std::path::Path;

use super::reader::{read_log, Mode, ReadFrom};
use super::{Record, WAL_DIR};
use crate::error::StorageError;
use crate::storage::fs::RealFs;

pub fn dump(data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(WAL_DIR);
    let mut first = None;
    let end = read_log(&RealFs, &dir, ReadFrom::Oldest, Mode::ReadOnly, |lsn, payload| {
        let record = Record::decode(payload)
            .map_err(|e| StorageError::Inconsistent(format!("undecodable record {lsn}: {e}")))?;
        first.get_or_insert(lsn);
        let changes = serde_json::to_string(&record.changes).unwrap_or_else(|e| format!("<{e}>"));
        let key = record.idem.as_ref().map_or("-", |i| i.key.as_str());
        println!("lsn={lsn} time={} idempotency_key={key} changes={changes}", record.time);
        Ok(())
    })?;
    if let Some(torn) = end.torn {
        println!(
            "# torn tail in {} at offset {}: {} (set aside and cut at the next start)",
            torn.path.display(),
            torn.offset,
            torn.reason
        );
    }
    match first {
        Some(first) => println!(
            "# {} segment(s), records {first} to {}, next lsn {}",
            end.segments.len(),
            end.next_lsn.before(),
            end.next_lsn
        ),
        None => println!("# {} segment(s), no records, next lsn {}", end.segments.len(), end.next_lsn),
    }
    Ok(())
}
