//! The account actor: runs one command at a time, from validation to fsync.
//!
//! Each command is an `AtomicResponse`, so the actor takes no new message
//! until the current one is durable and applied; the next command therefore
//! always sees the state the previous one left. Throughput comes from many
//! accounts committing in the same WAL batch, not from overlapping one
//! account's commands.

use std::sync::Arc;

use actix::prelude::*;
use tokio::sync::oneshot;

use super::commands::{self, AccountCommand};
use super::registry::Activity;
use crate::config::ACCOUNT_IDLE_CHECK_INTERVAL;
use crate::domain::Id;
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};

pub struct AccountActor {
    id: Id,
    ledger: Arc<Ledger>,
    activity: Arc<Activity>,
}

impl AccountActor {
    pub(super) fn new(id: Id, ledger: Arc<Ledger>, activity: Arc<Activity>) -> Self {
        AccountActor { id, ledger, activity }
    }
}

/// A command with the channel its answer goes back on.
pub struct Envelope {
    pub cmd: AccountCommand,
    pub m: Mutation,
    pub reply: oneshot::Sender<Result<Reply, ApiError>>,
}

impl Message for Envelope {
    type Result = ();
}

impl Actor for AccountActor {
    type Context = Context<Self>;

    fn started(&mut self, ctx: &mut Self::Context) {
        ctx.run_interval(ACCOUNT_IDLE_CHECK_INTERVAL, |act, ctx| {
            if act.ledger.accounts.retire_if_idle(&act.id, &act.activity) {
                ctx.stop();
            }
        });
    }

    fn stopped(&mut self, _ctx: &mut Self::Context) {
        self.ledger.accounts.stopped();
    }
}

impl Handler<Envelope> for AccountActor {
    type Result = AtomicResponse<Self, ()>;

    fn handle(&mut self, env: Envelope, _ctx: &mut Self::Context) -> Self::Result {
        let ledger = self.ledger.clone();
        let id = self.id.clone();
        let activity = self.activity.clone();
        AtomicResponse::new(Box::pin(
            async move {
                let result = commands::execute(&ledger, &id, env.cmd, &env.m).await;
                ledger.accounts.finish(&activity);
                let _ = env.reply.send(result);
            }
            .into_actor(self),
        ))
    }
}
