//! `loyalty-ledger verify --data DIR`: is this data directory sound?
//!
//! 1. Every snapshot: every checksum, every item decoded and applied.
//! 2. Every WAL segment: headers, LSN chain, every frame's checksum, every
//!    record decoded (a torn tail is a warning: the next start cuts it).
//! 3. A full replay exactly as a start would do it (newest valid snapshot,
//!    then the WAL), changing nothing in `wal/` or `snapshots/`. History is
//!    opened to read the cold objects an automatic snapshot names (which
//!    may let the store tidy its own files, as the `history` command does).
//! 4. The ledger invariants on the replayed state (invariants 3 and 4, docs/reliability.md):
//!    every balance equals the sum of its transactions, a payment earns at
//!    most once and its clawbacks never exceed its award, no redemption is
//!    released twice and a consumed or open one never is, and each account's
//!    held points are the sum of its open redemptions'.
//!
//! Exit status 0 when all hold; 1 with the report otherwise.

use std::collections::HashMap;
use std::path::Path;

use crate::domain::lots::LotStatus;
use crate::domain::points::{Source, TxType};
use crate::domain::Id;
use crate::history::{History, HistoryStats, HISTORY_DIR};
use crate::recovery;
use crate::snapshot::{self, format, SNAPSHOT_DIR};
use crate::state::State;
use crate::storage::fs::{FileSystem, RealFs};
use crate::wal::format::parse_segment_file_name;
use crate::wal::reader::{read_log, Mode, ReadFrom};
use crate::wal::Lsn;
use crate::wal::{Record, WAL_DIR};

/// Problems listed in full at most; the rest are counted.
pub const VERIFY_PROBLEMS_SHOWN_MAX: usize = 200;

#[derive(Debug, Default)]
pub struct Report {
    pub problems: Vec<String>,
    pub notes: Vec<String>,
}

impl Report {
    pub fn ok(&self) -> bool {
        self.problems.is_empty()
    }

    fn print(&self) {
        for n in &self.notes {
            println!("ok: {n}");
        }
        for p in self.problems.iter().take(VERIFY_PROBLEMS_SHOWN_MAX) {
            println!("PROBLEM: {p}");
        }
        if self.problems.len() > VERIFY_PROBLEMS_SHOWN_MAX {
            println!("PROBLEM: ... and {} more", self.problems.len() - VERIFY_PROBLEMS_SHOWN_MAX);
        }
        if self.ok() {
            println!("verify: all checks passed");
        } else {
            println!("verify: {} problem(s) found", self.problems.len());
        }
    }
}

/// Runs every check; prints the report. `Ok(true)` when all hold.
pub fn run(data_dir: &Path) -> anyhow::Result<bool> {
    let _lock = super::lock_existing(data_dir)?;
    let report = check(&RealFs, data_dir);
    report.print();
    Ok(report.ok())
}

/// Every check of the module doc, on a directory nobody else is using.
pub fn check(fs: &dyn FileSystem, data_dir: &Path) -> Report {
    let mut r = Report::default();
    // Automatic snapshots name the cold objects history holds: read them there.
    let history = match data_dir.join(HISTORY_DIR).is_dir() {
        true => match History::open(data_dir, HistoryStats::default()) {
            Ok(h) => Some(h),
            Err(e) => {
                r.problems.push(format!("history cannot be opened: {e}"));
                None
            }
        },
        false => None,
    };
    let history_lsn = history.as_ref().and_then(|h| h.objects_lsn().ok().flatten());
    check_snapshots(fs, data_dir, history_lsn, &mut r);
    check_segments(fs, data_dir, &mut r);
    let state = State::new();
    let loaded = match &history {
        Some(history) => recovery::load_reading_history(fs, data_dir, &state, Mode::ReadOnly, history),
        None => recovery::load(fs, data_dir, &state, Mode::ReadOnly),
    };
    match loaded {
        Ok(loaded) => {
            let s = &loaded.summary;
            let from = match &s.snapshot {
                Some(snap) => format!("snapshot {} (LSN {})", snap.path.display(), snap.lsn),
                None => "the start of the WAL".to_string(),
            };
            r.notes.push(format!(
                "replay: from {from}, {} WAL records, next LSN {}, {} accounts",
                s.records,
                s.next_lsn,
                state.accounts.len()
            ));
            let problems = ledger_problems(&state);
            if problems.is_empty() {
                r.notes.push("ledger invariants hold".into());
            }
            r.problems.extend(problems);
        }
        Err(e) => r.problems.push(format!("replay failed: {e}")),
    }
    r
}

fn check_snapshots(fs: &dyn FileSystem, data_dir: &Path, history_lsn: Option<u64>, r: &mut Report) {
    let dir = data_dir.join(SNAPSHOT_DIR);
    if let Ok(names) = fs.list(&dir) {
        for name in names {
            if name.ends_with(format::TEMP_SUFFIX) {
                r.notes.push(format!(
                    "{}: temp file of an interrupted snapshot (removed at the next start)",
                    dir.join(&name).display()
                ));
            } else if name.ends_with(format::CORRUPT_SUFFIX) {
                r.notes.push(format!(
                    "{}: a damaged snapshot set aside earlier (may be deleted)",
                    dir.join(&name).display()
                ));
            }
        }
    }
    match snapshot::list_snapshots(fs, data_dir) {
        Ok(list) => {
            for (_, path) in list {
                match snapshot::load::load_file(fs, &path, history_lsn) {
                    Ok((_, h, bytes)) => r.notes.push(format!(
                        "snapshot {}: LSN {}, {} items, {} bytes, checksums good",
                        path.display(),
                        h.lsn,
                        h.items,
                        bytes.len()
                    )),
                    Err(e) => r.problems.push(format!("snapshot invalid: {e}")),
                }
            }
        }
        Err(e) => r.problems.push(format!("cannot list snapshots: {e}")),
    }
}

fn check_segments(fs: &dyn FileSystem, data_dir: &Path, r: &mut Report) {
    let dir = data_dir.join(WAL_DIR);
    let first = match fs.list(&dir) {
        Ok(names) => names.iter().filter_map(|n| parse_segment_file_name(n)).min(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => {
            r.problems.push(format!("cannot list {}: {e}", dir.display()));
            return;
        }
    };
    let Some(first) = first else {
        r.notes.push("no WAL segments".into());
        return;
    };
    let mut records = 0u64;
    let scanned = read_log(fs, &dir, ReadFrom::Lsn(Lsn::new(first)), Mode::ReadOnly, |lsn, payload| {
        Record::decode(payload)
            .map_err(|e| crate::error::StorageError::Inconsistent(format!("undecodable record {lsn}: {e}")))?;
        records += 1;
        Ok(())
    });
    match scanned {
        Ok(end) => {
            r.notes.push(format!(
                "WAL: {} segment(s) from LSN {first}, {records} records, checksums good",
                end.segments.len()
            ));
            if let Some(torn) = end.torn {
                r.notes.push(format!(
                    "WARNING {}: torn tail at offset {} ({}); the final group commit was never acknowledged, and the next start sets its bytes aside and cuts it",
                    torn.path.display(),
                    torn.offset,
                    torn.reason
                ));
            }
        }
        Err(e) => r.problems.push(format!("WAL: {e}")),
    }
}

/// The ledger invariants (module doc, step 4) on a replayed state.
pub fn ledger_problems(state: &State) -> Vec<String> {
    #[derive(Default)]
    struct Sum {
        points: i64,
        count: usize,
    }
    let mut problems = Vec::new();
    let mut by_account: HashMap<Id, Sum> = HashMap::new();
    let mut earned: HashMap<Id, Sum> = HashMap::new();
    let mut clawed: HashMap<Id, i64> = HashMap::new();
    let mut redeemed: HashMap<Id, usize> = HashMap::new();
    let mut released: HashMap<Id, usize> = HashMap::new();
    // Each lot's movements by the transactions: +credit, -taken, +returned, -expired.
    let mut lot_moves: HashMap<Id, i64> = HashMap::new();
    state.transactions.for_each(|t| {
        let sign: i64 = match t.kind {
            TxType::Earn | TxType::Release => 1,
            TxType::Adjustment if t.points > 0 => 1,
            _ => -1,
        };
        for share in &t.lots {
            let m = lot_moves.entry(share.lot.clone()).or_default();
            *m = m.saturating_add(sign.saturating_mul(share.points));
        }
        let s = by_account.entry(t.account.clone()).or_default();
        s.points = s.points.saturating_add(t.points);
        s.count += 1;
        match (&t.kind, &t.source) {
            (TxType::Earn, Source::Payment { payment, .. }) => {
                let e = earned.entry(payment.clone()).or_default();
                e.points = e.points.saturating_add(t.points);
                e.count += 1;
            }
            (TxType::Clawback, Source::Refund { payment, .. }) => {
                *clawed.entry(payment.clone()).or_default() += t.points.saturating_neg();
            }
            (TxType::Redeem, Source::Redemption { redemption, .. }) => {
                *redeemed.entry(redemption.clone()).or_default() += 1
            }
            (TxType::Release, Source::Redemption { redemption, .. }) => {
                *released.entry(redemption.clone()).or_default() += 1
            }
            (TxType::Adjustment, Source::Adjustment { .. }) | (TxType::Expire, Source::Lot { .. }) => {}
            (kind, _) => {
                problems.push(format!("transaction {}: a {} row with the wrong kind of source", t.id, kind.as_str()))
            }
        }
    });
    state.accounts.for_each(|e| {
        let id = &e.account.id;
        let s = by_account.remove(id).unwrap_or_default();
        if e.balance.saturating_add(e.pending) != s.points {
            problems.push(format!(
                "account {id}: balance {} + pending_balance {} but its transactions sum to {}",
                e.balance, e.pending, s.points
            ));
        }
        if e.transactions.len() != s.count {
            problems.push(format!(
                "account {id}: its index lists {} transactions, the ledger has {}",
                e.transactions.len(),
                s.count
            ));
        }
    });
    for (account, s) in by_account {
        problems.push(format!("{} transaction(s) name account {account}, which does not exist", s.count));
    }
    state.payments.for_each(|p| {
        let e = earned.remove(&p.id).unwrap_or_default();
        if e.count > 1 {
            problems.push(format!("payment {}: earned {} times", p.id, e.count));
        }
        if e.points != p.points_earned {
            problems.push(format!(
                "payment {}: points_earned {} but its earn rows sum to {}",
                p.id, p.points_earned, e.points
            ));
        }
        if let Some(award) = &p.award {
            let ok =
                state.transactions.with(award, |t| t.kind == TxType::Earn && t.payment() == Some(&p.id)) == Some(true);
            if !ok {
                problems.push(format!("payment {}: its award {award} is not an earn row of this payment", p.id));
            }
        }
        let c = clawed.remove(&p.id).unwrap_or(0);
        if c > e.points {
            problems.push(format!("payment {}: clawed back {c} points, more than the {} it earned", p.id, e.points));
        }
    });
    for (payment, _) in earned {
        problems.push(format!("earn rows name payment {payment}, which does not exist"));
    }
    for (payment, _) in clawed {
        problems.push(format!("clawback rows name payment {payment}, which does not exist"));
    }
    state.redemptions.for_each(|r| {
        let rel = released.remove(&r.id).unwrap_or(0);
        let red = redeemed.remove(&r.id).unwrap_or(0);
        if red != 1 {
            problems.push(format!("redemption {}: spent its points {red} times", r.id));
        }
        if rel > 1 {
            problems.push(format!("redemption {}: released {rel} times", r.id));
        }
        if rel > 0
            && !matches!(
                r.status,
                crate::domain::redemptions::RedemptionStatus::Canceled
                    | crate::domain::redemptions::RedemptionStatus::Expired
            )
        {
            problems.push(format!("redemption {}: {} but its points were released", r.id, r.status.as_str()));
        }
    });
    for (redemption, _) in released.into_iter().chain(redeemed) {
        problems.push(format!("rows name redemption {redemption}, which does not exist"));
    }
    // Each account's held points are what its open redemptions hold
    // (`AccountEntry::held`, which earning leaves room for).
    let mut held: HashMap<Id, i64> = HashMap::new();
    state.redemptions.for_each(|r| {
        if r.status.is_open() {
            let h = held.entry(r.account.clone()).or_default();
            *h = h.saturating_add(r.points);
        }
    });
    state.accounts.for_each(|e| {
        let open = held.get(&e.account.id).copied().unwrap_or(0);
        if e.held != open {
            problems.push(format!(
                "account {}: holds {} points for open redemptions, which hold {open}",
                e.account.id, e.held
            ));
        }
    });
    // Every lot: what is left is its credit less what debits took from it
    // (and what paid a debt), plus what came back; the pending balance is
    // what the pending lots hold.
    let mut pending: HashMap<Id, i64> = HashMap::new();
    state.lots.for_each(|l| {
        let moved = lot_moves.remove(&l.id).unwrap_or(0);
        let expected = moved.saturating_sub(l.debt_paid);
        if l.remaining != expected {
            problems.push(format!(
                "lot {}: remaining {} but its transactions leave {expected} (debt paid {})",
                l.id, l.remaining, l.debt_paid
            ));
        }
        if l.remaining < 0 || (l.remaining == 0 && l.status == LotStatus::Pending) {
            problems.push(format!("lot {}: {} with {} points", l.id, l.status.as_str(), l.remaining));
        }
        if l.status == LotStatus::Pending {
            *pending.entry(l.account.clone()).or_default() += l.remaining;
        }
    });
    for (lot, _) in lot_moves {
        problems.push(format!("transactions name lot {lot}, which does not exist"));
    }
    state.accounts.for_each(|e| {
        let p = pending.get(&e.account.id).copied().unwrap_or(0);
        if e.pending != p {
            problems
                .push(format!("account {}: pending_balance {} but its pending lots hold {p}", e.account.id, e.pending));
        }
    });
    problems
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::members::Account;
    use crate::domain::points::PointsTransaction;
    use crate::wal::Change;

    #[test]
    fn a_lot_or_a_pending_balance_that_does_not_match_the_transactions_is_reported() {
        use crate::state::test_changes::{account, lot, pending_earn};
        let state = State::new();
        let record = |changes| Record { time: 1, idem: None, changes };
        state.apply(1, record(vec![account("loy_a")])).unwrap();
        state
            .apply(
                2,
                record(vec![
                    pending_earn("ptx_p", "loy_a", 10, 0, "lot_p"),
                    lot("lot_p", "loy_a", 10, 10, LotStatus::Pending),
                ]),
            )
            .unwrap();
        let lot_problems = |state: &State| -> Vec<String> {
            ledger_problems(state).into_iter().filter(|p| p.contains("lot") || p.contains("pending")).collect()
        };
        assert_eq!(lot_problems(&state), Vec::<String>::new());
        // A lot version that says 9 of 12 are left, when its transactions made 10 and took none.
        state.apply(3, record(vec![lot("lot_p", "loy_a", 12, 9, LotStatus::Pending)])).unwrap();
        let problems = lot_problems(&state);
        assert!(problems.iter().any(|p| p.contains("lot lot_p: remaining 9")), "{problems:?}");
        assert!(problems.iter().any(|p| p.contains("pending_balance 10 but its pending lots hold 9")), "{problems:?}");
    }

    #[test]
    fn a_balance_that_does_not_match_its_rows_is_reported() {
        let state = State::new();
        let account = Account { id: "loy_1".into(), customer: None, metadata: Default::default(), created: 1 };
        let tx = PointsTransaction {
            id: "ptx_1".into(),
            account: "loy_1".into(),
            points: 5,
            kind: TxType::Earn,
            source: Source::Payment { payment: "pay_gone".into(), amount: 1, currency: "eur".into() },
            balance_after: 5,
            created: 1,
            pending: 0,
            lots: Vec::new(),
            available_at: None,
            expires_at: None,
        };
        state
            .apply(
                1,
                Record {
                    time: 1,
                    idem: None,
                    changes: vec![Change::PutAccount(account.into()), Change::PutTransaction(tx.into())],
                },
            )
            .unwrap();
        let problems = ledger_problems(&state);
        assert!(problems.iter().any(|p| p.contains("pay_gone")), "{problems:?}");
        state.tamper_account("loy_1", |e| e.balance = 6);
        let problems = ledger_problems(&state);
        assert!(problems.iter().any(|p| p.contains("balance 6 + pending_balance 0")), "{problems:?}");
        assert!(!problems.iter().any(|p| p.contains("open redemptions")), "{problems:?}");
        state.tamper_account("loy_1", |e| e.held = 3);
        let problems = ledger_problems(&state);
        assert!(problems.iter().any(|p| p.contains("holds 3 points for open redemptions")), "{problems:?}");
    }
}
