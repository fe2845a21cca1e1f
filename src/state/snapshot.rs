//! The state as a sequence of items that re-applies cleanly: what a snapshot holds.
//!
//! Records are state-based (full new versions of objects) and balances move
//! only by points transactions, so the whole state can be written as a list
//! of the same `Change`s the WAL carries, in an order in which `State::apply`
//! accepts them: every object before anything that needs it, and every points
//! transaction in its table order (which rebuilds each balance and each
//! per-account index and re-checks every `balance_after` on load). Tables are
//! walked in insertion order, so lists come back in the same order.
//!
//! `State::snapshot_placed` is the one place that knows every table: a new
//! table must be added there (and to `restore_item` if it is not a `Change`),
//! or snapshots silently lose it. The round-trip test below catches a table
//! whose contents do not survive a snapshot.

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::table::{ArchivedIds, Bounds};
use super::{AccountEntry, ColdObject, ColdRef, ColdTable, State, Stored};
use crate::domain::members::Account;
use crate::domain::Id;
use crate::error::StorageError;
use crate::wal::{Change, IdemEntry};

/// One item of a snapshot. Encoded by variant index (bincode): append new
/// variants at the end, never reorder (docs/formats.md).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum SnapshotItem {
    /// An object version, applied exactly like a WAL change.
    Change(Change),
    /// A stored idempotent response with the time of its record (its retention clock).
    /// Boxed so that an item is a few words: a snapshot holds millions of them
    /// in memory between the copy and the write (serde writes the box as its value).
    Idempotency { entry: Box<IdemEntry>, created: i64 },
    /// How many objects each big table holds, written first so that a load
    /// can size the tables once instead of growing them by doubling (every
    /// doubling rehashes the whole table). Only a hint: an older snapshot
    /// has none, and a wrong count only costs time.
    Sizes(Box<TableSizes>),
    /// Right after `Sizes` in a local checkpoint (`checkpoint.rs`): accounts come with
    /// their figures (`Account`), and transactions do not move them.
    Checkpoint,
    /// A local checkpoint's account, with its balance and pending balance
    /// (inline, not boxed: the copy at the barrier allocates nothing per account).
    Account { account: Arc<Account>, balance: i64, pending: i64 },
    /// A local checkpoint's cold object: history holds its body.
    ColdRef(Box<ColdRef>),
    /// In a local checkpoint, in place of an object that was cold at the
    /// barrier and forgotten past retention before the writer named it:
    /// loads as nothing (the records replayed after it forget it anyway).
    Gone,
    /// A local checkpoint's archived table (`ColdTable` byte): positions
    /// `first_live..first_hot` are in history only; its objects written
    /// after this start at `first_hot`. Comes before its `Listed` items and
    /// its objects.
    Archived { table: u8, first_live: u32, first_hot: u32 },
    /// In a local checkpoint, right after `Archived`: archived positions
    /// listed under one key of one index.
    Listed(Box<Listed>),
    /// In a local checkpoint, right after an archived table's `Archived` and
    /// `Listed` items: its ids that may be archived are at most `greatest`
    /// (`None`: none is archived). A put of an id above it is of a new
    /// object, with no history read (`Table::attach_archive`); a checkpoint
    /// without this item has the table ask history for every id.
    ArchivedIds { table: u8, greatest: Option<Id> },
    // Variants written to files go above: serde numbers a skipped variant
    // on the way out and not on the way in, so one above them would shift
    // every index after it when read.
    /// Never in a file: between the capture and the write, an object that
    /// was cold at the capture. The writer replaces it with the object as
    /// history's view of that moment holds it (`snapshot::persist`).
    #[serde(skip)]
    Cold { table: ColdTable, id: Id },
    /// Never in a file: in a local checkpoint's capture, the positions
    /// `from..to` of a table, whose objects not among the `hot` ones copied
    /// were cold at the barrier; the writer names them (`CheckpointItems`).
    #[serde(skip)]
    ColdRun { table: ColdTable, from: u32, to: u32, hot: u32 },
    /// Never in a file: an archived table's positions `from..to` at the
    /// capture, which the writer reads from history's view of that moment,
    /// whole, in order (`history::resolve_cold`), each of the `revived` ones
    /// (in memory, newer than history's: ascending positions) as memory had it.
    #[serde(skip)]
    ArchivedRun { table: ColdTable, from: u32, to: u32, revived: Box<[(u32, SnapshotItem)]> },
    /// Never in a file: an account as the capture found it (its entry
    /// shared, so the copy allocates nothing per account). Written as
    /// `Account` with its figures in a local checkpoint, else as the
    /// `PutAccount` change (`written`).
    #[serde(skip)]
    AccountOf { entry: Arc<AccountEntry>, checkpoint: bool },
}

impl SnapshotItem {
    /// The item as a file holds it: an `AccountOf` becomes what it stands for.
    pub fn written(self) -> SnapshotItem {
        match self {
            SnapshotItem::AccountOf { entry, checkpoint: true } => SnapshotItem::Account {
                account: Arc::new(entry.account.clone()),
                balance: entry.balance,
                pending: entry.pending,
            },
            SnapshotItem::AccountOf { entry, checkpoint: false } => {
                SnapshotItem::Change(Change::PutAccount(Arc::new(entry.account.clone())))
            }
            other => other,
        }
    }
}

/// The archived positions listed under `key` in one index (`ListedIn`), oldest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Listed {
    pub index: u8,
    pub key: Id,
    pub positions: Vec<u32>,
}

/// The indexes a `SnapshotItem::Listed` names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum ListedIn {
    /// An account's points transactions (its key: the account).
    AccountTransactions = 0,
    /// `State::events_by_type` (its key: the event type).
    EventsByType = 1,
    /// An account's open lots (its key: the account): a checkpoint names
    /// cold lots without their status, so it lists which are open.
    OpenLots = 2,
    /// `State::transactions_by_type` (its key: the type): a checkpoint names
    /// cold transactions without their type, so it lists each type's.
    TransactionsByType = 3,
    /// `State::lot_order` (its key: `lot_order::Key::encode`): a checkpoint
    /// names cold lots without their status or expiry, so it lists each group.
    LotOrder = 4,
    /// `State::payments_by_customer` (its key: the customer): archived
    /// payments, which a checkpoint does not name.
    PaymentsByCustomer = 5,
    /// `State::lots_by_account` (its key: the account): archived lots,
    /// which a checkpoint does not name.
    LotsByAccount = 6,
}

/// How many items `item` stands for in a file (an `ArchivedRun` is read out
/// whole by the writer).
pub fn written_count(item: &SnapshotItem) -> usize {
    match item {
        SnapshotItem::ArchivedRun { from, to, .. } => to.saturating_sub(*from) as usize,
        _ => 1,
    }
}

/// Items whose count is known ahead (the file's header says it first).
pub struct Counted<I> {
    items: I,
    left: usize,
}

impl Counted<std::vec::IntoIter<Placed>> {
    /// `items` in their places (`in_place`), counted as written.
    pub fn in_place(items: Vec<Placed>) -> Self {
        let left = items.iter().map(|(_, item)| written_count(item)).sum();
        Counted { items: in_place(items), left }
    }
}

impl<I: Iterator<Item = Placed>> Iterator for Counted<I> {
    type Item = SnapshotItem;

    fn next(&mut self) -> Option<SnapshotItem> {
        let (_, item) = self.items.next()?;
        self.left = self.left.saturating_sub(written_count(&item));
        Some(item)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl<I: Iterator<Item = Placed>> ExactSizeIterator for Counted<I> {}

/// A snapshot item and its place: its part of the snapshot (a table, or a
/// single item) in the high 32 bits, its place in that part (a table's
/// insertion order) in the low 32.
pub type Placed = (u64, SnapshotItem);

/// `items` in their places, by a sort (off the barrier: `State::snapshot_placed`).
pub fn in_place(mut items: Vec<Placed>) -> std::vec::IntoIter<Placed> {
    items.sort_unstable_by_key(|(place, _)| *place);
    items.into_iter()
}

/// Object counts of the tables that grow with the ledger (`SnapshotItem::Sizes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct TableSizes {
    pub customers: u64,
    pub accounts: u64,
    pub payments: u64,
    pub transactions: u64,
    pub events: u64,
    pub redemptions: u64,
    pub deliveries: u64,
}

impl TableSizes {
    /// Objects counted in all (saturating: the counts come from a file).
    pub fn total(&self) -> u64 {
        // Destructured, so that a table added to the struct cannot be left out.
        let TableSizes { customers, accounts, payments, transactions, events, redemptions, deliveries } = *self;
        [customers, accounts, payments, transactions, events, redemptions, deliveries]
            .iter()
            .fold(0u64, |sum, n| sum.saturating_add(*n))
    }
}

impl State {
    /// Calls `f` with every item of the state and its place (`Placed`):
    /// `in_place` puts them in an order `restore_item` accepts. Each table's
    /// objects come in the order of its buckets, which is what keeps the copy
    /// at a snapshot's barrier short (`Table::for_each_placed`).
    ///
    /// Callers must keep the state still while this runs (the WAL writer
    /// thread between two batches, or a process that is not serving), so the
    /// items are exactly the state at one LSN.
    ///
    /// `checkpoint`: a local checkpoint (`checkpoint.rs`), whose accounts
    /// carry their figures, so its cold objects may be written as references.
    ///
    /// EVERY TABLE MUST BE LISTED HERE. A table added to `State` and not to
    /// this method is lost by snapshot, restore and compaction.
    pub fn snapshot_placed(&self, checkpoint: bool, mut f: impl FnMut(Placed)) {
        // Each part of the snapshot (a table, a single item) in turn.
        let mut part = 0u64;
        let mut next_part = || {
            part += 1;
            part << 32
        };
        f((
            next_part(),
            SnapshotItem::Sizes(Box::new(TableSizes {
                customers: self.customers.len() as u64,
                accounts: self.accounts.len() as u64,
                // A checkpoint's load holds only what memory holds of an archived table.
                payments: if checkpoint { self.payments.held_len() } else { self.payments.len() } as u64,
                transactions: if checkpoint { self.transactions.held_len() } else { self.transactions.len() } as u64,
                events: if checkpoint { self.events.held_len() } else { self.events.len() } as u64,
                redemptions: self.redemptions.len() as u64,
                deliveries: self.deliveries.len() as u64,
            })),
        ));
        // A cold object is its id here: the writer reads it from history's
        // view of this moment (`SnapshotItem::Cold`). Tables without a
        // `ColdTable` never go cold.
        macro_rules! table {
            ($table:ident, $variant:ident) => {{
                let part = next_part();
                self.$table.for_each_placed(|seq, stored| {
                    if let Stored::Hot(o) = stored {
                        f((part | u64::from(seq), SnapshotItem::Change(Change::$variant(o.clone()))))
                    }
                })
            }};
            ($table:ident, $variant:ident, $kind:ident) => {{
                let part = next_part();
                self.$table.for_each_placed(|seq, stored| {
                    let item = match stored {
                        Stored::Hot(o) => SnapshotItem::Change(Change::$variant(o.clone())),
                        Stored::Cold(id) => SnapshotItem::Cold { table: ColdTable::$kind, id: id.clone() },
                    };
                    f((part | u64::from(seq), item))
                })
            }};
        }
        if checkpoint {
            f((next_part(), SnapshotItem::Checkpoint));
        }
        // The five tables a checkpoint names cold objects of: only the
        // objects in memory are copied; a run marks the positions of the
        // rest, which the writer names after the barrier (`CheckpointItems`).
        macro_rules! named {
            ($table:ident, $variant:ident, $kind:ident) => {{
                if checkpoint {
                    let run = next_part();
                    let part = next_part();
                    let (from, to, hot, bounds) = self.$table.for_each_hot_placed(|seq, o| {
                        f((part | u64::from(seq), SnapshotItem::Change(Change::$variant(o.clone()))))
                    });
                    f((run, SnapshotItem::ColdRun { table: ColdTable::$kind, from, to, hot }));
                    bounds
                } else {
                    table!($table, $variant, $kind)
                }
            }};
        }
        // An archived table: what is in history only, before the rest of
        // it (lower positions). A checkpoint marks where its memory starts
        // (and the writer lists the index entries under it,
        // `CheckpointItems`), and which ids may be archived. An object
        // revived below that start (a payment refunded, a lot spent) is no
        // part of the rest: it rides with the run of archived positions, in
        // whose place a portable snapshot writes it (`history::resolve_cold`)
        // and a checkpoint writes the revived objects alone.
        macro_rules! archived {
            ($table:ident, $variant:ident, $kind:ident) => {{
                let mark = next_part();
                let table = &self.$table;
                let mut revived = Vec::new();
                // `first_hot` stays put while the walk runs.
                let mut placed = |seq: u32, item: SnapshotItem, at: u64| {
                    if seq < table.first_hot() {
                        revived.push((seq, item));
                    } else {
                        f((at | u64::from(seq), item));
                    }
                };
                // Read in the same walk as the objects in memory (`Table::for_each_placed`).
                let Bounds { first_live, first_hot } = if checkpoint {
                    let run = next_part();
                    let part = next_part();
                    let (from, to, hot, bounds) = table.for_each_hot_placed(|seq, o| {
                        placed(seq, SnapshotItem::Change(Change::$variant(o.clone())), part)
                    });
                    f((run, SnapshotItem::ColdRun { table: ColdTable::$kind, from, to, hot }));
                    bounds
                } else {
                    let part = next_part();
                    table.for_each_placed(|seq, stored| {
                        let item = match stored {
                            Stored::Hot(o) => SnapshotItem::Change(Change::$variant(o.clone())),
                            Stored::Cold(id) => SnapshotItem::Cold { table: ColdTable::$kind, id: id.clone() },
                        };
                        placed(seq, item, part)
                    })
                };
                if checkpoint {
                    f((mark, SnapshotItem::Archived { table: ColdTable::$kind as u8, first_live, first_hot }));
                    // Read after the walk: at least every id archived then.
                    // Any id (a table loaded without this item): none is
                    // written, and the load asks history for every id again.
                    let greatest = match table.archived_ids() {
                        ArchivedIds::Nothing => Some(None),
                        ArchivedIds::UpTo(id) => Some(Some(id)),
                        ArchivedIds::Any => None,
                    };
                    if let Some(greatest) = greatest {
                        f((mark | 1, SnapshotItem::ArchivedIds { table: ColdTable::$kind as u8, greatest }));
                    }
                }
                if first_live < first_hot {
                    revived.sort_unstable_by_key(|(seq, _)| *seq);
                    let revived = revived.into_boxed_slice();
                    let run =
                        SnapshotItem::ArchivedRun { table: ColdTable::$kind, from: first_live, to: first_hot, revived };
                    f((mark | 2, run));
                }
            }};
        }
        f((next_part(), SnapshotItem::Change(Change::PutProgram(self.program().into()))));
        table!(customers, PutCustomer);
        // Accounts without balances: transactions below rebuild them (in a
        // checkpoint, with them: its transactions may be references).
        let part = next_part();
        self.accounts.for_each_placed(|seq, stored| {
            if let Stored::Hot(e) = stored {
                f((part | u64::from(seq), SnapshotItem::AccountOf { entry: e.clone(), checkpoint }))
            }
        });
        table!(earning_rules, PutEarningRule);
        table!(rewards, PutReward);
        archived!(payments, PutPayment, Payments);
        named!(refunds, PutRefund, Refunds);
        table!(redemptions, PutRedemption, Redemptions);
        // After accounts: each one moves a balance and must land on its `balance_after`.
        archived!(transactions, PutTransaction, Transactions);
        // After transactions: a lot names its account; its moves out of
        // pending are settled once all is loaded (`finish_restore`).
        archived!(lots, PutLot, Lots);
        archived!(events, PutEvent, Events);
        // Endpoints before their deliveries; both rebuild their dispatch indexes on load.
        table!(webhook_endpoints, PutWebhookEndpoint);
        table!(deliveries, PutDelivery, Deliveries);
        // Revoked keys too: a key's id stays taken, and the table is small.
        table!(api_keys, PutApiKey);
        // Only the responses history does not have yet: history keeps the rest.
        let part = next_part();
        let mut seq = 0u64;
        self.idempotency.for_each_in_order(|entry, created, _| {
            f((part | seq, SnapshotItem::Idempotency { entry: Box::new(entry), created }));
            seq += 1;
        });
    }

    /// About how many items `snapshot_placed` gives (to size a buffer once;
    /// a table missing here only costs a reallocation). A checkpoint copies
    /// only what is in memory of the five tables it names cold objects of,
    /// so its buffer follows memory, not the ledger: sized by every object,
    /// it was 40 bytes of touched memory per payment, transaction and event
    /// for the whole of each checkpoint (docs/performance.md, "Soak").
    pub fn snapshot_items_hint(&self, checkpoint: bool) -> usize {
        fn copied<T: super::Keyed>(table: &super::Table<T>, checkpoint: bool) -> usize {
            if checkpoint {
                table.len().saturating_sub(table.cold_len())
            } else {
                table.len()
            }
        }
        2 + self.customers.len()
            + self.accounts.len()
            + copied(&self.payments, checkpoint)
            + copied(&self.refunds, checkpoint)
            + copied(&self.transactions, checkpoint)
            + copied(&self.lots, checkpoint)
            + copied(&self.events, checkpoint)
            + self.idempotency.len()
    }

    /// Applies one snapshot item (loading a snapshot into an empty state).
    pub fn restore_item(&self, item: SnapshotItem) -> Result<(), StorageError> {
        match item {
            // A snapshot's transactions meet balances without the lots' moves
            // out of pending between them: `finish_restore` settles the split.
            SnapshotItem::Change(Change::PutTransaction(tx)) => self.restore_transaction(tx),
            SnapshotItem::Change(Change::PutTransactionV1(tx)) => {
                self.restore_transaction(Arc::new(Arc::unwrap_or_clone(tx).into()))
            }
            SnapshotItem::Change(change) => {
                // In today's layout first, so that what is let go of is what the table holds.
                let change = change.upgrade();
                self.restore_put(&change.clone(), || self.apply_change(0, change))
            }
            SnapshotItem::Idempotency { entry, created } => {
                // Its LSN is not kept: 0 sorts it before the replayed records.
                self.idempotency.store(*entry, created, 0);
                Ok(())
            }
            SnapshotItem::Sizes(sizes) => {
                self.reserve(&sizes);
                Ok(())
            }
            SnapshotItem::Cold { id, .. } => {
                Err(StorageError::Inconsistent(format!("a snapshot item for {id} was never read from history")))
            }
            SnapshotItem::Checkpoint => {
                if !self.accounts.is_empty() {
                    return Err(StorageError::Inconsistent("a checkpoint's mark comes after its accounts".into()));
                }
                self.begin_checkpoint_load(true);
                Ok(())
            }
            SnapshotItem::Account { account, balance, pending } => {
                self.restore_account_figures(account, balance, pending)
            }
            SnapshotItem::ColdRef(r) => self.restore_cold_ref(*r),
            SnapshotItem::Gone => Ok(()),
            SnapshotItem::Archived { table, first_live, first_hot } => {
                self.restore_archived(table, first_live, first_hot)
            }
            SnapshotItem::Listed(l) => self.restore_listed(l.index, &l.key, l.positions),
            SnapshotItem::ArchivedIds { table, greatest } => self.restore_archived_ids(table, greatest),
            SnapshotItem::ArchivedRun { table, .. } => {
                Err(StorageError::Inconsistent(format!("archived {table:?} were never read from history")))
            }
            SnapshotItem::ColdRun { table, .. } => {
                Err(StorageError::Inconsistent(format!("a run of cold {table:?} was never named")))
            }
            item @ SnapshotItem::AccountOf { .. } => self.restore_item(item.written()),
        }
    }

    /// A snapshot's transaction: applied without its `balance_after` check
    /// (see `restore_item`), and queued for history like any other, or let
    /// go of at once when history holds it already (`State::load_cold_from_history`).
    fn restore_transaction(&self, tx: Arc<crate::domain::points::PointsTransaction>) -> Result<(), StorageError> {
        let change = Change::PutTransaction(tx.clone());
        self.restore_put(&change, || {
            self.queue_cold(0, &change);
            if self.loading_checkpoint() {
                self.list_transaction(tx)
            } else {
                self.put_transaction(tx, false)
            }
        })
    }

    /// Puts a snapshot's `change` with `put` (which queues it for history,
    /// `queue_cold`); one that history already holds is not queued there and
    /// leaves memory as soon as it is in its table (`State::load_cold_from_history`).
    fn restore_put(&self, change: &Change, put: impl FnOnce() -> Result<(), StorageError>) -> Result<(), StorageError> {
        let cold = ColdObject::of(change).filter(|o| self.cold_at_load(o));
        put()?;
        if let Some(object) = cold {
            self.evict(&object);
        }
        Ok(())
    }

    /// After a snapshot taken at `lsn` is loaded: the state is at that LSN.
    pub fn finish_restore(&self, lsn: u64) {
        self.begin_checkpoint_load(false);
        self.settle_pending_after_restore();
        self.applied_lsn.store(lsn, std::sync::atomic::Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::api_keys::{secret_hash, ApiKey, Permissions};
    use crate::domain::earning::EarningRule;
    use crate::domain::events::{Event, EventData, EventType};
    use crate::domain::lots::{LotStatus, PointsLot};
    use crate::domain::members::Customer;
    use crate::domain::payments::{Payment, PaymentStatus};
    use crate::domain::points::{PointsTransaction, Source, TxType};
    use crate::domain::program::Program;
    use crate::domain::redemptions::{Redemption, RedemptionStatus};
    use crate::domain::refunds::Refund;
    use crate::domain::rewards::Reward;
    use crate::domain::webhooks::{
        Delivery, DeliveryStatus, EndpointStatus, PreviousSecret, WebhookEndpoint, WebhookEndpointV1,
    };
    use crate::domain::Id;
    use crate::state::test_changes::{account, earn};
    use crate::wal::Record;

    /// Exhaustive on purpose: a new `Change` variant fails to compile here,
    /// which leads to `one_of_each` and then to `State::snapshot_changes`.
    fn kind(c: &Change) -> &'static str {
        match c {
            Change::PutCustomer(_) => "customer",
            Change::PutAccount(_) => "account",
            Change::PutProgram(_) => "program",
            Change::PutEarningRule(_) => "earning_rule",
            Change::PutPayment(_) => "payment",
            Change::PutTransaction(_) => "transaction",
            Change::PutRefund(_) => "refund",
            Change::PutReward(_) => "reward",
            Change::PutRedemption(_) => "redemption",
            Change::PutEvent(_) => "event",
            Change::PutWebhookEndpoint(_) => "webhook_endpoint",
            // Only in data written before endpoints had a status; a snapshot writes the new one.
            Change::PutWebhookEndpointV1(_) => "webhook endpoint of the old layout",
            Change::PutDelivery(_) => "delivery",
            // Only in encoded WAL records; a snapshot writes the event itself.
            Change::PutEventOf(_) => "event reference",
            Change::PutApiKey(_) => "api_key",
            Change::PutLot(_) => "lot",
            // Only in data written before lots; a snapshot writes the new layouts.
            Change::PutTransactionV1(_) => "transaction of the old layout",
            Change::PutProgramV1(_) => "program of the old layout",
        }
    }

    /// One object of every table.
    fn one_of_each() -> Vec<Change> {
        vec![
            Change::PutProgram(
                Program {
                    clawback_allow_negative: false,
                    redemption_ttl_seconds: 600,
                    pending_days: 14,
                    expiry_days: Some(365),
                    ..Program::default()
                }
                .into(),
            ),
            Change::PutCustomer(
                Customer {
                    id: "cust_1".into(),
                    email: None,
                    name: Some("Ann".into()),
                    metadata: [("k".to_string(), "v".to_string())].into(),
                    loyalty_account: None,
                    created: 2,
                }
                .into(),
            ),
            Change::PutEarningRule(
                EarningRule {
                    id: "erl_1".into(),
                    currency: "eur".into(),
                    points: 1,
                    per_amount: 100,
                    min_amount: 0,
                    active: true,
                    created: 4,
                }
                .into(),
            ),
            Change::PutReward(
                Reward {
                    id: "rwd_1".into(),
                    name: "five off".into(),
                    points: 2,
                    discount_amount: 500,
                    discount_currency: "eur".into(),
                    active: true,
                    created: 4,
                }
                .into(),
            ),
            Change::PutPayment(
                Payment {
                    id: "pay_1".into(),
                    amount: 100,
                    amount_discount: 0,
                    amount_refunded: 50,
                    currency: "eur".into(),
                    status: PaymentStatus::Completed,
                    customer: Some("cust_1".into()),
                    metadata: Default::default(),
                    redemptions: vec![],
                    loyalty_account: Some("loy_a".into()),
                    points_earned: 5,
                    award: Some("ptx_1".into()),
                    created: 5,
                    completed_at: Some(5),
                }
                .into(),
            ),
            Change::PutRefund(
                Refund {
                    id: "re_1".into(),
                    payment: "pay_1".into(),
                    amount: 50,
                    points_clawed_back: 0,
                    clawback: None,
                    created: 6,
                }
                .into(),
            ),
            Change::PutRedemption(
                Redemption {
                    id: "rdm_1".into(),
                    account: "loy_a".into(),
                    reward: "rwd_1".into(),
                    points: 2,
                    discount: 500,
                    currency: "eur".into(),
                    status: RedemptionStatus::Pending,
                    payment: None,
                    expires_at: 1000,
                    created: 6,
                }
                .into(),
            ),
            Change::PutEvent(
                Event {
                    id: "evt_1".into(),
                    kind: EventType::PaymentCompleted,
                    created: 5,
                    data: EventData::Transaction(
                        PointsTransaction {
                            id: "ptx_0".into(),
                            account: "loy_a".into(),
                            points: 1,
                            kind: TxType::Earn,
                            source: Source::Payment { payment: "pay_1".into(), amount: 100, currency: "eur".into() },
                            balance_after: 1,
                            created: 5,
                            pending: 0,
                            lots: Vec::new(),
                            available_at: None,
                            expires_at: None,
                        }
                        .into(),
                    ),
                }
                .into(),
            ),
            Change::PutWebhookEndpoint(
                WebhookEndpoint {
                    id: "we_1".into(),
                    url: "http://127.0.0.1:9/hook".into(),
                    enabled_events: vec![],
                    secret: "whsec_x".into(),
                    deleted: false,
                    created: 5,
                    status: EndpointStatus::Disabled,
                    previous_secret: Some(PreviousSecret { secret: "whsec_old".into(), expires_at: 99 }),
                    failing_since: Some(6),
                    enabled_at: 5,
                }
                .into(),
            ),
            Change::PutDelivery(
                Delivery {
                    id: "whd_1".into(),
                    endpoint: "we_1".into(),
                    event: "evt_1".into(),
                    status: DeliveryStatus::Pending,
                    attempts: 1,
                    next_attempt_at: 900,
                    last_http_status: Some(500),
                    last_error: Some("boom".into()),
                    created: 5,
                    delivered_at: None,
                }
                .into(),
            ),
            Change::PutLot(
                PointsLot {
                    id: "lot_1".into(),
                    account: "loy_a".into(),
                    transaction: "ptx_0".into(),
                    points: 2,
                    remaining: 2,
                    debt_paid: 0,
                    available_at: 5,
                    expires_at: Some(500),
                    warn_at: None,
                    status: LotStatus::Available,
                    created: 5,
                }
                .into(),
            ),
            Change::PutApiKey(
                ApiKey {
                    id: "key_1".into(),
                    name: "reporting".into(),
                    permissions: Permissions::ReadOnly,
                    secret_hash: secret_hash(b"rk_snap"),
                    previous: None,
                    expires_at: Some(5000),
                    revoked: false,
                    created: 6,
                }
                .into(),
            ),
        ]
    }

    fn items(state: &State) -> Vec<SnapshotItem> {
        let mut placed = Vec::new();
        state.snapshot_placed(false, |p| placed.push(p));
        in_place(placed).map(|(_, item)| item.written()).collect()
    }

    fn state_with_everything() -> State {
        let state = State::new();
        let records = vec![
            Record { time: 1, idem: None, changes: vec![account("loy_b"), account("loy_a")] },
            Record { time: 2, idem: None, changes: one_of_each() },
            Record { time: 2, idem: None, changes: vec![earn("ptx_1", "loy_a", 5, 5, 7)] },
            Record {
                time: 3,
                idem: Some(IdemEntry {
                    key: "k".into(),
                    fingerprint: [1; 32],
                    status: 200,
                    body: std::sync::Arc::from(&b"{}"[..]),
                }),
                changes: vec![earn("ptx_2", "loy_b", -2, -2, 7), earn("ptx_3", "loy_a", 4, 9, 7)],
            },
        ];
        for (i, r) in records.into_iter().enumerate() {
            state.apply(i as u64 + 1, r).unwrap();
        }
        state
    }

    #[test]
    fn every_table_is_in_a_snapshot() {
        let snap = items(&state_with_everything());
        let mut kinds: Vec<&str> = snap
            .iter()
            .filter_map(|i| match i {
                SnapshotItem::Change(c) => Some(kind(c)),
                SnapshotItem::Idempotency { .. }
                | SnapshotItem::Sizes(_)
                | SnapshotItem::Cold { .. }
                | SnapshotItem::Checkpoint
                | SnapshotItem::Account { .. }
                | SnapshotItem::AccountOf { .. }
                | SnapshotItem::ColdRef(_)
                | SnapshotItem::Gone
                | SnapshotItem::ArchivedIds { .. }
                | SnapshotItem::ColdRun { .. }
                | SnapshotItem::Archived { .. }
                | SnapshotItem::Listed(_)
                | SnapshotItem::ArchivedRun { .. } => None,
            })
            .collect();
        kinds.dedup();
        let mut expected: Vec<&str> = one_of_each().iter().map(kind).collect();
        expected.extend(["account", "transaction"]);
        for k in expected {
            assert!(kinds.contains(&k), "snapshots lose the {k} table: add it to State::snapshot_placed");
        }
        assert!(snap.iter().any(|i| matches!(i, SnapshotItem::Idempotency { created: 3, .. })));
        // A cold object's id is inline (no allocation on the apply thread during the copy).
        assert!(std::mem::size_of::<SnapshotItem>() <= 32, "an item is a few words, its objects behind pointers");
    }

    /// A local checkpoint: cold payments, refunds, transactions, lots and
    /// events as references, accounts with their figures, the open lots
    /// listed. Loaded beside history, it lists the same objects in the same
    /// places under the same keys, with the same balances, open lots and lot
    /// deadlines, though some objects are in memory and some are not;
    /// without history it is refused, saying what it is.
    #[test]
    fn a_checkpoint_names_cold_objects_and_loads_to_the_same_state() {
        use crate::state::test_changes::{lot, pending_earn};
        use crate::state::CheckpointItems;
        let state = Arc::new(state_with_everything());
        // A pending lot, so a checkpoint's figures are more than a sum of
        // points; an open lot that never expires and a spent one, which go cold.
        let more = vec![
            pending_earn("ptx_p", "loy_b", 10, -2, "lot_p"),
            lot("lot_p", "loy_b", 10, 10, LotStatus::Pending),
            lot("lot_n", "loy_b", 3, 3, LotStatus::Available),
            lot("lot_s", "loy_b", 3, 0, LotStatus::Spent),
        ];
        state.apply(5, Record { time: 4, idem: None, changes: more }).unwrap();
        // The five tables' objects leave memory (history would hold them),
        // but for two transactions: a checkpoint mixes both kinds.
        let cold = state.take_cold().written;
        let stays = |o: &ColdObject| matches!(o, ColdObject::Transaction(t) if t.id == "ptx_1" || t.id == "ptx_3");
        let evicted =
            cold.iter().filter(|(_, o)| o.replaced_unread() && !stays(o)).filter(|(_, o)| state.evict(o)).count();
        assert_eq!(evicted, 7, "the payment, the refund, the event, two transactions and two lots");
        let mut placed = Vec::new();
        state.snapshot_placed(true, |p| placed.push(p));
        assert_eq!(placed.iter().filter(|(_, i)| matches!(i, SnapshotItem::ColdRun { .. })).count(), 5);
        // The same capture, for a checkpoint written before history synced through it.
        let mut unsynced = Vec::new();
        state.snapshot_placed(true, |p| unsynced.push(p));
        // Between the barrier and the write: a cold payment changes (history
        // had the version of the barrier) and the event is forgotten past retention.
        let mut payment = one_of_each()
            .into_iter()
            .find_map(|c| match c {
                Change::PutPayment(p) => Some(Arc::unwrap_or_clone(p)),
                _ => None,
            })
            .unwrap();
        payment.amount_refunded = 60;
        state.set_event_retention_seconds(1);
        let later = Record { time: 1_000, idem: None, changes: vec![Change::PutPayment(payment.into())] };
        state.apply(6, later).unwrap();
        assert!(state.events.with("evt_1", |_| ()).is_none(), "forgotten");
        // Through the file's encoding, as a load reads them.
        let encoded = |item: SnapshotItem| {
            let item = item.written();
            let mut bytes = Vec::new();
            crate::snapshot::format::encode_item(&item, &mut bytes).unwrap();
            let (back, _): (SnapshotItem, usize) =
                bincode::serde::borrow_decode_from_slice(&bytes, bincode::config::standard()).unwrap();
            assert_eq!(back, item);
            back
        };
        let named = CheckpointItems::new(state.clone(), placed, true);
        let len = named.len();
        let checkpoint: Vec<SnapshotItem> = named.map(encoded).collect();
        assert_eq!(checkpoint.len(), len, "as many items as the header will say");
        assert!(matches!(checkpoint[1], SnapshotItem::Checkpoint), "{:?}", &checkpoint[..2]);
        let refs = checkpoint.iter().filter(|i| matches!(i, SnapshotItem::ColdRef(_))).count();
        let gone = checkpoint.iter().filter(|i| matches!(i, SnapshotItem::Gone)).count();
        assert_eq!(refs + gone, evicted, "every cold object of the five tables is named");
        assert_eq!((refs, gone), (6, 1), "the event was forgotten before it was named");
        let open_listed =
            |i: &SnapshotItem| matches!(i, SnapshotItem::Listed(l) if l.index == ListedIn::OpenLots as u8);
        assert_eq!(checkpoint.iter().filter(|i| open_listed(i)).count(), 2, "each account's open lots");
        let types_listed =
            |i: &SnapshotItem| matches!(i, SnapshotItem::Listed(l) if l.index == ListedIn::TransactionsByType as u8);
        assert_eq!(checkpoint.iter().filter(|i| types_listed(i)).count(), 1, "the one type's transactions");
        let order_listed =
            |i: &SnapshotItem| matches!(i, SnapshotItem::Listed(l) if l.index == ListedIn::LotOrder as u8);
        assert_eq!(checkpoint.iter().filter(|i| order_listed(i)).count(), 4, "each lot order group");
        assert!(checkpoint.iter().all(|i| !matches!(i, SnapshotItem::Cold { .. })));
        // Unsynced, it names the same objects in the same places for the
        // writer to read from history's view of the barrier instead.
        // (Then the lots and transactions are whole, and need no list of
        // the open ones, of each type's or of the lot order.)
        let read_instead: Vec<SnapshotItem> = checkpoint
            .iter()
            .filter(|item| !open_listed(item) && !types_listed(item) && !order_listed(item))
            .map(|item| match item {
                SnapshotItem::ColdRef(r) => {
                    let table = [
                        ColdTable::Payments,
                        ColdTable::Refunds,
                        ColdTable::Transactions,
                        ColdTable::Lots,
                        ColdTable::Events,
                    ]
                    .into_iter()
                    .find(|t| *t as u8 == r.table)
                    .unwrap();
                    SnapshotItem::Cold { table, id: r.id.clone() }
                }
                other => other.clone(),
            })
            .collect();
        let unsynced: Vec<SnapshotItem> =
            CheckpointItems::new(state.clone(), unsynced, false).map(SnapshotItem::written).collect();
        assert_eq!(unsynced, read_instead);

        let refused = State::new();
        let err = checkpoint.iter().cloned().try_for_each(|i| refused.restore_item(i)).unwrap_err();
        assert!(err.to_string().contains("automatic checkpoint"), "{err}");

        let copy = State::new();
        copy.load_cold_from_history(true);
        for item in checkpoint {
            copy.restore_item(item).unwrap();
        }
        copy.finish_restore(5);
        copy.load_cold_from_history(false);
        // History holds the rest of the four tables' objects too, so the
        // load let them go as well (`State::load_cold_from_history`). (The
        // sizes hint counts the forgotten event's order entry in `state`.)
        let as_cold = |items: Vec<SnapshotItem>| -> Vec<SnapshotItem> {
            items
                .into_iter()
                .filter(|item| !matches!(item, SnapshotItem::Sizes(_)))
                .map(|item| match &item {
                    SnapshotItem::Change(c) => match ColdObject::of(c).filter(ColdObject::replaced_unread) {
                        Some(o) => SnapshotItem::Cold { table: o.table(), id: o.id().into() },
                        None => item,
                    },
                    _ => item,
                })
                .collect()
        };
        assert_eq!(as_cold(items(&copy)), as_cold(items(&state)), "the same objects in the same places");
        assert_eq!(copy.cold_objects(), 8, "a payment, a refund, four transactions and two lots");
        for account in ["loy_a", "loy_b"] {
            let lots =
                |s: &State| s.accounts.with(account, |e| (e.open_lots.clone(), e.expiring_lots.clone())).unwrap();
            assert_eq!(lots(&copy), lots(&state), "{account}'s open lots");
            assert_eq!(copy.lots_by_account.positions(account), state.lots_by_account.positions(account));
        }
        assert_eq!(copy.accounts.with("loy_b", |e| e.open_lots.len()), Some(2), "the pending lot and lot_n");
        assert_eq!(copy.due_lots(i64::MAX, 10), state.due_lots(i64::MAX, 10), "the lot deadlines");
        assert_eq!(copy.lots.with("lot_n", |l| l.remaining), None, "named: in history, not here");
        for account in ["loy_a", "loy_b"] {
            assert_eq!(copy.figures(account), state.figures(account), "{account}");
            let listed = |s: &State| s.accounts.with(account, |e| e.transactions.clone()).unwrap();
            assert_eq!(listed(&copy), listed(&state), "{account}'s transactions");
        }
        assert_eq!(copy.figures("loy_b").map(|f| f.pending), Some(10));
        for (index, key, copied) in [
            (&state.payments_by_customer, "cust_1", &copy.payments_by_customer),
            (&state.refunds_by_payment, "pay_1", &copy.refunds_by_payment),
            (&state.transactions_by_type, "earn", &copy.transactions_by_type),
        ] {
            assert!(!index.positions(key).is_empty(), "{key}");
            assert_eq!(copied.positions(key), index.positions(key), "{key}");
        }
        assert_eq!(copy.payments.id_at(0), state.payments.id_at(0), "a reference keeps its `created`");
        assert!(copy.events_by_type.positions("payment.completed").is_empty(), "the forgotten event is gone");
    }

    /// A lot that left pending between two transactions moved points without
    /// a transaction: a snapshot's transactions alone would not land on their
    /// `balance_after`s. The load settles the split from the pending lots.
    #[test]
    fn a_restore_settles_balance_and_pending_after_lots_moved() {
        use crate::state::test_changes::{lot, pending_earn};
        let state = State::new();
        let records = vec![
            vec![account("loy_a")],
            vec![pending_earn("ptx_p", "loy_a", 10, 0, "lot_p"), lot("lot_p", "loy_a", 10, 10, LotStatus::Pending)],
            // Another lot stays pending.
            vec![pending_earn("ptx_q", "loy_a", 7, 0, "lot_q"), lot("lot_q", "loy_a", 7, 7, LotStatus::Pending)],
            // lot_p becomes available: 10 points move, no transaction.
            vec![lot("lot_p", "loy_a", 10, 10, LotStatus::Available)],
            vec![earn("ptx_r", "loy_a", -4, 6, 2)],
        ];
        for (i, changes) in records.into_iter().enumerate() {
            state.apply(i as u64 + 1, Record { time: 2, idem: None, changes }).unwrap();
        }
        let figures = state.figures("loy_a").unwrap();
        assert_eq!((figures.balance, figures.pending), (6, 7));
        let copy = State::new();
        for item in items(&state) {
            copy.restore_item(item).unwrap();
        }
        copy.finish_restore(5);
        assert_eq!(copy.figures("loy_a"), Some(figures));
        assert_eq!(copy.open_lots("loy_a").len(), 2);
        assert_eq!(copy.due_lots(50, 10), vec![Id::from("lot_q")], "the pending lot's deadline is back");
    }

    /// A snapshot of format 1 or 2 holds endpoints of the old layout (index
    /// 10): one restores as an enabled endpoint.
    #[test]
    fn an_endpoint_item_of_the_old_layout_restores_as_enabled() {
        let old = WebhookEndpointV1 {
            id: "we_9".into(),
            url: "http://hooks.example/x".into(),
            enabled_events: vec![],
            secret: "whsec_9".into(),
            deleted: false,
            created: 3,
        };
        let item = SnapshotItem::Change(Change::PutWebhookEndpointV1(old.into()));
        let config = bincode::config::standard();
        let bytes = bincode::serde::encode_to_vec(&item, config).unwrap();
        let (back, _): (SnapshotItem, usize) = bincode::serde::decode_from_slice(&bytes, config).unwrap();
        let state = State::new();
        state.restore_item(back).unwrap();
        let e = state.webhook_endpoints.with("we_9", Clone::clone).unwrap();
        assert_eq!((e.status, e.enabled_at, e.secret.as_str()), (EndpointStatus::Enabled, 3, "whsec_9"));
        assert_eq!(state.live_webhook_endpoints().len(), 1);
    }

    #[test]
    fn a_state_round_trips_through_its_items_in_order() {
        let state = state_with_everything();
        let snap = items(&state);
        let copy = State::new();
        for item in snap.clone() {
            copy.restore_item(item).unwrap();
        }
        copy.finish_restore(4);
        assert_eq!(items(&copy), snap, "a restored state snapshots to the same items");
        assert_eq!(copy.balance("loy_a"), Some(9));
        assert_eq!(copy.balance("loy_b"), Some(-2));
        assert_eq!(copy.applied_lsn(), 4);
        let positions = copy.accounts.with("loy_a", |e| e.transactions.clone()).unwrap();
        let ids: Vec<String> =
            positions.into_iter().filter_map(|p| copy.transactions.with_at(p, |t| t.id.to_string())).collect();
        assert_eq!(ids, vec!["ptx_1", "ptx_3"]);
        assert_eq!(copy.idempotency.len(), 1);
        assert_eq!(copy.active_rules("eur").len(), 1);
        assert_eq!(copy.due_redemptions(1000, 10), vec!["rdm_1"]);
        assert_eq!(copy.due_deliveries(1000, |_| 10), vec!["whd_1"]);
        assert_eq!(copy.live_webhook_endpoints().len(), 1);
        assert_eq!(copy.authenticate_api_key(b"rk_snap", 10), Some(Permissions::ReadOnly), "the key index is rebuilt");
        assert!(!copy.program().clawback_allow_negative);
        // Insertion order survives: loy_b was applied first.
        let mut order = Vec::new();
        copy.accounts.for_each_placed(|seq, e| {
            if let Stored::Hot(e) = e {
                order.push((seq, e.account.id.to_string()))
            }
        });
        order.sort_unstable();
        assert_eq!(order, vec![(0, "loy_b".to_string()), (1, "loy_a".to_string())]);
    }

    /// `held` (the points open redemptions hold) is rebuilt by a snapshot
    /// load (each redemption once, as it was) plus the replay of the records
    /// after it (in lanes, redemptions in the ledger lane) exactly as the
    /// live state kept it, whatever record the snapshot was taken after.
    #[test]
    fn held_points_come_out_identical_after_a_snapshot_load_and_replay() {
        use crate::domain::redemptions::RedemptionStatus::{Attached, Canceled, Consumed, Expired, Pending};
        use crate::state::apply_in_lanes;
        use crate::state::test_changes::redemption;

        let rec = |changes: Vec<Change>| Record { time: 2, idem: None, changes };
        let records = vec![
            rec(vec![account("loy_a"), account("loy_b")]),
            rec(vec![earn("ptx_1", "loy_a", 100, 100, 2), earn("ptx_2", "loy_b", 50, 50, 2)]),
            rec(vec![redemption("rdm_1", "loy_a", 30, Pending), earn("ptx_3", "loy_a", -30, 70, 2)]),
            rec(vec![redemption("rdm_2", "loy_a", 20, Pending), earn("ptx_4", "loy_a", -20, 50, 2)]),
            rec(vec![redemption("rdm_3", "loy_b", 40, Pending), earn("ptx_5", "loy_b", -40, 10, 2)]),
            rec(vec![redemption("rdm_1", "loy_a", 30, Attached)]),
            rec(vec![redemption("rdm_2", "loy_a", 20, Canceled), earn("ptx_6", "loy_a", 20, 70, 2)]),
            rec(vec![redemption("rdm_1", "loy_a", 30, Consumed), earn("ptx_7", "loy_a", 5, 75, 2)]),
            rec(vec![redemption("rdm_4", "loy_a", 10, Pending), earn("ptx_8", "loy_a", -10, 65, 2)]),
            rec(vec![redemption("rdm_3", "loy_b", 40, Expired), earn("ptx_9", "loy_b", 40, 50, 2)]),
        ];
        let figures = |s: &State| {
            ["loy_a", "loy_b"].map(|a| s.accounts.with(a, |e| (e.balance, e.held, e.transactions.len())).unwrap())
        };
        let live = State::new();
        let mut after_each = Vec::new();
        for (i, r) in records.iter().cloned().enumerate() {
            live.apply(i as u64 + 1, r).unwrap();
            after_each.push(figures(&live));
        }
        assert_eq!(after_each[4], [(50, 50, 3), (10, 40, 2)], "held is what open redemptions hold");
        assert_eq!(figures(&live), [(65, 10, 6), (50, 0, 3)]);
        for cut in 1..=records.len() {
            let taken = State::new();
            for (i, r) in records[..cut].iter().cloned().enumerate() {
                taken.apply(i as u64 + 1, r).unwrap();
            }
            let loaded = State::new();
            for item in items(&taken) {
                loaded.restore_item(item).unwrap();
            }
            loaded.finish_restore(cut as u64);
            assert_eq!(figures(&loaded), after_each[cut - 1], "snapshot after record {cut}");
            apply_in_lanes(&loaded, |lanes| {
                for (i, r) in records[cut..].iter().cloned().enumerate() {
                    lanes.record((cut + i) as u64 + 1, r)?;
                }
                Ok(())
            })
            .unwrap();
            assert_eq!(figures(&loaded), figures(&live), "snapshot after record {cut}, then replay");
            assert_eq!(loaded.due_redemptions(i64::MAX, 10), live.due_redemptions(i64::MAX, 10));
        }
    }
}
