//! HTTP routes: GraphQL (POST; GET for queries; GraphiQL on a GET without one), metrics, health
//! and readiness, the console. CORS (from `TMS_ALLOWED_ORIGINS`) covers the bearer-token API:
//! `/graphql` and the step-log download, not the console's cookie endpoints.

use std::sync::Arc;

use actix_cors::Cors;
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header;
use actix_web::middleware::Next;
use actix_web::{HttpRequest, HttpResponse, guard, web};
use async_graphql::BatchRequest;
use async_graphql_actix_web::{GraphQLBatchRequest, GraphQLResponse};
use serde_json::json;
use tms_core::auth::RequestMeta;
use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::health;
use tracing::Instrument;

use crate::error::ensure_codes;
use crate::graphql::TmsSchema;
use crate::graphql::limits::{MAX_BATCH, refusal};
use crate::graphql::persisted::PersistedQueries;
use crate::graphql::pipeline::{self, PendingAuth};
use crate::origin::Origin;
use crate::state::Services;

#[derive(Clone)]
pub struct AppState {
    /// The schema HTTP requests execute on (see `graphql::build`).
    pub schema: TmsSchema,
    /// The schema WebSocket subscriptions execute on (see `graphql::build_ws`).
    pub ws_schema: TmsSchema,
    pub services: Services,
    pub db: Db,
    pub bus: EventBus,
    pub production: bool,
    /// `TMS_ALLOWED_ORIGINS`: browser origins, besides the api's own, that may open a WebSocket
    /// (and that CORS lets call the API: see [`routes`]).
    pub allowed_origins: Arc<Vec<Origin>>,
    /// Automatic persisted queries registered with this process.
    pub persisted: PersistedQueries,
    /// The runs pages the compiled read path has learnt (see `graphql::compiled`).
    pub plans: Arc<crate::graphql::compiled::Plans>,
    /// Session revocations from every api instance, for closing this one's sockets.
    pub revocations: tms_core::auth::revocations::RevocationHub,
    /// Single sign-on, when `TMS_OIDC_ISSUER` is set.
    pub sso: Option<tms_core::auth::sso::SsoService>,
    /// Fired on SIGTERM/SIGINT: WebSockets close with 1001 while requests in flight drain.
    pub shutting_down: tokio_util::sync::CancellationToken,
    /// The open WebSocket connections, which live outside actix's connection count: shutdown
    /// waits for their close frames.
    pub ws_connections: tokio_util::task::TaskTracker,
    /// The subscription executions WebSocket subscribers share (see `ws::shared`).
    pub shared_subscriptions: Arc<crate::ws::shared::Registry>,
}

/// How long a browser may cache a preflight answer, in seconds.
pub const CORS_MAX_AGE: usize = 3600;

/// The routes, with CORS for `origins` on the bearer-token endpoints.
pub fn routes(origins: Arc<Vec<Origin>>) -> impl Fn(&mut web::ServiceConfig) {
    move |cfg| {
        cfg.service(
            web::resource("/graphql")
                .wrap(cors(origins.clone()))
                // WebSocket upgrades never reach the routes: see `crate::server`.
                .route(web::post().to(graphql))
                .route(web::get().guard(guard::fn_guard(has_query)).to(graphql))
                .route(web::get().to(crate::console::graphiql::graphiql)),
        )
        .route("/metrics", web::get().to(crate::metrics::metrics))
        .route("/healthz", web::get().to(healthz))
        .route("/readyz", web::get().to(readyz))
        .service(
            web::resource("/runs/{id}/steps/{name}/log")
                .wrap(cors(origins.clone()))
                // Outside CORS, so it sees whether CORS allowed the origin.
                .wrap(actix_web::middleware::from_fn(expose_log_headers))
                .route(web::get().to(crate::step_logs::download)),
        )
        .service(
            web::resource("/auth/exchange")
                .wrap(cors(origins.clone()))
                .route(web::post().to(crate::sso::exchange)),
        )
        .configure(crate::sso::routes)
        .configure(crate::console::routes);
    }
}

/// CORS for the API's listed browser origins. Credentials are not allowed: the API reads bearer
/// tokens, never cookies. An unlisted origin gets no CORS header (its browser then refuses the
/// answer), and requests without `Origin` (non-browser clients) pass untouched.
fn cors(origins: Arc<Vec<Origin>>) -> Cors {
    Cors::default()
        .allowed_origin_fn(move |origin, _| {
            origin
                .to_str()
                .is_ok_and(|o| crate::origin::listed(o, &origins))
        })
        .allowed_methods(["GET", "POST", "OPTIONS"])
        .allowed_headers([
            header::AUTHORIZATION,
            header::CONTENT_TYPE,
            header::HeaderName::from_static("traceparent"),
            header::HeaderName::from_static("tracestate"),
        ])
        .max_age(CORS_MAX_AGE)
}

/// What the step-log download says about the text it returns, readable by a listed origin's
/// script. Added here rather than by `Cors::expose_headers`, which would add it to every
/// answer, unlisted origins' included.
async fn expose_log_headers(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let mut res = next.call(req).await?;
    let headers = res.headers_mut();
    if headers.contains_key(header::ACCESS_CONTROL_ALLOW_ORIGIN) {
        headers.insert(
            header::ACCESS_CONTROL_EXPOSE_HEADERS,
            header::HeaderValue::from_static(
                "x-tms-log-attempt, x-tms-log-complete, x-tms-log-next-offset",
            ),
        );
    }
    Ok(res)
}

/// A `GET /graphql` carrying an operation (`query=`, or a persisted query's `extensions=`);
/// without one the GET is GraphiQL's page.
fn has_query(ctx: &guard::GuardContext<'_>) -> bool {
    ctx.head().uri.query().is_some_and(|q| {
        q.split('&')
            .any(|p| p.starts_with("query=") || p.starts_with("extensions="))
    })
}

async fn graphql(
    state: web::Data<AppState>,
    http: HttpRequest,
    req: GraphQLBatchRequest,
) -> HttpResponse {
    // The token is resolved by `pipeline::execute` after the limits have passed, so that a
    // refused request costs no database statement.
    let pending = PendingAuth {
        header: http
            .headers()
            .get(actix_web::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string),
        meta: request_meta(&http),
        queries_only: http.method() == actix_web::http::Method::GET,
    };
    // One span per request, a child of the caller's W3C `traceparent` when it sent one.
    let span = tracing::info_span!(
        "graphql.request",
        otel.name = if http.method() == actix_web::http::Method::GET {
            "GET /graphql"
        } else {
            "POST /graphql"
        },
        graphql.operation = tracing::field::Empty,
        trace_id = tracing::field::Empty,
    );
    if !span.is_disabled() {
        tms_core::telemetry::adopt(&span, &trace_headers(&http));
    }
    let resp = execute(&state, req, pending).instrument(span).await;
    GraphQLResponse::from(resp).respond(&http)
}

/// The W3C trace-context headers of a request.
fn trace_headers(http: &HttpRequest) -> std::collections::BTreeMap<String, String> {
    ["traceparent", "tracestate"]
        .into_iter()
        .filter_map(|h| {
            let v = http.headers().get(h)?.to_str().ok()?;
            Some((h.to_string(), v.to_string()))
        })
        .collect()
}

async fn execute(
    state: &AppState,
    req: GraphQLBatchRequest,
    pending: PendingAuth,
) -> async_graphql::BatchResponse {
    match req.into_inner() {
        BatchRequest::Single(one) => {
            let resp = pipeline::execute(
                &state.schema,
                &state.services,
                &state.persisted,
                &state.plans,
                one,
                &pending,
            )
            .await;
            async_graphql::BatchResponse::Single(resp)
        }
        BatchRequest::Batch(many) if many.len() > MAX_BATCH => {
            let refused = async_graphql::Response::from_errors(vec![refusal("batch", MAX_BATCH)]);
            async_graphql::BatchResponse::Single(ensure_codes(refused))
        }
        BatchRequest::Batch(many) => {
            let mut out = Vec::with_capacity(many.len());
            // One after the other: a batch must not take more of the pool than a request.
            for one in many {
                out.push(
                    pipeline::execute(
                        &state.schema,
                        &state.services,
                        &state.persisted,
                        &state.plans,
                        one,
                        &pending,
                    )
                    .await,
                );
            }
            async_graphql::BatchResponse::Batch(out)
        }
    }
}

/// The peer address (never a forwarding header a client could forge) and user agent, for the
/// audit log.
pub fn request_meta(http: &HttpRequest) -> RequestMeta {
    RequestMeta {
        ip: http.peer_addr().map(|a| a.ip().to_string()),
        user_agent: http
            .headers()
            .get(actix_web::http::header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| ua.chars().take(512).collect()),
    }
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
