//! Run leases: a worker holds a run's lease to write to it; leases expire, are renewed and
//! handed back, and unleased unfinished runs are found again by the reconciler.

use chrono::Utc;
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::runs;
use crate::db::schema::sql_types::PgRunStatus;
use crate::error::Result;
use crate::repo::runs::RunRow;
use crate::runs::RunStatus;

/// Takes (or re-takes) the run's lease for `owner` if the run is unfinished and no other live
/// lease holds it. Returns the run as claimed, or `None` when someone else owns it or it ended.
pub fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Option<RunRow>> {
    let sql = "UPDATE runs SET lease_owner = $2, \
               lease_expires_at = now() + make_interval(secs => $3), \
               deliveries = deliveries + 1 \
               WHERE id = $1 AND status IN ($4, $5) \
               AND (lease_owner IS NULL OR lease_owner = $2 OR lease_expires_at < now()) \
               RETURNING *";
    let [queued, running] = RunStatus::UNFINISHED;
    Ok(diesel::sql_query(sql)
        .bind::<diesel::sql_types::Uuid, _>(id)
        .bind::<diesel::sql_types::Text, _>(owner)
        .bind::<diesel::sql_types::Double, _>(lease_seconds as f64)
        .bind::<PgRunStatus, _>(queued)
        .bind::<PgRunStatus, _>(running)
        .get_result::<RunRow>(conn)
        .optional()?)
}

/// Extends the lease. `None` means it was lost (expired and taken, or the run ended);
/// otherwise whether a cancellation of the run was requested, read in the same statement.
pub fn renew_lease(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Option<bool>> {
    #[derive(QueryableByName)]
    struct Renewed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        cancel_requested: bool,
    }
    let renewed: Option<Renewed> = diesel::sql_query(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_owner = $2 AND status IN ($4, $5) \
         RETURNING cancel_requested_at IS NOT NULL AS cancel_requested",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(owner)
    .bind::<diesel::sql_types::Double, _>(lease_seconds as f64)
    .bind::<PgRunStatus, _>(RunStatus::Queued)
    .bind::<PgRunStatus, _>(RunStatus::Running)
    .get_result(conn)
    .optional()?;
    Ok(renewed.map(|r| r.cancel_requested))
}

/// Gives the lease up by expiring it now, so the reconciler hands the run to another worker.
pub fn release_lease(conn: &mut PgConnection, id: Uuid, owner: &str) -> Result<()> {
    diesel::update(
        runs::table
            .filter(runs::id.eq(id))
            .filter(runs::lease_owner.eq(owner)),
    )
    .set(runs::lease_expires_at.eq(Some(Utc::now() - chrono::Duration::seconds(1))))
    .execute(conn)?;
    Ok(())
}

/// Unfinished runs the reconciler should enqueue again: those whose lease expired (their worker
/// died or gave them back) and that were not enqueued in the last `resend_after` seconds, and
/// never-leased ones not enqueued for `lost_after` seconds (their job was lost with Redis).
pub fn orphaned(
    conn: &mut PgConnection,
    resend_after: i64,
    lost_after: i64,
    limit: i64,
) -> Result<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT r.id FROM runs r WHERE r.status IN ($4, $5) \
         AND NOT EXISTS (SELECT 1 FROM job_outbox o WHERE o.run_id = r.id AND o.sent_at IS NULL) \
         AND ((r.lease_expires_at < now() AND NOT EXISTS (SELECT 1 FROM job_outbox o \
                 WHERE o.run_id = r.id AND o.sent_at > now() - make_interval(secs => $1))) \
           OR (r.lease_expires_at IS NULL AND NOT EXISTS (SELECT 1 FROM job_outbox o \
                 WHERE o.run_id = r.id AND o.sent_at > now() - make_interval(secs => $2)))) \
         ORDER BY r.id LIMIT $3",
    )
    .bind::<diesel::sql_types::Double, _>(resend_after as f64)
    .bind::<diesel::sql_types::Double, _>(lost_after as f64)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .bind::<PgRunStatus, _>(RunStatus::Queued)
    .bind::<PgRunStatus, _>(RunStatus::Running)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

/// Locks the run row and tells whether `owner` still holds its lease.
pub fn holds_lease(conn: &mut PgConnection, id: Uuid, owner: &str) -> Result<bool> {
    let holder: Option<Option<String>> = runs::table
        .find(id)
        .select(runs::lease_owner)
        .for_update()
        .first(conn)
        .optional()?;
    Ok(matches!(holder, Some(Some(h)) if h == owner))
}

/// Whether a worker holds a live lease on the run, judged by the database clock (the one that
/// set `lease_expires_at`), not the caller's.
pub fn lease_live(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    let live = runs::table
        .find(id)
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "lease_expires_at > now()",
        ))
        .count()
        .get_result::<i64>(conn)?;
    Ok(live == 1)
}
