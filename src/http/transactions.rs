//! The points ledger (`/v1/loyalty/transactions`): every row names the
//! payment, refund or redemption it came from, so it joins the payments.

use actix_web::{web, HttpRequest, HttpResponse};

use super::query::ListQuery;
use super::respond;
use crate::domain::points::{PointsTransaction, TxType};
use crate::domain::IdKind;
use crate::error::ApiError;
use crate::ledger::Ledger;

pub async fn get(ledger: web::Data<Ledger>, id: web::Path<String>) -> Result<HttpResponse, ApiError> {
    let tx = ledger
        .state
        .visible(|s| s.transactions.find(IdKind::PointsTransaction, &id))
        .ok_or_else(|| ApiError::not_found("points_transaction", &id))?;
    respond::ok(&tx.view())
}

pub async fn list(ledger: web::Data<Ledger>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let q = ListQuery::parse(&req, &["account", "type", "payment"])?;
    let kind = match q.filter("type") {
        None => None,
        Some(t) => Some(TxType::parse(t).ok_or_else(|| {
            ApiError::parameter_invalid("type", "type must be one of earn, redeem, release, clawback.")
        })?),
    };
    let payment = q.id_filter("payment")?;
    let keep = |tx: &PointsTransaction| {
        kind.is_none_or(|k| tx.kind == k) && payment.is_none_or(|p| tx.payment().is_some_and(|tp| tp == p))
    };
    let state = &ledger.state;
    let mut data = Vec::new();
    let emit = |tx: &PointsTransaction| data.push(respond::to_value(&tx.view()));
    let has_more = match (q.id_filter("account")?, payment) {
        (Some(account), _) => {
            if !IdKind::Account.accepts(account) {
                return Err(ApiError::missing_reference("account", account));
            }
            state
                .account_transactions(account, &q.params, keep, emit)?
                .ok_or_else(|| ApiError::missing_reference("account", account))?
        }
        // A payment's transactions (its earn and clawbacks) are all its
        // member's, which never changes once set: that account's list is walked.
        (None, Some(p)) => {
            let member = state.visible(|s| s.payments.try_with(p, |pay| pay.loyalty_account.clone()))?.flatten();
            match member {
                Some(account) => state.account_transactions(&account, &q.params, keep, emit)?.unwrap_or(false),
                None => false,
            }
        }
        (None, None) => match kind {
            Some(k) => state.indexed_page(
                &state.transactions,
                &state.transactions_by_type,
                k.as_str(),
                &q.params,
                keep,
                emit,
            )?,
            None => state.page(&state.transactions, &q.params, keep, emit)?,
        },
    };
    respond::list(data, has_more)
}
