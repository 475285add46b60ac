//! The worker's own HTTP endpoints: liveness and readiness.

use actix_web::{App, HttpResponse, HttpServer, web};
use serde_json::json;
use tms_core::bus::EventBus;
use tms_core::db::Db;

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
    let t = std::time::Duration::from_secs(2);
    let (pg, redis, exec) = tokio::join!(
        tokio::time::timeout(t, p.db.ping()),
        tokio::time::timeout(t, p.bus.ping()),
        tokio::time::timeout(t, p.executor.ready()),
    );
    let pg_ok = matches!(pg, Ok(Ok(())));
    let redis_ok = matches!(redis, Ok(Ok(())));
    let exec_ok = matches!(exec, Ok(Ok(())));
    let ok = pg_ok && redis_ok && exec_ok;
    let state = |b: bool| if b { "ok" } else { "unreachable" };
    let body = json!({
        "status": if ok { "ready" } else { "not_ready" },
        "worker": p.name,
        "executor": p.executor.name(),
        "checks": {"postgres": state(pg_ok), "redis": state(redis_ok), "executor": state(exec_ok)},
    });
    if ok {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
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
