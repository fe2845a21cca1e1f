//! Events and signed webhooks with durable at-least-once delivery.
//!
//! - `outbox`: derives the events of a record from its changes (and one
//!   pending delivery per event and interested endpoint), so they are written
//!   in the same WAL record as the change: a crash neither loses nor invents one.
//! - `dispatcher`: the actor that POSTs due deliveries, bounded per endpoint,
//!   and records each outcome (delivered, or the next retry) durably.
//! - `net`: the SSRF policy (which addresses a webhook may reach) and the
//!   TLS configuration of `https://` deliveries.
//! - `signature`: `x-vinr-signature` signing, and the verifier receivers use.

pub mod dispatcher;
pub mod net;
pub mod outbox;
pub mod signature;

pub use dispatcher::WebhookDispatcher;
pub use net::NetPolicy;
pub use signature::{sign, sign_all, verify, verify_at, VerifyError, SIGNATURE_HEADER};
