//! Checkout: a member's payment with its redemptions. Attaching, consuming and
//! releasing redemptions happen in the member's actor, in the same record as
//! the payment's own change, so cancel, expiry, failure and completion racing
//! on one redemption are serialized and return its points at most once.

use super::earn::earn_tx;
use super::redeem::release_tx;
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::redemptions::{Redemption, RedemptionStatus};
use crate::domain::Id;
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::state::Figures;
use crate::wal::Change;

/// An account's figures once `redemptions` (open ones of it) are consumed:
/// their points stay spent and are no longer held. Saturating: the held sum
/// covers them (`State::check` refuses a record that says otherwise).
fn after_consuming(figures: Figures, redemptions: &[Redemption]) -> Figures {
    let freed = redemptions.iter().fold(0i64, |sum, r| sum.saturating_add(r.points));
    Figures { balance: figures.balance, held: figures.held.saturating_sub(freed).max(0) }
}

fn redemption_expired(id: &str) -> ApiError {
    ApiError::conflict("redemption_expired", format!("Redemption {id} has expired."))
}

/// A new payment of this member: attach its redemptions (and complete it at
/// once with `confirm`).
pub(super) async fn create(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    confirm: bool,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let figures = state.figures(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    let now = ledger.now();
    let mut redemptions: Vec<Redemption> = Vec::with_capacity(payment.redemptions.len());
    for id in &payment.redemptions {
        let r =
            state.redemptions.with(id, Clone::clone).ok_or_else(|| ApiError::missing_reference("redemptions", id))?;
        if r.account != *account {
            return Err(ApiError::conflict(
                "redemption_account_mismatch",
                format!("Redemption {id} belongs to {}, not to the payment's member {account}.", r.account),
            )
            .with_param("redemptions"));
        }
        if r.status == RedemptionStatus::Expired || r.is_due(now) {
            return Err(redemption_expired(id).with_param("redemptions"));
        }
        if r.status != RedemptionStatus::Pending {
            return Err(ApiError::conflict(
                "redemption_not_pending",
                format!("Redemption {id} is {}; only a pending redemption can be used.", r.status.as_str()),
            )
            .with_param("redemptions"));
        }
        if r.currency != payment.currency {
            return Err(ApiError::parameter_invalid(
                "redemptions",
                format!("Redemption {id} discounts {}, the payment is in {}.", r.currency, payment.currency),
            )
            .with_code("redemption_currency_mismatch"));
        }
        redemptions.push(r);
    }
    // At most REDEMPTIONS_PER_PAYMENT_MAX discounts of at most AMOUNT_MAX
    // each: no overflow; saturating all the same (then it exceeds the amount).
    let discount = redemptions.iter().fold(0i64, |sum, r| sum.saturating_add(r.discount));
    if discount > payment.amount {
        return Err(ApiError::parameter_invalid(
            "redemptions",
            format!("The redemptions discount {discount}, more than the payment's amount {}.", payment.amount),
        )
        .with_code("discount_exceeds_amount"));
    }
    payment.amount_discount = discount;
    payment.loyalty_account = Some(account.clone());
    let status = if confirm { RedemptionStatus::Consumed } else { RedemptionStatus::Attached };
    for r in &mut redemptions {
        r.status = status;
        r.payment = Some(payment.id.clone());
    }
    let tx = if confirm {
        payment.status = PaymentStatus::Completed;
        payment.completed_at = Some(now);
        // Consuming the redemptions frees their held points: the room is
        // what it will be once they are consumed.
        earn_tx(state, account, after_consuming(figures, &redemptions), &mut payment, now)
    } else {
        None
    };
    let reply = Reply::json(200, &payment.view())?;
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(redemptions.into_iter().map(|r| Change::PutRedemption(r.into())));
    changes.extend(tx.map(|tx| Change::PutTransaction(tx.into())));
    ledger.commit_reply(m, changes, reply).await
}

/// Completes a pending payment of this member: consume its redemptions, earn.
/// The caller holds the payment's lock.
pub(super) async fn complete(
    ledger: &Ledger,
    account: &Id,
    mut payment: Payment,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let figures = state.figures(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    let now = ledger.now();
    let mut consumed = Vec::with_capacity(payment.redemptions.len());
    for id in &payment.redemptions {
        let mut r = state
            .redemptions
            .with(id, Clone::clone)
            .ok_or_else(|| ApiError::internal(format!("redemption {id} vanished")))?;
        if r.status == RedemptionStatus::Expired || r.is_due(now) {
            return Err(redemption_expired(id));
        }
        if r.status != RedemptionStatus::Attached || r.payment.as_ref() != Some(&payment.id) {
            return Err(ApiError::conflict(
                "redemption_not_pending",
                format!("Redemption {id} is {} and cannot be consumed by {}.", r.status.as_str(), payment.id),
            ));
        }
        r.status = RedemptionStatus::Consumed;
        consumed.push(r);
    }
    payment.status = PaymentStatus::Completed;
    payment.completed_at = Some(now);
    let tx = earn_tx(state, account, after_consuming(figures, &consumed), &mut payment, now);
    let reply = Reply::json(200, &payment.view())?;
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(consumed.into_iter().map(|r| Change::PutRedemption(r.into())));
    changes.extend(tx.map(|tx| Change::PutTransaction(tx.into())));
    ledger.commit_reply(m, changes, reply).await
}

/// Fails a pending payment of this member: its attached redemptions are
/// canceled and their points return. The caller holds the payment's lock.
pub(super) async fn fail(ledger: &Ledger, account: &Id, mut payment: Payment, m: &Mutation) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let mut balance =
        state.balance(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    let now = ledger.now();
    let mut changes = Vec::with_capacity(1 + 2 * payment.redemptions.len());
    for id in &payment.redemptions {
        let Some(mut r) = state.redemptions.with(id, Clone::clone) else { continue };
        // An expired one already returned its points; only attached ones return here.
        if r.status != RedemptionStatus::Attached || r.payment.as_ref() != Some(&payment.id) {
            continue;
        }
        r.status = RedemptionStatus::Canceled;
        let tx = release_tx(&r, balance, now)?;
        balance = tx.balance_after;
        changes.push(Change::PutRedemption(r.into()));
        changes.push(Change::PutTransaction(tx.into()));
    }
    payment.status = PaymentStatus::Failed;
    let reply = Reply::json(200, &payment.view())?;
    changes.insert(0, Change::PutPayment(payment.into()));
    ledger.commit_reply(m, changes, reply).await
}
