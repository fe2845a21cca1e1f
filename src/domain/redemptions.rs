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
use crate::error::ApiError;

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

    fn expired_error(&self) -> ApiError {
        ApiError::conflict("redemption_expired", format!("Redemption {} has expired.", self.id))
    }

    /// pending -> `attached` to `payment` (of `account`, in `currency`) at `now`.
    pub fn attach(&mut self, account: &Id, payment: &Id, currency: &str, now: i64) -> Result<(), ApiError> {
        if self.account != *account {
            return Err(ApiError::conflict(
                "redemption_account_mismatch",
                format!("Redemption {} belongs to {}, not to the payment's member {account}.", self.id, self.account),
            ));
        }
        if self.status == RedemptionStatus::Expired || self.is_due(now) {
            return Err(self.expired_error());
        }
        if self.status != RedemptionStatus::Pending {
            return Err(ApiError::conflict(
                "redemption_not_pending",
                format!("Redemption {} is {}; only a pending redemption can be used.", self.id, self.status.as_str()),
            ));
        }
        if self.currency != currency {
            return Err(ApiError::parameter_invalid(
                "redemptions",
                format!("Redemption {} discounts {}, the payment is in {currency}.", self.id, self.currency),
            )
            .with_code("redemption_currency_mismatch"));
        }
        self.status = RedemptionStatus::Attached;
        self.payment = Some(payment.clone());
        Ok(())
    }

    /// `attached` to `payment` -> `consumed` at `now` (the payment completed).
    pub fn consume(&mut self, payment: &Id, now: i64) -> Result<(), ApiError> {
        if self.status == RedemptionStatus::Expired || self.is_due(now) {
            return Err(self.expired_error());
        }
        if self.status != RedemptionStatus::Attached || self.payment.as_ref() != Some(payment) {
            return Err(ApiError::conflict(
                "redemption_not_pending",
                format!("Redemption {} is {} and cannot be consumed by {payment}.", self.id, self.status.as_str()),
            ));
        }
        self.status = RedemptionStatus::Consumed;
        Ok(())
    }

    /// pending -> `canceled` (its points return).
    pub fn cancel(&mut self) -> Result<(), ApiError> {
        if self.status != RedemptionStatus::Pending {
            return Err(ApiError::conflict(
                "redemption_not_pending",
                format!(
                    "Redemption {} is {}; only a pending redemption can be canceled.",
                    self.id,
                    self.status.as_str()
                ),
            ));
        }
        self.status = RedemptionStatus::Canceled;
        Ok(())
    }

    /// `attached` to `payment` -> `canceled` (the payment failed). Returns
    /// whether it was (one that expired meanwhile returned its points already).
    pub fn release_from(&mut self, payment: &Id) -> bool {
        if self.status != RedemptionStatus::Attached || self.payment.as_ref() != Some(payment) {
            return false;
        }
        self.status = RedemptionStatus::Canceled;
        true
    }

    /// open -> `expired`, once its deadline has passed at `now`. Returns whether it was due.
    pub fn expire(&mut self, now: i64) -> bool {
        if !self.is_due(now) {
            return false;
        }
        self.status = RedemptionStatus::Expired;
        true
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

#[cfg(test)]
mod transition_tests {
    use super::*;

    fn pending() -> Redemption {
        Redemption {
            id: "rdm_1".into(),
            account: "loy_a".into(),
            reward: "rwd_1".into(),
            points: 10,
            discount: 500,
            currency: "eur".into(),
            status: RedemptionStatus::Pending,
            payment: None,
            expires_at: 100,
            created: 1,
        }
    }

    #[test]
    fn attach_then_consume_and_every_refusal_changes_nothing() {
        let (a, pay) = (Id::from("loy_a"), Id::from("pay_1"));
        let mut r = pending();
        assert_eq!(r.attach(&"loy_b".into(), &pay, "eur", 5).unwrap_err().code, "redemption_account_mismatch");
        assert_eq!(r.attach(&a, &pay, "usd", 5).unwrap_err().code, "redemption_currency_mismatch");
        assert_eq!(r.attach(&a, &pay, "eur", 100).unwrap_err().code, "redemption_expired");
        assert_eq!(r, pending());
        r.attach(&a, &pay, "eur", 5).unwrap();
        assert_eq!((r.status, r.payment.clone()), (RedemptionStatus::Attached, Some(pay.clone())));
        assert_eq!(r.attach(&a, &pay, "eur", 5).unwrap_err().code, "redemption_not_pending");
        assert_eq!(r.consume(&"pay_2".into(), 5).unwrap_err().code, "redemption_not_pending");
        assert_eq!(r.consume(&pay, 100).unwrap_err().code, "redemption_expired");
        r.consume(&pay, 6).unwrap();
        assert_eq!(r.status, RedemptionStatus::Consumed);
        assert!(!r.expire(1000), "a consumed redemption never expires");
    }

    #[test]
    fn cancel_release_and_expire_happen_once() {
        let mut r = pending();
        r.cancel().unwrap();
        assert_eq!(r.status, RedemptionStatus::Canceled);
        assert_eq!(r.cancel().unwrap_err().code, "redemption_not_pending");
        assert!(!r.expire(1000));
        let mut r = pending();
        assert!(!r.expire(99));
        assert!(r.expire(100));
        assert!(!r.expire(101));
        let mut r = pending();
        r.attach(&"loy_a".into(), &"pay_1".into(), "eur", 5).unwrap();
        assert!(!r.release_from(&"pay_2".into()));
        assert!(r.release_from(&"pay_1".into()));
        assert_eq!(r.status, RedemptionStatus::Canceled);
        assert!(!r.release_from(&"pay_1".into()));
    }
}
