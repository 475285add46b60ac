//! Reads and writes of a run's state made for the worker's hot path: each is one statement
//! where the general-purpose ones in `repo::runs` would take two.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{runs, tasks};
use crate::error::Result;
use crate::repo::runs::TaskRow;
use crate::runs::RunStatus;

/// A run's workflow and status, with its tasks in position order.
pub struct RunState {
    pub workflow_id: Uuid,
    pub status: RunStatus,
    pub tasks: Vec<TaskRow>,
}

/// The run's workflow, status and tasks in one statement; `None` if there is no such run.
pub fn with_tasks(conn: &mut PgConnection, run_id: Uuid) -> Result<Option<RunState>> {
    let rows: Vec<(Uuid, RunStatus, Option<TaskRow>)> = runs::table
        .left_join(tasks::table)
        .filter(runs::id.eq(run_id))
        .order(tasks::position.asc())
        // All columns in table order, which `TaskRow` follows (a `Selectable` cannot be made
        // nullable inside a tuple).
        .select((
            runs::workflow_id,
            runs::status,
            tasks::all_columns.nullable(),
        ))
        .load(conn)?;
    let Some((workflow_id, status, _)) = rows.first().cloned() else {
        return Ok(None);
    };
    Ok(Some(RunState {
        workflow_id,
        status,
        tasks: rows.into_iter().filter_map(|(_, _, t)| t).collect(),
    }))
}

/// `started_at` and `finished_at`.
type Span = (Option<DateTime<Utc>>, Option<DateTime<Utc>>);

/// A run just moved to its terminal status.
pub struct Finished {
    /// How long it ran; `None` when it never started.
    pub took: Option<chrono::Duration>,
}

/// Moves an unfinished run to a terminal status, as `repo::runs::finish`; `None` if it had
/// already ended.
pub fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    status: RunStatus,
    error: Option<&str>,
) -> Result<Option<Finished>> {
    let row: Option<Span> = diesel::update(
        runs::table
            .filter(runs::id.eq(id))
            .filter(runs::status.eq_any(RunStatus::UNFINISHED)),
    )
    .set((
        runs::status.eq(status),
        runs::error.eq(error),
        runs::finished_at.eq(Some(Utc::now())),
        runs::lease_owner.eq(None::<String>),
        runs::lease_expires_at.eq(None::<DateTime<Utc>>),
    ))
    .returning((runs::started_at, runs::finished_at))
    .get_result(conn)
    .optional()?;
    Ok(row.map(|(started, finished)| Finished {
        took: started.zip(finished).map(|(s, f)| f - s),
    }))
}
