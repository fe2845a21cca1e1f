//! Earning rules and the earning maths.
//!
//! A completed payment earns, for each active rule of its currency whose
//! `min_amount <= amount_charged`, `floor(amount_charged * points / per_amount)`,
//! summed. The sum is exact (128-bit) and then capped at
//! `POINTS_PER_PAYMENT_MAX`; rule fields are bounded so no input overflows.

use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::Id;

/// Bounds of a rule's `points` (per `per_amount`).
pub const RULE_POINTS_MAX: i64 = 1_000_000;
/// Most points one payment can earn; more is cut to this (documented in docs/decisions.md).
pub const POINTS_PER_PAYMENT_MAX: i64 = 1_000_000_000_000_000;
/// Most earning rules the program may hold (active or not).
pub const EARNING_RULES_MAX: usize = 1000;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EarningRule {
    pub id: Id,
    pub currency: Currency,
    pub points: i64,
    pub per_amount: i64,
    pub min_amount: i64,
    pub active: bool,
    pub created: i64,
}

#[derive(Serialize)]
pub struct EarningRuleView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub currency: &'a str,
    pub points: i64,
    pub per_amount: i64,
    pub min_amount: i64,
    pub active: bool,
    pub created: i64,
}

impl EarningRule {
    pub fn view(&self) -> EarningRuleView<'_> {
        EarningRuleView {
            id: &self.id,
            object: "earning_rule",
            currency: &self.currency,
            points: self.points,
            per_amount: self.per_amount,
            min_amount: self.min_amount,
            active: self.active,
            created: self.created,
        }
    }

    /// What this rule alone gives for `amount_charged`.
    pub fn points_for(&self, amount_charged: i64) -> i128 {
        if !self.active || amount_charged < self.min_amount || amount_charged <= 0 || self.per_amount <= 0 {
            return 0;
        }
        (amount_charged as i128 * self.points as i128) / self.per_amount as i128
    }
}

/// Points earned by a payment of `amount_charged` under `rules` (all of its currency).
pub fn points_earned(amount_charged: i64, rules: &[EarningRule]) -> i64 {
    let total: i128 = rules.iter().map(|r| r.points_for(amount_charged)).sum();
    total.clamp(0, POINTS_PER_PAYMENT_MAX as i128) as i64
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::AMOUNT_MAX;

    fn rule(points: i64, per_amount: i64, min_amount: i64) -> EarningRule {
        EarningRule {
            id: "erl_t".into(),
            currency: "eur".into(),
            points,
            per_amount,
            min_amount,
            active: true,
            created: 0,
        }
    }

    #[test]
    fn one_point_per_euro() {
        assert_eq!(points_earned(4200, &[rule(1, 100, 0)]), 42);
        assert_eq!(points_earned(4299, &[rule(1, 100, 0)]), 42, "floor");
        assert_eq!(points_earned(99, &[rule(1, 100, 0)]), 0);
    }

    #[test]
    fn rules_sum_and_min_amount_and_active() {
        let mut off = rule(100, 1, 0);
        off.active = false;
        let rules = [rule(1, 100, 0), rule(5, 1000, 5000), off];
        assert_eq!(points_earned(4200, &rules), 42);
        assert_eq!(points_earned(5000, &rules), 50 + 25);
    }

    #[test]
    fn no_overflow_at_the_limits() {
        let rules: Vec<EarningRule> = (0..EARNING_RULES_MAX).map(|_| rule(RULE_POINTS_MAX, 1, 0)).collect();
        assert_eq!(points_earned(AMOUNT_MAX, &rules), POINTS_PER_PAYMENT_MAX);
        assert_eq!(points_earned(AMOUNT_MAX, &[rule(1, AMOUNT_MAX, 0)]), 1);
        assert_eq!(points_earned(0, &rules), 0);
    }
}
