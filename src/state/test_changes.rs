//! Changes the state's unit tests build their records from (tests only).

use std::sync::Arc;

use crate::domain::members::Account;
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
