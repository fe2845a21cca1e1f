//! Webhook endpoints (`/v1/webhook_endpoints`) and their deliveries
//! (`/v1/webhook_deliveries`). The signing secret is shown on create only.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::domain::events::EventType;
use crate::domain::ids::random_secret;
use crate::domain::webhooks::{WebhookEndpoint, WEBHOOK_ENDPOINTS_MAX, WEBHOOK_URL_BYTES_MAX};
use crate::domain::{text, IdKind};
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

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

fn url(value: String) -> Result<String, ApiError> {
    if value.len() > WEBHOOK_URL_BYTES_MAX {
        return Err(ApiError::parameter_invalid("url", format!("url must be at most {WEBHOOK_URL_BYTES_MAX} bytes.")));
    }
    if value.get(..8).is_some_and(|p| p.eq_ignore_ascii_case("https://")) {
        return Err(ApiError::parameter_invalid(
            "url",
            "This build delivers over plain http only; put a TLS-terminating proxy in front of an https receiver.",
        )
        .with_code("url_scheme_unsupported"));
    }
    match text::plain_http_url(&value) {
        true => Ok(value),
        false => Err(ApiError::parameter_invalid("url", "url must be an absolute http:// URL.")),
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
        let endpoint = WebhookEndpoint {
            id: IdKind::WebhookEndpoint.generate(),
            url: url(p.url)?,
            enabled_events: enabled_events(p.enabled_events)?,
            secret: random_secret("whsec_", WEBHOOK_SECRET_CHARS),
            deleted: false,
            created: ledger.now(),
        };
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
    let status = q.filter("status");
    if let Some(s) = status {
        if !["pending", "delivered", "failed"].contains(&s) {
            return Err(ApiError::parameter_invalid("status", "status must be pending, delivered or failed."));
        }
    }
    let mut data = Vec::new();
    let has_more = ledger.state.page(
        &ledger.state.deliveries,
        &q.params,
        |d| {
            endpoint.is_none_or(|e| d.endpoint == e)
                && event.is_none_or(|e| d.event == e)
                && status.is_none_or(|s| d.status.as_str() == s)
        },
        |d| data.push(d.view()),
    )?;
    respond::list(data, has_more)
}
