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

pub mod guard;
pub mod shared;
pub mod socket;
pub mod upgrade;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use async_graphql::Data;
use async_graphql::http::{WebSocket, WebSocketProtocols, WsMessage};
use futures::{FutureExt, StreamExt};

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
    incoming: socket::Incoming,
) {
    let connection_done = tokio_util::sync::CancellationToken::new();
    let _open = state.ws_connections.token();

    // Client frames → the protocol machine, through a small bounded channel (see `guard`).
    let (to_protocol, from_client) = futures::channel::mpsc::channel::<Vec<u8>>(16);

    // Subscribed before `connection_init` so that no revocation in between is missed.
    let revocations = state.revocations.subscribe();
    let (watch_tx, watch_rx) = tokio::sync::oneshot::channel::<guard::Watch>();
    let watch_tx = Arc::new(std::sync::Mutex::new(Some(watch_tx)));

    let refused = Arc::new(AtomicBool::new(false));
    let refused_in_init = refused.clone();
    let initialised = Arc::new(AtomicBool::new(false));
    let initialised_in_init = initialised.clone();
    let services = state.services.clone();
    let executor =
        shared::SharingExecutor::new(state.ws_schema.clone(), state.shared_subscriptions.clone());
    let protocol_machine = WebSocket::new(executor, from_client, protocol).on_connection_init(
        move |payload: serde_json::Value| async move {
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
                let watch = guard::Watch {
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
        },
    );

    // The protocol's own deadlines: `connection_init` within INIT_TIMEOUT (else 4408), and a
    // server ping every PING_EVERY so dead peers are noticed even on quiet subscriptions; and the
    // session's end.
    let init = guard::Init {
        initialised,
        refused: refused.clone(),
        watch: watch_rx,
    };
    actix_web::rt::spawn(guard::guard(
        socket.clone(),
        incoming,
        to_protocol,
        init,
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
                            // Bounded too (see `Socket::close`): the socket that stopped reading
                            // may not take even this.
                            socket.close(Some((CLOSE_SLOW_CONSUMER, why))).await;
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
