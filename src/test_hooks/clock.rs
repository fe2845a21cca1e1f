//! The manual clock: with `LEDGER_TEST_CLOCK` the server runs on a clock
//! that only moves when `POST /v1/test/clock` says so, so tests can reach
//! deadlines (redemption expiry, webhook retries) without waiting for them.

use std::sync::atomic::{AtomicI64, Ordering};

use crate::timer::Clock;

/// A clock that only moves when told to (tests).
#[derive(Debug)]
pub struct ManualClock(AtomicI64);

impl ManualClock {
    pub fn new(start: i64) -> Self {
        ManualClock(AtomicI64::new(start))
    }
    pub fn advance(&self, seconds: i64) {
        self.0.fetch_add(seconds, Ordering::SeqCst);
    }
    pub fn set(&self, now: i64) {
        self.0.store(now, Ordering::SeqCst);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> i64 {
        self.0.load(Ordering::SeqCst)
    }
}
