//! Local checkpoints: automatic snapshots that name cold objects instead of
//! holding them.
//!
//! An automatic snapshot is only ever loaded next to the history it was
//! taken beside (`snapshot::Scope::Local`). History holds every cold object
//! by then (the snapshot waits for history to sync through its LSN), so the
//! snapshot writes a cold payment, refund, points transaction or event as a
//! reference (`ColdRef`: its table, id, `created` and the one index key it
//! is listed under) instead of reading its body from history: its time and
//! size, and a restart's, follow what memory holds plus a few dozen bytes
//! per cold object, not every object's body (docs/performance.md, "Local
//! checkpoints").
//!
//! Only those four tables: applying a record never reads the version of one
//! of their objects that it replaces (`ColdObject::replaced_unread`), so
//! history holding a newer version than the snapshot's (records after the
//! snapshot that history took before a crash) cannot change the replay.
//! Lots, redemptions and deliveries are still written whole.
//!
//! A transaction as a reference has no points, so balances cannot be rebuilt
//! by re-applying every transaction as a portable snapshot's load does: a
//! checkpoint carries each account's balance and pending balance
//! (`SnapshotItem::Account`), and says so first (`SnapshotItem::Checkpoint`), so its
//! transactions are listed under their accounts without moving balances.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::index::Index;
use super::{ColdTable, SnapshotItem, State, Table};
use crate::domain::events::EventType;
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
    /// a transaction's account, an event's type (`None`: a payment without a customer).
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
    /// Position -> index into `keys` (`NO_KEY`: none).
    of: Vec<u32>,
    keys: Vec<Id>,
}

impl Keys {
    fn add(&mut self, key: Id, positions: impl FnOnce(&mut dyn FnMut(u32))) {
        let k = self.keys.len() as u32;
        self.keys.push(key);
        let of = &mut self.of;
        positions(&mut |p| {
            let p = p as usize;
            if p >= of.len() {
                of.resize(p + 1, NO_KEY);
            }
            of[p] = k;
        });
    }

    fn from_index(index: &Index) -> Keys {
        let mut keys = Keys::default();
        for key in index.keys() {
            keys.add(key.clone(), |f| index.for_each_position(&key, f));
        }
        keys
    }

    fn get(&self, position: u32) -> Option<Id> {
        let k = *self.of.get(position as usize)?;
        self.keys.get(k as usize).cloned()
    }
}

/// Turns a local checkpoint's cold items into references (`ColdRef`).
pub struct Referencer {
    state: Arc<State>,
    payments: Keys,
    refunds: Keys,
    transactions: Keys,
    events: Keys,
}

impl Referencer {
    /// Reads the index keys of the four tables (after the barrier).
    pub fn new(state: Arc<State>) -> Referencer {
        let mut transactions = Keys::default();
        state.accounts.for_each_hot(|e| {
            transactions.add(e.account.id.clone(), |f| e.transactions.iter().copied().for_each(f));
        });
        Referencer {
            payments: Keys::from_index(&state.payments_by_customer),
            refunds: Keys::from_index(&state.refunds_by_payment),
            events: Keys::from_index(&state.events_by_type),
            transactions,
            state,
        }
    }

    /// `item`, at `place` (`Placed`), as the checkpoint writes it: a cold
    /// object of the four tables as a reference; anything else as it is
    /// (a cold one is then read from history, `history::resolve_cold`).
    pub fn refer(&self, place: u64, item: SnapshotItem) -> SnapshotItem {
        let SnapshotItem::Cold { table, id } = item else { return item };
        let seq = place as u32;
        let s = &self.state;
        let (created, key) = match table {
            ColdTable::Payments => (s.payments.created_at(seq), self.payments.get(seq)),
            ColdTable::Refunds => (s.refunds.created_at(seq), self.refunds.get(seq)),
            ColdTable::Transactions => (s.transactions.created_at(seq), self.transactions.get(seq)),
            ColdTable::Events => (s.events.created_at(seq), self.events.get(seq)),
            _ => None.unzip(),
        };
        match created {
            Some(created) => SnapshotItem::ColdRef(Box::new(ColdRef { table: table as u8, id, created, key })),
            // Every placed object has its order entry: this is only a guard.
            None => SnapshotItem::Cold { table, id },
        }
    }
}

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
        let account = tx.account.clone();
        let position = self.transactions.put(tx)?;
        self.list_under_account(&account, position)
    }

    fn list_under_account(&self, account: &str, position: u32) -> Result<(), StorageError> {
        self.accounts
            .update(account, |e| e.transactions.push(position))
            .ok_or_else(|| StorageError::Inconsistent(format!("a transaction names unknown account {account}")))
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
        fn put<T: super::Keyed>(table: &Table<T>, r: &ColdRef) -> Result<u32, StorageError> {
            table.put_cold(r.id.clone(), r.created)
        }
        let no_key = || StorageError::Inconsistent(format!("{} comes without the key it is listed under", r.id));
        match r.table {
            t if t == ColdTable::Payments as u8 => {
                let position = put(&self.payments, &r)?;
                if let Some(customer) = &r.key {
                    self.payments_by_customer.push(customer, position);
                }
            }
            t if t == ColdTable::Refunds as u8 => {
                let position = put(&self.refunds, &r)?;
                self.refunds_by_payment.push(r.key.as_ref().ok_or_else(no_key)?, position);
            }
            t if t == ColdTable::Transactions as u8 => {
                let account = r.key.as_ref().ok_or_else(no_key)?;
                let position = put(&self.transactions, &r)?;
                self.list_under_account(account, position)?;
            }
            t if t == ColdTable::Events as u8 => {
                let kind = r.key.as_deref().and_then(EventType::parse).ok_or_else(no_key)?;
                let position = put(&self.events, &r)?;
                self.events_by_type.push(kind.as_str(), position);
            }
            other => return Err(StorageError::Inconsistent(format!("{} names table {other}", r.id))),
        }
        Ok(())
    }
}
