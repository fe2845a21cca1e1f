//! Test hooks, off unless the server was started with `LEDGER_TEST_CLOCK`:
//! `POST /v1/test/clock {"advance_seconds": n}` moves the manual clock, so
//! black-box tests can make redemptions expire without waiting.

use actix_web::{web, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::respond;
use crate::error::ApiError;
use crate::ledger::Ledger;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Advance {
    advance_seconds: i64,
}

pub async fn advance_clock(ledger: web::Data<Ledger>, body: Body) -> Result<HttpResponse, ApiError> {
    let Some(clock) = &ledger.manual_clock else {
        return Err(ApiError::route_not_found("POST", "/v1/test/clock"));
    };
    let p: Advance = body.json()?;
    if !(0..=10 * 365 * 24 * 3600).contains(&p.advance_seconds) {
        return Err(ApiError::parameter_invalid("advance_seconds", "advance_seconds must be from 0 to ten years."));
    }
    clock.advance(p.advance_seconds);
    respond::ok(&serde_json::json!({"object": "test_clock", "now": ledger.now()}))
}
