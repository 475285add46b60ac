//! The worker's own HTTP endpoints: metrics, liveness and readiness.

use std::sync::Arc;
use std::time::Instant;

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::middleware::Next;
use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::monitoring::MonitoringService;
use tms_core::{health, metrics};
use tokio::sync::Semaphore;

use crate::executor::SharedExecutor;

#[derive(Clone)]
pub struct Probe {
    pub db: Db,
    pub bus: EventBus,
    pub executor: SharedExecutor,
    pub name: String,
    pub monitoring: MonitoringService,
    /// The worker's step slots, and how many there are.
    pub slots: Arc<Semaphore>,
    pub total_slots: usize,
}

impl Probe {
    pub fn busy_slots(&self) -> usize {
        self.total_slots
            .saturating_sub(self.slots.available_permits())
    }
}

async fn healthz(p: web::Data<Probe>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "worker": p.name}))
}

async fn probe_all(p: &Probe) -> health::Report {
    health::report(vec![
        health::check("postgres", p.db.ping()),
        health::check("redis", p.bus.ping()),
        health::check("executor", p.executor.ready()),
    ])
    .await
}

async fn readyz(p: web::Data<Probe>) -> HttpResponse {
    let report = probe_all(&p).await;
    let status = actix_web::http::StatusCode::from_u16(report.http_status())
        .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
    HttpResponse::build(status).json(report.to_json(&[
        ("worker", json!(p.name)),
        ("executor", json!(p.executor.name())),
    ]))
}

/// The Prometheus exposition, with slots, pool and queue read now.
async fn metrics_endpoint(p: web::Data<Probe>) -> HttpResponse {
    metrics::runs::set_slots(p.busy_slots(), p.total_slots);
    metrics::db::refresh(&p.db);
    metrics::health::set(&probe_all(&p).await);
    match p.monitoring.read_queue().await {
        Ok(q) => metrics::queue::set(&q),
        Err(e) => tracing::debug!(error = %e, "queue statistics unavailable for /metrics"),
    }
    HttpResponse::Ok()
        .content_type(metrics::CONTENT_TYPE)
        .body(metrics::render())
}

/// Counts and times a request under its route template.
async fn track(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let started = Instant::now();
    let method = metrics::http::method_label(req.method().as_str());
    let res = next.call(req).await?;
    let route = metrics::http::route_label(res.request().match_pattern().as_deref());
    let status = res.status().as_u16();
    metrics::http::observe_request(route, method, status, started.elapsed().as_secs_f64());
    Ok(res)
}

pub fn server(probe: Probe, addr: std::net::SocketAddr) -> std::io::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .wrap(actix_web::middleware::from_fn(track))
            .app_data(web::Data::new(probe.clone()))
            .route("/metrics", web::get().to(metrics_endpoint))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    // Probes and scrapes are short: a shutdown does not wait long for them.
    .shutdown_timeout(2)
    .bind(addr)?
    .run())
}
