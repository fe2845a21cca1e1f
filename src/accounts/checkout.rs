//! Checkout: a member's payment with its redemptions. Attaching, consuming and
//! releasing redemptions happen in the member's actor, in the same record as
//! the payment's own change, so cancel, expiry, failure and completion racing
//! on one redemption are serialized and return its points at most once. The
//! transitions themselves are the domain's (`Payment::complete`,
//! `Redemption::attach`, ...); this gathers the objects and commits.

use super::earn::earn;
use super::redeem::{book_of, give_back};
use crate::domain::payments::Payment;
use crate::domain::redemptions::Redemption;
use crate::domain::Id;
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

/// Held points `redemptions` (open ones of the account) stop holding once
/// consumed: their points stay spent. Saturating: the held sum covers them
/// (`State::check` refuses a record that says otherwise).
fn freed_by(redemptions: &[Redemption]) -> i64 {
    redemptions.iter().fold(0i64, |sum, r| sum.saturating_add(r.points))
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
    let mut book = book_of(ledger, account)?;
    let now = ledger.now();
    let mut redemptions: Vec<Redemption> = Vec::with_capacity(payment.redemptions.len());
    for id in &payment.redemptions {
        let mut r =
            state.redemptions.with(id, Clone::clone).ok_or_else(|| ApiError::missing_reference("redemptions", id))?;
        r.attach(account, &payment.id, &payment.currency, now).map_err(|e| e.with_param("redemptions"))?;
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
    if confirm {
        payment.complete(now)?;
        for r in &mut redemptions {
            r.consume(&payment.id, now)?;
        }
        // Consuming the redemptions frees their held points: the room is
        // what it will be once they are consumed.
        book.figures.held = book.figures.held.saturating_sub(freed_by(&redemptions)).max(0);
        earn(&mut book, state, &mut payment)?;
    }
    let reply = Reply::json(200, &payment.view())?;
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(redemptions.into_iter().map(|r| Change::PutRedemption(r.into())));
    changes.extend(book.take_changes());
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
    let mut book = book_of(ledger, account)?;
    let now = ledger.now();
    let mut consumed = Vec::with_capacity(payment.redemptions.len());
    for id in &payment.redemptions {
        let mut r = state
            .redemptions
            .with(id, Clone::clone)
            .ok_or_else(|| ApiError::internal(format!("redemption {id} vanished")))?;
        r.consume(&payment.id, now)?;
        consumed.push(r);
    }
    payment.complete(now)?;
    book.figures.held = book.figures.held.saturating_sub(freed_by(&consumed)).max(0);
    earn(&mut book, state, &mut payment)?;
    let reply = Reply::json(200, &payment.view())?;
    let mut changes = vec![Change::PutPayment(payment.into())];
    changes.extend(consumed.into_iter().map(|r| Change::PutRedemption(r.into())));
    changes.extend(book.take_changes());
    ledger.commit_reply(m, changes, reply).await
}

/// Fails a pending payment of this member: its attached redemptions are
/// canceled and their points return. The caller holds the payment's lock.
pub(super) async fn fail(ledger: &Ledger, account: &Id, mut payment: Payment, m: &Mutation) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let mut book = book_of(ledger, account)?;
    let mut changes = Vec::with_capacity(1 + 3 * payment.redemptions.len());
    payment.fail()?;
    for id in &payment.redemptions {
        let Some(mut r) = state.redemptions.with(id, Clone::clone) else { continue };
        // An expired one already returned its points; only attached ones return here.
        if !r.release_from(&payment.id) {
            continue;
        }
        give_back(&mut book, state, &r)?;
        changes.push(Change::PutRedemption(r.into()));
        changes.extend(book.take_changes());
    }
    let reply = Reply::json(200, &payment.view())?;
    changes.insert(0, Change::PutPayment(payment.into()));
    ledger.commit_reply(m, changes, reply).await
}
