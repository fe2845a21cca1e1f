//! Points transactions: the only thing that moves a balance.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::money::Currency;
use super::Id;

/// Largest balance an account may reach, counting the points its open
/// (pending or attached) redemptions hold: earning beyond it is cut
/// (`earning_room`), so returning those points can never pass it either.
pub const POINTS_BALANCE_MAX: i64 = 4_000_000_000_000_000_000;
/// Lowest balance a clawback may leave (`allow_negative: true`); what it
/// cannot take above this floor is forgiven, as at zero with
/// `allow_negative: false` (`domain::refunds::clawback_taken`).
pub const POINTS_BALANCE_MIN: i64 = -POINTS_BALANCE_MAX;

/// Points an account holding `balance`, with `held` points in open
/// redemptions, may still earn: `POINTS_BALANCE_MAX - balance - held`, never
/// negative. Balances stay within `POINTS_BALANCE_MIN..=POINTS_BALANCE_MAX`
/// and `held` is non-negative, so this cannot overflow; it saturates anyway,
/// for a state an older version of the ledger left (a balance above the cap
/// earns nothing).
pub fn earning_room(balance: i64, held: i64) -> i64 {
    POINTS_BALANCE_MAX.saturating_sub(balance).saturating_sub(held.max(0)).max(0)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TxType {
    Earn,
    Redeem,
    Release,
    Clawback,
}

impl TxType {
    pub fn as_str(self) -> &'static str {
        match self {
            TxType::Earn => "earn",
            TxType::Redeem => "redeem",
            TxType::Release => "release",
            TxType::Clawback => "clawback",
        }
    }

    pub fn parse(s: &str) -> Option<TxType> {
        Some(match s {
            "earn" => TxType::Earn,
            "redeem" => TxType::Redeem,
            "release" => TxType::Release,
            "clawback" => TxType::Clawback,
            _ => return None,
        })
    }
}

/// What a transaction came from: every row names its payment, refund or redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Payment { payment: Id, amount: i64, currency: Currency },
    Refund { refund: Id, payment: Id },
    Redemption { redemption: Id, reward: Id },
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsTransaction {
    pub id: Id,
    pub account: Id,
    pub points: i64,
    pub kind: TxType,
    pub source: Source,
    pub balance_after: i64,
    pub created: i64,
}

/// The JSON form of a source: a flat object (`{"payment":..,"amount":..,"currency":..}`).
pub struct SourceView<'a>(pub &'a Source);

impl Serialize for SourceView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            Source::Payment { payment, amount, currency } => {
                let mut m = s.serialize_map(Some(3))?;
                m.serialize_entry("payment", payment)?;
                m.serialize_entry("amount", amount)?;
                m.serialize_entry("currency", currency)?;
                m.end()
            }
            Source::Refund { refund, payment } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("refund", refund)?;
                m.serialize_entry("payment", payment)?;
                m.end()
            }
            Source::Redemption { redemption, reward } => {
                let mut m = s.serialize_map(Some(2))?;
                m.serialize_entry("redemption", redemption)?;
                m.serialize_entry("reward", reward)?;
                m.end()
            }
        }
    }
}

#[derive(Serialize)]
pub struct PointsTransactionView<'a> {
    pub id: &'a Id,
    pub object: &'static str,
    pub account: &'a Id,
    pub points: i64,
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub source: SourceView<'a>,
    pub balance_after: i64,
    pub created: i64,
}

impl PointsTransaction {
    pub fn view(&self) -> PointsTransactionView<'_> {
        PointsTransactionView {
            id: &self.id,
            object: "points_transaction",
            account: &self.account,
            points: self.points,
            kind: self.kind.as_str(),
            source: SourceView(&self.source),
            balance_after: self.balance_after,
            created: self.created,
        }
    }

    /// The payment this transaction joins to, if any.
    pub fn payment(&self) -> Option<&Id> {
        match &self.source {
            Source::Payment { payment, .. } | Source::Refund { payment, .. } => Some(payment),
            Source::Redemption { .. } => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn earning_room_counts_held_points_and_never_goes_negative() {
        assert_eq!(earning_room(0, 0), POINTS_BALANCE_MAX);
        assert_eq!(earning_room(POINTS_BALANCE_MAX - 10, 4), 6);
        assert_eq!(earning_room(POINTS_BALANCE_MAX, 0), 0);
        assert_eq!(earning_room(0, POINTS_BALANCE_MAX), 0);
        assert_eq!(earning_room(POINTS_BALANCE_MAX, POINTS_BALANCE_MAX), 0);
        assert_eq!(earning_room(i64::MAX, 0), 0, "a balance over the cap (older versions) earns nothing");
        assert_eq!(earning_room(POINTS_BALANCE_MIN, 0), POINTS_BALANCE_MAX - POINTS_BALANCE_MIN);
        assert_eq!(earning_room(i64::MIN, i64::MAX), 0);
        assert_eq!(earning_room(i64::MIN, 0), i64::MAX, "saturates, never wraps");
    }

    #[test]
    fn the_contract_example_renders_exactly() {
        let tx = PointsTransaction {
            id: "ptx_7Qd3".into(),
            account: "loy_9f2k".into(),
            points: 42,
            kind: TxType::Earn,
            source: Source::Payment { payment: "pay_5tNc".into(), amount: 4200, currency: "eur".into() },
            balance_after: 42,
            created: 1717113600,
        };
        let json = serde_json::to_value(tx.view()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"ptx_7Qd3","object":"points_transaction","account":"loy_9f2k","points":42,
             "type":"earn","source":{"payment":"pay_5tNc","amount":4200,"currency":"eur"},
             "balance_after":42,"created":1717113600})
        );
    }
}
