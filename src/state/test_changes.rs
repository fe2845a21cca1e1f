//! Changes the state's unit tests build their records from (tests only).

use std::sync::Arc;

use crate::domain::lots::{LotShare, LotStatus, PointsLot};
use crate::domain::members::Account;
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::points::{PointsTransaction, Source, TxType};
use crate::domain::redemptions::{Redemption, RedemptionStatus};
use crate::domain::Id;
use crate::wal::Change;

/// A loyalty account with no customer.
pub fn account(id: &str) -> Change {
    Change::PutAccount(Arc::new(Account { id: Id::from(id), customer: None, metadata: Default::default(), created: 1 }))
}

/// An `earn` transaction of `points` on `account` from payment `pay_1`.
pub fn earn(id: &str, account: &str, points: i64, balance_after: i64, created: i64) -> Change {
    Change::PutTransaction(Arc::new(PointsTransaction {
        id: Id::from(id),
        account: Id::from(account),
        points,
        kind: TxType::Earn,
        source: Source::Payment { payment: Id::from("pay_1"), amount: 100, currency: "eur".into() },
        balance_after,
        created,
        pending: 0,
        lots: Vec::new(),
        available_at: None,
        expires_at: None,
    }))
}

/// A version of completed payment `id` of `customer`, `refunded` of its 1,000 refunded.
pub fn payment(id: &str, customer: &str, refunded: i64, created: i64) -> Change {
    Change::PutPayment(Arc::new(Payment {
        id: Id::from(id),
        amount: 1000,
        amount_discount: 0,
        amount_refunded: refunded,
        currency: "eur".into(),
        status: PaymentStatus::Completed,
        customer: Some(Id::from(customer)),
        metadata: Default::default(),
        redemptions: Vec::new(),
        loyalty_account: None,
        points_earned: 0,
        award: None,
        created,
        completed_at: Some(created),
    }))
}

/// A version of redemption `id` of `points` on `account`, with `status`.
pub fn redemption(id: &str, account: &str, points: i64, status: RedemptionStatus) -> Change {
    Change::PutRedemption(Arc::new(Redemption {
        id: Id::from(id),
        account: Id::from(account),
        reward: Id::from("rwd_1"),
        points,
        discount: 100,
        currency: "eur".into(),
        status,
        payment: None,
        expires_at: 1000,
        created: 2,
    }))
}

/// A pending `earn` of `points` on `account` into lot `lot` (the whole
/// earn pending), leaving the balance at `balance`.
pub fn pending_earn(id: &str, account: &str, points: i64, balance: i64, lot: &str) -> Change {
    Change::PutTransaction(Arc::new(PointsTransaction {
        id: Id::from(id),
        account: Id::from(account),
        points,
        kind: TxType::Earn,
        source: Source::Payment { payment: Id::from("pay_1"), amount: 100, currency: "eur".into() },
        balance_after: balance,
        created: 1,
        pending: points,
        lots: vec![LotShare { lot: Id::from(lot), points }],
        available_at: Some(50),
        expires_at: None,
    }))
}

/// A version of lot `id` of `points` on `account` with `remaining` left and `status`.
pub fn lot(id: &str, account: &str, points: i64, remaining: i64, status: LotStatus) -> Change {
    Change::PutLot(Arc::new(PointsLot {
        id: Id::from(id),
        account: Id::from(account),
        transaction: Id::from("ptx_x"),
        points,
        remaining,
        debt_paid: points - remaining,
        available_at: 50,
        expires_at: None,
        warn_at: None,
        status,
        created: 1,
    }))
}

/// `lot` change `change`, expiring at `at` (a timer waits on it while it is open).
pub fn expiring(change: Change, at: i64) -> Change {
    match change {
        Change::PutLot(mut l) => {
            Arc::make_mut(&mut l).expires_at = Some(at);
            Change::PutLot(l)
        }
        other => other,
    }
}
