//! `loyalty-ledger wal dump`: every record of a (stopped) data directory, one
//! line each: LSN, time, idempotency key, then each change as JSON.

use std::path::Path;

use super::fs::RealFs;
use super::reader::read_log;
use super::{Record, WAL_DIR};
use crate::error::StorageError;

pub fn dump(data_dir: &Path) -> anyhow::Result<()> {
    let dir = data_dir.join(WAL_DIR);
    let end = read_log(&RealFs, &dir, 1, false, |lsn, payload| {
        let record = Record::decode(payload).map_err(StorageError::Inconsistent)?;
        let changes = serde_json::to_string(&record.changes).unwrap_or_else(|e| format!("<{e}>"));
        let key = record.idem.as_ref().map_or("-", |i| i.key.as_str());
        println!("lsn={lsn} time={} idempotency_key={key} changes={changes}", record.time);
        Ok(())
    })?;
    if let Some((path, offset, reason)) = end.torn {
        println!("# torn tail in {} at offset {offset}: {reason} (cut off at next start)", path.display());
    }
    println!("# {} segment(s), next lsn {}", end.segments.len(), end.next_lsn);
    Ok(())
}
