//! Routing by account id to live actors, starting and retiring them.
//!
//! A sender takes the shard lock, finds (or starts) the actor and counts
//! its message as in flight before it lets go, and the actor only retires
//! under the same lock when nothing is in flight. So a message is never sent
//! to an actor that has decided to stop, and an account has at most one
//! live actor at a time.

use std::collections::HashMap;

use foldhash::fast::RandomState;
use std::hash::BuildHasher;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix::prelude::*;
use parking_lot::Mutex;
use tokio::sync::oneshot;

use super::actor::{AccountActor, Envelope};
use super::commands::AccountCommand;
use crate::config::{ACCOUNT_IDLE_TIMEOUT, ACCOUNT_MAILBOX_CAPACITY, STATE_SHARDS};
use crate::domain::Id;
use crate::error::ApiError;
use crate::ledger::{Ledger, Mutation, Reply};

/// Shared between the registry and one actor: is it busy, when was it last used.
#[derive(Debug)]
pub struct Activity {
    in_flight: AtomicU32,
    last_used_ms: AtomicU64,
}

struct Live {
    addr: Addr<AccountActor>,
    activity: Arc<Activity>,
}

pub struct Registry {
    shards: Box<[Mutex<HashMap<Id, Live, RandomState>>]>,
    hasher: RandomState,
    epoch: Instant,
    live: AtomicUsize,
    started_total: AtomicU64,
}

impl Default for Registry {
    fn default() -> Self {
        Registry {
            shards: (0..STATE_SHARDS).map(|_| Mutex::new(HashMap::default())).collect(),
            hasher: Default::default(),
            epoch: Instant::now(),
            live: AtomicUsize::new(0),
            started_total: AtomicU64::new(0),
        }
    }
}

impl Registry {
    fn shard(&self, id: &str) -> &Mutex<HashMap<Id, Live, RandomState>> {
        &self.shards[(self.hasher.hash_one(id) as usize) % self.shards.len()]
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Account actors running now.
    pub fn live(&self) -> usize {
        self.live.load(Ordering::Relaxed)
    }

    /// Account actors started since the process began.
    pub fn started_total(&self) -> u64 {
        self.started_total.load(Ordering::Relaxed)
    }

    /// The actor's message is done.
    pub(super) fn finish(&self, activity: &Activity) {
        activity.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
        activity.in_flight.fetch_sub(1, Ordering::AcqRel);
    }

    pub(super) fn stopped(&self) {
        self.live.fetch_sub(1, Ordering::Relaxed);
    }

    /// Removes the actor of `id` if it is this one, idle and has nothing in flight.
    pub(super) fn retire_if_idle(&self, id: &str, activity: &Arc<Activity>) -> bool {
        let mut shard = self.shard(id).lock();
        let Some(live) = shard.get(id) else {
            return true;
        };
        if !Arc::ptr_eq(&live.activity, activity) {
            return true;
        }
        let idle_ms = self.now_ms().saturating_sub(activity.last_used_ms.load(Ordering::Relaxed));
        if activity.in_flight.load(Ordering::Acquire) == 0 && idle_ms >= ACCOUNT_IDLE_TIMEOUT.as_millis() as u64 {
            shard.remove(id);
            return true;
        }
        false
    }
}

/// Sends `cmd` to the actor of account `id` and waits for its answer.
/// A full mailbox (`ACCOUNT_MAILBOX_CAPACITY` waiting besides the one running)
/// answers 503 at once instead of queueing without bound.
pub async fn ask(ledger: &Arc<Ledger>, id: &Id, cmd: AccountCommand, m: Mutation) -> Result<Reply, ApiError> {
    let registry = &ledger.accounts;
    let (reply, rx) = oneshot::channel();
    let envelope = Envelope { cmd, m, reply };
    let (addr, activity) = {
        let mut shard = registry.shard(id).lock();
        let live = match shard.get(id) {
            Some(live) => live,
            None => {
                if actix::Arbiter::try_current().is_none() {
                    return Err(ApiError::internal("account actors can only be started inside the actix system"));
                }
                let activity = Arc::new(Activity {
                    in_flight: AtomicU32::new(0),
                    last_used_ms: AtomicU64::new(registry.now_ms()),
                });
                let actor = AccountActor::new(id.clone(), ledger.clone(), activity.clone());
                let addr = AccountActor::create(move |ctx| {
                    ctx.set_mailbox_capacity(ACCOUNT_MAILBOX_CAPACITY);
                    actor
                });
                registry.live.fetch_add(1, Ordering::Relaxed);
                registry.started_total.fetch_add(1, Ordering::Relaxed);
                shard.entry(id.clone()).or_insert(Live { addr, activity })
            }
        };
        // The bound is counted here, not left to the mailbox: an actix mailbox
        // holds `capacity + number of senders`, and every request sends through
        // its own clone of the address, so `try_send` alone never says Full.
        if live.activity.in_flight.load(Ordering::Acquire) > ACCOUNT_MAILBOX_CAPACITY as u32 {
            return Err(ApiError::overloaded("this account"));
        }
        live.activity.in_flight.fetch_add(1, Ordering::AcqRel);
        (live.addr.clone(), live.activity.clone())
    };
    if let Err(e) = addr.try_send(envelope) {
        registry.finish(&activity);
        return Err(match e {
            SendError::Full(_) => ApiError::overloaded("this account"),
            SendError::Closed(_) => ApiError::internal("an account actor stopped with work in flight"),
        });
    }
    rx.await.map_err(|_| ApiError::internal("an account actor dropped a command"))?
}
