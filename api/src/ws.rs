//! GraphQL over WebSocket (`graphql-transport-ws`, and legacy `graphql-ws`) on `/graphql`.
//!
//! Written against actix-ws rather than the actor-based integration for two reasons: the
//! protocol's auth refusal must close with 4403 (the library's default is 1002), and outgoing
//! messages must apply backpressure: a client that stops reading is disconnected with 4008
//! instead of buffering without bound.

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use async_graphql::Data;
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use futures::{SinkExt, StreamExt};

use crate::context::RequestAuth;
use crate::http::AppState;

/// A client that cannot take a message within this long is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients must send `connection_init` within this long.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Server ping interval.
pub const PING_EVERY: Duration = Duration::from_secs(20);

pub const CLOSE_FORBIDDEN: u16 = 4403;

/// The W3C trace context a client sent in `connection_init` (`traceparent`, `tracestate`):
/// each subscription's span is its child.
#[derive(Clone, Debug, Default)]
pub struct WsTrace(pub std::collections::BTreeMap<String, String>);

impl WsTrace {
    fn from_init(payload: &serde_json::Value) -> Self {
        WsTrace(
            ["traceparent", "tracestate"]
                .into_iter()
                .filter_map(|k| Some((k.to_string(), payload.get(k)?.as_str()?.to_string())))
                .collect(),
        )
    }
}
pub const CLOSE_INIT_TIMEOUT: u16 = 4408;
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

pub async fn graphql_ws(
    state: web::Data<AppState>,
    req: HttpRequest,
    body: web::Payload,
) -> actix_web::Result<HttpResponse> {
    // An `Origin` that is not text cannot match anything: it is refused, not taken as absent.
    let origin = req
        .headers()
        .get("origin")
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = req.headers().get("host").and_then(|v| v.to_str().ok());
    if !crate::origin::upgrade_allowed(origin, host, &state.allowed_origins) {
        tracing::warn!(?origin, "refused a WebSocket upgrade from a foreign origin");
        return Ok(HttpResponse::Forbidden().body("origin not allowed"));
    }
    let protocol = req
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split(',')
                .find_map(|p| WebSocketProtocols::from_str(p.trim()).ok())
        })
        .ok_or_else(|| {
            actix_web::error::ErrorBadRequest("use the graphql-transport-ws subprotocol")
        })?;
    let (response, session, messages) =
        actix_ws::handle_with_protocols(&req, body, &["graphql-transport-ws", "graphql-ws"])?;
    let messages = messages
        .max_frame_size(MAX_MESSAGE_BYTES)
        .aggregate_continuations()
        .max_continuation_size(MAX_MESSAGE_BYTES);

    // Client frames → the protocol machine, through a small bounded channel.
    let (mut to_protocol, from_client) = futures::channel::mpsc::channel::<Vec<u8>>(16);
    let mut pong_session = session.clone();
    actix_web::rt::spawn(async move {
        let mut messages = messages;
        while let Some(Ok(msg)) = messages.next().await {
            match msg {
                AggregatedMessage::Text(t) => {
                    if to_protocol.send(t.as_bytes().to_vec()).await.is_err() {
                        break;
                    }
                }
                AggregatedMessage::Binary(b) => {
                    if to_protocol.send(b.to_vec()).await.is_err() {
                        break;
                    }
                }
                AggregatedMessage::Ping(p) => {
                    if pong_session.pong(&p).await.is_err() {
                        break;
                    }
                }
                AggregatedMessage::Pong(_) => {}
                AggregatedMessage::Close(_) => break,
            }
        }
    });

    let refused = Arc::new(AtomicBool::new(false));
    let refused_in_init = refused.clone();
    let initialised = Arc::new(AtomicBool::new(false));
    let initialised_in_init = initialised.clone();
    let services = state.services.clone();
    let protocol_machine = WebSocket::new(state.schema.clone(), from_client, protocol)
        .on_connection_init(move |payload: serde_json::Value| async move {
            let header = payload
                .get("Authorization")
                .or_else(|| payload.get("authorization"))
                .and_then(|v| v.as_str())
                .map(str::to_string);
            let auth = RequestAuth::from_header(&services.auth, header.as_deref()).await;
            if auth.principal.is_none() {
                refused_in_init.store(true, Ordering::SeqCst);
                let why = auth
                    .token_error
                    .unwrap_or("connection_init must carry a valid Authorization bearer token");
                return Err(async_graphql::Error::new(why));
            }
            initialised_in_init.store(true, Ordering::SeqCst);
            let mut data = Data::default();
            data.insert(WsTrace::from_init(&payload));
            data.insert(crate::graphql::loaders::for_connection(&services, &auth));
            data.insert(auth);
            Ok(data)
        });

    // The protocol's own deadlines: `connection_init` within INIT_TIMEOUT (else 4408), and a
    // server ping every PING_EVERY so dead peers are noticed even on quiet subscriptions.
    let mut watchdog = session.clone();
    let refused_at_deadline = refused.clone();
    actix_web::rt::spawn(async move {
        tokio::time::sleep(INIT_TIMEOUT).await;
        if !initialised.load(Ordering::SeqCst) && !refused_at_deadline.load(Ordering::SeqCst) {
            let reason = CloseReason {
                code: CloseCode::Other(CLOSE_INIT_TIMEOUT),
                description: Some("connection initialisation timeout".into()),
            };
            let _ = watchdog.clone().close(Some(reason)).await;
            return;
        }
        loop {
            tokio::time::sleep(PING_EVERY).await;
            if watchdog.ping(b"").await.is_err() {
                return;
            }
        }
    });

    let mut session = session;
    actix_web::rt::spawn(async move {
        let mut protocol_machine = std::pin::pin!(protocol_machine);
        while let Some(out) = protocol_machine.next().await {
            match out {
                WsMessage::Text(text) => {
                    match tokio::time::timeout(SEND_TIMEOUT, session.text(text)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_closed)) => return,
                        Err(_slow) => {
                            tracing::warn!("dropping a WebSocket client that stopped reading");
                            let reason = CloseReason {
                                code: CloseCode::Other(CLOSE_SLOW_CONSUMER),
                                description: Some(
                                    "slow consumer: resubscribe with afterSeq".into(),
                                ),
                            };
                            let _ = session.close(Some(reason)).await;
                            return;
                        }
                    }
                }
                WsMessage::Close(code, msg) => {
                    let code = if code == 1002 && refused.load(Ordering::SeqCst) {
                        CLOSE_FORBIDDEN
                    } else {
                        code
                    };
                    let reason = CloseReason {
                        code: CloseCode::from(code),
                        description: Some(msg),
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
            }
        }
        let _ = session.close(None).await;
    });
    Ok(response)
}
