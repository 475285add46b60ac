//! Redis connections and the run-event bus: events are persisted first, then published here.

use std::time::Duration;

use redis::AsyncCommands;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};

use crate::error::{Error, Result};
use crate::repo::events::EventRow;

/// Channel every run event is published on; api instances subscribe once and fan out.
pub const EVENTS_CHANNEL: &str = "tms:run-events";

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
    pub async fn publish(&self, events: &[EventRow]) {
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

    pub async fn ping(&self) -> Result<()> {
        let mut conn = self.conn.clone();
        redis::cmd("PING").query_async::<String>(&mut conn).await?;
        Ok(())
    }
}
