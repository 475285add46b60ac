//! Prometheus metrics of one TMS process: a private registry, the metric families (one module
//! per area) and the text exposition served at `/metrics`.
//!
//! Every family is registered by [`init`], and every labelled family is touched for its known
//! label values there, so a scrape shows zeros rather than nothing: dashboards and alerts can
//! rely on each series existing from the first scrape. Label values always come from bounded
//! sets (route templates, schema field names, status enums), never ids, emails or raw paths.

pub mod auth;
pub mod db;
pub mod events;
pub mod health;
pub mod http;
pub mod queue;
pub mod runs;
pub mod schedules;

use std::sync::LazyLock;

use prometheus::{Encoder, Registry, TextEncoder};

static REGISTRY: LazyLock<Registry> = LazyLock::new(Registry::new);

/// The registry every family of this process is registered in.
pub fn registry() -> &'static Registry {
    &REGISTRY
}

/// Registers `c` once; a second registration of the same family is a programming error.
pub(crate) fn register<C: prometheus::core::Collector + Clone + 'static>(c: C) -> C {
    REGISTRY
        .register(Box::new(c.clone()))
        .expect("metric families have unique names");
    c
}

/// Registers every family (with its known label values) and the process collector. Call once
/// at start-up of each binary; calling it again is harmless.
pub fn init() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        #[cfg(target_os = "linux")]
        {
            let pc = prometheus::process_collector::ProcessCollector::for_self();
            if let Err(e) = REGISTRY.register(Box::new(pc)) {
                tracing::warn!(error = %e, "process metrics unavailable");
            }
        }
        http::init();
        runs::init();
        queue::init();
        events::init();
        health::init();
        auth::init();
        db::init();
        schedules::init();
    });
}

/// The Prometheus text exposition of every registered family.
pub fn render() -> String {
    let mut buf = Vec::new();
    let families = REGISTRY.gather();
    if let Err(e) = TextEncoder::new().encode(&families, &mut buf) {
        tracing::error!(error = %e, "metrics not encodable");
    }
    String::from_utf8(buf).unwrap_or_default()
}

/// `Content-Type` of [`render`]'s output.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// Histogram buckets for request-scale latencies (1 ms to 10 s).
pub(crate) const LATENCY_BUCKETS: &[f64] = &[
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
];

#[cfg(test)]
mod tests {
    #[test]
    fn every_family_is_exposed_after_init() {
        super::init();
        super::init();
        let text = super::render();
        for name in [
            "tms_http_requests_total",
            "tms_http_request_duration_seconds_bucket",
            "tms_graphql_operations_total",
            "tms_runs_total",
            "tms_run_duration_seconds_bucket",
            "tms_steps_total",
            "tms_step_duration_seconds_bucket",
            "tms_queue_jobs",
            "tms_queue_oldest_job_age_seconds",
            "tms_worker_slots",
            "tms_cache_lookups_total",
            "tms_subscriptions_open",
            "tms_event_delivery_seconds_bucket",
            "tms_auth_events_total",
            "tms_db_pool_connections",
            "tms_component_up",
        ] {
            assert!(
                text.contains(&format!("\n{name}")),
                "{name} missing:\n{text}"
            );
        }
        assert!(
            text.contains("tms_runs_total{status=\"failed\"} 0"),
            "{text}"
        );
        assert!(
            text.contains("tms_queue_jobs{state=\"pending\"} 0"),
            "{text}"
        );
    }
}
