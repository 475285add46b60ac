//! Counts behind per-workflow run limits (`maxConcurrentRuns`, `rateLimit`): how many of a
//! workflow's runs execute, started lately, or wait ahead of a given run; and holding a run back.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Nullable, Timestamptz, Uuid as SqlUuid};
use uuid::Uuid;

use crate::db::schema::{runs, workflows};
use crate::error::Result;
use crate::runs::RunStatus;

/// A workflow's limits, as configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Limits {
    pub max_concurrent_runs: Option<i32>,
    /// `(runs, per seconds)`.
    pub rate: Option<(i32, i32)>,
}

impl Limits {
    pub fn any(&self) -> bool {
        self.max_concurrent_runs.is_some() || self.rate.is_some()
    }
}

/// The run's workflow and its `maxConcurrentRuns`, whatever the run's status, in one
/// statement; `None` if there is no such run.
pub fn max_concurrent_of_run(
    conn: &mut PgConnection,
    run_id: Uuid,
) -> Result<Option<(Uuid, Option<i32>)>> {
    Ok(runs::table
        .inner_join(workflows::table)
        .filter(runs::id.eq(run_id))
        .select((workflows::id, workflows::max_concurrent_runs))
        .first(conn)
        .optional()?)
}

/// The run's workflow, status and that workflow's limits, when the run is unfinished.
pub fn of_run(conn: &mut PgConnection, run_id: Uuid) -> Result<Option<(Uuid, RunStatus, Limits)>> {
    #[allow(clippy::type_complexity)]
    let row: Option<(Uuid, RunStatus, Option<i32>, Option<i32>, Option<i32>)> = runs::table
        .inner_join(workflows::table)
        .filter(runs::id.eq(run_id))
        .filter(runs::status.eq_any(RunStatus::UNFINISHED))
        .select((
            workflows::id,
            runs::status,
            workflows::max_concurrent_runs,
            workflows::rate_limit_runs,
            workflows::rate_limit_seconds,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(wf, status, max, runs, secs)| {
        let rate = runs.zip(secs);
        (
            wf,
            status,
            Limits {
                max_concurrent_runs: max,
                rate,
            },
        )
    }))
}

/// Serialises limit decisions of one workflow until the transaction ends. `NO KEY UPDATE`
/// does not block inserting runs that reference the workflow.
pub fn lock_workflow(conn: &mut PgConnection, workflow_id: Uuid) -> Result<()> {
    workflows::table
        .find(workflow_id)
        .select(workflows::id)
        .for_no_key_update()
        .first::<Uuid>(conn)?;
    Ok(())
}

/// What the limit decision for one run needs to know, read in one statement.
#[derive(Debug, Clone, QueryableByName)]
pub struct Occupancy {
    /// Runs of the workflow executing (other than this one): `running`, or claimed and about
    /// to start.
    #[diesel(sql_type = BigInt)]
    pub active: i64,
    /// Unclaimed queued runs of the workflow created before this one: they go first.
    #[diesel(sql_type = BigInt)]
    pub ahead: i64,
    /// Runs of the workflow that started within the last `window` seconds (or are claimed and
    /// about to start).
    #[diesel(sql_type = BigInt)]
    pub started_in_window: i64,
    /// The earliest start within the window: when it leaves the window a start is free again.
    #[diesel(sql_type = Nullable<Timestamptz>)]
    pub oldest_start_in_window: Option<DateTime<Utc>>,
}

pub fn occupancy(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    run_id: Uuid,
    window_seconds: i32,
) -> Result<Occupancy> {
    Ok(diesel::sql_query(
        "WITH me AS (SELECT created_at, id FROM runs WHERE id = $2) \
         SELECT \
           (SELECT count(*) FROM runs r WHERE r.workflow_id = $1 AND r.id <> $2 \
              AND (r.status = 'running' OR (r.status = 'queued' AND r.lease_expires_at > now()))) AS active, \
           (SELECT count(*) FROM runs r, me WHERE r.workflow_id = $1 AND r.status = 'queued' \
              AND (r.lease_expires_at IS NULL OR r.lease_expires_at <= now()) \
              AND (r.created_at, r.id) < (me.created_at, me.id)) AS ahead, \
           (SELECT count(*) FROM runs r WHERE r.workflow_id = $1 AND r.id <> $2 \
              AND (r.started_at > now() - make_interval(secs => $3) \
                   OR (r.status = 'queued' AND r.lease_expires_at > now()))) AS started_in_window, \
           (SELECT min(r.started_at) FROM runs r WHERE r.workflow_id = $1 \
              AND r.started_at > now() - make_interval(secs => $3)) AS oldest_start_in_window",
    )
    .bind::<SqlUuid, _>(workflow_id)
    .bind::<SqlUuid, _>(run_id)
    .bind::<Double, _>(window_seconds as f64)
    .get_result(conn)?)
}

/// Holds a queued run back until `until`; the reconciler does not re-deliver it before then.
pub fn hold_back(conn: &mut PgConnection, run_id: Uuid, until: DateTime<Utc>) -> Result<()> {
    diesel::update(runs::table.find(run_id))
        .set(runs::not_before.eq(Some(until)))
        .execute(conn)?;
    Ok(())
}

/// Runs of the workflow executing now: `running`, or claimed and about to start.
pub fn active(conn: &mut PgConnection, workflow_id: Uuid) -> Result<i64> {
    #[derive(QueryableByName)]
    struct N {
        #[diesel(sql_type = BigInt)]
        n: i64,
    }
    let n: N = diesel::sql_query(
        "SELECT count(*) AS n FROM runs WHERE workflow_id = $1 \
           AND (status = 'running' OR (status = 'queued' AND lease_expires_at > now()))",
    )
    .bind::<SqlUuid, _>(workflow_id)
    .get_result(conn)?;
    Ok(n.n)
}

/// The oldest `n` runs of the workflow held back by its limits, released for delivery now.
pub fn release_waiting(conn: &mut PgConnection, workflow_id: Uuid, n: i64) -> Result<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = SqlUuid)]
        id: Uuid,
    }
    let ids: Vec<Id> = diesel::sql_query(
        "UPDATE runs SET not_before = NULL WHERE id IN ( \
           SELECT id FROM runs WHERE workflow_id = $1 AND status = 'queued' \
             AND not_before IS NOT NULL \
             AND (lease_expires_at IS NULL OR lease_expires_at <= now()) \
           ORDER BY created_at, id LIMIT $2 FOR UPDATE SKIP LOCKED) \
         RETURNING id",
    )
    .bind::<SqlUuid, _>(workflow_id)
    .bind::<BigInt, _>(n)
    .load(conn)?;
    Ok(ids.into_iter().map(|r| r.id).collect())
}
