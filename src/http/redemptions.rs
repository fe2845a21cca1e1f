//! Redemptions (`/v1/loyalty/redemptions`): points spent on a reward, routed
//! to the account's actor, which serializes them with checkout and expiry.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::payments::NoParams;
use super::query::ListQuery;
use super::respond;
use super::rewards;
use crate::accounts::{self, AccountCommand};
use crate::domain::redemptions::{Redemption, RedemptionStatus};
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::ledger::Ledger;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRedemption {
    account: String,
    reward: String,
}

fn existing(ledger: &Ledger, id: &str) -> Result<Redemption, ApiError> {
    ledger
        .state
        .visible(|s| s.redemptions.find(IdKind::Redemption, id))
        .ok_or_else(|| ApiError::not_found("redemption", id))
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateRedemption = body.json()?;
        if !IdKind::Account.accepts(&p.account) || !ledger.state.accounts.contains(&p.account) {
            return Err(ApiError::missing_reference("account", &p.account));
        }
        let reward =
            rewards::existing(ledger, &p.reward).ok_or_else(|| ApiError::missing_reference("reward", &p.reward))?;
        if !reward.active {
            return Err(ApiError::conflict("reward_inactive", format!("Reward {} is not active.", reward.id))
                .with_param("reward"));
        }
        accounts::ask(ledger, &Id::from(p.account), AccountCommand::Redeem { reward }, m).await
    })
    .await
}

pub async fn cancel(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    let r = existing(ledger, &id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let _: NoParams = body.json()?;
        accounts::ask(ledger, &r.account, AccountCommand::Cancel { redemption: r.id.clone() }, m).await
    })
    .await
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing(&ledger, &id)?.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["account", "status", "payment"])?;
    let account = q.id_filter("account")?;
    let payment = q.id_filter("payment")?;
    let status = match q.filter("status") {
        None => None,
        Some(s) => Some(RedemptionStatus::parse(s).ok_or_else(|| {
            ApiError::parameter_invalid("status", "status must be pending, attached, consumed, canceled or expired.")
        })?),
    };
    let mut data = Vec::new();
    let state = &ledger.state;
    let keep = |r: &Redemption| {
        payment.is_none_or(|p| r.payment.as_deref() == Some(p)) && status.is_none_or(|s| r.status == s)
    };
    let emit = |r: &Redemption| data.push(respond::to_value(&r.view()));
    let has_more = match account {
        Some(a) => state.indexed_page(&state.redemptions, &state.redemptions_by_account, a, &q.params, keep, emit)?,
        None => state.page(&state.redemptions, &q.params, keep, emit)?,
    };
    respond::list(data, has_more)
}
