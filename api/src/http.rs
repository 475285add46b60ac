//! HTTP routes: GraphQL (POST, GraphiQL on GET), health and readiness.

use actix_web::{HttpRequest, HttpResponse, web};
use async_graphql::http::GraphiQLSource;
use async_graphql_actix_web::{GraphQLRequest, GraphQLResponse};
use serde_json::json;
use tms_core::auth::RequestMeta;
use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::health;

use crate::context::RequestAuth;
use crate::error::ensure_codes;
use crate::graphql::TmsSchema;
use crate::state::Services;

/// Largest GraphQL document accepted, in bytes.
pub const MAX_DOCUMENT_BYTES: usize = 64 * 1024;

#[derive(Clone)]
pub struct AppState {
    pub schema: TmsSchema,
    pub services: Services,
    pub db: Db,
    pub bus: EventBus,
    pub production: bool,
}

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/graphql", web::post().to(graphql))
        .route(
            "/graphql",
            web::get()
                .guard(actix_web::guard::Header("upgrade", "websocket"))
                .to(crate::ws::graphql_ws),
        )
        .route("/graphql", web::get().to(graphiql))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz));
}

async fn graphql(
    state: web::Data<AppState>,
    http: HttpRequest,
    req: GraphQLRequest,
) -> HttpResponse {
    let mut req = req.into_inner();
    if req.query.len() > MAX_DOCUMENT_BYTES {
        let resp = async_graphql::Response::from_errors(vec![async_graphql::ServerError::new(
            format!("document exceeds {MAX_DOCUMENT_BYTES} bytes"),
            None,
        )]);
        return HttpResponse::PayloadTooLarge().json(ensure_codes(resp));
    }
    let header = http
        .headers()
        .get(actix_web::http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let meta = request_meta(&http);
    let mut auth = RequestAuth::from_header(&state.services.auth, header).await;
    if let Some(p) = auth.principal.as_mut() {
        p.meta = meta.clone();
    }
    let loaders = crate::graphql::loaders::for_request(&state.services, &auth);
    req = req.data(auth).data(loaders).data(meta);
    let resp = ensure_codes(state.schema.execute(req).await);
    GraphQLResponse::from(resp).respond(&http)
}

/// The peer address (never a forwarding header a client could forge) and user agent, for the
/// audit log.
fn request_meta(http: &HttpRequest) -> RequestMeta {
    RequestMeta {
        ip: http.peer_addr().map(|a| a.ip().to_string()),
        user_agent: http
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
    }
}

async fn graphiql(state: web::Data<AppState>) -> HttpResponse {
    if state.production {
        return HttpResponse::NotFound().finish();
    }
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(GraphiQLSource::build().endpoint("/graphql").finish())
}

async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(json!({"status": "ok"}))
}

async fn readyz(state: web::Data<AppState>) -> HttpResponse {
    let report = health::report(vec![
        health::check("postgres", state.db.ping()),
        health::check("redis", state.bus.ping()),
    ])
    .await;
    let status = actix_web::http::StatusCode::from_u16(report.http_status())
        .unwrap_or(actix_web::http::StatusCode::SERVICE_UNAVAILABLE);
    HttpResponse::build(status).json(report.to_json(&[]))
}

trait Respond {
    fn respond(self, req: &HttpRequest) -> HttpResponse;
}

impl Respond for GraphQLResponse {
    fn respond(self, req: &HttpRequest) -> HttpResponse {
        use actix_web::Responder;
        self.respond_to(req).map_into_boxed_body()
    }
}
