//! The job outbox: rows written in the run's transaction and relayed to the Redis queue.

use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::job_outbox;
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
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

/// Locks up to `limit` unsent rows; other relays skip them rather than wait.
pub fn lock_unsent(conn: &mut PgConnection, limit: i64) -> Result<Vec<OutboxRow>> {
    Ok(job_outbox::table
        .filter(job_outbox::sent_at.is_null())
        .order(job_outbox::id.asc())
        .limit(limit)
        .select(OutboxRow::as_select())
        .for_update()
        .skip_locked()
        .load(conn)?)
}

pub fn mark_sent(conn: &mut PgConnection, ids: &[i64]) -> Result<()> {
    diesel::update(job_outbox::table.filter(job_outbox::id.eq_any(ids)))
        .set(job_outbox::sent_at.eq(Some(chrono::Utc::now())))
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
