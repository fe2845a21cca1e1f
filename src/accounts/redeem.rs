//! Spending points on a reward, and giving them back (cancel, expiry).

use crate::domain::points::{PointsTransaction, Source, TxType};
use crate::domain::redemptions::{Redemption, RedemptionStatus};
use crate::domain::rewards::Reward;
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

/// The `release` transaction that returns `r`'s points to a balance of `balance`.
///
/// Earning leaves room under `POINTS_BALANCE_MAX` for the points open
/// redemptions hold, so this cannot overflow for a ledger this version
/// built; a balance an older version left past the cap answers 409
/// `balance_limit` here (and the redemption stays open) rather than wrap.
pub(super) fn release_tx(r: &Redemption, balance: i64, now: i64) -> Result<PointsTransaction, ApiError> {
    let balance_after =
        balance.checked_add(r.points).ok_or_else(|| ApiError::balance_limit(&r.account, "the balance"))?;
    Ok(PointsTransaction {
        id: IdKind::PointsTransaction.generate(),
        account: r.account.clone(),
        points: r.points,
        kind: TxType::Release,
        source: Source::Redemption { redemption: r.id.clone(), reward: r.reward.clone() },
        balance_after,
        created: now,
    })
}

/// Deducts the reward's points now; the redemption waits for a payment.
pub(super) async fn redeem(ledger: &Ledger, account: &Id, reward: Reward, m: &Mutation) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let balance = state.balance(account).ok_or_else(|| ApiError::missing_reference("account", account))?;
    if balance < reward.points {
        return Err(ApiError::conflict(
            "insufficient_points",
            format!("Account {account} holds {balance} points; reward {} costs {}.", reward.id, reward.points),
        )
        .with_param("account"));
    }
    // `balance >= points >= 1`: cannot overflow; checked all the same.
    let balance_after =
        balance.checked_sub(reward.points).ok_or_else(|| ApiError::balance_limit(account, "the balance"))?;
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
    let tx = PointsTransaction {
        id: IdKind::PointsTransaction.generate(),
        account: account.clone(),
        points: -reward.points,
        kind: TxType::Redeem,
        source: Source::Redemption { redemption: redemption.id.clone(), reward: reward.id.clone() },
        balance_after,
        created: now,
    };
    let reply = Reply::json(200, &redemption.view())?;
    ledger
        .commit_reply(m, vec![Change::PutRedemption(redemption.into()), Change::PutTransaction(tx.into())], reply)
        .await
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
    if r.status != RedemptionStatus::Pending {
        return Err(ApiError::conflict(
            "redemption_not_pending",
            format!("Redemption {id} is {}; only a pending redemption can be canceled.", r.status.as_str()),
        ));
    }
    let balance =
        ledger.state.balance(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    r.status = RedemptionStatus::Canceled;
    let tx = release_tx(&r, balance, ledger.now())?;
    let reply = Reply::json(200, &r.view())?;
    ledger.commit_reply(m, vec![Change::PutRedemption(r.into()), Change::PutTransaction(tx.into())], reply).await
}

/// Expires a redemption whose deadline has passed (the timer's command);
/// anything else is left as it is.
pub(super) async fn expire(ledger: &Ledger, account: &Id, id: &Id, m: &Mutation) -> Result<Reply, ApiError> {
    let mut r = this_accounts(ledger, account, id)?;
    let now = ledger.now();
    if !r.is_due(now) {
        return Reply::json(200, &r.view());
    }
    let balance =
        ledger.state.balance(account).ok_or_else(|| ApiError::internal(format!("account {account} vanished")))?;
    r.status = RedemptionStatus::Expired;
    let tx = release_tx(&r, balance, now)?;
    let reply = Reply::json(200, &r.view())?;
    ledger.commit_reply(m, vec![Change::PutRedemption(r.into()), Change::PutTransaction(tx.into())], reply).await
}
