//! What an account actor can be asked to do. Each command reads the state,
//! decides, and commits one record; it runs inside the account's actor, so no
//! other change to the same account interleaves.

use crate::domain::payments::Payment;
use crate::domain::refunds::Refund;
use crate::domain::rewards::Reward;
use crate::domain::{Id, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};

pub use super::adjust::Adjustment;
use super::{adjust, checkout, clawback, earn, link, redeem};

#[derive(Debug)]
pub enum AccountCommand {
    /// `POST /v1/loyalty/accounts/{id}`: link a customer and/or merge metadata.
    /// The caller holds the customer's object lock.
    Update { customer: Option<Id>, metadata: Option<Metadata> },
    /// A new payment of this member with redemptions to attach; with `confirm`
    /// it completes in the same record.
    CreatePayment { payment: Payment, confirm: bool },
    /// Complete `payment` as this member's purchase: consume its redemptions and
    /// earn, in one record. The caller holds the payment's lock (or it is new).
    Complete { payment: Payment },
    /// Fail `payment`, releasing its attached redemptions. The caller holds its lock.
    Fail { payment: Payment },
    /// Earn for a completed payment that has no award yet (`POST /v1/loyalty/awards`).
    /// The caller holds the payment's lock.
    Award { payment: Payment },
    /// Refund `refund.amount` of `payment` (earned for this account) and claw
    /// back the newly due points. The caller holds the payment's lock.
    Refund { payment: Payment, refund: Refund },
    /// Spend the reward's points on a new redemption.
    Redeem { reward: Reward },
    /// Cancel a pending redemption of this account.
    Cancel { redemption: Id },
    /// Expire a redemption of this account if its deadline has passed (the timer).
    Expire { redemption: Id },
    /// Credit or debit points by hand (`POST /v1/loyalty/adjustments`).
    Adjust(Adjustment),
    /// Do what is due for a lot of this account (the lots timer): it becomes
    /// available, its expiry warning goes, or it expires.
    LotDue { lot: Id },
}

pub async fn execute(ledger: &Ledger, id: &Id, cmd: AccountCommand, m: &Mutation) -> Result<Reply, ApiError> {
    match cmd {
        AccountCommand::Update { customer, metadata } => link::update(ledger, id, customer, metadata, m).await,
        AccountCommand::CreatePayment { payment, confirm } => checkout::create(ledger, id, payment, confirm, m).await,
        AccountCommand::Complete { payment } => checkout::complete(ledger, id, payment, m).await,
        AccountCommand::Fail { payment } => checkout::fail(ledger, id, payment, m).await,
        AccountCommand::Award { payment } => earn::award(ledger, id, payment, m).await,
        AccountCommand::Refund { payment, refund } => clawback::refund(ledger, id, payment, refund, m).await,
        AccountCommand::Redeem { reward } => redeem::redeem(ledger, id, reward, m).await,
        AccountCommand::Cancel { redemption } => redeem::cancel(ledger, id, &redemption, m).await,
        AccountCommand::Expire { redemption } => redeem::expire(ledger, id, &redemption, m).await,
        AccountCommand::Adjust(a) => adjust::adjust(ledger, id, a, m).await,
        AccountCommand::LotDue { lot } => adjust::lot_due(ledger, id, &lot, m).await,
    }
}
