//! Adjustments by support staff, and the lots timer's command.
//!
//! An adjustment is an `adjustment` transaction with a reason: a positive one
//! makes a lot, available at once; a negative one spends like a redemption
//! (soonest-expiring lots first) and may go below zero only when the request
//! says `allow_negative`.

use super::book::Book;
use super::redeem::book_of;
use crate::domain::lots::PointsLot;
use crate::domain::points::{Source, TxType, POINTS_BALANCE_MIN};
use crate::domain::{Id, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};

/// What `POST /v1/loyalty/adjustments` asks for, checked by the handler.
#[derive(Debug)]
pub struct Adjustment {
    /// Non-zero, at most `ADJUSTMENT_POINTS_MAX` either way.
    pub points: i64,
    pub reason: String,
    pub metadata: Metadata,
    pub allow_negative: bool,
}

pub(super) async fn adjust(ledger: &Ledger, account: &Id, a: Adjustment, m: &Mutation) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let mut book =
        Book::open(state, account, ledger.now()).ok_or_else(|| ApiError::missing_reference("account", account))?;
    let figures = book.figures;
    let source = Source::Adjustment { reason: a.reason, metadata: a.metadata };
    let tx = if a.points > 0 {
        if a.points > figures.earning_room() {
            return Err(ApiError::balance_limit(account, "the balance").with_param("points"));
        }
        book.credit(TxType::Adjustment, a.points, source, &state.program(), false)?
    } else {
        let points = a.points.saturating_neg();
        if !a.allow_negative && figures.balance < points {
            return Err(ApiError::conflict(
                "insufficient_points",
                format!(
                    "Account {account} holds {} points; the adjustment takes {points}. \
                     Pass allow_negative: true to take the balance below zero.",
                    figures.balance
                ),
            )
            .with_param("points"));
        }
        if figures.balance.checked_sub(points).is_none_or(|after| after < POINTS_BALANCE_MIN) {
            return Err(ApiError::balance_limit(account, "the balance").with_param("points"));
        }
        book.spend(TxType::Adjustment, points, source)?
    };
    let reply = Reply::json(200, &tx.view())?;
    ledger.commit_reply(m, book.take_changes(), reply).await
}

/// Does what is due for lot `id` now (the lots timer's command): it becomes
/// available, its expiry warning goes, or it expires; one step a call.
/// Anything not due is left as it is.
pub(super) async fn lot_due(ledger: &Ledger, account: &Id, id: &Id, m: &Mutation) -> Result<Reply, ApiError> {
    let mut book = book_of(ledger, account)?;
    let due = book.lot_due(id)?;
    let changes = book.take_changes();
    let lot = changes
        .iter()
        .rev()
        .find_map(|c| match c {
            crate::wal::Change::PutLot(l) if l.id == *id => Some(PointsLot::clone(l)),
            _ => None,
        })
        .or_else(|| ledger.state.lots.with(id, PointsLot::clone))
        .ok_or_else(|| ApiError::not_found("points_lot", id))?;
    let reply = Reply::json(200, &lot.view())?;
    if !due {
        return Ok(reply);
    }
    ledger.commit_reply(m, changes, reply).await
}
