//! Run, step, cache and worker-slot metrics. Totals are counted where run events are
//! published (every process that ends a run or a step publishes its event exactly once after
//! commit); durations where the worker measures them.

use std::sync::LazyLock;

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts};

use crate::metrics::register;
use crate::runs::{EventKind, EventStatus, RunEvent};

/// Runs last from seconds to a day.
const RUN_BUCKETS: &[f64] = &[
    1.0, 5.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0, 43200.0,
    86400.0,
];
/// Steps last from a fraction of a second to hours.
const STEP_BUCKETS: &[f64] = &[
    0.1, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 7200.0, 14400.0,
];

/// Final run states, as label values.
pub const RUN_STATUSES: &[&str] = &["succeeded", "failed", "cancelled", "timed_out"];
/// Final step states, as label values.
pub const STEP_STATUSES: &[&str] = &["succeeded", "failed", "cached", "skipped", "cancelled"];

pub static RUNS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_runs_total",
                "Runs that reached a final state, by that state.",
            ),
            &["status"],
        )
        .expect("valid metric"),
    )
});

pub static RUN_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "tms_run_duration_seconds",
                "From a run's start to its final state, by that state (runs ended by a worker).",
            )
            .buckets(RUN_BUCKETS.to_vec()),
            &["status"],
        )
        .expect("valid metric"),
    )
});

pub static STEPS_TOTAL: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_steps_total",
                "Steps that reached a final state, by that state.",
            ),
            &["status"],
        )
        .expect("valid metric"),
    )
});

pub static STEP_DURATION: LazyLock<HistogramVec> = LazyLock::new(|| {
    register(
        HistogramVec::new(
            HistogramOpts::new(
                "tms_step_duration_seconds",
                "From a step's first attempt to its final state (retries included), by that state.",
            )
            .buckets(STEP_BUCKETS.to_vec()),
            &["status"],
        )
        .expect("valid metric"),
    )
});

pub static CACHE_LOOKUPS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_cache_lookups_total",
                "Step-cache lookups, by result (hit or miss).",
            ),
            &["result"],
        )
        .expect("valid metric"),
    )
});

pub static WORKER_SLOTS: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "tms_worker_slots",
                "Step slots of this worker, by state (busy or idle).",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});

pub static DEAD_LETTERED: LazyLock<prometheus::IntCounter> = LazyLock::new(|| {
    register(
        prometheus::IntCounter::new(
            "tms_runs_dead_lettered_total",
            "Runs given up (failed and marked dead-lettered) after too many deliveries.",
        )
        .expect("valid metric"),
    )
});

/// Counts the final states among published events.
pub fn count_published(events: &[RunEvent]) {
    for ev in events {
        let Some(status) = ev.status else { continue };
        match ev.kind {
            EventKind::Run if ev.ends_run() => {
                RUNS_TOTAL.with_label_values(&[status.as_str()]).inc();
            }
            EventKind::Task
                if matches!(
                    status,
                    EventStatus::Succeeded
                        | EventStatus::Failed
                        | EventStatus::Cached
                        | EventStatus::Skipped
                        | EventStatus::Cancelled
                ) =>
            {
                STEPS_TOTAL.with_label_values(&[status.as_str()]).inc();
            }
            _ => {}
        }
    }
}

/// A worker's slots: `busy` of `total` in use.
pub fn set_slots(busy: usize, total: usize) {
    WORKER_SLOTS.with_label_values(&["busy"]).set(busy as i64);
    WORKER_SLOTS
        .with_label_values(&["idle"])
        .set(total.saturating_sub(busy) as i64);
}

/// One cache lookup of a step.
pub fn cache_lookup(hit: bool) {
    CACHE_LOOKUPS
        .with_label_values(&[if hit { "hit" } else { "miss" }])
        .inc();
}

pub(crate) fn init() {
    LazyLock::force(&DEAD_LETTERED);
    for s in RUN_STATUSES {
        RUNS_TOTAL.with_label_values(&[s]);
        RUN_DURATION.with_label_values(&[s]);
    }
    for s in STEP_STATUSES {
        STEPS_TOTAL.with_label_values(&[s]);
        STEP_DURATION.with_label_values(&[s]);
    }
    for r in ["hit", "miss"] {
        CACHE_LOOKUPS.with_label_values(&[r]);
    }
    for s in ["busy", "idle"] {
        WORKER_SLOTS.with_label_values(&[s]);
    }
}
