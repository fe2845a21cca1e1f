//! Earning: a completed payment writes one `earn` transaction and its lot
//! for its member, in the same record as the payment's completion, so a
//! crash can never leave a completed payment without its award or with two.

use super::book::Book;
use crate::domain::earning::points_earned;
use crate::domain::payments::Payment;
use crate::domain::points::{Source, TxType};
use crate::domain::Id;
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::state::State;
use crate::wal::Change;

/// Earns for `payment` into `book` (the member's), if its rules give
/// anything, and points the payment at its member and award. Earning is cut
/// to the account's room under `POINTS_BALANCE_MAX`, counting pending and
/// held points (`Figures::earning_room`), so returning those later cannot pass the
/// cap either. The lot is pending for the program's return window.
pub(super) fn earn(book: &mut Book, state: &State, payment: &mut Payment) -> Result<(), ApiError> {
    payment.loyalty_account = Some(book.account().clone());
    let charged = payment.amount_charged();
    let figures = book.figures;
    let room = figures.earning_room();
    let points = points_earned(charged, &state.active_rules(&payment.currency)).min(room);
    if points <= 0 {
        return Ok(());
    }
    let source = Source::Payment { payment: payment.id.clone(), amount: charged, currency: payment.currency.clone() };
    let tx = book.credit(TxType::Earn, points, source, &state.program(), true)?;
    payment.points_earned = points;
    payment.award = Some(tx.id);
    Ok(())
}

/// `POST /v1/loyalty/awards`: earn for a completed payment that has no award.
pub(super) async fn award(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let mut book =
        Book::open(state, account, ledger.now()).ok_or_else(|| ApiError::missing_reference("account", account))?;
    let member_before = payment.loyalty_account.clone();
    earn(&mut book, state, &mut payment)?;
    let earned = book.take_changes();
    let reply = Reply::json(200, &payment.view())?;
    if earned.is_empty() && member_before == payment.loyalty_account {
        // Nothing would change: write nothing.
        return Ok(reply);
    }
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(earned);
    ledger.commit_reply(m, changes, reply).await
}
