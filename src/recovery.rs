//! Startup: rebuild the state from the WAL, then open the WAL for appends.
//!
//! Replay applies every record through the same `State::apply` the live
//! writer uses, in LSN order, so the state after replay is exactly the
//! acknowledged state before the crash (DESIGN.md invariant 2).

use std::time::{Duration, Instant};

use crate::error::StorageError;
use crate::ledger::Ledger;
use crate::wal::reader::read_log;
use crate::wal::{Record, Wal, WAL_DIR};

#[derive(Debug)]
pub struct RecoverySummary {
    pub records: u64,
    pub segments: usize,
    pub next_lsn: u64,
    pub torn_tail_cut: bool,
    pub elapsed: Duration,
}

/// Replays the log into `ledger.state` and starts the WAL writer after it.
pub fn recover(ledger: &Ledger) -> Result<(Wal, RecoverySummary), StorageError> {
    let started = Instant::now();
    let dir = ledger.data_dir.join(WAL_DIR);
    ledger.fs.create_dir_all(&dir).map_err(|e| StorageError::io(&dir, e))?;
    let state = ledger.state.clone();
    let mut records = 0u64;
    let end = read_log(ledger.fs.as_ref(), &dir, 1, true, |lsn, payload| {
        let record = Record::decode(payload)
            .map_err(|e| StorageError::Inconsistent(format!("undecodable record {lsn}: {e}")))?;
        state.apply(lsn, record)?;
        records += 1;
        Ok(())
    })?;
    let live_state = ledger.state.clone();
    let wal = Wal::start(ledger.fs.clone(), &dir, &end, Box::new(move |lsn, record| live_state.apply(lsn, record)))?;
    let summary = RecoverySummary {
        records,
        segments: end.segments.len(),
        next_lsn: end.next_lsn,
        torn_tail_cut: end.torn.is_some(),
        elapsed: started.elapsed(),
    };
    Ok((wal, summary))
}
