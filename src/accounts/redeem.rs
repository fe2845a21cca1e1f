//! Spending points on a reward, and giving them back (cancel, expiry).

use super::book::Book;
use crate::domain::points::{Source, TxType};
use crate::domain::redemptions::{Redemption, RedemptionStatus};
use crate::domain::rewards::Reward;
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::state::State;
use crate::wal::Change;

pub(super) fn book_of<'a>(ledger: &'a Ledger, account: &Id) -> Result<Book<'a>, ApiError> {
    Book::open(&ledger.state, account, ledger.now())
        .ok_or_else(|| ApiError::internal(format!("account {account} vanished")))
}

/// Returns `r`'s points into `book` (a `release`, then an `expire` for what
/// came back to lots past their expiry): to the lots its `redeem` took them
/// from. Earning leaves room under `POINTS_BALANCE_MAX` for the points open
/// redemptions hold, so this cannot overflow for a ledger this version built.
pub(super) fn give_back(book: &mut Book, state: &State, r: &Redemption) -> Result<(), ApiError> {
    let redeem =
        state.newest_transaction_where(&r.account, |t| t.kind == TxType::Redeem && t.redemption() == Some(&r.id));
    // A redemption from before lots took from none: its points just come back.
    let shares = redeem.map(|t| t.lots).unwrap_or_default();
    let source = Source::Redemption { redemption: r.id.clone(), reward: r.reward.clone() };
    book.release(r.points, source, &shares)?;
    Ok(())
}

/// Deducts the reward's points now, from the lots soonest to expire; the
/// redemption waits for a payment.
pub(super) async fn redeem(ledger: &Ledger, account: &Id, reward: Reward, m: &Mutation) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let mut book =
        Book::open(state, account, ledger.now()).ok_or_else(|| ApiError::missing_reference("account", account))?;
    let balance = book.figures.balance;
    if balance < reward.points {
        return Err(ApiError::conflict(
            "insufficient_points",
            format!("Account {account} holds {balance} points; reward {} costs {}.", reward.id, reward.points),
        )
        .with_param("account"));
    }
    let now = ledger.now();
    let redemption = Redemption {
        id: IdKind::Redemption.generate(),
        account: account.clone(),
        reward: reward.id.clone(),
        points: reward.points,
        discount: reward.discount_amount,
        currency: reward.discount_currency.clone(),
        status: RedemptionStatus::Pending,
        payment: None,
        // Times saturate (a test clock may be moved far ahead).
        expires_at: now.saturating_add(state.program().redemption_ttl_seconds),
        created: now,
    };
    let source = Source::Redemption { redemption: redemption.id.clone(), reward: reward.id.clone() };
    book.spend(TxType::Redeem, reward.points, source)?;
    let reply = Reply::json(200, &redemption.view())?;
    let mut changes = vec![Change::PutRedemption(redemption.into())];
    changes.extend(book.take_changes());
    ledger.commit_reply(m, changes, reply).await
}

fn this_accounts(ledger: &Ledger, account: &Id, id: &Id) -> Result<Redemption, ApiError> {
    ledger
        .state
        .redemptions
        .with(id, Clone::clone)
        .filter(|r| r.account == *account)
        .ok_or_else(|| ApiError::not_found("redemption", id))
}

/// Cancels a pending redemption: its points return.
pub(super) async fn cancel(ledger: &Ledger, account: &Id, id: &Id, m: &Mutation) -> Result<Reply, ApiError> {
    let mut r = this_accounts(ledger, account, id)?;
    r.cancel()?;
    let mut book = book_of(ledger, account)?;
    give_back(&mut book, &ledger.state, &r)?;
    let reply = Reply::json(200, &r.view())?;
    let mut changes = vec![Change::PutRedemption(r.into())];
    changes.extend(book.take_changes());
    ledger.commit_reply(m, changes, reply).await
}

/// Expires a redemption whose deadline has passed (the timer's command);
/// anything else is left as it is.
pub(super) async fn expire(ledger: &Ledger, account: &Id, id: &Id, m: &Mutation) -> Result<Reply, ApiError> {
    let mut r = this_accounts(ledger, account, id)?;
    if !r.expire(ledger.now()) {
        return Reply::json(200, &r.view());
    }
    let mut book = book_of(ledger, account)?;
    give_back(&mut book, &ledger.state, &r)?;
    let reply = Reply::json(200, &r.view())?;
    let mut changes = vec![Change::PutRedemption(r.into())];
    changes.extend(book.take_changes());
    ledger.commit_reply(m, changes, reply).await
}
