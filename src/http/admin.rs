//! `POST /v1/admin/snapshot`: a consistent snapshot while the server keeps
//! serving (see `snapshot`), answered as
//! `{object:"snapshot", path, lsn, bytes, created}`; `path` is absolute, so
//! `loyalty-ledger restore PATH` works from any directory.
//!
//! One snapshot at a time: a second request meanwhile is a 409
//! `snapshot_in_progress`. The request changes no ledger state, so an
//! `Idempotency-Key` is not stored for it: a retry takes another snapshot,
//! which is harmless.

use actix_web::{web, HttpResponse};

use super::body::Body;
use super::payments::NoParams;
use super::respond;
use crate::error::ApiError;
use crate::ledger::Ledger;
use crate::{ops, snapshot};

pub async fn snapshot(ledger: web::Data<Ledger>, body: Body) -> Result<HttpResponse, ApiError> {
    let _: NoParams = body.json()?;
    let taken = snapshot::take_online(&ledger, snapshot::Scope::Portable).await?;
    respond::ok(&serde_json::json!({
        "object": "snapshot",
        "path": ops::absolute(&taken.info.path).display().to_string(),
        "lsn": taken.info.lsn,
        "bytes": taken.info.bytes,
        "created": taken.info.created,
    }))
}
