//! In front of every `/v1` route: 503 until replay is done, then the Bearer
//! key, then what that key may do.
//!
//! The key is the root key (`LEDGER_SECRET_KEY` or `DATA/secret_key`,
//! compared in constant time, full access, always valid) or an API key,
//! found by the sha256 of the presented secret (`state::api_keys`). An
//! unknown, revoked or expired key is 401 `invalid_api_key`. A read-only key
//! may only `GET` (and `HEAD`), and never under `/v1/api_keys`: anything else
//! is 403 `permission_denied`. The middleware leaves the key's `Permissions`
//! in the request's extensions; the key routes check them again (`require_full`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpMessage, HttpRequest};
use subtle::ConstantTimeEq;

use crate::domain::api_keys::Permissions;
use crate::error::ApiError;
use crate::ledger::Ledger;

/// Where the key routes live: a read-only key may not even read them.
pub const API_KEYS_PATH: &str = "/v1/api_keys";

pub async fn guard<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // A refusal is an answer with the request attached (not an error), so the
    // metrics middleware can still label it by route.
    if let Err(e) = admit(&req) {
        return Ok(req.error_response(e).map_into_right_body());
    }
    next.call(req).await.map(ServiceResponse::map_into_left_body)
}

fn admit(req: &ServiceRequest) -> Result<(), ApiError> {
    let ledger =
        req.app_data::<web::Data<Ledger>>().ok_or_else(|| ApiError::internal("ledger missing from app data"))?;
    if !ledger.is_ready() {
        return Err(ApiError::not_ready());
    }
    let presented = bearer(req.headers().get(actix_web::http::header::AUTHORIZATION))?;
    let permissions = if is_root(presented, &ledger.secret_key) {
        Permissions::Full
    } else {
        ledger.state.authenticate_api_key(presented, ledger.now()).ok_or_else(invalid_key)?
    };
    // The path as the router matches it (percent-decoded where that is safe),
    // so `/v1/api%5Fkeys` is the key routes here too.
    permit(permissions, req.method(), req.match_info().as_str())?;
    if req.method() == actix_web::http::Method::POST {
        super::idempotency::key(req.headers())?;
    }
    req.extensions_mut().insert(permissions);
    Ok(())
}

fn invalid_key() -> ApiError {
    ApiError::authentication("invalid_api_key", "Invalid API key provided.")
}

/// The secret of an `Authorization: Bearer <secret>` header.
fn bearer(header: Option<&actix_web::http::header::HeaderValue>) -> Result<&[u8], ApiError> {
    let Some(value) = header else {
        return Err(ApiError::authentication(
            "api_key_missing",
            "No API key provided: send 'Authorization: Bearer <secret key>'.",
        ));
    };
    match value.as_bytes().strip_prefix(b"Bearer ") {
        Some(secret) if !secret.is_empty() => Ok(secret),
        _ => Err(invalid_key()),
    }
}

/// Whether `presented` is the root key, compared in constant time.
fn is_root(presented: &[u8], root: &str) -> bool {
    bool::from(presented.ct_eq(root.as_bytes()))
}

/// Whether a key of `permissions` may send `method` to `path`.
fn permit(permissions: Permissions, method: &Method, path: &str) -> Result<(), ApiError> {
    match permissions {
        Permissions::Full => Ok(()),
        Permissions::ReadOnly if path.starts_with(API_KEYS_PATH) => {
            Err(ApiError::permission_denied("Managing API keys needs a full key; this key is read-only."))
        }
        Permissions::ReadOnly if method == Method::GET || method == Method::HEAD => Ok(()),
        Permissions::ReadOnly => {
            Err(ApiError::permission_denied(format!("This API key is read-only: it may only GET, not {method}.")))
        }
    }
}

/// The key routes' own check (the middleware refused a read-only key already).
pub fn require_full(req: &HttpRequest) -> Result<(), ApiError> {
    match req.extensions().get::<Permissions>() {
        Some(Permissions::Full) => Ok(()),
        _ => Err(ApiError::permission_denied("Managing API keys needs a full key.")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

    /// The root key check as the middleware runs it (no API keys exist here).
    fn check_key(header: Option<&HeaderValue>, secret: &str) -> Result<(), ApiError> {
        let presented = bearer(header)?;
        if is_root(presented, secret) {
            Ok(())
        } else {
            Err(invalid_key())
        }
    }

    #[test]
    fn keys() {
        let ok = HeaderValue::from_static("Bearer sk_test");
        assert!(check_key(Some(&ok), "sk_test").is_ok());
        for bad in ["Bearer sk_tesT", "sk_test", "Bearer sk_test ", "Basic sk_test", "Bearer "] {
            let v = HeaderValue::from_str(bad).unwrap();
            assert_eq!(check_key(Some(&v), "sk_test").unwrap_err().code, "invalid_api_key", "{bad}");
        }
        assert_eq!(check_key(None, "sk_test").unwrap_err().status, 401);
    }

    #[test]
    fn a_read_only_key_may_get_everything_but_the_key_routes() {
        let ro = Permissions::ReadOnly;
        assert!(permit(ro, &Method::GET, "/v1/loyalty/accounts").is_ok());
        assert!(permit(ro, &Method::HEAD, "/v1/payments/pay_1").is_ok());
        for (method, path) in [
            (Method::POST, "/v1/customers"),
            (Method::DELETE, "/v1/webhook_endpoints/we_1"),
            (Method::GET, "/v1/api_keys"),
            (Method::GET, "/v1/api_keys/key_1"),
            (Method::POST, "/v1/api_keys/key_1/roll"),
        ] {
            let e = permit(ro, &method, path).unwrap_err();
            assert_eq!((e.status, e.code, e.kind.as_str()), (403, "permission_denied", "invalid_request_error"));
        }
        for method in [Method::GET, Method::POST, Method::DELETE] {
            assert!(permit(Permissions::Full, &method, "/v1/api_keys").is_ok());
        }
    }
}
