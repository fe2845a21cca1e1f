//! Events: a durable record of what happened, written in the same WAL
//! record as the change that caused it. `data` is the object itself as it
//! was right after the change.

use std::sync::Arc;

use serde::{Deserialize, Serialize, Serializer};

use super::lots::PointsLot;
use super::payments::Payment;
use super::points::{PointsTransaction, PointsTransactionV1};
use super::redemptions::Redemption;
use super::webhooks::WebhookEndpoint;
use super::Id;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum EventType {
    PaymentCompleted,
    PaymentFailed,
    PaymentRefunded,
    PointsEarned,
    PointsClawedBack,
    RedemptionCreated,
    RedemptionCanceled,
    RedemptionExpired,
    RedemptionConsumed,
    /// Appended: variants are encoded by index (WAL records, snapshots).
    WebhookEndpointDisabled,
    PointsAvailable,
    PointsExpiring,
    PointsExpired,
    PointsAdjusted,
}

impl EventType {
    pub const ALL: [EventType; 14] = [
        EventType::PaymentCompleted,
        EventType::PaymentFailed,
        EventType::PaymentRefunded,
        EventType::PointsEarned,
        EventType::PointsClawedBack,
        EventType::RedemptionCreated,
        EventType::RedemptionCanceled,
        EventType::RedemptionExpired,
        EventType::RedemptionConsumed,
        EventType::WebhookEndpointDisabled,
        EventType::PointsAvailable,
        EventType::PointsExpiring,
        EventType::PointsExpired,
        EventType::PointsAdjusted,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            EventType::PaymentCompleted => "payment.completed",
            EventType::PaymentFailed => "payment.failed",
            EventType::PaymentRefunded => "payment.refunded",
            EventType::PointsEarned => "loyalty.points.earned",
            EventType::PointsClawedBack => "loyalty.points.clawed_back",
            EventType::RedemptionCreated => "loyalty.redemption.created",
            EventType::RedemptionCanceled => "loyalty.redemption.canceled",
            EventType::RedemptionExpired => "loyalty.redemption.expired",
            EventType::RedemptionConsumed => "loyalty.redemption.consumed",
            EventType::WebhookEndpointDisabled => "webhook_endpoint.disabled",
            EventType::PointsAvailable => "loyalty.points.available",
            EventType::PointsExpiring => "loyalty.points.expiring",
            EventType::PointsExpired => "loyalty.points.expired",
            EventType::PointsAdjusted => "loyalty.points.adjusted",
        }
    }

    pub fn parse(s: &str) -> Option<EventType> {
        EventType::ALL.into_iter().find(|t| t.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum EventData {
    /// Shared with the state and the record that wrote it: an event costs no copy.
    Payment(Arc<Payment>),
    /// A transaction of the layout before lots: decoding upgrades it
    /// (`Event::upgrade`), so nothing else sees this variant.
    TransactionV1(Arc<PointsTransactionV1>),
    Redemption(Arc<Redemption>),
    /// Appended (encoded by index). Shown without its secret.
    WebhookEndpoint(Arc<WebhookEndpoint>),
    Transaction(Arc<PointsTransaction>),
    Lot(Arc<PointsLot>),
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    pub id: Id,
    pub kind: EventType,
    pub created: i64,
    pub data: EventData,
}

/// The JSON form of `data`: the object's own view.
pub struct EventDataView<'a>(&'a EventData);

impl Serialize for EventDataView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            EventData::Payment(p) => p.view().serialize(s),
            EventData::Transaction(t) => t.view().serialize(s),
            EventData::TransactionV1(t) => PointsTransaction::from(PointsTransactionV1::clone(t)).view().serialize(s),
            EventData::Lot(l) => l.view().serialize(s),
            EventData::Redemption(r) => r.view().serialize(s),
            EventData::WebhookEndpoint(e) => e.view(false).serialize(s),
        }
    }
}

#[derive(Serialize)]
pub struct EventView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub created: i64,
    pub data: EventDataView<'a>,
}

impl Event {
    /// Whether its data is of a layout decoding upgrades (`upgrade`).
    pub fn is_old_layout(&self) -> bool {
        matches!(self.data, EventData::TransactionV1(_))
    }

    /// The event with its data in the layout this build writes.
    pub fn upgrade(self) -> Event {
        match self.data {
            EventData::TransactionV1(t) => {
                Event { data: EventData::Transaction(Arc::new(Arc::unwrap_or_clone(t).into())), ..self }
            }
            _ => self,
        }
    }

    pub fn view(&self) -> EventView<'_> {
        EventView {
            id: &self.id,
            object: "event",
            kind: self.kind.as_str(),
            created: self.created,
            data: EventDataView(&self.data),
        }
    }
}
