//! Test hooks, each off unless the server was started with its env var
//! (a 404 `route_not_found` otherwise, like any unknown route):
//!
//! - `LEDGER_TEST_CLOCK`: `POST /v1/test/clock {"advance_seconds": n}` moves the
//!   manual clock, so black-box tests can make redemptions expire without waiting.
//! - `LEDGER_FAULTS=1`: `POST /v1/test/faults {"op", "error", "after"?, "times"?,
//!   "delay_ms"?}` arms a storage fault under the WAL (`test_hooks::faults`), and
//!   `GET /v1/test/faults` shows what is armed and how often each operation ran
//!   and failed. `op` is `append`, `sync` or `rename`; `error` is `eio`,
//!   `enospc`, `torn` (not for `rename`), `lost` (`sync` only), `slow` (with `delay_ms`), or `none`
//!   to disarm `op`. `after` operations pass first (default 0); the fault then
//!   fires `times` times (default 1; 0 = until disarmed).

use std::time::Duration;

use actix_web::{web, HttpResponse};
use serde::Deserialize;
use serde_json::{json, Value};

use super::body::Body;
use super::respond;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::test_hooks::faults::{Fault, FaultKind, FaultOp, Faults, FAULT_DELAY_MAX};

/// The most `advance_seconds` one call moves the clock: ten years.
pub const ADVANCE_SECONDS_MAX: i64 = 10 * 365 * 24 * 3600;

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
    if !(0..=ADVANCE_SECONDS_MAX).contains(&p.advance_seconds) {
        return Err(ApiError::parameter_invalid("advance_seconds", "advance_seconds must be from 0 to ten years."));
    }
    clock.advance(p.advance_seconds);
    respond::ok(&serde_json::json!({"object": "test_clock", "now": ledger.now()}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ArmFault {
    op: String,
    error: String,
    after: Option<u64>,
    times: Option<u64>,
    delay_ms: Option<u64>,
}

fn faults<'a>(ledger: &'a Ledger, method: &str) -> Result<&'a Faults, ApiError> {
    ledger.faults.as_deref().ok_or_else(|| ApiError::route_not_found(method, "/v1/test/faults"))
}

fn status(faults: &Faults) -> Result<HttpResponse, ApiError> {
    let mut ops = serde_json::Map::new();
    for s in faults.status() {
        let armed = s.armed.map(|f| {
            let delay_ms = match f.kind {
                FaultKind::Slow(d) => Value::from(d.as_millis() as u64),
                _ => Value::Null,
            };
            json!({"error": f.kind.name(), "after": f.after, "times": f.times, "delay_ms": delay_ms})
        });
        ops.insert(s.op.as_str().into(), json!({"calls": s.calls, "fired": s.fired, "armed": armed}));
    }
    respond::ok(&json!({"object": "test_faults", "ops": ops}))
}

pub async fn arm_fault(ledger: web::Data<Ledger>, body: Body) -> Result<HttpResponse, ApiError> {
    let faults = faults(&ledger, "POST")?;
    let p: ArmFault = body.json()?;
    let op =
        FaultOp::parse(&p.op).ok_or_else(|| ApiError::parameter_invalid("op", "op must be append, sync or rename."))?;
    let kind = match (p.error.as_str(), p.delay_ms) {
        ("none", _) => {
            faults.clear(op);
            return status(faults);
        }
        ("eio", None) => FaultKind::Eio,
        ("enospc", None) => FaultKind::Enospc,
        ("torn", None) if op != FaultOp::Rename => FaultKind::Torn,
        ("lost", None) if op == FaultOp::Sync => FaultKind::Lost,
        ("slow", Some(ms)) if Duration::from_millis(ms) <= FAULT_DELAY_MAX => {
            FaultKind::Slow(Duration::from_millis(ms))
        }
        ("slow", _) => {
            return Err(ApiError::parameter_invalid(
                "delay_ms",
                format!("error slow needs delay_ms, at most {}.", FAULT_DELAY_MAX.as_millis()),
            ))
        }
        (_, Some(_)) => return Err(ApiError::parameter_invalid("delay_ms", "delay_ms goes with error slow only.")),
        _ => {
            return Err(ApiError::parameter_invalid(
                "error",
                "error must be eio, enospc, torn (append and sync only), lost (sync only), slow or none.",
            ))
        }
    };
    faults.arm(op, Fault { kind, after: p.after.unwrap_or(0), times: p.times.unwrap_or(1) });
    status(faults)
}

pub async fn fault_status(ledger: web::Data<Ledger>) -> Result<HttpResponse, ApiError> {
    status(faults(&ledger, "GET")?)
}
