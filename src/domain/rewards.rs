//! Rewards: what a member can spend points on (a discount at checkout).

use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::Id;

/// Longest client-chosen tail after `rwd_`.
pub const REWARD_ID_TAIL_CHARS_MAX: usize = 60;
/// Most points a reward may cost.
pub const REWARD_POINTS_MAX: i64 = 1_000_000_000_000_000;
/// Most rewards the program may hold.
pub const REWARDS_MAX: usize = 10_000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reward {
    pub id: Id,
    pub name: String,
    pub points: i64,
    pub discount_amount: i64,
    pub discount_currency: Currency,
    pub active: bool,
    pub created: i64,
}

/// `valid_client_id` as a regular expression, for `/v1/openapi.json`.
pub fn client_id_pattern() -> String {
    format!("^rwd_[a-z0-9_]{{1,{REWARD_ID_TAIL_CHARS_MAX}}}$")
}

/// Whether `id` is a valid client-chosen reward id: `rwd_` + `[a-z0-9_]{1,60}`.
pub fn valid_client_id(id: &str) -> bool {
    id.strip_prefix("rwd_").is_some_and(|tail| {
        (1..=REWARD_ID_TAIL_CHARS_MAX).contains(&tail.len())
            && tail.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
    })
}

#[derive(Serialize)]
pub struct DiscountView<'a> {
    pub amount: i64,
    pub currency: &'a str,
}

#[derive(Serialize)]
pub struct RewardView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub name: &'a str,
    pub points: i64,
    pub discount: DiscountView<'a>,
    pub active: bool,
    pub created: i64,
}

impl Reward {
    pub fn view(&self) -> RewardView<'_> {
        RewardView {
            id: &self.id,
            object: "reward",
            name: &self.name,
            points: self.points,
            discount: DiscountView { amount: self.discount_amount, currency: &self.discount_currency },
            active: self.active,
            created: self.created,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_ids() {
        assert!(valid_client_id("rwd_5eur_off"));
        assert!(!valid_client_id("rwd_"));
        assert!(!valid_client_id("rwd_5EUR"));
        assert!(!valid_client_id("rwd_a-b"));
        assert!(!valid_client_id(&format!("rwd_{}", "a".repeat(61))));
        assert!(valid_client_id(&format!("rwd_{}", "a".repeat(60))));
    }
}
