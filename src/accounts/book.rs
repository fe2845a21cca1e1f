//! One command's working copy of an account's points: its figures and the
//! lots it touches, as the record being built leaves them.
//!
//! Every command that moves points goes through a `Book`: it makes each
//! transaction with the right `balance_after` and `pending` part, changes the
//! lots with the pure operations of `domain::lots`, and hands back the
//! changes in the order they happened (a transaction, then the lots it
//! touched), so several movements in one record (a payment failing with two
//! redemptions, a release followed by the expiry of what came back) chain
//! exactly, and `State::check` verifies the same chain before it is written.

use crate::domain::lots::{self, credit_dates, debt_share, LotError, LotShare, PointsLot};
use crate::domain::points::{PointsTransaction, Source, TxType};
use crate::domain::program::Program;
use crate::domain::{Id, IdKind};
use crate::error::ApiError;
use crate::state::{Figures, State};
use crate::wal::Change;

pub(super) struct Book<'a> {
    state: &'a State,
    account: Id,
    pub figures: Figures,
    /// The lots loaded so far, as this record leaves them: the ones a step
    /// named, and the ones spending or a clawback may take (`load_to_spend`).
    /// A credit loads none: an account with many lots does not copy them for
    /// every earn.
    lots: Vec<PointsLot>,
    now: i64,
    changes: Vec<Change>,
}

fn lot_bug(e: LotError) -> ApiError {
    ApiError::internal(format!("a lot operation was refused: {e}"))
}

fn overflow(account: &Id) -> ApiError {
    ApiError::balance_limit(account, "the balance")
}

impl<'a> Book<'a> {
    /// The account's book, or `None` if there is no such account.
    pub fn open(state: &'a State, account: &Id, now: i64) -> Option<Book<'a>> {
        let figures = state.figures(account)?;
        Some(Book { state, account: account.clone(), figures, lots: Vec::new(), now, changes: Vec::new() })
    }

    pub fn account(&self) -> &Id {
        &self.account
    }

    /// The changes so far, in order; the book keeps none.
    pub fn take_changes(&mut self) -> Vec<Change> {
        std::mem::take(&mut self.changes)
    }

    /// Loads the lots taking `points` may touch (`State::lots_to_spend`)
    /// that are not loaded yet. Lots this record made are loaded already.
    /// A lot history cannot give fails the command (`storage_unavailable`):
    /// spending must not pass over a lot it could not read.
    fn load_to_spend(&mut self, points: i64) -> Result<(), ApiError> {
        let loaded: std::collections::HashSet<Id> = self.lots.iter().map(|l| l.id.clone()).collect();
        for lot in self.state.lots_to_spend(&self.account, points)? {
            if !loaded.contains(&lot.id) {
                self.lots.push(lot);
            }
        }
        Ok(())
    }

    /// Index of lot `id` in `lots`, loading it from the table (or history,
    /// where a read error fails the command) if need be.
    fn lot_index(&mut self, id: &Id) -> Result<Option<usize>, ApiError> {
        if let Some(i) = self.lots.iter().position(|l| l.id == *id) {
            return Ok(Some(i));
        }
        let Some(lot) = self.state.lots.try_with(id, PointsLot::clone)? else { return Ok(None) };
        self.lots.push(lot);
        Ok(Some(self.lots.len() - 1))
    }

    fn put_lots(&mut self, ids: impl IntoIterator<Item = Id>) {
        for id in ids {
            if let Some(l) = self.lots.iter().find(|l| l.id == id) {
                self.changes.push(Change::PutLot(l.clone().into()));
            }
        }
    }

    /// A transaction of `points` (`pending` of them in the pending balance)
    /// with the figures moved; not yet pushed.
    fn transaction(
        &mut self,
        kind: TxType,
        points: i64,
        pending: i64,
        source: Source,
        lots: Vec<LotShare>,
    ) -> Result<PointsTransaction, ApiError> {
        let moved = points.checked_sub(pending).ok_or_else(|| overflow(&self.account))?;
        let balance = self.figures.balance.checked_add(moved).ok_or_else(|| overflow(&self.account))?;
        let pending_after = self.figures.pending.checked_add(pending).ok_or_else(|| overflow(&self.account))?;
        self.figures.balance = balance;
        self.figures.pending = pending_after;
        Ok(PointsTransaction {
            id: IdKind::PointsTransaction.generate(),
            account: self.account.clone(),
            points,
            kind,
            source,
            balance_after: balance,
            created: self.now,
            pending,
            lots,
            available_at: None,
            expires_at: None,
        })
    }

    /// A credit (`earn` with the program's return window, or a positive
    /// `adjustment`, available at once): a transaction and its new lot,
    /// which first pays a negative balance. Returns the transaction.
    pub fn credit(
        &mut self,
        kind: TxType,
        points: i64,
        source: Source,
        program: &Program,
        pending_window: bool,
    ) -> Result<PointsTransaction, ApiError> {
        let dates = credit_dates(program, self.now, pending_window && program.pending_days > 0);
        let lot_id = IdKind::Lot.generate();
        let balance_before = self.figures.balance;
        let is_pending = dates.0 > self.now;
        let mut tx = self.transaction(
            kind,
            points,
            if is_pending { points } else { 0 },
            source,
            vec![LotShare { lot: lot_id.clone(), points }],
        )?;
        tx.available_at = Some(dates.0);
        tx.expires_at = dates.1;
        let lot =
            PointsLot::credit(lot_id, self.account.clone(), tx.id.clone(), points, dates, balance_before, self.now);
        self.changes.push(Change::PutTransaction(tx.clone().into()));
        self.changes.push(Change::PutLot(lot.clone().into()));
        self.lots.push(lot);
        Ok(tx)
    }

    /// Spends `points` from the available lots in spending order (a
    /// redemption, a negative adjustment); what the lots do not cover comes
    /// off the balance alone (points from before lots, or below zero when
    /// the caller allowed it). The caller checked the balance.
    pub fn spend(&mut self, kind: TxType, points: i64, source: Source) -> Result<PointsTransaction, ApiError> {
        self.load_to_spend(points)?;
        let (shares, _beyond) = lots::take_in_order(&mut self.lots, points, false).map_err(lot_bug)?;
        let touched: Vec<Id> = shares.iter().map(|s| s.lot.clone()).collect();
        let tx = self.transaction(kind, -points, 0, source, shares)?;
        self.changes.push(Change::PutTransaction(tx.clone().into()));
        self.put_lots(touched);
        Ok(tx)
    }

    /// Gives `points` back (a redemption canceled or expired) to the lots
    /// `shares` took them from. A negative balance is paid first; points
    /// coming back to a lot past its expiry expire at once, in an `expire`
    /// transaction per lot right after the `release`. Returns the release.
    pub fn release(&mut self, points: i64, source: Source, shares: &[LotShare]) -> Result<PointsTransaction, ApiError> {
        // The debt takes first, from the shares of lots past expiry first
        // (what would expire anyway), then from the others in order.
        let mut debt = debt_share(self.figures.balance, points);
        let now = self.now;
        let mut past_expiry: Vec<bool> = Vec::with_capacity(shares.len());
        for share in shares {
            let past = self.lot_index(&share.lot)?.is_some_and(|i| self.lots[i].is_past_expiry(now));
            past_expiry.push(past);
        }
        let mut ordered: Vec<(&LotShare, bool)> = shares.iter().zip(past_expiry).collect();
        // A stable sort: past expiry first, each group in the order taken.
        ordered.sort_by_key(|(_, past)| !past);
        let ordered = ordered.into_iter().map(|(share, _)| share);
        let mut back: Vec<LotShare> = Vec::new();
        for share in ordered {
            let paid = debt.min(share.points);
            debt -= paid;
            if share.points > paid {
                back.push(LotShare { lot: share.lot.clone(), points: share.points - paid });
            }
        }
        let mut expiring: Vec<LotShare> = Vec::new();
        let mut kept: Vec<LotShare> = Vec::new();
        for share in back {
            let Some(i) = self.lot_index(&share.lot)? else { continue };
            if self.lots[i].give_back(share.points, self.now).map_err(lot_bug)? {
                expiring.push(share.clone());
            }
            kept.push(share);
        }
        let touched: Vec<Id> = kept.iter().map(|s| s.lot.clone()).collect();
        let tx = self.transaction(TxType::Release, points, 0, source, kept)?;
        self.changes.push(Change::PutTransaction(tx.clone().into()));
        self.put_lots(touched);
        for share in expiring {
            let expire = self.transaction(
                TxType::Expire,
                -share.points,
                0,
                Source::Lot { lot: share.lot.clone() },
                vec![share.clone()],
            )?;
            self.changes.push(Change::PutTransaction(expire.into()));
        }
        Ok(tx)
    }

    /// Claws back `due` points for a refund of `payment`: from the payment's
    /// own lot first (`own`; pending or not), then available lots in
    /// spending order, then off the balance alone as `allow_negative` says.
    /// Taking pending points never touches the balance. Returns the
    /// transaction, if anything was taken.
    pub fn claw_back(
        &mut self,
        own: Option<&Id>,
        due: i64,
        allow_negative: bool,
        source: Source,
    ) -> Result<Option<PointsTransaction>, ApiError> {
        // Enough lots for all of `due`: what the own lot takes only lowers it.
        self.load_to_spend(due)?;
        let own_index = match own {
            Some(id) => self.lot_index(id)?,
            None => None,
        };
        let own_pending = own_index
            .map(|i| &self.lots[i])
            .filter(|l| l.status == lots::LotStatus::Pending)
            .map_or(0, |l| l.remaining);
        let pending = lots::pending_part(due, own_pending);
        let from_balance = crate::domain::refunds::clawback_taken(due - pending, self.figures.balance, allow_negative);
        let taken = pending + from_balance;
        if taken <= 0 {
            return Ok(None);
        }
        let out = lots::claw_back(&mut self.lots, own_index, pending, from_balance).map_err(lot_bug)?;
        let touched: Vec<Id> = out.shares.iter().map(|s| s.lot.clone()).collect();
        let tx = self.transaction(TxType::Clawback, -taken, -pending, source, out.shares)?;
        self.changes.push(Change::PutTransaction(tx.clone().into()));
        self.put_lots(touched);
        Ok(Some(tx))
    }

    /// Does what is due for lot `id` at `now`, one step: it becomes
    /// available, or its expiry warning goes, or it expires. Returns whether
    /// anything was due.
    pub fn lot_due(&mut self, id: &Id) -> Result<bool, ApiError> {
        let Some(i) = self.lot_index(id)? else { return Ok(false) };
        let now = self.now;
        let lot = &mut self.lots[i];
        if lot.status == lots::LotStatus::Pending {
            if lot.available_at > now {
                return Ok(false);
            }
            let moved = lot.remaining;
            lot.become_available(self.figures.balance, now).map_err(lot_bug)?;
            // The same move `check::lot` makes when it applies.
            self.figures.pending = self.figures.pending.checked_sub(moved).ok_or_else(|| overflow(&self.account))?;
            self.figures.balance = self.figures.balance.checked_add(moved).ok_or_else(|| overflow(&self.account))?;
            self.put_lots([id.clone()]);
            return Ok(true);
        }
        if lot.is_spendable() && lot.is_past_expiry(now) {
            let points = lot.expire(now).map_err(lot_bug)?;
            let tx = self.transaction(
                TxType::Expire,
                -points,
                0,
                Source::Lot { lot: id.clone() },
                vec![LotShare { lot: id.clone(), points }],
            )?;
            self.changes.push(Change::PutTransaction(tx.into()));
            self.put_lots([id.clone()]);
            return Ok(true);
        }
        if lot.warning_due(now) {
            lot.warn_at = None;
            self.put_lots([id.clone()]);
            return Ok(true);
        }
        Ok(false)
    }
}
