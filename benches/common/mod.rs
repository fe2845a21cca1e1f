//! Helpers more than one bench uses (each includes this file: `mod common;`).

// Each bench uses some of them.
#![allow(dead_code)]

use loyalty_ledger::domain::lots::{LotShare, PointsLot};
use loyalty_ledger::domain::members::{Account, Customer};
use loyalty_ledger::domain::payments::{Payment, PaymentStatus};
use loyalty_ledger::domain::points::{PointsTransaction, Source, TxType};
use loyalty_ledger::domain::{Id, IdKind};
use loyalty_ledger::state::State;
use loyalty_ledger::wal::{Change, Record};
use loyalty_ledger::webhooks::outbox::derive;

/// A number from the environment, or `default` when `name` is unset; a value
/// that is not a number stops the bench rather than being ignored.
pub fn env_num<T: std::str::FromStr>(name: &str, default: T) -> T {
    match std::env::var(name) {
        Ok(v) => v.trim().parse().unwrap_or_else(|_| panic!("{name}={v:?} is not a number")),
        Err(_) => default,
    }
}

/// Resident memory (`VmRSS`) of process `pid`, or of this one for `"self"`; 0 if unknown.
pub fn rss_bytes(pid: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .unwrap_or(0)
        * 1024
}

/// Bytes of every file under `dir` (0 if it cannot be read).
pub fn tree_bytes(dir: &std::path::Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else { return 0 };
    entries
        .filter_map(Result::ok)
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => tree_bytes(&e.path()),
            _ => e.metadata().map_or(0, |m| m.len()),
        })
        .sum()
}

/// What completing a payment of `amount` for `customer`/`account` writes: the
/// completed payment, its earn transaction and the events they cause (derived
/// by `webhooks::outbox::derive`, as `Ledger::commit_reply` does), in one record.
pub fn earn_record(customer: &Id, account: &Id, amount: i64, balance: &mut i64, time: i64) -> Record {
    thread_local! {
        /// No webhook endpoints and no earlier payments: what derive sees for a new payment.
        static EMPTY: State = State::new();
    }
    let points = amount / 100;
    let payment_id = IdKind::Payment.generate();
    let tx_id = IdKind::PointsTransaction.generate();
    *balance += points;
    let payment = Payment {
        id: payment_id.clone(),
        amount,
        amount_discount: 0,
        amount_refunded: 0,
        currency: "eur".into(),
        status: PaymentStatus::Completed,
        customer: Some(customer.clone()),
        metadata: Default::default(),
        redemptions: Vec::new(),
        loyalty_account: Some(account.clone()),
        points_earned: points,
        award: Some(tx_id.clone()),
        created: time,
        completed_at: Some(time),
    };
    let tx = PointsTransaction {
        id: tx_id,
        account: account.clone(),
        points,
        kind: TxType::Earn,
        source: Source::Payment { payment: payment_id, amount, currency: "eur".into() },
        balance_after: *balance,
        created: time,
        pending: 0,
        lots: Vec::new(),
        available_at: None,
        expires_at: None,
    };
    let mut changes = vec![Change::PutPayment(payment.into()), Change::PutTransaction(tx.into())];
    let derived = EMPTY.with(|state| derive(state, &changes, time));
    changes.extend(derived);
    Record { time, idem: None, changes }
}

/// `earn_record` as the server writes it since the points lifecycle: the
/// transaction's points go into a new lot (available at once, never
/// expiring: the default program), which the record puts too.
pub fn earn_record_with_lot(customer: &Id, account: &Id, amount: i64, balance: &mut i64, time: i64) -> Record {
    let before = *balance;
    let mut record = earn_record(customer, account, amount, balance, time);
    let Some(Change::PutTransaction(tx)) = record.changes.get_mut(1) else {
        unreachable!("an earn record's second change")
    };
    let lot_id = IdKind::Lot.generate();
    let tx = std::sync::Arc::make_mut(tx);
    tx.lots = vec![LotShare { lot: lot_id.clone(), points: tx.points }];
    tx.available_at = Some(time);
    let lot = PointsLot::credit(lot_id, account.clone(), tx.id.clone(), tx.points, (time, None, None), before, time);
    record.changes.insert(2, Change::PutLot(lot.into()));
    record
}

/// A member as the API makes one: a customer and its linked loyalty account, in one record.
pub fn member_record(i: usize, time: i64) -> (Id, Id, Record) {
    let account = IdKind::Account.generate();
    let customer = Customer {
        id: IdKind::Customer.generate(),
        email: Some(format!("member{i}@example.com").into()),
        name: None,
        metadata: Default::default(),
        loyalty_account: Some(account.clone()),
        created: time,
    };
    let a = Account {
        id: account.clone(),
        customer: Some(customer.id.clone()),
        metadata: Default::default(),
        created: time,
    };
    let customer_id = customer.id.clone();
    let rec =
        Record { time, idem: None, changes: vec![Change::PutCustomer(customer.into()), Change::PutAccount(a.into())] };
    (customer_id, account, rec)
}
