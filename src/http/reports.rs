//! Reports finance can book (`/v1/loyalty/reports/...`) and the CSV export
//! of the points ledger (`/v1/loyalty/exports/transactions`). Both read the
//! ledger itself (`state/reports.rs`), so they always reconcile with it.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Serialize;

use super::respond;
use crate::domain::points::PointsTransaction;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::state::{Activity, MoneyValue, EXPIRING_HORIZON_DAYS};

/// The CSV export's columns, in order.
pub const EXPORT_COLUMNS: [&str; 11] =
    ["id", "account", "type", "points", "balance_after", "payment", "refund", "redemption", "lot", "reason", "created"];

#[derive(Serialize)]
struct LiabilityView {
    object: &'static str,
    as_of: i64,
    accounts: u64,
    available: i128,
    pending: i128,
    negative: i128,
    expiring: serde_json::Map<String, serde_json::Value>,
    value: Option<MoneyValue>,
}

pub async fn liability(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    if let Some((k, _)) = query_pairs(&req)?.into_iter().next() {
        return Err(ApiError::parameter_unknown(&k));
    }
    let now = ledger.now();
    let program = ledger.state.program();
    let l = ledger.state.liability(now);
    let expiring = EXPIRING_HORIZON_DAYS
        .iter()
        .zip(l.expiring)
        .map(|(days, points)| (days.to_string(), serde_json::Value::from(points as i64)))
        .collect();
    let value =
        program.point_value.map(|v| MoneyValue { amount: v.value_of(l.available + l.pending), currency: v.currency });
    respond::ok(&LiabilityView {
        object: "liability_report",
        as_of: now,
        accounts: l.accounts,
        available: l.available,
        pending: l.pending,
        negative: l.negative,
        expiring,
        value,
    })
}

#[derive(Serialize)]
struct ActivityView {
    object: &'static str,
    #[serde(flatten)]
    figures: Activity,
}

fn query_pairs(req: &HttpRequest) -> Result<Vec<(String, String)>, ApiError> {
    serde_urlencoded::from_str(req.query_string())
        .map_err(|e| ApiError::bad_request("parameter_invalid", format!("Invalid query string: {e}")))
}

/// The `[created[gte], created[lt])` period of a report or export: both
/// optional (from the beginning, to the end); any other parameter is a 400.
fn period(req: &HttpRequest) -> Result<(i64, i64), ApiError> {
    let (mut from, mut to) = (i64::MIN, i64::MAX);
    for (k, v) in query_pairs(req)? {
        let slot = match k.as_str() {
            "created[gte]" => &mut from,
            "created[lt]" => &mut to,
            other => return Err(ApiError::parameter_unknown(other)),
        };
        *slot = v
            .parse()
            .map_err(|_| ApiError::parameter_invalid(&k, format!("{k} must be an integer (unix seconds).")))?;
    }
    // An end before the start is an empty period at the start, as a list
    // with such bounds is empty (docs/api.md, "Reports").
    Ok((from, to.max(from)))
}

pub async fn activity(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (from, to) = period(&req)?;
    respond::ok(&ActivityView { object: "activity_report", figures: ledger.state.activity(from, to) })
}

/// One CSV field: quoted (quotes doubled) when it holds a comma, a quote
/// or a line break (RFC 4180).
fn field(out: &mut String, value: &str) {
    if value.contains([',', '"', '\n', '\r']) {
        out.push('"');
        out.push_str(&value.replace('"', "\"\""));
        out.push('"');
    } else {
        out.push_str(value);
    }
}

/// One CSV row of `tx` (`EXPORT_COLUMNS`), with its line break.
pub fn csv_row(tx: &PointsTransaction) -> String {
    let opt = |v: Option<&crate::domain::Id>| v.map(|v| v.to_string()).unwrap_or_default();
    let cells = [
        tx.id.to_string(),
        tx.account.to_string(),
        tx.kind.as_str().to_string(),
        tx.points.to_string(),
        tx.balance_after.to_string(),
        opt(tx.payment()),
        opt(tx.refund()),
        opt(tx.redemption()),
        opt(tx.lot()),
        tx.reason().unwrap_or_default().to_string(),
        tx.created.to_string(),
    ];
    let mut out = String::with_capacity(160);
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        field(&mut out, cell);
    }
    out.push_str("\r\n");
    out
}

pub async fn export_transactions(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let (from, to) = period(&req)?;
    let ledger = ledger.into_inner();
    let end = ledger.state.transactions_end();
    let header = format!("{}\r\n", EXPORT_COLUMNS.join(","));
    let first = futures_util::stream::once(async move { Ok::<_, actix_web::Error>(web::Bytes::from(header)) });
    // Chunk by chunk, oldest first, from the end fixed now: no page limit,
    // and nothing is held between chunks.
    let rows = futures_util::stream::unfold(0usize, move |begin| {
        let ledger = ledger.clone();
        async move {
            if begin >= end {
                return None;
            }
            let (txs, next) = ledger.state.transactions_chunk(begin, end, |t| t.created >= from && t.created < to);
            let text: String = txs.iter().map(csv_row).collect();
            Some((Ok::<_, actix_web::Error>(web::Bytes::from(text)), next))
        }
    });
    use futures_util::StreamExt;
    Ok(HttpResponse::Ok().content_type("text/csv; charset=utf-8").streaming(first.chain(rows)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::points::{Source, TxType};

    #[test]
    fn a_row_quotes_what_needs_it() {
        let tx = PointsTransaction {
            id: "ptx_1".into(),
            account: "loy_1".into(),
            points: -5,
            kind: TxType::Adjustment,
            source: Source::Adjustment { reason: "goodwill, \"late\"\nparcel".into(), metadata: Default::default() },
            balance_after: 10,
            created: 7,
            pending: 0,
            lots: Vec::new(),
            available_at: None,
            expires_at: None,
        };
        assert_eq!(csv_row(&tx), "ptx_1,loy_1,adjustment,-5,10,,,,,\"goodwill, \"\"late\"\"\nparcel\",7\r\n");
    }
}
