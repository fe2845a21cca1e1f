//! Refunds of a payment that earned: the refund, the payment's new
//! `amount_refunded`, the clawback transaction and the lots it took from are
//! one record. The clawback takes the payment's own lot first (pending or
//! not), then available lots soonest to expire, then the balance as
//! `clawback.allow_negative` says, never below `POINTS_BALANCE_MIN`
//! (`domain::refunds::clawback_taken`).

use super::redeem::book_of;
use crate::domain::payments::Payment;
use crate::domain::points::Source;
use crate::domain::refunds::{clawback_due, Refund};
use crate::domain::Id;
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
    let mut book = book_of(ledger, account)?;
    let before = payment.amount_refunded;
    // Both at most `AMOUNT_MAX` (the handler checked the amount against what is left).
    let after = before
        .checked_add(refund.amount)
        .ok_or_else(|| ApiError::parameter_invalid("amount", format!("Refunds of {} would overflow.", payment.id)))?;
    let due = clawback_due(payment.points_earned, payment.amount_charged(), before, after);
    // The lot the payment's own earn made (none for an earn from before lots).
    let own_lot = payment
        .award
        .as_ref()
        .and_then(|tx| state.transactions.with(tx, |t| t.lots.first().map(|s| s.lot.clone())))
        .flatten();
    payment.amount_refunded = after;
    let source = Source::Refund { refund: refund.id.clone(), payment: payment.id.clone() };
    let allow_negative = state.program().clawback_allow_negative;
    if let Some(tx) = book.claw_back(own_lot.as_ref(), due, allow_negative, source)? {
        refund.points_clawed_back = -tx.points;
        refund.clawback = Some(tx.id);
    }
    let reply = Reply::json(200, &refund.view())?;
    let mut changes = vec![Change::PutRefund(refund.into()), Change::PutPayment(payment.into())];
    changes.extend(book.take_changes());
    ledger.commit_reply(m, changes, reply).await
}
