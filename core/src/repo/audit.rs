//! Audit log rows: appending at the chain head, listing, and reading in chain order.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::audit::{Action, Outcome};
use crate::db::schema::audit_log;
use crate::error::Result;

/// Serialises appenders so that every row's `prev_hash` is the hash of the row before it.
const CHAIN_LOCK: i64 = 7346503;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = audit_log)]
pub struct AuditRow {
    pub seq: i64,
    pub at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub api_token_id: Option<Uuid>,
    pub actor_email: Option<String>,
    pub action: Action,
    pub resource: String,
    pub outcome: Outcome,
    pub ip: Option<String>,
    pub user_agent: Option<String>,
    pub detail: serde_json::Value,
    pub prev_hash: String,
    pub hash: String,
}

/// Takes the chain lock for the rest of the transaction and returns the head (seq, hash).
pub fn lock_head(conn: &mut PgConnection) -> Result<Option<(i64, String)>> {
    diesel::sql_query(format!("SELECT pg_advisory_xact_lock({CHAIN_LOCK})")).execute(conn)?;
    Ok(audit_log::table
        .order(audit_log::seq.desc())
        .select((audit_log::seq, audit_log::hash))
        .first(conn)
        .optional()?)
}

pub fn insert(conn: &mut PgConnection, row: &AuditRow) -> Result<()> {
    diesel::insert_into(audit_log::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Newest first, before `before` (a seq), optionally of one action and one actor.
pub fn list(
    conn: &mut PgConnection,
    before: Option<i64>,
    limit: i64,
    action: Option<Action>,
    actor: Option<Uuid>,
) -> Result<Vec<AuditRow>> {
    let mut q = audit_log::table
        .select(AuditRow::as_select())
        .order(audit_log::seq.desc())
        .limit(limit)
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_log::seq.lt(b));
    }
    if let Some(a) = action {
        q = q.filter(audit_log::action.eq(a));
    }
    if let Some(id) = actor {
        q = q.filter(audit_log::actor_id.eq(id));
    }
    Ok(q.load(conn)?)
}

/// Up to `limit` rows after `after` in chain order.
pub fn chain_page(conn: &mut PgConnection, after: i64, limit: i64) -> Result<Vec<AuditRow>> {
    Ok(audit_log::table
        .select(AuditRow::as_select())
        .filter(audit_log::seq.gt(after))
        .order(audit_log::seq.asc())
        .limit(limit)
        .load(conn)?)
}
