//! Log sequence numbers: a record's position in the log, from 1. A type of
//! its own so that an LSN cannot be mixed up with a count, an offset or a
//! time; the on-disk formats store it as a plain u64 (docs/formats.md).

use std::fmt;

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Lsn(u64);

impl Lsn {
    /// The first record's LSN.
    pub const FIRST: Lsn = Lsn(1);

    /// `n` as an LSN; 0 (which no record has) becomes `FIRST`.
    pub const fn new(n: u64) -> Lsn {
        if n == 0 {
            Lsn::FIRST
        } else {
            Lsn(n)
        }
    }

    pub const fn get(self) -> u64 {
        self.0
    }

    /// The LSN `n` records later, unless that passes the largest LSN.
    pub fn checked_add(self, n: u64) -> Option<Lsn> {
        self.0.checked_add(n).map(Lsn)
    }

    /// The record after this one (an LSN past `u64::MAX` is never reached:
    /// the reader refuses a log that would need one).
    pub fn next(self) -> Lsn {
        Lsn(self.0.saturating_add(1))
    }

    /// The LSN of the record before this one: what the state is at when this
    /// is the next to be written (0 before the first record).
    pub fn before(self) -> u64 {
        self.0 - 1
    }
}

impl fmt::Display for Lsn {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}
