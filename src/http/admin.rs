//! `POST /v1/admin/snapshot`: a consistent snapshot while the server keeps
//! serving (see `snapshot`), answered as
//! `{object:"snapshot", path, lsn, bytes, created}`.
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
use crate::snapshot;

pub async fn snapshot(ledger: web::Data<Ledger>, body: Body) -> Result<HttpResponse, ApiError> {
    let _: NoParams = body.json()?;
    let _one_at_a_time = ledger.snapshot_lock.try_lock().map_err(|_| ApiError::snapshot_in_progress())?;
    let wal = ledger.wal().ok_or_else(ApiError::not_ready)?;
    let m = &ledger.metrics;
    let taken =
        snapshot::take(ledger.fs.clone(), ledger.data_dir.clone(), wal, ledger.state.clone(), ledger.now()).await;
    let taken = match taken {
        Ok(t) => t,
        Err(e) => {
            m.snapshot_failures.inc();
            return Err(e);
        }
    };
    m.snapshots.inc();
    m.snapshot_seconds.set(taken.elapsed.as_secs_f64());
    m.snapshot_stall_seconds.set(taken.stall.as_secs_f64());
    m.snapshot_bytes.set(taken.info.bytes as i64);
    m.snapshot_lsn.set(taken.info.lsn as i64);
    m.snapshot_created.set(taken.info.created);
    respond::ok(&serde_json::json!({
        "object": "snapshot",
        "path": taken.info.path.display().to_string(),
        "lsn": taken.info.lsn,
        "bytes": taken.info.bytes,
        "created": taken.info.created,
    }))
}
