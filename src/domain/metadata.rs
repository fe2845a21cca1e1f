//! `metadata`: a bounded string-to-string map on every object.
//!
//! Updates merge like Stripe's: a key set to `""` is removed, other keys are
//! set, keys not named stay.
//!
//! Most objects have none, and every customer and account is in memory for
//! ever, so an empty map takes 8 bytes and no allocation (a `BTreeMap` is 24
//! bytes even when empty; docs/performance.md, "Scale"). It reads as the map
//! (`Deref`) and is written exactly as the map, in JSON and in the WAL.

use std::collections::{btree_map, BTreeMap};
use std::fmt;
use std::ops::Deref;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::config::{METADATA_KEYS_MAX, METADATA_KEY_CHARS_MAX, METADATA_VALUE_CHARS_MAX};
use crate::error::ApiError;

/// An object's metadata: `None` when empty, so an empty one is never boxed.
/// The box is what makes it 8 bytes: a `BTreeMap` itself is 24.
#[derive(Clone, Default, PartialEq, Eq)]
#[allow(clippy::box_collection)]
pub struct Metadata(Option<Box<BTreeMap<String, String>>>);

static EMPTY: BTreeMap<String, String> = BTreeMap::new();

impl Metadata {
    pub const fn new() -> Self {
        Metadata(None)
    }

    pub fn insert(&mut self, key: String, value: String) -> Option<String> {
        self.0.get_or_insert_with(Box::default).insert(key, value)
    }

    pub fn remove(&mut self, key: &str) -> Option<String> {
        let map = self.0.as_mut()?;
        let removed = map.remove(key);
        if map.is_empty() {
            self.0 = None;
        }
        removed
    }
}

impl Deref for Metadata {
    type Target = BTreeMap<String, String>;

    fn deref(&self) -> &Self::Target {
        self.0.as_deref().unwrap_or(&EMPTY)
    }
}

impl From<BTreeMap<String, String>> for Metadata {
    fn from(map: BTreeMap<String, String>) -> Self {
        Metadata((!map.is_empty()).then(|| Box::new(map)))
    }
}

impl<const N: usize> From<[(String, String); N]> for Metadata {
    fn from(pairs: [(String, String); N]) -> Self {
        BTreeMap::from(pairs).into()
    }
}

impl FromIterator<(String, String)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (String, String)>>(pairs: I) -> Self {
        BTreeMap::from_iter(pairs).into()
    }
}

impl IntoIterator for Metadata {
    type Item = (String, String);
    type IntoIter = btree_map::IntoIter<String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.0.map(|map| *map).unwrap_or_default().into_iter()
    }
}

impl<'a> IntoIterator for &'a Metadata {
    type Item = (&'a String, &'a String);
    type IntoIter = btree_map::Iter<'a, String, String>;

    fn into_iter(self) -> Self::IntoIter {
        self.deref().iter()
    }
}

impl fmt::Debug for Metadata {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.deref().fmt(f)
    }
}

impl Serialize for Metadata {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.deref().serialize(serializer)
    }
}

impl<'de> Deserialize<'de> for Metadata {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        BTreeMap::deserialize(deserializer).map(Metadata::from)
    }
}

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

    /// The compact form is invisible: the same bytes as the map in the WAL's
    /// encoding and in JSON, both ways, and an emptied map is the empty one.
    #[test]
    fn it_is_written_and_read_as_the_map() {
        let config = bincode::config::standard();
        for pairs in [&[][..], &[("a", "1"), ("b", "2")][..]] {
            let map: BTreeMap<String, String> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
            let compact = md(pairs);
            let bytes = bincode::serde::encode_to_vec(&compact, config).unwrap();
            assert_eq!(bytes, bincode::serde::encode_to_vec(&map, config).unwrap());
            let (back, _): (Metadata, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
            assert_eq!(back, compact);
            let json = serde_json::to_string(&compact).unwrap();
            assert_eq!(json, serde_json::to_string(&map).unwrap());
            assert_eq!(serde_json::from_str::<Metadata>(&json).unwrap(), compact);
        }
        assert_eq!(std::mem::size_of::<Metadata>(), 8);
        let mut one = md(&[("a", "1")]);
        assert_eq!(one.remove("a").as_deref(), Some("1"));
        assert_eq!(one, Metadata::new(), "emptied: nothing boxed");
        assert_eq!(serde_json::from_str::<Metadata>("{}").unwrap(), Metadata::new());
        one.insert("b".into(), "2".into());
        assert_eq!(one.get("b").map(String::as_str), Some("2"));
    }
}
