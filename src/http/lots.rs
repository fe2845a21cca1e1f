//! Points lots (`/v1/loyalty/lots`) and adjustments (`/v1/loyalty/adjustments`).
//!
//! Lots list soonest to expire first (then oldest, never-expiring last): the
//! order spending takes them in. A cursor pages on in that order.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::accounts::{self, AccountCommand, Adjustment};
use crate::config::TEXT_FIELD_CHARS_MAX;
use crate::domain::lots::{spending_order, LotStatus, PointsLot};
use crate::domain::points::POINTS_BALANCE_MAX;
use crate::domain::{metadata, Id, IdKind, Metadata};
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::state::Cursor;

/// Largest number of points one adjustment may move either way.
pub const ADJUSTMENT_POINTS_MAX: i64 = POINTS_BALANCE_MAX;
/// Longest adjustment `reason`, in characters.
pub const ADJUSTMENT_REASON_CHARS_MAX: usize = 500;
const _: () = assert!(ADJUSTMENT_REASON_CHARS_MAX <= TEXT_FIELD_CHARS_MAX);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateAdjustment {
    account: String,
    points: i64,
    reason: String,
    allow_negative: Option<bool>,
    metadata: Option<Metadata>,
}

pub async fn create_adjustment(
    ledger: web::Data<Ledger>,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, ApiError> {
    let ledger = ledger.into_inner();
    let (ledger, body) = (&ledger, &body);
    idempotency::once(ledger, &req, &body.0, |m| async move {
        let p: CreateAdjustment = body.json()?;
        if p.points == 0 || p.points.unsigned_abs() > ADJUSTMENT_POINTS_MAX as u64 {
            return Err(ApiError::parameter_invalid(
                "points",
                format!("points must be a non-zero integer from -{ADJUSTMENT_POINTS_MAX} to {ADJUSTMENT_POINTS_MAX}."),
            ));
        }
        let chars = p.reason.chars().count();
        if chars == 0 || chars > ADJUSTMENT_REASON_CHARS_MAX || p.reason.trim().is_empty() {
            return Err(ApiError::parameter_invalid(
                "reason",
                format!("reason must be 1 to {ADJUSTMENT_REASON_CHARS_MAX} characters, not only spaces."),
            ));
        }
        let metadata = metadata::initial(p.metadata)?;
        if !IdKind::Account.accepts(&p.account) || !ledger.state.accounts.contains(&p.account) {
            return Err(ApiError::missing_reference("account", &p.account));
        }
        let adjustment = Adjustment {
            points: p.points,
            reason: p.reason,
            metadata,
            allow_negative: p.allow_negative.unwrap_or(false),
        };
        accounts::ask(ledger, &Id::from(p.account), AccountCommand::Adjust(adjustment), m).await
    })
    .await
}

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let lot = ledger
        .state
        .visible(|s| s.lots.find(IdKind::Lot, &id))
        .ok_or_else(|| ApiError::not_found("points_lot", &id))?;
    respond::ok(&lot.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["account", "status"])?;
    let status = match q.filter("status") {
        None => None,
        Some(s) => Some(LotStatus::parse(s).ok_or_else(|| {
            ApiError::parameter_invalid("status", "status must be pending, available, spent, expired or clawed_back.")
        })?),
    };
    let account = q.id_filter("account")?;
    let state = &ledger.state;
    let keep = |l: &PointsLot| status.is_none_or(|s| l.status == s) && q.params.created.contains(l.created);
    let mut lots: Vec<PointsLot> = match account {
        Some(account) => {
            if !state.accounts.contains(account) {
                return Err(ApiError::missing_reference("account", account));
            }
            state.visible(|s| s.lots_of_account(account, keep))
        }
        None => state.visible(|s| {
            let mut all = Vec::new();
            s.lots.for_each(|l| {
                if keep(l) {
                    all.push(l.clone());
                }
            });
            all
        }),
    };
    spending_order(&mut lots);
    let (page, has_more) = page_in_order(&lots, &q.params.cursor(), q.params.limit)?;
    respond::list(page.iter().map(|l| respond::to_value(&l.view())).collect(), has_more)
}

/// One page of `sorted` (in list order) from `cursor`: `starting_after` the
/// ones after it, `ending_before` the ones just before it.
fn page_in_order<'a>(
    sorted: &'a [PointsLot],
    cursor: &Cursor,
    limit: usize,
) -> Result<(&'a [PointsLot], bool), ApiError> {
    let find = |id: &str| {
        sorted.iter().position(|l| l.id == id).ok_or_else(|| ApiError::missing_reference(cursor.param(), id))
    };
    Ok(match *cursor {
        Cursor::Newest => {
            let end = limit.min(sorted.len());
            (&sorted[..end], end < sorted.len())
        }
        Cursor::After(id) => {
            let begin = find(id)? + 1;
            let end = begin.saturating_add(limit).min(sorted.len());
            (&sorted[begin..end], end < sorted.len())
        }
        Cursor::Before(id) => {
            let end = find(id)?;
            let begin = end.saturating_sub(limit);
            (&sorted[begin..end], begin > 0)
        }
    })
}
