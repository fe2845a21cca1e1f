//! The in-memory state every request reads and the WAL writer applies to.
//!
//! Tables are sharded maps guarded by short-lived `parking_lot` locks, held
//! only to copy an object in or out, never across an await. What serializes
//! the *logic* of a mutation is elsewhere: the account actor for an account,
//! the object locks for payments and customers. Only the WAL's apply thread
//! (live, `apply`: one record at a time) and recovery (at startup, `lanes`:
//! each table's changes on one thread) apply changes, in LSN order, so memory
//! after a restart is exactly memory before it.
//!
//! What a change must satisfy to apply (a transaction lands on its
//! `balance_after` without overflow, a redemption's held points stay in
//! range, a table has room, ...) is written once, in `check`: applying runs
//! those rules on the tables, and `State::check` runs the same ones on a
//! simulation of a record before it is written, so a record that is written
//! always applies (docs/reliability.md, invariant 10).
//!
//! Readers see each live record whole: `apply` holds the apply gate
//! (`gate.rs`) for one record, and the HTTP reads go through `visible` (one
//! object) or a page (`page`, `account_transactions`), which take it shared.

mod account_index;
mod api_keys;
mod check;
mod checkpoint;
mod cold;
mod email_index;
mod gate;
mod idempotency;
mod index;
mod lanes;
mod list;
pub mod lot_order;
mod order;
mod reports;
mod snapshot;
mod table;
#[cfg(test)]
pub(crate) mod test_changes;
mod unfinished;

pub use api_keys::ApiKeyIndex;
pub use check::{Figures, Refusal};
pub use checkpoint::{CheckpointItems, ColdRef};
pub use cold::{ColdBatch, ColdLoad, ColdObject, ColdTable};
pub use gate::Gate;
pub use idempotency::{Begin, IdemGuard, IdemStore, StoredResponse};
pub use index::Index;
pub use lanes::{apply_in_lanes, Lanes};
pub use list::{CreatedRange, Cursor, ListParams};
pub use reports::{Activity, Liability, MoneyValue, EXPIRING_HORIZON_DAYS};
pub use snapshot::{in_place, Counted, ListedIn, Placed, SnapshotItem, TableSizes};
pub use table::{ArchiveRead, Keyed, Stored, Table};

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::Arc;

use parking_lot::RwLock;
use thin_vec::ThinVec;

use crate::config::RETENTION_FORGET_PER_RECORD;
use crate::domain::api_keys::ApiKey;
use crate::domain::earning::EarningRule;
use crate::domain::events::Event;
use crate::domain::lots::{LotStatus, PointsLot};
use crate::domain::members::{Account, Balances, Customer, NextExpiry};
use crate::domain::money::Currency;
use crate::domain::payments::Payment;
use crate::domain::points::PointsTransaction;
use crate::domain::program::Program;
use crate::domain::redemptions::Redemption;
use crate::domain::refunds::Refund;
use crate::domain::rewards::Reward;
use crate::domain::webhooks::{Delivery, DeliveryStatus, WebhookEndpoint};
use crate::domain::Id;
use crate::error::{ApiError, StorageError};
use crate::wal::{Change, IdemEntry, Record};

/// An account with its derived balance and its transactions. Every account
/// is in memory for ever, so its lists are `ThinVec`s: 8 bytes each and no
/// allocation while empty, as most idle members' are (a `Vec` is 24 bytes;
/// docs/performance.md, "Scale").
#[derive(Debug, Clone, PartialEq)]
pub struct AccountEntry {
    /// The account itself, inline: one allocation per account, not two (a
    /// snapshot's copy shares the whole entry, `SnapshotItem::AccountOf`).
    pub account: Account,
    /// Sum of the points of the account's transactions; changed only by applying one.
    pub balance: i64,
    /// Points its open (pending or attached) redemptions hold: what a
    /// release may still return. Changed only by applying a redemption
    /// (`check::redemption`); earning leaves room for it
    /// (`domain::points::earning_room`), so a release never passes the cap.
    pub held: i64,
    /// The account's points transactions, oldest first, as their positions
    /// in the transactions table's insertion order (4 bytes each, not a
    /// 24-byte id; `account_index.rs` pages over them).
    pub transactions: ThinVec<u32>,
    /// Points of its pending lots: earned, not yet spendable. Moved only by
    /// applying a transaction (its `pending` part) or a lot leaving pending.
    pub pending: i64,
    /// Its open (pending or available) lots, as positions in the lots table,
    /// in the order they were made (ascending): what spending and clawbacks
    /// read (`State::lots_to_spend`).
    pub open_lots: ThinVec<u32>,
    /// The open lots that expire (a subset of `open_lots`, ascending): what
    /// `next_expiry` reads, and what spending takes first. Empty in a program
    /// without expiry, so an account view costs nothing more there.
    pub expiring_lots: ThinVec<u32>,
}

impl Keyed for AccountEntry {
    fn id(&self) -> &str {
        &self.account.id
    }

    fn created(&self) -> i64 {
        self.account.created
    }
}

/// The objects of the other tables carry their own `id` and `created`.
macro_rules! keyed_by_fields {
    ($($object:ty),* $(,)?) => {$(
        impl Keyed for $object {
            fn id(&self) -> &str {
                &self.id
            }

            fn created(&self) -> i64 {
                self.created
            }
        }
    )*};
}

keyed_by_fields!(
    Customer,
    EarningRule,
    Payment,
    PointsTransaction,
    Refund,
    Reward,
    Redemption,
    Event,
    WebhookEndpoint,
    Delivery,
    ApiKey,
    PointsLot
);

#[derive(Default)]
pub struct State {
    pub customers: Table<Customer>,
    /// Customers by email (`email_index.rs`): what `GET /v1/customers?email=` walks.
    pub customers_by_email: email_index::EmailIndex,
    pub accounts: Table<AccountEntry>,
    pub program: RwLock<Program>,
    pub earning_rules: Table<EarningRule>,
    /// Every rule by currency (active or not): what completing a payment reads.
    rules_by_currency: RwLock<HashMap<Currency, Vec<EarningRule>>>,
    pub payments: Table<Payment>,
    /// Payments by customer (`index.rs`): what `GET /v1/payments?customer=` walks.
    pub payments_by_customer: Index,
    pub transactions: Table<PointsTransaction>,
    /// Transactions by type: what `GET /v1/loyalty/transactions?type=` walks
    /// without an account (with one, the account's own list is walked).
    pub transactions_by_type: Index,
    pub refunds: Table<Refund>,
    /// Refunds by payment.
    pub refunds_by_payment: Index,
    pub rewards: Table<Reward>,
    pub redemptions: Table<Redemption>,
    /// Redemptions by account.
    pub redemptions_by_account: Index,
    /// Open redemptions by deadline: what the expiry timer scans.
    expiries: parking_lot::Mutex<BTreeSet<(i64, Id)>>,
    pub events: Table<Event>,
    /// Events by type.
    pub events_by_type: Index,
    pub webhook_endpoints: Table<WebhookEndpoint>,
    pub deliveries: Table<Delivery>,
    /// Deliveries by endpoint: what `GET /v1/webhook_deliveries?endpoint=` walks.
    pub deliveries_by_endpoint: Index,
    /// Deliveries pending or failed (`unfinished.rs`): what
    /// `GET /v1/webhook_deliveries?status=` walks for those two.
    pub unfinished_deliveries: unfinished::Unfinished,
    /// Endpoints not deleted: what every commit reads to fan events out.
    live_endpoints: RwLock<Arc<Vec<WebhookEndpoint>>>,
    /// Pending deliveries of each endpoint by next attempt: what the webhook
    /// dispatcher scans (per endpoint, so one busy endpoint cannot hide the others').
    due_deliveries: parking_lot::Mutex<HashMap<Id, BTreeSet<(i64, Id)>>>,
    pub idempotency: IdemStore,
    /// API keys (revoked ones too: a revoked key stays, refused and unlisted).
    pub api_keys: Table<ApiKey>,
    /// Secret hash -> key, and when each key was last used: what auth reads.
    pub api_key_index: ApiKeyIndex,
    /// Points lots (`domain::lots`), and each account's.
    pub lots: Table<PointsLot>,
    pub lots_by_account: Index,
    /// Every lot in spending order, by status (`lot_order.rs`): what a lot
    /// list without `account` walks.
    pub lot_order: lot_order::LotOrder,
    /// Lot deadlines the lots timer acts on: pending lots by `available_at`,
    /// spendable ones by `expires_at` and by `warn_at`.
    lot_deadlines: parking_lot::Mutex<BTreeSet<(i64, Id)>>,
    /// Events and finished deliveries older than this (by a record's time)
    /// are forgotten as records apply (`forget_expired`); 0 keeps them.
    event_retention_seconds: AtomicI64,
    /// What history has not taken yet (`cold.rs`).
    cold: cold::ColdQueue,
    /// While a snapshot loads: history already holds every object in it
    /// (`State::load_cold_from_history`).
    snapshot_in_history: AtomicBool,
    /// While a local checkpoint loads (`checkpoint.rs`).
    checkpoint_load: AtomicBool,
    /// LSN of the last record applied.
    applied_lsn: AtomicU64,
    /// Held by `apply` for one record, by readers for one read (`gate.rs`).
    gate: Gate,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::Acquire)
    }

    pub fn program(&self) -> Program {
        self.program.read().clone()
    }

    /// Runs `read` between two records, never in the middle of one (`gate.rs`):
    /// what it sees of the tables is whole records. For one object read;
    /// `read` must not wait for anything, nor call `visible` again.
    pub fn visible<R>(&self, read: impl FnOnce(&State) -> R) -> R {
        let _between_records = self.gate.read();
        read(self)
    }

    /// One page of `table`'s list, newest first, as the table was between
    /// two records (`Table::page`). Returns `has_more`.
    pub fn page<T: Keyed>(
        &self,
        table: &Table<T>,
        params: &ListParams,
        keep: impl Fn(&T) -> bool,
        emit: impl FnMut(&T),
    ) -> Result<bool, ApiError> {
        table.page(&self.gate, params, keep, emit)
    }

    /// The active earning rules of `currency`.
    pub fn active_rules(&self, currency: &str) -> Vec<EarningRule> {
        self.rules_by_currency
            .read()
            .get(currency)
            .map(|rules| rules.iter().filter(|r| r.active).cloned().collect())
            .unwrap_or_default()
    }

    /// Up to `max` open redemptions whose deadline is at or before `now`.
    pub fn due_redemptions(&self, now: i64, max: usize) -> Vec<Id> {
        self.expiries.lock().iter().take_while(|(at, _)| *at <= now).take(max).map(|(_, id)| id.clone()).collect()
    }

    /// Pending deliveries due at `now`: for each endpoint, at most `room(endpoint)`
    /// of its earliest.
    pub fn due_deliveries(&self, now: i64, room: impl Fn(&Id) -> usize) -> Vec<Id> {
        let due = self.due_deliveries.lock();
        let mut out = Vec::new();
        for (endpoint, set) in due.iter() {
            let n = room(endpoint);
            out.extend(set.iter().take_while(|(at, _)| *at <= now).take(n).map(|(_, id)| id.clone()));
        }
        out
    }

    /// Pending deliveries, due or waiting for a retry (what `/metrics` shows as the backlog).
    pub fn pending_deliveries(&self) -> usize {
        self.due_deliveries.lock().values().map(BTreeSet::len).sum()
    }

    /// Endpoints not deleted, oldest first.
    pub fn live_webhook_endpoints(&self) -> Arc<Vec<WebhookEndpoint>> {
        self.live_endpoints.read().clone()
    }

    /// An account's balance, if the account exists.
    pub fn balance(&self, account: &str) -> Option<i64> {
        self.accounts.with(account, |e| e.balance)
    }

    /// Up to `max` lots with a deadline (becoming available, a warning,
    /// expiry) at or before `now`, soonest first.
    pub fn due_lots(&self, now: i64, max: usize) -> Vec<Id> {
        let deadlines = self.lot_deadlines.lock();
        let mut out: Vec<Id> = Vec::new();
        for (_, id) in deadlines.iter().take_while(|(at, _)| *at <= now) {
            if out.len() >= max {
                break;
            }
            if !out.contains(id) {
                out.push(id.clone());
            }
        }
        out
    }

    /// An account's balances as its view shows them: `next_expiry` is the
    /// soonest `expires_at` of its spendable lots, with what they hold.
    pub fn balances(&self, e: &AccountEntry) -> Balances {
        let mut next: Option<NextExpiry> = None;
        for position in &e.expiring_lots {
            let Some(Some((points, at))) =
                self.lots.with_at(*position, |l| l.expires_at.filter(|_| l.is_spendable()).map(|at| (l.remaining, at)))
            else {
                continue;
            };
            next = match next {
                Some(n) if n.expires_at < at => Some(n),
                Some(n) if n.expires_at == at => {
                    Some(NextExpiry { points: n.points.saturating_add(points), expires_at: at })
                }
                _ => Some(NextExpiry { points, expires_at: at }),
            };
        }
        Balances { balance: e.balance, pending_balance: e.pending, next_expiry: next }
    }

    /// Calls `f` with every lot of `account` (its group of `lots_by_account`,
    /// oldest first), each read whole from memory or history with the writes
    /// going on. A lot history cannot give is an error, never a lot passed over.
    pub fn for_each_lot_of_account(&self, account: &str, mut f: impl FnMut(&PointsLot)) -> Result<(), StorageError> {
        for position in self.lots_by_account.positions(account) {
            self.lots.try_with_at(position, &mut f)?;
        }
        Ok(())
    }

    /// Copies of an account's open lots (pending or available).
    #[cfg(test)]
    pub fn open_lots(&self, account: &str) -> Vec<PointsLot> {
        let positions = self.accounts.with(account, |e| e.open_lots.clone()).unwrap_or_default();
        positions.into_iter().filter_map(|p| self.lots.with_at(p, PointsLot::clone)).collect()
    }

    /// Copies of the open lots of `account` that spending `points` may take,
    /// in any order (the caller sorts them, `domain::lots::spending_order`):
    /// every expiring one (they come first), then the never-expiring ones
    /// oldest first until their spendable points cover what the expiring
    /// ones leave, and any made in the same second as the last one taken (the
    /// order breaks ties by id). An account with many never-expiring lots
    /// copies a few, not all, for each redemption; those are cold once
    /// history has them (`PointsLot::waits_for_nothing`), so a lot history
    /// cannot give is an error, never a lot passed over.
    pub fn lots_to_spend(&self, account: &str, points: i64) -> Result<Vec<PointsLot>, StorageError> {
        let Some((open, expiring)) = self.accounts.with(account, |e| (e.open_lots.clone(), e.expiring_lots.clone()))
        else {
            return Ok(Vec::new());
        };
        let mut out: Vec<PointsLot> = Vec::new();
        let mut covered = 0i64;
        for position in &expiring {
            if let Some(l) = self.lots.try_with_at(*position, PointsLot::clone)? {
                if l.is_spendable() {
                    covered = covered.saturating_add(l.remaining);
                }
                out.push(l);
            }
        }
        let mut last_created: Option<i64> = None;
        for position in open.iter().filter(|p| expiring.binary_search(p).is_err()) {
            // From the order, so the lot past the last one taken is not read.
            let Some(created) = self.lots.created_at(*position) else { continue };
            if covered >= points && last_created != Some(created) {
                break;
            }
            let Some(l) = self.lots.try_with_at(*position, PointsLot::clone)? else { continue };
            if l.is_spendable() {
                covered = covered.saturating_add(l.remaining);
                last_created = Some(l.created);
            }
            out.push(l);
        }
        Ok(out)
    }

    /// An account's balance and the points its open redemptions hold, if the account exists.
    pub fn figures(&self, account: &str) -> Option<Figures> {
        self.accounts.with(account, AccountEntry::figures)
    }

    /// Makes room for `sizes` objects in the tables that grow with the ledger
    /// (before a snapshot load, which checks the counts against the file).
    pub fn reserve(&self, sizes: &TableSizes) {
        // Destructured, so that a table added to `TableSizes` cannot be left out.
        let TableSizes { customers, accounts, payments, transactions, events, redemptions, deliveries } = *sizes;
        let n = |count: u64| count as usize;
        self.customers.reserve(n(customers));
        self.customers_by_email.reserve(n(customers));
        self.accounts.reserve(n(accounts));
        self.payments.reserve(n(payments));
        self.transactions.reserve(n(transactions));
        self.events.reserve(n(events));
        self.redemptions.reserve(n(redemptions));
        self.deliveries.reserve(n(deliveries));
    }

    /// Gives back the spare capacity of every table (after replay, when the
    /// tables grew by doubling; the memory target per idle account, docs/performance.md).
    pub fn shrink_to_fit(&self) {
        self.customers.shrink_to_fit();
        self.customers_by_email.shrink_to_fit();
        self.accounts.shrink_to_fit();
        self.earning_rules.shrink_to_fit();
        self.payments.shrink_to_fit();
        self.transactions.shrink_to_fit();
        self.refunds.shrink_to_fit();
        self.rewards.shrink_to_fit();
        self.redemptions.shrink_to_fit();
        self.events.shrink_to_fit();
        self.webhook_endpoints.shrink_to_fit();
        self.deliveries.shrink_to_fit();
        self.api_keys.shrink_to_fit();
        self.lots.shrink_to_fit();
    }

    /// Tests only: changes an account behind the ledger's back (what damage
    /// or a bug would do), so a test can show that `verify` notices. Table
    /// writes are otherwise reachable only through `apply`.
    #[cfg(test)]
    pub(crate) fn tamper_account(&self, id: &str, f: impl FnOnce(&mut AccountEntry)) {
        self.accounts.update(id, f);
    }

    /// Applies one durable record. Errors mean the log contradicts itself.
    /// Readers see none of it until all of it is applied (the apply gate).
    pub fn apply(&self, lsn: u64, record: Record) -> Result<(), StorageError> {
        let _whole_record = self.gate.apply();
        for change in record.changes {
            self.apply_change(lsn, change)?;
        }
        self.finish_record(lsn, record.time, record.idem);
        Ok(())
    }

    /// What a record does besides its changes, once they are applied: keep its
    /// idempotent answer, and move `applied_lsn` to it. Shared with the replay
    /// lanes, so replay and the live path cannot drift apart here.
    fn finish_record(&self, lsn: u64, time: i64, idem: Option<IdemEntry>) {
        if let Some(idem) = idem {
            self.idempotency.store(idem, time, lsn);
        }
        self.forget_expired(lsn, time);
        self.applied_lsn.store(lsn, Ordering::Release);
    }

    /// Sets how long events and finished deliveries are kept
    /// (`LEDGER_EVENT_RETENTION_DAYS`; before recovery, so replay forgets the same).
    pub fn set_event_retention_seconds(&self, seconds: i64) {
        self.event_retention_seconds.store(seconds, Ordering::Relaxed);
    }

    /// Retention: forgets the events, and the deliveries no longer pending,
    /// created before `time` minus the retention period, oldest first, at most
    /// `RETENTION_FORGET_PER_RECORD` of each per record (so an apply never
    /// stalls, and a backlog goes within a few records since each earn makes
    /// two events). Driven by the record's time, so replay forgets exactly
    /// what the live server forgot (docs/decisions.md, "Retention").
    fn forget_expired(&self, lsn: u64, time: i64) {
        let retention = self.event_retention_seconds.load(Ordering::Relaxed);
        if retention <= 0 {
            return;
        }
        let cutoff = time.saturating_sub(retention);
        let forgotten = |table| move |id| self.queue_forgotten(lsn, table, id);
        if self.events.forget_oldest(
            |_, created| created < cutoff,
            RETENTION_FORGET_PER_RECORD,
            forgotten(ColdTable::Events),
        ) > 0
        {
            self.events_by_type.trim_before(self.events.first_live());
        }
        // A cold delivery is one no longer pending (`ColdObject::of`).
        if self.deliveries.forget_oldest(
            |d, created| created < cutoff && d.is_none_or(|d| d.status != DeliveryStatus::Pending),
            RETENTION_FORGET_PER_RECORD,
            forgotten(ColdTable::Deliveries),
        ) > 0
        {
            self.deliveries_by_endpoint.trim_before(self.deliveries.first_live());
            self.unfinished_deliveries.trim_before(self.deliveries.first_live());
        }
    }

    /// Applies one change of record `lsn` (0: an item of a snapshot), and
    /// queues the version it puts for history if that one goes cold.
    fn apply_change(&self, lsn: u64, change: Change) -> Result<(), StorageError> {
        self.queue_cold(lsn, &change);
        match change {
            Change::PutCustomer(c) => {
                // One thread applies, so the version read here is the one being replaced.
                let by_email = &self.customers_by_email;
                let after = c.email.as_deref().map(|e| by_email.hash(e));
                // Customers stay in memory: the version replaced comes back from the put.
                let (position, before) = self.customers.put_replacing(c)?;
                by_email.put(position, before.and_then(|old| old.email.as_deref().map(|e| by_email.hash(e))), after);
            }
            Change::PutAccount(a) => {
                let id = a.id.clone();
                self.accounts.upsert(&id, |slot| match slot {
                    Some(entry) => {
                        entry.account = Arc::unwrap_or_clone(a);
                        None
                    }
                    None => Some(AccountEntry {
                        account: Arc::unwrap_or_clone(a),
                        balance: 0,
                        held: 0,
                        transactions: ThinVec::new(),
                        pending: 0,
                        open_lots: ThinVec::new(),
                        expiring_lots: ThinVec::new(),
                    }),
                })?;
            }
            Change::PutProgram(p) => *self.program.write() = Arc::unwrap_or_clone(p),
            Change::PutProgramV1(_) | Change::PutTransactionV1(_) => return self.apply_change(lsn, change.upgrade()),
            Change::PutLot(l) => self.apply_lot(l)?,
            Change::PutEarningRule(rule) => {
                let mut by_currency = self.rules_by_currency.write();
                let rules = by_currency.entry(rule.currency.clone()).or_default();
                match rules.iter_mut().find(|r| r.id == rule.id) {
                    Some(r) => *r = EarningRule::clone(&rule),
                    None => rules.push(EarningRule::clone(&rule)),
                }
                self.earning_rules.put(rule)?;
            }
            Change::PutPayment(p) => {
                let customer = p.customer.clone();
                let (position, new) = self.payments.put_telling(p)?;
                if let (true, Some(customer)) = (new, customer) {
                    self.payments_by_customer.push(&customer, position);
                }
            }
            Change::PutTransaction(tx) => self.apply_transaction(tx)?,
            Change::PutReward(r) => {
                self.rewards.put(r)?;
            }
            Change::PutRedemption(r) => self.apply_redemption(r)?,
            Change::PutEvent(e) if e.is_old_layout() => {
                return self.apply_change(lsn, Change::PutEvent(e).upgrade());
            }
            Change::PutEvent(e) => {
                let kind = e.kind;
                let (position, new) = self.events.put_telling(e)?;
                if new {
                    self.events_by_type.push(kind.as_str(), position);
                }
            }
            Change::PutWebhookEndpointV1(old) => {
                // From a snapshot written before endpoints had a status (WAL
                // records are upgraded when decoded): applied as it reads today.
                return self.apply_change(lsn, Change::PutWebhookEndpointV1(old).upgrade());
            }
            Change::PutWebhookEndpoint(w) => {
                {
                    let mut live = self.live_endpoints.write();
                    let mut next: Vec<WebhookEndpoint> = live.iter().filter(|e| e.id != w.id).cloned().collect();
                    if !w.deleted {
                        next.push(WebhookEndpoint::clone(&w));
                    }
                    *live = Arc::new(next);
                }
                self.webhook_endpoints.put(w)?;
            }
            Change::PutDelivery(d) => {
                let previous = self.deliveries.try_with(&d.id, |old| old.next_attempt_at)?;
                {
                    let mut due = self.due_deliveries.lock();
                    let set = due.entry(d.endpoint.clone()).or_default();
                    if let Some(at) = previous {
                        set.remove(&(at, d.id.clone()));
                    }
                    if d.status == DeliveryStatus::Pending {
                        set.insert((d.next_attempt_at, d.id.clone()));
                    }
                    if set.is_empty() {
                        due.remove(&d.endpoint);
                    }
                }
                let (endpoint, status) = (d.endpoint.clone(), d.status);
                let (position, new) = self.deliveries.put_telling(d)?;
                if new {
                    self.deliveries_by_endpoint.push(&endpoint, position);
                }
                self.unfinished_deliveries.set(position, status);
            }
            Change::PutRefund(r) => {
                let payment = r.payment.clone();
                let (position, new) = self.refunds.put_telling(r)?;
                if new {
                    self.refunds_by_payment.push(&payment, position);
                }
            }
            Change::PutApiKey(k) => {
                // One thread applies, so the version read here is the one being replaced.
                let previous = self.api_keys.with(&k.id, ApiKey::clone);
                self.api_key_index.put(previous.as_ref(), &k);
                self.api_keys.put(k)?;
            }
            Change::PutEventOf(of) => {
                // `Record::decode` resolves these; one here is a bug, not a bad log.
                return Err(check::unresolved_event(&of.id).into());
            }
        }
        Ok(())
    }

    /// Invariant 5: a balance moves only here, by a transaction's points, and
    /// must land on the transaction's `balance_after` (invariant 3 checked
    /// live); the rule is `check::transaction`, which `State::check` runs too.
    fn apply_transaction(&self, tx: Arc<PointsTransaction>) -> Result<(), StorageError> {
        self.put_transaction(tx, true)
    }

    /// `apply_transaction`; `check_balance_after` is false only for a
    /// snapshot's transactions (`restore_item`).
    pub(super) fn put_transaction(
        &self,
        tx: Arc<PointsTransaction>,
        check_balance_after: bool,
    ) -> Result<(), StorageError> {
        let written = self.transactions.contains(&tx.id);
        let figures = check::transaction(&tx, written, self.figures(&tx.account), check_balance_after)?;
        let (account, kind) = (tx.account.clone(), tx.kind);
        let (position, new) = self.transactions.put_telling(tx)?;
        if new {
            self.transactions_by_type.push(kind.as_str(), position);
        }
        // Only this thread applies to accounts, so nothing moved the balance since the check.
        self.accounts.update(&account, |e| {
            e.balance = figures.balance;
            e.pending = figures.pending;
            e.transactions.push(position);
        });
        Ok(())
    }

    /// A new version of a lot: a lot leaving pending moves its points to the
    /// balance (`check::lot`, which `State::check` runs too); the account's
    /// open lots and the lot deadlines follow it.
    fn apply_lot(&self, l: Arc<PointsLot>) -> Result<(), StorageError> {
        let account = self.figures(&l.account);
        // The rule and the deadlines the version it replaces had, read in place (no copy).
        let (figures, deadlines_before) = match self
            .lots
            .try_with(&l.id, |previous| (check::lot(&l, Some(previous), account), lot_deadlines(previous)))?
        {
            Some((checked, before)) => (checked?, before),
            None => (check::lot(&l, None, account)?, Vec::new()),
        };
        let id = l.account.clone();
        let open = l.status.is_open();
        let expires = l.expires_at.is_some();
        let deadlines_now = lot_deadlines(&l);
        let lot_id = l.id.clone();
        let order_key = lot_order::Key::of(&l);
        let (position, new) = self.lots.put_telling(l)?;
        if new {
            self.lots_by_account.push(&id, position);
        }
        self.lot_order.put(position, order_key);
        // Only this thread applies to accounts and lots, so nothing moved them since the check.
        self.accounts.update(&id, |e| {
            e.balance = figures.balance;
            e.pending = figures.pending;
            keep_listed(&mut e.open_lots, position, open, new);
            keep_listed(&mut e.expiring_lots, position, open && expires, new);
        });
        if deadlines_before != deadlines_now {
            let mut deadlines = self.lot_deadlines.lock();
            for at in deadlines_before {
                deadlines.remove(&(at, lot_id.clone()));
            }
            for at in deadlines_now {
                deadlines.insert((at, lot_id.clone()));
            }
        }
        Ok(())
    }

    /// Settles each account's split between balance and pending balance
    /// after a snapshot load (`finish_restore`). The snapshot's transactions
    /// were applied without the lots' moves out of pending between them, so
    /// each account's total (`balance + pending`) is right and its split is
    /// not; the pending part is what its pending lots hold.
    pub(super) fn settle_pending_after_restore(&self) {
        let mut pending_of: HashMap<Id, i64> = HashMap::new();
        // Pending lots hold exactly the pending balance (`check::lot`), and
        // never go cold (`ColdObject::of`): history is not read.
        self.lots.for_each_hot(|l| {
            if l.status == LotStatus::Pending {
                *pending_of.entry(l.account.clone()).or_default() += l.remaining;
            }
        });
        self.accounts.for_each_mut(|e| {
            let total = e.balance.saturating_add(e.pending);
            let pending = pending_of.get(&e.account.id).copied().unwrap_or(0);
            e.pending = pending;
            e.balance = total.saturating_sub(pending);
        });
    }

    /// A new version of a redemption: its account's held points follow it
    /// (`check::redemption`, which `State::check` runs too), and the expiry
    /// index keeps the open ones.
    fn apply_redemption(&self, r: Arc<Redemption>) -> Result<(), StorageError> {
        let account = self.figures(&r.account);
        let figures =
            match self.redemptions.try_with(&r.id, |previous| check::redemption(&r, Some(previous), account))? {
                Some(checked) => checked?,
                None => check::redemption(&r, None, account)?,
            };
        let id = r.account.clone();
        let key = (r.expires_at, r.id.clone());
        let open = r.status.is_open();
        let (position, new) = self.redemptions.put_telling(r)?;
        if new {
            self.redemptions_by_account.push(&id, position);
        }
        // Only this thread applies to accounts and redemptions, so nothing moved them since the check.
        self.accounts.update(&id, |e| e.held = figures.held);
        let mut expiries = self.expiries.lock();
        if open {
            expiries.insert(key);
        } else {
            expiries.remove(&key);
        }
        Ok(())
    }
}

/// The deadlines the lots timer watches for `lot` (`State::due_lots`).
pub(super) fn lot_deadlines(lot: &PointsLot) -> Vec<i64> {
    let mut out = Vec::new();
    if lot.status == LotStatus::Pending {
        out.push(lot.available_at);
    }
    if lot.is_spendable() {
        out.extend(lot.expires_at);
        out.extend(lot.warn_at);
    }
    out
}

/// Keeps `position` in the ascending `list` exactly when `listed`. A new
/// lot's position is the table's newest, so it goes at the end with no search
/// (an account may hold many lots); another is found by binary search.
fn keep_listed(list: &mut ThinVec<u32>, position: u32, listed: bool, new: bool) {
    if new {
        if listed {
            list.push(position);
        }
        return;
    }
    match (listed, list.binary_search(&position)) {
        (true, Err(at)) => list.insert(at, position),
        (false, Ok(at)) => {
            list.remove(at);
        }
        _ => {}
    }
}

#[cfg(test)]
mod lot_tests {
    use super::*;
    use crate::domain::lots::take_in_order;
    use crate::state::test_changes::account;

    fn lot(id: &str, remaining: i64, expires_at: Option<i64>, created: i64, status: LotStatus) -> Change {
        Change::PutLot(Arc::new(PointsLot {
            id: Id::from(id),
            account: Id::from("loy_a"),
            transaction: Id::from("ptx_x"),
            points: remaining,
            remaining,
            debt_paid: 0,
            available_at: created,
            expires_at,
            warn_at: None,
            status,
            created,
        }))
    }

    /// Spending from the lots `lots_to_spend` picks takes exactly what
    /// spending from every open lot would, for every amount.
    #[test]
    fn the_lots_picked_to_spend_spend_like_all_of_them() {
        let state = State::new();
        let record = |changes| Record { time: 1, idem: None, changes };
        state.apply(1, record(vec![account("loy_a")])).unwrap();
        let mut changes = Vec::new();
        for i in 0..40i64 {
            // Never-expiring ones, several made in the same second; some expiring; a pending one.
            let expires = (i % 5 == 0).then_some(1000 - i);
            let status = if i == 7 { LotStatus::Pending } else { LotStatus::Available };
            changes.push(lot(&format!("lot_{:02}", 39 - i), 1 + i % 3, expires, i / 3, status));
        }
        // One spent to nothing, and one that comes back: the lists stay in order.
        changes.push(lot("lot_20", 0, None, 6, LotStatus::Spent));
        changes.push(lot("lot_20", 2, None, 6, LotStatus::Available));
        changes.push(lot("lot_21", 0, None, 6, LotStatus::Spent));
        state.apply(2, record(changes)).unwrap();
        let (open, expiring) =
            state.accounts.with("loy_a", |e| (e.open_lots.clone(), e.expiring_lots.clone())).unwrap();
        assert!(open.is_sorted() && expiring.is_sorted());
        assert_eq!((open.len(), expiring.len()), (39, 8));
        let total: i64 = state.open_lots("loy_a").iter().filter(|l| l.is_spendable()).map(|l| l.remaining).sum();
        for points in 0..=total + 2 {
            let mut all = state.open_lots("loy_a");
            let mut picked = state.lots_to_spend("loy_a", points).unwrap();
            assert!(picked.len() <= all.len());
            let expected = take_in_order(&mut all, points, false).unwrap();
            let got = take_in_order(&mut picked, points, false).unwrap();
            assert_eq!(got, expected, "spending {points}");
        }
        assert!(state.lots_to_spend("loy_a", 1).unwrap().len() < 20, "a small spend copies a few lots");
    }
}

#[cfg(test)]
mod delivery_index_tests {
    use super::*;
    use crate::wal::Record;

    fn delivery(id: &str, endpoint: &str, status: DeliveryStatus, created: i64) -> Change {
        Change::PutDelivery(Arc::new(Delivery {
            id: Id::from(id),
            endpoint: Id::from(endpoint),
            event: Id::from("evt_1"),
            status,
            attempts: 0,
            next_attempt_at: created,
            last_http_status: None,
            last_error: None,
            created,
            delivered_at: None,
        }))
    }

    /// Each endpoint's deliveries are listed apart, a new version of one
    /// does not list it twice, and retention takes the forgotten ones out.
    #[test]
    fn deliveries_are_listed_by_endpoint_until_retention_forgets_them() {
        let state = State::new();
        state.set_event_retention_seconds(100);
        let mut changes = Vec::new();
        for i in 0..6 {
            let endpoint = if i % 2 == 0 { "we_a" } else { "we_b" };
            changes.push(delivery(&format!("whd_{i}"), endpoint, DeliveryStatus::Delivered, i));
        }
        state.apply(1, Record { time: 10, idem: None, changes }).unwrap();
        let again = delivery("whd_2", "we_a", DeliveryStatus::Failed, 2);
        state.apply(2, Record { time: 10, idem: None, changes: vec![again] }).unwrap();
        assert_eq!(state.deliveries_by_endpoint.positions("we_a"), vec![0, 2, 4]);
        assert_eq!(state.deliveries_by_endpoint.positions("we_b"), vec![1, 3, 5]);
        // Past retention for the first three (created 0, 1, 2): forgotten, and unlisted.
        state.apply(3, Record { time: 103, idem: None, changes: vec![] }).unwrap();
        assert_eq!(state.deliveries.first_live(), 3);
        assert_eq!(state.deliveries_by_endpoint.positions("we_a"), vec![4]);
        assert_eq!(state.deliveries_by_endpoint.positions("we_b"), vec![3, 5]);
    }

    /// Pending and failed deliveries are kept by status as each new version
    /// moves them, delivered ones not at all, and retention takes the
    /// forgotten ones out.
    #[test]
    fn unfinished_deliveries_follow_each_status_until_retention_forgets_them() {
        let state = State::new();
        state.set_event_retention_seconds(100);
        let statuses = [DeliveryStatus::Failed, DeliveryStatus::Pending, DeliveryStatus::Delivered];
        let changes = (0..6).map(|i| delivery(&format!("whd_{i}"), "we_a", statuses[i % 3], i as i64)).collect();
        state.apply(1, Record { time: 10, idem: None, changes }).unwrap();
        let kept = |status| state.unfinished_deliveries.positions(status);
        assert_eq!((kept(DeliveryStatus::Failed), kept(DeliveryStatus::Pending)), (vec![0, 3], vec![1, 4]));
        assert_eq!(kept(DeliveryStatus::Delivered), Vec::<u32>::new());
        // A retry of a failed one, one delivered, one failing for good.
        let changes = vec![
            delivery("whd_0", "we_a", DeliveryStatus::Pending, 0),
            delivery("whd_1", "we_a", DeliveryStatus::Delivered, 1),
            delivery("whd_4", "we_a", DeliveryStatus::Failed, 4),
        ];
        state.apply(2, Record { time: 10, idem: None, changes }).unwrap();
        assert_eq!((kept(DeliveryStatus::Failed), kept(DeliveryStatus::Pending)), (vec![3, 4], vec![0]));
        // Past retention for those created before 4, but a pending one holds
        // retention back (it forgets oldest first): nothing goes.
        state.apply(3, Record { time: 104, idem: None, changes: vec![] }).unwrap();
        assert_eq!(state.deliveries.first_live(), 0);
        // Delivered: the first four are forgotten, and the failed one among them unlisted.
        let done = vec![delivery("whd_0", "we_a", DeliveryStatus::Delivered, 0)];
        state.apply(4, Record { time: 104, idem: None, changes: done }).unwrap();
        assert_eq!(state.deliveries.first_live(), 4);
        assert_eq!((kept(DeliveryStatus::Failed), kept(DeliveryStatus::Pending)), (vec![4], vec![]));
        assert_eq!(state.unfinished_deliveries.len(), 1);
    }
}

#[cfg(test)]
mod size_tests {
    use super::*;

    /// What every member keeps in memory for ever, idle or not
    /// (docs/performance.md, "Scale"): a field that grows one of these shows
    /// here, not months later in a bench.
    #[test]
    fn a_members_objects_keep_their_sizes() {
        assert_eq!(std::mem::size_of::<AccountEntry>(), 112, "an account's entry, the account inline");
        assert_eq!(std::mem::size_of::<Account>(), 64, "an account");
        assert_eq!(std::mem::size_of::<Customer>(), 112, "a customer");
    }
}
