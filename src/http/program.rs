//! The program (`/v1/loyalty/program`) and earning rules (`/v1/loyalty/earning_rules`).
//!
//! Program updates and rule creation hold a fixed object lock so that
//! concurrent updates never lose one another and the rule count stays bounded;
//! a rule update holds the rule's own lock.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::config::AMOUNT_MAX;
use crate::domain::earning::{EarningRule, EARNING_RULES_MAX, RULE_POINTS_MAX};
use crate::domain::program::{
    PointValue, EXPIRY_DAYS_MAX, EXPIRY_DAYS_MIN, EXPIRY_WARNING_DAYS_MAX, PENDING_DAYS_MAX,
    REDEMPTION_TTL_SECONDS_MAX, REDEMPTION_TTL_SECONDS_MIN,
};
use crate::domain::{money, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Reply};
use crate::state::State;
use crate::wal::Change;

/// Object-lock keys of the singletons.
const PROGRAM_LOCK: &str = "loyalty_program";
const RULES_LOCK: &str = "earning_rules";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ClawbackParams {
    allow_negative: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ExpiryParams {
    days: i64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PointValueParams {
    points: i64,
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateProgram {
    clawback: Option<ClawbackParams>,
    redemption_ttl_seconds: Option<i64>,
    pending_days: Option<i64>,
    /// `null` turns expiry off; absent leaves it.
    #[serde(default, deserialize_with = "present")]
    expiry: Option<Option<ExpiryParams>>,
    expiry_warning_days: Option<i64>,
    #[serde(default, deserialize_with = "present")]
    point_value: Option<Option<PointValueParams>>,
}

/// A field that may be `null` (set to nothing) as well as absent (left as it is).
fn present<'de, D, T>(d: D) -> Result<Option<Option<T>>, D::Error>
where
    D: serde::Deserializer<'de>,
    T: Deserialize<'de>,
{
    Option::<T>::deserialize(d).map(Some)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateRule {
    currency: String,
    points: i64,
    per_amount: i64,
    min_amount: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateRule {
    active: Option<bool>,
    points: Option<i64>,
    per_amount: Option<i64>,
    min_amount: Option<i64>,
}

fn in_range(param: &str, value: i64, min: i64, max: i64) -> Result<i64, ApiError> {
    if (min..=max).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::parameter_invalid(param, format!("{param} must be an integer from {min} to {max}.")))
    }
}

pub async fn get_program(ledger: web::Data<Ledger>) -> Result<HttpResponse, ApiError> {
    respond::ok(&ledger.state.visible(State::program).view())
}

pub async fn update_program(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: UpdateProgram = body.json()?;
        let ttl = p
            .redemption_ttl_seconds
            .map(|t| in_range("redemption_ttl_seconds", t, REDEMPTION_TTL_SECONDS_MIN, REDEMPTION_TTL_SECONDS_MAX))
            .transpose()?;
        let pending_days = p.pending_days.map(|d| in_range("pending_days", d, 0, PENDING_DAYS_MAX)).transpose()?;
        let expiry = p
            .expiry
            .map(|e| e.map(|e| in_range("expiry[days]", e.days, EXPIRY_DAYS_MIN, EXPIRY_DAYS_MAX)).transpose())
            .transpose()?;
        let warning = p
            .expiry_warning_days
            .map(|d| in_range("expiry_warning_days", d, 0, EXPIRY_WARNING_DAYS_MAX))
            .transpose()?;
        let point_value = p
            .point_value
            .map(|v| {
                v.map(|v| -> Result<PointValue, ApiError> {
                    Ok(PointValue {
                        points: in_range("point_value[points]", v.points, 1, RULE_POINTS_MAX)?,
                        amount: in_range("point_value[amount]", v.amount, 1, AMOUNT_MAX)?,
                        currency: money::currency("point_value[currency]", &v.currency)?,
                    })
                })
                .transpose()
            })
            .transpose()?;
        let _held = ledger.locks.lock(&[PROGRAM_LOCK]).await;
        let mut program = ledger.state.program();
        if let Some(c) = p.clawback {
            program.clawback_allow_negative = c.allow_negative;
        }
        if let Some(ttl) = ttl {
            program.redemption_ttl_seconds = ttl;
        }
        // Each applies to lots made from now on; existing lots keep their dates.
        if let Some(days) = pending_days {
            program.pending_days = days;
        }
        if let Some(days) = expiry {
            program.expiry_days = days;
        }
        if let Some(days) = warning {
            program.expiry_warning_days = days;
        }
        if let Some(value) = point_value {
            program.point_value = value;
        }
        let reply = Reply::json(200, &program.view())?;
        ledger.commit_reply(&m, vec![Change::PutProgram(program.into())], reply).await
    })
    .await
}

pub async fn create_rule(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateRule = body.json()?;
        let rule = EarningRule {
            id: IdKind::EarningRule.generate(),
            currency: money::currency("currency", &p.currency)?,
            points: in_range("points", p.points, 1, RULE_POINTS_MAX)?,
            per_amount: in_range("per_amount", p.per_amount, 1, AMOUNT_MAX)?,
            min_amount: in_range("min_amount", p.min_amount.unwrap_or(0), 0, AMOUNT_MAX)?,
            active: true,
            created: ledger.now(),
        };
        let _held = ledger.locks.lock(&[RULES_LOCK]).await;
        if ledger.state.earning_rules.len() >= EARNING_RULES_MAX {
            return Err(ApiError::bad_request(
                "earning_rules_limit",
                format!("The program holds at most {EARNING_RULES_MAX} earning rules; deactivate and reuse one."),
            ));
        }
        let reply = Reply::json(200, &rule.view())?;
        ledger.commit_reply(&m, vec![Change::PutEarningRule(rule.into())], reply).await
    })
    .await
}

fn existing_rule(ledger: &Ledger, id: &str) -> Result<EarningRule, ApiError> {
    ledger
        .state
        .visible(|s| s.earning_rules.find(IdKind::EarningRule, id))
        .ok_or_else(|| ApiError::not_found("earning_rule", id))
}

pub async fn update_rule(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing_rule(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: UpdateRule = body.json()?;
        let _held = ledger.locks.lock(&[id]).await;
        let mut rule = existing_rule(ledger, id)?;
        if let Some(active) = p.active {
            rule.active = active;
        }
        if let Some(points) = p.points {
            rule.points = in_range("points", points, 1, RULE_POINTS_MAX)?;
        }
        if let Some(per_amount) = p.per_amount {
            rule.per_amount = in_range("per_amount", per_amount, 1, AMOUNT_MAX)?;
        }
        if let Some(min_amount) = p.min_amount {
            rule.min_amount = in_range("min_amount", min_amount, 0, AMOUNT_MAX)?;
        }
        let reply = Reply::json(200, &rule.view())?;
        ledger.commit_reply(&m, vec![Change::PutEarningRule(rule.into())], reply).await
    })
    .await
}

pub async fn get_rule(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing_rule(&ledger, &id)?.view())
}

pub async fn list_rules(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["currency", "active"])?;
    let currency = q.filter("currency").map(|c| money::currency("currency", c)).transpose()?;
    let active = q.bool_filter("active")?;
    let mut data = Vec::new();
    let has_more = ledger.state.page(
        &ledger.state.earning_rules,
        &q.params,
        |r| currency.as_ref().is_none_or(|c| r.currency == *c) && active.is_none_or(|a| r.active == a),
        |r| data.push(respond::to_value(&r.view())),
    )?;
    respond::list(data, has_more)
}
