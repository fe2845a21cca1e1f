//! Events (`/v1/events`): what happened, newest first, filterable by type.

use actix_web::{web, HttpRequest, HttpResponse};

use super::query::ListQuery;
use super::respond;
use crate::domain::events::{Event, EventType};
use crate::domain::IdKind;
use crate::error::ApiError;
use crate::ledger::Ledger;

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let event =
        ledger.state.visible(|s| s.events.find(IdKind::Event, &id)).ok_or_else(|| ApiError::not_found("event", &id))?;
    respond::ok(&event.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["type"])?;
    let kind = match q.filter("type") {
        None => None,
        Some(t) => Some(
            EventType::parse(t)
                .ok_or_else(|| ApiError::parameter_invalid("type", format!("Unknown event type '{t}'.")))?,
        ),
    };
    let mut data = Vec::new();
    let state = &ledger.state;
    let emit = |e: &Event| data.push(respond::to_value(&e.view()));
    let has_more = match kind {
        Some(k) => state.indexed_page(&state.events, &state.events_by_type, k.as_str(), &q.params, |_| true, emit)?,
        None => state.page(&state.events, &q.params, |_| true, emit)?,
    };
    respond::list(data, has_more)
}
