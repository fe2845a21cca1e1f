//! Webhook endpoints (`/v1/webhook_endpoints`) and their deliveries
//! (`/v1/webhook_deliveries`). The signing secret is shown on create and
//! roll only. An endpoint can be enabled and disabled (`POST .../{id}`) and
//! its secret rolled (`.../roll_secret`); a delivery can be retried now
//! (`.../retry`). Every change is one WAL record, like any mutation.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::config::{WEBHOOK_ROLL_EXPIRE_SECONDS_DEFAULT, WEBHOOK_ROLL_EXPIRE_SECONDS_MAX};
use crate::domain::events::EventType;
use crate::domain::ids::random_secret;
use crate::domain::webhooks::{
    Delivery, DeliveryStatus, EndpointStatus, PreviousSecret, WebhookEndpoint, WEBHOOK_ENDPOINTS_MAX,
    WEBHOOK_URL_BYTES_MAX,
};
use crate::domain::{text, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;
use crate::webhooks::net::{host_and_port, NetPolicy, Refused};

/// Object-lock key serializing endpoint creation (the count bound).
const ENDPOINTS_LOCK: &str = "webhook_endpoints";
/// Random characters of a signing secret after `whsec_`.
const WEBHOOK_SECRET_CHARS: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateEndpoint {
    url: String,
    enabled_events: Option<Vec<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpdateEndpoint {
    status: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RollSecret {
    expire_in_seconds: Option<i64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NoParams {}

/// An absolute `http://` or `https://` URL whose host the SSRF policy
/// allows (`webhooks::net`): every address it resolves to is public, unless
/// the server runs with `LEDGER_WEBHOOK_ALLOW_PRIVATE=1`.
async fn url(ledger: &Ledger, value: String) -> Result<String, ApiError> {
    if value.len() > WEBHOOK_URL_BYTES_MAX {
        return Err(ApiError::parameter_invalid("url", format!("url must be at most {WEBHOOK_URL_BYTES_MAX} bytes.")));
    }
    // The grammar the OpenAPI document declares (`text::webhook_url`): it
    // also leaves out https:// with an IPv6 address for a host, which the TLS
    // connector would take for the certificate's name and fail every time.
    let parsed: Result<awc::http::Uri, _> = value.parse();
    let uri = match parsed {
        Ok(uri) if text::webhook_url(&value) && host_and_port(&uri).is_some() => uri,
        _ => {
            return Err(ApiError::parameter_invalid(
                "url",
                "url must be an absolute http:// or https:// URL with a host name (or, over http, an IP \
                 address), an optional port, path and query, and no fragment.",
            ))
        }
    };
    let (host, port) = host_and_port(&uri).expect("checked above");
    let policy = &ledger.webhook_net;
    if !policy.allow_private {
        allowed(policy, host, port).await?;
    }
    Ok(value)
}

/// The SSRF check of a new endpoint's host: 400 `url_not_allowed` unless
/// every address it resolves to is public.
async fn allowed(policy: &NetPolicy, host: &str, port: u16) -> Result<(), ApiError> {
    match policy.check(host, port).await {
        Ok(_) => Ok(()),
        Err(Refused::Blocked) => Err(ApiError::parameter_invalid(
            "url",
            "url must reach a public address: its host is, or resolves to, a loopback, private, link-local, \
             unique-local, shared (CGNAT), multicast, broadcast or unspecified address.",
        )
        .with_code("url_not_allowed")),
        Err(Refused::Unresolved) => Err(ApiError::parameter_invalid(
            "url",
            "url's host does not resolve, so it cannot be checked to be a public address.",
        )
        .with_code("url_not_allowed")),
    }
}

/// `enabled_events`: known types, or `["*"]` (also the default) for all.
fn enabled_events(value: Option<Vec<String>>) -> Result<Vec<EventType>, ApiError> {
    let Some(names) = value else { return Ok(Vec::new()) };
    if names.is_empty() {
        return Err(ApiError::parameter_invalid(
            "enabled_events",
            "enabled_events must name at least one type, or \"*\".",
        ));
    }
    if names.iter().any(|n| n == "*") {
        return Ok(Vec::new());
    }
    let mut out = Vec::new();
    for n in &names {
        let kind = EventType::parse(n)
            .ok_or_else(|| ApiError::parameter_invalid("enabled_events", format!("Unknown event type '{n}'.")))?;
        if !out.contains(&kind) {
            out.push(kind);
        }
    }
    Ok(out)
}

pub async fn create(ledger: web::Data<Ledger>, req: HttpRequest, body: Body) -> Result<HttpResponse, ApiError> {
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateEndpoint = body.json()?;
        let enabled_events = enabled_events(p.enabled_events)?;
        let url = url(ledger, p.url).await?;
        let secret = random_secret("whsec_", WEBHOOK_SECRET_CHARS);
        let endpoint =
            WebhookEndpoint::new(IdKind::WebhookEndpoint.generate(), url, enabled_events, secret, ledger.now());
        let _held = ledger.locks.lock(&[ENDPOINTS_LOCK]).await;
        if ledger.state.live_webhook_endpoints().len() >= WEBHOOK_ENDPOINTS_MAX {
            return Err(ApiError::bad_request(
                "webhook_endpoints_limit",
                format!("At most {WEBHOOK_ENDPOINTS_MAX} webhook endpoints; delete one first."),
            ));
        }
        let reply = Reply::json(200, &endpoint.view(true))?;
        ledger.commit_reply(&m, vec![Change::PutWebhookEndpoint(endpoint.into())], reply).await
    })
    .await
}

fn existing(ledger: &Ledger, id: &str) -> Result<WebhookEndpoint, ApiError> {
    ledger
        .state
        .visible(|s| s.webhook_endpoints.find(IdKind::WebhookEndpoint, id))
        .filter(|e| !e.deleted)
        .ok_or_else(|| ApiError::not_found("webhook_endpoint", id))
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing(&ledger, &id)?.view(false))
}

pub async fn delete(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let id = id.as_str();
    let _held = ledger.locks.lock(&[id]).await;
    let mut endpoint = existing(&ledger, id)?;
    endpoint.deleted = true;
    let reply =
        Reply::json(200, &serde_json::json!({"id": endpoint.id, "object": "webhook_endpoint", "deleted": true}))?;
    let reply =
        ledger.commit_reply(&Mutation::default(), vec![Change::PutWebhookEndpoint(endpoint.into())], reply).await?;
    Ok(respond::reply(reply))
}

/// `{status}`: `"enabled"` turns a disabled endpoint back on (its waiting
/// deliveries go out at once, with 3 days of retries from now); `"disabled"`
/// stops new deliveries and holds the pending ones. The same status again
/// changes nothing and writes nothing.
pub async fn update(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: UpdateEndpoint = body.json()?;
        let status = match p.status.as_deref() {
            None => None,
            Some(s) => Some(
                EndpointStatus::parse(s)
                    .ok_or_else(|| ApiError::parameter_invalid("status", "status must be enabled or disabled."))?,
            ),
        };
        let _held = ledger.locks.lock(&[id]).await;
        let mut endpoint = existing(ledger, id)?;
        let Some(status) = status.filter(|s| *s != endpoint.status) else {
            return Reply::json(200, &endpoint.view(false));
        };
        endpoint.status = status;
        if status == EndpointStatus::Enabled {
            endpoint.enabled_at = ledger.now();
            endpoint.failing_since = None;
        }
        let reply = Reply::json(200, &endpoint.view(false))?;
        ledger.commit_reply(&m, vec![Change::PutWebhookEndpoint(endpoint.into())], reply).await
    })
    .await
}

/// A new signing secret, answered once; the current one keeps signing beside
/// it (a second `v1=`) for `expire_in_seconds` (default 24 h; 0: it stops now).
/// A secret an earlier roll kept signing stops now.
pub async fn roll_secret(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: RollSecret = body.json()?;
        let grace = match p.expire_in_seconds {
            None => WEBHOOK_ROLL_EXPIRE_SECONDS_DEFAULT,
            Some(s) if (0..=WEBHOOK_ROLL_EXPIRE_SECONDS_MAX).contains(&s) => s,
            Some(_) => {
                return Err(ApiError::parameter_invalid(
                    "expire_in_seconds",
                    format!("expire_in_seconds must be 0 to {WEBHOOK_ROLL_EXPIRE_SECONDS_MAX}."),
                ))
            }
        };
        let _held = ledger.locks.lock(&[id]).await;
        let mut endpoint = existing(ledger, id)?;
        let now = ledger.now();
        let replaced = std::mem::replace(&mut endpoint.secret, random_secret("whsec_", WEBHOOK_SECRET_CHARS));
        endpoint.previous_secret =
            (grace > 0).then(|| PreviousSecret { secret: replaced, expires_at: now.saturating_add(grace) });
        let reply = Reply::json(200, &endpoint.view(true))?;
        ledger.commit_reply(&m, vec![Change::PutWebhookEndpoint(endpoint.into())], reply).await
    })
    .await
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &[])?;
    let mut data = Vec::new();
    let state = &ledger.state;
    let has_more = state.page(&state.webhook_endpoints, &q.params, |e| !e.deleted, |e| data.push(e.view(false)))?;
    respond::list(data, has_more)
}

pub async fn list_deliveries(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["endpoint", "event", "status"])?;
    let endpoint = q.id_filter("endpoint")?;
    let event = q.id_filter("event")?;
    let status = match q.filter("status") {
        None => None,
        Some(s) => Some(
            DeliveryStatus::parse(s)
                .ok_or_else(|| ApiError::parameter_invalid("status", "status must be pending, delivered or failed."))?,
        ),
    };
    let mut data = Vec::new();
    let state = &ledger.state;
    let keep = |d: &Delivery| {
        endpoint.is_none_or(|e| d.endpoint == e)
            && event.is_none_or(|e| d.event == e)
            && status.is_none_or(|s| d.status == s)
    };
    let emit = |d: &Delivery| data.push(d.view());
    // Pending and failed ones are few and kept apart (`state/unfinished.rs`);
    // delivered ones are nearly all, so their filter passes over few.
    let has_more = match (status, endpoint) {
        (Some(s @ (DeliveryStatus::Pending | DeliveryStatus::Failed)), _) => state.positions_page(
            &state.deliveries,
            |st| st.unfinished_deliveries.positions(s),
            &q.params,
            keep,
            emit,
        )?,
        (_, Some(e)) => {
            state.indexed_page(&state.deliveries, &state.deliveries_by_endpoint, e, &q.params, keep, emit)?
        }
        (_, None) => state.page(&state.deliveries, &q.params, keep, emit)?,
    };
    respond::list(data, has_more)
}

fn existing_delivery(ledger: &Ledger, id: &str) -> Result<Delivery, ApiError> {
    ledger
        .state
        .visible(|s| s.deliveries.find(IdKind::WebhookDelivery, id))
        .ok_or_else(|| ApiError::not_found("webhook_delivery", id))
}

pub async fn get_delivery(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    respond::ok(&existing_delivery(&ledger, &id)?.view())
}

/// Delivers again now, whatever the delivery's status: it is pending again,
/// due at once, and its attempt count and 3 days of retries go on from where
/// they were (a failed delivery that fails again is failed again). 409 when
/// its endpoint is deleted or disabled (enable it first).
pub async fn retry_delivery(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    id: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let (ledger, body, id) = (&ledger, &body, id.as_str());
    existing_delivery(ledger, id)?;
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let _: NoParams = body.json()?;
        let _held = ledger.locks.lock(&[id]).await;
        let mut delivery = existing_delivery(ledger, id)?;
        match ledger.state.webhook_endpoints.with(&delivery.endpoint, |e| (e.deleted, e.status)) {
            None | Some((true, _)) => {
                return Err(ApiError::conflict(
                    "webhook_endpoint_deleted",
                    "The delivery's webhook endpoint was deleted; there is nowhere to deliver it.",
                ))
            }
            Some((false, EndpointStatus::Disabled)) => {
                return Err(ApiError::conflict(
                    "webhook_endpoint_disabled",
                    "The delivery's webhook endpoint is disabled; enable it first (POST /v1/webhook_endpoints/{id} with status enabled).",
                ))
            }
            Some((false, EndpointStatus::Enabled)) => {}
        }
        delivery.status = DeliveryStatus::Pending;
        delivery.next_attempt_at = ledger.now();
        let reply = Reply::json(200, &delivery.view())?;
        ledger.commit_reply(&m, vec![Change::PutDelivery(delivery.into())], reply).await
    })
    .await
}
