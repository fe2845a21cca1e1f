//! Object ids: a kind prefix and a random base62 tail (`loy_3kT9...`).
//!
//! Ids are `CompactString`s: up to 24 bytes live inline, so an id costs no
//! heap allocation and a million accounts stay compact.

use compact_str::CompactString;
use rand::Rng;

use crate::config::ID_BYTES_MAX;

/// An object id as stored and rendered.
pub type Id = CompactString;

/// Random characters after the prefix: 16 base62 characters are ~95 bits.
pub const ID_TAIL_CHARS: usize = 16;

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// Every kind of object with its id prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IdKind {
    Customer,
    Account,
    Payment,
    Refund,
    PointsTransaction,
    Redemption,
    Reward,
    EarningRule,
    Event,
    WebhookEndpoint,
    WebhookDelivery,
    ApiKey,
    Lot,
}

impl IdKind {
    pub const fn prefix(self) -> &'static str {
        match self {
            IdKind::Customer => "cust_",
            IdKind::Account => "loy_",
            IdKind::Payment => "pay_",
            IdKind::Refund => "re_",
            IdKind::PointsTransaction => "ptx_",
            IdKind::Redemption => "rdm_",
            IdKind::Reward => "rwd_",
            IdKind::EarningRule => "erl_",
            IdKind::Event => "evt_",
            IdKind::WebhookEndpoint => "we_",
            IdKind::WebhookDelivery => "whd_",
            IdKind::ApiKey => "key_",
            IdKind::Lot => "lot_",
        }
    }

    /// A fresh random id of this kind.
    ///
    /// Each random u64 gives 8 base62 digits (62^8 < 2^48, so they are
    /// uniform to within 2^-16): two draws from the generator per id instead
    /// of one per character.
    pub fn generate(self) -> Id {
        let mut rng = rand::thread_rng();
        let mut id = CompactString::new(self.prefix());
        let mut bits = 0u64;
        for i in 0..ID_TAIL_CHARS {
            if i % 8 == 0 {
                bits = rng.gen();
            }
            id.push(BASE62[(bits % BASE62.len() as u64) as usize] as char);
            bits /= BASE62.len() as u64;
        }
        id
    }

    /// `accepts` as a regular expression (with `minLength`/`maxLength` beside
    /// it in `/v1/openapi.json`: more than the prefix, at most `ID_BYTES_MAX`).
    pub fn pattern(self) -> String {
        format!("^{}[A-Za-z0-9_]+$", self.prefix())
    }

    /// Whether `s` could be an id of this kind: the prefix, then 1 or more
    /// `[A-Za-z0-9_]`, and not longer than `ID_BYTES_MAX`. Lookups of anything
    /// else fail fast without touching state.
    pub fn accepts(self, s: &str) -> bool {
        s.len() <= ID_BYTES_MAX
            && s.len() > self.prefix().len()
            && s.starts_with(self.prefix())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_')
    }
}

/// A random secret of `len` base62 characters (secret keys, API keys, webhook secrets).
pub fn random_secret(prefix: &str, len: usize) -> String {
    let mut rng = rand::rngs::OsRng;
    let mut s = String::with_capacity(prefix.len() + len);
    s.push_str(prefix);
    for _ in 0..len {
        s.push(BASE62[rng.gen_range(0..BASE62.len())] as char);
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn generated_ids_have_prefix_and_fit_inline() {
        let id = IdKind::Customer.generate();
        assert!(id.starts_with("cust_"));
        assert_eq!(id.len(), 5 + ID_TAIL_CHARS);
        assert!(!id.is_heap_allocated());
        assert!(IdKind::Customer.accepts(&id));
        assert_ne!(id, IdKind::Customer.generate());
    }

    #[test]
    fn every_position_of_the_tail_uses_the_whole_alphabet_evenly() {
        const IDS: usize = 6200;
        let mut counts = [[0usize; 62]; ID_TAIL_CHARS];
        for _ in 0..IDS {
            let id = IdKind::Event.generate();
            for (pos, b) in id.as_bytes()[4..].iter().enumerate() {
                counts[pos][BASE62.iter().position(|c| c == b).unwrap()] += 1;
            }
        }
        // 100 expected per character and position; a stuck or missing digit is far outside this.
        for (pos, row) in counts.iter().enumerate() {
            for (c, &n) in row.iter().enumerate() {
                assert!((40..=180).contains(&n), "position {pos}: {:?} seen {n} times", BASE62[c] as char);
            }
        }
    }

    #[test]
    fn accepts_rejects_wrong_shapes() {
        assert!(!IdKind::Account.accepts("cust_abc"));
        assert!(!IdKind::Account.accepts("loy_"));
        assert!(!IdKind::Account.accepts("loy_a-b"));
        assert!(!IdKind::Account.accepts(&format!("loy_{}", "a".repeat(200))));
        assert!(IdKind::Reward.accepts("rwd_5eur_off"));
    }
}
