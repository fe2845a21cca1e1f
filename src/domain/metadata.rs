//! `metadata`: a bounded string-to-string map on every object.
//!
//! Updates merge like Stripe's: a key set to `""` is removed, other keys are
//! set, keys not named stay.

use std::collections::BTreeMap;

use crate::config::{METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX, METADATA_VALUE_CHARS_MAX};
use crate::error::ApiError;

pub type Metadata = BTreeMap<String, String>;

/// Checks a metadata map given in a request (before any merge).
pub fn validate(md: &Metadata) -> Result<(), ApiError> {
    if md.len() > METADATA_KEYS_MAX {
        return Err(ApiError::parameter_invalid(
            "metadata",
            format!("metadata may have at most {METADATA_KEYS_MAX} keys."),
        ));
    }
    for (k, v) in md {
        if k.is_empty() || k.chars().count() > METADATA_KEY_CHARS_MAX {
            return Err(ApiError::parameter_invalid(
                &format!("metadata[{}]", truncate(k)),
                format!("metadata keys must be 1 to {METADATA_KEY_CHARS_MAX} characters."),
            ));
        }
        if v.chars().count() > METADATA_VALUE_CHARS_MAX {
            return Err(ApiError::parameter_invalid(
                &format!("metadata[{k}]"),
                format!("metadata values must be at most {METADATA_VALUE_CHARS_MAX} characters."),
            ));
        }
    }
    Ok(())
}

/// A new object's metadata: empty values are simply dropped.
pub fn initial(md: Option<Metadata>) -> Result<Metadata, ApiError> {
    let md = md.unwrap_or_default();
    validate(&md)?;
    Ok(md.into_iter().filter(|(_, v)| !v.is_empty()).collect())
}

/// `current` updated by `update`; the result must still fit the limits.
pub fn merge(current: &Metadata, update: Metadata) -> Result<Metadata, ApiError> {
    validate(&update)?;
    let mut out = current.clone();
    for (k, v) in update {
        if v.is_empty() {
            out.remove(&k);
        } else {
            out.insert(k, v);
        }
    }
    if out.len() > METADATA_KEYS_MAX {
        return Err(ApiError::parameter_invalid(
            "metadata",
            format!("metadata may have at most {METADATA_KEYS_MAX} keys."),
        ));
    }
    Ok(out)
}

fn truncate(s: &str) -> String {
    s.chars().take(METADATA_KEY_CHARS_MAX).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn md(pairs: &[(&str, &str)]) -> Metadata {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn merge_sets_and_unsets() {
        let cur = md(&[("a", "1"), ("b", "2")]);
        let out = merge(&cur, md(&[("a", ""), ("c", "3")])).unwrap();
        assert_eq!(out, md(&[("b", "2"), ("c", "3")]));
    }

    #[test]
    fn limits() {
        let many: Metadata = (0..51).map(|i| (format!("k{i}"), "v".into())).collect();
        assert_eq!(validate(&many).unwrap_err().code, "parameter_invalid");
        assert!(validate(&md(&[(&"k".repeat(41), "v")])).is_err());
        assert!(validate(&md(&[("k", &"v".repeat(501))])).is_err());
        assert!(validate(&md(&[("", "v")])).is_err());
        assert!(validate(&md(&[(&"k".repeat(40), &"v".repeat(500))])).is_ok());
    }
}
