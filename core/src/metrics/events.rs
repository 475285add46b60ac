//! Live-progress metrics of the api: open subscriptions and how long events take from their
//! commit to a subscriber's socket.

use std::sync::LazyLock;

use prometheus::{Histogram, HistogramOpts, IntGauge};

use crate::metrics::{LATENCY_BUCKETS, register};

pub static SUBSCRIPTIONS_OPEN: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "tms_subscriptions_open",
            "GraphQL subscriptions open on this api.",
        )
        .expect("valid metric"),
    )
});

pub static EVENT_DELIVERY: LazyLock<Histogram> = LazyLock::new(|| {
    register(
        Histogram::with_opts(
            HistogramOpts::new(
                "tms_event_delivery_seconds",
                "From a run event's commit to its hand-over to a subscriber.",
            )
            .buckets(LATENCY_BUCKETS.to_vec()),
        )
        .expect("valid metric"),
    )
});

/// Counts one open subscription for as long as it lives.
pub struct OpenSubscription(());

impl OpenSubscription {
    pub fn open() -> Self {
        SUBSCRIPTIONS_OPEN.inc();
        OpenSubscription(())
    }
}

impl Drop for OpenSubscription {
    fn drop(&mut self) {
        SUBSCRIPTIONS_OPEN.dec();
    }
}

/// Events older than this when handed over are replays (`afterSeq`, snapshots of old runs),
/// not live deliveries: they are left out of the histogram.
const REPLAY_AFTER_SECONDS: f64 = 60.0;

/// An event committed at `at` is being handed to a subscriber now.
pub fn delivered(at: chrono::DateTime<chrono::Utc>) {
    let secs = (chrono::Utc::now() - at).num_microseconds().unwrap_or(0) as f64 / 1e6;
    if secs < REPLAY_AFTER_SECONDS {
        EVENT_DELIVERY.observe(secs.max(0.0));
    }
}

pub(crate) fn init() {
    LazyLock::force(&SUBSCRIPTIONS_OPEN);
    LazyLock::force(&EVENT_DELIVERY);
    LazyLock::force(&PUBLISH_DROPPED);
    LazyLock::force(&PUBLISH_BUFFERED);
}

pub static PUBLISH_DROPPED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "tms_event_publish_dropped_total",
            "Bus messages dropped because Redis was too slow or away and the publish buffer was \
             full, or because publishing failed (run events stay in Postgres; subscribers repair \
             gaps from there).",
        )
        .expect("valid metric"),
    )
});

pub static PUBLISH_BUFFERED: LazyLock<IntGauge> = LazyLock::new(|| {
    register(
        IntGauge::new(
            "tms_event_publish_buffered",
            "Bus messages committed and waiting to be published on Redis.",
        )
        .expect("valid metric"),
    )
});
