//! `/healthz` (the process answers) and `/readyz` (replay is done and the
//! write path is open: after a storage fault it says 503 until a restart, so a
//! load balancer stops sending writes to this instance).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::ledger::Ledger;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(ledger: web::Data<Ledger>) -> HttpResponse {
    if ledger.wal().is_some_and(|w| w.is_poisoned()) {
        HttpResponse::ServiceUnavailable().json(json!({"status": "storage_unavailable"}))
    } else if ledger.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "replaying"}))
    }
}
