//! Runs, their tasks and run leases.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{runs, tasks};
use crate::error::Result;
use crate::runs::{RunStatus, RunTrigger, TaskStatus};

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = runs)]
pub struct RunRow {
    pub id: Uuid,
    pub workflow_id: Uuid,
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
    pub lease_owner: Option<String>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub deliveries: i32,
    pub last_seq: i64,
    pub cancel_requested_at: Option<DateTime<Utc>>,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<DateTime<Utc>>,
    /// Held back by its workflow's limits until then (a finishing run may wake it earlier).
    pub not_before: Option<DateTime<Utc>>,
    /// When the run was given up because its job kept failing to start.
    pub dead_lettered_at: Option<DateTime<Utc>>,
}

impl RunRow {
    pub fn status(&self) -> RunStatus {
        self.status
    }
}

/// What a task is shown with (a [`crate::runs::Task`]): no output manifest, cache key or
/// progress time.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskView {
    pub run_id: Uuid,
    pub name: String,
    pub position: i32,
    pub status: TaskStatus,
    pub attempt: i32,
    pub depends_on: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub log_tail: String,
    pub error: Option<String>,
    pub progress_percent: Option<f64>,
}

/// What a page that shows only each task's name, status, attempt and exit code reads of it.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskBrief {
    pub run_id: Uuid,
    pub name: String,
    pub position: i32,
    pub status: TaskStatus,
    pub attempt: i32,
    pub exit_code: Option<i32>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = tasks)]
pub struct TaskRow {
    pub run_id: Uuid,
    pub name: String,
    pub position: i32,
    pub status: TaskStatus,
    pub attempt: i32,
    pub depends_on: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub exit_code: Option<i32>,
    pub log_tail: String,
    pub error: Option<String>,
    /// The current attempt's latest `::progress` report.
    pub progress_percent: Option<f64>,
    pub progress_at: Option<DateTime<Utc>>,
    /// The manifest of the step's stored `/out` (succeeded or cached tasks).
    pub output_manifest: Option<String>,
    pub output_bytes: Option<i64>,
    /// The cache key the step was looked up under, and its parts' hashes (cached steps only).
    pub cache_key: Option<String>,
    pub cache_parts: Option<serde_json::Value>,
}

impl TaskRow {
    /// Task `position` of a run as the run's creation writes it: pending, never attempted.
    pub fn pending(run_id: Uuid, position: i32, name: String, depends_on: Vec<String>) -> Self {
        TaskRow {
            run_id,
            name,
            position,
            status: TaskStatus::Pending,
            attempt: 0,
            depends_on,
            started_at: None,
            finished_at: None,
            exit_code: None,
            log_tail: String::new(),
            error: None,
            progress_percent: None,
            progress_at: None,
            output_manifest: None,
            output_bytes: None,
            cache_key: None,
            cache_parts: None,
        }
    }

    pub fn status(&self) -> TaskStatus {
        self.status
    }
}

pub struct NewRun<'a> {
    pub id: Uuid,
    pub workflow_id: Uuid,
    pub version: i32,
    pub inputs: &'a serde_json::Value,
    pub idempotency_key: Option<&'a str>,
    pub no_cache: bool,
    /// `None` for runs no caller started (schedules).
    pub triggered_by: Option<Uuid>,
    pub trigger: RunTrigger,
    /// The schedule tick, for `RunTrigger::Schedule` runs.
    pub scheduled_for: Option<DateTime<Utc>>,
}

/// Inserts the run; `None` when a run of the same workflow already holds its `scheduled_for`
/// tick (the unique constraint settles races between schedulers without an error).
pub fn insert(conn: &mut PgConnection, run: &NewRun<'_>) -> Result<Option<RunRow>> {
    Ok(diesel::insert_into(runs::table)
        .values((
            runs::id.eq(run.id),
            runs::workflow_id.eq(run.workflow_id),
            runs::version.eq(run.version),
            runs::status.eq(RunStatus::Queued),
            runs::inputs.eq(run.inputs),
            runs::idempotency_key.eq(run.idempotency_key),
            runs::no_cache.eq(run.no_cache),
            runs::triggered_by.eq(run.triggered_by),
            runs::trigger.eq(run.trigger),
            runs::scheduled_for.eq(run.scheduled_for),
        ))
        .on_conflict((runs::workflow_id, runs::scheduled_for))
        .do_nothing()
        .returning(RunRow::as_returning())
        .get_result(conn)
        .optional()?)
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<RunRow>> {
    Ok(runs::table
        .find(id)
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find_by_idempotency_key(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    key: &str,
) -> Result<Option<RunRow>> {
    Ok(runs::table
        .filter(runs::workflow_id.eq(workflow_id))
        .filter(runs::idempotency_key.eq(key))
        .select(RunRow::as_select())
        .first(conn)
        .optional()?)
}

/// Runs newest first (ids are UUIDv7, so id order is creation order), before the id `before`.
pub fn list(
    conn: &mut PgConnection,
    before: Option<Uuid>,
    limit: i64,
    workflow_id: Option<Uuid>,
    status: Option<RunStatus>,
) -> Result<Vec<RunRow>> {
    let mut q = runs::table.select(RunRow::as_select()).into_boxed();
    if let Some(b) = before {
        q = q.filter(runs::id.lt(b));
    }
    if let Some(w) = workflow_id {
        q = q.filter(runs::workflow_id.eq(w));
    }
    if let Some(s) = status {
        q = q.filter(runs::status.eq(s));
    }
    Ok(q.order(runs::id.desc()).limit(limit).load(conn)?)
}

pub fn tasks_of(conn: &mut PgConnection, run_id: Uuid) -> Result<Vec<TaskRow>> {
    Ok(tasks::table
        .filter(tasks::run_id.eq(run_id))
        .order(tasks::position.asc())
        .select(TaskRow::as_select())
        .load(conn)?)
}

/// Moves an unfinished run to a terminal status; `false` if it had already ended.
pub fn finish(
    conn: &mut PgConnection,
    id: Uuid,
    status: RunStatus,
    error: Option<&str>,
) -> Result<bool> {
    Ok(crate::repo::run_state::finish(conn, id, status, error)?.is_some())
}

/// Marks a run as given up after too many deliveries.
pub fn mark_dead_lettered(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    diesel::update(runs::table.find(id))
        .set(runs::dead_lettered_at.eq(Some(chrono::Utc::now())))
        .execute(conn)?;
    Ok(())
}

/// A partial update of a task row: `None` leaves a column alone, `Some(None)` clears it.
#[derive(Debug, Clone, Default, AsChangeset)]
#[diesel(table_name = tasks)]
pub struct TaskChange {
    pub status: Option<TaskStatus>,
    pub attempt: Option<i32>,
    pub started_at: Option<Option<DateTime<Utc>>>,
    pub finished_at: Option<Option<DateTime<Utc>>>,
    pub exit_code: Option<Option<i32>>,
    pub log_tail: Option<String>,
    pub error: Option<Option<String>>,
    pub progress_percent: Option<Option<f64>>,
    pub progress_at: Option<Option<DateTime<Utc>>>,
    pub output_manifest: Option<Option<String>>,
    pub output_bytes: Option<Option<i64>>,
    pub cache_key: Option<Option<String>>,
    pub cache_parts: Option<Option<serde_json::Value>>,
}

impl TaskChange {
    /// Only the status.
    pub fn to(status: TaskStatus) -> Self {
        Self {
            status: Some(status),
            ..Default::default()
        }
    }

    /// A new attempt starts: everything the previous attempt left is cleared.
    pub fn attempt_started(attempt: i32) -> Self {
        Self {
            status: Some(TaskStatus::Running),
            attempt: Some(attempt),
            started_at: Some(Some(Utc::now())),
            finished_at: Some(None),
            exit_code: Some(None),
            error: Some(None),
            progress_percent: Some(None),
            progress_at: Some(None),
            ..Default::default()
        }
    }

    /// The task reached a terminal `status`, with `error` saying why if it did not succeed.
    pub fn finished(status: TaskStatus, error: Option<String>) -> Self {
        Self {
            status: Some(status),
            finished_at: Some(Some(Utc::now())),
            error: Some(error),
            ..Default::default()
        }
    }

    /// Back to `pending` for another pass (retry from failed steps).
    pub fn reset() -> Self {
        Self {
            status: Some(TaskStatus::Pending),
            finished_at: Some(None),
            exit_code: Some(None),
            error: Some(None),
            output_manifest: Some(None),
            output_bytes: Some(None),
            ..Default::default()
        }
    }

    /// `row` as this change leaves it: what the database holds after the change applies, so a
    /// holder of the run's lease can keep its tasks in memory rather than read them back.
    pub fn apply_to(&self, row: &mut TaskRow) {
        fn set<T: Clone>(col: &mut T, v: &Option<T>) {
            if let Some(v) = v {
                *col = v.clone();
            }
        }
        set(&mut row.status, &self.status);
        set(&mut row.attempt, &self.attempt);
        set(&mut row.started_at, &self.started_at);
        set(&mut row.finished_at, &self.finished_at);
        set(&mut row.exit_code, &self.exit_code);
        set(&mut row.log_tail, &self.log_tail);
        set(&mut row.error, &self.error);
        set(&mut row.progress_percent, &self.progress_percent);
        set(&mut row.progress_at, &self.progress_at);
        set(&mut row.output_manifest, &self.output_manifest);
        set(&mut row.output_bytes, &self.output_bytes);
        set(&mut row.cache_key, &self.cache_key);
        set(&mut row.cache_parts, &self.cache_parts);
    }

    /// The step's latest self-reported progress.
    pub fn progress(percent: f64) -> Self {
        Self {
            progress_percent: Some(Some(percent)),
            progress_at: Some(Some(Utc::now())),
            ..Default::default()
        }
    }
}

pub fn update_task(
    conn: &mut PgConnection,
    run_id: Uuid,
    name: &str,
    change: &TaskChange,
) -> Result<TaskRow> {
    Ok(diesel::update(
        tasks::table
            .filter(tasks::run_id.eq(run_id))
            .filter(tasks::name.eq(name)),
    )
    .set(change)
    .returning(TaskRow::as_returning())
    .get_result(conn)?)
}

pub fn find_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<RunRow>> {
    Ok(runs::table
        .find(id)
        .select(RunRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

pub fn request_cancel(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    diesel::update(
        runs::table
            .find(id)
            .filter(runs::cancel_requested_at.is_null()),
    )
    .set(runs::cancel_requested_at.eq(Some(Utc::now())))
    .execute(conn)?;
    Ok(())
}

/// Puts a finished run back in the queue for another pass (retry from failed steps).
pub fn requeue(conn: &mut PgConnection, id: Uuid) -> Result<RunRow> {
    Ok(diesel::update(runs::table.find(id))
        .set((
            runs::status.eq(RunStatus::Queued),
            runs::finished_at.eq(None::<DateTime<Utc>>),
            runs::error.eq(None::<String>),
            runs::cancel_requested_at.eq(None::<DateTime<Utc>>),
            runs::lease_owner.eq(None::<String>),
            runs::lease_expires_at.eq(None::<DateTime<Utc>>),
        ))
        .returning(RunRow::as_returning())
        .get_result(conn)?)
}
