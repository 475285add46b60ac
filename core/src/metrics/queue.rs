//! Queue depth by state and the age of the oldest waiting run, refreshed at each scrape from
//! the queue's Redis keys and Postgres (see `crate::monitoring::queue`).

use std::sync::LazyLock;

use prometheus::{Gauge, IntGaugeVec, Opts};

use crate::metrics::register;

pub const STATES: &[&str] = &["pending", "running", "retrying", "dead"];

pub static QUEUE_JOBS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "tms_queue_jobs",
                "Jobs in the run queue by state: pending (ready), running (held by a worker), retrying (scheduled for later), dead.",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});

pub static QUEUE_OLDEST_AGE: LazyLock<Gauge> = LazyLock::new(|| {
    register(
        Gauge::new(
            "tms_queue_oldest_job_age_seconds",
            "Age of the oldest run still waiting to start (0 when none waits).",
        )
        .expect("valid metric"),
    )
});

pub static REENQUEUED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "tms_queue_reenqueued_total",
            "Runs the reconciler put on the queue again (worker died, job lost, Redis emptied).",
        )
        .expect("valid metric"),
    )
});

/// Publishes one reading of the queue.
pub fn set(stats: &crate::monitoring::QueueStats) {
    QUEUE_JOBS
        .with_label_values(&["pending"])
        .set(stats.pending);
    QUEUE_JOBS
        .with_label_values(&["running"])
        .set(stats.running);
    QUEUE_JOBS
        .with_label_values(&["retrying"])
        .set(stats.retrying);
    QUEUE_JOBS.with_label_values(&["dead"]).set(stats.dead);
    QUEUE_OLDEST_AGE.set(stats.oldest_pending_age_seconds);
}

pub(crate) fn init() {
    for s in STATES {
        QUEUE_JOBS.with_label_values(&[s]);
    }
    LazyLock::force(&QUEUE_OLDEST_AGE);
    LazyLock::force(&REENQUEUED);
}
