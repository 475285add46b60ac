//! Batch reads of runs and tasks for list pages: one statement for any number of runs, so a
//! page costs the same whatever its size.

use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{runs, tasks};
use crate::error::Result;
use crate::repo::runs::{RunRow, TaskBrief, TaskRow, TaskView};

/// The runs among `ids` that exist.
pub fn find_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<RunRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(runs::table
        .filter(runs::id.eq_any(ids))
        .select(RunRow::as_select())
        .load(conn)?)
}

/// Every task of the runs `run_ids`, whole, ordered by run, then position.
pub fn tasks_of_runs(conn: &mut PgConnection, run_ids: &[Uuid]) -> Result<Vec<TaskRow>> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tasks::table
        .filter(tasks::run_id.eq_any(run_ids))
        .order((tasks::run_id.asc(), tasks::position.asc()))
        .select(TaskRow::as_select())
        .load(conn)?)
}

/// As [`tasks_of_runs`], with only the columns a task is shown with: not its stored output's
/// manifest or cache key, which were most of the bytes a page of tasks read.
pub fn task_views_of_runs(conn: &mut PgConnection, run_ids: &[Uuid]) -> Result<Vec<TaskView>> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tasks::table
        .filter(tasks::run_id.eq_any(run_ids))
        .order((tasks::run_id.asc(), tasks::position.asc()))
        .select(TaskView::as_select())
        .load(conn)?)
}

/// As [`task_views_of_runs`], with only a task's name, position, status, attempt and exit code:
/// for a page that shows no more of its tasks (the arrays, texts and times are most of what
/// decoding a page's tasks costs).
pub fn task_briefs_of_runs(conn: &mut PgConnection, run_ids: &[Uuid]) -> Result<Vec<TaskBrief>> {
    if run_ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(tasks::table
        .filter(tasks::run_id.eq_any(run_ids))
        .order((tasks::run_id.asc(), tasks::position.asc()))
        .select(TaskBrief::as_select())
        .load(conn)?)
}
