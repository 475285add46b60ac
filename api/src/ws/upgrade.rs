//! The WebSocket upgrade, taken from actix-http's HTTP/1 dispatcher before any route: checks
//! the path, `Origin` and subprotocol, answers the handshake, then hands the bare TCP stream to
//! [`super::run`]. Requests that are not WebSocket upgrades never come here.

use std::str::FromStr;

use actix_codec::Framed;
use actix_http::body::BodySize;
use actix_http::header::{self, HeaderValue};
use actix_http::{Request, Response, StatusCode, h1, ws};
use actix_web::rt::net::TcpStream;
use actix_web::web::Bytes;
use async_graphql::http::WebSocketProtocols;
use futures::SinkExt;

use crate::http::AppState;

/// The only path that serves WebSockets.
pub const PATH: &str = "/graphql";

/// The upgrade handler actix-http calls: [`handle`], whose only failures are a client gone
/// mid-handshake. That is no server error, so it is logged at debug (actix-http would log an
/// upgrade handler's error at error level).
pub async fn serve(
    state: AppState,
    req: Request,
    framed: Framed<TcpStream, h1::Codec>,
) -> Result<(), actix_web::Error> {
    if let Err(e) = handle(state, req, framed).await {
        tracing::debug!(error = %e, "WebSocket handshake not completed");
    }
    Ok(())
}

/// Answers one upgrade request on `framed`; a WebSocket it accepts runs on in its own tasks.
async fn handle(
    state: AppState,
    req: Request,
    mut framed: Framed<TcpStream, h1::Codec>,
) -> std::io::Result<()> {
    let started = std::time::Instant::now();
    // Counted in `tms_http_requests_total` like the routes' requests (the routes' middleware
    // never sees an upgrade).
    let observe = |status: StatusCode| {
        let route = tms_core::metrics::http::route_label(Some(req.path()));
        let method = tms_core::metrics::http::method_label(req.method().as_str());
        let seconds = started.elapsed().as_secs_f64();
        tms_core::metrics::http::observe_request(route, method, status.as_u16(), seconds);
    };
    let protocol = match check(&state, &req) {
        Ok(p) => p,
        Err((status, why)) => {
            observe(status);
            return refuse(&mut framed, status, why).await;
        }
    };
    let mut res = match ws::handshake(req.head()) {
        Ok(res) => res,
        Err(e) => {
            let res: Response<_> = e.into();
            observe(res.status());
            return refuse(&mut framed, res.status(), "not a valid WebSocket handshake").await;
        }
    };
    let name = match protocol {
        WebSocketProtocols::GraphQLWS => "graphql-transport-ws",
        WebSocketProtocols::SubscriptionsTransportWS => "graphql-ws",
    };
    res.insert_header((
        header::SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static(name),
    ));
    framed
        .send((res.finish().drop_body(), BodySize::None).into())
        .await?;
    observe(StatusCode::SWITCHING_PROTOCOLS);
    let parts = framed.into_parts();
    // The dispatcher's buffers go with the framing; only bytes a client sent past the request
    // (its first frame, if it did not wait for the answer) are kept.
    let read = parts.read_buf.to_vec();
    let (socket, incoming) = super::socket::accept(parts.io, read).await;
    super::run(state, protocol, socket, incoming);
    Ok(())
}

/// The path, the browser `Origin`, and a GraphQL subprotocol: the reason an upgrade is refused.
fn check(
    state: &AppState,
    req: &Request,
) -> Result<WebSocketProtocols, (StatusCode, &'static str)> {
    if req.path() != PATH {
        return Err((StatusCode::NOT_FOUND, "WebSockets are served on /graphql"));
    }
    // An `Origin` that is not text cannot match anything: it is refused, not taken as absent.
    let headers = &req.head().headers;
    let origin = headers.get("origin").map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = headers.get("host").and_then(|v| v.to_str().ok());
    if !crate::origin::upgrade_allowed(origin, host, &state.allowed_origins) {
        tracing::warn!(?origin, "refused a WebSocket upgrade from a foreign origin");
        return Err((StatusCode::FORBIDDEN, "origin not allowed"));
    }
    headers
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        })
        .ok_or((
            StatusCode::BAD_REQUEST,
            "use the graphql-transport-ws subprotocol",
        ))
}

/// Answers `status` with `why` as text and ends the connection.
async fn refuse(
    framed: &mut Framed<TcpStream, h1::Codec>,
    status: StatusCode,
    why: &'static str,
) -> std::io::Result<()> {
    let res = Response::build(status)
        .insert_header((header::CONTENT_TYPE, "text/plain; charset=utf-8"))
        .force_close()
        .finish()
        .drop_body();
    framed
        .send((res, BodySize::Sized(why.len() as u64)).into())
        .await?;
    framed
        .send(h1::Message::Chunk(Some(Bytes::from_static(why.as_bytes()))))
        .await?;
    framed.send(h1::Message::Chunk(None)).await?;
    Ok(())
}
