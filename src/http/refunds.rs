//! Refunds (`/v1/refunds`): a refund of a completed payment, with the
//! proportional clawback of what it earned, written by the member's actor.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::accounts::{self, AccountCommand};
use crate::domain::payments::PaymentStatus;
use crate::domain::refunds::Refund;
use crate::domain::{money, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Reply};
use crate::wal::Change;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRefund {
    payment: String,
    amount: Option<i64>,
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateRefund = body.json()?;
        if let Some(a) = p.amount {
            money::amount("amount", a)?;
        }
        if !IdKind::Payment.accepts(&p.payment) || !ledger.state.payments.contains(&p.payment) {
            return Err(ApiError::missing_reference("payment", &p.payment));
        }
        let _held = ledger.locks.lock(&[&p.payment]).await;
        let payment = ledger
            .state
            .payments
            .with(&p.payment, Clone::clone)
            .ok_or_else(|| ApiError::missing_reference("payment", &p.payment))?;
        if payment.status != PaymentStatus::Completed {
            return Err(ApiError::conflict(
                "payment_not_completed",
                format!(
                    "Payment {} is {}; only a completed payment can be refunded.",
                    payment.id,
                    payment.status.as_str()
                ),
            )
            .with_param("payment"));
        }
        let left = payment.amount_charged() - payment.amount_refunded;
        let amount = p.amount.unwrap_or(left);
        if left <= 0 {
            return Err(ApiError::parameter_invalid(
                "amount",
                format!("Payment {} has nothing left to refund.", payment.id),
            )
            .with_code("amount_too_large"));
        }
        if amount > left {
            return Err(ApiError::parameter_invalid(
                "amount",
                format!("Refund of {amount} exceeds what is left to refund on payment {} ({left}).", payment.id),
            )
            .with_code("amount_too_large"));
        }
        let refund = Refund {
            id: IdKind::Refund.generate(),
            payment: payment.id.clone(),
            amount,
            points_clawed_back: 0,
            clawback: None,
            created: ledger.now(),
        };
        match payment.loyalty_account.clone() {
            Some(account) if payment.points_earned > 0 => {
                accounts::ask(ledger, &account, AccountCommand::Refund { payment, refund }, m).await
            }
            _ => {
                let mut payment = payment;
                payment.amount_refunded += amount;
                let reply = Reply::json(200, &refund.view())?;
                ledger
                    .commit_reply(&m, vec![Change::PutRefund(refund.into()), Change::PutPayment(payment.into())], reply)
                    .await
            }
        }
    })
    .await
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let refund = ledger
        .state
        .visible(|s| s.refunds.find(IdKind::Refund, &id))
        .ok_or_else(|| ApiError::not_found("refund", &id))?;
    respond::ok(&refund.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["payment"])?;
    let payment = q.id_filter("payment")?;
    let mut data = Vec::new();
    let state = &ledger.state;
    let emit = |r: &Refund| data.push(respond::to_value(&r.view()));
    let has_more = match payment {
        Some(p) => state.indexed_page(&state.refunds, &state.refunds_by_payment, p, &q.params, |_| true, emit)?,
        None => state.page(&state.refunds, &q.params, |_| true, emit)?,
    };
    respond::list(data, has_more)
}
