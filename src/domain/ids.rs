//! Object ids: a kind prefix and a base62 tail, the time it was made then
//! random digits (`loy_0Y5kT9b...`).
//!
//! Ids are `CompactString`s: up to 24 bytes live inline, so an id costs no
//! heap allocation and a million accounts stay compact.

use compact_str::CompactString;
use rand::Rng;

use crate::config::ID_BYTES_MAX;

/// An object id as stored and rendered.
pub type Id = CompactString;

/// Time digits at the start of an ordered id's tail: 62^7 milliseconds
/// reach past the year 2080.
pub const ID_TIME_CHARS: usize = 7;
/// Random digits after them: 12 base62 digits are ~71 bits, drawn anew
/// for every id made in the same millisecond.
pub const ID_RANDOM_CHARS: usize = 12;
/// Characters after the prefix of a generated id (24 bytes with the longest
/// prefix, `cust_`: still inline in a `CompactString`).
pub const ID_TAIL_CHARS: usize = ID_TIME_CHARS + ID_RANDOM_CHARS;

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

    /// A fresh id of this kind: its tail starts with the time in
    /// milliseconds (`ID_TIME_CHARS` base62 digits, most significant first,
    /// so ids of a kind sort by the time they were made), then
    /// `ID_RANDOM_CHARS` random digits.
    ///
    /// Time first keeps history's keys (table, then id) in creation order:
    /// each table's writes append at one end of the engine's key space, and
    /// a snapshot reading cold objects in creation order reads history's
    /// blocks one after another instead of one block per object
    /// (docs/performance.md, "Time-ordered ids"). The time is the machine's,
    /// not the ledger's clock: it orders keys and means nothing else.
    ///
    /// Each random u64 gives 8 base62 digits (62^8 < 2^48, so they are
    /// uniform to within 2^-16): two draws from the generator per id instead
    /// of one per character.
    pub fn generate(self) -> Id {
        let millis = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0);
        let mut id = CompactString::new(self.prefix());
        let mut digits = [0u8; ID_TIME_CHARS];
        let mut t = millis;
        for d in digits.iter_mut().rev() {
            *d = BASE62[(t % 62) as usize];
            t /= 62;
        }
        for d in digits {
            id.push(d as char);
        }
        let mut rng = rand::thread_rng();
        let mut bits = 0u64;
        for i in 0..ID_RANDOM_CHARS {
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
    fn ids_sort_by_the_time_they_were_made() {
        let mut ids = Vec::new();
        for _ in 0..5 {
            ids.push(IdKind::Event.generate());
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        // The longest prefix still fits inline.
        assert!(!IdKind::Customer.generate().is_heap_allocated());
    }

    #[test]
    fn every_random_position_of_the_tail_uses_the_whole_alphabet_evenly() {
        const IDS: usize = 6200;
        let mut counts = [[0usize; 62]; ID_RANDOM_CHARS];
        for _ in 0..IDS {
            let id = IdKind::Event.generate();
            for (pos, b) in id.as_bytes()[4 + ID_TIME_CHARS..].iter().enumerate() {
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
