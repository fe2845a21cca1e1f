//! WAL replay in two lanes: accounts, points transactions and redemptions on
//! a thread of their own, every other change on the caller's thread.
//!
//! Applying a record is mostly cache and TLB misses on big hash tables, one
//! table at a time, and a change reads no table but its own, except a points
//! transaction, which checks and moves its account's balance, and a
//! redemption, which reads its previous version and moves its account's
//! held points (`state::check`). So the changes split into two lanes that
//! share no table: the *ledger* lane (accounts, transactions and
//! redemptions: every change that reads or updates an account) and the
//! *objects* lane (payments, events, customers and the rest, plus
//! idempotency entries). Each lane applies its changes in LSN order, which
//! is all a table needs (redemptions are written only by the ledger lane),
//! so the state after replay is the one a single thread would build. An
//! earn record is one payment and two events for the objects lane, one
//! transaction and its account for the ledger lane.
//!
//! Live appends still apply one whole record at a time on the WAL's apply
//! thread (`State::apply`): readers may look at several tables at once
//! there, and a barrier needs the state at exactly one LSN. During replay
//! nobody reads, and a failure fails the whole start, so the lanes may drift
//! apart by up to `LANE_QUEUE_CHUNKS` chunks.
//!
//! Errors: the first failing record in LSN order wins. If the ledger lane
//! fails, the caller's next hand-over fails and stops the replay; its error
//! is reported unless the objects lane failed at an earlier record.

use std::sync::mpsc::{self, SyncSender};

use super::State;
use crate::config::{LANE_CHUNK_CHANGES, LANE_QUEUE_CHUNKS};
use crate::error::StorageError;
use crate::wal::{Change, Record};

/// Whether `change` belongs to the ledger lane (the tables a points
/// transaction or a redemption reads or writes: both move their account's
/// figures, so they must meet the account in LSN order).
fn in_ledger_lane(change: &Change) -> bool {
    matches!(
        change,
        Change::PutAccount(_)
            | Change::PutTransaction(_)
            | Change::PutTransactionV1(_)
            | Change::PutRedemption(_)
            | Change::PutLot(_)
    )
}

/// The caller's side of the lanes: what `apply_in_lanes` hands to `run`.
pub struct Lanes<'a> {
    state: &'a State,
    to_ledger: Option<SyncSender<Vec<(u64, Change)>>>,
    /// Ledger changes not yet handed over, with their LSNs.
    pending: Vec<(u64, Change)>,
    /// Where the objects lane (this thread) failed, if it did.
    objects_failed_at: Option<u64>,
}

impl Lanes<'_> {
    /// Applies `change` of record `lsn` in its lane. A ledger change only
    /// queues; its error, if any, comes out of `apply_in_lanes`.
    fn change(&mut self, lsn: u64, change: Change) -> Result<(), StorageError> {
        if !in_ledger_lane(&change) {
            return self.state.apply_change(lsn, change).inspect_err(|_| self.objects_failed_at = Some(lsn));
        }
        self.pending.push((lsn, change));
        if self.pending.len() >= LANE_CHUNK_CHANGES {
            let full = std::mem::replace(&mut self.pending, Vec::with_capacity(LANE_CHUNK_CHANGES));
            let stopped = || StorageError::Inconsistent("the ledger lane stopped".into());
            self.to_ledger.as_ref().ok_or_else(stopped)?.send(full).map_err(|_| stopped())?;
        }
        Ok(())
    }

    /// Applies the WAL record `lsn` (what `State::apply` does live).
    pub fn record(&mut self, lsn: u64, record: Record) -> Result<(), StorageError> {
        let Record { time, idem, changes } = record;
        for change in changes {
            self.change(lsn, change)?;
        }
        self.state.finish_record(lsn, time, idem);
        Ok(())
    }
}

/// Runs `run` with two lanes to apply records through (see the module doc)
/// and returns what it returned (a decode error, say, after the records
/// before it), unless a lane failed at an earlier record: the first failing
/// record in LSN order wins.
pub fn apply_in_lanes<R>(
    state: &State,
    run: impl FnOnce(&mut Lanes) -> Result<R, StorageError>,
) -> Result<R, StorageError> {
    let (tx, rx) = mpsc::sync_channel::<Vec<(u64, Change)>>(LANE_QUEUE_CHUNKS);
    std::thread::scope(|scope| {
        let ledger_lane = std::thread::Builder::new()
            .name("replay-ledger".into())
            .spawn_scoped(scope, move || -> Result<(), (u64, StorageError)> {
                for chunk in rx {
                    for (lsn, change) in chunk {
                        state.apply_change(lsn, change).map_err(|e| (lsn, e))?;
                    }
                }
                Ok(())
            })
            .map_err(|e| StorageError::Inconsistent(format!("cannot start the ledger lane: {e}")))?;
        let mut lanes = Lanes {
            state,
            to_ledger: Some(tx),
            pending: Vec::with_capacity(LANE_CHUNK_CHANGES),
            objects_failed_at: None,
        };
        let ran = run(&mut lanes);
        // Whatever is pending goes to the lane even after a failure here: a
        // ledger change of an earlier record may be the first failure.
        if let Some(tx) = lanes.to_ledger.take() {
            if !lanes.pending.is_empty() {
                let _ = tx.send(std::mem::take(&mut lanes.pending));
            }
        }
        // A panic in the lane is a bug; carry it over rather than hide it.
        let ledger = ledger_lane.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic));
        match (ran, ledger) {
            (Err(e), Err((lsn, _))) if lanes.objects_failed_at.is_some_and(|failed| failed <= lsn) => Err(e),
            (_, Err((_, lane_error))) => Err(lane_error),
            (ran, Ok(())) => ran,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::events::EventType;
    use crate::domain::payments::{Payment, PaymentStatus};
    use crate::domain::Id;
    use crate::state::test_changes::{self, account};
    use crate::state::AccountEntry;
    use crate::wal::record::EventOf;
    use std::sync::Arc;

    fn earn(id: &str, account: &str, points: i64, balance_after: i64) -> Change {
        test_changes::earn(id, account, points, balance_after, 2)
    }

    fn payment(id: &str) -> Change {
        Change::PutPayment(Arc::new(Payment {
            id: Id::from(id),
            amount: 100,
            amount_discount: 0,
            amount_refunded: 0,
            currency: "usd".into(),
            status: PaymentStatus::Completed,
            customer: None,
            metadata: Default::default(),
            redemptions: Vec::new(),
            loyalty_account: None,
            points_earned: 0,
            award: None,
            created: 3,
            completed_at: None,
        }))
    }

    fn record(changes: Vec<Change>) -> Record {
        Record { time: 5, idem: None, changes }
    }

    fn replay(state: &State, records: Vec<Record>, then: Result<(), StorageError>) -> Result<(), StorageError> {
        apply_in_lanes(state, |lanes| {
            for (i, r) in records.into_iter().enumerate() {
                lanes.record(i as u64 + 1, r)?;
            }
            then
        })
    }

    /// Enough records to fill many chunks, in both lanes: the same state as
    /// applying them one by one on one thread.
    #[test]
    fn builds_the_state_one_thread_builds() {
        let n = LANE_CHUNK_CHANGES * 3 + 5;
        let mut records = vec![record(vec![account("loy_a"), account("loy_b")])];
        for i in 0..n {
            let acct = if i % 2 == 0 { "loy_a" } else { "loy_b" };
            let balance_after = (i / 2 + 1) as i64 * 10;
            records
                .push(record(vec![payment(&format!("pay_{i}")), earn(&format!("ptx_{i}"), acct, 10, balance_after)]));
        }
        let one = State::new();
        for (i, r) in records.clone().into_iter().enumerate() {
            one.apply(i as u64 + 1, r).unwrap();
        }
        let two = State::new();
        replay(&two, records, Ok(())).unwrap();
        assert_eq!(two.applied_lsn(), one.applied_lsn());
        assert_eq!(two.payments.len(), n);
        assert_eq!(two.transactions.len(), n);
        for acct in ["loy_a", "loy_b"] {
            let entry = |s: &State| s.accounts.with(acct, |e: &AccountEntry| (e.balance, e.transactions.clone()));
            assert_eq!(entry(&two), entry(&one));
        }
        assert_eq!(two.balance("loy_b"), Some((n / 2) as i64 * 10));
    }

    #[test]
    fn a_ledger_lane_failure_stops_the_replay_and_is_reported() {
        let state = State::new();
        let mut records = vec![record(vec![account("loy_a")])];
        // Record 2 claims a wrong balance; many good records follow.
        records.push(record(vec![earn("ptx_bad", "loy_a", 10, 99)]));
        for i in 0..LANE_CHUNK_CHANGES * 4 {
            records.push(record(vec![payment(&format!("pay_{i}"))]));
        }
        let err = replay(&state, records, Ok(())).unwrap_err();
        assert!(err.to_string().contains("ptx_bad"), "{err}");
    }

    fn unresolved_event(id: &str) -> Change {
        // An event still pointing into its record: applying it fails.
        Change::PutEventOf(Box::new(EventOf {
            id: Id::from(id),
            kind: EventType::PaymentCompleted,
            created: 1,
            change: 0,
        }))
    }

    #[test]
    fn the_earlier_failure_wins() {
        // The objects lane fails at record 2; the ledger failure at record 3
        // is never applied: record 2's error is reported.
        let state = State::new();
        let records = vec![
            record(vec![account("loy_a")]),
            record(vec![unresolved_event("evt_x")]),
            record(vec![earn("ptx_1", "loy_nobody", 10, 10)]),
        ];
        let err = replay(&state, records, Ok(())).unwrap_err();
        assert!(err.to_string().contains("evt_x"), "{err}");
        // The ledger lane fails at record 2 (still pending when the objects
        // lane fails at record 3): record 2's error is reported.
        let state = State::new();
        let records = vec![
            record(vec![account("loy_a")]),
            record(vec![earn("ptx_2", "loy_nobody", 10, 10)]),
            record(vec![unresolved_event("evt_y")]),
        ];
        let err = replay(&state, records, Ok(())).unwrap_err();
        assert!(err.to_string().contains("loy_nobody"), "{err}");
        // A ledger failure before a later decode error is what is reported.
        let state = State::new();
        let records = vec![record(vec![earn("ptx_3", "loy_nobody", 10, 10)])];
        let err = replay(&state, records, Err(StorageError::Inconsistent("undecodable record 2".into()))).unwrap_err();
        assert!(err.to_string().contains("loy_nobody"), "{err}");
    }
}
