//! `GET /metrics`, and the middleware that times every request by its
//! matched route pattern (`HttpRequest::match_pattern`), never the raw path.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::ledger::Ledger;

/// Around the whole app: counts and times each request.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let route = req.match_pattern();
    let method = req.method().clone();
    let ledger = req.app_data::<web::Data<Ledger>>().cloned();
    let result = next.call(req).await;
    let status = match &result {
        Ok(res) => res.status().as_u16(),
        Err(e) => e.as_response_error().status_code().as_u16(),
    };
    if let Some(ledger) = ledger {
        ledger.metrics.observe_request(method.as_str(), route, status, started.elapsed().as_secs_f64());
    }
    result
}

pub async fn metrics(ledger: web::Data<Ledger>) -> HttpResponse {
    let m = &ledger.metrics;
    m.accounts.set(ledger.state.accounts.len() as i64);
    m.live_actors.set(ledger.accounts.live() as i64);
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(m.render())
}
