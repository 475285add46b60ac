//! Redis connections and the run-event bus: events are persisted first, then published here.

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use tokio::sync::{broadcast, mpsc};
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

/// Bus messages waiting to be published; when Redis is away for longer than this many messages
/// take to commit, the newest are dropped (and counted): Postgres holds every run event, and
/// subscribers repair gaps from there.
pub const PUBLISH_BUFFER: usize = 10_000;
/// How long one batch of publishes may take before it is given up (Redis paused or gone).
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(2);
/// Publishes sent per Redis round trip at most.
const PUBLISH_BATCH: usize = 256;

/// One message for the bus.
struct Outgoing {
    channel: &'static str,
    payload: String,
}

/// Publishes on Redis off the critical path: the commit is the promise, so callers hand their
/// messages to one background publisher per process (order kept) and never wait on Redis.
#[derive(Clone)]
pub struct EventBus {
    conn: ConnectionManager,
    tx: mpsc::Sender<Outgoing>,
}

impl EventBus {
    /// Starts the process's publisher on the current tokio runtime.
    pub fn new(conn: ConnectionManager) -> Self {
        let (tx, rx) = mpsc::channel(PUBLISH_BUFFER);
        tokio::spawn(publish_loop(conn.clone(), rx));
        Self { conn, tx }
    }

    /// Queues persisted events for publishing and returns at once. A full buffer drops the
    /// newest (counted in `tms_event_publish_dropped_total`): Postgres holds the events, and
    /// subscribers catch up from there.
    pub async fn publish(&self, events: &[RunEvent]) {
        crate::metrics::runs::count_published(events);
        for ev in events {
            match serde_json::to_string(ev) {
                Ok(payload) => self.send(EVENTS_CHANNEL, payload),
                Err(e) => tracing::error!(error = %e, "event not serialisable"),
            }
        }
    }

    /// Tells the worker driving `run_id` to stop it. Lost messages are covered by the worker's
    /// lease renewal, which also checks for cancellation requests.
    pub async fn request_cancel(&self, run_id: uuid::Uuid) {
        self.send(CANCEL_CHANNEL, run_id.to_string());
    }

    fn send(&self, channel: &'static str, payload: String) {
        match self.tx.try_send(Outgoing { channel, payload }) {
            Ok(()) => crate::metrics::events::PUBLISH_BUFFERED.inc(),
            Err(mpsc::error::TrySendError::Full(_)) => {
                let dropped = crate::metrics::events::PUBLISH_DROPPED.get();
                crate::metrics::events::PUBLISH_DROPPED.inc();
                // One line per thousand drops: an outage must not flood the log.
                if dropped.is_multiple_of(1000) {
                    tracing::warn!(
                        channel,
                        dropped = dropped + 1,
                        "publish buffer full (Redis slow or away); messages dropped, run events stay in Postgres"
                    );
                }
            }
            Err(mpsc::error::TrySendError::Closed(_)) => {
                tracing::debug!(channel, "publisher stopped; message not published");
            }
        }
    }

    /// Publishes one message on `channel`; the caller decides what a failure means.
    /// Waits at most [`PUBLISH_TIMEOUT`] for Redis.
    pub async fn publish_raw(&self, channel: &str, payload: String) -> Result<()> {
        let mut conn = self.conn.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, conn.publish::<_, _, ()>(channel, payload))
            .await
        {
            Ok(res) => Ok(res?),
            Err(_) => Err(Error::Unavailable("redis: publish timed out".into())),
        }
    }

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}

/// Sends queued messages in order, a batch per round trip, until every [`EventBus`] is gone.
/// A batch Redis does not take within [`PUBLISH_TIMEOUT`] is dropped and counted.
async fn publish_loop(conn: ConnectionManager, mut rx: mpsc::Receiver<Outgoing>) {
    let mut batch = Vec::with_capacity(PUBLISH_BATCH);
    while rx.recv_many(&mut batch, PUBLISH_BATCH).await > 0 {
        let n = batch.len();
        crate::metrics::events::PUBLISH_BUFFERED.sub(n as i64);
        let mut pipe = redis::pipe();
        for m in &batch {
            pipe.cmd("PUBLISH").arg(m.channel).arg(&m.payload).ignore();
        }
        let mut c = conn.clone();
        let failure =
            match tokio::time::timeout(PUBLISH_TIMEOUT, pipe.query_async::<()>(&mut c)).await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(_) => Some(format!("no answer within {PUBLISH_TIMEOUT:?}")),
            };
        if let Some(error) = failure {
            crate::metrics::events::PUBLISH_DROPPED.inc_by(n as u64);
            tracing::warn!(count = n, %error, "bus messages not published; run events stay in Postgres");
        }
        batch.clear();
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
