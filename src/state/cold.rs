//! Cold objects: what memory lets go of once history holds it.
//!
//! An object that is only read from now on (a points transaction, an
//! event, a finished payment, a closed redemption, a spent or expired lot,
//! an open lot no timer waits on (past pending, never expiring), a delivery
//! no longer pending, a refund) is queued here as its
//! record applies, with the record's LSN. The history thread writes each
//! queued version (`History::write_applied`), and then `evict` lets its body
//! go: the table keeps its slot (its id and position, for lookups, lists
//! and indexes) and reads it back from history when asked
//! (`Table::attach_history`). A version that changed meanwhile stays in
//! memory until history has that one too (`Table::evict` compares the
//! pointers), so a read never sees an older version than memory had.
//!
//! An object that changes again (a refund of a payment completed long ago,
//! a release that reopens a lot) is loaded from history by whoever reads it
//! and put back whole by its record: the result is what it would have been
//! with everything in memory (docs/architecture.md, "History").
//!
//! Objects forgotten past retention (events, finished deliveries) are queued
//! too, so that history deletes them as well.

use std::sync::Arc;

use parking_lot::Mutex;

use super::State;
use crate::domain::events::Event;
use crate::domain::lots::PointsLot;
use crate::domain::payments::{Payment, PaymentStatus};
use crate::domain::points::PointsTransaction;
use crate::domain::redemptions::Redemption;
use crate::domain::refunds::Refund;
use crate::domain::webhooks::{Delivery, DeliveryStatus};
use crate::domain::Id;
use crate::error::StorageError;
use crate::wal::Change;

/// The tables whose objects go cold, as history's keys name them (one
/// byte, docs/formats.md, "History"). Never renumber.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum ColdTable {
    Payments = 1,
    Refunds = 2,
    Redemptions = 3,
    Transactions = 4,
    Lots = 5,
    Events = 6,
    Deliveries = 7,
}

/// A version of an object for history to hold.
#[derive(Debug, Clone)]
pub enum ColdObject {
    Payment(Arc<Payment>),
    Refund(Arc<Refund>),
    Redemption(Arc<Redemption>),
    Transaction(Arc<PointsTransaction>),
    Lot(Arc<PointsLot>),
    Event(Arc<Event>),
    Delivery(Arc<Delivery>),
}

impl ColdObject {
    /// The version `change` puts, if it is one memory lets go of once
    /// history has it: final, or with nothing left for a timer to do.
    pub fn of(change: &Change) -> Option<ColdObject> {
        Some(match change {
            Change::PutPayment(p) if p.status != PaymentStatus::Pending => ColdObject::Payment(p.clone()),
            Change::PutRefund(r) => ColdObject::Refund(r.clone()),
            Change::PutRedemption(r) if !r.status.is_open() => ColdObject::Redemption(r.clone()),
            Change::PutTransaction(t) => ColdObject::Transaction(t.clone()),
            // An open lot a timer waits on (pending, or expiring) stays: the
            // timer, the balances' `next_expiry` and reports read it. One that
            // waits for nothing is read only when spending reaches it (and
            // one that spending reached stays: `State::queue_cold`).
            Change::PutLot(l) if !l.status.is_open() || l.waits_for_nothing() => ColdObject::Lot(l.clone()),
            Change::PutEvent(e) => ColdObject::Event(e.clone()),
            Change::PutDelivery(d) if d.status != DeliveryStatus::Pending => ColdObject::Delivery(d.clone()),
            _ => return None,
        })
    }

    /// Whether applying a record never reads the version of this object it
    /// replaces, or reads the same from any later version (a payment, a
    /// refund, a points transaction and an event are put as they are; a lot
    /// past pending never goes back there, and history holds no version of a
    /// lot with a deadline (`ColdObject::of`), so what a replayed record reads
    /// of one moves no pending points and hides no deadline, `State::apply_lot`;
    /// a pending lot, a redemption and a delivery move balances or timers by
    /// what their previous version was).
    /// Only such an object may leave memory before the records that follow
    /// its snapshot are replayed, or be named by a checkpoint: history may
    /// already hold what they made of it.
    pub fn replaced_unread(&self) -> bool {
        match self {
            ColdObject::Payment(_) | ColdObject::Refund(_) | ColdObject::Transaction(_) | ColdObject::Event(_) => true,
            ColdObject::Lot(l) => l.status != crate::domain::lots::LotStatus::Pending,
            ColdObject::Redemption(_) | ColdObject::Delivery(_) => false,
        }
    }
}

/// History's lookup of a table's cold object by id, as the change that puts it.
pub type ColdLoad = Arc<dyn Fn(ColdTable, &str) -> Result<Option<Change>, StorageError> + Send + Sync>;

/// What history has not taken yet, oldest first: versions to write and
/// objects to delete, each with the LSN of the record that made it so
/// (0: loaded from a snapshot).
#[derive(Default)]
pub struct ColdQueue {
    written: Mutex<Vec<(u64, ColdObject)>>,
    forgotten: Mutex<Vec<(u64, ColdTable, Id)>>,
}

/// What `State::cold_through` hands to history.
#[derive(Default)]
pub struct ColdBatch {
    pub written: Vec<(u64, ColdObject)>,
    pub forgotten: Vec<(u64, ColdTable, Id)>,
}

impl ColdBatch {
    pub fn is_empty(&self) -> bool {
        self.written.is_empty() && self.forgotten.is_empty()
    }
}

/// Copies of the entries up to `upto` (`u64::MAX`: all of them).
fn copy_through<E: Clone>(queue: &Mutex<Vec<E>>, upto: u64, lsn: impl Fn(&E) -> u64) -> Vec<E> {
    queue.lock().iter().filter(|e| lsn(e) <= upto).cloned().collect()
}

/// Drops the entries up to `upto`, once history has them.
fn drop_through<E>(queue: &Mutex<Vec<E>>, upto: u64, lsn: impl Fn(&E) -> u64) {
    queue.lock().retain(|e| lsn(e) > upto);
}

impl State {
    /// Queues the version `change` puts for history, if it is one that goes
    /// cold (called as the change applies, with its record's LSN).
    ///
    /// An open lot that a spend, a clawback or a release changed (it was in
    /// its table already) is queued as a copy: history gets the version,
    /// but `Table::evict` lets go only of the very version the table holds,
    /// so this one stays in memory while it is open. The account's next
    /// spend starts there, and reading it back from history for every
    /// redemption halved redemption create + cancel (docs/decisions.md,
    /// "History on disk").
    pub(super) fn queue_cold(&self, lsn: u64, change: &Change) {
        if let Some(mut object) = ColdObject::of(change) {
            if let ColdObject::Lot(l) = &object {
                if l.status.is_open() && self.lots.contains(&l.id) {
                    object = ColdObject::Lot(Arc::new(PointsLot::clone(l)));
                }
            }
            if lsn == 0 && self.cold_at_load(&object) {
                // A snapshot's item that history already holds: `restore_item`
                // lets it go as soon as it is in its table.
                return;
            }
            self.cold.written.lock().push((lsn, object));
        }
    }

    /// While a snapshot loads (`on`): whether history already holds every
    /// object in it (its LSN is at or past the snapshot's, and it holds
    /// objects at all). Then the items that go cold and whose records never
    /// read them back (`ColdObject::replaced_unread`) leave memory as they
    /// load, instead of being queued and let go of after the catch-up: a
    /// restart does not hold the whole ledger at once, nor walk it twice
    /// (docs/performance.md, "Restart: cold snapshot items let go of as they load").
    pub fn load_cold_from_history(&self, on: bool) {
        self.snapshot_in_history.store(on, std::sync::atomic::Ordering::Release);
    }

    /// Whether a snapshot item that goes cold leaves memory as it loads.
    pub(super) fn cold_at_load(&self, object: &ColdObject) -> bool {
        object.replaced_unread() && self.snapshot_in_history.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Queues an object forgotten past retention, for history to delete.
    pub(super) fn queue_forgotten(&self, lsn: u64, table: ColdTable, id: Id) {
        self.cold.forgotten.lock().push((lsn, table, id));
    }

    /// What records up to `upto` left for history, still queued until
    /// `drop_cold_through` (a failed write loses nothing).
    pub fn cold_through(&self, upto: u64) -> ColdBatch {
        ColdBatch {
            written: copy_through(&self.cold.written, upto, |(lsn, _)| *lsn),
            forgotten: copy_through(&self.cold.forgotten, upto, |(lsn, _, _)| *lsn),
        }
    }

    /// Everything queued for history, taken out of the queue (at startup,
    /// before the history thread runs: a failed catch-up fails the start).
    pub fn take_cold(&self) -> ColdBatch {
        ColdBatch {
            written: std::mem::take(&mut *self.cold.written.lock()),
            forgotten: std::mem::take(&mut *self.cold.forgotten.lock()),
        }
    }

    /// Archives what is cold at the old end of the archived tables (after
    /// history's reads are attached: a start whose snapshot let its cold
    /// objects go as they loaded, `load_cold_from_history`).
    pub fn archive_cold(&self) {
        self.payments.advance();
        self.transactions.advance();
        self.lots.advance();
        self.events.advance();
    }

    /// Drops what records up to `upto` left for history, which has it now.
    pub fn drop_cold_through(&self, upto: u64) {
        drop_through(&self.cold.written, upto, |(lsn, _)| *lsn);
        drop_through(&self.cold.forgotten, upto, |(lsn, _, _)| *lsn);
    }
}

/// Everything that follows the list of cold tables, written once: each is
/// (its `ColdObject` variant, its `State` field, its `ColdTable`, the
/// `Change` that puts it).
macro_rules! cold_tables {
    ($(($object:ident, $field:ident, $table:ident, $put:ident)),* $(,)?) => {
        impl ColdObject {
            pub fn table(&self) -> ColdTable {
                match self {
                    $(ColdObject::$object(_) => ColdTable::$table,)*
                }
            }

            pub fn id(&self) -> &str {
                match self {
                    $(ColdObject::$object(o) => &o.id,)*
                }
            }

            pub fn created(&self) -> i64 {
                match self {
                    $(ColdObject::$object(o) => o.created,)*
                }
            }

            /// The object as history stores it: the WAL's change that puts it.
            pub fn change(&self) -> Change {
                match self {
                    $(ColdObject::$object(o) => Change::$put(o.clone()),)*
                }
            }
        }

        impl State {
            /// Lets go of `object`'s body, if it is still the version memory
            /// holds (history holds it now). Returns whether it did.
            pub fn evict(&self, object: &ColdObject) -> bool {
                match object {
                    $(ColdObject::$object(o) => self.$field.evict(o),)*
                }
            }

            /// Where `object` is in its table's insertion order.
            pub fn position_of(&self, object: &ColdObject) -> Option<u32> {
                match object {
                    $(ColdObject::$object(o) => self.$field.position(&o.id),)*
                }
            }

            /// Objects in history only, over every table.
            pub fn cold_objects(&self) -> usize {
                0 $(+ self.$field.cold_len())*
            }

            /// Lets every table read its cold objects through `load` (history's
            /// lookup of a table's object by id, as the change that puts it).
            pub fn attach_cold_loader(&self, load: ColdLoad) {
                $({
                    let load = load.clone();
                    self.$field.attach_history(Box::new(move |id| match load(ColdTable::$table, id)? {
                        None => Ok(None),
                        Some(Change::$put(object)) => Ok(Some(object)),
                        Some(_) => Err(StorageError::Inconsistent(format!(
                            "history holds something else than a {} under {id}",
                            stringify!($field)
                        ))),
                    }));
                })*
            }
        }
    };
}

cold_tables!(
    (Payment, payments, Payments, PutPayment),
    (Refund, refunds, Refunds, PutRefund),
    (Redemption, redemptions, Redemptions, PutRedemption),
    (Transaction, transactions, Transactions, PutTransaction),
    (Lot, lots, Lots, PutLot),
    (Event, events, Events, PutEvent),
    (Delivery, deliveries, Deliveries, PutDelivery),
);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lots::LotStatus;
    use crate::domain::payments::Payment;
    use crate::domain::redemptions::RedemptionStatus;
    use crate::history::{FjallHistory, History, HistoryStats};
    use crate::state::list::CreatedRange;
    use crate::state::table::ArchivedIds;
    use crate::state::test_changes::{account, earn, expiring, lot, payment, redemption};
    use crate::state::CheckpointItems;
    use crate::state::{ListParams, SnapshotItem};
    use crate::storage::fs::RealFs;
    use crate::wal::Record;

    const N: usize = 700;

    /// An account with `N` earns, each with its lot (every fourth spent, the
    /// rest available; every fifth expires, and while it is open it stays in
    /// memory), and a redemption every third earn, open or canceled (an
    /// open one stays in memory): lists mix memory and history.
    fn ledger() -> State {
        let state = State::new();
        let record = |changes| Record { time: 1, idem: None, changes };
        state.apply(1, record(vec![account("loy_a")])).unwrap();
        for i in 0..N {
            let (remaining, status) = if i % 4 == 0 { (0, LotStatus::Spent) } else { (1, LotStatus::Available) };
            let mut made = lot(&format!("lot_{i:04}"), "loy_a", 1, remaining, status);
            if i % 5 == 1 {
                made = expiring(made, 1_000_000);
            }
            let mut changes = vec![earn(&format!("ptx_{i:04}"), "loy_a", 1, i as i64 + 1, (i / 7) as i64), made];
            if i % 3 == 0 {
                let status = if i % 2 == 0 { RedemptionStatus::Pending } else { RedemptionStatus::Canceled };
                changes.push(redemption(&format!("rdm_{i:04}"), "loy_a", 1, status));
            }
            state.apply(i as u64 + 2, record(changes)).unwrap();
        }
        state
    }

    /// Everything a reader can ask of the tables the test fills, as text.
    fn reads(state: &State) -> Vec<String> {
        let mut out = Vec::new();
        let params = [
            ListParams::default(),
            ListParams { limit: 100, starting_after: Some(Id::from("ptx_0300")), ..Default::default() },
            ListParams { limit: 5, ending_before: Some(Id::from("ptx_0010")), ..Default::default() },
            ListParams {
                limit: 100,
                created: CreatedRange { gte: Some(20), lt: Some(40), ..Default::default() },
                ..Default::default()
            },
        ];
        for p in &params {
            let more = state.page(&state.transactions, p, |_| true, |t| out.push(format!("{t:?}"))).unwrap();
            let more_of_account =
                state.account_transactions("loy_a", p, |t| t.created % 2 == 0, |t| out.push(format!("{t:?}"))).unwrap();
            out.push(format!("{more} {more_of_account:?}"));
        }
        let canceled = |r: &Redemption| r.status == RedemptionStatus::Canceled;
        let more = state.page(&state.redemptions, &ListParams::default(), canceled, |r| out.push(format!("{r:?}")));
        out.push(format!("{more:?}"));
        state.for_each_lot_of_account("loy_a", |l| out.push(format!("{l:?}"))).unwrap();
        out.extend(state.lots_to_spend("loy_a", 30).unwrap().iter().map(|l| format!("{l:?}")));
        out.push(format!("{:?}", state.transactions.with("ptx_0123", Clone::clone)));
        out.push(format!("{:?}", state.redemptions.with("rdm_0009", Clone::clone)));
        out.push(format!("{:?}", state.figures("loy_a")));
        out
    }

    /// How many of `ledger`'s objects go cold: every transaction, every lot
    /// but the open expiring ones, the canceled redemptions.
    fn cold_in_ledger() -> usize {
        let open_expiring = (0..N).filter(|i| i % 4 != 0 && i % 5 == 1).count();
        let canceled = (0..N).filter(|i| i % 3 == 0 && i % 2 == 1).count();
        N + (N - open_expiring) + canceled
    }

    #[test]
    fn reads_are_the_same_before_and_after_history_takes_the_objects() {
        let state = ledger();
        let before = reads(&state);
        assert_eq!(state.cold_objects(), 0);
        let dir = tempfile::tempdir().unwrap();
        let history = History::with_store(Arc::new(FjallHistory::open(dir.path()).unwrap()), HistoryStats::default());
        let end = state.applied_lsn();
        let caught_up = history.catch_up(&RealFs, dir.path(), &state, 0, end).unwrap();
        // Transactions, lots no timer waits on and canceled redemptions went;
        // open expiring lots and open redemptions stay.
        let cold = cold_in_ledger();
        assert_eq!(caught_up.objects, cold);
        assert_eq!(state.cold_objects(), cold);
        assert_eq!(history.store().objects_count().unwrap(), cold);
        assert_eq!(reads(&state), before, "lists, cursors, filters and lookups read history as they read memory");
        assert_eq!(state.transactions.first_hot() as usize, N, "every transaction is archived");
        assert_eq!(state.transactions.held_len(), 0, "memory holds nothing of them");

        // Two spent lots come back (a release): the record reads the versions
        // it replaces from history. Spending reached them, so they stay in
        // memory while they are open, expiring or not, and history holds
        // their versions all the same; spent again, they go.
        let back = vec![
            lot("lot_0004", "loy_a", 1, 1, LotStatus::Available),
            expiring(lot("lot_0016", "loy_a", 1, 1, LotStatus::Available), 1_000_000),
        ];
        state.apply(end + 1, Record { time: 2, idem: None, changes: back }).unwrap();
        assert_eq!(state.lots.with("lot_0004", |l| l.status), Some(LotStatus::Available));
        assert_eq!(state.cold_objects(), cold - 2);
        assert!(history.write_applied(&state, true));
        assert_eq!(state.cold_objects(), cold - 2, "open lots that spending reached stay in memory");
        let key = crate::history::layout::object_key(ColdTable::Lots as u8, "lot_0004");
        let held = Change::decode_alone(&history.store().object(&key).unwrap().unwrap()).unwrap();
        assert!(matches!(held, Change::PutLot(l) if l.status == LotStatus::Available), "history has the version");
        let spent = vec![
            lot("lot_0004", "loy_a", 1, 0, LotStatus::Spent),
            expiring(lot("lot_0016", "loy_a", 1, 0, LotStatus::Spent), 1_000_000),
        ];
        state.apply(end + 2, Record { time: 2, idem: None, changes: spent }).unwrap();
        assert!(history.write_applied(&state, true));
        assert_eq!(state.cold_objects(), cold, "spent, so let go again");
        assert_eq!(state.lots.with("lot_0016", |l| l.status), Some(LotStatus::Spent), "read back from history");
        assert_eq!(state.lots.with("lot_0004", |l| l.status), Some(LotStatus::Spent), "read back from history");
    }

    #[test]
    fn a_version_that_changed_after_it_was_queued_stays_until_history_has_it() {
        let state = ledger();
        let queued = state.cold_through(u64::MAX);
        let first = queued.written.iter().find(|(_, o)| o.id() == "rdm_0003").unwrap().1.clone();
        // A newer version of the redemption replaces it in memory before history writes the old one.
        let record = Record {
            time: 1,
            idem: None,
            changes: vec![redemption("rdm_0003", "loy_a", 1, RedemptionStatus::Expired)],
        };
        state.apply(state.applied_lsn() + 1, record).unwrap();
        assert!(!state.evict(&first), "the old version is not what memory holds");
        assert_eq!(state.redemptions.with("rdm_0003", |r| r.status), Some(RedemptionStatus::Expired));
    }

    fn fjall_history(dir: &std::path::Path) -> Arc<History> {
        History::with_store(Arc::new(FjallHistory::open(dir).unwrap()), HistoryStats::default())
    }

    /// A history read that fails (a disk error) never passes for a new
    /// object: the record replacing a cold lot is refused before it is
    /// written, and applying it fails.
    #[test]
    fn a_history_read_error_refuses_the_change_and_fails_its_apply() {
        let state = ledger();
        state.attach_cold_loader(Arc::new(|_, _| Err(StorageError::Poisoned)));
        let queued = state.cold_through(u64::MAX);
        let spent = queued.written.iter().find(|(_, o)| o.id() == "lot_0000").unwrap().1.clone();
        assert!(state.evict(&spent));
        let back = vec![lot("lot_0000", "loy_a", 1, 1, LotStatus::Available)];
        assert!(matches!(state.check(&back), Err(crate::state::Refusal::Unreadable(_))));
        let applied = state.apply(state.applied_lsn() + 1, Record { time: 2, idem: None, changes: back });
        assert!(applied.is_err(), "{applied:?}");
        assert_eq!(state.lots.with("lot_0000", |l| l.status), None, "read as missing, logged");
    }

    /// Spending reads the lots it may take from history once they are cold
    /// (available, never expiring): one that history cannot give fails the
    /// spend (the actor answers `storage_unavailable`), and is never passed
    /// over as if it held nothing; nor is it left out of a list.
    #[test]
    fn spending_from_a_lot_history_cannot_give_is_an_error() {
        let state = ledger();
        let queued = state.cold_through(u64::MAX);
        let available = queued.written.iter().find(|(_, o)| o.id() == "lot_0602").unwrap().1.clone();
        let before = state.lots_to_spend("loy_a", 1_000).unwrap();
        assert!(before.iter().any(|l| l.id == "lot_0602"));
        assert!(state.evict(&available));
        state.attach_cold_loader(Arc::new(|_, _| Err(StorageError::Poisoned)));
        assert!(matches!(state.lots_to_spend("loy_a", 1_000), Err(StorageError::Poisoned)));
        // A list of the account's lots fails too (a 503), rather than leave one out.
        assert!(matches!(state.for_each_lot_of_account("loy_a", |_| ()), Err(StorageError::Poisoned)));
        assert!(state.lots_to_spend("loy_a", 1).is_ok(), "a small spend stops at the oldest lots, in memory here");
    }

    /// A history made before cold objects (no `meta/objects`) gets every
    /// object once, however far its LSN is.
    #[test]
    fn a_history_from_before_cold_objects_gets_every_object_once() {
        let state = ledger();
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        let end = state.applied_lsn();
        history.store().write(&crate::history::Batch { lsn: end, ..Default::default() }).unwrap();
        let caught_up = history.catch_up(&RealFs, dir.path(), &state, 0, end).unwrap();
        assert_eq!(caught_up.objects, cold_in_ledger());
        assert!(history.store().holds_objects().unwrap());
        // A second start with the same memory writes nothing: history has it all.
        let again = ledger();
        let caught_up = history.catch_up(&RealFs, dir.path(), &again, 0, end).unwrap();
        assert_eq!((caught_up.objects, caught_up.evicted), (0, cold_in_ledger()));
    }

    /// A local checkpoint of archived tables names where memory starts and
    /// lists their index entries in bulk: loaded beside the same history it
    /// reads the same. A portable snapshot reads them out whole, and loads
    /// to the same reads without history.
    #[test]
    fn archived_tables_survive_a_checkpoint_and_a_portable_snapshot() {
        let state = Arc::new(ledger());
        let before = reads(&state);
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        let end = state.applied_lsn();
        history.catch_up(&RealFs, dir.path(), &state, 0, end).unwrap();
        assert!(history.store().holds_archive().unwrap());
        let info = crate::snapshot::write_checkpoint(&RealFs, dir.path(), state.clone(), &history, end, 5).unwrap();
        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        // Its open redemptions are whole, its lots named; the N transactions are not there one by one.
        assert!(info.items < 2 * N as u64, "no item per archived transaction ({} items)", info.items);
        let copy = State::new();
        crate::snapshot::load_snapshot(&copy, &info.path, &bytes, &checked, Some(end)).unwrap();
        assert_eq!(copy.transactions.first_hot() as usize, N);
        history.attach_reads(&copy);
        assert_eq!(reads(&copy), before, "read beside history");
        // Cold transactions are named without their type: the checkpoint lists each type's apart.
        let types = |s: &State| {
            let index = &s.transactions_by_type;
            index
                .keys()
                .into_iter()
                .map(|k| (k.clone(), index.positions(&k)))
                .collect::<std::collections::BTreeMap<_, _>>()
        };
        assert_eq!(types(&state).values().map(Vec::len).sum::<usize>(), state.transactions.len());
        assert_eq!(types(&copy), types(&state), "each type's transactions, from the checkpoint");
        // One written before that index lists none: the load rebuilds it from history, once.
        copy.transactions_by_type.clear();
        copy.complete_transaction_types().unwrap();
        assert_eq!(types(&copy), types(&state), "each type's transactions, rebuilt");
        // Cold lots are named without their status or expiry: the checkpoint lists the lot order's groups.
        assert!(state.lots.cold_len() > 0, "some lots are only named");
        assert_eq!(state.lot_order.total(), state.lots.len());
        assert_eq!(copy.lot_order.groups(), state.lot_order.groups(), "the lot order, from the checkpoint");
        copy.lot_order.clear();
        copy.complete_lot_order().unwrap();
        assert_eq!(copy.lot_order.groups(), state.lot_order.groups(), "the lot order, rebuilt");
        // A lot listed under its next status too (it changed after the
        // barrier; its record, replayed next, moves it): whole, nothing read.
        let (key, positions) = copy.lot_order.groups()[0].clone();
        let next = crate::state::lot_order::Key { status: (key.status + 1) % 5, ..key };
        copy.lot_order.merge(next, &positions[..1]);
        let twice = copy.lot_order.groups();
        copy.complete_lot_order().unwrap();
        assert_eq!(copy.lot_order.groups(), twice, "not rebuilt");
        let without = State::new();
        let refused = crate::snapshot::load_snapshot(&without, &info.path, &bytes, &checked, None).unwrap_err();
        assert!(refused.to_string().contains("automatic checkpoint"), "{refused}");

        // Portable: the archived run read whole from history's view.
        let mut placed = Vec::new();
        state.snapshot_placed(false, |p| placed.push(p));
        assert!(placed.iter().any(|(_, i)| matches!(i, SnapshotItem::ArchivedRun { .. })));
        let view = history.store().objects_view();
        let resolve = |item, put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>| {
            crate::history::resolve_cold(view.as_ref(), item, put)
        };
        let portable = tempfile::tempdir().unwrap();
        let items = crate::state::Counted::in_place(placed);
        let info =
            crate::snapshot::write_snapshot(&RealFs, portable.path(), end, 5, items, Some(&resolve), None).unwrap();
        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        let restored = State::new();
        crate::snapshot::load_snapshot(&restored, &info.path, &bytes, &checked, None).unwrap();
        assert_eq!(restored.transactions.held_len(), N, "all in memory, in their places");
        assert_eq!(reads(&restored), before, "whole, without history");
        assert_eq!(types(&restored), types(&state), "each type's transactions, as they loaded");
    }

    /// Applies each record to `state` and to `memory` (a ledger that keeps
    /// everything in memory) alike; gives each one's LSN.
    fn twin<'a>(state: &'a State, memory: &'a State) -> impl FnMut(Vec<Change>) -> u64 + 'a {
        let mut lsn = state.applied_lsn();
        move |changes| {
            lsn += 1;
            memory.apply(lsn, Record { time: 1, idem: None, changes: changes.clone() }).unwrap();
            state.apply(lsn, Record { time: 1, idem: None, changes }).unwrap();
            lsn
        }
    }

    /// Every read of payments a client can make, as text.
    fn payment_reads(s: &State) -> Vec<String> {
        let mut out = Vec::new();
        let params = [
            ListParams { limit: 1000, ..Default::default() },
            ListParams { limit: 7, starting_after: Some(Id::from("pay_0100")), ..Default::default() },
            ListParams { limit: 7, ending_before: Some(Id::from("pay_0005")), ..Default::default() },
        ];
        for p in &params {
            let more = s.page(&s.payments, p, |_| true, |x| out.push(format!("{x:?}")));
            out.push(format!("{more:?}"));
            let by = |x: &Payment| out.push(format!("{x:?}"));
            let more = s.indexed_page(&s.payments, &s.payments_by_customer, "cust_b", p, |_| true, by);
            out.push(format!("{more:?}"));
        }
        for id in ["pay_0003", "pay_0010", "pay_0299", "pay_0305", "pay_9999"] {
            let found = s.payments.with(id, Clone::clone);
            out.push(format!("{found:?} at {:?}, {}", s.payments.position(id), s.payments.contains(id)));
        }
        out
    }

    /// Payments are archived as transactions and events are, and change
    /// again: a refund of an archived one revives it in its place below
    /// `first_hot`, history writes the new version over the old, and memory
    /// lets go of it again. A checkpoint captured while two are revived and
    /// a portable snapshot load them in their places; a new payment never
    /// asks history where it is.
    #[test]
    fn archived_payments_change_again_in_their_places() {
        let (state, memory) = (Arc::new(State::new()), State::new());
        let mut apply = twin(&state, &memory);
        for i in 0..300 {
            apply(vec![payment(&format!("pay_{i:04}"), if i % 2 == 0 { "cust_a" } else { "cust_b" }, 0, i)]);
        }
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        history.catch_up(&RealFs, dir.path(), &state, 0, state.applied_lsn()).unwrap();
        assert_eq!(state.payments.first_hot(), 300, "every payment is archived");
        assert_eq!(state.payments.held_len(), 0);
        assert_eq!(payment_reads(&state), payment_reads(&memory));

        apply(vec![payment("pay_0003", "cust_b", 400, 3)]);
        apply(vec![payment("pay_0010", "cust_a", 1000, 10)]);
        for i in 300..310 {
            apply(vec![payment(&format!("pay_{i:04}"), "cust_b", 0, i)]);
        }
        let end = apply(vec![payment("pay_0003", "cust_b", 500, 3)]);
        assert_eq!(state.payments.revived_len(), 2);
        assert_eq!(state.payments.len(), 310, "changed in place, not added");
        let before = payment_reads(&memory);
        assert_eq!(payment_reads(&state), before, "revived ones read as memory has them");

        // A checkpoint captured now, written once history has synced through it.
        let mut placed = Vec::new();
        state.snapshot_placed(true, |p| placed.push(p));
        let mut portable = Vec::new();
        state.snapshot_placed(false, |p| portable.push(p));
        let mut unsynced = Vec::new();
        state.snapshot_placed(true, |p| unsynced.push(p));
        let stale_view = history.store().objects_view();
        assert!(history.write_applied(&state, true) && history.sync_written());
        assert_eq!(state.payments.revived_len(), 0, "history holds them: memory let go");
        assert_eq!(payment_reads(&state), before, "read from history");
        let items = CheckpointItems::new(state.clone(), placed, true);
        let at = tempfile::tempdir().unwrap();
        let info = crate::snapshot::write_snapshot(&RealFs, at.path(), end, 5, items, None, None).unwrap();
        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        let copy = State::new();
        history.attach_reads(&copy);
        crate::snapshot::load_snapshot(&copy, &info.path, &bytes, &checked, Some(end)).unwrap();
        assert_eq!(
            copy.payments.first_hot(),
            310,
            "the checkpoint's 300, then the ten it named, let go of as they load"
        );
        assert_eq!(copy.payments.archived_ids(), state.payments.archived_ids(), "which ids may be archived");
        assert_eq!(payment_reads(&copy), before, "a checkpoint's load, beside history");
        assert_eq!(copy.payments.revived_len(), 0, "the revived ones history holds let go of as they load");
        copy.apply(end + 1, Record { time: 1, idem: None, changes: vec![payment("pay_0007", "cust_b", 1, 7)] })
            .unwrap();
        assert_eq!(copy.payments.with_at(7, |p| p.amount_refunded), Some(1), "revived in its place after a load");

        // Portable, from a view of history before it took the new versions:
        // the archived run, then each revived payment as its newer version.
        // A checkpoint history had not synced for: the archived run read
        // whole, each revived payment in its place; nothing archived at its load.
        let resolve = |item, put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>| {
            crate::history::resolve_cold(stale_view.as_ref(), item, put)
        };
        let out = tempfile::tempdir().unwrap();
        let items = CheckpointItems::new(state.clone(), unsynced, false);
        let info = crate::snapshot::write_snapshot(&RealFs, out.path(), end, 5, items, Some(&resolve), None).unwrap();
        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        let whole = State::new();
        crate::snapshot::load_snapshot(&whole, &info.path, &bytes, &checked, None).unwrap();
        assert_eq!(payment_reads(&whole), before, "a checkpoint read whole");
        assert_eq!(whole.payments.archived_ids(), ArchivedIds::Nothing);
        assert_eq!(whole.payments.held_len(), 310);

        for view in [stale_view, history.store().objects_view()] {
            let resolve = |item, put: &mut dyn FnMut(SnapshotItem) -> Result<(), StorageError>| {
                crate::history::resolve_cold(view.as_ref(), item, put)
            };
            let out = tempfile::tempdir().unwrap();
            let items = crate::state::Counted::in_place(portable.clone());
            let info =
                crate::snapshot::write_snapshot(&RealFs, out.path(), end, 5, items, Some(&resolve), None).unwrap();
            let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
            let restored = State::new();
            crate::snapshot::load_snapshot(&restored, &info.path, &bytes, &checked, None).unwrap();
            assert_eq!(payment_reads(&restored), before, "whole, without history");
        }
    }

    /// Everything a reader can ask of one account's lots, as text.
    fn lot_reads(s: &State) -> Vec<String> {
        let mut out = Vec::new();
        s.for_each_lot_of_account("loy_a", |l| out.push(format!("{l:?}"))).unwrap();
        out.extend(s.lots_to_spend("loy_a", 2_000).unwrap().iter().map(|l| format!("{l:?}")));
        let more = s.page(
            &s.lots,
            &ListParams { limit: 1000, ..Default::default() },
            |_| true,
            |l| out.push(format!("{l:?}")),
        );
        out.push(format!("{more:?} {:?}", s.lot_order.groups()));
        out.push(format!("{:?}", s.accounts.with("loy_a", |e| (e.open_lots.clone(), e.expiring_lots.clone()))));
        for id in ["lot_0003", "lot_0050", "lot_0060", "lot_0099", "lot_9999"] {
            out.push(format!("{:?} at {:?}", s.lots.with(id, Clone::clone), s.lots.position(id)));
        }
        out.push(format!("{:?}", s.figures("loy_a")));
        out
    }

    /// Lots are archived as payments are. An open lot that spending reached
    /// before history took it stays in memory while open, and does not hold
    /// back the archiving of the lots after it; a spend of an archived lot
    /// changes it in its place. A checkpoint and its load keep them all
    /// where they were.
    #[test]
    fn lots_are_archived_and_change_in_their_places() {
        let (state, memory) = (Arc::new(State::new()), State::new());
        let mut apply = twin(&state, &memory);
        apply(vec![account("loy_a")]);
        for i in 0..100 {
            let made = lot(&format!("lot_{i:04}"), "loy_a", 10, 10, LotStatus::Available);
            apply(vec![earn(&format!("ptx_{i:04}"), "loy_a", 10, 10 * (i + 1), i), made]);
        }
        // Spending reaches lot 3 before history has taken anything.
        apply(vec![lot("lot_0003", "loy_a", 10, 4, LotStatus::Available)]);
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        history.catch_up(&RealFs, dir.path(), &state, 0, state.applied_lsn()).unwrap();
        assert_eq!(state.lots.first_hot(), 100, "the lot kept in memory holds nothing back");
        assert_eq!(state.lots.revived_len(), 1, "it stays, below `first_hot`");
        assert_eq!(lot_reads(&state), lot_reads(&memory));

        // Archived lots change: one spent (it goes again), one reached (it stays while open).
        apply(vec![lot("lot_0050", "loy_a", 10, 0, LotStatus::Spent)]);
        let end = apply(vec![lot("lot_0060", "loy_a", 10, 7, LotStatus::Available)]);
        assert_eq!(state.lots.revived_len(), 3);
        assert_eq!(lot_reads(&state), lot_reads(&memory));
        assert!(history.write_applied(&state, true) && history.sync_written());
        assert_eq!(state.lots.revived_len(), 2, "the spent one went; the open ones stay");
        assert_eq!(lot_reads(&state), lot_reads(&memory));

        let info = crate::snapshot::write_checkpoint(&RealFs, dir.path(), state.clone(), &history, end, 5).unwrap();
        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        let copy = State::new();
        history.attach_objects(&copy);
        history.attach_held_archives(&copy).unwrap();
        crate::snapshot::load_snapshot(&copy, &info.path, &bytes, &checked, Some(end)).unwrap();
        copy.finish_restore(end);
        assert_eq!(copy.lots.first_hot(), 100);
        assert_eq!(lot_reads(&copy), lot_reads(&memory), "a checkpoint's load, beside history");
        let spend =
            Record { time: 1, idem: None, changes: vec![lot("lot_0070", "loy_a", 10, 1, LotStatus::Available)] };
        memory.apply(end + 1, spend.clone()).unwrap();
        copy.apply(end + 1, spend).unwrap();
        assert_eq!(lot_reads(&copy), lot_reads(&memory), "an archived lot changes after a load");
    }

    /// A checkpoint names a spent lot that expires; a record after it gives
    /// points back (open again, with its expiry), and history takes what
    /// that record left before a crash. Replayed after the checkpoint, the
    /// record reads the version it replaces from history, and the lot gets
    /// its deadline and its place among the open lots again (history never
    /// holds a version with a deadline, which would hide it).
    #[test]
    fn a_named_lot_given_points_back_after_the_checkpoint_gets_its_deadline_on_replay() {
        let state = Arc::new(State::new());
        let record = |changes| Record { time: 1, idem: None, changes };
        state.apply(1, record(vec![account("loy_a")])).unwrap();
        state.apply(2, record(vec![expiring(lot("lot_x", "loy_a", 5, 0, LotStatus::Spent), 1_000)])).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        history.catch_up(&RealFs, dir.path(), &state, 0, 2).unwrap();
        assert_eq!(state.cold_objects(), 1);
        let info = crate::snapshot::write_checkpoint(&RealFs, dir.path(), state.clone(), &history, 2, 5).unwrap();
        let given_back = || record(vec![expiring(lot("lot_x", "loy_a", 5, 2, LotStatus::Available), 1_000)]);
        state.apply(3, given_back()).unwrap();
        assert!(history.write_applied(&state, true));
        assert_eq!(state.due_lots(i64::MAX, 10), vec![Id::from("lot_x")]);

        let (bytes, checked) = crate::snapshot::load::read_checked(&RealFs, &info.path).unwrap();
        let copy = State::new();
        // As a start attaches them: the lot is archived in the checkpoint.
        history.attach_objects(&copy);
        history.attach_held_archives(&copy).unwrap();
        crate::snapshot::load_snapshot(&copy, &info.path, &bytes, &checked, Some(3)).unwrap();
        assert_eq!(copy.cold_objects(), 1, "archived, not loaded");
        copy.apply(3, given_back()).unwrap();
        assert_eq!(copy.due_lots(i64::MAX, 10), state.due_lots(i64::MAX, 10), "its expiry is due");
        let lots = |s: &State| s.accounts.with("loy_a", |e| (e.open_lots.clone(), e.expiring_lots.clone()));
        assert_eq!(lots(&copy), lots(&state));
        assert_eq!(copy.lots.with("lot_x", |l| l.remaining), Some(2));
    }

    /// A history from before the archive (transactions and events in
    /// `objects`, memory holding their cold slots) moves them under their
    /// positions at its next start, and memory lets go of them wholly.
    #[test]
    fn a_history_from_before_the_archive_moves_its_objects_there() {
        let state = ledger();
        let before = reads(&state);
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        let end = state.applied_lsn();
        // What a build from before wrote: every cold object by id, then let go of in place.
        let cold = state.take_cold();
        let objects = cold.written.iter().map(|(_, o)| {
            (crate::history::layout::object_key(o.table() as u8, o.id()), o.change().encode_alone().unwrap())
        });
        let batch =
            crate::history::Batch { lsn: end, objects: objects.collect(), holds_objects: true, ..Default::default() };
        history.store().write(&batch).unwrap();
        state.attach_cold_loader({
            let store = history.store();
            Arc::new(move |table, id| {
                let bytes = store.object(&crate::history::layout::object_key(table as u8, id))?;
                Ok(bytes.map(|b| Change::decode_alone(&b).unwrap()))
            })
        });
        for (_, o) in &cold.written {
            assert!(state.evict(o));
        }
        assert_eq!(state.transactions.first_hot(), 0, "nothing archived before the move");
        assert!(!history.store().holds_archive().unwrap());
        let count = history.store().objects_count().unwrap();

        let caught_up = history.catch_up(&RealFs, dir.path(), &state, 0, end).unwrap();
        let open_expiring = (0..N).filter(|i| i % 4 != 0 && i % 5 == 1).count();
        assert_eq!(caught_up.objects, N + N - open_expiring, "the transactions and the cold lots moved");
        assert!(history.store().holds_archive().unwrap());
        assert_eq!(history.store().objects_count().unwrap(), count, "moved, not copied");
        assert_eq!(state.transactions.first_hot() as usize, N);
        assert_eq!(reads(&state), before);
    }

    /// A history from before payments were archived (transactions and
    /// events in `archive`, payments in `objects`, memory holding their cold
    /// slots) moves the payments under their positions at its next start;
    /// memory lets go of them wholly, and one refunded then revives in place.
    #[test]
    fn a_history_from_before_archived_payments_moves_them_there() {
        let (state, memory) = (State::new(), State::new());
        let mut apply = twin(&state, &memory);
        for i in 0..50 {
            apply(vec![payment(&format!("pay_{i:04}"), "cust_b", 0, i)]);
        }
        let end = state.applied_lsn();
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        let cold = state.take_cold();
        let objects = cold.written.iter().map(|(_, o)| {
            (crate::history::layout::object_key(o.table() as u8, o.id()), o.change().encode_alone().unwrap())
        });
        let first = crate::history::layout::FIRST_ARCHIVED_TABLES.to_vec();
        let batch = crate::history::Batch {
            lsn: end,
            objects: objects.collect(),
            holds_objects: true,
            archives_held: first,
            ..Default::default()
        };
        history.store().write(&batch).unwrap();
        history.attach_objects(&state);
        history.attach_held_archives(&state).unwrap();
        for (_, o) in &cold.written {
            assert!(state.evict(o));
        }
        assert_eq!(state.payments.first_hot(), 0, "not archived before the move");
        assert!(history.store().holds_archive_of(ColdTable::Transactions as u8).unwrap());
        assert!(!history.store().holds_archive_of(ColdTable::Payments as u8).unwrap());
        assert_eq!(payment_reads(&state), payment_reads(&memory));

        let caught_up = history.catch_up(&RealFs, dir.path(), &state, 0, end).unwrap();
        assert_eq!(caught_up.objects, 50, "the payments moved");
        assert!(history.store().holds_archive().unwrap());
        assert_eq!(history.store().objects_count().unwrap(), 50, "moved, not copied");
        assert_eq!(state.payments.first_hot(), 50);
        assert_eq!(payment_reads(&state), payment_reads(&memory));
        apply(vec![payment("pay_0003", "cust_b", 10, 3)]);
        assert_eq!(state.payments.revived_len(), 1);
        assert_eq!(payment_reads(&state), payment_reads(&memory));
    }

    /// Retention forgets cold events in memory and deletes them from history.
    #[test]
    fn retention_deletes_forgotten_events_from_history() {
        use crate::domain::events::{Event, EventData, EventType};
        let state = State::new();
        state.set_event_retention_seconds(100);
        let record = |time, changes| Record { time, idem: None, changes };
        state.apply(1, record(1, vec![account("loy_a"), earn("ptx_1", "loy_a", 1, 1, 1)])).unwrap();
        let tx = state.transactions.with("ptx_1", |t| Arc::new(t.clone())).unwrap();
        let events: Vec<Change> = (0..10)
            .map(|i| {
                let data = EventData::Transaction(tx.clone());
                Change::PutEvent(Arc::new(Event {
                    id: Id::from(format!("evt_{i}").as_str()),
                    kind: EventType::PointsEarned,
                    created: 1,
                    data,
                }))
            })
            .collect();
        state.apply(2, record(1, events)).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let history = fjall_history(dir.path());
        history.catch_up(&RealFs, dir.path(), &state, 0, 2).unwrap();
        assert_eq!((state.cold_objects(), history.store().objects_count().unwrap()), (11, 11));
        // A record past retention forgets the events.
        state.apply(3, record(1_000, vec![account("loy_b")])).unwrap();
        assert_eq!(state.cold_objects(), 1);
        assert!(history.write_applied(&state, true));
        assert_eq!(history.store().objects_count().unwrap(), 1, "only the transaction is left");
    }
}
