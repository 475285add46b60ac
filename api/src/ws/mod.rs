//! GraphQL over WebSocket (`graphql-transport-ws`, and legacy `graphql-ws`) on `/graphql`.
//!
//! The connection leaves actix's HTTP machinery at the upgrade (`upgrade.rs`) and runs on the
//! bare socket (`socket.rs`). The protocol's auth refusal closes with 4403 (the library's default
//! is 1002), and outgoing messages apply backpressure: a client that stops reading is
//! disconnected with 4008 instead of buffering without bound.
//!
//! A connection lives no longer than the session that opened it: it is closed with 4401 when
//! the access token of its `connection_init` expires, and when that session is logged out or
//! its user disabled (a revocation notice from any api instance, via Redis).

pub mod socket;
pub mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use futures::{FutureExt, SinkExt, StreamExt};
use tokio_tungstenite::tungstenite::Message;

use tms_core::auth::sessions::SessionRevoked;

use crate::context::RequestAuth;
use crate::http::AppState;
use socket::Socket;

/// A client that cannot take a message within this long is dropped.
pub const SEND_TIMEOUT: Duration = Duration::from_secs(5);
/// Clients must send `connection_init` within this long.
pub const INIT_TIMEOUT: Duration = Duration::from_secs(10);
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;

/// Messages the protocol machine has ready that go out together, at most.
const MAX_BATCH: usize = 32;

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
pub const CLOSE_GOING_AWAY: u16 = 1001;
pub const CLOSE_SLOW_CONSUMER: u16 = 4008;

/// Runs an accepted connection in its own tasks: client frames into async-graphql's protocol
/// machine, its answers out, the `connection_init` deadline and pings, and the session watch.
pub fn run(
    state: AppState,
    protocol: WebSocketProtocols,
    socket: Socket,
    mut incoming: socket::Incoming,
) {
    let connection_done = tokio_util::sync::CancellationToken::new();
    let _open = state.ws_connections.token();

    // Client frames → the protocol machine, through a small bounded channel. Pings are answered
    // by tungstenite itself; a frame over MAX_MESSAGE_BYTES ends the connection.
    let (mut to_protocol, from_client) = futures::channel::mpsc::channel::<Vec<u8>>(16);
    let reader_done = connection_done.clone();
    actix_web::rt::spawn(async move {
        loop {
            let msg = tokio::select! {
                msg = incoming.next() => msg,
                _ = reader_done.cancelled() => break,
            };
            let bytes = match msg {
                Some(Ok(Message::Text(t))) => t.as_bytes().to_vec(),
                Some(Ok(Message::Binary(b))) => b.to_vec(),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => continue,
                Some(Ok(Message::Close(_)) | Err(_)) | None => break,
            };
            if to_protocol.send(bytes).await.is_err() {
                break;
            }
        }
    });

    // Subscribed before `connection_init` so that no revocation in between is missed.
    let revocations = state.revocations.subscribe();
    let (watch_tx, watch_rx) = tokio::sync::oneshot::channel::<Watch>();
    let watch_tx = Arc::new(std::sync::Mutex::new(Some(watch_tx)));

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
    let watchdog = socket.clone();
    let refused_at_deadline = refused.clone();
    let watchdog_done = connection_done.clone();
    actix_web::rt::spawn(async move {
        let beat = async {
            tokio::time::sleep(INIT_TIMEOUT).await;
            if !initialised.load(Ordering::SeqCst) && !refused_at_deadline.load(Ordering::SeqCst) {
                let why = "connection initialisation timeout".to_string();
                watchdog.close(Some((CLOSE_INIT_TIMEOUT, why))).await;
                return;
            }
            loop {
                tokio::time::sleep(PING_EVERY).await;
                if watchdog.ping().await.is_err() {
                    return;
                }
            }
        };
        tokio::select! {
            _ = beat => {}
            _ = watchdog_done.cancelled() => {}
        }
    });

    actix_web::rt::spawn(watch_session(
        socket.clone(),
        watch_rx,
        revocations,
        connection_done.clone(),
    ));

    let done = connection_done;
    let shutting_down = state.shutting_down.clone();
    actix_web::rt::spawn(async move {
        let _open = _open;
        let _done = done.drop_guard();
        let mut protocol_machine = std::pin::pin!(protocol_machine);
        // What the protocol machine had ready after a batch of texts, not yet handled.
        let mut held: Option<Option<WsMessage>> = None;
        loop {
            let out = match held.take() {
                Some(out) => out,
                None => tokio::select! {
                    out = protocol_machine.next() => out,
                    // The api is stopping: "going away" (1001) tells clients to reconnect (to
                    // another instance) and resume with `afterSeq`.
                    _ = shutting_down.cancelled() => {
                        let why = "server shutting down; reconnect and resume with afterSeq";
                        socket.close(Some((CLOSE_GOING_AWAY, why.into()))).await;
                        return;
                    }
                },
            };
            let Some(out) = out else { break };
            match out {
                WsMessage::Text(text) => {
                    // Whatever else is ready (a burst of events) goes out in the same writes.
                    let mut batch = vec![text];
                    while batch.len() < MAX_BATCH {
                        match protocol_machine.next().now_or_never() {
                            Some(Some(WsMessage::Text(t))) => batch.push(t),
                            Some(other) => {
                                held = Some(other);
                                break;
                            }
                            None => break,
                        }
                    }
                    match tokio::time::timeout(SEND_TIMEOUT, socket.texts(batch)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(_closed)) => return,
                        Err(_slow) => {
                            tracing::warn!("dropping a WebSocket client that stopped reading");
                            let why = "slow consumer: resubscribe with afterSeq".to_string();
                            // Bounded too: the socket that stopped reading may not take even this.
                            let close = socket.close(Some((CLOSE_SLOW_CONSUMER, why)));
                            let _ = tokio::time::timeout(SEND_TIMEOUT, close).await;
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
                    socket.close(Some((code, msg))).await;
                    return;
                }
            }
        }
        socket.close(None).await;
    });
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
    socket: Socket,
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
    socket.close(Some((CLOSE_SESSION_ENDED, why.into()))).await;
}
