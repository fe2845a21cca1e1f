//! Webhook endpoints and deliveries (one per event and endpoint), with the
//! retry schedule: about 1 s after the first failure, doubling, capped at one
//! hour, for up to 3 days after the event; then the delivery is failed.

use serde::{Deserialize, Serialize};

use super::events::EventType;
use super::Id;

/// Longest endpoint URL accepted, in bytes.
pub const WEBHOOK_URL_BYTES_MAX: usize = 2048;
/// Most endpoints (deleted ones do not count).
pub const WEBHOOK_ENDPOINTS_MAX: usize = 100;
/// First retry delay, cap and give-up horizon.
pub const WEBHOOK_RETRY_FIRST_SECONDS: i64 = 1;
pub const WEBHOOK_RETRY_MAX_SECONDS: i64 = 3600;
pub const WEBHOOK_GIVE_UP_SECONDS: i64 = 3 * 24 * 3600;
/// Longest error text kept on a delivery.
pub const DELIVERY_ERROR_CHARS_MAX: usize = 200;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: Id,
    pub url: String,
    /// Event types sent to this endpoint; empty means all.
    pub enabled_events: Vec<EventType>,
    pub secret: String,
    pub deleted: bool,
    pub created: i64,
}

impl WebhookEndpoint {
    pub fn wants(&self, kind: EventType) -> bool {
        !self.deleted && (self.enabled_events.is_empty() || self.enabled_events.contains(&kind))
    }

    /// The JSON view; the secret only when `with_secret` (the create answer).
    pub fn view(&self, with_secret: bool) -> serde_json::Value {
        let events: Vec<&str> = if self.enabled_events.is_empty() {
            vec!["*"]
        } else {
            self.enabled_events.iter().map(|e| e.as_str()).collect()
        };
        let mut v = serde_json::json!({
            "id": self.id, "object": "webhook_endpoint", "url": self.url,
            "enabled_events": events, "created": self.created,
        });
        if with_secret {
            v["secret"] = serde_json::Value::String(self.secret.clone());
        }
        v
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum DeliveryStatus {
    Pending,
    Delivered,
    Failed,
}

impl DeliveryStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            DeliveryStatus::Pending => "pending",
            DeliveryStatus::Delivered => "delivered",
            DeliveryStatus::Failed => "failed",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: Id,
    pub endpoint: Id,
    pub event: Id,
    pub status: DeliveryStatus,
    pub attempts: u32,
    pub next_attempt_at: i64,
    pub last_http_status: Option<u16>,
    pub last_error: Option<String>,
    pub created: i64,
    pub delivered_at: Option<i64>,
}

impl Delivery {
    /// After a failed attempt at `now`: the next attempt, or failed for good.
    pub fn failed_attempt(&mut self, now: i64, http_status: Option<u16>, error: String) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_http_status = http_status;
        self.last_error = Some(error.chars().take(DELIVERY_ERROR_CHARS_MAX).collect());
        // Times saturate (a test clock may be moved far ahead).
        let next = now.saturating_add(retry_delay_seconds(self.attempts));
        if next.saturating_sub(self.created) > WEBHOOK_GIVE_UP_SECONDS {
            self.status = DeliveryStatus::Failed;
        } else {
            self.next_attempt_at = next;
        }
    }

    pub fn view(&self) -> serde_json::Value {
        serde_json::json!({
            "id": self.id, "object": "webhook_delivery", "endpoint": self.endpoint, "event": self.event,
            "status": self.status.as_str(), "attempts": self.attempts, "next_attempt_at": self.next_attempt_at,
            "last_http_status": self.last_http_status, "last_error": self.last_error,
            "created": self.created, "delivered_at": self.delivered_at,
        })
    }
}

/// Delay before the attempt after `failures` failed ones: 1 s, 2 s, 4 s, ... capped at an hour.
pub fn retry_delay_seconds(failures: u32) -> i64 {
    let exp = failures.saturating_sub(1).min(20);
    (WEBHOOK_RETRY_FIRST_SECONDS << exp).min(WEBHOOK_RETRY_MAX_SECONDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_caps_then_gives_up() {
        let delays: Vec<i64> = (1..=14).map(retry_delay_seconds).collect();
        assert_eq!(&delays[..5], &[1, 2, 4, 8, 16]);
        assert_eq!(delays[13], 3600);
        let mut d = Delivery {
            id: "whd_1".into(),
            endpoint: "we_1".into(),
            event: "evt_1".into(),
            status: DeliveryStatus::Pending,
            attempts: 0,
            next_attempt_at: 0,
            last_http_status: None,
            last_error: None,
            created: 0,
            delivered_at: None,
        };
        let mut now = 0;
        while d.status == DeliveryStatus::Pending {
            d.failed_attempt(now, Some(500), "boom".into());
            now = d.next_attempt_at;
            assert!(d.attempts < 200);
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert!(now <= WEBHOOK_GIVE_UP_SECONDS && now > WEBHOOK_GIVE_UP_SECONDS - 2 * 3600);
    }
}
