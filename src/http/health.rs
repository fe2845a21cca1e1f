//! `/healthz` (the process answers) and `/readyz` (replay is done).

use actix_web::{web, HttpResponse};
use serde_json::json;

use crate::ledger::Ledger;

pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

pub async fn readyz(ledger: web::Data<Ledger>) -> HttpResponse {
    if ledger.is_ready() {
        HttpResponse::Ok().json(json!({"status": "ready"}))
    } else {
        HttpResponse::ServiceUnavailable().json(json!({"status": "replaying"}))
    }
}
