//! Cancellation requests: one Redis subscription per worker; a request for a run this worker
//! drives stops it at once (the lease check is the backstop for lost messages).

use std::sync::Arc;
use std::time::Duration;

use futures::StreamExt;
use tms_core::bus::CANCEL_CHANNEL;
use tokio_util::sync::CancellationToken;

use crate::runner::Runner;

pub fn listen(redis_url: String, runner: Arc<Runner>, stop: CancellationToken) {
    tokio::spawn(async move {
        loop {
            let session = async {
                let client = redis::Client::open(redis_url.as_str())?;
                let mut pubsub = client.get_async_pubsub().await?;
                pubsub.subscribe(CANCEL_CHANNEL).await?;
                let mut messages = pubsub.on_message();
                while let Some(msg) = messages.next().await {
                    let Ok(payload) = msg.get_payload::<String>() else {
                        continue;
                    };
                    if let Ok(run_id) = payload.parse() {
                        runner.cancel(run_id);
                    }
                }
                Ok::<(), redis::RedisError>(())
            };
            tokio::select! {
                _ = stop.cancelled() => return,
                res = session => {
                    if let Err(e) = res {
                        tracing::debug!(error = %e, "cancel subscription failed; retrying");
                    }
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(Duration::from_millis(500)) => {}
            }
        }
    });
}
