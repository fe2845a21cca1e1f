//! What an account actor can be asked to do. Each command reads the state,
//! decides, and commits one record; it runs inside the account's actor, so no
//! other change to the same account interleaves.

use crate::domain::payments::Payment;
use crate::domain::refunds::Refund;
use crate::domain::{Id, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};

use super::{clawback, earn, link};

#[derive(Debug)]
pub enum AccountCommand {
    /// `POST /v1/loyalty/accounts/{id}`: link a customer and/or merge metadata.
    /// The caller holds the customer's object lock.
    Update {
        customer: Option<Id>,
        metadata: Option<Metadata>,
    },
    /// Complete `payment` as this member's purchase and earn for it, in one
    /// record. The caller holds the payment's lock (or the payment is new).
    Complete { payment: Payment },
    /// Earn for a completed payment that has no award yet (`POST /v1/loyalty/awards`).
    /// The caller holds the payment's lock.
    Award { payment: Payment },
    /// Refund `refund.amount` of `payment` (earned for this account) and claw
    /// back the newly due points. The caller holds the payment's lock.
    Refund { payment: Payment, refund: Refund },
}

pub async fn execute(
    ledger: &Ledger,
    id: &Id,
    cmd: AccountCommand,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    match cmd {
        AccountCommand::Update { customer, metadata } => {
            link::update(ledger, id, customer, metadata, m).await
        }
        AccountCommand::Complete { payment } => {
            earn::earn(ledger, id, payment, earn::Mode::Complete, m).await
        }
        AccountCommand::Award { payment } => {
            earn::earn(ledger, id, payment, earn::Mode::Award, m).await
        }
        AccountCommand::Refund { payment, refund } => {
            clawback::refund(ledger, id, payment, refund, m).await
        }
    }
}
