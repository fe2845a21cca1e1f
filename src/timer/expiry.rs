//! The timer actor: expires redemptions whose deadline has passed.
//!
//! Every `EXPIRY_SCAN_INTERVAL` it reads the state's deadline index (open
//! redemptions ordered by `expires_at`) against the ledger's `Clock` and asks
//! each due redemption's account actor to expire it. The account actor
//! re-checks the redemption, so a race with checkout or cancel returns the
//! points at most once. Its record is checked like any other before it is
//! written (`State::check`); one the ledger refuses (409 `balance_limit`,
//! possible only for a balance an older version left past the cap) writes
//! nothing, is logged, and is tried again on later ticks. The index is rebuilt by replay, so a redemption that
//! fell due while the server was down expires on the first tick after startup.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::accounts::{self, AccountCommand};
use crate::domain::Id;
use crate::ledger::{Ledger, Mutation};

/// How often the timer looks for due redemptions.
pub const EXPIRY_SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// Most expiries one tick starts (the rest wait for the next tick).
pub const EXPIRY_BATCH_MAX: usize = 1000;

pub struct ExpiryTimer {
    ledger: Arc<Ledger>,
    /// Redemptions whose expiry was asked for and not yet answered.
    in_flight: Rc<RefCell<HashSet<Id>>>,
}

impl ExpiryTimer {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        ExpiryTimer { ledger, in_flight: Rc::default() }
    }

    fn tick(&mut self) {
        let now = self.ledger.now();
        for id in self.ledger.state.due_redemptions(now, EXPIRY_BATCH_MAX) {
            if !self.in_flight.borrow_mut().insert(id.clone()) {
                continue;
            }
            let Some(account) = self.ledger.state.redemptions.with(&id, |r| r.account.clone()) else { continue };
            let (ledger, in_flight) = (self.ledger.clone(), self.in_flight.clone());
            actix::spawn(async move {
                let result = accounts::ask(
                    &ledger,
                    &account,
                    AccountCommand::Expire { redemption: id.clone() },
                    Mutation::default(),
                )
                .await;
                if let Err(e) = result {
                    tracing::warn!(redemption = %id, error = %e, "expiring a redemption failed; retrying on a later tick");
                }
                in_flight.borrow_mut().remove(&id);
            });
        }
    }
}

impl Actor for ExpiryTimer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick();
        ctx.run_interval(EXPIRY_SCAN_INTERVAL, |act, _| act.tick());
    }
}
