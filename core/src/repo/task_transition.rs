//! A task's change and the event about it, fenced by the run's lease, in one statement.
//!
//! Most of a run's writes are one task changing and one event saying so. As a transaction they
//! cost six round trips (BEGIN, the lease check, the task, the event, COMMIT, and the estimate's
//! read); as one statement, sent outside a transaction (a single statement is atomic), one.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, RETURNING, push_insert};
use crate::repo::runs::TaskChange;

/// Who must hold the run's lease for the change to apply.
pub struct Fence<'a> {
    pub run_id: Uuid,
    pub owner: &'a str,
    /// The run's delivery count when the holder claimed it.
    pub epoch: i32,
}

impl Fence<'_> {
    /// Pushes `id = <run> AND lease_owner = <owner> AND deliveries = <epoch>`: the condition on
    /// the run row by which every fenced statement (task change, log chunk, start, end) writes
    /// only while this holder's lease stands.
    pub(crate) fn push_condition<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Int4, Text, Uuid as SqlUuid};
        out.push_sql("id = ");
        out.push_bind_param::<SqlUuid, _>(&self.run_id)?;
        out.push_sql(" AND lease_owner = ");
        out.push_bind_param::<Text, _>(self.owner)?;
        out.push_sql(" AND deliveries = ");
        out.push_bind_param::<Int4, _>(&self.epoch)
    }
}

/// Applies `change` to task `step` and appends `ev` (already stamped with its estimate) with the
/// run's next sequence number, if `fence` still holds the lease; `None` when it does not (and
/// nothing was written). A task that does not exist fails the whole statement.
pub fn apply(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    step: &str,
    change: &TaskChange,
    ev: &NewEvent,
) -> Result<Option<EventRow>> {
    let at = Utc::now();
    Ok(Transition {
        fence,
        step,
        change,
        ev,
        at,
    }
    .get_result(conn)
    .optional()?)
}

struct Transition<'a> {
    fence: &'a Fence<'a>,
    step: &'a str,
    change: &'a TaskChange,
    ev: &'a NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(Transition<'a>);

/// `col = COALESCE($v, col)`: a column the change sets or leaves (it is never cleared).
fn keep_or_set<'b, ST, T>(
    mut out: AstPass<'_, 'b, Pg>,
    col: &str,
    v: &'b Option<T>,
) -> QueryResult<()>
where
    ST: diesel::sql_types::SqlType + diesel::sql_types::SingleValue,
    diesel::sql_types::Nullable<ST>: diesel::sql_types::SqlType,
    Option<T>: diesel::serialize::ToSql<diesel::sql_types::Nullable<ST>, Pg>,
    Pg: diesel::sql_types::HasSqlType<ST>,
{
    out.push_sql(col);
    out.push_sql(" = COALESCE(");
    out.push_bind_param::<diesel::sql_types::Nullable<ST>, _>(v)?;
    out.push_sql(", ");
    out.push_sql(col);
    out.push_sql(")");
    Ok(())
}

/// `col = CASE WHEN $set THEN $v ELSE col END`: a nullable column the change sets (possibly to
/// NULL) or leaves, with the same SQL either way so the statement is prepared once.
fn set_or_keep<'b, ST, T>(
    mut out: AstPass<'_, 'b, Pg>,
    col: &str,
    v: &'b Option<Option<T>>,
    none: &'b Option<T>,
) -> QueryResult<()>
where
    ST: diesel::sql_types::SqlType + diesel::sql_types::SingleValue,
    diesel::sql_types::Nullable<ST>: diesel::sql_types::SqlType,
    Option<T>: diesel::serialize::ToSql<diesel::sql_types::Nullable<ST>, Pg>,
    Pg: diesel::sql_types::HasSqlType<ST>,
{
    out.push_sql(", ");
    out.push_sql(col);
    out.push_sql(" = CASE WHEN ");
    out.push_bind_param::<diesel::sql_types::Bool, _>(if v.is_some() { &true } else { &false })?;
    out.push_sql(" THEN ");
    out.push_bind_param::<diesel::sql_types::Nullable<ST>, _>(v.as_ref().unwrap_or(none))?;
    out.push_sql(" ELSE ");
    out.push_sql(col);
    out.push_sql(" END");
    Ok(())
}

impl QueryFragment<Pg> for Transition<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // The run row first: bumping its event sequence under the lease's condition takes its
        // row lock, and a concurrent claim that moved the lease makes Postgres re-check the
        // condition on the new row version, so a fenced-off holder matches nothing.
        out.push_sql("WITH next AS (UPDATE runs SET last_seq = last_seq + 1 WHERE ");
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(" RETURNING id, last_seq, workflow_id), ");
        push_task_update(out.reborrow(), &self.fence.run_id, self.step, self.change)?;
        // With the lease held but no such task, the event's sequence number is NULL and the
        // statement fails on it, so nothing is written (no number spent on a missing event).
        push_insert(
            out.reborrow(),
            "next",
            "CASE WHEN task.one = 1 THEN next.last_seq END",
            self.ev,
            &self.at,
        )?;
        out.push_sql(" FROM next LEFT JOIN task ON TRUE RETURNING ");
        out.push_sql(RETURNING);
        Ok(())
    }
}

/// Pushes the CTE `task AS (UPDATE tasks SET ... RETURNING 1 AS one)`: `change` applied to
/// task `step` of `run_id`, only if the CTE `next` (the fenced run row) matched. Shared by the
/// statements that change a task under the lease.
pub(crate) fn push_task_update<'b>(
    out: AstPass<'_, 'b, Pg>,
    run_id: &'b Uuid,
    step: &'b str,
    c: &'b TaskChange,
) -> QueryResult<()> {
    push_task_update_as(out, "task", run_id, step, c)
}

/// As [`push_task_update`], the CTE named `cte`: for statements that change several tasks.
pub(crate) fn push_task_update_as<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    cte: &str,
    run_id: &'b Uuid,
    step: &'b str,
    c: &'b TaskChange,
) -> QueryResult<()> {
    use crate::db::schema::sql_types::PgTaskStatus;
    use diesel::sql_types::{Double, Int4, Int8, Jsonb, Text, Timestamptz, Uuid as SqlUuid};
    out.push_sql(cte);
    out.push_sql(" AS (UPDATE tasks SET ");
    keep_or_set::<PgTaskStatus, _>(out.reborrow(), "status", &c.status)?;
    out.push_sql(", ");
    keep_or_set::<Int4, _>(out.reborrow(), "attempt", &c.attempt)?;
    out.push_sql(", ");
    keep_or_set::<Text, _>(out.reborrow(), "log_tail", &c.log_tail)?;
    set_or_keep::<Timestamptz, _>(out.reborrow(), "started_at", &c.started_at, &None)?;
    set_or_keep::<Timestamptz, _>(out.reborrow(), "finished_at", &c.finished_at, &None)?;
    set_or_keep::<Int4, _>(out.reborrow(), "exit_code", &c.exit_code, &None)?;
    set_or_keep::<Text, _>(out.reborrow(), "error", &c.error, &None)?;
    set_or_keep::<Double, _>(
        out.reborrow(),
        "progress_percent",
        &c.progress_percent,
        &None,
    )?;
    set_or_keep::<Timestamptz, _>(out.reborrow(), "progress_at", &c.progress_at, &None)?;
    set_or_keep::<Text, _>(out.reborrow(), "output_manifest", &c.output_manifest, &None)?;
    set_or_keep::<Int8, _>(out.reborrow(), "output_bytes", &c.output_bytes, &None)?;
    set_or_keep::<Text, _>(out.reborrow(), "cache_key", &c.cache_key, &None)?;
    set_or_keep::<Jsonb, _>(out.reborrow(), "cache_parts", &c.cache_parts, &None)?;
    out.push_sql(" WHERE run_id = ");
    out.push_bind_param::<SqlUuid, _>(run_id)?;
    out.push_sql(" AND name = ");
    out.push_bind_param::<Text, _>(step)?;
    out.push_sql(" AND EXISTS (SELECT 1 FROM next) RETURNING 1 AS one) ");
    Ok(())
}
