//! An account's points transactions, listed newest first
//! (`GET /v1/loyalty/transactions?account=`).
//!
//! Each `AccountEntry` keeps its transactions as positions in the
//! transactions table's insertion order (`Table::with_at`), oldest first, so
//! positions only grow and a cursor is found by binary search. A page copies
//! `LIST_SCAN_CHUNK` positions at a time out of the account's entry and reads
//! the transactions with no account lock held: the apply thread, which needs
//! that lock for every transaction of the shard's accounts, never waits
//! behind a long filtered scan, and an account with a million transactions
//! is not copied whole for one page. The walking is `index.rs`'s, shared
//! with the other filtered lists.
//!
//! A page shows the account as it was between two records (`gate.rs`): its
//! end is fixed under the apply gate, and what lies before it never changes
//! (an index only grows, a points transaction is never replaced), so the
//! chunks after that need no gate. An `ending_before` page walks forwards
//! from its cursor up to the index's length as it was under the gate, so
//! transactions applied meanwhile are not in it either.

use super::index::{walk_back, walk_forward};
use super::list::{Cursor, ListParams, PageFill};
use super::State;
use crate::domain::points::PointsTransaction;
use crate::error::ApiError;

impl State {
    /// One page of `account`'s transactions, newest first: `emit` is called
    /// for each that passes `params` and `keep`. Returns `has_more`, or
    /// `None` if there is no such account. With `ending_before` the index is
    /// walked forwards from the cursor, up to its length when the page
    /// began, and what it took is emitted newest first.
    pub fn account_transactions(
        &self,
        account: &str,
        params: &ListParams,
        keep: impl Fn(&PointsTransaction) -> bool,
        mut emit: impl FnMut(&PointsTransaction),
    ) -> Result<Option<bool>, ApiError> {
        let cursor = params.cursor();
        let between_records = self.gate.read();
        let Some(len) = self.accounts.with(account, |e| e.transactions.len()) else { return Ok(None) };
        // The cursor's index in the account's transactions.
        let at = match cursor {
            Cursor::Newest => None,
            Cursor::After(id) | Cursor::Before(id) => {
                let position = self.transactions.position(id);
                let found =
                    self.accounts.with(account, |e| position.and_then(|p| e.transactions.binary_search(&p).ok()));
                match found {
                    None => return Ok(None),
                    Some(None) => return Err(ApiError::missing_reference(cursor.param(), id)),
                    Some(Some(index)) => Some(index),
                }
            }
        };
        drop(between_records);
        // An index only grows, so a range below its length is there.
        let chunk =
            |begin, end| self.accounts.with(account, |e| e.transactions.get(begin..end).map(<[u32]>::to_vec))?;
        if let Cursor::Before(_) = cursor {
            let mut taken: Vec<PointsTransaction> = Vec::new();
            let mut page = PageFill::new(params, keep, |tx: &PointsTransaction| taken.push(tx.clone()));
            let more = walk_forward(&self.transactions, at.map_or(0, |i| i + 1), len, chunk, &mut page);
            taken.iter().rev().for_each(emit);
            return Ok(Some(more));
        }
        let mut page = PageFill::new(params, keep, &mut emit);
        Ok(Some(walk_back(&self.transactions, at.unwrap_or(len), chunk, &mut page)))
    }
}

impl State {
    /// The newest of `account`'s transactions that `matches`, walking back
    /// from its newest (a redemption's `redeem`, found when it returns its
    /// points: recent, so the walk is short). Copies a few positions at a
    /// time, then more, up to `LIST_SCAN_CHUNK` as a page does.
    pub fn newest_transaction_where(
        &self,
        account: &str,
        matches: impl Fn(&PointsTransaction) -> bool,
    ) -> Option<PointsTransaction> {
        let mut end = self.accounts.with(account, |e| e.transactions.len())?;
        // The one sought is usually among the newest: a short first chunk,
        // then chunks that double up to a page scan's.
        let mut chunk_len = 8;
        while end > 0 {
            let begin = end.saturating_sub(chunk_len);
            chunk_len = (chunk_len * 2).min(crate::config::LIST_SCAN_CHUNK);
            let chunk = self.accounts.with(account, |e| e.transactions.get(begin..end).map(<[u32]>::to_vec))??;
            for position in chunk.into_iter().rev() {
                if let Some(tx) = self.transactions.with_at(position, |t| matches(t).then(|| t.clone())).flatten() {
                    return Some(tx);
                }
            }
            end = begin;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LIST_SCAN_CHUNK;
    use crate::domain::Id;
    use crate::state::test_changes::{account, earn};
    use crate::state::CreatedRange;
    use crate::wal::Record;

    /// Two accounts with interleaved transactions, more than a scan chunk each.
    fn state(per_account: usize) -> State {
        let state = State::new();
        state.apply(1, Record { time: 1, idem: None, changes: vec![account("loy_a"), account("loy_b")] }).unwrap();
        for i in 0..per_account * 2 {
            let (acct, balance) = if i % 2 == 0 { ("loy_a", i / 2 + 1) } else { ("loy_b", i / 2 + 1) };
            let record = Record {
                time: 1,
                idem: None,
                changes: vec![earn(&format!("ptx_{i}"), acct, 1, balance as i64, i as i64)],
            };
            state.apply(i as u64 + 2, record).unwrap();
        }
        state
    }

    fn page(
        state: &State,
        account: &str,
        params: &ListParams,
        keep: impl Fn(&PointsTransaction) -> bool,
    ) -> (Vec<String>, Option<bool>) {
        let mut ids = Vec::new();
        let more = state.account_transactions(account, params, keep, |tx| ids.push(tx.id.to_string())).unwrap();
        (ids, more)
    }

    #[test]
    fn pages_an_accounts_transactions_newest_first() {
        let n = LIST_SCAN_CHUNK + 10;
        let state = state(n);
        let all = |_: &PointsTransaction| true;
        let first = ListParams { limit: 3, ..Default::default() };
        let want = |ids: &[usize]| ids.iter().map(|i| format!("ptx_{i}")).collect::<Vec<_>>();
        let last_b = 2 * n - 1;
        assert_eq!(page(&state, "loy_b", &first, all), (want(&[last_b, last_b - 2, last_b - 4]), Some(true)));
        // From a cursor, across a chunk boundary, to the end.
        let after = ListParams { limit: 100, starting_after: Some(Id::from("ptx_4")), ..Default::default() };
        assert_eq!(page(&state, "loy_a", &after, all), (want(&[2, 0]), Some(false)));
        let whole = ListParams { limit: 100, ..Default::default() };
        let (ids, more) = page(&state, "loy_a", &whole, |tx| tx.created < 10);
        assert_eq!((ids, more), (want(&[8, 6, 4, 2, 0]), Some(false)), "a filter scans past every chunk");
        let created = CreatedRange { gte: Some(100), lte: Some(104), ..Default::default() };
        assert_eq!(
            page(&state, "loy_a", &ListParams { created, ..Default::default() }, all),
            (want(&[104, 102, 100]), Some(false))
        );
        // Exactly `limit` left: no more.
        let tail = ListParams { limit: 2, starting_after: Some(Id::from("ptx_4")), ..Default::default() };
        assert_eq!(page(&state, "loy_a", &tail, all), (want(&[2, 0]), Some(false)));
    }

    #[test]
    fn ending_before_pages_an_accounts_newer_transactions() {
        let n = LIST_SCAN_CHUNK + 10;
        let state = state(n);
        let all = |_: &PointsTransaction| true;
        let want = |ids: &[usize]| ids.iter().map(|i| format!("ptx_{i}")).collect::<Vec<_>>();
        let before =
            |id: &str, limit: usize| ListParams { limit, ending_before: Some(Id::from(id)), ..Default::default() };
        // loy_a holds the even ids: the three just newer than ptx_4.
        assert_eq!(page(&state, "loy_a", &before("ptx_4", 3), all), (want(&[10, 8, 6]), Some(true)));
        let last_a = 2 * n - 2;
        assert_eq!(
            page(&state, "loy_a", &before(&format!("ptx_{}", last_a - 4), 10), all),
            (want(&[last_a, last_a - 2]), Some(false))
        );
        assert_eq!(page(&state, "loy_a", &before(&format!("ptx_{last_a}"), 10), all), (vec![], Some(false)));
        // Across the chunk boundary, with a filter that keeps few.
        let (ids, more) = page(&state, "loy_a", &before("ptx_0", 2), |tx| tx.created % 300 == 0);
        assert_eq!((ids, more), (want(&[300]), Some(false)));
        for cursor in ["ptx_1", "ptx_nope"] {
            let err = state.account_transactions("loy_a", &before(cursor, 3), all, |_| {}).unwrap_err();
            assert_eq!(err.param.as_deref(), Some("ending_before"), "{cursor}");
        }
    }

    #[test]
    fn unknown_accounts_and_foreign_cursors() {
        let state = state(3);
        assert_eq!(page(&state, "loy_nobody", &ListParams::default(), |_| true), (vec![], None));
        for cursor in ["ptx_1", "ptx_nope"] {
            // ptx_1 is loy_b's: not a cursor into loy_a's list.
            let params = ListParams { starting_after: Some(Id::from(cursor)), ..Default::default() };
            let err = state.account_transactions("loy_a", &params, |_| true, |_| {}).unwrap_err();
            assert!(
                err.to_string().contains("starting_after") || format!("{err:?}").contains("starting_after"),
                "{err:?}"
            );
        }
        assert_eq!(state.accounts.with("loy_a", |e| e.transactions.to_vec()), Some(vec![0, 2, 4]));
    }
}
