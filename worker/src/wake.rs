//! Wake-ups for the apalis poller: a Redis pub/sub ping on every enqueue, plus a slow tick as
//! a safety net, so pick-up latency does not depend on the poll interval.

use std::time::Duration;

use futures::StreamExt;
use futures::channel::mpsc;

/// A stream that yields whenever the relay announces new jobs on `channel`, and at least every
/// `tick`. Reconnects to Redis by itself.
pub fn wake_stream(redis_url: String, channel: String, tick: Duration) -> mpsc::Receiver<()> {
    let (tx, rx) = mpsc::channel::<()>(1);
    let mut ticker_tx = tx.clone();
    tokio::spawn(async move {
        let mut interval = tokio::time::interval(tick);
        loop {
            interval.tick().await;
            // A full channel already holds a pending wake-up; dropping this one loses nothing.
            if ticker_tx.try_send(()).is_err() && ticker_tx.is_closed() {
                return;
            }
        }
    });
    tokio::spawn(async move {
        let mut tx = tx;
        loop {
            match subscribe(&redis_url, &channel).await {
                Ok(mut pubsub) => {
                    let mut msgs = pubsub.on_message();
                    while msgs.next().await.is_some() {
                        if tx.try_send(()).is_err() && tx.is_closed() {
                            return;
                        }
                    }
                    tracing::warn!("wake-up subscription ended; reconnecting");
                }
                Err(e) => tracing::debug!(error = %e, "wake-up subscription failed; retrying"),
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        }
    });
    rx
}

async fn subscribe(url: &str, channel: &str) -> redis::RedisResult<redis::aio::PubSub> {
    let client = redis::Client::open(url)?;
    let mut pubsub = client.get_async_pubsub().await?;
    pubsub.subscribe(channel).await?;
    Ok(pubsub)
}
