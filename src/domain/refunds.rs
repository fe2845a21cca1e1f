//! Refunds and the clawback maths.
//!
//! After refunds totalling `R` of `amount_charged` `C` on a payment that earned
//! `E`, the total due back is `floor(E * R / C)`. Each refund claws back the
//! newly due part, so the parts sum to exactly `E` at a full refund and never
//! exceed it.

use serde::{Deserialize, Serialize};

use super::points::POINTS_BALANCE_MIN;
use super::Id;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Refund {
    pub id: Id,
    pub payment: Id,
    pub amount: i64,
    /// Points actually taken back (may be less than due when the balance caps it).
    pub points_clawed_back: i64,
    /// The `clawback` points transaction, if any points were taken.
    pub clawback: Option<Id>,
    pub created: i64,
}

#[derive(Serialize)]
pub struct RefundView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub payment: &'a Id,
    pub amount: i64,
    pub points_clawed_back: i64,
    pub clawback: &'a Option<Id>,
    pub created: i64,
}

impl Refund {
    pub fn view(&self) -> RefundView<'_> {
        RefundView {
            id: &self.id,
            object: "refund",
            payment: &self.payment,
            amount: self.amount,
            points_clawed_back: self.points_clawed_back,
            clawback: &self.clawback,
            created: self.created,
        }
    }
}

/// Points newly due back when refunds on a payment go from `refunded_before`
/// to `refunded_after` (of `charged`, on a payment that earned `earned`).
pub fn clawback_due(earned: i64, charged: i64, refunded_before: i64, refunded_after: i64) -> i64 {
    if earned <= 0 || charged <= 0 {
        return 0;
    }
    let total_due = |refunded: i64| (earned as i128 * refunded.clamp(0, charged) as i128) / charged as i128;
    (total_due(refunded_after) - total_due(refunded_before)).max(0) as i64
}

/// What a clawback of `due` takes from `balance`: when negative balances are
/// allowed, at most down to `POINTS_BALANCE_MIN`, else at most the
/// (non-negative) balance, down to zero; the rest is forgiven either way.
/// Never negative, and `balance - taken` never overflows.
pub fn clawback_taken(due: i64, balance: i64, allow_negative: bool) -> i64 {
    let floor = if allow_negative { POINTS_BALANCE_MIN } else { 0 };
    // The room above the floor, saturating (a balance below the floor,
    // left by an older version, has none).
    let room = balance.saturating_sub(floor).max(0);
    due.clamp(0, room)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_seed_table() {
        assert_eq!(clawback_due(42, 4200, 0, 4200), 42);
        assert_eq!(clawback_due(42, 4200, 0, 2100), 21);
    }

    #[test]
    fn four_quarters_claw_10_11_10_11() {
        let parts: Vec<i64> = (0..4).map(|i| clawback_due(42, 4200, 1050 * i, 1050 * (i + 1))).collect();
        assert_eq!(parts, vec![10, 11, 10, 11]);
    }

    #[test]
    fn parts_never_exceed_and_sum_to_earned() {
        let mut seed = 0x1234_5678_9abc_def0u64;
        let mut next = move |n: u64| {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed % n
        };
        for _ in 0..2000 {
            let charged = 1 + next(1_000_000) as i64;
            let earned = next(10_000_000) as i64;
            let mut refunded = 0;
            let mut total = 0;
            while refunded < charged {
                let amount = 1 + next((charged - refunded) as u64) as i64;
                let part = clawback_due(earned, charged, refunded, refunded + amount);
                assert!(part >= 0);
                total += part;
                refunded += amount;
                assert!(total <= earned);
            }
            assert_eq!(total, earned);
        }
        assert_eq!(clawback_due(i64::MAX / 2, 99_999_999_999, 0, 99_999_999_999), i64::MAX / 2);
    }

    #[test]
    fn the_cap_forgives() {
        assert_eq!(clawback_taken(30, 10, true), 30);
        assert_eq!(clawback_taken(30, 10, false), 10);
        assert_eq!(clawback_taken(30, -5, false), 0);
    }

    #[test]
    fn the_floor_forgives_with_negative_balances_allowed() {
        use crate::domain::points::POINTS_BALANCE_MAX;
        assert_eq!(clawback_taken(30, POINTS_BALANCE_MIN + 10, true), 10);
        assert_eq!(clawback_taken(30, POINTS_BALANCE_MIN, true), 0);
        assert_eq!(clawback_taken(30, i64::MIN, true), 0, "below the floor (older versions): nothing more");
        assert_eq!(clawback_taken(i64::MAX, POINTS_BALANCE_MAX, true), POINTS_BALANCE_MAX - POINTS_BALANCE_MIN);
        assert_eq!(clawback_taken(i64::MAX, i64::MAX, false), i64::MAX);
        assert_eq!(clawback_taken(-5, 10, true), 0, "never negative");
        for (due, balance) in [(1_000_000_000_000_000, -3_999_999_999_999_999_999), (7, 0), (i64::MAX, 1)] {
            let taken = clawback_taken(due, balance, true);
            assert!(balance.checked_sub(taken).is_some_and(|after| after >= POINTS_BALANCE_MIN));
        }
    }
}
