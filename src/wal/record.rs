//! What one WAL record holds: the full new versions of the objects a mutation
//! writes, and the idempotent response it gave.
//!
//! Records are *state-based*: a change carries the object as it is after the
//! mutation, so replay is a plain upsert and rebuilds exactly the acknowledged
//! state. The one exception is deliberate: balances are never written; they
//! move only by applying points transactions (docs/reliability.md, invariant 5).
//!
//! Encoding is bincode 2 (serde, standard config). Variants of `Change` are
//! encoded by index: append new variants at the end, never reorder. An event
//! is written as a reference to the change whose object it shows
//! (`PutEventOf`), not as a second copy of that object.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use crate::config::WAL_RECORD_BYTES_MAX;
use crate::domain::api_keys::ApiKey;
use crate::domain::earning::EarningRule;
use crate::domain::events::{Event, EventData, EventType};
use crate::domain::lots::PointsLot;
use crate::domain::members::{Account, Customer};
use crate::domain::payments::Payment;
use crate::domain::points::{PointsTransaction, PointsTransactionV1};
use crate::domain::program::{Program, ProgramV1};
use crate::domain::redemptions::Redemption;
use crate::domain::refunds::Refund;
use crate::domain::rewards::Reward;
use crate::domain::webhooks::{Delivery, WebhookEndpoint, WebhookEndpointV1};
use crate::domain::Id;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Record {
    /// Unix seconds when the mutation was prepared.
    pub time: i64,
    /// The idempotent response, when the request carried `Idempotency-Key`.
    pub idem: Option<IdemEntry>,
    pub changes: Vec<Change>,
}

/// A stored idempotent response: replayed for a retry with the same key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct IdemEntry {
    pub key: String,
    /// sha256 of method, path and body of the first request.
    pub fingerprint: [u8; 32],
    pub status: u16,
    /// Shared with the stored response (`IdemStore`), so applying the record
    /// and capturing a snapshot never copy it. Written as one run of bytes (a
    /// length, then the bytes: the same bytes bincode writes for a `Vec<u8>`
    /// element by element, at a fraction of the cost per byte).
    #[serde(with = "body_bytes")]
    pub body: Arc<[u8]>,
}

/// serde for `IdemEntry::body`. Decoding borrows the bytes from the record
/// (`Record::decode` decodes from a slice) and copies them once, into the `Arc`.
mod body_bytes {
    use std::fmt;
    use std::sync::Arc;

    use serde::de::{Deserializer, Error, Visitor};
    use serde::Serializer;

    pub fn serialize<S: Serializer>(body: &Arc<[u8]>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(body)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Arc<[u8]>, D::Error> {
        d.deserialize_bytes(BodyVisitor)
    }

    struct BodyVisitor;

    impl<'de> Visitor<'de> for BodyVisitor {
        type Value = Arc<[u8]>;

        fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
            f.write_str("the bytes of a response")
        }

        fn visit_bytes<E: Error>(self, v: &[u8]) -> Result<Arc<[u8]>, E> {
            Ok(Arc::from(v))
        }

        fn visit_byte_buf<E: Error>(self, v: Vec<u8>) -> Result<Arc<[u8]>, E> {
            Ok(Arc::from(v))
        }
    }
}

/// Objects are behind `Arc`s: a record, the state and the events that show an
/// object share one copy of it (serde writes an `Arc<T>` exactly as a `T`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    PutCustomer(Arc<Customer>),
    /// Never changes a balance.
    PutAccount(Arc<Account>),
    /// Only in data written before the points lifecycle (index 2): decoding
    /// turns it into a `PutProgram` (`Change::upgrade`).
    PutProgramV1(Arc<ProgramV1>),
    PutEarningRule(Arc<EarningRule>),
    PutPayment(Arc<Payment>),
    /// Only in data written before lots (index 5): decoding turns it into a
    /// `PutTransaction` (`Change::upgrade`).
    PutTransactionV1(Arc<PointsTransactionV1>),
    PutRefund(Arc<Refund>),
    PutReward(Arc<Reward>),
    PutRedemption(Arc<Redemption>),
    PutEvent(Arc<Event>),
    /// Only in data written before endpoints had a status and rolled secrets
    /// (index 10): decoding turns it into a `PutWebhookEndpoint`
    /// (`Change::upgrade`), so nothing else sees this variant.
    PutWebhookEndpointV1(Arc<WebhookEndpointV1>),
    PutDelivery(Arc<Delivery>),
    /// Only in encoded records: an event whose `data` is the object of another
    /// change of the same record (most events are), written as that change's
    /// index instead of a second copy. `Record::decode` turns it back into a
    /// `PutEvent` sharing that object, so nothing else ever sees this variant.
    PutEventOf(Box<EventOf>),
    /// An API key (never its secret: only hashes of it).
    PutApiKey(Arc<ApiKey>),
    /// A webhook endpoint with its status, rolled secret and run of failures
    /// (index 14; what index 10 held before them).
    PutWebhookEndpoint(Arc<WebhookEndpoint>),
    /// A new points transaction: adds its points to its account (its
    /// `pending` part to `pending_balance`, the rest to the balance, which
    /// must then equal its `balance_after`). Transactions are never re-put.
    /// Index 15; what index 5 held before lots.
    PutTransaction(Arc<PointsTransaction>),
    /// A version of a points lot. A lot leaving `pending` moves its
    /// remaining points from `pending_balance` to the balance (the one move
    /// of a balance that is not a transaction: becoming available writes none).
    PutLot(Arc<PointsLot>),
    /// The program with the points lifecycle settings (index 17; what index 2 held before them).
    PutProgram(Arc<Program>),
}

impl Change {
    /// The change as this build writes it: an endpoint of the old layout
    /// becomes one of the new (enabled, no rolled secret, no failures).
    pub fn upgrade(self) -> Change {
        match self {
            Change::PutWebhookEndpointV1(old) => {
                Change::PutWebhookEndpoint(Arc::new(WebhookEndpoint::from(Arc::unwrap_or_clone(old))))
            }
            Change::PutTransactionV1(old) => {
                Change::PutTransaction(Arc::new(PointsTransaction::from(Arc::unwrap_or_clone(old))))
            }
            Change::PutProgramV1(old) => Change::PutProgram(Arc::new(Program::from(Arc::unwrap_or_clone(old)))),
            Change::PutEvent(e) if e.is_old_layout() => Change::PutEvent(Arc::new(Arc::unwrap_or_clone(e).upgrade())),
            other => other,
        }
    }

    /// One change on its own, as history stores an object (docs/formats.md,
    /// "History"): the same bincode as inside a record.
    pub fn encode_alone(&self) -> Result<Vec<u8>, RecordError> {
        Ok(bincode::serde::encode_to_vec(self, config())?)
    }

    /// Decodes `encode_alone`'s bytes (upgraded to this build's layout).
    /// Trailing bytes are an error. Never panics.
    pub fn decode_alone(bytes: &[u8]) -> Result<Change, RecordError> {
        let (change, used): (Change, usize) = bincode::serde::decode_from_slice(bytes, config())?;
        if used != bytes.len() {
            return Err(RecordError::Trailing(bytes.len() - used));
        }
        Ok(change.upgrade())
    }

    /// Whether `upgrade` changes it.
    pub fn is_old_layout(&self) -> bool {
        match self {
            Change::PutWebhookEndpointV1(_) | Change::PutTransactionV1(_) | Change::PutProgramV1(_) => true,
            Change::PutEvent(e) => e.is_old_layout(),
            _ => false,
        }
    }
}

/// The encoded form of an event that shows an object of its own record.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct EventOf {
    pub id: Id,
    pub kind: EventType,
    pub created: i64,
    /// Index in the record's `changes` of the `PutPayment`, `PutTransaction`,
    /// `PutRedemption` or `PutLot` that is the event's `data`.
    pub change: u32,
}

/// `Record` as it is encoded: the same fields, borrowed (bincode writes a
/// reference exactly as the value), so encoding never copies the record.
#[derive(Serialize)]
struct RecordOut<'a> {
    time: i64,
    idem: &'a Option<IdemEntry>,
    changes: &'a [Change],
}

/// Why a record could not be encoded or decoded.
#[derive(Debug, thiserror::Error)]
pub enum RecordError {
    #[error("{0}")]
    Encode(#[from] bincode::error::EncodeError),
    #[error("{0}")]
    Decode(#[from] bincode::error::DecodeError),
    #[error("{0} trailing bytes after the record")]
    Trailing(usize),
    #[error("event {event} refers to change {change}, which is not an object")]
    EventReference { event: String, change: u32 },
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<WAL_RECORD_BYTES_MAX>()
}

impl Record {
    pub fn encode(&self) -> Result<Vec<u8>, RecordError> {
        let by_reference;
        let changes = if self.changes.iter().any(|c| matches!(c, Change::PutEvent(_))) {
            by_reference = self.changes.iter().map(|c| self.event_by_reference(c)).collect::<Vec<_>>();
            &by_reference[..]
        } else {
            &self.changes[..]
        };
        let out = RecordOut { time: self.time, idem: &self.idem, changes };
        Ok(bincode::serde::encode_to_vec(&out, config())?)
    }

    /// `change` as it is encoded: an event showing an object of this record
    /// becomes a `PutEventOf`; anything else is itself (an `Arc` copy).
    fn event_by_reference(&self, change: &Change) -> Change {
        let Change::PutEvent(event) = change else { return change.clone() };
        let shown = self.changes.iter().position(|c| match (c, &event.data) {
            (Change::PutPayment(p), EventData::Payment(d)) => Arc::ptr_eq(p, d),
            (Change::PutTransaction(t), EventData::Transaction(d)) => Arc::ptr_eq(t, d),
            (Change::PutRedemption(r), EventData::Redemption(d)) => Arc::ptr_eq(r, d),
            (Change::PutLot(l), EventData::Lot(d)) => Arc::ptr_eq(l, d),
            _ => false,
        });
        match shown {
            Some(index) => Change::PutEventOf(Box::new(EventOf {
                id: event.id.clone(),
                kind: event.kind,
                created: event.created,
                change: index as u32,
            })),
            None => change.clone(),
        }
    }

    /// Decodes one record; trailing bytes are an error. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Record, RecordError> {
        let (mut rec, used): (Record, usize) = bincode::serde::borrow_decode_from_slice(bytes, config())?;
        if used != bytes.len() {
            return Err(RecordError::Trailing(bytes.len() - used));
        }
        // Upgraded first, so an event referring to an old-layout change gets the new one.
        if rec.changes.iter().any(Change::is_old_layout) {
            rec.changes = std::mem::take(&mut rec.changes).into_iter().map(Change::upgrade).collect();
        }
        rec.resolve_event_references()?;
        Ok(rec)
    }

    /// Turns every `PutEventOf` back into the `PutEvent` it stands for.
    fn resolve_event_references(&mut self) -> Result<(), RecordError> {
        for i in 0..self.changes.len() {
            let Change::PutEventOf(of) = &self.changes[i] else { continue };
            let data = match self.changes.get(of.change as usize) {
                Some(Change::PutPayment(p)) => EventData::Payment(p.clone()),
                Some(Change::PutTransaction(t)) => EventData::Transaction(t.clone()),
                Some(Change::PutRedemption(r)) => EventData::Redemption(r.clone()),
                Some(Change::PutLot(l)) => EventData::Lot(l.clone()),
                _ => return Err(RecordError::EventReference { event: of.id.to_string(), change: of.change }),
            };
            let event = Event { id: of.id.clone(), kind: of.kind, created: of.created, data };
            self.changes[i] = Change::PutEvent(Arc::new(event));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Records written before the body was written as bytes must read the
    /// same, and the same record must give the same bytes.
    #[test]
    fn an_idempotent_body_is_written_as_before() {
        #[derive(Serialize)]
        struct ElementByElement {
            key: String,
            fingerprint: [u8; 32],
            status: u16,
            body: Vec<u8>,
        }
        let body: Vec<u8> = (0..=255).chain(0..200).collect();
        let entry = IdemEntry { key: "k".into(), fingerprint: [7; 32], status: 201, body: body.clone().into() };
        let old = ElementByElement { key: "k".into(), fingerprint: [7; 32], status: 201, body };
        let config = bincode::config::standard();
        let old_bytes = bincode::serde::encode_to_vec(&old, config).unwrap();
        assert_eq!(bincode::serde::encode_to_vec(&entry, config).unwrap(), old_bytes);
        // Both decoders: an owned one hands over a `Vec`, a borrowing one a slice.
        let (back, used): (IdemEntry, usize) = bincode::serde::decode_from_slice(&old_bytes, config).unwrap();
        assert_eq!((back, used), (entry.clone(), old_bytes.len()));
        let (back, used): (IdemEntry, usize) = bincode::serde::borrow_decode_from_slice(&old_bytes, config).unwrap();
        assert_eq!((back, used), (entry, old_bytes.len()));
    }

    #[test]
    fn round_trip() {
        let rec = Record {
            time: 1_717_113_600,
            idem: Some(IdemEntry { key: "k".into(), fingerprint: [7; 32], status: 200, body: Arc::from(&b"{}"[..]) }),
            changes: vec![Change::PutCustomer(Arc::new(Customer {
                id: "cust_1".into(),
                email: Some("a@b.c".into()),
                name: None,
                metadata: [("k".to_string(), "v".to_string())].into(),
                loyalty_account: None,
                created: 5,
            }))],
        };
        let bytes = rec.encode().unwrap();
        assert_eq!(Record::decode(&bytes).unwrap(), rec);
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::decode(&longer).is_err());
    }

    fn earn_with_events() -> Record {
        use crate::domain::points::{Source, TxType};
        let tx = Arc::new(PointsTransaction {
            id: "ptx_1".into(),
            account: "loy_1".into(),
            points: 42,
            kind: TxType::Earn,
            source: Source::Payment { payment: "pay_1".into(), amount: 4200, currency: "eur".into() },
            balance_after: 42,
            created: 5,
            pending: 0,
            lots: Vec::new(),
            available_at: None,
            expires_at: None,
        });
        let event = |id: &str, kind, data| Change::PutEvent(Arc::new(Event { id: id.into(), kind, created: 5, data }));
        Record {
            time: 5,
            idem: None,
            changes: vec![
                Change::PutTransaction(tx.clone()),
                event("evt_1", EventType::PointsEarned, EventData::Transaction(tx.clone())),
                // A copy that is not the record's own object is written in full.
                event(
                    "evt_2",
                    EventType::PointsEarned,
                    EventData::Transaction(Arc::new(PointsTransaction::clone(&tx))),
                ),
            ],
        }
    }

    #[test]
    fn an_event_of_the_records_own_object_is_written_as_a_reference_and_shares_it_again() {
        let rec = earn_with_events();
        let bytes = rec.encode().unwrap();
        let decoded = Record::decode(&bytes).unwrap();
        assert_eq!(decoded, rec);
        let (Change::PutTransaction(tx), Change::PutEvent(by_ref), Change::PutEvent(copy)) =
            (&decoded.changes[0], &decoded.changes[1], &decoded.changes[2])
        else {
            panic!("unexpected changes: {decoded:?}")
        };
        let shares = |e: &Event| matches!(&e.data, EventData::Transaction(d) if Arc::ptr_eq(d, tx));
        assert!(shares(by_ref), "the referenced event shares the transaction");
        assert!(!shares(copy), "a full copy stays a copy");
        // The reference costs a few bytes; the copy costs a whole transaction.
        let mut only_copy = rec.clone();
        only_copy.changes.remove(1);
        let mut only_ref = rec;
        only_ref.changes.remove(2);
        assert!(only_ref.encode().unwrap().len() + 20 < only_copy.encode().unwrap().len());
    }

    #[test]
    fn an_event_reference_to_something_that_is_not_an_object_is_refused() {
        for change in [1, 7] {
            let rec = Record {
                time: 5,
                idem: None,
                changes: vec![
                    Change::PutProgram(Arc::new(Program::default())),
                    Change::PutEventOf(Box::new(EventOf {
                        id: "evt_1".into(),
                        kind: EventType::PointsEarned,
                        created: 5,
                        change,
                    })),
                ],
            };
            let err = Record::decode(&rec.encode().unwrap()).unwrap_err();
            assert!(matches!(err, RecordError::EventReference { .. }), "{err}");
        }
    }

    /// A record written before lots (the program at index 2, a transaction
    /// at index 5, its event by reference) decodes into today's layout, and
    /// the event still shares the upgraded transaction.
    #[test]
    fn a_record_written_before_lots_still_decodes() {
        use crate::domain::points::{Source, TxType};

        let old = PointsTransactionV1 {
            id: "ptx_1".into(),
            account: "loy_1".into(),
            points: 42,
            kind: TxType::Earn,
            source: Source::Payment { payment: "pay_1".into(), amount: 4200, currency: "eur".into() },
            balance_after: 42,
            created: 5,
        };
        let then = Record {
            time: 5,
            idem: None,
            changes: vec![
                Change::PutProgramV1(Arc::new(ProgramV1 {
                    clawback_allow_negative: false,
                    redemption_ttl_seconds: 60,
                })),
                Change::PutTransactionV1(Arc::new(old.clone())),
                Change::PutEventOf(Box::new(EventOf {
                    id: "evt_1".into(),
                    kind: EventType::PointsEarned,
                    created: 5,
                    change: 1,
                })),
                Change::PutEvent(Arc::new(Event {
                    id: "evt_2".into(),
                    kind: EventType::PointsEarned,
                    created: 5,
                    data: EventData::TransactionV1(Arc::new(old.clone())),
                })),
            ],
        };
        let rec = Record::decode(&then.encode().unwrap()).unwrap();
        let Change::PutProgram(p) = &rec.changes[0] else { panic!("{:?}", rec.changes[0]) };
        assert_eq!(
            Program::clone(p),
            Program { clawback_allow_negative: false, redemption_ttl_seconds: 60, ..Program::default() }
        );
        let Change::PutTransaction(tx) = &rec.changes[1] else { panic!("{:?}", rec.changes[1]) };
        assert_eq!(PointsTransaction::clone(tx), PointsTransaction::from(old));
        assert!((tx.pending, tx.lots.is_empty(), tx.available_at) == (0, true, None));
        let Change::PutEvent(e) = &rec.changes[2] else { panic!("{:?}", rec.changes[2]) };
        assert!(matches!(&e.data, EventData::Transaction(d) if Arc::ptr_eq(d, tx)));
        let Change::PutEvent(e) = &rec.changes[3] else { panic!("{:?}", rec.changes[3]) };
        assert!(matches!(&e.data, EventData::Transaction(d) if **d == **tx));
        assert!(!rec.changes.iter().any(Change::is_old_layout));
    }

    /// A record written before endpoints had a status (the endpoint change
    /// at index 10, with the six fields of then) still decodes, as an
    /// enabled endpoint; deliveries (index 11) are unchanged.
    #[test]
    fn an_endpoint_written_before_statuses_still_decodes() {
        use crate::domain::webhooks::{DeliveryStatus, EndpointStatus};

        // The layout of then, written out independently of today's types.
        #[derive(Serialize)]
        struct EndpointThen {
            id: String,
            url: String,
            enabled_events: Vec<EventType>,
            secret: String,
            deleted: bool,
            created: i64,
        }
        #[derive(Serialize)]
        #[allow(dead_code)]
        enum ChangeThen {
            V0(()),
            V1(()),
            V2(()),
            V3(()),
            V4(()),
            V5(()),
            V6(()),
            V7(()),
            V8(()),
            V9(()),
            PutWebhookEndpoint(EndpointThen),
            PutDelivery(Delivery),
        }
        #[derive(Serialize)]
        struct RecordThen {
            time: i64,
            idem: Option<IdemEntry>,
            changes: Vec<ChangeThen>,
        }
        let delivery = Delivery {
            id: "whd_1".into(),
            endpoint: "we_1".into(),
            event: "evt_1".into(),
            status: DeliveryStatus::Pending,
            attempts: 2,
            next_attempt_at: 9,
            last_http_status: Some(500),
            last_error: Some("endpoint answered 500".into()),
            created: 7,
            delivered_at: None,
        };
        let then = RecordThen {
            time: 7,
            idem: None,
            changes: vec![
                ChangeThen::PutWebhookEndpoint(EndpointThen {
                    id: "we_1".into(),
                    url: "http://hooks.example/x".into(),
                    enabled_events: vec![EventType::PointsEarned],
                    secret: "whsec_then".into(),
                    deleted: false,
                    created: 5,
                }),
                ChangeThen::PutDelivery(delivery.clone()),
            ],
        };
        let bytes = bincode::serde::encode_to_vec(&then, bincode::config::standard()).unwrap();
        let rec = Record::decode(&bytes).unwrap();
        let Change::PutWebhookEndpoint(e) = &rec.changes[0] else { panic!("{:?}", rec.changes[0]) };
        assert_eq!(
            (e.id.as_str(), e.url.as_str(), e.secret.as_str()),
            ("we_1", "http://hooks.example/x", "whsec_then")
        );
        assert_eq!((e.enabled_events.clone(), e.deleted, e.created), (vec![EventType::PointsEarned], false, 5));
        assert_eq!(
            (e.status, e.previous_secret.clone(), e.failing_since, e.enabled_at),
            (EndpointStatus::Enabled, None, None, 5)
        );
        assert_eq!(rec.changes[1], Change::PutDelivery(delivery.into()));
        // And it replays into a state: the endpoint is live and wants its type.
        let state = crate::state::State::new();
        state.apply(1, rec.clone()).unwrap();
        assert!(state.live_webhook_endpoints()[0].wants(EventType::PointsEarned));
        assert_eq!(state.due_deliveries(9, |_| 10).len(), 1);
        // Written again, it takes the new variant, and reads back the same.
        assert_eq!(Record::decode(&rec.encode().unwrap()).unwrap(), rec);
    }

    #[test]
    fn decoding_garbage_never_panics() {
        let mut seed = 0x9e3779b97f4a7c15u64;
        for len in 0..512 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    seed as u8
                })
                .collect();
            let _ = Record::decode(&bytes);
        }
    }
}
