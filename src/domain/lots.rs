//! Points lots: where each credit's points sit until they are spent, clawed
//! back or expire.
//!
//! Every credit (an earn, a positive adjustment) makes one lot with the dates
//! the program gave it when it was made: `available_at` (after the return
//! window, `pending_days`) and `expires_at` (`expiry.days` after that, or
//! never). A lot is `pending` until `available_at`, then `available`, and
//! ends `spent`, `expired` or `clawed_back` when nothing is left in it.
//!
//! Every debit says which lots it took from (`LotShare`s on its transaction),
//! so spending, returning, clawing back and expiring are exact and replay
//! the same. The operations here are pure: they change the lots they are
//! given and say what they did; the account actor gathers the lots, calls
//! them and commits the new versions with the transaction, in one record.
//!
//! The rules (docs/decisions.md, "Points lifecycle"):
//! - a debt is paid first: a credit, or a lot becoming available, to an
//!   account whose balance is negative pays the debt, and the lot keeps what
//!   is left (`debt_paid` says how much went);
//! - spending takes available lots soonest-expiring first, then oldest,
//!   never-expiring last (`spending_order`); pending points are never spent;
//! - a clawback takes the refunded payment's own lot first, pending or not,
//!   then available lots in spending order;
//! - points given back to a lot whose `expires_at` has passed expire at once.

use serde::{Deserialize, Serialize};

use super::program::Program;
use super::Id;

/// Seconds in a day: the unit of `pending_days`, `expiry.days` and `expiry_warning_days`.
pub const DAY_SECONDS: i64 = 86_400;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum LotStatus {
    /// In the return window: counted in `pending_balance`, not spendable.
    Pending,
    /// Spendable; `remaining` is what is left.
    Available,
    /// Nothing left: spent (or used to pay a debt).
    Spent,
    /// What was left expired (an `expire` transaction).
    Expired,
    /// Nothing left: the last points left by a clawback.
    ClawedBack,
}

impl LotStatus {
    pub const ALL: [LotStatus; 5] =
        [LotStatus::Pending, LotStatus::Available, LotStatus::Spent, LotStatus::Expired, LotStatus::ClawedBack];

    pub fn as_str(self) -> &'static str {
        match self {
            LotStatus::Pending => "pending",
            LotStatus::Available => "available",
            LotStatus::Spent => "spent",
            LotStatus::Expired => "expired",
            LotStatus::ClawedBack => "clawed_back",
        }
    }

    pub fn parse(s: &str) -> Option<LotStatus> {
        LotStatus::ALL.into_iter().find(|t| t.as_str() == s)
    }

    /// Still holding points (or able to, pending): what the timer and spending look at.
    pub fn is_open(self) -> bool {
        matches!(self, LotStatus::Pending | LotStatus::Available)
    }
}

/// Points a transaction took from a lot, or gave back to it: always
/// positive; the transaction's type says which way.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LotShare {
    pub lot: Id,
    pub points: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsLot {
    pub id: Id,
    pub account: Id,
    /// The credit that made it.
    pub transaction: Id,
    /// What the credit gave.
    pub points: i64,
    /// What is left to spend (pending or available).
    pub remaining: i64,
    /// Points of this lot that paid a negative balance when it was credited
    /// or became available (so `remaining = points - debt_paid - taken + returned`).
    pub debt_paid: i64,
    pub available_at: i64,
    pub expires_at: Option<i64>,
    /// When `loyalty.points.expiring` is due, until it is sent (then `None`).
    pub warn_at: Option<i64>,
    pub status: LotStatus,
    pub created: i64,
}

/// Why a lot operation cannot be done: the caller asked for something the
/// lot's state does not allow (a bug in the caller, never a client's error).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LotError {
    #[error("lot {lot} is {status} and cannot {what}")]
    WrongStatus { lot: Id, status: &'static str, what: &'static str },
    #[error("lot {lot} holds {remaining} points, not the {asked} asked for")]
    NotEnough { lot: Id, remaining: i64, asked: i64 },
    #[error("lot {lot} is not due yet")]
    NotDue { lot: Id },
}

/// The dates a credit made at `now` gets under `program`: `(available_at,
/// expires_at, warn_at)`. Saturating (a test clock may be far ahead).
pub fn credit_dates(program: &Program, now: i64, pending: bool) -> (i64, Option<i64>, Option<i64>) {
    let available_at = if pending { now.saturating_add(program.pending_days.saturating_mul(DAY_SECONDS)) } else { now };
    let expires_at = program.expiry_days.map(|days| available_at.saturating_add(days.saturating_mul(DAY_SECONDS)));
    let warn_at = match (expires_at, program.expiry_warning_days) {
        (Some(at), days) if days > 0 => Some(at.saturating_sub(days.saturating_mul(DAY_SECONDS))),
        _ => None,
    };
    (available_at, expires_at, warn_at)
}

/// What a negative `balance` takes from `points` coming in: the debt, at most `points`.
pub fn debt_share(balance: i64, points: i64) -> i64 {
    if balance >= 0 {
        0
    } else {
        balance.saturating_neg().min(points).max(0)
    }
}

impl PointsLot {
    /// A new lot for a credit of `points` made at `now` to an account whose
    /// balance is `balance`. Pending when `available_at` is after `now`;
    /// else available at once, and it first pays a negative balance.
    pub fn credit(
        id: Id,
        account: Id,
        transaction: Id,
        points: i64,
        dates: (i64, Option<i64>, Option<i64>),
        balance: i64,
        now: i64,
    ) -> PointsLot {
        let (available_at, expires_at, warn_at) = dates;
        let mut lot = PointsLot {
            id,
            account,
            transaction,
            points,
            remaining: points,
            debt_paid: 0,
            available_at,
            expires_at,
            warn_at,
            status: LotStatus::Pending,
            created: now,
        };
        if available_at <= now {
            lot.status = LotStatus::Available;
            lot.pay_debt(balance);
        }
        lot
    }

    fn pay_debt(&mut self, balance: i64) {
        let debt = debt_share(balance, self.remaining);
        self.remaining -= debt;
        self.debt_paid = self.debt_paid.saturating_add(debt);
        if self.remaining == 0 {
            self.status = LotStatus::Spent;
            self.warn_at = None;
        }
    }

    /// Whether no timer will ever act on this lot or any later version of
    /// it: it is past pending (a lot never returns there) and never expires
    /// (`expires_at` is fixed at credit). Every version from here on has no
    /// deadline and moves no balance by what it replaces (`check::lot`).
    pub fn waits_for_nothing(&self) -> bool {
        self.status != LotStatus::Pending && self.expires_at.is_none()
    }

    /// Whether its remaining points are spendable now.
    pub fn is_spendable(&self) -> bool {
        self.status == LotStatus::Available && self.remaining > 0
    }

    /// The return window ends: the lot's points join the balance (first
    /// paying a negative `balance`). Returns the points that left pending.
    pub fn become_available(&mut self, balance: i64, now: i64) -> Result<i64, LotError> {
        if self.status != LotStatus::Pending {
            return Err(self.wrong("become available"));
        }
        if now < self.available_at {
            return Err(LotError::NotDue { lot: self.id.clone() });
        }
        let moved = self.remaining;
        self.status = LotStatus::Available;
        self.pay_debt(balance);
        Ok(moved)
    }

    /// Takes `points` out of the lot (spending, or `clawback`). The lot ends
    /// `spent` (or `clawed_back`) when nothing is left.
    pub fn take(&mut self, points: i64, clawback: bool) -> Result<LotShare, LotError> {
        if !self.status.is_open() {
            return Err(self.wrong("give points"));
        }
        if points <= 0 || points > self.remaining {
            return Err(LotError::NotEnough { lot: self.id.clone(), remaining: self.remaining, asked: points });
        }
        self.remaining -= points;
        if self.remaining == 0 {
            self.status = if clawback { LotStatus::ClawedBack } else { LotStatus::Spent };
            self.warn_at = None;
        }
        Ok(LotShare { lot: self.id.clone(), points })
    }

    /// Its remaining points expire. Returns them (at least 1).
    pub fn expire(&mut self, now: i64) -> Result<i64, LotError> {
        if !self.is_spendable() {
            return Err(self.wrong("expire"));
        }
        if self.expires_at.is_none_or(|at| at > now) {
            return Err(LotError::NotDue { lot: self.id.clone() });
        }
        let points = self.remaining;
        self.remaining = 0;
        self.status = LotStatus::Expired;
        self.warn_at = None;
        Ok(points)
    }

    /// Whether its `expires_at` has passed at `now`.
    pub fn is_past_expiry(&self, now: i64) -> bool {
        self.expires_at.is_some_and(|at| at <= now)
    }

    /// `points` taken from this lot come back (a redemption canceled or
    /// expired). Into a lot past its `expires_at` they come back only to
    /// expire at once: the lot ends `expired` and the caller writes the
    /// `expire` transaction. Returns whether they expire.
    pub fn give_back(&mut self, points: i64, now: i64) -> Result<bool, LotError> {
        if self.status == LotStatus::Pending {
            return Err(self.wrong("take points back"));
        }
        if points <= 0 {
            return Err(LotError::NotEnough { lot: self.id.clone(), remaining: self.remaining, asked: points });
        }
        if self.is_past_expiry(now) {
            // These points follow the lot's own into expiry at once. What it
            // still holds, if anything, is the timer's to expire.
            if self.remaining == 0 {
                self.status = LotStatus::Expired;
                self.warn_at = None;
            }
            return Ok(true);
        }
        self.remaining = self.remaining.saturating_add(points);
        self.status = LotStatus::Available;
        Ok(false)
    }

    /// Whether `loyalty.points.expiring` is due for it at `now`.
    pub fn warning_due(&self, now: i64) -> bool {
        self.is_spendable() && self.warn_at.is_some_and(|at| at <= now)
    }

    fn wrong(&self, what: &'static str) -> LotError {
        LotError::WrongStatus { lot: self.id.clone(), status: self.status.as_str(), what }
    }

    /// The order spending takes lots in: soonest `expires_at` first, then
    /// oldest, never-expiring last.
    pub fn spending_key(&self) -> (i64, i64, &str) {
        (self.expires_at.unwrap_or(i64::MAX), self.created, &self.id)
    }

    pub fn view(&self) -> PointsLotView<'_> {
        PointsLotView {
            id: &self.id,
            object: "points_lot",
            account: &self.account,
            transaction: &self.transaction,
            points: self.points,
            remaining: self.remaining,
            available_at: self.available_at,
            expires_at: self.expires_at,
            status: self.status.as_str(),
            created: self.created,
        }
    }
}

/// Sorts `lots` into spending order (`PointsLot::spending_key`).
pub fn spending_order(lots: &mut [PointsLot]) {
    lots.sort_by(|a, b| a.spending_key().cmp(&b.spending_key()));
}

/// Takes up to `points` from the spendable lots among `lots`, in spending
/// order (`clawback`: the lots end `clawed_back` rather than `spent`).
/// Returns the shares taken and what the lots could not cover.
pub fn take_in_order(lots: &mut [PointsLot], points: i64, clawback: bool) -> Result<(Vec<LotShare>, i64), LotError> {
    spending_order(lots);
    let mut left = points.max(0);
    let mut shares = Vec::new();
    for lot in lots.iter_mut().filter(|l| l.is_spendable()) {
        if left == 0 {
            break;
        }
        let n = left.min(lot.remaining);
        shares.push(lot.take(n, clawback)?);
        left -= n;
    }
    Ok((shares, left))
}

/// What a clawback took: from which lots, and how much of it was pending.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClawbackShares {
    pub shares: Vec<LotShare>,
    /// Points taken from the payment's own lot while it was pending (they
    /// leave `pending_balance`, not the balance).
    pub pending: i64,
}

/// Takes a clawback from the lots: `pending_due` from the refunded payment's
/// own lot while it is pending, then `balance_taken` from the own lot (when
/// available) and then the other available lots in spending order. What the
/// lots do not cover is taken from the balance alone (legacy points with no
/// lot, or below zero). `own` is the index of the payment's lot in `lots`.
pub fn claw_back(
    lots: &mut [PointsLot],
    own: Option<usize>,
    pending_due: i64,
    balance_taken: i64,
) -> Result<ClawbackShares, LotError> {
    let mut out = ClawbackShares::default();
    let mut left = balance_taken.max(0);
    if let Some(lot) = own.and_then(|i| lots.get_mut(i)) {
        if lot.status == LotStatus::Pending && pending_due > 0 {
            out.shares.push(lot.take(pending_due, true)?);
            out.pending = pending_due;
        } else if lot.is_spendable() && left > 0 {
            let n = left.min(lot.remaining);
            out.shares.push(lot.take(n, true)?);
            left -= n;
        }
    }
    let (more, _beyond) = take_in_order(lots, left, true)?;
    out.shares.extend(more);
    Ok(out)
}

/// The points pending in the payment's own lot that a clawback of `due` takes
/// first (`own_pending`: that lot's remaining while it is pending).
pub fn pending_part(due: i64, own_pending: i64) -> i64 {
    due.min(own_pending).max(0)
}

#[derive(Serialize)]
pub struct PointsLotView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub account: &'a Id,
    pub transaction: &'a Id,
    pub points: i64,
    pub remaining: i64,
    pub available_at: i64,
    pub expires_at: Option<i64>,
    pub status: &'static str,
    pub created: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lot(id: &str, remaining: i64, expires_at: Option<i64>, created: i64) -> PointsLot {
        PointsLot::credit(id.into(), "loy_a".into(), "ptx_x".into(), remaining, (created, expires_at, None), 0, created)
    }

    fn program(pending_days: i64, expiry_days: Option<i64>, warning: i64) -> Program {
        Program { pending_days, expiry_days, expiry_warning_days: warning, ..Program::default() }
    }

    #[test]
    fn dates_follow_the_program_at_the_time_of_the_credit() {
        let p = program(14, Some(365), 30);
        let (a, e, w) = credit_dates(&p, 1000, true);
        assert_eq!(a, 1000 + 14 * DAY_SECONDS);
        assert_eq!(e, Some(a + 365 * DAY_SECONDS));
        assert_eq!(w, Some(a + 335 * DAY_SECONDS));
        // A positive adjustment is available at once, and expires from then.
        assert_eq!(credit_dates(&p, 1000, false).0, 1000);
        assert_eq!(credit_dates(&program(0, None, 30), 1000, true), (1000, None, None));
        assert_eq!(credit_dates(&program(365, Some(3650), 0), i64::MAX - 5, true), (i64::MAX, Some(i64::MAX), None));
    }

    #[test]
    fn a_credit_pays_a_debt_first_and_keeps_the_rest() {
        let l = PointsLot::credit("lot_1".into(), "loy_a".into(), "ptx_1".into(), 100, (5, None, None), -30, 5);
        assert_eq!((l.status, l.remaining, l.debt_paid), (LotStatus::Available, 70, 30));
        let l = PointsLot::credit("lot_2".into(), "loy_a".into(), "ptx_2".into(), 20, (5, None, None), -30, 5);
        assert_eq!((l.status, l.remaining, l.debt_paid), (LotStatus::Spent, 0, 20));
        // Pending: the debt waits until it becomes available.
        let mut l = PointsLot::credit("lot_3".into(), "loy_a".into(), "ptx_3".into(), 50, (100, None, None), -30, 5);
        assert_eq!((l.status, l.remaining), (LotStatus::Pending, 50));
        assert_eq!(l.become_available(-30, 99), Err(LotError::NotDue { lot: "lot_3".into() }));
        assert_eq!(l.become_available(-10, 100), Ok(50));
        assert_eq!((l.status, l.remaining, l.debt_paid), (LotStatus::Available, 40, 10));
        assert!(l.become_available(0, 200).is_err(), "only once");
    }

    #[test]
    fn spending_takes_soonest_expiring_then_oldest_never_expiring_last() {
        let mut lots = vec![
            lot("lot_never", 10, None, 1),
            lot("lot_late", 10, Some(500), 2),
            lot("lot_soon_new", 10, Some(300), 4),
            lot("lot_soon_old", 10, Some(300), 3),
        ];
        let (shares, beyond) = take_in_order(&mut lots, 25, false).unwrap();
        let got: Vec<(&str, i64)> = shares.iter().map(|s| (s.lot.as_str(), s.points)).collect();
        assert_eq!(got, [("lot_soon_old", 10), ("lot_soon_new", 10), ("lot_late", 5)]);
        assert_eq!(beyond, 0);
        assert_eq!(lots[0].status, LotStatus::Spent);
        let (shares, beyond) = take_in_order(&mut lots, 30, false).unwrap();
        assert_eq!(shares.len(), 2);
        assert_eq!(beyond, 15, "what the lots cannot cover is left to the caller");
        assert!(lots.iter().all(|l| l.status == LotStatus::Spent && l.remaining == 0));
    }

    #[test]
    fn pending_points_are_never_spent() {
        let mut lots =
            vec![PointsLot::credit("lot_p".into(), "loy_a".into(), "ptx".into(), 10, (99, None, None), 0, 1)];
        let (shares, beyond) = take_in_order(&mut lots, 5, false).unwrap();
        assert!(shares.is_empty());
        assert_eq!(beyond, 5);
        assert_eq!(lots[0].remaining, 10);
    }

    #[test]
    fn a_clawback_takes_its_own_lot_first_pending_or_not() {
        let own = PointsLot::credit("lot_own".into(), "loy_a".into(), "ptx".into(), 40, (99, None, None), 0, 10);
        let mut lots = vec![lot("lot_old", 50, Some(200), 1), own];
        // Pending own lot: all 40 from it (pending), 5 more from the balance.
        let out = claw_back(&mut lots, Some(1), pending_part(45, 40), 5).unwrap();
        assert_eq!(out.pending, 40);
        assert_eq!(
            out.shares,
            vec![LotShare { lot: "lot_own".into(), points: 40 }, LotShare { lot: "lot_old".into(), points: 5 }]
        );
        assert_eq!(lots[1].status, LotStatus::ClawedBack);
        // An available own lot is taken first from the balance part.
        let mut lots = vec![lot("lot_old", 50, Some(200), 1), lot("lot_own", 40, None, 10)];
        let out = claw_back(&mut lots, Some(1), 0, 45).unwrap();
        assert_eq!(out.pending, 0);
        assert_eq!(
            out.shares,
            vec![LotShare { lot: "lot_own".into(), points: 40 }, LotShare { lot: "lot_old".into(), points: 5 }]
        );
    }

    #[test]
    fn expiry_takes_what_is_left_exactly_once() {
        let mut l = lot("lot_e", 10, Some(100), 1);
        l.take(4, false).unwrap();
        assert_eq!(l.expire(99), Err(LotError::NotDue { lot: "lot_e".into() }));
        assert_eq!(l.expire(100), Ok(6));
        assert_eq!((l.status, l.remaining), (LotStatus::Expired, 0));
        assert!(l.expire(200).is_err(), "only once");
        let mut never = lot("lot_n", 10, None, 1);
        assert!(never.expire(i64::MAX).is_err());
    }

    #[test]
    fn points_given_back_to_an_expired_lot_expire_at_once() {
        let mut l = lot("lot_r", 10, Some(100), 1);
        l.take(10, false).unwrap();
        assert_eq!(l.give_back(4, 50), Ok(false));
        assert_eq!((l.status, l.remaining), (LotStatus::Available, 4));
        l.take(4, false).unwrap();
        assert_eq!(l.give_back(4, 100), Ok(true));
        assert_eq!((l.status, l.remaining), (LotStatus::Expired, 0));
    }

    #[test]
    fn the_warning_is_due_once_for_a_lot_with_points() {
        let mut l = PointsLot::credit("lot_w".into(), "loy_a".into(), "ptx".into(), 10, (1, Some(100), Some(80)), 0, 1);
        assert!(!l.warning_due(79));
        assert!(l.warning_due(80));
        l.warn_at = None;
        assert!(!l.warning_due(90));
        let mut spent =
            PointsLot::credit("lot_s".into(), "loy_a".into(), "ptx".into(), 10, (1, Some(100), Some(80)), 0, 1);
        spent.take(10, false).unwrap();
        assert!(!spent.warning_due(90), "nothing left to warn about");
    }

    #[test]
    fn the_view_has_the_contract_fields() {
        let l = lot("lot_v", 7, Some(9), 3);
        let json = serde_json::to_value(l.view()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"lot_v","object":"points_lot","account":"loy_a","transaction":"ptx_x",
                "points":7,"remaining":7,"available_at":3,"expires_at":9,"status":"available","created":3})
        );
    }
}
