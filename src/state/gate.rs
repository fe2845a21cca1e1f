//! The apply gate: what makes each WAL record's changes visible to readers
//! all at once.
//!
//! A record changes several objects (an earn: the payment, its award
//! transaction, the account's balance and index, two events), one table at a
//! time, and the tables' own shard locks are per object. Without more, an
//! HTTP worker reading between two of those changes sees part of a record: a
//! payment naming an `award` whose transaction is still 404.
//!
//! The gate is one reader-writer lock. The WAL's apply thread holds it
//! exclusively for exactly one record (`State::apply`); a reader holds it
//! shared for one object read (`State::visible`) or one stretch of a list
//! scan (`Table::page`, `State::account_transactions`). So every read falls
//! between two records, and anything a reader saw, a later read sees too.
//!
//! Costs, both small by construction (numbers in docs/performance.md):
//! - the apply thread pays one uncontended lock and unlock per record
//!   (tens of nanoseconds against a record's microseconds), plus, when a
//!   reader holds the gate, the rest of that reader's hold: one lookup, or
//!   one list stretch of `LIST_SCAN_CHUNK` ids (`LIST_HOLD_CHUNKS_LAST` on a
//!   page's last attempt). A long scan lets go between stretches, so it never
//!   holds the apply thread up for long.
//! - a reader pays one atomic increment and decrement on a shared word, and
//!   waits at most one record's apply (`parking_lot`'s lock is fair: a
//!   waiting writer stops new readers, so the apply thread never starves).
//!
//! Replay (`lanes.rs`) takes no gate: nothing reads during it.
//!
//! Nothing may wait for the apply thread while holding the gate shared (it
//! would wait forever), and a holder never takes it again (a waiting writer
//! would block the second shared take): the closures given to
//! `State::visible` only read tables.

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

#[derive(Default)]
pub struct Gate {
    lock: RwLock<()>,
}

impl Gate {
    /// Held by the apply thread while it applies one record.
    pub(super) fn apply(&self) -> RwLockWriteGuard<'_, ()> {
        self.lock.write()
    }

    /// Held by a reader for one object read or one stretch of a scan.
    pub(super) fn read(&self) -> RwLockReadGuard<'_, ()> {
        self.lock.read()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::sync::Arc;
    use std::time::{Duration, Instant};

    use crate::domain::payments::{Payment, PaymentStatus};
    use crate::domain::Id;
    use crate::state::test_changes::{account, earn};
    use crate::state::State;
    use crate::wal::{Change, Record};

    /// Earn records the test applies while a reader chases them.
    const RECORDS: usize = 20_000;
    /// How long the reader waits for one payment before calling it lost.
    const READER_PATIENCE: Duration = Duration::from_secs(30);

    /// A completed payment that names its award transaction `ptx_<i>`.
    fn awarded_payment(i: usize) -> Change {
        Change::PutPayment(Arc::new(Payment {
            id: Id::from(format!("pay_{i}").as_str()),
            amount: 1000,
            amount_discount: 0,
            amount_refunded: 0,
            currency: "eur".into(),
            status: PaymentStatus::Completed,
            customer: None,
            metadata: Default::default(),
            redemptions: Vec::new(),
            loyalty_account: Some(Id::from("loy_a")),
            points_earned: 10,
            award: Some(Id::from(format!("ptx_{i}").as_str())),
            created: i as i64,
            completed_at: Some(i as i64),
        }))
    }

    /// Like two GETs of a client: the newest payment, then the transaction it
    /// names as its award, then the account. Each record writes the payment
    /// before the transaction, so without the gate the reader, reading each
    /// payment as soon as it appears, finds awards that are not there yet.
    #[test]
    fn a_reader_never_sees_a_payment_before_its_award() {
        let state = State::new();
        state.apply(1, Record { time: 1, idem: None, changes: vec![account("loy_a")] }).unwrap();
        let done = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let reader = scope.spawn(|| {
                let mut checked = 0;
                let mut waiting_since = Instant::now();
                while checked < RECORDS {
                    let id = format!("pay_{checked}");
                    let Some(award) = state.visible(|s| s.payments.with(&id, |p| p.award.clone())) else {
                        assert!(waiting_since.elapsed() < READER_PATIENCE, "{id} never appeared");
                        if done.load(Ordering::Acquire) {
                            assert!(state.payments.contains(&id), "{id} was never applied");
                        }
                        std::hint::spin_loop();
                        continue;
                    };
                    let award = award.expect("every payment names its award");
                    let points = state.visible(|s| s.transactions.with(&award, |tx| tx.balance_after));
                    assert!(points.is_some(), "{id} names award {award}, which is not there (a half-applied record)");
                    let balance = state.visible(|s| s.balance("loy_a")).unwrap_or(0);
                    assert!(balance >= points.unwrap_or(0), "the balance is behind {award}");
                    checked += 1;
                    waiting_since = Instant::now();
                }
                checked
            });
            for i in 0..RECORDS {
                let balance = (i as i64 + 1) * 10;
                let changes = vec![awarded_payment(i), earn(&format!("ptx_{i}"), "loy_a", 10, balance, i as i64)];
                state.apply(i as u64 + 2, Record { time: 1, idem: None, changes }).unwrap();
            }
            done.store(true, Ordering::Release);
            assert_eq!(reader.join().unwrap(), RECORDS);
        });
    }
}
