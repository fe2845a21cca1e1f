//! Webhook endpoints and deliveries (one per event and endpoint), with the
//! retry schedule: about 1 s after the first failure, doubling, capped at one
//! hour, for up to 3 days after the event (or after its endpoint was last
//! re-enabled); then the delivery is failed.
//!
//! An endpoint is `enabled` or `disabled`. A disabled one gets no new
//! deliveries and its pending ones wait, untouched, until it is enabled
//! again. It is disabled by itself once its attempts have all failed for 3
//! days (`WEBHOOK_DISABLE_AFTER_FAILING_SECONDS`), which emits
//! `webhook_endpoint.disabled`. A rolled secret keeps signing, beside the
//! new one, until its `expires_at`.

use serde::{Deserialize, Serialize};

use super::events::EventType;
use super::Id;
use crate::config::WEBHOOK_DISABLE_AFTER_FAILING_SECONDS;

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

/// Written in WAL records and snapshots (`Change::PutWebhookEndpoint`, bincode):
/// new fields go into a new version of the struct and a new `Change` variant,
/// never into this one (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpoint {
    pub id: Id,
    pub url: String,
    /// Event types sent to this endpoint; empty means all.
    pub enabled_events: Vec<EventType>,
    pub secret: String,
    pub deleted: bool,
    pub created: i64,
    pub status: EndpointStatus,
    /// The secret the last roll replaced: it signs too, beside `secret`, until its `expires_at`.
    pub previous_secret: Option<PreviousSecret>,
    /// When its current run of failed attempts began: set by a failed attempt
    /// when unset, cleared by a delivered one and by enabling.
    pub failing_since: Option<i64>,
    /// When it was created or last enabled again: a pending delivery's 3 days
    /// of retries count from this or from its own creation, whichever is later.
    pub enabled_at: i64,
}

/// A webhook endpoint as written before endpoints had a status and rolled
/// secrets (`Change::PutWebhookEndpointV1`, in WAL records and snapshots
/// written before them). Read, never written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WebhookEndpointV1 {
    pub id: Id,
    pub url: String,
    pub enabled_events: Vec<EventType>,
    pub secret: String,
    pub deleted: bool,
    pub created: i64,
}

impl From<WebhookEndpointV1> for WebhookEndpoint {
    fn from(old: WebhookEndpointV1) -> WebhookEndpoint {
        let WebhookEndpointV1 { id, url, enabled_events, secret, deleted, created } = old;
        WebhookEndpoint {
            id,
            url,
            enabled_events,
            secret,
            deleted,
            created,
            status: EndpointStatus::Enabled,
            previous_secret: None,
            failing_since: None,
            enabled_at: created,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum EndpointStatus {
    Enabled,
    Disabled,
}

impl EndpointStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointStatus::Enabled => "enabled",
            EndpointStatus::Disabled => "disabled",
        }
    }

    pub fn parse(s: &str) -> Option<EndpointStatus> {
        [EndpointStatus::Enabled, EndpointStatus::Disabled].into_iter().find(|v| v.as_str() == s)
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PreviousSecret {
    pub secret: String,
    pub expires_at: i64,
}

impl WebhookEndpoint {
    /// A new endpoint, enabled.
    pub fn new(id: Id, url: String, enabled_events: Vec<EventType>, secret: String, created: i64) -> WebhookEndpoint {
        WebhookEndpointV1 { id, url, enabled_events, secret, deleted: false, created }.into()
    }

    /// Whether a new event of `kind` gets a delivery to this endpoint (a
    /// disabled endpoint gets none).
    pub fn wants(&self, kind: EventType) -> bool {
        !self.deleted
            && self.status == EndpointStatus::Enabled
            && (self.enabled_events.is_empty() || self.enabled_events.contains(&kind))
    }

    /// Whether it gets new deliveries at all (not deleted nor disabled).
    pub fn wants_any(&self) -> bool {
        !self.deleted && self.status == EndpointStatus::Enabled
    }

    /// The secrets that sign at `now`: the current one, then the one a roll
    /// replaced while it has not expired.
    pub fn signing_secrets(&self, now: i64) -> Vec<&str> {
        let mut secrets = vec![self.secret.as_str()];
        if let Some(p) = self.previous_secret.as_ref().filter(|p| now < p.expires_at) {
            secrets.push(&p.secret);
        }
        secrets
    }

    /// After an attempt at `now` (`delivered`, or failed and whether its
    /// delivery `gave_up`): the endpoint's next version, if it changes. The
    /// first failure starts a run of failures and a delivery clears it. A
    /// failure 3 days or more into the run disables the endpoint, and so does
    /// a delivery that gives up (its 3 days of retries all failed, the last
    /// within an hour of their end) once the run is that long but for that hour.
    pub fn after_attempt(&self, now: i64, delivered: bool, gave_up: bool) -> Option<WebhookEndpoint> {
        let mut next = self.clone();
        match (delivered, self.failing_since) {
            (true, None) => return None,
            (true, Some(_)) => next.failing_since = None,
            (false, None) => next.failing_since = Some(now),
            (false, Some(since)) => {
                let failing = now.saturating_sub(since);
                let long_enough = failing >= WEBHOOK_DISABLE_AFTER_FAILING_SECONDS
                    || (gave_up && failing >= WEBHOOK_DISABLE_AFTER_FAILING_SECONDS - WEBHOOK_RETRY_MAX_SECONDS);
                if !long_enough || self.status == EndpointStatus::Disabled {
                    return None;
                }
                next.status = EndpointStatus::Disabled;
            }
        }
        Some(next)
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
            "enabled_events": events, "status": self.status.as_str(), "created": self.created,
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

    pub fn parse(s: &str) -> Option<DeliveryStatus> {
        [DeliveryStatus::Pending, DeliveryStatus::Delivered, DeliveryStatus::Failed]
            .into_iter()
            .find(|d| d.as_str() == s)
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
    /// After a failed attempt at `now`: the next attempt, or failed for good
    /// once it would be more than 3 days after the later of the delivery's
    /// creation and `enabled_at` (when its endpoint was last enabled again).
    pub fn failed_attempt(&mut self, now: i64, enabled_at: i64, http_status: Option<u16>, error: String) {
        self.attempts = self.attempts.saturating_add(1);
        self.last_http_status = http_status;
        self.last_error = Some(error.chars().take(DELIVERY_ERROR_CHARS_MAX).collect());
        // Times saturate (a test clock may be moved far ahead).
        let next = now.saturating_add(retry_delay_seconds(self.attempts));
        if next.saturating_sub(self.created.max(enabled_at)) > WEBHOOK_GIVE_UP_SECONDS {
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
            d.failed_attempt(now, 0, Some(500), "boom".into());
            now = d.next_attempt_at;
            assert!(d.attempts < 200);
        }
        assert_eq!(d.status, DeliveryStatus::Failed);
        assert!(now <= WEBHOOK_GIVE_UP_SECONDS && now > WEBHOOK_GIVE_UP_SECONDS - 2 * 3600);
        // An endpoint enabled again later gives it 3 days from then.
        d.status = DeliveryStatus::Pending;
        let enabled_at = 10 * WEBHOOK_GIVE_UP_SECONDS;
        d.failed_attempt(enabled_at + 5, enabled_at, Some(500), "boom".into());
        assert_eq!(d.status, DeliveryStatus::Pending);
        d.failed_attempt(enabled_at + WEBHOOK_GIVE_UP_SECONDS, enabled_at, Some(500), "boom".into());
        assert_eq!(d.status, DeliveryStatus::Failed);
    }

    fn endpoint() -> WebhookEndpoint {
        WebhookEndpoint::new("we_1".into(), "http://x/".into(), vec![], "whsec_new".into(), 0)
    }

    #[test]
    fn a_rolled_secret_signs_until_it_expires() {
        let mut e = endpoint();
        assert_eq!(e.signing_secrets(5), vec!["whsec_new"]);
        e.previous_secret = Some(PreviousSecret { secret: "whsec_old".into(), expires_at: 100 });
        assert_eq!(e.signing_secrets(99), vec!["whsec_new", "whsec_old"]);
        assert_eq!(e.signing_secrets(100), vec!["whsec_new"]);
    }

    #[test]
    fn three_days_of_failures_disable_an_endpoint_and_a_delivery_clears_them() {
        let day = 24 * 3600;
        let e = endpoint();
        assert_eq!(e.after_attempt(10, true, false), None, "nothing to change");
        let failing = e.after_attempt(10, false, false).unwrap();
        assert_eq!((failing.failing_since, failing.status), (Some(10), EndpointStatus::Enabled));
        assert_eq!(failing.after_attempt(10 + 3 * day - 1, false, false), None, "not yet 3 days");
        let off = failing.after_attempt(10 + 3 * day, false, false).unwrap();
        assert_eq!((off.status, off.failing_since), (EndpointStatus::Disabled, Some(10)));
        // A delivery that gives up in the last hour of the 3 days disables it too.
        assert_eq!(failing.after_attempt(10 + 3 * day - 3601, false, true), None);
        assert_eq!(failing.after_attempt(10 + 3 * day - 3600, false, true).unwrap().status, EndpointStatus::Disabled);
        let healthy = failing.after_attempt(3 * day, true, false).unwrap();
        assert_eq!(healthy.failing_since, None);
        assert!(!off.wants(EventType::PointsEarned), "a disabled endpoint gets no new deliveries");
        assert!(healthy.wants(EventType::PointsEarned));
    }
}
