//! Whether this process can reach each component it needs, probed at each scrape (within the
//! readiness timeout), so alerts can tell a database or Redis outage from a dead process.

use std::sync::LazyLock;

use prometheus::{IntGaugeVec, Opts};

use crate::health::{Report, Status};
use crate::metrics::register;

pub const COMPONENTS: &[&str] = &["postgres", "redis", "executor"];

pub static COMPONENT_UP: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "tms_component_up",
                "1 when this process's last probe of the component (postgres, redis, executor) succeeded, else 0.",
            ),
            &["component"],
        )
        .expect("valid metric"),
    )
});

/// Publishes a readiness report.
pub fn set(report: &Report) {
    for (name, c) in &report.components {
        COMPONENT_UP
            .with_label_values(&[name])
            .set(i64::from(c.status == Status::Ok));
    }
}

/// The components this process probes; the executor only exists on workers.
pub(crate) fn init() {
    for c in &COMPONENTS[..2] {
        COMPONENT_UP.with_label_values(&[c]);
    }
}
