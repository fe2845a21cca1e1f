//! The events a record's changes produce, decided in one place.
//!
//! Called by `Ledger::commit_reply` while the request still holds the locks
//! (object lock or account actor) of what it changes, so the state still shows
//! each object's previous version and a transition is seen exactly once.

use std::sync::Arc;

use crate::domain::events::{Event, EventData, EventType};
use crate::domain::lots::LotStatus;
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::points::TxType;
use crate::domain::redemptions::RedemptionStatus;
use crate::domain::webhooks::{Delivery, DeliveryStatus, EndpointStatus};
use crate::domain::IdKind;
use crate::state::State;
use crate::wal::Change;

/// The events (and their pending deliveries) that `changes` cause at `now`.
pub fn derive(state: &State, changes: &[Change], now: i64) -> Vec<Change> {
    let mut events: Vec<(EventType, EventData)> = Vec::new();
    let payment_in_record = |id: &str| -> Option<&Arc<Payment>> {
        changes.iter().find_map(|c| match c {
            Change::PutPayment(p) if p.id == id => Some(p),
            _ => None,
        })
    };
    for (at, change) in changes.iter().enumerate() {
        match change {
            Change::PutPayment(p) => {
                let before = state.payments.with(&p.id, |old| old.status);
                let kind = match p.status {
                    PaymentStatus::Completed if before != Some(PaymentStatus::Completed) => EventType::PaymentCompleted,
                    PaymentStatus::Failed if before != Some(PaymentStatus::Failed) => EventType::PaymentFailed,
                    _ => continue,
                };
                events.push((kind, EventData::Payment(p.clone())));
            }
            Change::PutRefund(r) => {
                if let Some(p) = payment_in_record(&r.payment) {
                    events.push((EventType::PaymentRefunded, EventData::Payment(p.clone())));
                }
            }
            Change::PutTransaction(tx) => {
                let kind = match tx.kind {
                    TxType::Earn => EventType::PointsEarned,
                    TxType::Clawback => EventType::PointsClawedBack,
                    TxType::Adjustment => EventType::PointsAdjusted,
                    TxType::Expire => EventType::PointsExpired,
                    TxType::Redeem | TxType::Release => continue,
                };
                events.push((kind, EventData::Transaction(tx.clone())));
            }
            Change::PutLot(l) => {
                // The version it replaces: an earlier change of this record, else the state's.
                let earlier = changes[..at].iter().rev().find_map(|c| match c {
                    Change::PutLot(e) if e.id == l.id => Some((e.status, e.warn_at)),
                    _ => None,
                });
                let Some((status, warn_at)) =
                    earlier.or_else(|| state.lots.with(&l.id, |old| (old.status, old.warn_at)))
                else {
                    continue;
                };
                if status == LotStatus::Pending && matches!(l.status, LotStatus::Available | LotStatus::Spent) {
                    events.push((EventType::PointsAvailable, EventData::Lot(l.clone())));
                } else if warn_at.is_some() && l.warn_at.is_none() && l.is_spendable() {
                    events.push((EventType::PointsExpiring, EventData::Lot(l.clone())));
                }
            }
            Change::PutWebhookEndpoint(w) => {
                let before = state.webhook_endpoints.with(&w.id, |old| old.status);
                if !w.deleted && w.status == EndpointStatus::Disabled && before == Some(EndpointStatus::Enabled) {
                    events.push((EventType::WebhookEndpointDisabled, EventData::WebhookEndpoint(w.clone())));
                }
            }
            Change::PutRedemption(r) => {
                let before = state.redemptions.with(&r.id, |old| old.status);
                if before == Some(r.status) {
                    continue;
                }
                let kind = match r.status {
                    RedemptionStatus::Pending => EventType::RedemptionCreated,
                    RedemptionStatus::Canceled => EventType::RedemptionCanceled,
                    RedemptionStatus::Expired => EventType::RedemptionExpired,
                    RedemptionStatus::Consumed => EventType::RedemptionConsumed,
                    RedemptionStatus::Attached => continue,
                };
                events.push((kind, EventData::Redemption(r.clone())));
            }
            _ => {}
        }
    }
    if events.is_empty() {
        return Vec::new();
    }
    // As they are before this record, but for the ones it disables (their own
    // `webhook_endpoint.disabled` is not queued for them).
    let disabled_here =
        |id: &str| changes.iter().any(|c| matches!(c, Change::PutWebhookEndpoint(w) if w.id == id && !w.wants_any()));
    let endpoints = state.live_webhook_endpoints();
    let mut out = Vec::with_capacity(events.len() * (1 + endpoints.len()));
    for (kind, data) in events {
        let event = Event { id: IdKind::Event.generate(), kind, created: now, data };
        for endpoint in endpoints.iter().filter(|e| e.wants(kind) && !disabled_here(&e.id)) {
            out.push(Change::PutDelivery(
                Delivery {
                    id: IdKind::WebhookDelivery.generate(),
                    endpoint: endpoint.id.clone(),
                    event: event.id.clone(),
                    status: DeliveryStatus::Pending,
                    attempts: 0,
                    next_attempt_at: now,
                    last_http_status: None,
                    last_error: None,
                    created: now,
                    delivered_at: None,
                }
                .into(),
            ));
        }
        out.push(Change::PutEvent(event.into()));
    }
    out
}
