//! `read_log` on an arbitrary segment file, each record decoded and applied as
//! recovery does: an error or a clean prefix, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loyalty_ledger::error::StorageError;
use loyalty_ledger::state::State;
use loyalty_ledger::storage::fs::RealFs;
use loyalty_ledger::wal::format::{segment_file_name, SegmentHeader};
use loyalty_ledger::wal::reader::{read_log, Mode, ReadFrom};
use loyalty_ledger::wal::{Lsn, Record};

fuzz_target!(|data: &[u8]| {
    let dir = tempfile::tempdir().unwrap();
    // Half the inputs get a good (version 2, salt 0) header, so the fuzzer
    // reaches the batches sooner.
    let mut bytes = Vec::new();
    if data.first().is_some_and(|b| b & 1 == 0) {
        bytes.extend_from_slice(&SegmentHeader::new(1, 0).encode());
    }
    bytes.extend_from_slice(data);
    std::fs::write(dir.path().join(segment_file_name(1)), &bytes).unwrap();
    let state = State::new();
    let _ = read_log(&RealFs, dir.path(), ReadFrom::Lsn(Lsn::FIRST), Mode::Repair, |lsn, payload| {
        let record = Record::decode(payload).map_err(|e| StorageError::Inconsistent(format!("{lsn}: {e}")))?;
        state.apply(lsn, record)
    });
});
