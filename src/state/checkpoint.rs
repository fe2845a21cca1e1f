//! Local checkpoints: automatic snapshots that name cold objects instead of
//! holding them.
//!
//! An automatic snapshot is only ever loaded next to the history it was
//! taken beside (`snapshot::Scope::Local`). History holds every cold object
//! by then (the snapshot waits for history to sync through its LSN), so the
//! snapshot writes a cold payment, refund, points transaction, lot or event
//! as a reference (`ColdRef`: its table, id, `created` and the one index key
//! it is listed under) instead of reading its body from history: its time and
//! size, and a restart's, follow what memory holds plus a few dozen bytes
//! per cold object, not every object's body (docs/performance.md, "Local
//! checkpoints").
//!
//! Only those five tables: applying a record never reads the version of one
//! of their objects that it replaces, or (a lot) reads the same from any
//! version history holds (`ColdObject::replaced_unread`), so history holding
//! a newer version than the snapshot's (records after the snapshot that
//! history took before a crash) cannot change the replay. Redemptions and
//! deliveries are still written whole. A lot's reference does not say
//! whether it is open, so each account's open lots are listed last
//! (`ListedIn::OpenLots`).
//!
//! A transaction as a reference has no points, so balances cannot be rebuilt
//! by re-applying every transaction as a portable snapshot's load does: a
//! checkpoint carries each account's balance and pending balance
//! (`SnapshotItem::Account`), and says so first (`SnapshotItem::Checkpoint`), so its
//! transactions are listed under their accounts without moving balances.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::{merge_into, Index};
use super::lot_order;
use super::snapshot::{written_count, Listed, ListedIn};
use super::table::ArchivedIds;
use super::{in_place, ColdTable, Placed, SnapshotItem, State};
use crate::config::SNAPSHOT_LISTED_POSITIONS_MAX;
use crate::domain::members::Account;
use crate::domain::points::PointsTransaction;
use crate::domain::Id;
use crate::error::StorageError;

/// A cold object in a local checkpoint: history holds its body.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ColdRef {
    /// Its table, as history's keys name it (`ColdTable`).
    pub table: u8,
    pub id: Id,
    pub created: i64,
    /// The key it is listed under: a payment's customer, a refund's payment,
    /// a transaction's or a lot's account, an event's type (`None`: a payment without a customer).
    pub key: Option<Id>,
}

/// No key (`Keys::of`).
const NO_KEY: u32 = u32::MAX;

/// The index key of every object of one table, by position: what a cold
/// object's reference says it is listed under. Built from the indexes
/// after the barrier, while records apply: a group only gains positions past
/// the snapshot's, and retention only trims events the records after the
/// snapshot forget again when they are replayed.
#[derive(Default)]
struct Keys {
    /// Positions below this are not kept (an archived table's, which no
    /// reference names).
    from: u32,
    /// Position - `from` -> index into `keys` (`NO_KEY`: none).
    of: Vec<u32>,
    keys: Vec<Id>,
}

impl Keys {
    fn starting_at(from: u32) -> Keys {
        Keys { from, ..Keys::default() }
    }

    fn add(&mut self, key: &Id, positions: impl FnOnce(&mut dyn FnMut(u32))) {
        let k = self.keys.len() as u32;
        let (from, of) = (self.from, &mut self.of);
        let mut used = false;
        positions(&mut |p| {
            let Some(at) = p.checked_sub(from) else { return };
            let at = at as usize;
            if at >= of.len() {
                of.resize(at + 1, NO_KEY);
            }
            of[at] = k;
            used = true;
        });
        if used {
            self.keys.push(key.clone());
        }
    }

    fn from_index(index: &Index, from: u32) -> Keys {
        let mut keys = Keys::starting_at(from);
        for key in index.keys() {
            keys.add(&key, |f| index.for_each_position_from(&key, from, f));
        }
        keys
    }

    fn get(&self, position: u32) -> Option<Id> {
        let k = *self.of.get(position.checked_sub(self.from)? as usize)?;
        self.keys.get(k as usize).cloned()
    }
}

/// The index keys of the five tables' objects (`ColdRef::key`).
struct IndexKeys {
    payments: Keys,
    refunds: Keys,
    transactions: Keys,
    lots: Keys,
    events: Keys,
}

impl IndexKeys {
    /// Read after the barrier; an archived table's from where its memory
    /// started then (`archived_from`), since no reference names what lies below.
    fn of(state: &State, archived_from: impl Fn(ColdTable) -> u32) -> IndexKeys {
        let from = archived_from(ColdTable::Transactions);
        let mut transactions = Keys::starting_at(from);
        state.accounts.for_each_hot(|e| {
            let above = &e.transactions[e.transactions.partition_point(|p| *p < from)..];
            transactions.add(&e.account.id, |f| above.iter().copied().for_each(f));
        });
        IndexKeys {
            payments: Keys::from_index(&state.payments_by_customer, archived_from(ColdTable::Payments)),
            refunds: Keys::from_index(&state.refunds_by_payment, 0),
            lots: Keys::from_index(&state.lots_by_account, archived_from(ColdTable::Lots)),
            events: Keys::from_index(&state.events_by_type, archived_from(ColdTable::Events)),
            transactions,
        }
    }

    fn get(&self, table: ColdTable, position: u32) -> Option<Id> {
        match table {
            ColdTable::Payments => self.payments.get(position),
            ColdTable::Refunds => self.refunds.get(position),
            ColdTable::Transactions => self.transactions.get(position),
            ColdTable::Lots => self.lots.get(position),
            ColdTable::Events => self.events.get(position),
            _ => None,
        }
    }
}

/// The items of a local checkpoint as the writer writes them: the captured
/// ones in their places, each run of positions that were cold at the
/// barrier (`SnapshotItem::ColdRun`) expanded in place, between the objects
/// of that table that were in memory. A cold object is named by its id and
/// `created`, read after the barrier from its table (`Table::id_at`): as a
/// reference once history has synced through the checkpoint (`refer`), else
/// as `SnapshotItem::Cold`, which the writer reads from history's view of
/// the barrier. An event forgotten past retention since the barrier is `Gone`.
pub struct CheckpointItems {
    sorted: std::iter::Peekable<std::vec::IntoIter<Placed>>,
    state: Arc<State>,
    keys: Option<IndexKeys>,
    run: Option<Run>,
    /// Each archived table's `Listed` items, written right after its `Archived` mark.
    listed: Vec<(u8, Vec<SnapshotItem>)>,
    /// Items to give before the next sorted one.
    pending: std::collections::VecDeque<SnapshotItem>,
    /// Items to give after the last sorted one: the open lots (`open_lots`).
    last: std::collections::VecDeque<SnapshotItem>,
    left: usize,
}

/// Adds to `out` the `Listed` items of `key`'s `positions` (ascending) below
/// `below`: at most `SNAPSHOT_LISTED_POSITIONS_MAX` positions an item, in order.
fn add_listed(out: &mut Vec<SnapshotItem>, index: ListedIn, key: &Id, positions: &[u32], below: u32) {
    let below = &positions[..positions.partition_point(|p| *p < below)];
    for part in below.chunks(SNAPSHOT_LISTED_POSITIONS_MAX) {
        let listed = Listed { index: index as u8, key: key.clone(), positions: part.to_vec() };
        out.push(SnapshotItem::Listed(Box::new(listed)));
    }
}

/// `add_listed` for every group of `index`.
fn add_index(out: &mut Vec<SnapshotItem>, listed_in: ListedIn, index: &Index, below: u32) {
    for key in index.keys() {
        let mut positions = Vec::new();
        index.for_each_position(&key, |p| positions.push(p));
        add_listed(out, listed_in, &key, &positions, below);
    }
}

/// The `Listed` items of an archived table whose first position in memory
/// at the barrier was `first_hot`: its index entries below that, read after
/// the barrier (a group only grows past it; retention may trim its old end,
/// which the records replayed after the checkpoint trim again).
fn listed(state: &State, table: u8, first_hot: u32) -> Vec<SnapshotItem> {
    let mut out = Vec::new();
    if table == ColdTable::Transactions as u8 {
        state.accounts.for_each_hot(|e| {
            add_listed(&mut out, ListedIn::AccountTransactions, &e.account.id, &e.transactions, first_hot)
        });
    } else if table == ColdTable::Events as u8 {
        add_index(&mut out, ListedIn::EventsByType, &state.events_by_type, first_hot);
    } else if table == ColdTable::Payments as u8 {
        add_index(&mut out, ListedIn::PaymentsByCustomer, &state.payments_by_customer, first_hot);
    } else if table == ColdTable::Lots as u8 {
        add_index(&mut out, ListedIn::LotsByAccount, &state.lots_by_account, first_hot);
    }
    out
}

/// The `Listed` items of every account's open lots below `to` (the lots
/// table's end at the barrier), read after the barrier: the records after
/// the checkpoint set again whether each lot they touch is open (a lot
/// made after the barrier is theirs to list).
fn open_lots(state: &State, to: u32) -> Vec<SnapshotItem> {
    let mut out = Vec::new();
    state.accounts.for_each_hot(|e| add_listed(&mut out, ListedIn::OpenLots, &e.account.id, &e.open_lots, to));
    out
}

/// The `Listed` items of each transaction type's positions below `to` (the
/// transactions table's end at the barrier), read after the barrier: every
/// one, in memory or not, since a reference does not carry its type.
fn transactions_by_type(state: &State, to: u32) -> Vec<SnapshotItem> {
    let mut out = Vec::new();
    add_index(&mut out, ListedIn::TransactionsByType, &state.transactions_by_type, to);
    out
}

/// The `Listed` items of every lot order group's positions below `to` (the
/// lots table's end at the barrier), read after the barrier: every lot, in
/// memory or not (`lot_order.rs`).
fn lot_order(state: &State, to: u32) -> Vec<SnapshotItem> {
    let mut out = Vec::new();
    for (key, positions) in state.lot_order.groups() {
        add_listed(&mut out, ListedIn::LotOrder, &key.encode(), &positions, to);
    }
    out
}

/// A `ColdRun` being expanded.
struct Run {
    table: ColdTable,
    at: u32,
    to: u32,
    /// The place of the table's first object: its objects that were in memory sort there.
    part: u64,
}

impl CheckpointItems {
    /// `items` as captured for a checkpoint (`State::snapshot_placed`), put in their places here.
    pub fn new(state: Arc<State>, mut items: Vec<Placed>, refer: bool) -> Self {
        let mut listed = Vec::new();
        for (_, item) in &mut items {
            match item {
                // What is archived is named by its mark (and its index entries) ...
                SnapshotItem::Archived { table, first_hot, .. } if refer => {
                    listed.push((*table, self::listed(&state, *table, *first_hot)));
                }
                // ... or, history not synced through the checkpoint, read
                // whole (`ArchivedRun`) and loaded in memory from `first_live` on.
                SnapshotItem::Archived { first_live, first_hot, .. } => *first_hot = *first_live,
                // Then nothing is archived at the load: no id needs a look in history.
                SnapshotItem::ArchivedIds { greatest, .. } if !refer => *greatest = None,
                _ => {}
            }
        }
        if refer {
            // Of an archived run only its revived objects are written, in its place.
            items = items
                .into_iter()
                .flat_map(|(place, item)| match item {
                    SnapshotItem::ArchivedRun { revived, .. } => {
                        revived.into_vec().into_iter().map(|(_, r)| (place, r)).collect()
                    }
                    other => vec![(place, other)],
                })
                .collect();
        }
        // Where `table` ended at the barrier (its run of cold positions).
        let end_of = |table: ColdTable| {
            items.iter().find_map(|(_, item)| match item {
                SnapshotItem::ColdRun { table: t, to, .. } if *t == table => Some(*to),
                _ => None,
            })
        };
        // References say neither whether a lot is open, nor its place in
        // spending order, nor a transaction's type: which lots are open, the
        // lot order's groups and each type's transactions are listed last.
        let mut last = std::collections::VecDeque::new();
        if refer {
            if let Some(to) = end_of(ColdTable::Lots) {
                last.extend(open_lots(&state, to));
                last.extend(lot_order(&state, to));
            }
            last.extend(end_of(ColdTable::Transactions).map(|to| transactions_by_type(&state, to)).unwrap_or_default());
        }
        let left = items.iter().fold(0usize, |n, (_, item)| match item {
            SnapshotItem::ColdRun { from, to, hot, .. } => {
                n + (to.saturating_sub(*from) as usize).saturating_sub(*hot as usize)
            }
            _ => n + written_count(item),
        }) + listed.iter().map(|(_, l)| l.len()).sum::<usize>()
            + last.len();
        let archived_from = |table: ColdTable| {
            items.iter().find_map(|(_, item)| match item {
                SnapshotItem::Archived { table: t, first_hot, .. } if *t == table as u8 => Some(*first_hot),
                _ => None,
            })
        };
        let keys = refer.then(|| IndexKeys::of(&state, |t| archived_from(t).unwrap_or(0)));
        CheckpointItems {
            sorted: in_place(items).peekable(),
            state,
            keys,
            run: None,
            listed,
            pending: Default::default(),
            last,
            left,
        }
    }

    /// The object that was cold at position `at` of `table` at the barrier.
    fn name(&self, table: ColdTable, at: u32) -> SnapshotItem {
        let s = &self.state;
        let found = match table {
            ColdTable::Payments => s.payments.id_at(at),
            ColdTable::Refunds => s.refunds.id_at(at),
            ColdTable::Transactions => s.transactions.id_at(at),
            ColdTable::Lots => s.lots.id_at(at),
            ColdTable::Events => s.events.id_at(at),
            _ => None,
        };
        match (found, &self.keys) {
            (None, _) if table == ColdTable::Events => SnapshotItem::Gone,
            // Only events are ever forgotten: anything else missing is a bug,
            // and this run, left unnamed, fails the write (`write_snapshot`).
            (None, _) => SnapshotItem::ColdRun { table, from: at, to: at + 1, hot: 0 },
            (Some((id, created)), Some(keys)) => {
                SnapshotItem::ColdRef(Box::new(ColdRef { table: table as u8, id, created, key: keys.get(table, at) }))
            }
            (Some((id, _)), None) => SnapshotItem::Cold { table, id },
        }
    }

    fn take(&mut self, item: SnapshotItem) -> Option<SnapshotItem> {
        self.left = self.left.saturating_sub(1);
        Some(item)
    }
}

impl Iterator for CheckpointItems {
    type Item = SnapshotItem;

    fn next(&mut self) -> Option<SnapshotItem> {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return self.take(item);
            }
            if let Some(Run { table, at, to, part }) = self.run {
                if at < to {
                    self.run = Some(Run { table, at: at + 1, to, part });
                    // In memory at the barrier: copied then.
                    if self.sorted.peek().is_some_and(|(place, _)| *place == part | u64::from(at)) {
                        let (_, item) = self.sorted.next()?;
                        return self.take(item);
                    }
                    let named = self.name(table, at);
                    return self.take(named);
                }
                self.run = None;
            }
            let Some((place, item)) = self.sorted.next() else {
                let item = self.last.pop_front()?;
                return self.take(item);
            };
            if let SnapshotItem::ColdRun { table, from, to, .. } = item {
                self.run = Some(Run { table, at: from, to, part: place + (1 << 32) });
                continue;
            }
            if let SnapshotItem::Archived { table, .. } = &item {
                if let Some(at) = self.listed.iter().position(|(t, _)| t == table) {
                    self.pending.extend(self.listed.swap_remove(at).1);
                }
            }
            return self.take(item);
        }
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (self.left, Some(self.left))
    }
}

impl ExactSizeIterator for CheckpointItems {}

impl State {
    /// While a checkpoint loads: its accounts come with their figures, and
    /// its transactions do not move them (`SnapshotItem::Checkpoint`).
    pub(super) fn loading_checkpoint(&self) -> bool {
        self.checkpoint_load.load(Ordering::Acquire)
    }

    pub(super) fn begin_checkpoint_load(&self, on: bool) {
        self.checkpoint_load.store(on, Ordering::Release);
    }

    /// A checkpoint's account: put, then given its figures.
    pub(super) fn restore_account_figures(
        &self,
        account: Arc<Account>,
        balance: i64,
        pending: i64,
    ) -> Result<(), StorageError> {
        if !self.loading_checkpoint() {
            return Err(StorageError::Inconsistent(format!(
                "account {} comes with figures outside a checkpoint",
                account.id
            )));
        }
        let id = account.id.clone();
        self.apply_change(0, crate::wal::Change::PutAccount(account))?;
        self.accounts.update(&id, |e| {
            e.balance = balance;
            e.pending = pending;
        });
        Ok(())
    }

    /// A checkpoint's transaction in memory: listed under its account, its
    /// figures already given (`SnapshotItem::Account`).
    pub(super) fn list_transaction(&self, tx: Arc<PointsTransaction>) -> Result<(), StorageError> {
        if self.transactions.contains(&tx.id) {
            return Err(StorageError::Inconsistent(format!("points transaction {} written twice", tx.id)));
        }
        let (account, kind) = (tx.account.clone(), tx.kind);
        let position = self.transactions.put(tx)?;
        self.transactions_by_type.push(kind.as_str(), position);
        self.list_under_account(&account, position)
    }

    fn list_under_account(&self, account: &str, position: u32) -> Result<(), StorageError> {
        self.accounts
            .update(account, |e| e.transactions.push(position))
            .ok_or_else(|| StorageError::Inconsistent(format!("a transaction names unknown account {account}")))
    }

    /// A checkpoint's archived table: empty so far, it starts where memory
    /// started at the barrier; below is history's.
    pub(super) fn restore_archived(&self, table: u8, first_live: u32, first_hot: u32) -> Result<(), StorageError> {
        if first_live < first_hot && !self.snapshot_in_history.load(Ordering::Acquire) {
            return Err(StorageError::Inconsistent(format!(
                "positions {first_live}..{first_hot} of table {table} are only in history: this is an automatic \
                 checkpoint, which loads only beside the history it was taken with (a portable snapshot comes \
                 from POST /v1/admin/snapshot)"
            )));
        }
        match table {
            t if t == ColdTable::Payments as u8 => self.payments.start_archived(first_live, first_hot),
            t if t == ColdTable::Lots as u8 => self.lots.start_archived(first_live, first_hot),
            t if t == ColdTable::Transactions as u8 => self.transactions.start_archived(first_live, first_hot),
            t if t == ColdTable::Events as u8 => self.events.start_archived(first_live, first_hot),
            other => Err(StorageError::Inconsistent(format!("table {other} is not archived"))),
        }
    }

    /// A checkpoint's archived table's ids (`SnapshotItem::ArchivedIds`):
    /// at most `greatest` may be archived, so a put of one above it is new.
    pub(super) fn restore_archived_ids(&self, table: u8, greatest: Option<Id>) -> Result<(), StorageError> {
        if !self.loading_checkpoint() {
            return Err(StorageError::Inconsistent(format!("archived ids of table {table} outside a checkpoint")));
        }
        let ids = greatest.map_or(ArchivedIds::Nothing, ArchivedIds::UpTo);
        match table {
            t if t == ColdTable::Payments as u8 => self.payments.set_archived_ids(ids),
            t if t == ColdTable::Lots as u8 => self.lots.set_archived_ids(ids),
            t if t == ColdTable::Transactions as u8 => self.transactions.set_archived_ids(ids),
            t if t == ColdTable::Events as u8 => self.events.set_archived_ids(ids),
            other => return Err(StorageError::Inconsistent(format!("table {other} is not archived"))),
        }
        Ok(())
    }

    /// A checkpoint's index entries of archived objects (`SnapshotItem::Listed`).
    pub(super) fn restore_listed(&self, index: u8, key: &str, positions: Vec<u32>) -> Result<(), StorageError> {
        if !self.loading_checkpoint() {
            return Err(StorageError::Inconsistent(format!("index entries of {key} outside a checkpoint")));
        }
        match index {
            i if i == ListedIn::AccountTransactions as u8 => self
                .accounts
                .update(key, |e| e.transactions.extend_from_slice(&positions))
                .ok_or_else(|| StorageError::Inconsistent(format!("transactions listed under unknown account {key}"))),
            i if i == ListedIn::EventsByType as u8 => {
                positions.into_iter().for_each(|p| self.events_by_type.push(key, p));
                Ok(())
            }
            i if i == ListedIn::PaymentsByCustomer as u8 => {
                positions.into_iter().for_each(|p| self.payments_by_customer.push(key, p));
                Ok(())
            }
            i if i == ListedIn::LotsByAccount as u8 => {
                positions.into_iter().for_each(|p| self.lots_by_account.push(key, p));
                Ok(())
            }
            // Merged with the open lots its lots in memory listed as they loaded.
            i if i == ListedIn::OpenLots as u8 => self
                .accounts
                .update(key, |e| merge_into(&mut e.open_lots, &positions))
                .ok_or_else(|| StorageError::Inconsistent(format!("open lots listed under unknown account {key}"))),
            // Merged with the types its transactions in memory listed as they loaded.
            i if i == ListedIn::TransactionsByType as u8 => {
                self.transactions_by_type.merge(key, &positions);
                Ok(())
            }
            // Merged with the groups its lots in memory joined as they loaded.
            i if i == ListedIn::LotOrder as u8 => {
                let group = lot_order::Key::decode(key).ok_or_else(|| {
                    StorageError::Inconsistent(format!("lots listed under {key}, not a lot order group"))
                })?;
                self.lot_order.merge(group, &positions);
                Ok(())
            }
            other => Err(StorageError::Inconsistent(format!("index {other} is not one a checkpoint lists"))),
        }
    }

    /// Makes `transactions_by_type` list every transaction after a snapshot
    /// load. A checkpoint written before the index lists no type (its cold
    /// transactions are references): the index is then rebuilt from every
    /// transaction, history's included, once; other loads find it whole and
    /// read nothing.
    pub fn complete_transaction_types(&self) -> Result<(), StorageError> {
        if self.transactions_by_type.total() == self.transactions.len() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        let mut by_type: std::collections::HashMap<&'static str, Vec<u32>> = Default::default();
        self.transactions
            .try_for_each_placed(|position, tx| by_type.entry(tx.kind.as_str()).or_default().push(position))?;
        self.transactions_by_type.clear();
        let mut listed = 0;
        for (kind, mut positions) in by_type {
            positions.sort_unstable();
            listed += positions.len();
            self.transactions_by_type.merge(kind, &positions);
        }
        tracing::info!(
            transactions = listed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "transactions listed by type (a checkpoint from before that index)"
        );
        Ok(())
    }

    /// Makes `lot_order` hold every lot after a snapshot load, as
    /// `complete_transaction_types` does for the types: a checkpoint written
    /// before the lot order lists none of its cold lots, which are then read
    /// from history, once. A checkpoint that lists them may list a lot twice
    /// (in memory at the barrier with one status, listed after it with the
    /// next): the record replayed after it moves the lot, so more positions
    /// than lots is whole too.
    pub fn complete_lot_order(&self) -> Result<(), StorageError> {
        if self.lot_order.total() >= self.lots.len() {
            return Ok(());
        }
        let started = std::time::Instant::now();
        self.lot_order.clear();
        let mut listed = 0usize;
        self.lots.try_for_each_placed(|position, lot| {
            self.lot_order.put(position, lot_order::Key::of(lot));
            listed += 1;
        })?;
        tracing::info!(
            lots = listed,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "lots put in spending order (a checkpoint from before that index)"
        );
        Ok(())
    }

    /// A checkpoint's reference to a cold object: a cold slot in its table,
    /// listed under its key. Only next to a history that holds it.
    pub(super) fn restore_cold_ref(&self, r: ColdRef) -> Result<(), StorageError> {
        if !self.snapshot_in_history.load(Ordering::Acquire) {
            return Err(StorageError::Inconsistent(format!(
                "{} is only named here: this is an automatic checkpoint, which loads only beside the \
                 history it was taken with (a portable snapshot comes from POST /v1/admin/snapshot)",
                r.id
            )));
        }
        // Listed under its key as memory had it; none (an event whose index
        // entry retention trimmed after the barrier) leaves it unlisted, as
        // the records replayed after the checkpoint forget it anyway.
        let listed = |index: &Index, position: u32| {
            if let Some(key) = &r.key {
                index.push(key, position);
            }
        };
        match r.table {
            t if t == ColdTable::Payments as u8 => {
                listed(&self.payments_by_customer, self.payments.put_cold(r.id.clone(), r.created)?)
            }
            t if t == ColdTable::Refunds as u8 => {
                listed(&self.refunds_by_payment, self.refunds.put_cold(r.id.clone(), r.created)?)
            }
            // Open or not, as the checkpoint's `ListedIn::OpenLots` says.
            t if t == ColdTable::Lots as u8 => {
                listed(&self.lots_by_account, self.lots.put_cold(r.id.clone(), r.created)?)
            }
            t if t == ColdTable::Events as u8 => {
                listed(&self.events_by_type, self.events.put_cold(r.id.clone(), r.created)?)
            }
            t if t == ColdTable::Transactions as u8 => {
                let position = self.transactions.put_cold(r.id.clone(), r.created)?;
                if let Some(account) = &r.key {
                    self.list_under_account(account, position)?;
                }
            }
            other => return Err(StorageError::Inconsistent(format!("{} names table {other}", r.id))),
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::state::test_changes::account;
    use crate::wal::Record;

    /// An archived table's keys start where its memory did: nothing below is
    /// kept, and a key with nothing above is not kept either.
    #[test]
    fn keys_of_an_archived_table_start_at_its_first_hot() {
        let mut keys = Keys::starting_at(10);
        keys.add(&Id::from("old"), |f| [3, 7].into_iter().for_each(f));
        keys.add(&Id::from("loy_a"), |f| [5, 12, 15].into_iter().for_each(f));
        assert_eq!(keys.keys, vec![Id::from("loy_a")]);
        assert_eq!(keys.of.len(), 6, "positions 10..16");
        assert_eq!(
            [5, 11, 12, 15, 16].map(|p| keys.get(p)),
            [None, None, Some("loy_a".into()), Some("loy_a".into()), None]
        );
    }

    /// A long group's archived positions are split over items small enough
    /// for a snapshot chunk, in order, and stop at `first_hot`.
    #[test]
    fn a_long_group_is_listed_in_parts_below_first_hot() {
        let state = State::new();
        state.apply(1, Record { time: 1, idem: None, changes: vec![account("loy_a")] }).unwrap();
        state.accounts.update("loy_a", |e| e.transactions.extend(0..140_000u32));
        let items = listed(&state, ColdTable::Transactions as u8, 100_000);
        let parts: Vec<&Listed> = items
            .iter()
            .map(|i| match i {
                SnapshotItem::Listed(l) => &**l,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(parts.iter().map(|l| l.positions.len()).collect::<Vec<_>>(), vec![65_536, 100_000 - 65_536]);
        let all: Vec<u32> = parts.iter().flat_map(|l| l.positions.iter().copied()).collect();
        assert_eq!(all, (0..100_000).collect::<Vec<_>>());
        assert!(parts.iter().all(|l| l.key == "loy_a" && l.index == ListedIn::AccountTransactions as u8));
        assert!(listed(&state, ColdTable::Events as u8, 100_000).is_empty(), "no events");
    }
}
