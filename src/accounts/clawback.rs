//! Refunds of a payment that earned: the refund, the payment's new
//! `amount_refunded` and the clawback transaction are one record. A
//! clawback never takes the balance below `POINTS_BALANCE_MIN`
//! (`domain::refunds::clawback_taken`).

use crate::domain::payments::Payment;
use crate::domain::points::{PointsTransaction, Source, TxType};
use crate::domain::refunds::{clawback_due, clawback_taken, Refund};
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

pub(super) async fn refund(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    mut refund: Refund,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let balance = state.balance(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    let before = payment.amount_refunded;
    // Both at most `AMOUNT_MAX` (the handler checked the amount against what is left).
    let after = before
        .checked_add(refund.amount)
        .ok_or_else(|| ApiError::parameter_invalid("amount", format!("Refunds of {} would overflow.", payment.id)))?;
    let due = clawback_due(payment.points_earned, payment.amount_charged(), before, after);
    // At most down to the floor (`POINTS_BALANCE_MIN`, or zero when negative
    // balances are not allowed); the rest is forgiven.
    let taken = clawback_taken(due, balance, state.program().clawback_allow_negative);
    let balance_after = balance.checked_sub(taken).ok_or_else(|| ApiError::balance_limit(account, "the balance"))?;
    payment.amount_refunded = after;
    let tx = (taken > 0).then(|| PointsTransaction {
        id: IdKind::PointsTransaction.generate(),
        account: account.clone(),
        points: -taken,
        kind: TxType::Clawback,
        source: Source::Refund { refund: refund.id.clone(), payment: payment.id.clone() },
        balance_after,
        created: refund.created,
    });
    if let Some(tx) = &tx {
        refund.points_clawed_back = taken;
        refund.clawback = Some(tx.id.clone());
    }
    let reply = Reply::json(200, &refund.view())?;
    let mut changes = vec![Change::PutRefund(refund.into()), Change::PutPayment(payment.into())];
    changes.extend(tx.map(|tx| Change::PutTransaction(tx.into())));
    ledger.commit_reply(m, changes, reply).await
}
