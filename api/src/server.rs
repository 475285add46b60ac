//! The HTTP server: actix-web's app behind actix-http's HTTP/1 service, built by hand rather
//! than through `HttpServer` for one thing `HttpServer` cannot do: route WebSocket upgrades to
//! [`crate::ws::upgrade`] before any route, so that an open socket no longer holds the HTTP
//! dispatcher (its buffers and streaming body) for its whole life. The settings are
//! `HttpServer`'s defaults.

use std::net::SocketAddr;
use std::time::Duration;

use actix_http::{HttpService, Request, h1};
use actix_server::{Server, ServerBuilder};
use actix_service::{IntoServiceFactory, ServiceFactoryExt, fn_factory, fn_service, map_config};
use actix_web::dev::AppConfig;
use actix_web::{App, web};

use crate::http::AppState;

/// `HttpServer`'s defaults, kept.
const KEEP_ALIVE: Duration = Duration::from_secs(5);
const CLIENT_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const CLIENT_DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Binds `listen` and returns the server, not yet awaited.
pub fn bind(
    state: AppState,
    listen: SocketAddr,
    shutdown_grace_seconds: u64,
) -> std::io::Result<Server> {
    let builder = ServerBuilder::default();
    let graceful = builder.graceful_shutdown_signal();
    builder
        .shutdown_timeout(shutdown_grace_seconds)
        // Signals are ours: WebSockets must be told to go away before the server waits for
        // connections to drain, or they would hold the shutdown for the whole grace.
        .disable_signals()
        .bind("tms-api", listen, move || {
            let app_state = state.clone();
            let upgrade_state = state.clone();
            let graceful = graceful.clone();
            let origins = state.allowed_origins.clone();
            let app = App::new()
                .wrap(actix_web::middleware::from_fn(crate::metrics::track))
                .app_data(web::Data::new(app_state))
                // Large enough for an import source (16 MiB, `imports::MAX_CONTENT_BYTES`) in a
                // variable; GraphQL documents themselves stay limited to 32 KiB.
                .app_data(web::PayloadConfig::new(17 * 1024 * 1024))
                .configure(crate::http::routes(origins))
                .into_factory()
                .map_err(|e: actix_web::Error| e.error_response());
            HttpService::build()
                // Idle keep-alive connections close at once when a graceful stop begins.
                .graceful_shutdown_signal(move || {
                    let graceful = graceful.clone();
                    async move { graceful.notified().await }
                })
                .keep_alive(KEEP_ALIVE)
                .client_request_timeout(CLIENT_REQUEST_TIMEOUT)
                .client_disconnect_timeout(CLIENT_DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .local_addr(listen)
                // Subscriptions send many small frames; without TCP_NODELAY, Nagle's algorithm and
                // the peer's delayed ACK hold every second frame back ~40 ms.
                .tcp_nodelay(true)
                .upgrade(fn_factory(move || {
                    let state = upgrade_state.clone();
                    async move {
                        Ok::<_, ()>(fn_service(
                            move |(req, framed): (Request, actix_codec::Framed<_, h1::Codec>)| {
                                crate::ws::upgrade::serve(state.clone(), req, framed)
                            },
                        ))
                    }
                }))
                .finish(map_config(app, |_| AppConfig::default()))
                .tcp()
        })
        .map(ServerBuilder::run)
}
