//! The worker's own HTTP endpoints: liveness and readiness.

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::health;

use crate::executor::SharedExecutor;

#[derive(Clone)]
pub struct Probe {
    pub db: Db,
    pub bus: EventBus,
    pub executor: SharedExecutor,
    pub name: String,
}

async fn healthz(p: web::Data<Probe>) -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok", "worker": p.name}))
}

async fn readyz(p: web::Data<Probe>) -> HttpResponse {
    let report = health::report(vec![
        health::check("postgres", p.db.ping()),
        health::check("redis", p.bus.ping()),
        health::check("executor", p.executor.ready()),
    ])
    .await;
    let status = actix_web::http::StatusCode::from_u16(report.http_status())
        .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
    HttpResponse::build(status).json(report.to_json(&[
        ("worker", json!(p.name)),
        ("executor", json!(p.executor.name())),
    ]))
}

pub fn server(probe: Probe, addr: std::net::SocketAddr) -> std::io::Result<actix_web::dev::Server> {
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(probe.clone()))
            .route("/healthz", web::get().to(healthz))
            .route("/readyz", web::get().to(readyz))
    })
    .workers(1)
    .disable_signals()
    .bind(addr)?
    .run())
}
