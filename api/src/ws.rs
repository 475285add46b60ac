//! GraphQL over WebSocket (`graphql-transport-ws`, and legacy `graphql-ws`) on `/graphql`.
//!
//! Written against actix-ws rather than the actor-based integration for two reasons: the
//! protocol's auth refusal must close with 4403 (the library's default is 1002), and outgoing
//! messages must apply backpressure: a client that stops reading is disconnected with 4008
//! instead of buffering without bound.
//!
//! A connection lives no longer than the session that opened it: it is closed with 4401 when
//! the access token of its `connection_init` expires, and when that session is logged out or
//! its user disabled (a revocation notice from any api instance, via Redis).

use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use actix_web::{HttpRequest, HttpResponse, web};
use actix_ws::{AggregatedMessage, CloseCode, CloseReason};
use async_graphql::Data;
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use futures::{SinkExt, StreamExt};

use tms_core::auth::sessions::SessionRevoked;

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
/// The connection's session ended (token expired, logout, user disabled): sign in again.
pub const CLOSE_SESSION_ENDED: u16 = 4401;

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

    // Subscribed before `connection_init` so that no revocation in between is missed.
    let revocations = state.revocations.subscribe();
    let (watch_tx, watch_rx) = tokio::sync::oneshot::channel::<Watch>();
    let watch_tx = Arc::new(std::sync::Mutex::new(Some(watch_tx)));
    let connection_done = tokio_util::sync::CancellationToken::new();

    let refused = Arc::new(AtomicBool::new(false));
    let refused_in_init = refused.clone();
    let initialised = Arc::new(AtomicBool::new(false));
    let initialised_in_init = initialised.clone();
    let services = state.services.clone();
    let protocol_machine = WebSocket::new(state.ws_schema.clone(), from_client, protocol)
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
            if let (Some(p), Some(token)) = (
                auth.principal.as_ref(),
                header.as_deref().and_then(|h| h.strip_prefix("Bearer ")),
            ) {
                let session = services.auth.token_session(token.trim());
                let watch = Watch {
                    user_id: p.user_id,
                    // An API token's connection ends with that token's revocation.
                    sid: session.and_then(|s| s.sid).or(p.api_token_id),
                    expires_at: session.map(|s| s.expires_at),
                };
                if let Some(tx) = watch_tx.lock().ok().and_then(|mut t| t.take()) {
                    let _ = tx.send(watch);
                }
            }
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

    actix_web::rt::spawn(watch_session(
        session.clone(),
        watch_rx,
        revocations,
        connection_done.clone(),
    ));

    let mut session = session;
    let done = connection_done;
    let shutting_down = state.shutting_down.clone();
    actix_web::rt::spawn(async move {
        let _done = done.drop_guard();
        let mut protocol_machine = std::pin::pin!(protocol_machine);
        loop {
            let out = tokio::select! {
                out = protocol_machine.next() => out,
                // The api is stopping: "going away" (1001) tells clients to reconnect (to another
                // instance) and resume with `afterSeq`.
                _ = shutting_down.cancelled() => {
                    let reason = CloseReason {
                        code: CloseCode::Away,
                        description: Some("server shutting down; reconnect and resume with afterSeq".into()),
                    };
                    let _ = session.close(Some(reason)).await;
                    return;
                }
            };
            let Some(out) = out else { break };
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

/// What a connection keeps of the token it was opened with.
struct Watch {
    user_id: uuid::Uuid,
    /// The session (refresh-token family) of the token, when it has one.
    sid: Option<uuid::Uuid>,
    /// `exp` of the token; `None` for tokens that are not our JWTs (API tokens).
    expires_at: Option<i64>,
}

/// Closes the connection with [`CLOSE_SESSION_ENDED`] when its token expires or its session is
/// revoked; ends with the connection.
async fn watch_session(
    session: actix_ws::Session,
    watch: tokio::sync::oneshot::Receiver<Watch>,
    mut revocations: tokio::sync::broadcast::Receiver<Arc<SessionRevoked>>,
    done: tokio_util::sync::CancellationToken,
) {
    let watch = tokio::select! {
        _ = done.cancelled() => return,
        w = watch => match w {
            Ok(w) => w,
            Err(_) => return,
        },
    };
    let until_expiry = watch.expires_at.map(|exp| {
        let now = chrono::Utc::now().timestamp_millis();
        Duration::from_millis((exp * 1000 - now).max(0) as u64)
    });
    let expiry = async {
        match until_expiry {
            Some(d) => tokio::time::sleep(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expiry);
    let why = loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = &mut expiry => break "session ended: access token expired",
            notice = revocations.recv() => match notice {
                Ok(n) if n.ends(watch.user_id, watch.sid) => break "session ended: signed out or account disabled",
                Ok(_) => {}
                // Missed notices: the token's expiry still bounds the connection.
                Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "revocation notices missed by a socket watcher");
                }
                Err(tokio::sync::broadcast::error::RecvError::Closed) => {
                    (&mut expiry).await;
                    break "session ended: access token expired";
                }
            },
        }
    };
    tracing::info!(user_id = %watch.user_id, reason = why, "closing a WebSocket whose session ended");
    let reason = CloseReason {
        code: CloseCode::Other(CLOSE_SESSION_ENDED),
        description: Some(why.into()),
    };
    let _ = session.close(Some(reason)).await;
}
