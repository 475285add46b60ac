//! The job outbox: rows written in the run's transaction and relayed to the Redis queue.

use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::job_outbox;
use crate::error::Result;

#[derive(Debug, Clone, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = job_outbox)]
pub struct OutboxRow {
    pub id: i64,
    pub run_id: Uuid,
    pub payload: serde_json::Value,
    pub attempts: i32,
}

pub fn insert(conn: &mut PgConnection, run_id: Uuid, payload: &serde_json::Value) -> Result<()> {
    diesel::insert_into(job_outbox::table)
        .values((
            job_outbox::run_id.eq(run_id),
            job_outbox::payload.eq(payload),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes up to `limit` unsent rows, oldest first, marking them sent: one statement, which
/// other relays skip past rather than wait for. A row taken but never pushed (the relay died
/// in between) is what the reconciler finds: its run is re-enqueued once the row has been
/// sent for a while with no job on the queue; a push that failed gives its rows back
/// ([`unmark`]).
pub fn take_unsent(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    let mut rows: Vec<OutboxRow> = diesel::sql_query(
        "UPDATE job_outbox SET sent_at = now() WHERE id IN (SELECT id FROM job_outbox \
         WHERE sent_at IS NULL ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED) \
         RETURNING id, run_id, payload, attempts",
    )
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .load(conn)?;
    rows.sort_by_key(|r| r.id);
    Ok(rows)
}

/// Gives rows taken by [`take_unsent`] back to the relay (their push failed).
pub fn unmark(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    diesel::update(job_outbox::table.filter(job_outbox::id.eq_any(ids)))
        .set(job_outbox::sent_at.eq(None::<chrono::DateTime<chrono::Utc>>))
        .execute(conn)?;
    Ok(())
}

/// Sets a row aside that can never be sent (its payload is unreadable), keeping the reason.
pub fn set_aside(conn: &mut PgConnection, id: i64, error: &str) -> Result<()> {
    diesel::update(job_outbox::table.find(id))
        .set((
            job_outbox::attempts.eq(job_outbox::attempts + 1),
            job_outbox::last_error.eq(error),
            job_outbox::sent_at.eq(Some(chrono::Utc::now())),
        ))
        .execute(conn)?;
    Ok(())
}
