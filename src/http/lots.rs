//! Points lots (`/v1/loyalty/lots`) and adjustments (`/v1/loyalty/adjustments`).
//!
//! Lots list soonest to expire first (then oldest, never-expiring last): the
//! order spending takes them in. A cursor pages on in that order. A page is
//! a bounded selection over the account's lots, or over the groups of every
//! lot in that order from the cursor on (`state/lot_order.rs`), so it holds
//! one page in memory whatever the ledger's size. Lots are read one at a
//! time with the writes going on (each whole, as some record left it), so a
//! list never holds the apply thread up while it reads lots from history.

use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::body::Body;
use super::idempotency;
use super::query::ListQuery;
use super::respond;
use crate::accounts::{self, AccountCommand, Adjustment};
use crate::config::TEXT_FIELD_CHARS_MAX;
use crate::domain::lots::{LotStatus, PointsLot};
use crate::domain::points::POINTS_BALANCE_MAX;
use crate::domain::{metadata, Id, IdKind, Metadata};
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::state::{lot_order, Cursor, State};

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
    if let Some(account) = account {
        if !state.accounts.contains(account) {
            return Err(ApiError::missing_reference("account", account));
        }
    }
    let cursor = q.params.cursor();
    let limit = q.params.limit;
    let select = |s: &State| {
        // Where the cursor sits in spending order; the page is what lies after
        // (or, for `ending_before`, just before) it.
        let from = match cursor {
            Cursor::Newest => None,
            Cursor::After(id) | Cursor::Before(id) => match s.lots.try_with(id, SortKey::of)? {
                Some(key) => Some(key),
                None => return Err(ApiError::missing_reference(cursor.param(), id)),
            },
        };
        let backwards = matches!(cursor, Cursor::Before(_));
        let mut best = Best::new(limit, backwards);
        // Offers a lot of `status` (any, for an account's); whether it counts
        // toward the page.
        let mut offer = |l: &PointsLot, group: Option<LotStatus>| {
            if group.is_some_and(|g| l.status != g)
                || status.is_some_and(|st| l.status != st)
                || !q.params.created.contains(l.created)
            {
                return false;
            }
            let key = SortKey::of(l);
            let beyond = match &from {
                None => true,
                Some(from) if backwards => key < *from,
                Some(from) => key > *from,
            };
            if beyond {
                best.offer(key, l);
            }
            beyond
        };
        match account {
            Some(account) => s.for_each_lot_of_account(account, |l| {
                offer(l, None);
            })?,
            None => {
                // Each status's groups in spending order, from the cursor's on
                // (`state/lot_order.rs`), until it has given a page past the
                // cursor: every later group of that status sorts after those.
                for st in LotStatus::ALL.into_iter().filter(|st| status.is_none_or(|s| s == *st)) {
                    let code = lot_order::status_code(st);
                    let mut at = from.as_ref().map(|k| lot_order::Key { status: code, expires: k.0, created: k.1 });
                    let mut inclusive = true;
                    let mut given = 0usize;
                    while let Some((key, positions)) = s.lot_order.next_group(code, at, inclusive, backwards) {
                        for position in positions {
                            if let Some(true) = s.lots.try_with_at(position, |l| offer(l, Some(st)))? {
                                given += 1;
                            }
                        }
                        if given > limit {
                            break;
                        }
                        (at, inclusive) = (Some(key), false);
                    }
                }
            }
        }
        Ok(best.page())
    };
    // Each lot is read whole with the writes going on, so a long list (an
    // account's lots read from history) never holds them up.
    let (page, has_more) = select(state)?;
    respond::list(page.iter().map(|l| respond::to_value(&l.view())).collect(), has_more)
}

/// A lot's place in spending order (`PointsLot::spending_key`), owned.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct SortKey(i64, i64, Id);

impl SortKey {
    fn of(l: &PointsLot) -> SortKey {
        let (expires, created, id) = l.spending_key();
        SortKey(expires, created, Id::from(id))
    }
}

/// The `limit` lots nearest the cursor, and whether there are more: a
/// bounded selection, so a list of every lot holds one page, not every lot.
struct Best {
    limit: usize,
    /// `ending_before`: the ones just before the cursor (the largest keys).
    backwards: bool,
    /// Kept sorted by key; at most `limit + 1` (the extra one says `has_more`).
    kept: Vec<(SortKey, PointsLot)>,
}

impl Best {
    fn new(limit: usize, backwards: bool) -> Best {
        Best { limit, backwards, kept: Vec::with_capacity(limit + 1) }
    }

    fn offer(&mut self, key: SortKey, lot: &PointsLot) {
        let full = self.kept.len() > self.limit;
        if full {
            // Only a key nearer the cursor than the farthest kept one gets in.
            let nearer = if self.backwards { key > self.kept[0].0 } else { key < self.kept[self.limit].0 };
            if !nearer {
                return;
            }
        }
        let at = self.kept.partition_point(|(k, _)| *k < key);
        self.kept.insert(at, (key, lot.clone()));
        if self.kept.len() > self.limit + 1 {
            if self.backwards {
                self.kept.remove(0);
            } else {
                self.kept.pop();
            }
        }
    }

    /// The page in list order, and `has_more`.
    fn page(mut self) -> (Vec<PointsLot>, bool) {
        let more = self.kept.len() > self.limit;
        if more {
            if self.backwards {
                self.kept.remove(0);
            } else {
                self.kept.pop();
            }
        }
        (self.kept.into_iter().map(|(_, l)| l).collect(), more)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::domain::lots::PointsLot;

    fn lot(id: &str, expires_at: Option<i64>, created: i64) -> PointsLot {
        PointsLot::credit(id.into(), "loy_a".into(), "ptx".into(), 1, (created, expires_at, None), 0, created)
    }

    /// Pages of every size, both ways, from every cursor, agree with a full sort.
    #[test]
    fn a_bounded_selection_pages_like_a_sort() {
        let lots: Vec<PointsLot> =
            (0..23).map(|i| lot(&format!("lot_{i:02}"), (i % 4 != 0).then_some(100 - i % 7), i % 5)).collect();
        let mut sorted = lots.clone();
        sorted.sort_by(|a, b| SortKey::of(a).cmp(&SortKey::of(b)));
        for limit in [1, 2, 5, 23, 30] {
            for at in 0..=sorted.len() {
                let from = (at < sorted.len()).then(|| SortKey::of(&sorted[at]));
                let mut after = Best::new(limit, false);
                let mut before = Best::new(limit, true);
                for l in &lots {
                    let key = SortKey::of(l);
                    if from.as_ref().is_none_or(|f| key > *f) {
                        after.offer(key.clone(), l);
                    }
                    if from.as_ref().is_some_and(|f| key < *f) {
                        before.offer(key, l);
                    }
                }
                let begin = if from.is_some() { at + 1 } else { 0 };
                let end = (begin + limit).min(sorted.len());
                let (page, more) = after.page();
                assert_eq!(page, sorted[begin.min(end)..end].to_vec(), "after {at}, limit {limit}");
                assert_eq!(more, end < sorted.len());
                if from.is_some() {
                    let (page, more) = before.page();
                    let begin = at.saturating_sub(limit);
                    assert_eq!(page, sorted[begin..at].to_vec(), "before {at}, limit {limit}");
                    assert_eq!(more, begin > 0);
                }
            }
        }
    }
}
