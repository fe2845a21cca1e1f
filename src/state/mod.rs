//! The in-memory state every request reads and the WAL writer applies to.
//!
//! Tables are sharded maps guarded by short-lived `parking_lot` locks, held
//! only to copy an object in or out, never across an await. What serializes
//! the *logic* of a mutation is elsewhere: the account actor for an account,
//! the object locks for payments and customers. Only the WAL writer (live) and
//! recovery (at startup) call `apply`, one record at a time, in LSN order, so
//! memory after a restart is exactly memory before it.

mod idempotency;
mod list;
mod table;

pub use idempotency::{Begin, IdemGuard, IdemStore, StoredResponse};
pub use list::{CreatedRange, ListParams};
pub use table::Table;

use std::sync::atomic::{AtomicU64, Ordering};

use crate::domain::members::{Account, Customer};
use crate::error::StorageError;
use crate::wal::{Change, Record};

/// An account with its derived balance.
#[derive(Debug, Clone)]
pub struct AccountEntry {
    pub account: Account,
    /// Sum of the points of the account's transactions; changed only by applying one.
    pub balance: i64,
}

#[derive(Default)]
pub struct State {
    pub customers: Table<Customer>,
    pub accounts: Table<AccountEntry>,
    pub idempotency: IdemStore,
    /// LSN of the last record applied.
    applied_lsn: AtomicU64,
}

impl State {
    pub fn new() -> Self {
        Self::default()
    }

    pub fn applied_lsn(&self) -> u64 {
        self.applied_lsn.load(Ordering::Acquire)
    }

    /// Applies one durable record. Errors mean the log contradicts itself.
    pub fn apply(&self, lsn: u64, record: Record) -> Result<(), StorageError> {
        for change in record.changes {
            self.apply_change(change)?;
        }
        if let Some(idem) = record.idem {
            self.idempotency.store(idem, record.time);
        }
        self.applied_lsn.store(lsn, Ordering::Release);
        Ok(())
    }

    fn apply_change(&self, change: Change) -> Result<(), StorageError> {
        match change {
            Change::PutCustomer(c) => {
                let (id, created) = (c.id.clone(), c.created);
                self.customers.upsert(id, created, |_| Some(c));
            }
            Change::PutAccount(a) => {
                let (id, created) = (a.id.clone(), a.created);
                self.accounts.upsert(id, created, |slot| match slot {
                    Some(entry) => {
                        entry.account = a;
                        None
                    }
                    None => Some(AccountEntry {
                        account: a,
                        balance: 0,
                    }),
                });
            }
        }
        Ok(())
    }
}
