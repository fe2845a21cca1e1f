//! Rewards (`/v1/loyalty/rewards`): what points can be spent on.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::config::TEXT_FIELD_CHARS_MAX;
use crate::domain::rewards::{valid_client_id, Reward, REWARDS_MAX, REWARD_POINTS_MAX};
use crate::domain::{money, text, Id, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Reply};
use crate::wal::Change;

/// Object-lock key serializing reward creation (ids chosen by clients, the count bound).
const REWARDS_LOCK: &str = "rewards";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DiscountParams {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateReward {
    id: Option<String>,
    name: String,
    points: i64,
    discount: DiscountParams,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateReward {
    active: Option<bool>,
    name: Option<String>,
}

fn name(value: String) -> Result<String, ApiError> {
    if !text::not_blank(&value) || value.chars().count() > TEXT_FIELD_CHARS_MAX {
        return Err(ApiError::parameter_invalid(
            "name",
            format!("name must be 1 to {TEXT_FIELD_CHARS_MAX} characters."),
        ));
    }
    Ok(value)
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateReward = body.json()?;
        let id = match p.id {
            Some(id) if valid_client_id(&id) => Id::from(id),
            Some(_) => {
                return Err(ApiError::parameter_invalid(
                    "id",
                    "A reward id must be 'rwd_' followed by 1 to 60 of [a-z0-9_], e.g. rwd_5eur_off.",
                ))
            }
            None => IdKind::Reward.generate(),
        };
        if !(1..=REWARD_POINTS_MAX).contains(&p.points) {
            return Err(ApiError::parameter_invalid(
                "points",
                format!("points must be from 1 to {REWARD_POINTS_MAX}."),
            ));
        }
        let reward = Reward {
            id,
            name: name(p.name)?,
            points: p.points,
            discount_amount: money::amount("discount[amount]", p.discount.amount)?,
            discount_currency: money::currency("discount[currency]", &p.discount.currency)?,
            active: true,
            created: ledger.now(),
        };
        let _held = ledger.locks.lock(&[REWARDS_LOCK]).await;
        if ledger.state.rewards.contains(&reward.id) {
            return Err(ApiError::conflict("resource_already_exists", format!("Reward {} already exists.", reward.id))
                .with_param("id"));
        }
        if ledger.state.rewards.len() >= REWARDS_MAX {
            return Err(ApiError::bad_request(
                "rewards_limit",
                format!("The program holds at most {REWARDS_MAX} rewards."),
            ));
        }
        let reply = Reply::json(200, &reward.view())?;
        ledger.commit_reply(&m, vec![Change::PutReward(reward.into())], reply).await
    })
    .await
}

pub fn existing(ledger: &Ledger, id: &str) -> Option<Reward> {
    ledger.state.visible(|s| s.rewards.find(IdKind::Reward, id))
}

pub async fn update(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing(ledger, id).ok_or_else(|| ApiError::not_found("reward", id))?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: UpdateReward = body.json()?;
        let new_name = p.name.map(name).transpose()?;
        let _held = ledger.locks.lock(&[id]).await;
        let mut reward = existing(ledger, id).ok_or_else(|| ApiError::not_found("reward", id))?;
        if let Some(active) = p.active {
            reward.active = active;
        }
        if let Some(n) = new_name {
            reward.name = n;
        }
        let reply = Reply::json(200, &reward.view())?;
        ledger.commit_reply(&m, vec![Change::PutReward(reward.into())], reply).await
    })
    .await
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing(&ledger, &id).ok_or_else(|| ApiError::not_found("reward", &id))?.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["active"])?;
    let active = q.bool_filter("active")?;
    let mut data = Vec::new();
    let has_more = ledger.state.page(
        &ledger.state.rewards,
        &q.params,
        |r| active.is_none_or(|a| r.active == a),
        |r| data.push(respond::to_value(&r.view())),
    )?;
    respond::list(data, has_more)
}
