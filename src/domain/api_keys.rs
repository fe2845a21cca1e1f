//! API keys besides the root key: full or read-only, each stored as the
//! sha256 of its secret (the secret itself is shown once, in the answer that
//! made it, and never kept), with the previous secret's hash while a roll
//! lets it keep working for a while.
//!
//! A key's secret is `sk_` (full) or `rk_` (read-only) and
//! `API_KEY_SECRET_CHARS` random base62 characters: about 190 bits, so a
//! plain sha256 is enough (nothing to guess, nothing to stretch), and the
//! hash can be the lookup key (`state::api_keys`).

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ids::random_secret;
use super::Id;
use crate::config::API_KEY_SECRET_CHARS;

/// What a key may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Permissions {
    /// Everything the root key may do, managing keys included.
    Full,
    /// `GET` of everything but `/v1/api_keys*`.
    ReadOnly,
}

impl Permissions {
    pub fn as_str(self) -> &'static str {
        match self {
            Permissions::Full => "full",
            Permissions::ReadOnly => "read_only",
        }
    }

    pub fn parse(s: &str) -> Option<Permissions> {
        match s {
            "full" => Some(Permissions::Full),
            "read_only" => Some(Permissions::ReadOnly),
            _ => None,
        }
    }

    /// The prefix of this kind of key's secrets.
    pub fn secret_prefix(self) -> &'static str {
        match self {
            Permissions::Full => "sk_",
            Permissions::ReadOnly => "rk_",
        }
    }
}

/// sha256 of a secret: what is stored and looked up instead of the secret.
pub type SecretHash = [u8; 32];

pub fn secret_hash(secret: &[u8]) -> SecretHash {
    Sha256::digest(secret).into()
}

/// A fresh secret for a key of `permissions`, with its hash.
pub fn new_secret(permissions: Permissions) -> (String, SecretHash) {
    let secret = random_secret(permissions.secret_prefix(), API_KEY_SECRET_CHARS);
    let hash = secret_hash(secret.as_bytes());
    (secret, hash)
}

/// The secret a roll replaced, still accepted before `expires_at`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub hash: SecretHash,
    /// Unix seconds; accepted while `now < expires_at`.
    pub expires_at: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ApiKey {
    pub id: Id,
    pub name: String,
    pub permissions: Permissions,
    /// sha256 of the current secret.
    pub secret_hash: SecretHash,
    /// The secret the last roll replaced, while it may still be used.
    pub previous: Option<PreviousSecret>,
    /// Unix seconds after which the key stops working; `None`: never.
    pub expires_at: Option<i64>,
    /// Revoked (`DELETE`): refused from then on, and no longer listed.
    pub revoked: bool,
    pub created: i64,
}

impl ApiKey {
    /// Whether the key works at `now` (not revoked, not past `expires_at`).
    pub fn is_live(&self, now: i64) -> bool {
        !self.revoked && self.expires_at.is_none_or(|at| now < at)
    }

    /// Whether `hash` is the hash of a secret of this key accepted at `now`:
    /// the current one, or the previous one before it expires. Both hashes
    /// are compared in constant time.
    pub fn accepts(&self, hash: &SecretHash, now: i64) -> bool {
        use subtle::ConstantTimeEq;
        if !self.is_live(now) {
            return false;
        }
        let current = bool::from(self.secret_hash.ct_eq(hash));
        let previous = self.previous.is_some_and(|p| now < p.expires_at && bool::from(p.hash.ct_eq(hash)));
        current | previous
    }

    /// The hashes the lookup index keeps for this version of the key.
    pub fn hashes(&self) -> impl Iterator<Item = SecretHash> + '_ {
        let keep = !self.revoked;
        std::iter::once(self.secret_hash).chain(self.previous.map(|p| p.hash)).filter(move |_| keep)
    }

    /// The JSON view: `secret` only in the answers that made it (create, roll).
    pub fn view(&self, secret: Option<&str>, last_used_at: Option<i64>) -> serde_json::Value {
        let mut v = serde_json::json!({
            "id": self.id, "object": "api_key", "name": self.name,
            "permissions": self.permissions.as_str(),
        });
        if let Some(secret) = secret {
            v["secret"] = serde_json::Value::String(secret.to_string());
        }
        v["created"] = self.created.into();
        v["expires_at"] = self.expires_at.into();
        v["last_used_at"] = last_used_at.into();
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(secret: &str) -> ApiKey {
        ApiKey {
            id: "key_1".into(),
            name: "ci".into(),
            permissions: Permissions::ReadOnly,
            secret_hash: secret_hash(secret.as_bytes()),
            previous: None,
            expires_at: None,
            revoked: false,
            created: 100,
        }
    }

    #[test]
    fn secrets_are_prefixed_random_and_only_their_hash_matches() {
        let (a, ha) = new_secret(Permissions::Full);
        let (b, hb) = new_secret(Permissions::ReadOnly);
        assert!(a.starts_with("sk_") && b.starts_with("rk_"));
        assert_eq!(a.len(), 3 + API_KEY_SECRET_CHARS);
        assert_ne!(ha, hb);
        assert_eq!(ha, secret_hash(a.as_bytes()));
    }

    #[test]
    fn a_key_accepts_its_secret_and_the_rolled_one_until_it_expires() {
        let mut k = key("rk_old");
        assert!(k.accepts(&secret_hash(b"rk_old"), 100));
        assert!(!k.accepts(&secret_hash(b"rk_other"), 100));
        k.previous = Some(PreviousSecret { hash: k.secret_hash, expires_at: 160 });
        k.secret_hash = secret_hash(b"rk_new");
        assert!(k.accepts(&secret_hash(b"rk_new"), 159));
        assert!(k.accepts(&secret_hash(b"rk_old"), 159));
        assert!(!k.accepts(&secret_hash(b"rk_old"), 160));
        assert_eq!(k.hashes().count(), 2);
        k.expires_at = Some(200);
        assert!(k.accepts(&secret_hash(b"rk_new"), 199));
        assert!(!k.accepts(&secret_hash(b"rk_new"), 200));
        k.expires_at = None;
        k.revoked = true;
        assert!(!k.accepts(&secret_hash(b"rk_new"), 100));
        assert_eq!(k.hashes().count(), 0);
    }

    #[test]
    fn the_view_shows_the_secret_only_when_given() {
        let k = key("rk_x");
        let v = k.view(None, Some(5));
        assert!(v.get("secret").is_none());
        assert_eq!((v["object"].as_str(), v["permissions"].as_str()), (Some("api_key"), Some("read_only")));
        assert_eq!((v["last_used_at"].as_i64(), v["expires_at"].is_null()), (Some(5), true));
        assert_eq!(k.view(Some("rk_x"), None)["secret"], "rk_x");
        assert!(!v.to_string().contains("hash"));
    }
}
