//! `read_log` on an arbitrary segment file, each record decoded and applied as
//! recovery does: an error or a clean prefix, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loyalty_ledger::error::StorageError;
use loyalty_ledger::state::State;
use loyalty_ledger::wal::format::{segment_file_name, segment_header};
use loyalty_ledger::storage::fs::RealFs;
use loyalty_ledger::wal::reader::read_log;
use loyalty_ledger::wal::Record;

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    // Half the inputs get a good header, so the fuzzer reaches the frames sooner.
    let mut bytes = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 0) {
        bytes.extend_from_slice(&segment_header(1));
    }
    bytes.extend_from_slice(data);
    std::fs::write(dir.path().join(segment_file_name(1)), &bytes).unwrap();
    let state = State::new();
    let _ = read_log(&RealFs, dir.path(), 1, true, |lsn, payload| {
        let record = Record::decode(payload).map_err(|e| StorageError::Inconsistent(format!("{lsn}: {e}")))?;
        state.apply(lsn, record)
    });
});
