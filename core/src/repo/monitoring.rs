//! Monitoring reads and the worker heartbeat table: cheap, indexed statements only.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable};

use crate::db::schema::worker_heartbeats;
use crate::error::Result;

/// One worker as it last announced itself.
#[derive(Debug, Clone, PartialEq, Queryable, Selectable, Insertable)]
#[diesel(table_name = worker_heartbeats)]
pub struct WorkerRow {
    pub name: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    pub busy_slots: i32,
    pub total_slots: i32,
}

/// Inserts or refreshes a worker's row (its start time is kept from the first beat).
pub fn beat(conn: &mut PgConnection, row: &WorkerRow) -> Result<()> {
    use worker_heartbeats::dsl as w;
    diesel::insert_into(w::worker_heartbeats)
        .values(row)
        .on_conflict(w::name)
        .do_update()
        .set((
            w::version.eq(&row.version),
            w::last_heartbeat_at.eq(row.last_heartbeat_at),
            w::busy_slots.eq(row.busy_slots),
            w::total_slots.eq(row.total_slots),
        ))
        .execute(conn)?;
    Ok(())
}

/// Forgets workers silent for longer than `older_than_seconds` (long-gone processes).
pub fn prune(conn: &mut PgConnection, older_than_seconds: i64) -> Result<usize> {
    use worker_heartbeats::dsl as w;
    let cutoff = Utc::now() - chrono::Duration::seconds(older_than_seconds);
    Ok(
        diesel::delete(w::worker_heartbeats.filter(w::last_heartbeat_at.lt(cutoff)))
            .execute(conn)?,
    )
}

/// A worker leaving cleanly removes its row.
pub fn remove(conn: &mut PgConnection, name: &str) -> Result<()> {
    use worker_heartbeats::dsl as w;
    diesel::delete(w::worker_heartbeats.filter(w::name.eq(name))).execute(conn)?;
    Ok(())
}

/// Every known worker, most recently seen first.
pub fn workers(conn: &mut PgConnection) -> Result<Vec<WorkerRow>> {
    use worker_heartbeats::dsl as w;
    Ok(w::worker_heartbeats
        .order((w::last_heartbeat_at.desc(), w::name))
        .select(WorkerRow::as_select())
        .load(conn)?)
}

/// Counts and duration percentiles of the runs created in a window.
#[derive(Debug, Clone, PartialEq, QueryableByName)]
pub struct RunStatsRow {
    #[diesel(sql_type = BigInt)]
    pub total: i64,
    #[diesel(sql_type = BigInt)]
    pub succeeded: i64,
    #[diesel(sql_type = BigInt)]
    pub failed: i64,
    #[diesel(sql_type = BigInt)]
    pub cancelled: i64,
    #[diesel(sql_type = BigInt)]
    pub timed_out: i64,
    #[diesel(sql_type = BigInt)]
    pub running: i64,
    #[diesel(sql_type = Nullable<Double>)]
    pub p50: Option<f64>,
    #[diesel(sql_type = Nullable<Double>)]
    pub p95: Option<f64>,
    #[diesel(sql_type = BigInt)]
    pub cached_tasks: i64,
    #[diesel(sql_type = BigInt)]
    pub executed_tasks: i64,
}

/// The `runStats` statement: runs found through `runs_created_at`, their tasks through the
/// tasks' primary key. `$1` is the window in seconds.
pub const RUN_STATS_SQL: &str = "
WITH w AS (
    SELECT id, status, started_at, finished_at FROM runs
    WHERE created_at >= now() - make_interval(secs => $1)
), t AS (
    SELECT tasks.status FROM tasks JOIN w ON tasks.run_id = w.id
)
SELECT
    count(*) AS total,
    count(*) FILTER (WHERE status = 'succeeded') AS succeeded,
    count(*) FILTER (WHERE status = 'failed') AS failed,
    count(*) FILTER (WHERE status = 'cancelled') AS cancelled,
    count(*) FILTER (WHERE status = 'timed_out') AS timed_out,
    count(*) FILTER (WHERE status = 'running') AS running,
    percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
        FILTER (WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS p50,
    percentile_cont(0.95) WITHIN GROUP (ORDER BY extract(epoch FROM finished_at - started_at)::float8)
        FILTER (WHERE finished_at IS NOT NULL AND started_at IS NOT NULL) AS p95,
    (SELECT count(*) FROM t WHERE status = 'cached') AS cached_tasks,
    (SELECT count(*) FROM t WHERE status IN ('succeeded', 'failed', 'cached')) AS executed_tasks
FROM w";

pub fn run_stats(conn: &mut PgConnection, window_seconds: i64) -> Result<RunStatsRow> {
    Ok(diesel::sql_query(RUN_STATS_SQL)
        .bind::<Double, _>(window_seconds as f64)
        .get_result(conn)?)
}

/// When the oldest run still waiting to start was created (through `runs_status_id`).
pub fn oldest_queued(conn: &mut PgConnection) -> Result<Option<DateTime<Utc>>> {
    use crate::db::schema::runs::dsl as r;
    use crate::runs::RunStatus;
    Ok(r::runs
        .filter(r::status.eq(RunStatus::Queued))
        .select(diesel::dsl::min(r::created_at))
        .first(conn)?)
}

/// Runs given up after too many deliveries (dead-lettered).
pub fn dead_lettered(conn: &mut PgConnection) -> Result<i64> {
    use crate::db::schema::runs::dsl as r;
    Ok(r::runs
        .filter(r::dead_lettered_at.is_not_null())
        .count()
        .get_result(conn)?)
}
