//! The actix-web facade: authenticates, validates each request, and routes it
//! to the account actor or object lock that owns what it changes.
//!
//! - `server`: binding, startup (replay behind `/readyz`), the router.
//! - `routes`: the route table the router and the OpenAPI description are built from.
//! - `openapi`: `GET /v1/openapi.json`; `metrics`: `GET /metrics` and the
//!   middleware timing each request; `admin`: `POST /v1/admin/snapshot`.
//! - `respond`: the one place an `ApiError` becomes an HTTP answer.
//! - `body`, `query`: request parsing with the contract's error codes.
//! - `auth`: readiness, the Bearer key (root or API key) and its permissions in front of `/v1`.
//! - `idempotency`: `Idempotency-Key` handling around every `POST`.
//! - one file per resource: `members` (customers, loyalty accounts), `program`
//!   (program and earning rules), `payments` (payments, awards), `refunds`,
//!   `rewards`, `redemptions`, `events`, `webhooks` (endpoints, deliveries),
//!   `testing` (the manual clock and storage faults, tests only), `api_keys`,
//!   `transactions` (the points ledger), `lots` (points lots, adjustments),
//!   `reports` (liability and activity reports, the CSV export), `health`.

mod admin;
mod api_keys;
mod auth;
mod body;
mod events;
mod health;
mod idempotency;
mod lots;
mod members;
mod metrics;
pub mod openapi;
mod payments;
mod program;
mod query;
mod redemptions;
mod refunds;
mod reports;
mod respond;
mod rewards;
pub mod routes;
pub mod server;
mod testing;
mod transactions;
mod webhooks;

pub use server::{routes, run};
