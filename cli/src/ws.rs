//! The one `graphql-transport-ws` client (tokio-tungstenite), used by `tms watch` and by the
//! end-to-end tests.

use std::time::Duration;

use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

pub const SUBPROTOCOL: &str = "graphql-transport-ws";

#[derive(Debug, thiserror::Error)]
pub enum WsError {
    #[error("websocket: {0}")]
    Transport(#[from] tungstenite::Error),
    #[error("server chose subprotocol `{0}`, not `{SUBPROTOCOL}`")]
    Subprotocol(String),
    #[error("no message within {0:?}")]
    Timeout(Duration),
    #[error("undecodable message: {0}")]
    Decode(#[from] serde_json::Error),
    /// The server closed the connection while it was being set up (4403: token refused).
    #[error("closed during connection_init: {code:?} {reason}")]
    Closed { code: Option<u16>, reason: String },
    #[error("unexpected message {0}")]
    Unexpected(Value),
}

pub type Result<T, E = WsError> = std::result::Result<T, E>;

/// What the server sent for one subscription, or how the connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    /// A `next` message's `data`.
    Next(Value),
    /// The GraphQL errors of a `next` message, or an `error` message's payload.
    Error(Value),
    Complete,
    Closed(Option<u16>, String),
}

/// Opens a socket to `url` (`ws://…/graphql`) with the graphql-transport-ws subprotocol, and
/// refuses a server that picked another one.
pub async fn open(url: &str) -> Result<Socket> {
    let mut req = url.into_client_request()?;
    let proto = tungstenite::http::HeaderValue::from_static(SUBPROTOCOL);
    req.headers_mut().insert("Sec-WebSocket-Protocol", proto);
    // TCP_NODELAY: small frames must not wait 40 ms for Nagle and delayed ACKs.
    let (socket, resp) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    let chosen = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    if chosen != SUBPROTOCOL {
        return Err(WsError::Subprotocol(chosen.to_string()));
    }
    Ok(socket)
}

pub struct GqlWs {
    socket: Socket,
}

impl GqlWs {
    /// Opens a socket and completes `connection_init` with `{"Authorization": "Bearer <token>"}`.
    pub async fn connect(url: &str, token: &str, timeout: Duration) -> Result<Self> {
        let mut ws = GqlWs::from_socket(open(url).await?);
        let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
        ws.send(init).await?;
        match ws.recv_raw(timeout).await? {
            Ok(v) if v["type"] == "connection_ack" => Ok(ws),
            Ok(v) => Err(WsError::Unexpected(v)),
            Err((code, reason)) => Err(WsError::Closed { code, reason }),
        }
    }

    pub fn from_socket(socket: Socket) -> Self {
        GqlWs { socket }
    }

    pub async fn send(&mut self, v: Value) -> Result<()> {
        self.socket
            .send(Message::Text(v.to_string().into()))
            .await?;
        Ok(())
    }

    pub async fn subscribe(&mut self, id: &str, query: &str, variables: Value) -> Result<()> {
        self.send(json!({"id": id, "type": "subscribe", "payload": {"query": query, "variables": variables}}))
            .await
    }

    /// The next protocol message as JSON (pings are answered here), or the close frame's code
    /// and reason. `None` waits as long as it takes.
    pub async fn recv_raw(
        &mut self,
        timeout: impl Into<Option<Duration>>,
    ) -> Result<Result<Value, (Option<u16>, String)>> {
        let timeout = timeout.into();
        loop {
            let msg = match timeout {
                Some(t) => tokio::time::timeout(t, self.socket.next())
                    .await
                    .map_err(|_| WsError::Timeout(t))?,
                None => self.socket.next().await,
            };
            match msg {
                None => return Ok(Err((None, "stream ended".into()))),
                Some(Err(e)) => return Ok(Err((None, e.to_string()))),
                Some(Ok(Message::Text(t))) => {
                    let v: Value = serde_json::from_str(&t)?;
                    if v["type"] == "ping" {
                        self.send(json!({"type": "pong"})).await?;
                        continue;
                    }
                    return Ok(Ok(v));
                }
                Some(Ok(Message::Close(frame))) => {
                    return Ok(Err(match frame {
                        Some(f) => (Some(u16::from(f.code)), f.reason.to_string()),
                        None => (None, String::new()),
                    }));
                }
                Some(Ok(_)) => continue,
            }
        }
    }

    /// The next event of any subscription on this socket.
    pub async fn next(&mut self, timeout: impl Into<Option<Duration>>) -> Result<WsEvent> {
        Ok(match self.recv_raw(timeout).await? {
            Err((code, reason)) => WsEvent::Closed(code, reason),
            Ok(v) => match v["type"].as_str() {
                Some("next") => {
                    if v["payload"]["errors"].is_array() {
                        WsEvent::Error(v["payload"]["errors"].clone())
                    } else {
                        WsEvent::Next(v["payload"]["data"].clone())
                    }
                }
                Some("error") => WsEvent::Error(v["payload"].clone()),
                Some("complete") => WsEvent::Complete,
                _ => return Err(WsError::Unexpected(v)),
            },
        })
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}
