//! Account actors: one actix actor per loyalty account serializes every
//! change to that account (docs/architecture.md: the actor is the lock).
//!
//! - `registry`: finds or starts the actor of an account, counts the messages
//!   in flight, and lets an idle actor stop (its state stays in the state map).
//! - `actor`: the actor; it runs one command at a time, start to fsync.
//! - `commands`: what an account can be asked to do; `link`, `earn`,
//!   `checkout` (payments with redemptions), `redeem`, `clawback` and
//!   `adjust` (adjustments, and what is due for a lot) do it.
//! - `book`: a command's working copy of an account's points and lots, which
//!   every movement of points goes through (`domain::lots` has the rules).

mod actor;
mod adjust;
mod book;
mod checkout;
mod clawback;
pub mod commands;
mod earn;
pub mod link;
mod redeem;
mod registry;

pub use commands::{AccountCommand, Adjustment};
pub use registry::{ask, Registry};
