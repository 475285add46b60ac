//! Building run events: every state change becomes one persisted event carrying the run's
//! percent and ETA.

use diesel::prelude::*;
use uuid::Uuid;

use crate::error::Result;
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::runs::TaskChange;
use crate::runs::eta::Estimator;
use crate::runs::{EventKind, EventStatus, RunEvent, RunStatus, TaskStatus};

/// A run status change.
pub fn run_changed(status: RunStatus, message: Option<String>) -> NewEvent {
    NewEvent {
        message,
        ..NewEvent::new(EventKind::Run, Some(status.into()))
    }
}

/// A task status change (or a note about the task in its current status).
pub fn task_changed(step: &str, status: TaskStatus, message: Option<String>) -> NewEvent {
    NewEvent {
        step: Some(step.to_string()),
        message,
        ..NewEvent::new(EventKind::Task, Some(status.into()))
    }
}

/// A running step's own `::progress` report.
pub fn progress_reported(step: &str, percent: f64, message: String) -> NewEvent {
    NewEvent {
        step: Some(step.to_string()),
        message: Some(message),
        step_percent: Some(percent),
        ..NewEvent::new(EventKind::Progress, Some(EventStatus::Running))
    }
}

/// Appends `ev` stamped with the run's percent and ETA as of this event: the estimate already
/// accounts for the change the event describes (applied earlier in the transaction) or for the
/// progress it reports. Call inside the transaction that made the change.
pub fn record(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    ev: NewEvent,
) -> Result<RunEvent> {
    let succeeded = ev
        .step
        .as_deref()
        .filter(|_| ev.kind == EventKind::Task && ev.status == Some(EventStatus::Succeeded));
    // A run's own terminal event is recorded after the run ended in this transaction: its
    // estimate is known without reading anything.
    let ended = ev.kind == EventKind::Run
        && ev
            .status
            .and_then(|s| s.as_run_status())
            .is_some_and(|s| s.is_terminal());
    let e = if ended {
        crate::runs::eta::FINISHED
    } else {
        est.estimate_with(conn, run_id, succeeded)?
    };
    append_estimated(conn, run_id, ev, e)
}

/// Appends `ev` stamped with `e`, an estimate the caller made as of this event.
pub fn append_estimated(
    conn: &mut PgConnection,
    run_id: Uuid,
    mut ev: NewEvent,
    e: crate::runs::eta::Estimate,
) -> Result<RunEvent> {
    ev.percent = e.percent;
    ev.eta_seconds = e.eta_seconds;
    Ok(repo::events::append(conn, run_id, ev)?.into())
}

/// Applies `change` to task `step` and records `ev` about it.
pub fn change_task(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    step: &str,
    change: &TaskChange,
    ev: NewEvent,
) -> Result<RunEvent> {
    repo::runs::update_task(conn, run_id, step, change)?;
    record(conn, est, run_id, ev)
}

/// Every task of the run not yet finished becomes `cancelled` with `why`; returns the events.
fn cancel_unfinished_tasks(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    why: &str,
) -> Result<Vec<RunEvent>> {
    let mut events = Vec::new();
    for t in repo::runs::tasks_of(conn, run_id)? {
        if !t.status.is_terminal() {
            let change = TaskChange::finished(TaskStatus::Cancelled, Some(why.to_string()));
            let ev = task_changed(&t.name, TaskStatus::Cancelled, Some(why.to_string()));
            events.push(change_task(conn, est, run_id, &t.name, &change, ev)?);
        }
    }
    Ok(events)
}

/// Records a cancellation: every task not yet finished becomes `cancelled`, then the run.
/// Returns the events to publish. Call inside a transaction (holding the lease, if any).
pub fn cancel_remaining(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    why: &str,
) -> Result<Vec<RunEvent>> {
    let mut events = cancel_unfinished_tasks(conn, est, run_id, why)?;
    if repo::runs::finish(conn, run_id, RunStatus::Cancelled, Some(why))? {
        let ev = run_changed(RunStatus::Cancelled, Some(why.to_string()));
        events.push(record(conn, est, run_id, ev)?);
    }
    Ok(events)
}

/// Gives a run up for good: every unfinished task is cancelled with `why`, and the run fails
/// with `why` and is marked dead-lettered.
pub fn dead_letter(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    why: &str,
) -> Result<Vec<RunEvent>> {
    let mut events = cancel_unfinished_tasks(conn, est, run_id, why)?;
    if repo::runs::finish(conn, run_id, RunStatus::Failed, Some(why))? {
        repo::runs::mark_dead_lettered(conn, run_id)?;
        let ev = run_changed(RunStatus::Failed, Some(why.to_string()));
        events.push(record(conn, est, run_id, ev)?);
    }
    Ok(events)
}
