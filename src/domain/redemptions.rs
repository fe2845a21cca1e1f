//! Redemptions: points spent on a reward, waiting to discount a payment.
//!
//! `pending` -> `attached` (to a pending payment) -> `consumed` (the payment
//! completed); or -> `canceled` (cancel, or its payment failed); or ->
//! `expired` (not consumed within the program's `redemption_ttl_seconds`).
//! Leaving `pending`/`attached` for `canceled` or `expired` returns the points
//! once (a `release` transaction); `consumed` keeps them spent.

use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::Id;

/// Most redemptions one payment may carry.
pub const REDEMPTIONS_PER_PAYMENT_MAX: usize = 20;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RedemptionStatus {
    Pending,
    Attached,
    Consumed,
    Canceled,
    Expired,
}

impl RedemptionStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            RedemptionStatus::Pending => "pending",
            RedemptionStatus::Attached => "attached",
            RedemptionStatus::Consumed => "consumed",
            RedemptionStatus::Canceled => "canceled",
            RedemptionStatus::Expired => "expired",
        }
    }

    pub fn parse(s: &str) -> Option<RedemptionStatus> {
        Some(match s {
            "pending" => RedemptionStatus::Pending,
            "attached" => RedemptionStatus::Attached,
            "consumed" => RedemptionStatus::Consumed,
            "canceled" => RedemptionStatus::Canceled,
            "expired" => RedemptionStatus::Expired,
            _ => return None,
        })
    }

    /// Still holding the member's points, waiting for a payment or expiry.
    pub fn is_open(self) -> bool {
        matches!(self, RedemptionStatus::Pending | RedemptionStatus::Attached)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Redemption {
    pub id: Id,
    pub account: Id,
    pub reward: Id,
    pub points: i64,
    pub discount: i64,
    pub currency: Currency,
    pub status: RedemptionStatus,
    pub payment: Option<Id>,
    pub expires_at: i64,
    pub created: i64,
}

impl Redemption {
    /// Open but past its deadline: it must not discount anything any more.
    pub fn is_due(&self, now: i64) -> bool {
        self.status.is_open() && now >= self.expires_at
    }

    pub fn view(&self) -> RedemptionView<'_> {
        RedemptionView {
            id: &self.id,
            object: "redemption",
            account: &self.account,
            reward: &self.reward,
            points: self.points,
            discount: self.discount,
            currency: &self.currency,
            status: self.status.as_str(),
            payment: &self.payment,
            expires_at: self.expires_at,
            created: self.created,
        }
    }
}

#[derive(Serialize)]
pub struct RedemptionView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub account: &'a Id,
    pub reward: &'a Id,
    pub points: i64,
    pub discount: i64,
    pub currency: &'a str,
    pub status: &'static str,
    pub payment: &'a Option<Id>,
    pub expires_at: i64,
    pub created: i64,
}
