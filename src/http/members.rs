//! Members: `/v1/customers` and `/v1/loyalty/accounts`.
//!
//! Linking is one-to-one. Creating an account for a customer, or linking one
//! later, holds the customer's object lock from the check to the commit, so
//! two requests cannot link the same customer twice. Updating a customer
//! holds the same lock, so an update and a link of one customer cannot
//! overwrite each other's change.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use compact_str::CompactString;
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::accounts::{self, AccountCommand};
use crate::config::TEXT_FIELD_CHARS_MAX;
use crate::domain::members::{Account, Balances, Customer};
use crate::domain::{metadata, text, Id, IdKind, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateCustomer {
    email: Option<String>,
    name: Option<String>,
    metadata: Option<Metadata>,
}

/// `POST /v1/customers/{id}`: the same fields as a create, each optional.
type UpdateCustomer = CreateCustomer;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AccountParams {
    customer: Option<String>,
    metadata: Option<Metadata>,
}

fn text(param: &str, value: Option<String>) -> Result<Option<CompactString>, ApiError> {
    match value {
        Some(v) if v.chars().count() > TEXT_FIELD_CHARS_MAX => Err(ApiError::parameter_invalid(
            param,
            format!("{param} must be at most {TEXT_FIELD_CHARS_MAX} characters."),
        )),
        other => Ok(other.map(CompactString::from)),
    }
}

fn email(value: Option<String>) -> Result<Option<CompactString>, ApiError> {
    let value = text("email", value)?;
    if let Some(e) = &value {
        if !text::looks_like_email(e) {
            return Err(ApiError::parameter_invalid("email", "email must look like an email address."));
        }
    }
    Ok(value)
}

/// A customer id from a body: its shape, then its existence (400 `resource_missing`).
fn existing_customer(ledger: &Ledger, id: &str) -> Result<Customer, ApiError> {
    if !IdKind::Customer.accepts(id) {
        return Err(ApiError::missing_reference("customer", id));
    }
    ledger.state.customers.with(id, Clone::clone).ok_or_else(|| ApiError::missing_reference("customer", id))
}

pub async fn create_customer(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateCustomer = body.json()?;
        let customer = Customer {
            id: IdKind::Customer.generate(),
            email: email(p.email)?,
            name: text("name", p.name)?,
            metadata: metadata::initial(p.metadata)?,
            loyalty_account: None,
            created: ledger.now(),
        };
        let reply = Reply::json(200, &customer.view())?;
        ledger.commit_reply(&m, vec![Change::PutCustomer(customer.into())], reply).await
    })
    .await
}

/// An update's `email` or `name`: absent keeps the value, `""` clears it
/// (null), anything else is checked like a create's.
fn changed(
    current: &Option<CompactString>,
    given: Option<String>,
    check: impl FnOnce(Option<String>) -> Result<Option<CompactString>, ApiError>,
) -> Result<Option<CompactString>, ApiError> {
    match given {
        None => Ok(current.clone()),
        Some(v) if v.is_empty() => Ok(None),
        Some(v) => check(Some(v)),
    }
}

pub async fn update_customer(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let id = Id::from(id.into_inner());
    if !IdKind::Customer.accepts(&id) || !ledger.state.customers.contains(&id) {
        return Err(ApiError::not_found("customer", &id));
    }
    let (ledger, body, id) = (&ledger, &body, &id);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: UpdateCustomer = body.json()?;
        if let Some(md) = &p.metadata {
            metadata::validate(md)?;
        }
        // Held from the read to the commit: a link (which writes the
        // customer's `loyalty_account`) cannot land in between and be lost.
        let _held = ledger.locks.lock(&[id.as_str()]).await;
        let current =
            ledger.state.customers.with(id, Clone::clone).ok_or_else(|| ApiError::not_found("customer", id))?;
        let next = Customer {
            email: changed(&current.email, p.email, email)?,
            name: changed(&current.name, p.name, |v| text("name", v))?,
            metadata: match p.metadata {
                Some(md) => metadata::merge(&current.metadata, md)?,
                None => current.metadata.clone(),
            },
            ..current
        };
        let reply = Reply::json(200, &next.view())?;
        ledger.commit_reply(&m, vec![Change::PutCustomer(next.into())], reply).await
    })
    .await
}

/// `GET /v1/customers?email=`: newest first; `email` matches exactly (case and all).
pub async fn list_customers(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["email"])?;
    let email = match q.filter("email") {
        Some(e) if e.is_empty() || e.chars().count() > TEXT_FIELD_CHARS_MAX => {
            return Err(ApiError::parameter_invalid(
                "email",
                format!("email must be 1 to {TEXT_FIELD_CHARS_MAX} characters."),
            ))
        }
        other => other,
    };
    let mut data = Vec::new();
    let state = &ledger.state;
    let emit = |c: &Customer| data.push(respond::to_value(&c.view()));
    let has_more = match email {
        // The index's group may hold another email with the same hash: compared here.
        Some(e) => state.positions_page(
            &state.customers,
            |s| s.customers_by_email.positions(e),
            &q.params,
            |c| c.email.as_deref() == Some(e),
            emit,
        )?,
        None => state.page(&state.customers, &q.params, |_| true, emit)?,
    };
    respond::list(data, has_more)
}

pub async fn get_customer(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let customer = ledger
        .state
        .visible(|s| s.customers.find(IdKind::Customer, &id))
        .ok_or_else(|| ApiError::not_found("customer", &id))?;
    respond::ok(&customer.view())
}

pub async fn create_account(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: AccountParams = body.json()?;
        let metadata = metadata::initial(p.metadata)?;
        create_account_for(ledger, p.customer, metadata, &m).await
    })
    .await
}

async fn create_account_for(
    ledger: &Ledger,
    customer: Option<String>,
    metadata: Metadata,
    m: &Mutation,
) -> Result<Reply, ApiError> {
    let account = Account { id: IdKind::Account.generate(), customer: None, metadata, created: ledger.now() };
    let Some(cust_id) = customer else {
        let reply = Reply::json(200, &account.view(Balances::default()))?;
        return ledger.commit_reply(m, vec![Change::PutAccount(account.into())], reply).await;
    };
    let _held = ledger.locks.lock(&[&cust_id]).await;
    let mut cust = existing_customer(ledger, &cust_id)?;
    if let Some(other) = &cust.loyalty_account {
        return Err(accounts::link::customer_already_linked(&cust_id, other));
    }
    cust.loyalty_account = Some(account.id.clone());
    let account = Account { customer: Some(cust.id.clone()), ..account };
    let reply = Reply::json(200, &account.view(Balances::default()))?;
    ledger.commit_reply(m, vec![Change::PutAccount(account.into()), Change::PutCustomer(cust.into())], reply).await
}

pub async fn update_account(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let id = Id::from(id.into_inner());
    if !IdKind::Account.accepts(&id) || !ledger.state.accounts.contains(&id) {
        return Err(ApiError::not_found("loyalty_account", &id));
    }
    let ledger: Arc<Ledger> = ledger.into_inner();
    let (ledger, body, id) = (&ledger, &body, &id);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: AccountParams = body.json()?;
        if let Some(md) = &p.metadata {
            metadata::validate(md)?;
        }
        let customer = match p.customer {
            Some(c) => Some(existing_customer(ledger, &c)?.id),
            None => None,
        };
        let lock_ids: Vec<&str> = customer.iter().map(|c| c.as_str()).collect();
        let _held = ledger.locks.lock(&lock_ids).await;
        accounts::ask(ledger, id, AccountCommand::Update { customer, metadata: p.metadata }, m).await
    })
    .await
}

pub async fn get_account(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.into_inner();
    let body = IdKind::Account
        .accepts(&id)
        .then(|| ledger.state.visible(|s| s.accounts.with(&id, |e| serde_json::to_vec(&e.account.view(s.balances(e))))))
        .flatten()
        .ok_or_else(|| ApiError::not_found("loyalty_account", &id))?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    Ok(respond::reply(Reply { status: 200, body }))
}

pub async fn list_accounts(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["customer"])?;
    let customer = q.id_filter("customer")?;
    let mut data = Vec::new();
    let has_more = ledger.state.page(
        &ledger.state.accounts,
        &q.params,
        |e| customer.is_none_or(|c| e.account.customer.as_deref() == Some(c)),
        |e| data.push(respond::to_value(&e.account.view(ledger.state.balances(e)))),
    )?;
    respond::list(data, has_more)
}
