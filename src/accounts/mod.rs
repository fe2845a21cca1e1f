//! Account actors: one actix actor per loyalty account serializes every
//! change to that account (docs/architecture.md: the actor is the lock).
//!
//! - `registry`: finds or starts the actor of an account, counts the messages
//!   in flight, and lets an idle actor stop (its state stays in the state map).
//! - `actor`: the actor; it runs one command at a time, start to fsync.
//! - `commands`: what an account can be asked to do; `link`, `earn`,
//!   `checkout` (payments with redemptions), `redeem` and `clawback` do it.

mod actor;
mod checkout;
mod clawback;
pub mod commands;
mod earn;
pub mod link;
mod redeem;
mod registry;

pub use commands::AccountCommand;
pub use registry::{ask, Registry};
