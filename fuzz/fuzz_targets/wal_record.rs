//! `Record::decode` and `scan_frames` on arbitrary bytes: an error, never a
//! panic; whatever decodes applies to a fresh state or fails cleanly.
#![no_main]

use libfuzzer_sys::fuzz_target;
use loyalty_ledger::config::WAL_RECORD_BYTES_MAX;
use loyalty_ledger::state::State;
use loyalty_ledger::wal::format::scan_frames;
use loyalty_ledger::wal::Record;

fuzz_target!(|data: &[u8]| {
    if let Ok(record) = Record::decode(data) {
        let _ = State::new().apply(1, record);
    }
    let start = data.first().map_or(0, |b| *b as usize);
    let scan = scan_frames(data, start, WAL_RECORD_BYTES_MAX);
    assert!(scan.valid_end <= data.len());
});
