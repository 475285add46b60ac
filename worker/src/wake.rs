//! Wake-ups for the apalis poller: a Redis pub/sub ping on every enqueue, plus a slow tick as
//! a safety net, so pick-up latency does not depend on the poll interval.

use std::time::Duration;

use futures::channel::mpsc;
use tms_core::bus::subscribe_forever;
use tokio_util::sync::CancellationToken;

/// A stream that yields whenever the relay announces new jobs on `channel`, and at least every
/// `tick`. Ends its tasks when the stream is dropped or `stop` fires.
pub fn wake_stream(
    redis_url: &str,
    channel: String,
    tick: Duration,
    stop: CancellationToken,
) -> tms_core::Result<mpsc::Receiver<()>> {
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
    let mut tx = tx;
    subscribe_forever(redis_url, channel, stop, move |_| {
        !(tx.try_send(()).is_err() && tx.is_closed())
    })?;
    Ok(rx)
}
