//! The loyalty program: settings that apply to every account.

use serde::{Deserialize, Serialize};

use super::money::Currency;

/// Default `redemption_ttl_seconds` (30 minutes, as the product page says).
pub const REDEMPTION_TTL_SECONDS_DEFAULT: i64 = 1800;
/// Bounds of `redemption_ttl_seconds`: one minute to thirty days.
pub const REDEMPTION_TTL_SECONDS_MIN: i64 = 60;
pub const REDEMPTION_TTL_SECONDS_MAX: i64 = 30 * 24 * 3600;

/// Bounds of `pending_days` (the return window) and `expiry_warning_days`.
pub const PENDING_DAYS_MAX: i64 = 365;
pub const EXPIRY_WARNING_DAYS_MAX: i64 = 365;
/// Bounds of `expiry.days`.
pub const EXPIRY_DAYS_MIN: i64 = 1;
pub const EXPIRY_DAYS_MAX: i64 = 3650;

/// The program as written before the points lifecycle (WAL change index 2,
/// snapshots of format 1 and 2): decoding upgrades it, so nothing else sees it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgramV1 {
    pub clawback_allow_negative: bool,
    pub redemption_ttl_seconds: i64,
}

/// What points are worth, for the liability report: `points` points are
/// worth `amount` minor units of `currency`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointValue {
    pub points: i64,
    pub amount: i64,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Program {
    /// Whether a clawback may take a balance below zero.
    pub clawback_allow_negative: bool,
    pub redemption_ttl_seconds: i64,
    /// Days an earn stays pending (the return window). New lots only.
    pub pending_days: i64,
    /// Days a lot lasts once available; `None`: points never expire. New lots only.
    pub expiry_days: Option<i64>,
    /// Days before expiry that `loyalty.points.expiring` is sent; 0: never. New lots only.
    pub expiry_warning_days: i64,
    pub point_value: Option<PointValue>,
}

impl Default for Program {
    fn default() -> Self {
        Program {
            clawback_allow_negative: true,
            redemption_ttl_seconds: REDEMPTION_TTL_SECONDS_DEFAULT,
            pending_days: 0,
            expiry_days: None,
            expiry_warning_days: 0,
            point_value: None,
        }
    }
}

impl From<ProgramV1> for Program {
    fn from(old: ProgramV1) -> Self {
        Program {
            clawback_allow_negative: old.clawback_allow_negative,
            redemption_ttl_seconds: old.redemption_ttl_seconds,
            ..Program::default()
        }
    }
}

impl PointValue {
    /// What `points` are worth in minor units, rounded down (toward minus
    /// infinity), saturating. `points` is a sum over accounts (`i128`).
    pub fn value_of(&self, points: i128) -> i128 {
        if self.points <= 0 {
            return 0;
        }
        points.saturating_mul(i128::from(self.amount)).div_euclid(i128::from(self.points))
    }
}

#[derive(Serialize)]
pub struct ClawbackView {
    pub allow_negative: bool,
}

#[derive(Serialize)]
pub struct ExpiryView {
    pub days: i64,
}

#[derive(Serialize)]
pub struct ProgramView<'a> {
    pub object: &'static str,
    pub clawback: ClawbackView,
    pub redemption_ttl_seconds: i64,
    pub pending_days: i64,
    pub expiry: Option<ExpiryView>,
    pub expiry_warning_days: i64,
    pub point_value: &'a Option<PointValue>,
}

impl Program {
    pub fn view(&self) -> ProgramView<'_> {
        ProgramView {
            object: "loyalty_program",
            clawback: ClawbackView { allow_negative: self.clawback_allow_negative },
            redemption_ttl_seconds: self.redemption_ttl_seconds,
            pending_days: self.pending_days,
            expiry: self.expiry_days.map(|days| ExpiryView { days }),
            expiry_warning_days: self.expiry_warning_days,
            point_value: &self.point_value,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_point_value_rounds_down_and_never_overflows() {
        let v = PointValue { points: 100, amount: 50, currency: "eur".into() };
        assert_eq!(v.value_of(199), 99);
        assert_eq!(v.value_of(0), 0);
        assert_eq!(v.value_of(-1), -1, "toward minus infinity");
        assert_eq!(v.value_of(i128::MAX), i128::MAX / 100, "saturates instead of wrapping");
    }
}
