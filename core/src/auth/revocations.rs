//! Session revocations on the Redis bus: published by the service that revoked, received once
//! per process and fanned out in memory to the WebSocket connections it serves.

use std::sync::Arc;

use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;

use crate::auth::sessions::{REVOCATIONS_CHANNEL, SessionRevoked};
use crate::bus::{EventBus, subscribe_forever};
use crate::error::Result;

/// Publishes a notice. A lost notice (Redis down) is bounded by the access-token lifetime: the
/// connection still closes when its token expires, and the token itself is already refused by
/// every HTTP request.
pub async fn publish(bus: &EventBus, notice: &SessionRevoked) {
    let payload = match serde_json::to_string(notice) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(error = %e, "revocation not serialisable");
            return;
        }
    };
    if let Err(e) = bus.publish_raw(REVOCATIONS_CHANNEL, payload).await {
        tracing::warn!(user_id = %notice.user_id, error = %e, "revocation notice not published; open sockets close at token expiry");
    }
}

/// The process's subscription to revocation notices.
#[derive(Clone)]
pub struct RevocationHub {
    tx: broadcast::Sender<Arc<SessionRevoked>>,
}

impl RevocationHub {
    pub fn start(redis_url: &str, stop: CancellationToken) -> Result<Self> {
        let (tx, _) = broadcast::channel(1024);
        let hub = Self { tx: tx.clone() };
        subscribe_forever(redis_url, REVOCATIONS_CHANNEL, stop, move |payload| {
            match serde_json::from_str::<SessionRevoked>(&payload) {
                Ok(n) => {
                    let _ = tx.send(Arc::new(n));
                }
                Err(e) => tracing::warn!(error = %e, "undecodable revocation notice"),
            }
            true
        })?;
        Ok(hub)
    }

    /// A hub fed by nothing (in-process tests without sockets to close).
    pub fn detached() -> Self {
        let (tx, _) = broadcast::channel(1);
        Self { tx }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<SessionRevoked>> {
        self.tx.subscribe()
    }
}
