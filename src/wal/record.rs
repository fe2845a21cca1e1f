//! What one WAL record holds: the full new versions of the objects a mutation
//! writes, and the idempotent response it gave.
//!
//! Records are *state-based*: a change carries the object as it is after the
//! mutation, so replay is a plain upsert and rebuilds exactly the acknowledged
//! state. The one exception is deliberate: balances are never written; they
//! move only by applying points transactions (DESIGN.md invariant 5).
//!
//! Encoding is bincode 2 (serde, standard config). Variants of `Change` are
//! encoded by index: append new variants at the end, never reorder.

use serde::{Deserialize, Serialize};

use crate::config::WAL_RECORD_BYTES_MAX;
use crate::domain::earning::EarningRule;
use crate::domain::events::Event;
use crate::domain::members::{Account, Customer};
use crate::domain::payments::Payment;
use crate::domain::points::PointsTransaction;
use crate::domain::program::Program;
use crate::domain::redemptions::Redemption;
use crate::domain::refunds::Refund;
use crate::domain::rewards::Reward;
use crate::domain::webhooks::{Delivery, WebhookEndpoint};

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
    pub body: Vec<u8>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum Change {
    PutCustomer(Customer),
    /// Never changes a balance.
    PutAccount(Account),
    PutProgram(Program),
    PutEarningRule(EarningRule),
    PutPayment(Payment),
    /// A new points transaction: adds its points to its account's balance,
    /// which must then equal its `balance_after`. Transactions are never re-put.
    PutTransaction(PointsTransaction),
    PutRefund(Refund),
    PutReward(Reward),
    PutRedemption(Redemption),
    PutEvent(Event),
    PutWebhookEndpoint(WebhookEndpoint),
    PutDelivery(Delivery),
}

fn config() -> impl bincode::config::Config {
    bincode::config::standard().with_limit::<WAL_RECORD_BYTES_MAX>()
}

impl Record {
    pub fn encode(&self) -> Result<Vec<u8>, String> {
        bincode::serde::encode_to_vec(self, config()).map_err(|e| e.to_string())
    }

    /// Decodes one record; trailing bytes are an error. Never panics.
    pub fn decode(bytes: &[u8]) -> Result<Record, String> {
        let (rec, used): (Record, usize) =
            bincode::serde::decode_from_slice(bytes, config()).map_err(|e| e.to_string())?;
        if used != bytes.len() {
            return Err(format!("{} trailing bytes after the record", bytes.len() - used));
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let rec = Record {
            time: 1_717_113_600,
            idem: Some(IdemEntry { key: "k".into(), fingerprint: [7; 32], status: 200, body: b"{}".to_vec() }),
            changes: vec![Change::PutCustomer(Customer {
                id: "cust_1".into(),
                email: Some("a@b.c".into()),
                name: None,
                metadata: [("k".to_string(), "v".to_string())].into(),
                loyalty_account: None,
                created: 5,
            })],
        };
        let bytes = rec.encode().unwrap();
        assert_eq!(Record::decode(&bytes).unwrap(), rec);
        assert!(Record::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(Record::decode(&longer).is_err());
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
