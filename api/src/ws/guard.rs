//! One task per connection for everything but the outgoing messages: client frames into the
//! protocol machine, the `connection_init` deadline (4408), server pings, and the session watch
//! (4401 when the connection's token expires or its session is revoked).
//!
//! These were three tasks; as one they cost a subscriber one task's memory and wake-ups.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use futures::{SinkExt, StreamExt};
use tokio::sync::broadcast::Receiver;
use tokio::sync::broadcast::error::RecvError;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

use tms_core::auth::sessions::SessionRevoked;

use super::socket::{Incoming, Socket};
use super::{CLOSE_INIT_TIMEOUT, CLOSE_SESSION_ENDED, INIT_TIMEOUT, PING_EVERY};

/// What a connection keeps of the token it was opened with.
pub struct Watch {
    pub user_id: uuid::Uuid,
    /// The session (refresh-token family) of the token, when it has one.
    pub sid: Option<uuid::Uuid>,
    /// `exp` of the token; `None` for tokens that are not our JWTs (API tokens).
    pub expires_at: Option<i64>,
}

/// What the guard learns from `connection_init`, set by the protocol machine's callback.
pub struct Init {
    pub initialised: Arc<AtomicBool>,
    pub refused: Arc<AtomicBool>,
    pub watch: tokio::sync::oneshot::Receiver<Watch>,
}

/// Runs until `done` (the connection's end) or until it closes the connection itself.
pub async fn guard(
    socket: Socket,
    incoming: Incoming,
    to_protocol: futures::channel::mpsc::Sender<Vec<u8>>,
    mut init: Init,
    mut revocations: Receiver<Arc<SessionRevoked>>,
    done: CancellationToken,
) {
    // Client frames until the client's side ends; then the protocol machine's input ends too.
    let mut reading = Some((incoming, to_protocol));
    // First the `connection_init` deadline, then each ping.
    let beat = sleep_until(Instant::now() + INIT_TIMEOUT);
    let mut past_init = false;
    tokio::pin!(beat);
    let mut watch: Option<Watch> = None;
    let mut awaiting_watch = true;
    // Reset to the token's expiry when the watch arrives; polled only if the token has one.
    let expiry = sleep_until(Instant::now());
    tokio::pin!(expiry);
    let mut revocations_open = true;
    let why = loop {
        tokio::select! {
            _ = done.cancelled() => return,
            msg = next_frame(&mut reading), if reading.is_some() => match msg {
                Some(bytes) => {
                    let (_, to_protocol) = reading.as_mut().expect("reading");
                    if to_protocol.send(bytes).await.is_err() {
                        reading = None;
                    }
                }
                None => reading = None,
            },
            _ = &mut beat => {
                if !past_init {
                    past_init = true;
                    let settled = init.initialised.load(Ordering::SeqCst)
                        || init.refused.load(Ordering::SeqCst);
                    if !settled {
                        let why = "connection initialisation timeout".to_string();
                        socket.close(Some((CLOSE_INIT_TIMEOUT, why))).await;
                        return;
                    }
                } else if socket.ping().await.is_err() {
                    return;
                }
                beat.as_mut().reset(Instant::now() + PING_EVERY);
            }
            w = &mut init.watch, if awaiting_watch => {
                awaiting_watch = false;
                if let Ok(w) = w {
                    if let Some(exp) = w.expires_at {
                        let now = chrono::Utc::now().timestamp_millis();
                        let left = Duration::from_millis((exp * 1000 - now).max(0) as u64);
                        expiry.as_mut().reset(Instant::now() + left);
                    }
                    watch = Some(w);
                }
            }
            _ = &mut expiry, if watch.as_ref().is_some_and(|w| w.expires_at.is_some()) => break "session ended: access token expired",
            notice = revocations.recv(), if revocations_open && watch.is_some() => match notice {
                Ok(n) if watch.as_ref().is_some_and(|w| n.ends(w.user_id, w.sid)) => {
                    break "session ended: signed out or account disabled";
                }
                Ok(_) => {}
                // Missed notices: the token's expiry still bounds the connection.
                Err(RecvError::Lagged(n)) => {
                    tracing::warn!(missed = n, "revocation notices missed by a socket watcher");
                }
                Err(RecvError::Closed) => revocations_open = false,
            },
        }
    };
    let user_id = watch.map(|w| w.user_id).unwrap_or_default();
    tracing::info!(%user_id, reason = why, "closing a WebSocket whose session ended");
    socket.close(Some((CLOSE_SESSION_ENDED, why.into()))).await;
}

/// The next text or binary frame's bytes; `None` when the client's side ends (a close frame, an
/// error such as a frame over `MAX_MESSAGE_BYTES`, or the end of the stream). Pings are answered
/// by tungstenite itself.
async fn next_frame(
    reading: &mut Option<(Incoming, futures::channel::mpsc::Sender<Vec<u8>>)>,
) -> Option<Vec<u8>> {
    let (incoming, _) = reading.as_mut()?;
    loop {
        match incoming.next().await {
            Some(Ok(Message::Text(t))) => return Some(t.as_bytes().to_vec()),
            Some(Ok(Message::Binary(b))) => return Some(b.to_vec()),
            Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
            Some(Ok(Message::Close(_)) | Err(_)) | None => return None,
        }
    }
}
