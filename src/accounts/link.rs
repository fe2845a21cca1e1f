//! Updating an account: metadata, and linking a customer one-to-one.

use crate::domain::members::Account;
use crate::domain::{metadata, Id, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

pub(super) async fn update(
    ledger: &Ledger,
    id: &Id,
    customer: Option<Id>,
    md: Option<Metadata>,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let state = &ledger.state;
    let (account, balances) = state
        .accounts
        .with(id, |e| (e.account.clone(), state.balances(e)))
        .ok_or_else(|| ApiError::not_found("loyalty_account", id))?;
    let mut next: Account = Account::clone(&account);
    let mut changes = Vec::with_capacity(2);
    if let Some(md) = md {
        next.metadata = metadata::merge(&account.metadata, md)?;
    }
    if let Some(cust_id) = customer {
        match &account.customer {
            Some(current) if *current == cust_id => {}
            Some(current) => {
                return Err(ApiError::conflict(
                    "account_already_linked",
                    format!("Loyalty account {id} is already linked to customer {current}."),
                )
                .with_param("customer"))
            }
            None => {
                let mut cust = state
                    .customers
                    .with(&cust_id, Clone::clone)
                    .ok_or_else(|| ApiError::missing_reference("customer", &cust_id))?;
                if let Some(other) = &cust.loyalty_account {
                    return Err(customer_already_linked(&cust_id, other));
                }
                cust.loyalty_account = Some(id.clone());
                next.customer = Some(cust_id);
                changes.push(Change::PutCustomer(cust.into()));
            }
        }
    }
    let reply = Reply::json(200, &next.view(balances))?;
    changes.push(Change::PutAccount(next.into()));
    ledger.commit_reply(m, changes, reply).await
}

pub fn customer_already_linked(customer: &str, account: &str) -> ApiError {
    ApiError::conflict(
        "customer_already_linked",
        format!("Customer {customer} is already linked to loyalty account {account}."),
    )
    .with_param("customer")
}
