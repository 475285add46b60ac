//! A real `graphql-transport-ws` client over tokio-tungstenite, for subscription tests.

use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

pub type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// What the server sent for one subscription, or how the connection ended.
#[derive(Debug, Clone, PartialEq)]
pub enum WsEvent {
    Next(Value),
    Error(Value),
    Complete,
    Closed(Option<u16>, String),
}

pub struct GqlWs {
    socket: Socket,
}

/// Opens a socket with the graphql-transport-ws subprotocol.
pub async fn open(port: u16) -> Result<Socket> {
    let mut req = format!("ws://127.0.0.1:{port}/graphql").into_client_request()?;
    req.headers_mut()
        .insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (socket, resp) = tokio_tungstenite::connect_async_with_config(req, None, true).await?;
    let proto = resp
        .headers()
        .get("sec-websocket-protocol")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    if proto != "graphql-transport-ws" {
        bail!("server chose subprotocol `{proto}`");
    }
    Ok(socket)
}

impl GqlWs {
    /// Connects and completes `connection_init` with `{"Authorization": "Bearer <token>"}`.
    pub async fn connect(port: u16, token: &str) -> Result<Self> {
        let mut socket = open(port).await?;
        let init = json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
        socket.send(Message::Text(init.to_string().into())).await?;
        let mut ws = GqlWs { socket };
        match ws.recv_raw(Duration::from_secs(10)).await? {
            Ok(v) if v["type"] == "connection_ack" => Ok(ws),
            Ok(v) => bail!("expected connection_ack, got {v}"),
            Err((code, reason)) => bail!("closed during init: {code:?} {reason}"),
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

    /// The next protocol message as JSON, or the close frame's code and reason.
    pub async fn recv_raw(
        &mut self,
        timeout: Duration,
    ) -> Result<Result<Value, (Option<u16>, String)>> {
        loop {
            let msg = tokio::time::timeout(timeout, self.socket.next())
                .await
                .map_err(|_| anyhow!("no message within {timeout:?}"))?;
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
    pub async fn next(&mut self, timeout: Duration) -> Result<WsEvent> {
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
                _ => bail!("unexpected message {v}"),
            },
        })
    }

    /// Collects `runProgress` events until the subscription completes (or `max` events).
    pub async fn collect_progress(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<(Vec<Value>, bool)> {
        let mut events = Vec::new();
        while events.len() < max {
            match self.next(timeout).await? {
                WsEvent::Next(d) => events.push(d["runProgress"].clone()),
                WsEvent::Complete => return Ok((events, true)),
                other => bail!("unexpected {other:?} after {} events", events.len()),
            }
        }
        Ok((events, false))
    }

    /// Returns once the server has processed everything sent before on this socket: it answers
    /// a probe subscription for an unknown run with NOT_FOUND, then completes it.
    pub async fn barrier(&mut self) -> Result<()> {
        let probe = json!({"r": uuid::Uuid::new_v4().to_string()});
        self.subscribe("barrier", PROGRESS_QUERY, probe).await?;
        match self.next(Duration::from_secs(30)).await? {
            WsEvent::Error(e) if e[0]["extensions"]["code"] == "NOT_FOUND" => {}
            other => bail!("barrier: expected NOT_FOUND, got {other:?}"),
        }
        match self.next(Duration::from_secs(30)).await? {
            WsEvent::Complete => Ok(()),
            other => bail!("barrier: expected complete, got {other:?}"),
        }
    }

    pub async fn close(mut self) {
        let _ = self.socket.close(None).await;
    }
}

pub const PROGRESS_QUERY: &str = "subscription($r: ID!, $a: Int) { runProgress(runId: $r, afterSeq: $a) \
    { seq runId kind status step percent etaSeconds stepPercent message at } }";
