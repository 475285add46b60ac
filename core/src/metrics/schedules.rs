//! Schedule metrics: ticks fired and ticks passed over (missed while no scheduler ran).

use std::sync::LazyLock;

use prometheus::IntCounterVec;

use crate::metrics::register;

pub static FIRES: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            prometheus::Opts::new(
                "tms_schedule_fires_total",
                "Schedule ticks by outcome: fired (a run was created) or missed (passed over, \
                 recorded in the next fired run).",
            ),
            &["outcome"],
        )
        .expect("valid metric"),
    )
});

pub(crate) fn init() {
    for outcome in ["fired", "missed"] {
        FIRES.with_label_values(&[outcome]);
    }
}

/// Counts one fired tick and the `missed` ticks it stands for.
pub fn fired(missed: u64) {
    FIRES.with_label_values(&["fired"]).inc();
    FIRES.with_label_values(&["missed"]).inc_by(missed);
}
