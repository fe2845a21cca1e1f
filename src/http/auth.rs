//! In front of every `/v1` route: 503 until replay is done, then the Bearer
//! secret key, compared in constant time.

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::web;
use subtle::ConstantTimeEq;

use crate::error::ApiError;
use crate::ledger::Ledger;

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
    check_key(req.headers().get(actix_web::http::header::AUTHORIZATION), &ledger.secret_key)
}

fn check_key(header: Option<&actix_web::http::header::HeaderValue>, secret: &str) -> Result<(), ApiError> {
    let Some(value) = header else {
        return Err(ApiError::authentication(
            "api_key_missing",
            "No API key provided: send 'Authorization: Bearer <secret key>'.",
        ));
    };
    let presented = value.as_bytes().strip_prefix(b"Bearer ").unwrap_or(b"");
    if bool::from(presented.ct_eq(secret.as_bytes())) {
        Ok(())
    } else {
        Err(ApiError::authentication("invalid_api_key", "Invalid API key provided."))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::http::header::HeaderValue;

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
}
