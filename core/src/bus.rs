//! Redis connections and the run-event bus: events are persisted first, then published here.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::error::{Error, Result};
use crate::runs::RunEvent;

/// Channel every run event is published on; api instances subscribe once and fan out.
pub const EVENTS_CHANNEL: &str = "tms:run-events";

/// Channel carrying run ids whose cancellation was requested.
pub const CANCEL_CHANNEL: &str = "tms:run-cancel";

/// A Redis connection that is established lazily and re-established after failures, so a
/// process can start and keep serving while Redis is down.
pub fn lazy_connection(url: &str) -> Result<ConnectionManager> {
    let client = redis::Client::open(url).map_err(|e| Error::field("REDIS_URL", e.to_string()))?;
    let config = ConnectionManagerConfig::new()
        .set_connection_timeout(Some(Duration::from_secs(2)))
        .set_response_timeout(Some(Duration::from_secs(5)))
        .set_number_of_retries(1)
        .set_max_delay(Duration::from_secs(1));
    ConnectionManager::new_lazy_with_config(client, config).map_err(Error::from)
}

#[derive(Clone)]
pub struct EventBus {
    conn: ConnectionManager,
}

impl EventBus {
    pub fn new(conn: ConnectionManager) -> Self {
        Self { conn }
    }

    /// Publishes persisted events. A failure is logged and swallowed: Postgres holds the events,
    /// and subscribers catch up from there.
    pub async fn publish(&self, events: &[RunEvent]) {
        crate::metrics::runs::count_published(events);
        for ev in events {
            let payload = match serde_json::to_string(ev) {
                Ok(p) => p,
                Err(e) => {
                    tracing::error!(error = %e, "event not serialisable");
                    continue;
                }
            };
            let mut conn = self.conn.clone();
            if let Err(e) = conn.publish::<_, _, ()>(EVENTS_CHANNEL, payload).await {
                tracing::warn!(run_id = %ev.run_id, seq = ev.seq, error = %e, "event publish failed; it stays in Postgres");
            }
        }
    }

    /// Tells the worker driving `run_id` to stop it. Lost messages are covered by the worker's
    /// lease renewal, which also checks for cancellation requests.
    pub async fn request_cancel(&self, run_id: uuid::Uuid) {
        let mut conn = self.conn.clone();
        if let Err(e) = conn
            .publish::<_, _, ()>(CANCEL_CHANNEL, run_id.to_string())
            .await
        {
            tracing::warn!(%run_id, error = %e, "cancel request not published; the worker's lease check will see it");
        }
    }

    /// Publishes one message on `channel`; the caller decides what a failure means.
    pub async fn publish_raw(&self, channel: &str, payload: String) -> Result<()> {
        let mut conn = self.conn.clone();
        conn.publish::<_, _, ()>(channel, payload).await?;
        Ok(())
    }

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

/// The process's single Redis subscription to run events, fanned out in memory to every
/// subscriber (WebSocket clients never get a Redis connection of their own). The channel is
/// bounded: a subscriber that falls `capacity` events behind is told so and dropped.
#[derive(Clone)]
pub struct EventHub {
    tx: broadcast::Sender<Arc<RunEvent>>,
}

impl EventHub {
    /// Starts the subscription (reconnecting on failure) until `stop` fires.
    pub fn start(redis_url: &str, capacity: usize, stop: CancellationToken) -> Result<Self> {
        let (tx, _) = broadcast::channel(capacity);
        let hub = Self { tx: tx.clone() };
        subscribe_forever(redis_url, EVENTS_CHANNEL, stop, move |payload| {
            match serde_json::from_str::<RunEvent>(&payload) {
                // No receivers is fine: nobody is watching right now.
                Ok(ev) => {
                    let _ = tx.send(Arc::new(ev));
                }
                Err(e) => tracing::warn!(error = %e, "undecodable run event on the bus"),
            }
            true
        })?;
        Ok(hub)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<RunEvent>> {
        self.tx.subscribe()
    }

    /// Live in-process subscribers.
    pub fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }
}

/// Keeps a subscription to `channel` until `stop` fires or `on_message` returns `false`,
/// reconnecting (every 500 ms) whenever Redis goes away, and hands each payload to `on_message`.
/// Messages published while disconnected are not seen: callers must not depend on them alone.
pub fn subscribe_forever<F>(
    redis_url: &str,
    channel: impl Into<String>,
    stop: CancellationToken,
    mut on_message: F,
) -> Result<()>
where
    F: FnMut(String) -> bool + Send + 'static,
{
    let client =
        redis::Client::open(redis_url).map_err(|e| Error::field("REDIS_URL", e.to_string()))?;
    let channel: String = channel.into();
    tokio::spawn(async move {
        loop {
            let session = async {
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(&channel).await?;
                tracing::debug!(%channel, "subscribed");
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if !on_message(payload) {
                        return Ok(true);
                    }
                }
                Ok::<bool, redis::RedisError>(false)
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                res = session => match res {
                    Ok(true) => return,
                    Ok(false) => tracing::warn!(%channel, "subscription ended; reconnecting"),
                    Err(e) => tracing::debug!(%channel, error = %e, "subscription failed; retrying"),
                },
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
    Ok(())
}
