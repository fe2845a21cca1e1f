//! The actix-web facade: authenticates, validates each request, and routes it
//! to the account actor or object lock that owns what it changes.
//!
//! - `server`: binding, startup (replay behind `/readyz`), the route table.
//! - `respond`: the one place an `ApiError` becomes an HTTP answer.
//! - `body`, `query`: request parsing with the contract's error codes.
//! - `auth`: readiness and Bearer-key checks in front of `/v1`.
//! - `idempotency`: `Idempotency-Key` handling around every `POST`.
//! - one file per resource: `members` (customers, loyalty accounts), `program`
//!   (program and earning rules), `payments` (payments, awards), `refunds`,
//!   `transactions` (the points ledger), `health`.

mod auth;
mod body;
mod health;
mod idempotency;
mod members;
mod payments;
mod program;
mod query;
mod refunds;
mod respond;
pub mod server;
mod transactions;

pub use server::{routes, run};
