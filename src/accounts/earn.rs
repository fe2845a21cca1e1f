//! Earning: a completed payment writes one `earn` transaction for its member,
//! in the same record as the payment's completion, so a crash can never
//! leave a completed payment without its award or with two.

use crate::domain::earning::points_earned;
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::points::{PointsTransaction, Source, TxType, POINTS_BALANCE_MAX};
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    /// The payment completes now.
    Complete,
    /// The payment completed earlier without a member; earn now.
    Award,
}

pub(super) async fn earn(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    mode: Mode,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let balance = state
        .balance(account)
        .ok_or_else(|| ApiError::missing_reference("account", account))?;
    let now = ledger.now();
    if mode == Mode::Complete {
        payment.status = PaymentStatus::Completed;
        payment.completed_at = Some(now);
    }
    payment.loyalty_account = Some(account.clone());
    let charged = payment.amount_charged();
    let room = POINTS_BALANCE_MAX.saturating_sub(balance).max(0);
    let points = points_earned(charged, &state.active_rules(&payment.currency)).min(room);
    let tx = (points > 0).then(|| PointsTransaction {
        id: IdKind::PointsTransaction.generate(),
        account: account.clone(),
        points,
        kind: TxType::Earn,
        source: Source::Payment {
            payment: payment.id.clone(),
            amount: charged,
            currency: payment.currency.clone(),
        },
        balance_after: balance + points,
        created: now,
    });
    if let Some(tx) = &tx {
        payment.points_earned = points;
        payment.award = Some(tx.id.clone());
    }
    let reply = Reply::json(200, &payment.view())?;
    let mut changes = vec![Change::PutPayment(payment)];
    changes.extend(tx.map(Change::PutTransaction));
    ledger.commit_reply(m, changes, reply).await
}
