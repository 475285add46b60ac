//! Subscription helpers for the tests on top of the one graphql-transport-ws client
//! (`tms_cli::ws`, the same code `tms watch` runs): loopback ports instead of URLs, and the
//! progress-specific waits the tests share.

use std::ops::{Deref, DerefMut};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::json;

pub use tms_cli::ws::{Socket, WsEvent};

fn url(port: u16) -> String {
    format!("ws://127.0.0.1:{port}/graphql")
}

/// Opens a socket with the graphql-transport-ws subprotocol to the api on `port`.
pub async fn open(port: u16) -> Result<Socket> {
    Ok(tms_cli::ws::open(&url(port)).await?)
}

/// The shared client, connected to a loopback api by port.
pub struct GqlWs(tms_cli::ws::GqlWs);

impl Deref for GqlWs {
    type Target = tms_cli::ws::GqlWs;
    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

impl DerefMut for GqlWs {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.0
    }
}

impl GqlWs {
    /// Connects and completes `connection_init` with `{"Authorization": "Bearer <token>"}`.
    pub async fn connect(port: u16, token: &str) -> Result<Self> {
        let ws = tms_cli::ws::GqlWs::connect(&url(port), token, Duration::from_secs(10)).await?;
        Ok(GqlWs(ws))
    }

    pub fn from_socket(socket: Socket) -> Self {
        GqlWs(tms_cli::ws::GqlWs::from_socket(socket))
    }

    pub async fn close(self) {
        self.0.close().await
    }

    /// Collects `runProgress` events until the subscription completes (or `max` events).
    pub async fn collect_progress(
        &mut self,
        max: usize,
        timeout: Duration,
    ) -> Result<(Vec<serde_json::Value>, bool)> {
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

    /// Subscribes and returns once the server has registered the subscription (a [`barrier`]),
    /// so that nothing published afterwards can be missed.
    ///
    /// [`barrier`]: Self::barrier
    pub async fn subscribe_registered(
        &mut self,
        id: &str,
        query: &str,
        variables: serde_json::Value,
    ) -> Result<()> {
        self.subscribe(id, query, variables).await?;
        self.barrier().await
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
}

pub const PROGRESS_QUERY: &str = "subscription($r: ID!, $a: Int) { runProgress(runId: $r, afterSeq: $a) \
    { seq runId kind status step percent etaSeconds stepPercent message at } }";
