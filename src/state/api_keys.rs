//! Finding the API key a presented secret belongs to, and when each key was
//! last used.
//!
//! Keys are stored as the sha256 of their secrets (`domain::api_keys`), so
//! the lookup is a map from that hash to the key's id: hashing the presented
//! secret and one map lookup, whatever the number of keys. An attacker
//! cannot steer the hash, so the map's timing tells nothing about a stored
//! secret; the key found still compares its hashes in constant time
//! (`ApiKey::accepts`). The map holds each key's current hash and, during a
//! roll, its previous one; `apply_change` keeps it in step with the table.
//!
//! `last_used_at` lives here, in memory only: writing it to the WAL on every
//! request would turn each read into a durable write (docs/decisions.md, API keys).

use std::collections::HashMap;

use parking_lot::{Mutex, RwLock};

use super::State;
use crate::domain::api_keys::{secret_hash, ApiKey, Permissions, SecretHash};
use crate::domain::Id;

#[derive(Default)]
pub struct ApiKeyIndex {
    /// Hash of every accepted secret (current, and previous during a roll) -> key id.
    by_hash: RwLock<HashMap<SecretHash, Id>>,
    /// Unix second each key last authenticated a request, since this process started.
    last_used: Mutex<HashMap<Id, i64>>,
}

impl ApiKeyIndex {
    /// `key` replaces `previous` (its version before, if any): the hashes of
    /// the old version go, those of the new one (none when revoked) come in.
    pub(super) fn put(&self, previous: Option<&ApiKey>, key: &ApiKey) {
        let mut by_hash = self.by_hash.write();
        for hash in previous.into_iter().flat_map(ApiKey::hashes) {
            by_hash.remove(&hash);
        }
        for hash in key.hashes() {
            by_hash.insert(hash, key.id.clone());
        }
        if key.revoked {
            self.last_used.lock().remove(&key.id);
        }
    }

    /// When key `id` last authenticated a request (since this process started).
    pub fn last_used(&self, id: &str) -> Option<i64> {
        self.last_used.lock().get(id).copied()
    }

    fn touch(&self, id: &Id, now: i64) {
        let mut last_used = self.last_used.lock();
        match last_used.get_mut(id) {
            Some(at) => *at = (*at).max(now),
            None => {
                last_used.insert(id.clone(), now);
            }
        }
    }

    /// Hashes in the index (tests: a revoked or rolled key leaves none behind).
    #[cfg(test)]
    fn len(&self) -> usize {
        self.by_hash.read().len()
    }
}

impl State {
    /// The permissions of the API key whose secret is `secret`, if it is a
    /// live key's current secret or its previous one before that expires;
    /// marks the key used at `now`. The root key is not here (`http/auth.rs`).
    pub fn authenticate_api_key(&self, secret: &[u8], now: i64) -> Option<Permissions> {
        let hash = secret_hash(secret);
        let found = self.visible(|s| {
            let id = s.api_key_index.by_hash.read().get(&hash).cloned()?;
            s.api_keys.with(&id, |key| key.accepts(&hash, now).then_some((id.clone(), key.permissions))).flatten()
        });
        let (id, permissions) = found?;
        self.api_key_index.touch(&id, now);
        Some(permissions)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use crate::domain::api_keys::{new_secret, PreviousSecret};
    use crate::wal::{Change, Record};

    fn put(state: &State, lsn: u64, key: &ApiKey) {
        let record = Record { time: 1, idem: None, changes: vec![Change::PutApiKey(Arc::new(key.clone()))] };
        state.apply(lsn, record).unwrap();
    }

    #[test]
    fn a_secret_finds_its_key_by_hash_through_create_roll_and_revoke() {
        let state = State::new();
        let (secret, hash) = new_secret(Permissions::ReadOnly);
        let mut key = ApiKey {
            id: "key_1".into(),
            name: "reporting".into(),
            permissions: Permissions::ReadOnly,
            secret_hash: hash,
            previous: None,
            expires_at: None,
            revoked: false,
            created: 10,
        };
        put(&state, 1, &key);
        let (full_secret, full_hash) = new_secret(Permissions::Full);
        let full = ApiKey { id: "key_2".into(), permissions: Permissions::Full, secret_hash: full_hash, ..key.clone() };
        put(&state, 2, &full);

        assert_eq!(state.authenticate_api_key(secret.as_bytes(), 20), Some(Permissions::ReadOnly));
        assert_eq!(state.authenticate_api_key(full_secret.as_bytes(), 21), Some(Permissions::Full));
        assert_eq!(state.api_key_index.last_used("key_1"), Some(20));
        // Not a key: a near miss, the hash itself, the empty string.
        let mut near = secret.clone().into_bytes();
        *near.last_mut().unwrap() ^= 1;
        assert_eq!(state.authenticate_api_key(&near, 20), None);
        assert_eq!(state.authenticate_api_key(&hash, 20), None);
        assert_eq!(state.authenticate_api_key(b"", 20), None);
        assert_eq!(state.api_key_index.len(), 2);

        // A roll: both secrets work until the old one expires at 100.
        let (rolled, rolled_hash) = new_secret(Permissions::ReadOnly);
        key.previous = Some(PreviousSecret { hash: key.secret_hash, expires_at: 100 });
        key.secret_hash = rolled_hash;
        put(&state, 3, &key);
        assert_eq!(state.api_key_index.len(), 3);
        assert_eq!(state.authenticate_api_key(secret.as_bytes(), 99), Some(Permissions::ReadOnly));
        assert_eq!(state.authenticate_api_key(secret.as_bytes(), 100), None);
        assert_eq!(state.authenticate_api_key(rolled.as_bytes(), 100), Some(Permissions::ReadOnly));
        // Rolling again drops the first secret from the index.
        let (third, third_hash) = new_secret(Permissions::ReadOnly);
        key.previous = Some(PreviousSecret { hash: key.secret_hash, expires_at: 200 });
        key.secret_hash = third_hash;
        put(&state, 4, &key);
        assert_eq!(state.api_key_index.len(), 3);
        assert_eq!(state.authenticate_api_key(secret.as_bytes(), 99), None);
        assert_eq!(state.authenticate_api_key(third.as_bytes(), 150), Some(Permissions::ReadOnly));

        // Expiry and revocation.
        key.expires_at = Some(300);
        put(&state, 5, &key);
        assert_eq!(state.authenticate_api_key(third.as_bytes(), 300), None);
        key.revoked = true;
        put(&state, 6, &key);
        assert_eq!(state.authenticate_api_key(third.as_bytes(), 150), None);
        assert_eq!(state.api_key_index.len(), 1, "only key_2's hash is left");
        assert_eq!(state.api_key_index.last_used("key_1"), None);
        assert_eq!(state.authenticate_api_key(full_secret.as_bytes(), 400), Some(Permissions::Full));
    }
}
