//! Audit log rows: appending at the chain head, listing, and reading in chain order.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::audit::{Action, Outcome};
use crate::db::schema::audit_log;
use crate::db::schema::sql_types::{PgAuditAction, PgAuditOutcome};
use crate::error::{Error, Result};

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

/// Appends `row` (its `seq`, `prev_hash` and `hash` are ignored) at the head of the chain in
/// one statement and returns it as stored. The statement bumps the one-row chain head, whose
/// row lock (held until the transaction ends) orders appenders; under READ COMMITTED a waiting
/// appender re-reads the head its predecessor committed, so the chain never forks. The new
/// row's hash is SHA-256 over `[seq,<content>,"prev_hash"]`, `content` being the row's
/// canonical content without those two (`crate::audit::hash_of` computes the same).
pub fn append(conn: &mut PgConnection, row: &AuditRow, content: &str) -> Result<AuditRow> {
    let head: Option<Head> = AppendAudit { row, content }.get_result(conn).optional()?;
    let head =
        head.ok_or_else(|| Error::Internal("the audit chain's head row is missing".into()))?;
    Ok(AuditRow {
        seq: head.seq,
        prev_hash: head.prev_hash,
        hash: head.hash,
        ..row.clone()
    })
}

#[derive(QueryableByName)]
struct Head {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    prev_hash: String,
    #[diesel(sql_type = diesel::sql_types::Text)]
    hash: String,
}

/// The statement of [`append`], as a query type so that diesel prepares it once per
/// connection (it never caches `sql_query`'s statements): it runs in every audited change.
struct AppendAudit<'a> {
    row: &'a AuditRow,
    content: &'a str,
}

crate::prepared_statement!(AppendAudit<'a>);

impl QueryFragment<Pg> for AppendAudit<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        out.push_sql("WITH ");
        push_head(out.reborrow(), self.content, None)?;
        out.push_sql(" ");
        push_insert(out.reborrow(), self.row)?;
        out.push_sql(" RETURNING seq, prev_hash, hash");
        Ok(())
    }
}

/// Locks the audit chain's head until the transaction ends and returns its `seq` and hash:
/// the caller places rows after them and moves the head in the same transaction
/// (`repo::run_create_many`). Under READ COMMITTED a waiting caller gets the head its
/// predecessor committed, so the chain never forks.
pub fn lock_head(conn: &mut PgConnection) -> Result<(i64, String)> {
    let head: Option<LockedHead> =
        diesel::sql_query("SELECT seq, hash FROM audit_chain_head FOR UPDATE")
            .get_result(conn)
            .optional()?;
    head.map(|h| (h.seq, h.hash))
        .ok_or_else(|| Error::Internal("the audit chain's head row is missing".into()))
}

#[derive(QueryableByName)]
struct LockedHead {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    seq: i64,
    #[diesel(sql_type = diesel::sql_types::Text)]
    hash: String,
}

/// Pushes the CTE `head AS (UPDATE audit_chain_head ... RETURNING seq, prev_hash, hash)` that
/// bumps the chain head for a row of canonical `content`; with `guard` (a CTE name), only when
/// that CTE returned a row. For statements that append their own audit row (`run_create`).
pub(crate) fn push_head<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    content: &'b str,
    guard: Option<&'static str>,
) -> QueryResult<()> {
    use diesel::sql_types::Text;
    out.push_sql(
        "head AS (UPDATE audit_chain_head SET seq = seq + 1, prev_hash = hash, \
         hash = encode(sha256(convert_to('[' || (seq + 1)::text || ',' || ",
    );
    out.push_bind_param::<Text, _>(content)?;
    out.push_sql(" || ',\"' || hash || '\"]', 'UTF8')), 'hex')");
    if let Some(cte) = guard {
        out.push_sql(" WHERE EXISTS (SELECT 1 FROM ");
        out.push_sql(cte);
        out.push_sql(")");
    }
    out.push_sql(" RETURNING seq, prev_hash, hash)");
    Ok(())
}

/// Pushes `INSERT INTO audit_log (...) SELECT ... FROM head`: `row` (without its `seq`,
/// `prev_hash` and `hash`) placed where [`push_head`] bumped the head.
pub(crate) fn push_insert<'b>(mut out: AstPass<'_, 'b, Pg>, r: &'b AuditRow) -> QueryResult<()> {
    use diesel::sql_types::{Jsonb, Nullable, Text, Timestamptz, Uuid as SqlUuid};
    out.push_sql(
        "INSERT INTO audit_log (seq, at, actor_id, api_token_id, actor_email, action, \
         resource, outcome, ip, user_agent, detail, prev_hash, hash) SELECT head.seq, ",
    );
    out.push_bind_param::<Timestamptz, _>(&r.at)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<SqlUuid>, _>(&r.actor_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<SqlUuid>, _>(&r.api_token_id)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Text>, _>(&r.actor_email)?;
    out.push_sql(", ");
    out.push_bind_param::<PgAuditAction, _>(&r.action)?;
    out.push_sql(", ");
    out.push_bind_param::<Text, _>(&r.resource)?;
    out.push_sql(", ");
    out.push_bind_param::<PgAuditOutcome, _>(&r.outcome)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Text>, _>(&r.ip)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Text>, _>(&r.user_agent)?;
    out.push_sql(", ");
    out.push_bind_param::<Jsonb, _>(&r.detail)?;
    out.push_sql(", head.prev_hash, head.hash FROM head");
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
