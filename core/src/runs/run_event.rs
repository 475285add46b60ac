//! A run event as the rest of the system sees it: what the bus carries between processes and
//! what subscribers receive. Separate from the database row, so either can change alone.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::repo::events::EventRow;
use crate::runs::{EventKind, EventStatus, RunStatus};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunEvent {
    pub run_id: Uuid,
    pub workflow_id: Uuid,
    pub seq: i64,
    pub kind: EventKind,
    pub status: Option<EventStatus>,
    pub step: Option<String>,
    pub percent: f64,
    pub eta_seconds: Option<f64>,
    /// The step's own reported progress (0-100), on `progress` events.
    pub step_percent: Option<f64>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
}

impl RunEvent {
    /// Whether this event ends its run (a run event with a terminal status).
    pub fn ends_run(&self) -> bool {
        self.kind == EventKind::Run
            && self
                .status
                .and_then(EventStatus::as_run_status)
                .is_some_and(RunStatus::is_terminal)
    }
}

impl From<EventRow> for RunEvent {
    fn from(r: EventRow) -> Self {
        Self {
            run_id: r.run_id,
            workflow_id: r.workflow_id,
            seq: r.seq,
            kind: r.kind,
            status: r.status,
            step: r.step,
            percent: r.percent,
            eta_seconds: r.eta_seconds,
            step_percent: r.step_percent,
            message: r.message,
            at: r.at,
        }
    }
}
