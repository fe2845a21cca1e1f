//! The webhook dispatcher: an actor that POSTs due deliveries and records
//! each outcome durably. It never runs on the request path, so a slow or dead
//! endpoint slows nothing but its own deliveries.
//!
//! Every `WEBHOOK_SCAN_INTERVAL` it reads the state's index of pending
//! deliveries due by the ledger's `Clock`, starts at most
//! `WEBHOOK_IN_FLIGHT_PER_ENDPOINT` attempts per endpoint, and commits either
//! `delivered` or the next retry time (1 s, doubling, capped at an hour, given
//! up after 3 days). The index is rebuilt by replay, so pending deliveries
//! survive restarts; a delivery may be sent more than once (at least once).
//!
//! Before every attempt the endpoint's host is resolved and every address
//! checked against the SSRF policy (`net::NetPolicy`); the request then goes
//! to the address checked. `https://` endpoints are reached over rustls
//! (`net::tls_config`). What a delivery records of a failure says no more
//! about the network than "blocked" (refused by the policy) or "failed" (no
//! answer: resolution, connection, TLS or timeout); an answer keeps its HTTP
//! status, which is the receiver's own. The server log has the details.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use super::net::{host_and_port, Refused};
use super::signature::{sign_all, SIGNATURE_HEADER};
use crate::domain::webhooks::{Delivery, DeliveryStatus, EndpointStatus};
use crate::domain::Id;
use crate::ledger::{Ledger, Mutation, Reply};
use crate::wal::Change;

/// How often the dispatcher looks for due deliveries.
pub const WEBHOOK_SCAN_INTERVAL: Duration = Duration::from_millis(200);
/// How long one attempt may take before it counts as failed.
pub const WEBHOOK_TIMEOUT: Duration = Duration::from_secs(10);
/// Attempts in flight at once to one endpoint.
pub const WEBHOOK_IN_FLIGHT_PER_ENDPOINT: usize = 4;
/// Attempts in flight at once in all.
pub const WEBHOOK_IN_FLIGHT_MAX: usize = 256;

pub struct WebhookDispatcher {
    ledger: Arc<Ledger>,
    tls: Arc<rustls::ClientConfig>,
    client: Option<awc::Client>,
    in_flight: Rc<RefCell<HashSet<Id>>>,
    per_endpoint: Rc<RefCell<HashMap<Id, usize>>>,
}

impl WebhookDispatcher {
    pub fn new(ledger: Arc<Ledger>, tls: Arc<rustls::ClientConfig>) -> Self {
        WebhookDispatcher { ledger, tls, client: None, in_flight: Rc::default(), per_endpoint: Rc::default() }
    }

    fn tick(&mut self) {
        let Some(client) = self.client.clone() else { return };
        let now = self.ledger.now();
        if self.in_flight.borrow().len() >= WEBHOOK_IN_FLIGHT_MAX {
            return;
        }
        // The earliest few of each endpoint (in-flight ones among them are
        // skipped below); none of a disabled one, whose deliveries wait for it.
        let state = &self.ledger.state;
        let room = |endpoint: &Id| {
            let open = state.webhook_endpoints.with(endpoint, |e| e.deleted || e.status == EndpointStatus::Enabled);
            if open.unwrap_or(true) {
                WEBHOOK_IN_FLIGHT_PER_ENDPOINT
            } else {
                0
            }
        };
        let due = state.due_deliveries(now, room);
        for id in due {
            if self.in_flight.borrow().len() >= WEBHOOK_IN_FLIGHT_MAX || self.in_flight.borrow().contains(&id) {
                continue;
            }
            let Some(delivery) = self.ledger.state.deliveries.with(&id, Clone::clone) else { continue };
            let busy = self.per_endpoint.borrow().get(&delivery.endpoint).copied().unwrap_or(0);
            if busy >= WEBHOOK_IN_FLIGHT_PER_ENDPOINT {
                continue;
            }
            self.in_flight.borrow_mut().insert(id.clone());
            *self.per_endpoint.borrow_mut().entry(delivery.endpoint.clone()).or_default() += 1;
            let (ledger, client) = (self.ledger.clone(), client.clone());
            let (in_flight, per_endpoint) = (self.in_flight.clone(), self.per_endpoint.clone());
            actix::spawn(async move {
                let endpoint = delivery.endpoint.clone();
                attempt(&ledger, &client, delivery).await;
                in_flight.borrow_mut().remove(&id);
                if let Some(n) = per_endpoint.borrow_mut().get_mut(&endpoint) {
                    *n = n.saturating_sub(1);
                }
            });
        }
    }
}

/// One attempt at one delivery, and its durable outcome: the delivery, and
/// the endpoint too when the attempt starts or ends its run of failures or
/// disables it (`WebhookEndpoint::after_attempt`).
async fn attempt(ledger: &Ledger, client: &awc::Client, mut delivery: Delivery) {
    let state = &ledger.state;
    let endpoint = state.webhook_endpoints.with(&delivery.endpoint, Clone::clone);
    let event = state.events.with(&delivery.event, Clone::clone);
    match (endpoint, event) {
        (Some(endpoint), Some(event)) if !endpoint.deleted => {
            if endpoint.status == EndpointStatus::Disabled {
                return; // disabled since the scan: the delivery waits for it, unchanged
            }
            let body = match serde_json::to_vec(&event.view()) {
                Ok(b) => b,
                Err(e) => return tracing::error!(error = %e, "rendering an event failed"),
            };
            let t = ledger.now();
            let header = sign_all(&endpoint.signing_secrets(t), t, &body);
            let result = send(ledger, client, &endpoint.url, header, body).await;
            let now = ledger.now();
            let enabled_at = endpoint.enabled_at;
            match result {
                Err(refused) => {
                    ledger.metrics.webhook_failures.inc();
                    tracing::info!(delivery = %delivery.id, endpoint = %endpoint.id, error = %refused.detail, "webhook attempt failed");
                    delivery.failed_attempt(now, enabled_at, None, refused.recorded.into());
                }
                Ok(status) if status.is_success() => {
                    delivery.status = DeliveryStatus::Delivered;
                    delivery.attempts += 1;
                    delivery.delivered_at = Some(now);
                    delivery.last_http_status = Some(status.as_u16());
                    delivery.last_error = None;
                }
                Ok(status) => {
                    let status = status.as_u16();
                    ledger.metrics.webhook_failures.inc();
                    delivery.failed_attempt(now, enabled_at, Some(status), format!("endpoint answered {status}"));
                }
            }
            let delivered = delivery.status == DeliveryStatus::Delivered;
            let gave_up = delivery.status == DeliveryStatus::Failed;
            if endpoint.after_attempt(now, delivered, gave_up).is_some() {
                // The endpoint changes too: decided again under its lock, from
                // its current version, so no request's change is overwritten
                // and `webhook_endpoint.disabled` is emitted once.
                let _held = ledger.locks.lock(&[endpoint.id.as_str()]).await;
                let mut changes = vec![Change::PutDelivery(delivery.into())];
                let current = state.webhook_endpoints.with(&endpoint.id, Clone::clone).filter(|e| !e.deleted);
                if let Some(next) = current.and_then(|e| e.after_attempt(now, delivered, gave_up)) {
                    if next.status == EndpointStatus::Disabled {
                        tracing::warn!(endpoint = %next.id, "webhook endpoint disabled: its attempts have failed for 3 days");
                    }
                    changes.push(Change::PutWebhookEndpoint(next.into()));
                }
                return record(ledger, changes).await;
            }
        }
        (_, None) => {
            // Past retention (its endpoint was disabled longer than events are kept).
            delivery.status = DeliveryStatus::Failed;
            delivery.last_error = Some("the event is past retention".into());
        }
        _ => {
            delivery.status = DeliveryStatus::Failed;
            delivery.last_error = Some("the endpoint was deleted".into());
        }
    }
    record(ledger, vec![Change::PutDelivery(delivery.into())]).await
}

/// Commits an attempt's outcome.
async fn record(ledger: &Ledger, changes: Vec<Change>) {
    let outcome = Reply { status: 200, body: Vec::new() };
    if let Err(e) = ledger.commit_reply(&Mutation::default(), changes, outcome).await {
        tracing::warn!(error = %e, "recording a webhook delivery outcome failed; it will be attempted again");
    }
}

/// Why an attempt got no answer: what the delivery records ("blocked" or
/// "failed") and what the server log says.
struct NoAnswer {
    recorded: &'static str,
    detail: String,
}

impl NoAnswer {
    fn failed(detail: impl ToString) -> NoAnswer {
        NoAnswer { recorded: FAILED, detail: detail.to_string() }
    }
}

/// The recorded error of an attempt the SSRF policy refused ...
pub const BLOCKED: &str = "blocked";
/// ... and of one that got no answer.
pub const FAILED: &str = "failed";

/// POSTs `body` to `url`, at the address the SSRF policy checked.
async fn send(
    ledger: &Ledger,
    client: &awc::Client,
    url: &str,
    header: String,
    body: Vec<u8>,
) -> Result<awc::http::StatusCode, NoAnswer> {
    let uri: awc::http::Uri = url.parse().map_err(NoAnswer::failed)?;
    let (host, port) = host_and_port(&uri).ok_or_else(|| NoAnswer::failed("the URL has no host"))?;
    let addr = match ledger.webhook_net.check(host, port).await {
        Ok(addr) => addr,
        Err(Refused::Blocked) => {
            return Err(NoAnswer { recorded: BLOCKED, detail: format!("{host} is or resolves to a blocked address") })
        }
        Err(Refused::Unresolved) => return Err(NoAnswer::failed(format!("{host} does not resolve"))),
    };
    client
        .post(uri)
        .address(addr)
        .insert_header((SIGNATURE_HEADER, header))
        .insert_header(("content-type", "application/json"))
        .timeout(WEBHOOK_TIMEOUT)
        .send_body(body)
        .await
        .map(|resp| resp.status())
        .map_err(|e| NoAnswer::failed(format!("{addr}: {e}")))
}

impl Actor for WebhookDispatcher {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        let connector = awc::Connector::new().rustls_0_23(self.tls.clone());
        self.client =
            Some(awc::Client::builder().connector(connector).disable_redirects().timeout(WEBHOOK_TIMEOUT).finish());
        self.tick();
        ctx.run_interval(WEBHOOK_SCAN_INTERVAL, |act, _| act.tick());
    }
}
