//! Turning results into HTTP answers: errors in the contract's shape, replies as JSON.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde::Serialize;

use crate::config::WAL_RECORD_BYTES_MAX;
use crate::error::ApiError;
use crate::ledger::Reply;
use crate::wal::WalError;

/// The one place a WAL failure becomes an HTTP answer.
impl From<WalError> for ApiError {
    fn from(e: WalError) -> Self {
        match e {
            WalError::Overloaded => ApiError::overloaded("the write-ahead log"),
            WalError::RecordTooLarge { .. } => ApiError::record_too_large(WAL_RECORD_BYTES_MAX),
            WalError::Unavailable => ApiError::storage_unavailable(),
            WalError::Encode(_) | WalError::Unapplied(_) => ApiError::internal(e.to_string()),
        }
    }
}

#[derive(Serialize)]
struct ErrorBody<'a> {
    error: ErrorFields<'a>,
}

#[derive(Serialize)]
struct ErrorFields<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'static str,
    message: &'a str,
    param: Option<&'a str>,
}

impl ResponseError for ApiError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        if self.status >= 500 && self.code == "internal_error" {
            tracing::error!(message = %self.message, "internal error answered to a client");
        }
        HttpResponse::build(self.status_code()).json(ErrorBody {
            error: ErrorFields {
                kind: self.kind.as_str(),
                code: self.code,
                message: &self.message,
                param: self.param.as_deref(),
            },
        })
    }
}

pub fn reply(r: Reply) -> HttpResponse {
    HttpResponse::build(StatusCode::from_u16(r.status).unwrap_or(StatusCode::OK))
        .content_type("application/json")
        .body(r.body)
}

/// 200 with `value` as JSON.
pub fn ok<T: Serialize>(value: &T) -> Result<HttpResponse, ApiError> {
    Ok(reply(Reply::json(200, value)?))
}

/// A view as a JSON value (views are plain structs: this cannot fail).
pub fn to_value<T: Serialize>(view: &T) -> serde_json::Value {
    serde_json::to_value(view).unwrap_or(serde_json::Value::Null)
}

/// 200 with a list page: `{"object":"list","data":[...],"has_more":bool}`.
pub fn list(data: Vec<serde_json::Value>, has_more: bool) -> Result<HttpResponse, ApiError> {
    ok(&serde_json::json!({"object": "list", "data": data, "has_more": has_more}))
}
