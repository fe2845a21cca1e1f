//! The liability and activity reports, and the transactions a CSV export
//! streams: read from the ledger itself (the accounts' figures, the lots,
//! the points transactions), so they reconcile by construction.
//!
//! Sums are `i128`: a sum over many accounts may pass the 64-bit range even
//! though each balance stays within it. The activity report and the export
//! read the transactions up to the end fixed under the apply gate when they
//! start (transactions are never changed or removed, so what lies before it
//! is one moment's ledger); the liability report reads the accounts under the
//! gate in one go, so its figures are one moment's too (docs/api.md says so).

use serde::Serialize;

use super::State;
use crate::config::LIST_SCAN_CHUNK;
use crate::domain::lots::DAY_SECONDS;
use crate::domain::money::Currency;
use crate::domain::points::{PointsTransaction, TxType};

/// The horizons of the liability report's `expiring` figures, in days.
pub const EXPIRING_HORIZON_DAYS: [i64; 3] = [30, 60, 90];

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MoneyValue {
    pub amount: i128,
    pub currency: Currency,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Liability {
    /// Accounts holding points (a non-zero balance or pending balance).
    pub accounts: u64,
    /// Sum of the positive spendable balances.
    pub available: i128,
    pub pending: i128,
    /// Sum of the negative balances (a negative number).
    pub negative: i128,
    /// Points of lots due to expire within each of `EXPIRING_HORIZON_DAYS`.
    pub expiring: [i128; 3],
}

/// Sums of points by type over a period, with the ledger's total before it
/// and at its end: `closing = opening + earned + adjusted + redeemed +
/// released + clawed_back + expired`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize)]
pub struct Activity {
    pub opening: i128,
    pub earned: i128,
    pub adjusted: i128,
    pub redeemed: i128,
    pub released: i128,
    pub clawed_back: i128,
    pub expired: i128,
    pub closing: i128,
}

impl Activity {
    fn add(&mut self, tx: &PointsTransaction, from: i64, to: i64) {
        let points = i128::from(tx.points);
        if tx.created < from {
            self.opening += points;
        }
        if tx.created < to {
            self.closing += points;
        }
        if tx.created < from || tx.created >= to {
            return;
        }
        let bucket = match tx.kind {
            TxType::Earn => &mut self.earned,
            TxType::Adjustment => &mut self.adjusted,
            TxType::Redeem => &mut self.redeemed,
            TxType::Release => &mut self.released,
            TxType::Clawback => &mut self.clawed_back,
            TxType::Expire => &mut self.expired,
        };
        *bucket += points;
    }
}

impl State {
    /// The liability report at `now`.
    pub fn liability(&self, now: i64) -> Liability {
        let mut out = Liability::default();
        self.visible(|s| {
            s.accounts.for_each(|e| {
                if e.balance != 0 || e.pending != 0 {
                    out.accounts += 1;
                }
                if e.balance > 0 {
                    out.available += i128::from(e.balance);
                } else {
                    out.negative += i128::from(e.balance);
                }
                out.pending += i128::from(e.pending);
            });
            // A lot that expires stays in memory while it is open (a cold lot
            // has no deadline left: `ColdObject::of`), so history is not read.
            s.lots.for_each_hot(|l| {
                let Some(at) = l.expires_at.filter(|_| l.status.is_open() && l.remaining > 0) else { return };
                for (i, days) in EXPIRING_HORIZON_DAYS.iter().enumerate() {
                    if at <= now.saturating_add(days * DAY_SECONDS) {
                        out.expiring[i] += i128::from(l.remaining);
                    }
                }
            });
        });
        out
    }

    /// How many transactions an export or report reads: the end of the
    /// transactions table between two records.
    pub fn transactions_end(&self) -> usize {
        self.visible(|s| s.transactions.len())
    }

    /// Up to `LIST_SCAN_CHUNK` transactions at positions `begin..end`, oldest
    /// first, that `keep`; and where the next chunk begins.
    pub fn transactions_chunk(
        &self,
        begin: usize,
        end: usize,
        keep: impl Fn(&PointsTransaction) -> bool,
    ) -> (Vec<PointsTransaction>, usize) {
        let stop = end.min(begin.saturating_add(LIST_SCAN_CHUNK));
        let mut out = Vec::new();
        for position in begin..stop {
            if let Some(Some(tx)) = self.transactions.with_at(position as u32, |t| keep(t).then(|| t.clone())) {
                out.push(tx);
            }
        }
        (out, stop)
    }

    /// The activity report for transactions created in `[from, to)`.
    pub fn activity(&self, from: i64, to: i64) -> Activity {
        let mut out = Activity::default();
        let end = self.transactions_end();
        for position in 0..end {
            self.transactions.with_at(position as u32, |t| out.add(t, from, to));
        }
        out
    }
}
