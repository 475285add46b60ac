//! Runs and tasks as the services hand them out: typed statuses, no lease bookkeeping, and
//! independent of how the rows are stored.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::repo::runs::{RunRow, TaskBrief, TaskView};
use crate::runs::{RunStatus, RunTrigger, TaskStatus};

#[derive(Debug, Clone, PartialEq)]
pub struct Run {
    pub id: Uuid,
    pub workflow_id: Uuid,
    /// The workflow version this run is pinned to.
    pub version: i32,
    pub status: RunStatus,
    pub inputs: serde_json::Value,
    pub idempotency_key: Option<String>,
    pub no_cache: bool,
    pub triggered_by: Option<Uuid>,
    pub error: Option<String>,
    pub created_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    /// How many times a worker picked the run up.
    pub deliveries: i32,
    /// Sequence number of the latest run event.
    pub last_seq: i64,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub trigger: RunTrigger,
    /// The schedule tick a scheduled run belongs to.
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Set when the run was given up after too many deliveries.
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl From<RunRow> for Run {
    fn from(row: RunRow) -> Self {
        Run {
            status: row.status(),
            id: row.id,
            workflow_id: row.workflow_id,
            version: row.version,
            inputs: row.inputs,
            idempotency_key: row.idempotency_key,
            no_cache: row.no_cache,
            triggered_by: row.triggered_by,
            error: row.error,
            created_at: row.created_at,
            started_at: row.started_at,
            finished_at: row.finished_at,
            deliveries: row.deliveries,
            last_seq: row.last_seq,
            cancel_requested_at: row.cancel_requested_at,
            trigger: row.trigger,
            scheduled_for: row.scheduled_for,
            dead_lettered_at: row.dead_lettered_at,
        }
    }
}

/// One step's execution within a run.
#[derive(Debug, Clone, PartialEq)]
pub struct Task {
    pub run_id: Uuid,
    pub name: String,
    pub position: i32,
    pub status: TaskStatus,
    /// 1 for the first execution, incremented by every retry or re-delivery; 0 if never started.
    pub attempt: i32,
    pub depends_on: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub log_tail: String,
    pub error: Option<String>,
    /// The running attempt's latest `::progress` percent.
    pub progress_percent: Option<f64>,
}

impl From<TaskView> for Task {
    fn from(row: TaskView) -> Self {
        Task {
            run_id: row.run_id,
            name: row.name,
            position: row.position,
            status: row.status,
            attempt: row.attempt,
            depends_on: row.depends_on,
            started_at: row.started_at,
            finished_at: row.finished_at,
            exit_code: row.exit_code,
            log_tail: row.log_tail,
            error: row.error,
            progress_percent: row.progress_percent,
        }
    }
}

/// A brief read leaves what it did not read empty (see `PageWants::brief_tasks`).
impl From<TaskBrief> for Task {
    fn from(row: TaskBrief) -> Self {
        Task {
            run_id: row.run_id,
            name: row.name,
            position: row.position,
            status: row.status,
            attempt: row.attempt,
            depends_on: Vec::new(),
            started_at: None,
            finished_at: None,
            exit_code: row.exit_code,
            log_tail: String::new(),
            error: None,
            progress_percent: None,
        }
    }
}
