//! Payments (`/v1/payments`) and manual awards (`/v1/loyalty/awards`).
//!
//! Every change to an existing payment holds that payment's object lock from
//! the status check to the commit, so `complete`, `fail` and awards on one
//! payment never interleave. Completing with a member goes to the member's
//! account actor, which writes the completion and the award as one record.

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::accounts::{self, AccountCommand};
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::redemptions::REDEMPTIONS_PER_PAYMENT_MAX;
use crate::domain::{metadata, money, Id, IdKind, Metadata};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::locks::Held;
use crate::state::State;
use crate::wal::Change;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreatePayment {
    amount: i64,
    currency: String,
    customer: Option<String>,
    metadata: Option<Metadata>,
    redemptions: Option<Vec<String>>,
    confirm: Option<bool>,
}

/// Bodies of routes that take no parameters (`{}` or empty).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAward {
    payment: String,
    account: Option<String>,
}

/// The member a payment earns for, resolved now: the customer's linked account,
/// else `metadata.loyalty_account` if it names an existing account, else nobody.
pub fn resolve_member(state: &State, payment: &Payment) -> Option<Id> {
    let via_customer =
        payment.customer.as_ref().and_then(|c| state.customers.with(c, |c| c.loyalty_account.clone()).flatten());
    via_customer.or_else(|| {
        payment
            .metadata
            .get("loyalty_account")
            .filter(|a| IdKind::Account.accepts(a) && state.accounts.contains(a))
            .map(|a| Id::from(a.as_str()))
    })
}

/// Completes a pending payment (the caller holds its lock, or it is new).
/// A payment with redemptions earns for the member fixed at its creation.
async fn complete(ledger: &Arc<Ledger>, mut payment: Payment, m: &Mutation) -> Result<Reply, ApiError> {
    let member = match payment.redemptions.is_empty() {
        true => resolve_member(&ledger.state, &payment),
        false => payment.loyalty_account.clone(),
    };
    match member {
        Some(account) => accounts::ask(ledger, &account, AccountCommand::Complete { payment }, m.clone()).await,
        None => {
            payment.complete(ledger.now())?;
            let reply = Reply::json(200, &payment.view())?;
            ledger.commit_reply(m, vec![Change::PutPayment(payment.into())], reply).await
        }
    }
}

/// The redemption ids of a new payment, checked for shape, count and repeats.
fn redemption_ids(ids: Option<Vec<String>>) -> Result<Vec<Id>, ApiError> {
    let ids = ids.unwrap_or_default();
    if ids.len() > REDEMPTIONS_PER_PAYMENT_MAX {
        return Err(ApiError::parameter_invalid(
            "redemptions",
            format!("A payment may carry at most {REDEMPTIONS_PER_PAYMENT_MAX} redemptions."),
        ));
    }
    let mut out: Vec<Id> = Vec::with_capacity(ids.len());
    for id in ids {
        if !IdKind::Redemption.accepts(&id) {
            return Err(ApiError::missing_reference("redemptions", &id));
        }
        if out.iter().any(|o| *o == id) {
            return Err(ApiError::parameter_invalid("redemptions", format!("Redemption {id} is listed twice.")));
        }
        out.push(Id::from(id));
    }
    Ok(out)
}

fn existing_payment(ledger: &Ledger, id: &str) -> Result<Payment, ApiError> {
    ledger.state.visible(|s| s.payments.find(IdKind::Payment, id)).ok_or_else(|| ApiError::not_found("payment", id))
}

/// Locks payment `id` (held until the returned guard drops) and returns it if pending.
async fn lock_pending<'a>(ledger: &'a Ledger, id: &str) -> Result<(Held<'a>, Payment), ApiError> {
    let held = ledger.locks.lock(&[id]).await;
    let payment = existing_payment(ledger, id)?;
    if payment.status != PaymentStatus::Pending {
        return Err(not_pending(&payment));
    }
    Ok((held, payment))
}

fn not_pending(p: &Payment) -> ApiError {
    ApiError::conflict(
        "payment_not_pending",
        format!("Payment {} is {}; only a pending payment can do that.", p.id, p.status.as_str()),
    )
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreatePayment = body.json()?;
        let amount = money::amount("amount", p.amount)?;
        let currency = money::currency("currency", &p.currency)?;
        let customer = match p.customer {
            Some(c) if IdKind::Customer.accepts(&c) && ledger.state.customers.contains(&c) => Some(Id::from(c)),
            Some(c) => return Err(ApiError::missing_reference("customer", &c)),
            None => None,
        };
        let payment = Payment {
            id: IdKind::Payment.generate(),
            amount,
            amount_discount: 0,
            amount_refunded: 0,
            currency,
            status: PaymentStatus::Pending,
            customer,
            metadata: metadata::initial(p.metadata)?,
            redemptions: redemption_ids(p.redemptions)?,
            loyalty_account: None,
            points_earned: 0,
            award: None,
            created: ledger.now(),
            completed_at: None,
        };
        let confirm = p.confirm == Some(true);
        if !payment.redemptions.is_empty() {
            // Redemptions must belong to the member the payment resolves to now.
            let member = resolve_member(&ledger.state, &payment).ok_or_else(|| {
                ApiError::conflict(
                    "redemption_account_mismatch",
                    "The payment resolves to no loyalty account, so it cannot carry redemptions.",
                )
                .with_param("redemptions")
            })?;
            return accounts::ask(ledger, &member, AccountCommand::CreatePayment { payment, confirm }, m).await;
        }
        if confirm {
            return complete(ledger, payment, &m).await;
        }
        let reply = Reply::json(200, &payment.view())?;
        ledger.commit_reply(&m, vec![Change::PutPayment(payment.into())], reply).await
    })
    .await
}

pub async fn complete_route(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing_payment(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let _: NoParams = body.json()?;
        let (_held, payment) = lock_pending(ledger, id).await?;
        complete(ledger, payment, &m).await
    })
    .await
}

pub async fn fail_route(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing_payment(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let _: NoParams = body.json()?;
        let (_held, mut payment) = lock_pending(ledger, id).await?;
        if let (false, Some(account)) = (payment.redemptions.is_empty(), payment.loyalty_account.clone()) {
            return accounts::ask(ledger, &account, AccountCommand::Fail { payment }, m).await;
        }
        payment.fail()?;
        let reply = Reply::json(200, &payment.view())?;
        ledger.commit_reply(&m, vec![Change::PutPayment(payment.into())], reply).await
    })
    .await
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing_payment(&ledger, &id)?.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["customer", "status"])?;
    let customer = q.id_filter("customer")?;
    let status = q.filter("status");
    if status.is_some_and(|s| !["pending", "completed", "failed"].contains(&s)) {
        return Err(ApiError::parameter_invalid("status", "status must be pending, completed or failed."));
    }
    let mut data = Vec::new();
    let state = &ledger.state;
    let keep = |p: &Payment| status.is_none_or(|s| p.status.as_str() == s);
    let emit = |p: &Payment| data.push(respond::to_value(&p.view()));
    let has_more = match customer {
        Some(c) => state.indexed_page(&state.payments, &state.payments_by_customer, c, &q.params, keep, emit)?,
        None => state.page(&state.payments, &q.params, keep, emit)?,
    };
    respond::list(data, has_more)
}

pub async fn award(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateAward = body.json()?;
        if !IdKind::Payment.accepts(&p.payment) || !ledger.state.payments.contains(&p.payment) {
            return Err(ApiError::missing_reference("payment", &p.payment));
        }
        let _held = ledger.locks.lock(&[&p.payment]).await;
        let payment = existing_payment(ledger, &p.payment)?;
        if payment.status != PaymentStatus::Completed {
            return Err(ApiError::conflict(
                "payment_not_completed",
                format!("Payment {} is {}; only a completed payment can be awarded.", payment.id, payment.status.as_str()),
            )
            .with_param("payment"));
        }
        if payment.is_awarded() {
            return Err(ApiError::conflict(
                "payment_already_awarded",
                format!("Payment {} already earned for {}.", payment.id, payment.loyalty_account.as_deref().unwrap_or("")),
            )
            .with_param("payment"));
        }
        if payment.amount_refunded > 0 {
            return Err(ApiError::conflict(
                "payment_refunded",
                format!("Payment {} was already refunded; it can no longer be awarded.", payment.id),
            )
            .with_param("payment"));
        }
        // A payment that already earned for a member (even 0 points) stays that member's.
        if let (Some(fixed), Some(asked)) = (&payment.loyalty_account, &p.account) {
            if fixed != asked {
                return Err(ApiError::conflict(
                    "payment_account_mismatch",
                    format!("Payment {} belongs to loyalty account {fixed}; it cannot earn for {asked}.", payment.id),
                )
                .with_param("account"));
            }
        }
        let account = match p.account {
            Some(a) if IdKind::Account.accepts(&a) && ledger.state.accounts.contains(&a) => Id::from(a),
            Some(a) => return Err(ApiError::missing_reference("account", &a)),
            None => payment.loyalty_account.clone().or_else(|| resolve_member(&ledger.state, &payment)).ok_or_else(|| {
                ApiError::bad_request(
                    "parameter_missing",
                    "No loyalty account can be resolved for this payment (customer link or metadata.loyalty_account); pass `account`.",
                )
                .with_param("account")
            })?,
        };
        accounts::ask(ledger, &account, AccountCommand::Award { payment }, m).await
    })
    .await
}
