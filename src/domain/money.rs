//! Money: amounts in minor units and lowercase ISO 4217 currency codes.

use crate::config::AMOUNT_MAX;
use crate::error::ApiError;

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

/// A currency: three lowercase ASCII letters (`eur`, `usd`, `jpy`).
pub fn currency(param: &str, value: &str) -> Result<String, ApiError> {
    if value.len() == 3 && value.bytes().all(|b| b.is_ascii_lowercase()) {
        Ok(value.to_string())
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
}
