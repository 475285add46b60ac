//! The scheduler's data: its leader lease (with the fencing epoch) and the schedules it fires.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text, Timestamptz};
use uuid::Uuid;

use crate::db::schema::{scheduler_lease, workflows};
use crate::error::Result;
use crate::repo::workflows::WorkflowRow;

/// The database's clock: every process measures ticks against the same one.
pub fn db_now(conn: &mut PgConnection) -> Result<DateTime<Utc>> {
    #[derive(QueryableByName)]
    struct Now {
        #[diesel(sql_type = Timestamptz)]
        now: DateTime<Utc>,
    }
    let row: Now = diesel::sql_query("SELECT clock_timestamp() AS now").get_result(conn)?;
    Ok(row.now)
}

/// Takes or renews the lease for `holder`. Returns the epoch it holds, or `None` while another
/// holder's lease is live. The epoch changes whenever the lease changes hands, including when
/// the same holder comes back after letting it expire, so fires begun under an older tenure
/// are refused.
pub fn acquire_lease(
    conn: &mut PgConnection,
    holder: &str,
    ttl_seconds: f64,
) -> Result<Option<i64>> {
    #[derive(QueryableByName)]
    struct Epoch {
        #[diesel(sql_type = BigInt)]
        epoch: i64,
    }
    let row: Option<Epoch> = diesel::sql_query(
        "UPDATE scheduler_lease SET \
           epoch = CASE WHEN holder = $1 AND expires_at >= clock_timestamp() \
                        THEN epoch ELSE epoch + 1 END, \
           holder = $1, \
           expires_at = clock_timestamp() + make_interval(secs => $2) \
         WHERE id = 1 AND (holder = $1 OR expires_at < clock_timestamp()) \
         RETURNING epoch",
    )
    .bind::<Text, _>(holder)
    .bind::<Double, _>(ttl_seconds)
    .get_result(conn)
    .optional()?;
    Ok(row.map(|r| r.epoch))
}

/// Gives the lease up at once (on shutdown), so another process takes over without waiting.
pub fn release_lease(conn: &mut PgConnection, holder: &str) -> Result<()> {
    diesel::update(scheduler_lease::table.filter(scheduler_lease::holder.eq(holder)))
        .set(scheduler_lease::expires_at.eq(DateTime::<Utc>::UNIX_EPOCH))
        .execute(conn)?;
    Ok(())
}

/// Whether `holder` still holds the lease at `epoch`. Locks the lease row (shared) until the
/// caller's transaction ends, so no one can take the lease over while a fire is committing:
/// a takeover waits for the fire, then sees its effects.
pub fn holds_epoch(conn: &mut PgConnection, holder: &str, epoch: i64) -> Result<bool> {
    let current: Option<(String, i64)> = scheduler_lease::table
        .find(1i16)
        .select((scheduler_lease::holder, scheduler_lease::epoch))
        .for_share()
        .first(conn)
        .optional()?;
    Ok(current.is_some_and(|(h, e)| h == holder && e == epoch))
}

/// Workflows with an enabled schedule that are not archived.
pub fn enabled(conn: &mut PgConnection) -> Result<Vec<WorkflowRow>> {
    Ok(workflows::table
        .filter(workflows::schedule_enabled.eq(true))
        .filter(workflows::archived_at.is_null())
        .select(WorkflowRow::as_select())
        .load(conn)?)
}

/// Marks the schedule's ticks up to `through` as handled.
pub fn advance(conn: &mut PgConnection, id: Uuid, through: DateTime<Utc>) -> Result<()> {
    diesel::update(workflows::table.find(id))
        .set(workflows::schedule_fired_through.eq(Some(through)))
        .execute(conn)?;
    Ok(())
}
