//! `GET /metrics`, and the middleware that times every request by its
//! matched route pattern, never the raw path. Each resource carries its
//! pattern as resource data (`RoutePattern`), read after routing: asking
//! `match_pattern()` instead would walk the whole route table again for every
//! request (a quarter of a read's CPU in the load bench).

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

use crate::ledger::Ledger;

/// The route pattern of a resource, attached to it as resource data.
#[derive(Debug, Clone, Copy)]
pub struct RoutePattern(pub &'static str);

/// Around the whole app: counts and times each request.
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = req.method().clone();
    let ledger = req.app_data::<web::Data<Ledger>>().cloned();
    let result = next.call(req).await;
    let (status, route) = match &result {
        Ok(res) => {
            let req = res.request();
            // Answered before reaching a resource (401, 503, unknown routes): the slow walk, rarely.
            let route = req.app_data::<RoutePattern>().map(|p| p.0.to_string()).or_else(|| req.match_pattern());
            (res.status().as_u16(), route)
        }
        Err(e) => (e.as_response_error().status_code().as_u16(), None),
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
    m.webhook_pending.set(ledger.state.pending_deliveries() as i64);
    m.idempotency_in_memory.set(ledger.state.idempotency.len() as i64);
    m.objects_cold.set(ledger.state.cold_objects() as i64);
    HttpResponse::Ok().content_type(crate::metrics::CONTENT_TYPE).body(m.render())
}
