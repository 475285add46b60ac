//! Security events, counted as their audit rows are appended (action and outcome are the
//! audit log's enums, so the label sets are bounded).

use std::sync::LazyLock;

use prometheus::{IntCounterVec, Opts};

use crate::audit::{Action, Outcome};
use crate::metrics::register;

pub static AUTH_EVENTS: LazyLock<IntCounterVec> = LazyLock::new(|| {
    register(
        IntCounterVec::new(
            Opts::new(
                "tms_auth_events_total",
                "Audited security events by action (e.g. auth.login, access.denied) and outcome (success, failure, denied).",
            ),
            &["action", "outcome"],
        )
        .expect("valid metric"),
    )
});

pub fn record(action: Action, outcome: Outcome) {
    AUTH_EVENTS
        .with_label_values(&[action.as_str(), outcome.as_str()])
        .inc();
}

pub(crate) fn init() {
    for a in Action::ALL {
        for o in Outcome::ALL {
            AUTH_EVENTS.with_label_values(&[a.as_str(), o.as_str()]);
        }
    }
}
