//! Members: customers and loyalty accounts, and the one-to-one link between them.
//!
//! These structs are what the WAL stores (bincode) and, with `object` added
//! by their views, what the API answers (JSON). An account's balance is not
//! stored here: it is the sum of the account's points transactions, kept by
//! the state (docs/reliability.md, invariant 5).

use compact_str::CompactString;
use serde::{Deserialize, Serialize};

use super::{Id, Metadata};

/// A customer is in memory for ever, so its `email` and `name` are
/// `CompactString`s: up to 24 bytes inline, with no allocation of their own
/// (docs/performance.md, "Scale"). They are written as strings, as before.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Customer {
    pub id: Id,
    pub email: Option<CompactString>,
    pub name: Option<CompactString>,
    pub metadata: Metadata,
    /// The account this customer is linked to, if any (at most one).
    pub loyalty_account: Option<Id>,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Account {
    pub id: Id,
    /// The customer linked to this account, if any (at most one).
    pub customer: Option<Id>,
    pub metadata: Metadata,
    pub created: i64,
}

/// JSON view of a customer.
#[derive(Serialize)]
pub struct CustomerView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub email: &'a Option<CompactString>,
    pub name: &'a Option<CompactString>,
    pub metadata: &'a Metadata,
    pub loyalty_account: &'a Option<Id>,
    pub created: i64,
}

impl Customer {
    pub fn view(&self) -> CustomerView<'_> {
        CustomerView {
            id: &self.id,
            object: "customer",
            email: &self.email,
            name: &self.name,
            metadata: &self.metadata,
            loyalty_account: &self.loyalty_account,
            created: self.created,
        }
    }
}

/// The soonest points to expire: how many, and when.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct NextExpiry {
    pub points: i64,
    pub expires_at: i64,
}

/// An account's derived figures, as its view shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Balances {
    /// What can be spent now (may be negative).
    pub balance: i64,
    /// Earned, still in the return window.
    pub pending_balance: i64,
    pub next_expiry: Option<NextExpiry>,
}

/// JSON view of a loyalty account with its balances.
#[derive(Serialize)]
pub struct AccountView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub customer: &'a Option<Id>,
    pub balance: i64,
    pub pending_balance: i64,
    pub next_expiry: Option<NextExpiry>,
    pub metadata: &'a Metadata,
    pub created: i64,
}

impl Account {
    pub fn view(&self, b: Balances) -> AccountView<'_> {
        AccountView {
            id: &self.id,
            object: "loyalty_account",
            customer: &self.customer,
            balance: b.balance,
            pending_balance: b.pending_balance,
            next_expiry: b.next_expiry,
            metadata: &self.metadata,
            created: self.created,
        }
    }
}
