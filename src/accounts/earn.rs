//! Earning: a completed payment writes one `earn` transaction for its member,
//! in the same record as the payment's completion, so a crash can never
//! leave a completed payment without its award or with two.

use crate::domain::earning::points_earned;
use crate::domain::payments::Payment;
use crate::domain::points::{earning_room, PointsTransaction, Source, TxType};
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::state::{Figures, State};
use crate::wal::Change;

/// The `earn` transaction `payment` gives `account` (`figures`: its balance
/// and the points its open redemptions hold), if any, and the payment
/// updated to point at it. Earning is cut to the account's room under
/// `POINTS_BALANCE_MAX` counting held points (`earning_room`), so returning
/// those points later cannot pass the cap either.
pub(super) fn earn_tx(
    state: &State,
    account: &Id,
    figures: Figures,
    payment: &mut Payment,
    now: i64,
) -> Option<PointsTransaction> {
    payment.loyalty_account = Some(account.clone());
    let charged = payment.amount_charged();
    let room = earning_room(figures.balance, figures.held);
    let points = points_earned(charged, &state.active_rules(&payment.currency)).min(room);
    if points <= 0 {
        return None;
    }
    // Within the room, so this cannot overflow; checked all the same.
    let balance_after = figures.balance.checked_add(points)?;
    let tx = PointsTransaction {
        id: IdKind::PointsTransaction.generate(),
        account: account.clone(),
        points,
        kind: TxType::Earn,
        source: Source::Payment { payment: payment.id.clone(), amount: charged, currency: payment.currency.clone() },
        balance_after,
        created: now,
    };
    payment.points_earned = points;
    payment.award = Some(tx.id.clone());
    Some(tx)
}

/// `POST /v1/loyalty/awards`: earn for a completed payment that has no award.
pub(super) async fn award(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let figures = state.figures(account).ok_or_else(|| ApiError::missing_reference("account", account))?;
    let member_before = payment.loyalty_account.clone();
    let tx = earn_tx(state, account, figures, &mut payment, ledger.now());
    let reply = Reply::json(200, &payment.view())?;
    if tx.is_none() && member_before == payment.loyalty_account {
        // Nothing would change: write nothing.
        return Ok(reply);
    }
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(tx.map(|tx| Change::PutTransaction(tx.into())));
    ledger.commit_reply(m, changes, reply).await
}
