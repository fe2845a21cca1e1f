//! The one error type the API answers with, and the storage faults under it.
//!
//! `ApiError` carries everything the contract's error shape needs
//! (`type`, `code`, `message`, `param`) plus the HTTP status. Client errors
//! (4xx) change nothing; `storage_unavailable` (503) means nothing was
//! acknowledged. The HTTP layer turns an `ApiError` into a response in one
//! place (`http::respond`).

use std::fmt;

/// The `type` field of an error body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorType {
    InvalidRequest,
    Authentication,
    Idempotency,
    Api,
}

impl ErrorType {
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorType::InvalidRequest => "invalid_request_error",
            ErrorType::Authentication => "authentication_error",
            ErrorType::Idempotency => "idempotency_error",
            ErrorType::Api => "api_error",
        }
    }
}

/// An error answered to a client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: u16,
    pub kind: ErrorType,
    pub code: &'static str,
    pub message: String,
    pub param: Option<String>,
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}: {}", self.status, self.code, self.message)
    }
}

impl std::error::Error for ApiError {}

/// Longest client-supplied text echoed back in an error message, in characters.
pub const ERROR_ECHO_CHARS_MAX: usize = 120;

/// `s` as echoed in an error message: cut to `ERROR_ECHO_CHARS_MAX` characters.
fn shown(s: &str) -> String {
    match s.char_indices().nth(ERROR_ECHO_CHARS_MAX) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

impl ApiError {
    fn new(status: u16, kind: ErrorType, code: &'static str, message: impl Into<String>) -> Self {
        ApiError { status, kind, code, message: message.into(), param: None }
    }

    /// Replaces the code (keeping type and status).
    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = code;
        self
    }

    /// Names the request parameter at fault.
    pub fn with_param(mut self, param: impl Into<String>) -> Self {
        self.param = Some(param.into());
        self
    }

    /// 400 with a specific code.
    pub fn bad_request(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(400, ErrorType::InvalidRequest, code, message)
    }

    pub fn parameter_invalid(param: &str, message: impl Into<String>) -> Self {
        Self::bad_request("parameter_invalid", message).with_param(param)
    }

    pub fn parameter_missing(param: &str) -> Self {
        Self::bad_request("parameter_missing", format!("Missing required param: {param}.")).with_param(param)
    }

    pub fn parameter_unknown(param: &str) -> Self {
        Self::bad_request("parameter_unknown", format!("Received unknown parameter: {param}.")).with_param(param)
    }

    /// A referenced object (in a body or query) does not exist: 400.
    pub fn missing_reference(param: &str, id: &str) -> Self {
        Self::bad_request("resource_missing", format!("No such {param}: '{}'.", shown(id))).with_param(param)
    }

    /// The object named by the URL does not exist: 404.
    pub fn not_found(what: &str, id: &str) -> Self {
        Self::new(404, ErrorType::InvalidRequest, "resource_missing", format!("No such {what}: '{}'.", shown(id)))
            .with_param("id")
    }

    pub fn route_not_found(method: &str, path: &str) -> Self {
        Self::new(
            404,
            ErrorType::InvalidRequest,
            "route_not_found",
            format!("Unrecognized request URL ({method}: {}).", shown(path)),
        )
    }

    /// 405: the path exists, the method is not one of its `allowed` ones.
    pub fn method_not_allowed(method: &str, path: &str, allowed: &str) -> Self {
        Self::new(
            405,
            ErrorType::InvalidRequest,
            "method_not_allowed",
            format!("{method} is not allowed on {}; it allows {allowed}.", shown(path)),
        )
    }

    /// 409 for a request that conflicts with the object's current state.
    pub fn conflict(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, ErrorType::InvalidRequest, code, message)
    }

    pub fn idempotency(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(409, ErrorType::Idempotency, code, message)
    }

    pub fn too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            ErrorType::InvalidRequest,
            "request_too_large",
            format!("Request bodies are limited to {limit_bytes} bytes."),
        )
    }

    /// 413: the change a request makes is too large to record.
    pub fn record_too_large(limit_bytes: usize) -> Self {
        Self::new(
            413,
            ErrorType::InvalidRequest,
            "request_too_large",
            format!("The change this request makes exceeds the {limit_bytes}-byte record limit."),
        )
    }

    pub fn authentication(code: &'static str, message: impl Into<String>) -> Self {
        Self::new(401, ErrorType::Authentication, code, message)
    }

    /// 403: the key is valid but may not do this (a read-only key writing, or
    /// managing keys).
    pub fn permission_denied(message: impl Into<String>) -> Self {
        Self::new(403, ErrorType::InvalidRequest, "permission_denied", message)
    }

    /// 503: the write path is stopped after a storage fault; nothing was acknowledged.
    pub fn storage_unavailable() -> Self {
        Self::new(
            503,
            ErrorType::Api,
            "storage_unavailable",
            "Storage is unavailable: the request was not acknowledged (it may or may not survive a restart). \
             Writes stay stopped until the server is restarted; retry with the same Idempotency-Key.",
        )
    }

    /// 503: a bounded queue is full; retry later.
    pub fn overloaded(what: &str) -> Self {
        Self::new(503, ErrorType::Api, "overloaded", format!("Too many requests queued for {what}; retry later."))
    }

    /// 503 while the server replays its log.
    pub fn not_ready() -> Self {
        Self::new(503, ErrorType::Api, "not_ready", "The server is starting (replaying its log); retry shortly.")
    }

    /// 503: a snapshot could not be written (the ledger itself is unharmed).
    pub fn snapshot_failed(reason: &str) -> Self {
        Self::new(
            503,
            ErrorType::Api,
            "snapshot_failed",
            format!("The snapshot was not written: {reason}. The ledger keeps serving; retry later."),
        )
    }

    /// 409: another snapshot is being written.
    pub fn snapshot_in_progress() -> Self {
        Self::new(
            409,
            ErrorType::InvalidRequest,
            "snapshot_in_progress",
            "A snapshot is being written; retry when it is done.",
        )
    }

    /// 409: the change would take an account's balance (or the points its
    /// open redemptions hold) past what the ledger can record; nothing was
    /// written (docs/reliability.md, invariant 10). The domain's limits
    /// (`POINTS_BALANCE_MAX`, `POINTS_BALANCE_MIN`) keep ordinary requests
    /// clear of it; docs/decisions.md says when it can still be answered.
    pub fn balance_limit(account: &str, what: &str) -> Self {
        Self::conflict(
            "balance_limit",
            format!(
                "This change would take {what} of account {} past the ledger's limits; nothing was changed.",
                shown(account)
            ),
        )
    }

    /// 503: a table of the ledger is full; nothing was written.
    pub fn capacity_exceeded(table: &str) -> Self {
        Self::new(
            503,
            ErrorType::Api,
            "capacity_exceeded",
            format!("The ledger cannot hold more {table}; nothing was changed."),
        )
    }

    /// 500: a bug. Never expected; logged where it is made.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(500, ErrorType::Api, "internal_error", message)
    }
}

/// A fault below the API: disk, files, formats.
#[derive(Debug, thiserror::Error)]
pub enum StorageError {
    #[error("i/o error on {path}: {source}")]
    Io { path: String, source: std::io::Error },
    #[error("corrupt data in {path} at offset {offset}: {reason}")]
    Corrupt { path: String, offset: u64, reason: String },
    #[error("the write path is stopped after an earlier storage fault")]
    Poisoned,
    #[error("the log cannot be applied: {0}")]
    Inconsistent(String),
}

impl StorageError {
    pub fn io(path: impl AsRef<std::path::Path>, source: std::io::Error) -> Self {
        StorageError::Io { path: path.as_ref().display().to_string(), source }
    }
}

impl From<StorageError> for ApiError {
    fn from(_: StorageError) -> Self {
        ApiError::storage_unavailable()
    }
}
