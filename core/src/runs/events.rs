//! Building run events: every state change becomes one persisted event carrying the run's percent.

use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::tasks;
use crate::error::Result;
use crate::repo::events::{self, EventRow, NewEvent};

pub const KIND_RUN: &str = "run";
pub const KIND_TASK: &str = "task";
pub const KIND_PROGRESS: &str = "progress";

/// Percent of the run's tasks that reached a terminal state.
pub fn percent_done(conn: &mut PgConnection, run_id: Uuid) -> Result<f64> {
    let rows: Vec<String> = tasks::table
        .filter(tasks::run_id.eq(run_id))
        .select(tasks::status)
        .load(conn)?;
    if rows.is_empty() {
        return Ok(0.0);
    }
    let done = rows
        .iter()
        .filter(|s| !matches!(s.as_str(), "pending" | "running"))
        .count();
    Ok((done as f64 * 100.0 / rows.len() as f64 * 10.0).round() / 10.0)
}

/// Appends one event for `run_id`; call inside the transaction that made the change.
pub fn record(
    conn: &mut PgConnection,
    run_id: Uuid,
    kind: &'static str,
    status: Option<&str>,
    step: Option<&str>,
    message: Option<String>,
) -> Result<EventRow> {
    let percent = percent_done(conn, run_id)?;
    events::append(
        conn,
        run_id,
        NewEvent {
            kind,
            status: status.map(str::to_string),
            step: step.map(str::to_string),
            percent,
            eta_seconds: None,
            message,
        },
    )
}
