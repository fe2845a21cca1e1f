//! How long the writer waits for more records before it syncs a batch.
//!
//! Without a wait, the writer syncs whatever arrived during the previous
//! sync: small batches, many syncs, and as many wake-ups of the writer and
//! apply threads. Waiting about one sync time once the first record is in
//! roughly doubles the batch, for the cost of that wait per request, and
//! lowers the tail latency at the same throughput (docs/performance.md,
//! "Gathering a batch").
//!
//! The wait only happens when the previous batch had company (at least
//! `WAL_GATHER_AFTER_RECORDS` records): a lone client writing one record at
//! a time never waits. It follows the disk: a running mean of the recent
//! write + fdatasync times, capped at `WAL_GATHER_MAX`, so a fast disk waits
//! little and a slow spike does not stretch every batch after it.

use std::time::Duration;

use crate::config::{WAL_GATHER_AFTER_RECORDS, WAL_GATHER_MAX};

/// Weight of the newest sync time in the running mean (1/8).
const SYNC_MEAN_WEIGHT_SHIFT: u32 = 3;

#[derive(Debug, Default)]
pub(super) struct Gather {
    /// Running mean of write + fdatasync, in nanoseconds.
    sync_mean_nanos: u64,
    previous_batch_records: usize,
}

impl Gather {
    /// How long to wait for company once a batch's first record is in.
    pub fn wait(&self) -> Option<Duration> {
        if self.previous_batch_records < WAL_GATHER_AFTER_RECORDS || self.sync_mean_nanos == 0 {
            return None;
        }
        Some(Duration::from_nanos(self.sync_mean_nanos).min(WAL_GATHER_MAX))
    }

    /// A batch of `records` was written and synced in `sync`.
    pub fn synced(&mut self, records: usize, sync: Duration) {
        let sample = u64::try_from(sync.as_nanos()).unwrap_or(u64::MAX);
        self.sync_mean_nanos = if self.sync_mean_nanos == 0 {
            sample
        } else {
            // mean += (sample - mean) / 8, in integers without going below zero.
            let mean = self.sync_mean_nanos;
            (mean - (mean >> SYNC_MEAN_WEIGHT_SHIFT)).saturating_add(sample >> SYNC_MEAN_WEIGHT_SHIFT)
        };
        self.previous_batch_records = records;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn a_lone_writer_never_waits() {
        let mut g = Gather::default();
        assert_eq!(g.wait(), None);
        for _ in 0..100 {
            g.synced(1, MS / 4);
            assert_eq!(g.wait(), None);
        }
    }

    #[test]
    fn company_waits_about_one_sync_time_and_never_past_the_cap() {
        let mut g = Gather::default();
        g.synced(WAL_GATHER_AFTER_RECORDS, MS / 4);
        assert_eq!(g.wait(), Some(WAL_GATHER_MAX.min(MS / 4)));
        // A slow sync moves the mean by an eighth of the difference, then it is capped.
        g.synced(WAL_GATHER_AFTER_RECORDS, 100 * MS);
        let after_spike = g.wait().unwrap();
        assert_eq!(after_spike, WAL_GATHER_MAX.min(MS / 4 - MS / 32 + 100 * MS / 8));
        // Fast syncs pull the mean back down (to within rounding).
        for _ in 0..200 {
            g.synced(8, MS / 20);
        }
        let settled = g.wait().unwrap();
        let (low, high) = (MS / 20 - Duration::from_micros(1), MS / 20 + Duration::from_micros(1));
        assert!(settled >= low.min(WAL_GATHER_MAX) && settled <= high.min(WAL_GATHER_MAX), "{settled:?}");
        // A batch without company turns the wait off again.
        g.synced(1, MS / 10);
        assert_eq!(g.wait(), None);
    }
}
