//! A page of runs with what a runs list shows of each, its tasks and its workflow, in one
//! statement: the runs page was three (the runs, their tasks, their workflows), and a page's
//! cost on the read path is mostly per statement (a round trip, a wake-up of the backend and
//! of the blocking thread), not per row.

use chrono::{DateTime, Utc};
use diesel::dsl::sql;
use diesel::pg::sql_types::Record;
use diesel::prelude::*;
use diesel::sql_types::{Array, Float8, Int4, Nullable, Text, Timestamptz};
use uuid::Uuid;

use crate::db::schema::sql_types::PgTaskStatus;
use crate::db::schema::{runs, workflows};
use crate::error::Result;
use crate::repo::runs::{RunRow, TaskView};
use crate::repo::workflows::WorkflowRow;
use crate::runs::{RunStatus, TaskStatus};

/// A task as [`TaskView`] has it, less its run's id: one record of a run's task array.
type TaskRecord = (
    Text,
    Int4,
    PgTaskStatus,
    Int4,
    Array<Text>,
    Nullable<Timestamptz>,
    Nullable<Timestamptz>,
    Nullable<Int4>,
    Text,
    Nullable<Text>,
    Nullable<Float8>,
);

type TaskFields = (
    String,
    i32,
    TaskStatus,
    i32,
    Vec<String>,
    Option<DateTime<Utc>>,
    Option<DateTime<Utc>>,
    Option<i32>,
    String,
    Option<String>,
    Option<f64>,
);

/// A run's tasks in position order, as records of [`TaskRecord`]'s columns; null without tasks.
const TASKS: &str = "(SELECT array_agg(ROW(t.name, t.position, t.status, t.attempt, \
    t.depends_on, t.started_at, t.finished_at, t.exit_code, t.log_tail, t.error, \
    t.progress_percent) ORDER BY t.position) FROM tasks t WHERE t.run_id = runs.id)";

/// One run of a page, with its workflow (if it exists) and its tasks in position order.
pub struct PageRow {
    pub run: RunRow,
    pub workflow: Option<WorkflowRow>,
    pub tasks: Vec<TaskView>,
}

/// Runs newest first, as [`crate::repo::runs::list`] pages them, each with its tasks and
/// workflow.
pub fn page(
    conn: &mut PgConnection,
    before: Option<Uuid>,
    limit: i64,
    workflow_id: Option<Uuid>,
    status: Option<RunStatus>,
) -> Result<Vec<PageRow>> {
    let mut q = runs::table
        .left_join(workflows::table)
        .select((
            RunRow::as_select(),
            Option::<WorkflowRow>::as_select(),
            sql::<Nullable<Array<Record<TaskRecord>>>>(TASKS),
        ))
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(runs::id.lt(b));
    }
    if let Some(w) = workflow_id {
        q = q.filter(runs::workflow_id.eq(w));
    }
    if let Some(s) = status {
        q = q.filter(runs::status.eq(s));
    }
    let rows: Vec<(RunRow, Option<WorkflowRow>, Option<Vec<TaskFields>>)> =
        q.order(runs::id.desc()).limit(limit).load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(run, workflow, tasks)| {
            let run_id = run.id;
            let tasks = tasks
                .unwrap_or_default()
                .into_iter()
                .map(|t| TaskView {
                    run_id,
                    name: t.0,
                    position: t.1,
                    status: t.2,
                    attempt: t.3,
                    depends_on: t.4,
                    started_at: t.5,
                    finished_at: t.6,
                    exit_code: t.7,
                    log_tail: t.8,
                    error: t.9,
                    progress_percent: t.10,
                })
                .collect();
            PageRow {
                run,
                workflow,
                tasks,
            }
        })
        .collect())
}
