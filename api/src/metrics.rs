//! `/metrics` of the api and the middleware that times every HTTP request.

use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{HttpResponse, web};
use tms_core::metrics;

use crate::http::AppState;

/// Counts and times a request under its route template (never its raw path).
pub async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = metrics::http::method_label(req.method().as_str());
    let res = next.call(req).await?;
    let route = metrics::http::route_label(res.request().match_pattern().as_deref());
    metrics::http::observe_request(
        route,
        method,
        res.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    Ok(res)
}

/// The Prometheus exposition, with the pool and queue read now (the queue read is bounded by
/// the health-check timeout; when Redis or Postgres does not answer, the last reading stays).
pub async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    metrics::db::refresh(&state.db);
    let report = tms_core::health::report(vec![
        tms_core::health::check("postgres", state.db.ping()),
        tms_core::health::check("redis", state.bus.ping()),
    ]);
    metrics::health::set(&report.await);
    match state.services.monitoring.read_queue().await {
        Ok(q) => metrics::queue::set(&q),
        Err(e) => tracing::debug!(error = %e, "queue statistics unavailable for /metrics"),
    }
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}
