//! API keys (`/v1/api_keys`): create, list, retrieve, revoke and roll. Every
//! route needs a full key (the middleware refuses read-only ones; `require_full`
//! checks again). A secret is in the answer that makes it (create, roll) and
//! nowhere else: the key keeps only its hash, and the idempotent answer kept
//! for a retry shows the key without it (docs/decisions.md, API keys).

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::auth::require_full;
use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::config::{
    API_KEYS_MAX, API_KEY_LIFETIME_SECONDS_MAX, API_KEY_NAME_CHARS_MAX, API_KEY_ROLL_EXPIRE_SECONDS_MAX,
};
use crate::domain::api_keys::{new_secret, ApiKey, Permissions, PreviousSecret};
use crate::domain::{text, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

/// Object-lock key serializing key creation (the count bound).
const API_KEYS_LOCK: &str = "api_keys";

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    name: String,
    permissions: String,
    expires_at: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollKey {
    expire_in_seconds: Option<i64>,
}

fn name(value: String) -> Result<String, ApiError> {
    let chars = value.chars().count();
    if chars == 0 || chars > API_KEY_NAME_CHARS_MAX || !text::not_blank(&value) {
        return Err(ApiError::parameter_invalid(
            "name",
            format!("name must be 1 to {API_KEY_NAME_CHARS_MAX} characters, not only spaces."),
        ));
    }
    Ok(value)
}

fn permissions(value: &str) -> Result<Permissions, ApiError> {
    Permissions::parse(value)
        .ok_or_else(|| ApiError::parameter_invalid("permissions", "permissions must be full or read_only."))
}

/// `expires_at`: in the future, at most `API_KEY_LIFETIME_SECONDS_MAX` ahead.
fn expires_at(value: Option<i64>, now: i64) -> Result<Option<i64>, ApiError> {
    match value {
        Some(at) if at <= now || at - now > API_KEY_LIFETIME_SECONDS_MAX => Err(ApiError::parameter_invalid(
            "expires_at",
            format!(
                "expires_at must be a unix time in the future, at most {API_KEY_LIFETIME_SECONDS_MAX} seconds from now."
            ),
        )),
        other => Ok(other),
    }
}

/// `expire_in_seconds`: `0..=API_KEY_ROLL_EXPIRE_SECONDS_MAX`, 0 when absent.
fn expire_in_seconds(value: Option<i64>) -> Result<i64, ApiError> {
    match value {
        None => Ok(0),
        Some(s) if (0..=API_KEY_ROLL_EXPIRE_SECONDS_MAX).contains(&s) => Ok(s),
        Some(_) => Err(ApiError::parameter_invalid(
            "expire_in_seconds",
            format!("expire_in_seconds must be from 0 to {API_KEY_ROLL_EXPIRE_SECONDS_MAX}."),
        )),
    }
}

/// The answer showing `secret` once, and the one kept for a retry, without it.
fn answers(ledger: &Ledger, key: &ApiKey, secret: &str) -> Result<(Reply, Reply), ApiError> {
    let last_used = ledger.state.api_key_index.last_used(&key.id);
    Ok((Reply::json(200, &key.view(Some(secret), last_used))?, Reply::json(200, &key.view(None, last_used))?))
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateKey = body.json()?;
        let now = ledger.now();
        let name = name(p.name)?;
        let permissions = permissions(&p.permissions)?;
        let expires_at = expires_at(p.expires_at, now)?;
        let (secret, secret_hash) = new_secret(permissions);
        let key = ApiKey {
            id: IdKind::ApiKey.generate(),
            name,
            permissions,
            secret_hash,
            previous: None,
            expires_at,
            revoked: false,
            created: now,
        };
        let _held = ledger.locks.lock(&[API_KEYS_LOCK]).await;
        let mut live = 0usize;
        ledger.state.api_keys.for_each(|k| live += usize::from(!k.revoked));
        if live >= API_KEYS_MAX {
            return Err(ApiError::bad_request(
                "api_keys_limit",
                format!("At most {API_KEYS_MAX} API keys; revoke one first."),
            ));
        }
        let (reply, kept) = answers(ledger, &key, &secret)?;
        ledger.commit_reply_keeping(&m, vec![Change::PutApiKey(key.into())], reply, kept).await
    })
    .await
}

/// The key `id`, unless it does not exist or was revoked (both 404).
fn existing(ledger: &Ledger, id: &str) -> Result<ApiKey, ApiError> {
    ledger
        .state
        .visible(|s| s.api_keys.find(IdKind::ApiKey, id))
        .filter(|k| !k.revoked)
        .ok_or_else(|| ApiError::not_found("api_key", id))
}

fn view(ledger: &Ledger, key: &ApiKey) -> serde_json::Value {
    key.view(None, ledger.state.api_key_index.last_used(&key.id))
}

pub async fn get(ledger: web::Data<Ledger>, req: HttpRequest, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    respond::ok(&view(&ledger, &existing(&ledger, &id)?))
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let q = ListQuery::parse(&req, &[])?;
    let mut data = Vec::new();
    let state = &ledger.state;
    let has_more = state.page(&state.api_keys, &q.params, |k| !k.revoked, |k| data.push(view(&ledger, k)))?;
    respond::list(data, has_more)
}

/// Revokes the key: 401 with its secrets from then on, 404 here.
pub async fn delete(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let id = id.as_str();
    let _held = ledger.locks.lock(&[id]).await;
    let mut key = existing(&ledger, id)?;
    key.revoked = true;
    key.previous = None;
    let reply = Reply::json(200, &serde_json::json!({"id": key.id, "object": "api_key", "deleted": true}))?;
    let reply = ledger.commit_reply(&Mutation::default(), vec![Change::PutApiKey(key.into())], reply).await?;
    Ok(respond::reply(reply))
}

/// A new secret; the current one keeps working for `expire_in_seconds`
/// (none when 0 or absent). A secret an earlier roll kept working stops now.
pub async fn roll(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    require_full(&req)?;
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: RollKey = body.json()?;
        let grace = expire_in_seconds(p.expire_in_seconds)?;
        let _held = ledger.locks.lock(&[id]).await;
        let mut key = existing(ledger, id)?;
        let now = ledger.now();
        let replaced = key.secret_hash;
        key.previous = (grace > 0).then(|| PreviousSecret { hash: replaced, expires_at: now.saturating_add(grace) });
        let (secret, secret_hash) = new_secret(key.permissions);
        key.secret_hash = secret_hash;
        let (reply, kept) = answers(ledger, &key, &secret)?;
        ledger.commit_reply_keeping(&m, vec![Change::PutApiKey(key.into())], reply, kept).await
    })
    .await
}
