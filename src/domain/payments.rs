//! Payments: amounts, status, the member they earned for.

use serde::{Deserialize, Serialize};

use super::money::Currency;
use super::{Id, Metadata};
use crate::error::ApiError;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PaymentStatus {
    Pending,
    Completed,
    Failed,
}

impl PaymentStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            PaymentStatus::Pending => "pending",
            PaymentStatus::Completed => "completed",
            PaymentStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Payment {
    pub id: Id,
    pub amount: i64,
    /// Sum of the discounts of its redemptions.
    pub amount_discount: i64,
    pub amount_refunded: i64,
    pub currency: Currency,
    pub status: PaymentStatus,
    pub customer: Option<Id>,
    pub metadata: Metadata,
    pub redemptions: Vec<Id>,
    /// The member the payment earned for (set when the award was evaluated).
    pub loyalty_account: Option<Id>,
    pub points_earned: i64,
    /// The `earn` points transaction, if any points were earned.
    pub award: Option<Id>,
    pub created: i64,
    pub completed_at: Option<i64>,
}

impl Payment {
    /// `amount - amount_discount`; the discount never exceeds the amount
    /// (checkout refuses that), and both are at most `AMOUNT_MAX`, so this
    /// cannot overflow; it saturates all the same.
    pub fn amount_charged(&self) -> i64 {
        self.amount.saturating_sub(self.amount_discount)
    }

    /// pending -> `completed` at `now`.
    pub fn complete(&mut self, now: i64) -> Result<(), ApiError> {
        self.leave_pending()?;
        self.status = PaymentStatus::Completed;
        self.completed_at = Some(now);
        Ok(())
    }

    /// pending -> `failed`.
    pub fn fail(&mut self) -> Result<(), ApiError> {
        self.leave_pending()?;
        self.status = PaymentStatus::Failed;
        Ok(())
    }

    fn leave_pending(&self) -> Result<(), ApiError> {
        if self.status == PaymentStatus::Pending {
            return Ok(());
        }
        Err(ApiError::conflict(
            "payment_not_pending",
            format!("Payment {} is {}; only a pending payment can do that.", self.id, self.status.as_str()),
        ))
    }

    /// Whether the payment has an award (an `earn` transaction). A payment
    /// that completed without one may get it once by `POST /v1/loyalty/awards`.
    pub fn is_awarded(&self) -> bool {
        self.award.is_some()
    }

    pub fn view(&self) -> PaymentView<'_> {
        PaymentView {
            id: &self.id,
            object: "payment",
            amount: self.amount,
            amount_discount: self.amount_discount,
            amount_charged: self.amount_charged(),
            amount_refunded: self.amount_refunded,
            currency: &self.currency,
            status: self.status.as_str(),
            customer: &self.customer,
            metadata: &self.metadata,
            redemptions: &self.redemptions,
            loyalty_account: &self.loyalty_account,
            points_earned: self.points_earned,
            award: &self.award,
            created: self.created,
            completed_at: self.completed_at,
        }
    }
}

#[derive(Serialize)]
pub struct PaymentView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub amount: i64,
    pub amount_discount: i64,
    pub amount_charged: i64,
    pub amount_refunded: i64,
    pub currency: &'a str,
    pub status: &'static str,
    pub customer: &'a Option<Id>,
    pub metadata: &'a Metadata,
    pub redemptions: &'a [Id],
    pub loyalty_account: &'a Option<Id>,
    pub points_earned: i64,
    pub award: &'a Option<Id>,
    pub created: i64,
    pub completed_at: Option<i64>,
}

#[cfg(test)]
mod transition_tests {
    use super::*;

    fn pending() -> Payment {
        Payment {
            id: "pay_1".into(),
            amount: 100,
            amount_discount: 0,
            amount_refunded: 0,
            currency: "eur".into(),
            status: PaymentStatus::Pending,
            customer: None,
            metadata: Metadata::default(),
            redemptions: Vec::new(),
            loyalty_account: None,
            points_earned: 0,
            award: None,
            created: 1,
            completed_at: None,
        }
    }

    #[test]
    fn only_a_pending_payment_completes_or_fails() {
        let mut p = pending();
        p.complete(7).unwrap();
        assert_eq!((p.status, p.completed_at), (PaymentStatus::Completed, Some(7)));
        assert_eq!(p.complete(8).unwrap_err().code, "payment_not_pending");
        assert_eq!(p.fail().unwrap_err().code, "payment_not_pending");
        assert_eq!(p.completed_at, Some(7), "a refused transition changes nothing");
        let mut p = pending();
        p.fail().unwrap();
        assert_eq!(p.status, PaymentStatus::Failed);
        assert!(p.complete(9).is_err());
    }
}
