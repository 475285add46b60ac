//! Building run events: every state change becomes one persisted event carrying the run's
//! percent and ETA.

use diesel::prelude::*;
use uuid::Uuid;

use crate::error::Result;
use crate::repo::events::{self, EventRow, NewEvent};
use crate::runs::eta::estimate_with;

pub const KIND_RUN: &str = "run";
pub const KIND_TASK: &str = "task";
pub const KIND_PROGRESS: &str = "progress";

/// Appends one event for `run_id`; call inside the transaction that made the change.
pub fn record(
    conn: &mut PgConnection,
    run_id: Uuid,
    kind: &'static str,
    status: Option<&str>,
    step: Option<&str>,
    message: Option<String>,
) -> Result<EventRow> {
    append_estimated(
        conn,
        run_id,
        NewEvent {
            kind,
            status: status.map(str::to_string),
            step: step.map(str::to_string),
            message,
            ..Default::default()
        },
    )
}

/// Appends `ev` stamped with the run's percent and ETA as of this event: the estimate already
/// accounts for the change the event describes (applied earlier in the transaction) or for the
/// progress it reports.
pub fn append_estimated(
    conn: &mut PgConnection,
    run_id: Uuid,
    mut ev: NewEvent,
) -> Result<EventRow> {
    let succeeded = ev
        .step
        .as_deref()
        .filter(|_| ev.kind == KIND_TASK && ev.status.as_deref() == Some("succeeded"));
    let est = estimate_with(conn, run_id, succeeded)?;
    ev.percent = est.percent;
    ev.eta_seconds = est.eta_seconds;
    events::append(conn, run_id, ev)
}

/// Records a cancellation: every task not yet finished becomes `cancelled`, then the run.
/// Returns the events to publish. Call inside a transaction (holding the lease, if any).
pub fn cancel_remaining(conn: &mut PgConnection, run_id: Uuid, why: &str) -> Result<Vec<EventRow>> {
    use crate::repo::runs::TaskChange;
    use crate::runs::{RunStatus, TaskStatus};
    let mut events = Vec::new();
    for t in crate::repo::runs::tasks_of(conn, run_id)? {
        if !t.status().is_terminal() {
            let change = TaskChange {
                status: Some(TaskStatus::Cancelled.as_str().into()),
                finished_at: Some(Some(chrono::Utc::now())),
                error: Some(Some(why.to_string())),
                ..Default::default()
            };
            crate::repo::runs::update_task(conn, run_id, &t.name, &change)?;
            let st = Some(TaskStatus::Cancelled.as_str());
            events.push(record(
                conn,
                run_id,
                KIND_TASK,
                st,
                Some(&t.name),
                Some(why.to_string()),
            )?);
        }
    }
    if crate::repo::runs::finish(conn, run_id, RunStatus::Cancelled, Some(why))? {
        let st = Some(RunStatus::Cancelled.as_str());
        events.push(record(
            conn,
            run_id,
            KIND_RUN,
            st,
            None,
            Some(why.to_string()),
        )?);
    }
    Ok(events)
}
