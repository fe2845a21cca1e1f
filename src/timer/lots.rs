//! The lots timer: makes pending lots available when their return window
//! ends, sends expiry warnings, and expires lots at their `expires_at`.
//!
//! Every `LOT_SCAN_INTERVAL` it reads the state's lot deadlines (pending lots
//! by `available_at`, spendable ones by `expires_at` and `warn_at`) against
//! the ledger's `Clock` and asks each due lot's account actor to do what is
//! due (`AccountCommand::LotDue`), one step at a time. The actor re-reads
//! the lot, so a lot is made available, warned about and expired exactly
//! once, whatever races it. The deadlines are rebuilt by replay and by a
//! snapshot load, so a lot that came due while the server was down is acted
//! on by the first tick after startup; a lot due for several steps (down past
//! both its `available_at` and its `expires_at`) takes one per tick.

use std::cell::RefCell;
use std::collections::HashSet;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use actix::prelude::*;

use crate::accounts::{self, AccountCommand};
use crate::domain::Id;
use crate::ledger::{Ledger, Mutation};

/// How often the timer looks for due lots.
pub const LOT_SCAN_INTERVAL: Duration = Duration::from_millis(500);
/// Most lots one tick starts (the rest wait for the next tick).
pub const LOT_BATCH_MAX: usize = 1000;

pub struct LotTimer {
    ledger: Arc<Ledger>,
    /// Lots whose step was asked for and not yet answered.
    in_flight: Rc<RefCell<HashSet<Id>>>,
}

impl LotTimer {
    pub fn new(ledger: Arc<Ledger>) -> Self {
        LotTimer { ledger, in_flight: Rc::default() }
    }

    fn tick(&mut self) {
        let now = self.ledger.now();
        for id in self.ledger.state.due_lots(now, LOT_BATCH_MAX) {
            if !self.in_flight.borrow_mut().insert(id.clone()) {
                continue;
            }
            let Some(account) = self.ledger.state.lots.with(&id, |l| l.account.clone()) else {
                self.in_flight.borrow_mut().remove(&id);
                continue;
            };
            let (ledger, in_flight) = (self.ledger.clone(), self.in_flight.clone());
            actix::spawn(async move {
                let command = AccountCommand::LotDue { lot: id.clone() };
                if let Err(e) = accounts::ask(&ledger, &account, command, Mutation::default()).await {
                    tracing::warn!(lot = %id, error = %e, "a lot's due step failed; retrying on a later tick");
                }
                in_flight.borrow_mut().remove(&id);
            });
        }
    }
}

impl Actor for LotTimer {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        self.tick();
        ctx.run_interval(LOT_SCAN_INTERVAL, |act, _| act.tick());
    }
}
