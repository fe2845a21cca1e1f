//! `Idempotency-Key` around every `POST`: a retry with the same key, path and
//! body answers the first response again (`Idempotent-Replayed: true`); the
//! same key on another request is a 409 `idempotency_key_reused`; a retry
//! while the first is still running is a 409 `idempotency_key_in_use`.

use std::future::Future;

use actix_web::http::header::HeaderMap;
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponse};
use sha2::{Digest, Sha256};

use super::respond;
use crate::config::IDEMPOTENCY_KEY_CHARS_MAX;
use crate::error::ApiError;
use crate::ledger::{IdemRequest, Ledger, Mutation, Reply};
use crate::state::Begin;

pub const HEADER: &str = "Idempotency-Key";
/// What a key may hold, as `/v1/openapi.json` declares it: visible ASCII,
/// `!` to `~` (`u8::is_ascii_graphic`, the check below), no spaces.
pub const KEY_PATTERN: &str = "^[!-~]+$";
pub const REPLAYED_HEADER: &str = "Idempotent-Replayed";

/// The request's `Idempotency-Key`, if it has one, checked: 1 to
/// `IDEMPOTENCY_KEY_CHARS_MAX` of `KEY_PATTERN`. Every `POST` under `/v1`
/// has it checked (`auth::guard`), also the routes that do not replay.
pub fn key(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(HEADER) else { return Ok(None) };
    value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= IDEMPOTENCY_KEY_CHARS_MAX && k.bytes().all(|b| b.is_ascii_graphic()))
        .map(Some)
        .ok_or_else(|| {
            ApiError::bad_request(
                "idempotency_key_invalid",
                format!("Idempotency-Key must be 1 to {IDEMPOTENCY_KEY_CHARS_MAX} visible ASCII characters."),
            )
            .with_param(HEADER)
        })
}

/// Runs `op` at most once per idempotency key.
pub async fn once<F, Fut>(ledger: &Ledger, req: &HttpRequest, body: &[u8], op: F) -> Result<HttpResponse, ApiError>
where
    F: FnOnce(Mutation) -> Fut,
    Fut: Future<Output = Result<Reply, ApiError>>,
{
    let Some(key) = key(req.headers())? else {
        return op(Mutation::default()).await.map(respond::reply);
    };
    let key = key.to_string();
    let fingerprint = fingerprint(req.method().as_str(), req.path(), body);
    match ledger.state.idempotency.begin(&key, fingerprint, ledger.now()) {
        Begin::Replay(stored) => Ok(HttpResponse::build(StatusCode::from_u16(stored.status).unwrap_or(StatusCode::OK))
            .content_type("application/json")
            .insert_header((REPLAYED_HEADER, "true"))
            .body(stored.body.to_vec())),
        Begin::Reused => Err(ApiError::idempotency(
            "idempotency_key_reused",
            "This Idempotency-Key was already used with a different request (path or body).",
        )),
        Begin::InFlight => Err(ApiError::idempotency(
            "idempotency_key_in_use",
            "A request with this Idempotency-Key is still being processed; retry shortly.",
        )),
        Begin::Unavailable => Err(ApiError::storage_unavailable()),
        Begin::Proceed(guard) => {
            let result = op(Mutation { idem: Some(IdemRequest { key, fingerprint }) }).await;
            drop(guard);
            result.map(respond::reply)
        }
    }
}

fn fingerprint(method: &str, path: &str, body: &[u8]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(method.as_bytes());
    h.update([0]);
    h.update(path.as_bytes());
    h.update([0]);
    h.update(body);
    h.finalize().into()
}
