//! Request bodies: read with a hard size limit, parsed as JSON into a typed
//! request whose unknown fields are rejected.

use std::future::Future;
use std::pin::Pin;

use actix_web::dev::Payload;
use actix_web::web::{Bytes, BytesMut};
use actix_web::{FromRequest, HttpRequest};
use futures_util::StreamExt;
use serde::de::DeserializeOwned;

use crate::config::REQUEST_BODY_BYTES_MAX;
use crate::error::ApiError;

/// The raw body of a request, at most `REQUEST_BODY_BYTES_MAX` bytes.
pub struct Body(pub Bytes);

impl FromRequest for Body {
    type Error = ApiError;
    type Future = Pin<Box<dyn Future<Output = Result<Body, ApiError>>>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let declared = req
            .headers()
            .get(actix_web::http::header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<usize>().ok());
        let mut payload = payload.take();
        Box::pin(async move {
            if declared.is_some_and(|n| n > REQUEST_BODY_BYTES_MAX) {
                return Err(ApiError::too_large(REQUEST_BODY_BYTES_MAX));
            }
            let mut buf = BytesMut::new();
            while let Some(chunk) = payload.next().await {
                let chunk = chunk.map_err(|e| match e {
                    actix_web::error::PayloadError::Overflow => ApiError::too_large(REQUEST_BODY_BYTES_MAX),
                    other => ApiError::bad_request("invalid_body", format!("Could not read the request body: {other}")),
                })?;
                if buf.len() + chunk.len() > REQUEST_BODY_BYTES_MAX {
                    return Err(ApiError::too_large(REQUEST_BODY_BYTES_MAX));
                }
                buf.extend_from_slice(&chunk);
            }
            Ok(Body(buf.freeze()))
        })
    }
}

impl Body {
    /// Parses the body as `T`; an empty body is `{}`.
    pub fn json<T: DeserializeOwned>(&self) -> Result<T, ApiError> {
        parse_json(&self.0)
    }
}

/// JSON into `T` with the contract's codes: `invalid_json`, `parameter_unknown`,
/// `parameter_missing`, `parameter_invalid` (naming the parameter's path).
pub fn parse_json<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) { b"{}" } else { bytes };
    // serde takes a struct from an array too (`[]` as `NoParams`, fields by
    // position): a body is an object, as `/v1/openapi.json` says.
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(match serde_json::from_slice::<serde_json::Value>(bytes) {
            Ok(_) => ApiError::bad_request("parameter_invalid", "The request body must be a JSON object."),
            Err(e) => classify(".", &e),
        });
    }
    // Most bodies are valid: parse once without tracking the path (the tracked
    // parse was 2.5 % of a durable earn's server CPU), and parse again with
    // the path only to name the parameter of a failure. Both parses see the
    // same bytes, so they fail alike.
    if let Ok(value) = serde_json::from_slice(bytes) {
        return Ok(value);
    }
    let mut de = serde_json::Deserializer::from_slice(bytes);
    let value: T = serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        classify(&path, &inner)
    })?;
    de.end().map_err(|e| classify(".", &e))?;
    Ok(value)
}

/// `metadata.k` -> `metadata[k]`, the form the rest of the API names params in.
fn param_name(path: &str) -> String {
    if path == "." {
        return path.to_string();
    }
    let mut parts = path.split('.');
    let mut out = parts.next().unwrap_or_default().to_string();
    for p in parts {
        out.push('[');
        out.push_str(p);
        out.push(']');
    }
    out
}

fn classify(path: &str, e: &serde_json::Error) -> ApiError {
    let path = &param_name(path);
    let msg = e.to_string();
    if e.is_syntax() || e.is_eof() || e.is_io() {
        return ApiError::bad_request("invalid_json", format!("The request body is not valid JSON: {msg}"));
    }
    let nested = |field: &str| {
        if path == "." {
            field.to_string()
        } else {
            format!("{path}[{field}]")
        }
    };
    if let Some(field) = between_backticks(&msg, "unknown field `") {
        // The path already ends at the unknown field.
        return ApiError::parameter_unknown(if path == "." { field } else { path.as_str() });
    }
    if let Some(field) = between_backticks(&msg, "missing field `") {
        return ApiError::parameter_missing(&nested(field));
    }
    let message = strip_position(&msg);
    if path == "." {
        return ApiError::bad_request(
            "parameter_invalid",
            format!("The request body must be a JSON object: {message}"),
        );
    }
    ApiError::parameter_invalid(path, format!("Invalid {path}: {message}"))
}

fn between_backticks<'a>(msg: &'a str, prefix: &str) -> Option<&'a str> {
    let rest = &msg[msg.find(prefix)? + prefix.len()..];
    Some(&rest[..rest.find('`')?])
}

/// serde_json appends " at line L column C"; clients do not need it.
fn strip_position(msg: &str) -> &str {
    msg.find(" at line ").map_or(msg, |i| &msg[..i])
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Req {
        amount: i64,
        inner: Option<Inner>,
    }

    #[derive(Debug, Deserialize)]
    #[serde(deny_unknown_fields)]
    #[allow(dead_code)]
    struct Inner {
        x: u32,
    }

    fn err(body: &str) -> ApiError {
        parse_json::<Req>(body.as_bytes()).unwrap_err()
    }

    #[test]
    fn codes_and_params() {
        assert_eq!(err("{").code, "invalid_json");
        assert_eq!(err(r#"{"amount":1} x"#).code, "invalid_json");
        let e = err(r#"{"amount":1,"bogus":2}"#);
        assert_eq!((e.code, e.param.as_deref()), ("parameter_unknown", Some("bogus")));
        let e = err(r#"{"amount":1,"inner":{"x":1,"y":2}}"#);
        assert_eq!((e.code, e.param.as_deref()), ("parameter_unknown", Some("inner[y]")));
        let e = err(r#"{}"#);
        assert_eq!((e.code, e.param.as_deref()), ("parameter_missing", Some("amount")));
        let e = err(r#"{"amount":"12"}"#);
        assert_eq!((e.code, e.param.as_deref()), ("parameter_invalid", Some("amount")));
        let e = err(r#"{"amount":1.5}"#);
        assert_eq!(e.code, "parameter_invalid");
        assert_eq!(err("[1]").status, 400);
        assert_eq!(err("[1, null]").code, "parameter_invalid");
        assert_eq!(parse_json::<Inner>(b" [7]").unwrap_err().code, "parameter_invalid");
        assert_eq!(parse_json::<Inner>(b"[7").unwrap_err().code, "invalid_json");
        assert!(parse_json::<Req>(br#" {"amount": 3} "#).is_ok());
    }
}
