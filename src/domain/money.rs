//! Money: amounts in minor units and lowercase ISO 4217 currency codes.

use compact_str::CompactString;

use crate::config::AMOUNT_MAX;
use crate::error::ApiError;

/// A currency code as stored: three bytes inline, so a payment or a points
/// transaction holds its currency without a heap allocation of its own.
/// Written like a `String` (bincode and JSON).
pub type Currency = CompactString;

/// `amount` must be in `1..=AMOUNT_MAX` minor units.
pub fn amount(param: &str, value: i64) -> Result<i64, ApiError> {
    if (1..=AMOUNT_MAX).contains(&value) {
        Ok(value)
    } else {
        Err(ApiError::parameter_invalid(
            param,
            format!("{param} must be an integer from 1 to {AMOUNT_MAX} (minor units)."),
        ))
    }
}

/// `currency` as a regular expression, for `/v1/openapi.json`.
pub const CURRENCY_PATTERN: &str = "^[a-z]{3}$";

/// A currency: three lowercase ASCII letters (`eur`, `usd`, `jpy`).
pub fn currency(param: &str, value: &str) -> Result<Currency, ApiError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(Currency::from(value))
    } else {
        Err(ApiError::parameter_invalid(param, format!("{param} must be a lowercase ISO 4217 code such as 'eur'.")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bounds() {
        assert!(amount("amount", 0).is_err());
        assert!(amount("amount", -5).is_err());
        assert!(amount("amount", AMOUNT_MAX + 1).is_err());
        assert_eq!(amount("amount", AMOUNT_MAX), Ok(AMOUNT_MAX));
        assert!(currency("currency", "EUR").is_err());
        assert!(currency("currency", "euro").is_err());
        assert_eq!(currency("currency", "jpy").unwrap(), "jpy");
    }

    /// WAL records and snapshots written when currencies were `String`s
    /// must read the same: both are a length and the bytes, in bincode and JSON.
    #[test]
    fn a_currency_is_written_like_a_string() {
        let config = bincode::config::standard();
        let as_string = bincode::serde::encode_to_vec("eur".to_string(), config).unwrap();
        let as_currency = bincode::serde::encode_to_vec(Currency::from("eur"), config).unwrap();
        assert_eq!(as_currency, as_string);
        let (back, _): (Currency, usize) = bincode::serde::decode_from_slice(&as_string, config).unwrap();
        assert_eq!(back, "eur");
        assert_eq!(serde_json::to_string(&Currency::from("eur")).unwrap(), "\"eur\"");
    }
}
