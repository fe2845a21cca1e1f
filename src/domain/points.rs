//! Points transactions: the only thing that moves a balance.

use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use super::lots::LotShare;
use super::money::Currency;
use super::{Id, Metadata};

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
    /// Appended (encoded by index): a support credit or debit with a reason.
    Adjustment,
    /// A lot's remaining points leaving at its `expires_at`.
    Expire,
}

impl TxType {
    pub fn as_str(self) -> &'static str {
        match self {
            TxType::Earn => "earn",
            TxType::Redeem => "redeem",
            TxType::Release => "release",
            TxType::Clawback => "clawback",
            TxType::Adjustment => "adjustment",
            TxType::Expire => "expire",
        }
    }

    pub fn parse(s: &str) -> Option<TxType> {
        Some(match s {
            "earn" => TxType::Earn,
            "redeem" => TxType::Redeem,
            "release" => TxType::Release,
            "clawback" => TxType::Clawback,
            "adjustment" => TxType::Adjustment,
            "expire" => TxType::Expire,
            _ => return None,
        })
    }
}

/// What a transaction came from: every row names its payment, refund or redemption.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Source {
    Payment {
        payment: Id,
        amount: i64,
        currency: Currency,
    },
    Refund {
        refund: Id,
        payment: Id,
    },
    Redemption {
        redemption: Id,
        reward: Id,
    },
    /// Appended (encoded by index): the lot an `expire` transaction empties.
    Lot {
        lot: Id,
    },
    /// An adjustment's reason and metadata.
    Adjustment {
        reason: String,
        metadata: Metadata,
    },
}

/// A transaction as written before lots (WAL change index 5, event data
/// index 1, snapshots of format 1 and 2): decoding upgrades it
/// (`From<PointsTransactionV1>`), so nothing else sees this layout.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsTransactionV1 {
    pub id: Id,
    pub account: Id,
    pub points: i64,
    pub kind: TxType,
    pub source: Source,
    pub balance_after: i64,
    pub created: i64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PointsTransaction {
    pub id: Id,
    pub account: Id,
    pub points: i64,
    pub kind: TxType,
    pub source: Source,
    /// The account's spendable `balance` after it (`pending_balance` excluded).
    pub balance_after: i64,
    pub created: i64,
    /// Of `points`, the part that moved `pending_balance` instead of the
    /// balance: an earn into a pending lot, a clawback from one.
    pub pending: i64,
    /// The lots it made (a credit), took from (a debit) or gave back to (a
    /// release), with the points of each (`domain::lots`).
    pub lots: Vec<LotShare>,
    /// A credit's lot dates (`None` for anything else).
    pub available_at: Option<i64>,
    pub expires_at: Option<i64>,
}

impl From<PointsTransactionV1> for PointsTransaction {
    fn from(old: PointsTransactionV1) -> Self {
        let PointsTransactionV1 { id, account, points, kind, source, balance_after, created } = old;
        PointsTransaction {
            id,
            account,
            points,
            kind,
            source,
            balance_after,
            created,
            pending: 0,
            lots: Vec::new(),
            available_at: None,
            expires_at: None,
        }
    }
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
            Source::Lot { lot } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("lot", lot)?;
                m.end()
            }
            Source::Adjustment { reason, .. } => {
                let mut m = s.serialize_map(Some(1))?;
                m.serialize_entry("reason", reason)?;
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
    /// The lots it made, took from or gave back to.
    pub lots: Vec<LotShareView<'a>>,
    pub available_at: Option<i64>,
    pub expires_at: Option<i64>,
    /// An adjustment's metadata (`{}` for every other type).
    pub metadata: &'a Metadata,
    pub created: i64,
}

#[derive(Serialize)]
pub struct LotShareView<'a> {
    pub lot: &'a Id,
    pub points: i64,
}

static NO_METADATA: Metadata = Metadata::new();

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
            lots: self.lots.iter().map(|s| LotShareView { lot: &s.lot, points: s.points }).collect(),
            available_at: self.available_at,
            expires_at: self.expires_at,
            metadata: match &self.source {
                Source::Adjustment { metadata, .. } => metadata,
                _ => &NO_METADATA,
            },
            created: self.created,
        }
    }

    /// The lot this transaction names in the CSV export: the one it made (a
    /// credit) or emptied (`expire`).
    pub fn lot(&self) -> Option<&Id> {
        match (&self.source, self.kind) {
            (Source::Lot { lot }, _) => Some(lot),
            (_, TxType::Earn | TxType::Adjustment) if self.points > 0 => self.lots.first().map(|s| &s.lot),
            _ => None,
        }
    }

    /// The redemption it names, if any.
    pub fn redemption(&self) -> Option<&Id> {
        match &self.source {
            Source::Redemption { redemption, .. } => Some(redemption),
            _ => None,
        }
    }

    /// The refund it names, if any.
    pub fn refund(&self) -> Option<&Id> {
        match &self.source {
            Source::Refund { refund, .. } => Some(refund),
            _ => None,
        }
    }

    /// An adjustment's reason.
    pub fn reason(&self) -> Option<&str> {
        match &self.source {
            Source::Adjustment { reason, .. } => Some(reason),
            _ => None,
        }
    }

    /// The payment this transaction joins to, if any.
    pub fn payment(&self) -> Option<&Id> {
        match &self.source {
            Source::Payment { payment, .. } | Source::Refund { payment, .. } => Some(payment),
            Source::Redemption { .. } | Source::Lot { .. } | Source::Adjustment { .. } => None,
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
            pending: 0,
            lots: vec![LotShare { lot: "lot_1".into(), points: 42 }],
            available_at: Some(1717113600),
            expires_at: None,
        };
        let json = serde_json::to_value(tx.view()).unwrap();
        assert_eq!(
            json,
            serde_json::json!({"id":"ptx_7Qd3","object":"points_transaction","account":"loy_9f2k","points":42,
             "type":"earn","source":{"payment":"pay_5tNc","amount":4200,"currency":"eur"},
             "balance_after":42,"lots":[{"lot":"lot_1","points":42}],"available_at":1717113600,
             "expires_at":null,"metadata":{},"created":1717113600})
        );
    }
}
