//! Checking a record against the state before it is written (invariant 10
//! of docs/reliability.md: every record that is written can be applied).
//!
//! The rules a change must satisfy live here once, as functions of the
//! state a change meets (`transaction`, `redemption`, `lot`, and the tables' room,
//! `table::has_room`). `State::apply_change` runs them on the live tables
//! and turns a refusal into `StorageError::Inconsistent` (the log
//! contradicts itself); `State::check` runs the very same functions on a
//! simulation of the record, one change after another (so several changes
//! of one record on one account count cumulatively), before
//! `Ledger::commit_reply` hands the record to the WAL, and turns a refusal
//! into an answer (`From<Refusal> for ApiError`) with nothing written.
//!
//! Why a record that passed the check cannot fail to apply: the figures a
//! change of an account depends on (its balance, pending balance and held
//! points) move only by points transactions, redemptions and lots of that
//! account, and only the account's actor writes those (the lots timer asks
//! it too), one record at a time, waiting for each to
//! be applied before it reads the state for the next; so nothing moves them
//! between the check and the apply. A transaction id is random and new. The
//! tables are shared, so the check keeps `1/TABLE_CHECK_HEADROOM_DIVISOR` of
//! each table free for the records of other writers in flight between
//! their check and their apply (`State::check_room`).

use super::table::has_room;
use super::{AccountEntry, State, Table};
use crate::config::TABLE_CHECK_HEADROOM_DIVISOR;
use crate::domain::lots::{LotStatus, PointsLot};
use crate::domain::points::PointsTransaction;
use crate::domain::redemptions::Redemption;
use crate::domain::Id;
use crate::error::{ApiError, StorageError};
use crate::wal::Change;

/// Why a change cannot be applied to the state it would meet.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// An account's balance or held points would leave the 64-bit range:
    /// the limits of the domain (`domain::points`) were not enough to keep
    /// the change in bounds (a state an older version left, say).
    #[error("account {account}: {what} would overflow ({detail})")]
    BalanceLimit { account: Id, what: &'static str, detail: String },
    /// A table has no room for the record's new objects.
    #[error("the {table} table has no room for {additional} more objects")]
    TableFull { table: &'static str, additional: usize },
    /// The change contradicts the state (a transaction written twice, an
    /// unknown account, a wrong `balance_after`): a bug in the code that
    /// built it (live), or a log that contradicts itself (replay).
    #[error("{0}")]
    Inconsistent(String),
    /// History could not give the version a change replaces (a disk error):
    /// nothing is written, and the request may be tried again.
    #[error("{0}")]
    Unreadable(String),
}

impl From<Refusal> for StorageError {
    fn from(refusal: Refusal) -> Self {
        StorageError::Inconsistent(refusal.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(refusal: Refusal) -> Self {
        match refusal {
            Refusal::BalanceLimit { account, what, .. } => ApiError::balance_limit(&account, what),
            Refusal::TableFull { table, .. } => ApiError::capacity_exceeded(table),
            Refusal::Inconsistent(reason) => {
                tracing::error!(%reason, "a change was refused before it was written: a bug in the code that built it");
                ApiError::internal(format!("refused before it was written: {reason}"))
            }
            Refusal::Unreadable(reason) => {
                tracing::error!(%reason, "history could not give what a change replaces; nothing was written");
                ApiError::storage_unavailable()
            }
        }
    }
}

/// What an account's changes are checked against: its spendable balance
/// and its pending balance (together the sum of its transactions' points),
/// and the points its open redemptions hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Figures {
    pub balance: i64,
    pub held: i64,
    pub pending: i64,
}

impl Figures {
    /// Points the account may still be credited: the room under
    /// `POINTS_BALANCE_MAX` counting pending and held points
    /// (`domain::points::earning_room`), so returning them later cannot pass it.
    pub fn earning_room(&self) -> i64 {
        crate::domain::points::earning_room(self.balance.saturating_add(self.pending), self.held)
    }
}

impl AccountEntry {
    pub fn figures(&self) -> Figures {
        Figures { balance: self.balance, held: self.held, pending: self.pending }
    }
}

/// The rule for a points transaction: new, on an existing account, whose
/// pending balance moves by the transaction's `pending` part (never below
/// zero) and whose balance moves by the rest (checked) and lands on its
/// `balance_after` (invariants 3 and 5). Returns the account's new figures.
/// `check_balance_after` is false only while a snapshot loads: its
/// transactions come without the lots' moves from pending between them
/// (`State::finish_restore` settles the split).
pub(super) fn transaction(
    tx: &PointsTransaction,
    already_written: bool,
    account: Option<Figures>,
    check_balance_after: bool,
) -> Result<Figures, Refusal> {
    if already_written {
        return Err(Refusal::Inconsistent(format!("points transaction {} written twice", tx.id)));
    }
    let Some(figures) = account else {
        return Err(Refusal::Inconsistent(format!("transaction {} names unknown account {}", tx.id, tx.account)));
    };
    let limit = |what: &'static str, from: i64| Refusal::BalanceLimit {
        account: tx.account.clone(),
        what,
        detail: format!("transaction {} adds {} ({} pending) to {from}", tx.id, tx.points, tx.pending),
    };
    let moved = tx.points.checked_sub(tx.pending).ok_or_else(|| limit("the balance", figures.balance))?;
    let balance = figures.balance.checked_add(moved).ok_or_else(|| limit("the balance", figures.balance))?;
    let pending =
        figures.pending.checked_add(tx.pending).ok_or_else(|| limit("the pending balance", figures.pending))?;
    if pending < 0 {
        return Err(Refusal::Inconsistent(format!(
            "transaction {} takes account {}'s pending balance from {} to {pending}",
            tx.id, tx.account, figures.pending
        )));
    }
    if check_balance_after && balance != tx.balance_after {
        return Err(Refusal::Inconsistent(format!(
            "transaction {} takes account {} from {} by {moved} to {balance}, but says {}",
            tx.id, tx.account, figures.balance, tx.balance_after
        )));
    }
    Ok(Figures { balance, held: figures.held, pending })
}

/// The rule for a lot version `lot` that replaces `previous` (if any): its
/// account exists and stays the same, and a lot leaving `pending` for
/// `available` (or `spent`, when it all paid a debt) moves what it held from
/// the pending balance to the balance (checked). Returns the
/// account's new figures.
pub(super) fn lot(lot: &PointsLot, previous: Option<&PointsLot>, account: Option<Figures>) -> Result<Figures, Refusal> {
    if let Some(p) = previous.filter(|p| p.account != lot.account) {
        return Err(Refusal::Inconsistent(format!(
            "lot {} moves from account {} to {}",
            lot.id, p.account, lot.account
        )));
    }
    let Some(figures) = account else {
        return Err(Refusal::Inconsistent(format!("lot {} names unknown account {}", lot.id, lot.account)));
    };
    // Leaving pending by becoming available (`spent` if it all paid a debt);
    // a clawback of pending points moved them in its own transaction.
    let becomes_available = matches!(lot.status, LotStatus::Available | LotStatus::Spent);
    let Some(previous) = previous.filter(|p| p.status == LotStatus::Pending && becomes_available) else {
        return Ok(figures);
    };
    let moved = previous.remaining;
    let pending = figures.pending.checked_sub(moved).filter(|p| *p >= 0);
    let balance = figures.balance.checked_add(moved);
    match (pending, balance) {
        (Some(pending), Some(balance)) => Ok(Figures { balance, held: figures.held, pending }),
        _ => Err(Refusal::Inconsistent(format!(
            "lot {} moves {moved} points out of account {}'s pending balance of {}",
            lot.id, lot.account, figures.pending
        ))),
    }
}

/// Points a version of a redemption holds on its account: all of them while
/// it is open (pending or attached), none once it is consumed, canceled or expired.
fn held_by(r: &Redemption) -> i64 {
    if r.status.is_open() {
        r.points
    } else {
        0
    }
}

/// The rule for a redemption version `r` that replaces `previous` (if any):
/// its account exists and stays the same, and the account's held points
/// move by what the redemption holds now less what it held (checked, never
/// below zero). Returns the account's new figures.
pub(super) fn redemption(
    r: &Redemption,
    previous: Option<&Redemption>,
    account: Option<Figures>,
) -> Result<Figures, Refusal> {
    if let Some(p) = previous.filter(|p| p.account != r.account) {
        return Err(Refusal::Inconsistent(format!(
            "redemption {} moves from account {} to {}",
            r.id, p.account, r.account
        )));
    }
    let Some(figures) = account else {
        return Err(Refusal::Inconsistent(format!("redemption {} names unknown account {}", r.id, r.account)));
    };
    let before = previous.map_or(0, held_by);
    let Some(held) = figures.held.checked_sub(before).and_then(|h| h.checked_add(held_by(r))) else {
        return Err(Refusal::BalanceLimit {
            account: r.account.clone(),
            what: "the points held by open redemptions",
            detail: format!("redemption {} moves {} by {} then {}", r.id, figures.held, -before, held_by(r)),
        });
    };
    if held < 0 {
        return Err(Refusal::Inconsistent(format!(
            "redemption {} leaves account {} holding {held} points",
            r.id, r.account
        )));
    }
    Ok(Figures { held, ..figures })
}

/// The rule for an event still pointing into its record: only encoded
/// records hold one (`Record::decode` resolves it), so meeting one is a bug.
pub(super) fn unresolved_event(id: &Id) -> Refusal {
    Refusal::Inconsistent(format!("event {id} was applied unresolved"))
}

/// Objects a record may add to each table (an upper bound: a put of an
/// object that exists already is counted unless the check looked it up anyway).
#[derive(Debug, Clone, Copy, Default)]
struct NewObjects {
    customers: usize,
    accounts: usize,
    earning_rules: usize,
    payments: usize,
    transactions: usize,
    refunds: usize,
    rewards: usize,
    redemptions: usize,
    events: usize,
    webhook_endpoints: usize,
    deliveries: usize,
    api_keys: usize,
    lots: usize,
}

/// A record being checked: what its earlier changes did to the accounts,
/// transactions and redemptions its later changes may meet. A record
/// touches one or two accounts and a few redemptions, so small vectors
/// searched linearly beat maps here.
#[derive(Default)]
struct Simulation<'a> {
    accounts: Vec<(&'a Id, Figures)>,
    transactions: Vec<&'a Id>,
    redemptions: Vec<&'a Redemption>,
    lots: Vec<&'a PointsLot>,
    new: NewObjects,
}

impl<'a> Simulation<'a> {
    fn figures(&self, state: &State, account: &Id) -> Option<Figures> {
        match self.accounts.iter().rev().find(|(id, _)| *id == account) {
            Some((_, figures)) => Some(*figures),
            None => state.accounts.with(account, AccountEntry::figures),
        }
    }

    fn set_figures(&mut self, account: &'a Id, figures: Figures) {
        match self.accounts.iter_mut().find(|(id, _)| *id == account) {
            Some(slot) => slot.1 = figures,
            None => self.accounts.push((account, figures)),
        }
    }
}

impl State {
    /// Checks that `changes`, as one record, can be applied to the state as
    /// it is now: the same rules `apply_change` runs, on a simulation of the
    /// record (nothing in the state changes). Called by `Ledger::commit_reply`
    /// before the record is written; see the module doc for why a record that
    /// passes cannot fail to apply.
    pub fn check(&self, changes: &[Change]) -> Result<(), Refusal> {
        let mut sim = Simulation::default();
        for change in changes {
            self.check_change(&mut sim, change)?;
        }
        self.check_room(&sim.new)
    }

    fn check_change<'a>(&self, sim: &mut Simulation<'a>, change: &'a Change) -> Result<(), Refusal> {
        match change {
            Change::PutAccount(a) => {
                if sim.figures(self, &a.id).is_none() {
                    // `apply_change` makes a new account with nothing on it.
                    sim.set_figures(&a.id, Figures::default());
                    sim.new.accounts += 1;
                }
            }
            Change::PutTransaction(tx) => {
                let written = sim.transactions.contains(&&tx.id) || self.transactions.contains(&tx.id);
                let figures = transaction(tx, written, sim.figures(self, &tx.account), true)?;
                sim.set_figures(&tx.account, figures);
                sim.transactions.push(&tx.id);
                sim.new.transactions += 1;
            }
            Change::PutRedemption(r) => {
                let account = sim.figures(self, &r.account);
                // The version it replaces: an earlier change of this record, else the table's.
                let figures = match sim.redemptions.iter().rev().find(|e| e.id == r.id) {
                    Some(earlier) => redemption(r, Some(earlier), account)?,
                    None => match self
                        .redemptions
                        .try_with(&r.id, |previous| redemption(r, Some(previous), account))
                        .map_err(|e| Refusal::Unreadable(e.to_string()))?
                    {
                        Some(result) => result?,
                        None => {
                            sim.new.redemptions += 1;
                            redemption(r, None, account)?
                        }
                    },
                };
                sim.set_figures(&r.account, figures);
                sim.redemptions.push(r);
            }
            Change::PutLot(l) => {
                let account = sim.figures(self, &l.account);
                let figures = match sim.lots.iter().rev().find(|e| e.id == l.id) {
                    Some(earlier) => lot(l, Some(earlier), account)?,
                    None => match self
                        .lots
                        .try_with(&l.id, |previous| lot(l, Some(previous), account))
                        .map_err(|e| Refusal::Unreadable(e.to_string()))?
                    {
                        Some(result) => result?,
                        None => {
                            sim.new.lots += 1;
                            lot(l, None, account)?
                        }
                    },
                };
                sim.set_figures(&l.account, figures);
                sim.lots.push(l);
            }
            Change::PutTransactionV1(_) | Change::PutProgramV1(_) => {
                return Err(Refusal::Inconsistent("a change of an old layout was about to be written".into()))
            }
            Change::PutEventOf(of) => return Err(unresolved_event(&of.id)),
            Change::PutProgram(_) => {}
            Change::PutCustomer(_) => sim.new.customers += 1,
            Change::PutEarningRule(_) => sim.new.earning_rules += 1,
            Change::PutPayment(_) => sim.new.payments += 1,
            Change::PutReward(_) => sim.new.rewards += 1,
            Change::PutEvent(_) => sim.new.events += 1,
            Change::PutWebhookEndpoint(_) | Change::PutWebhookEndpointV1(_) => sim.new.webhook_endpoints += 1,
            Change::PutDelivery(_) => sim.new.deliveries += 1,
            Change::PutRefund(_) => sim.new.refunds += 1,
            Change::PutApiKey(_) => sim.new.api_keys += 1,
        }
        Ok(())
    }

    /// Whether every table has room for the record's new objects, keeping
    /// `1/TABLE_CHECK_HEADROOM_DIVISOR` of it free (the same `has_room` an
    /// insert runs, with the headroom the module doc explains).
    fn check_room(&self, new: &NewObjects) -> Result<(), Refusal> {
        fn room<T: super::Keyed>(table: &Table<T>, name: &'static str, additional: usize) -> Result<(), Refusal> {
            if additional == 0 {
                return Ok(());
            }
            let max = table.objects_max();
            if has_room(table.len(), additional, max / TABLE_CHECK_HEADROOM_DIVISOR, max) {
                Ok(())
            } else {
                Err(Refusal::TableFull { table: name, additional })
            }
        }
        // Destructured, so that a table added to `NewObjects` cannot be left out.
        let NewObjects {
            customers,
            accounts,
            earning_rules,
            payments,
            transactions,
            refunds,
            rewards,
            redemptions,
            events,
            webhook_endpoints,
            deliveries,
            api_keys,
            lots,
        } = *new;
        room(&self.customers, "customers", customers)?;
        room(&self.accounts, "accounts", accounts)?;
        room(&self.earning_rules, "earning rules", earning_rules)?;
        room(&self.payments, "payments", payments)?;
        room(&self.transactions, "points transactions", transactions)?;
        room(&self.refunds, "refunds", refunds)?;
        room(&self.rewards, "rewards", rewards)?;
        room(&self.redemptions, "redemptions", redemptions)?;
        room(&self.events, "events", events)?;
        room(&self.webhook_endpoints, "webhook endpoints", webhook_endpoints)?;
        room(&self.deliveries, "webhook deliveries", deliveries)?;
        room(&self.api_keys, "API keys", api_keys)?;
        room(&self.lots, "points lots", lots)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::redemptions::RedemptionStatus::{Attached, Canceled, Consumed, Expired, Pending};
    use crate::state::test_changes::{account, earn, redemption};
    use crate::wal::Record;

    fn record(changes: Vec<Change>) -> Record {
        Record { time: 5, idem: None, changes }
    }

    /// A state with `loy_a` at `balance` and `loy_b` empty.
    fn state_at(balance: i64) -> State {
        let state = State::new();
        state.apply(1, record(vec![account("loy_a"), account("loy_b")])).unwrap();
        if balance != 0 {
            state.apply(2, record(vec![earn("ptx_0", "loy_a", balance, balance, 2)])).unwrap();
        }
        state
    }

    /// What a test compares before and after a refused record: nothing moved.
    fn snapshot(state: &State) -> (Option<Figures>, Option<Figures>, usize, usize, u64) {
        (
            state.figures("loy_a"),
            state.figures("loy_b"),
            state.transactions.len(),
            state.redemptions.len(),
            state.applied_lsn(),
        )
    }

    /// The check refuses `changes` with `refusal`; applying them (which the
    /// check exists to prevent) fails with the same words.
    fn refused_alike(state: &State, changes: Vec<Change>) -> Refusal {
        let refusal = state.check(&changes).unwrap_err();
        let applied = state.apply(99, record(changes)).unwrap_err();
        assert_eq!(applied.to_string(), StorageError::from(refusal.clone()).to_string());
        refusal
    }

    #[test]
    fn an_overflowing_transaction_is_refused_by_the_check_and_by_apply_alike() {
        let state = state_at(i64::MAX - 5);
        let before = snapshot(&state);
        let tx = earn("ptx_over", "loy_a", 10, i64::MAX, 3);
        let refusal = refused_alike(&state, vec![tx]);
        assert!(matches!(refusal, Refusal::BalanceLimit { what: "the balance", .. }), "{refusal:?}");
        assert!(refusal.to_string().contains("ptx_over"), "{refusal}");
        assert_eq!(snapshot(&state), before, "a refused change leaves nothing behind");
        let answer = ApiError::from(refusal);
        assert_eq!((answer.status, answer.code), (409, "balance_limit"));

        let state = state_at(i64::MIN + 5);
        let refusal = refused_alike(&state, vec![earn("ptx_under", "loy_a", -10, 0, 3)]);
        assert!(matches!(refusal, Refusal::BalanceLimit { .. }), "{refusal:?}");
        // Right at the edge is fine, for both.
        let to_the_edge = vec![earn("ptx_edge", "loy_a", -5, i64::MIN, 3)];
        state.check(&to_the_edge).unwrap();
        state.apply(3, record(to_the_edge)).unwrap();
        assert_eq!(state.balance("loy_a"), Some(i64::MIN));
    }

    #[test]
    fn changes_of_one_record_on_one_account_count_together() {
        let state = state_at(i64::MAX - 15);
        // Each alone fits; together they pass the limit.
        let first = earn("ptx_1", "loy_a", 10, i64::MAX - 5, 3);
        state.check(std::slice::from_ref(&first)).unwrap();
        let second = earn("ptx_2", "loy_a", 10, i64::MAX, 3);
        let both = vec![first.clone(), second];
        let refusal = state.check(&both).unwrap_err();
        assert!(matches!(refusal, Refusal::BalanceLimit { .. }), "{refusal:?}");
        // Each `balance_after` must follow the one before it in the record.
        let stale = vec![first.clone(), earn("ptx_3", "loy_a", 1, i64::MAX - 14, 3)];
        assert!(matches!(state.check(&stale), Err(Refusal::Inconsistent(_))));
        let chained = vec![first, earn("ptx_3", "loy_a", 1, i64::MAX - 4, 3)];
        state.check(&chained).unwrap();
        state.apply(3, record(chained)).unwrap();
        assert_eq!(state.balance("loy_a"), Some(i64::MAX - 4));
        // Another account's figures are its own.
        state.check(&[earn("ptx_4", "loy_b", i64::MAX, i64::MAX, 3)]).unwrap();
    }

    #[test]
    fn a_transaction_written_twice_or_on_an_unknown_account_is_refused_alike() {
        let state = state_at(10);
        let before = snapshot(&state);
        let again = refused_alike(&state, vec![earn("ptx_0", "loy_a", 1, 11, 3)]);
        assert!(again.to_string().contains("written twice"), "{again}");
        let state = state_at(10);
        // Twice within one record: the check refuses the whole record; apply
        // would have applied the first copy before failing.
        let twice = vec![earn("ptx_9", "loy_a", 1, 11, 3), earn("ptx_9", "loy_a", 1, 12, 3)];
        assert!(state.check(&twice).unwrap_err().to_string().contains("written twice"));
        assert_eq!(snapshot(&state), before);
        let nobody = refused_alike(&state, vec![earn("ptx_5", "loy_nobody", 1, 1, 3)]);
        assert!(nobody.to_string().contains("unknown account loy_nobody"), "{nobody}");
        let wrong = refused_alike(&state, vec![earn("ptx_6", "loy_a", 1, 99, 3)]);
        assert!(matches!(wrong, Refusal::Inconsistent(_)), "{wrong:?}");
        // An account made earlier in the same record exists for the changes after it.
        let fresh = vec![account("loy_c"), earn("ptx_7", "loy_c", 3, 3, 3)];
        state.check(&fresh).unwrap();
        state.apply(3, record(fresh)).unwrap();
        assert_eq!(state.figures("loy_c"), Some(Figures { balance: 3, held: 0, pending: 0 }));
    }

    #[test]
    fn held_points_follow_a_redemption_between_open_and_closed() {
        let state = state_at(100);
        let steps = [
            (redemption("rdm_1", "loy_a", 30, Pending), 30),
            (redemption("rdm_1", "loy_a", 30, Attached), 30),
            (redemption("rdm_2", "loy_a", 20, Pending), 50),
            (redemption("rdm_1", "loy_a", 30, Consumed), 20),
            (redemption("rdm_2", "loy_a", 20, Canceled), 0),
            (redemption("rdm_3", "loy_a", 5, Pending), 5),
            (redemption("rdm_3", "loy_a", 5, Expired), 0),
            // A closed redemption seen for the first time (a snapshot's) holds nothing.
            (redemption("rdm_4", "loy_a", 7, Consumed), 0),
        ];
        for (i, (change, held)) in steps.into_iter().enumerate() {
            state.check(std::slice::from_ref(&change)).unwrap();
            state.apply(3 + i as u64, record(vec![change])).unwrap();
            assert_eq!(state.figures("loy_a"), Some(Figures { balance: 100, held, pending: 0 }), "step {i}");
        }
        // Within one record the check follows the versions in order.
        let one_record = vec![redemption("rdm_5", "loy_a", 9, Pending), redemption("rdm_5", "loy_a", 9, Canceled)];
        state.check(&one_record).unwrap();
        state.apply(20, record(one_record)).unwrap();
        assert_eq!(state.figures("loy_a").unwrap().held, 0);
        assert!(state.due_redemptions(i64::MAX, 10).is_empty(), "no open redemption is left to expire");
    }

    #[test]
    fn a_redemption_that_would_overflow_held_points_or_names_nobody_is_refused_alike() {
        let state = state_at(0);
        state.apply(3, record(vec![redemption("rdm_big", "loy_a", i64::MAX - 1, Pending)])).unwrap();
        let before = snapshot(&state);
        let refusal = refused_alike(&state, vec![redemption("rdm_more", "loy_a", 2, Pending)]);
        assert!(matches!(refusal, Refusal::BalanceLimit { what: "the points held by open redemptions", .. }));
        assert_eq!(snapshot(&state), before);
        let nobody = refused_alike(&state, vec![redemption("rdm_x", "loy_nobody", 2, Pending)]);
        assert!(nobody.to_string().contains("unknown account"), "{nobody}");
        let moved = refused_alike(&state, vec![redemption("rdm_big", "loy_b", 1, Canceled)]);
        assert!(moved.to_string().contains("moves from account loy_a to loy_b"), "{moved}");
        assert_eq!(snapshot(&state), before);
    }

    #[test]
    fn a_full_table_is_refused_before_the_record_is_written() {
        // 512 objects at most: the check keeps 512 / TABLE_CHECK_HEADROOM_DIVISOR of them free.
        let max = 512;
        let headroom = max / TABLE_CHECK_HEADROOM_DIVISOR;
        let state = State { transactions: Table::with_objects_max(max), ..State::default() };
        state.apply(1, record(vec![account("loy_a")])).unwrap();
        let fill = max - headroom - 2;
        for i in 0..fill {
            let n = i as i64 + 1;
            state.apply(2 + i as u64, record(vec![earn(&format!("ptx_{i}"), "loy_a", 1, n, 2)])).unwrap();
        }
        let balance = fill as i64;
        let tx = |i: usize, points: i64| earn(&format!("ptx_new{i}"), "loy_a", 1, balance + points, 3);
        state.check(&[tx(0, 1), tx(1, 2)]).unwrap();
        let refusal = state.check(&[tx(0, 1), tx(1, 2), tx(2, 3)]).unwrap_err();
        assert_eq!(refusal, Refusal::TableFull { table: "points transactions", additional: 3 });
        let answer = ApiError::from(refusal);
        assert_eq!((answer.status, answer.code), (503, "capacity_exceeded"));
        // Apply itself takes the table to its very end (the headroom is the check's alone) ...
        for i in 0..headroom + 2 {
            state.apply(1000 + i as u64, record(vec![tx(i, i as i64 + 1)])).unwrap();
        }
        // ... and refuses past it with the same rule.
        let past = earn("ptx_past", "loy_a", 1, balance + headroom as i64 + 3, 3);
        assert!(state.check(std::slice::from_ref(&past)).is_err());
        assert!(state.apply(2000, record(vec![past])).is_err());
    }

    #[test]
    fn a_lot_leaving_pending_moves_its_points_and_a_bad_one_is_refused_alike() {
        use crate::domain::lots::LotStatus::{Available, ClawedBack, Pending};
        use crate::state::test_changes::{lot, pending_earn};
        let state = state_at(0);
        let earn = vec![pending_earn("ptx_p", "loy_a", 10, 0, "lot_p"), lot("lot_p", "loy_a", 10, 10, Pending)];
        state.check(&earn).unwrap();
        state.apply(3, record(earn)).unwrap();
        assert_eq!(state.figures("loy_a"), Some(Figures { balance: 0, held: 0, pending: 10 }));
        // Another account's lot, or more than is pending, is refused by both.
        let moved = refused_alike(&state, vec![lot("lot_p", "loy_b", 10, 10, Available)]);
        assert!(moved.to_string().contains("moves from account loy_a to loy_b"), "{moved}");
        let before = snapshot(&state);
        let state2 = state_at(0);
        let too_much =
            refused_alike(&state2, vec![lot("lot_x", "loy_a", 5, 5, Pending), lot("lot_x", "loy_a", 5, 5, Available)]);
        assert!(too_much.to_string().contains("pending balance of 0"), "{too_much}");
        assert_eq!(snapshot(&state), before);
        // Becoming available moves what it held; a clawed-back one moves nothing more.
        let available = vec![lot("lot_p", "loy_a", 10, 10, Available)];
        state.check(&available).unwrap();
        state.apply(4, record(available)).unwrap();
        assert_eq!(state.figures("loy_a"), Some(Figures { balance: 10, held: 0, pending: 0 }));
        state
            .apply(5, record(vec![lot("lot_q", "loy_a", 3, 3, Pending), lot("lot_q", "loy_a", 3, 0, ClawedBack)]))
            .unwrap();
        assert_eq!(state.figures("loy_a"), Some(Figures { balance: 10, held: 0, pending: 0 }));
    }

    #[test]
    fn has_room_never_overflows() {
        assert!(has_room(0, 1, 0, 1));
        assert!(!has_room(1, 1, 0, 1));
        assert!(!has_room(usize::MAX, 1, 0, usize::MAX));
        assert!(!has_room(1, usize::MAX, 0, usize::MAX));
        assert!(has_room(10, 2, 4, 16) && !has_room(10, 3, 4, 16));
    }
}
