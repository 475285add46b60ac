//! Creating a queued run: the run, its tasks, its first event, its outbox row and its audit
//! record in one statement (one round trip, prepared once per connection), as every trigger does.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use crate::error::Result;
use crate::repo::audit::AuditRow;
use crate::repo::events::{EventRow, NewEvent};
use crate::repo::runs::{NewRun, RunRow};
use crate::runs::{RunStatus, TaskStatus};

/// Inserts `run` (queued, its first event already counted in `last_seq`), its `steps` (name,
/// dependencies) as pending tasks in order, `first` as event 1 and the outbox row carrying
/// `job`, and appends `audit` (with its canonical content) to the audit chain. `None` when a run
/// of the same workflow already holds its `scheduled_for` (then nothing is written). An
/// `idempotency_key` already used fails with a unique violation.
///
/// Outside a transaction the statement is one: the audit chain's head, locked by its append, is
/// then held only while Postgres runs the statement and commits, never across a round trip.
/// With every trigger appending to the one chain, that lock is what orders them.
pub fn create(
    conn: &mut PgConnection,
    run: &NewRun<'_>,
    steps: &[(String, Vec<String>)],
    first: &NewEvent,
    job: &serde_json::Value,
    audit: (&AuditRow, &str),
) -> Result<Option<(RunRow, EventRow)>> {
    let tasks = tasks_document(steps);
    // Postgres keeps microseconds: the event as returned is the event as stored.
    let at = chrono::SubsecRound::trunc_subsecs(Utc::now(), 6);
    let row: Option<RunRow> = CreateRun {
        run,
        tasks: &tasks,
        first,
        at,
        job,
        audit: audit.0,
        audit_content: audit.1,
    }
    .get_result(conn)
    .optional()?;
    Ok(row.map(|r| {
        let ev = EventRow::first(&r, first, at);
        (r, ev)
    }))
}

/// `steps` (name, dependencies) as the statements that create runs read them: `[{n, d}]`, in
/// order (a task's position is its index).
pub(crate) fn tasks_document(steps: &[(String, Vec<String>)]) -> serde_json::Value {
    serde_json::Value::Array(
        steps
            .iter()
            .map(|(name, deps)| serde_json::json!({ "n": name, "d": deps }))
            .collect(),
    )
}

/// The statement of [`create`]. The inserts are data-modifying CTEs of one statement: the
/// tasks', event's and outbox row's foreign keys are checked at its end, when the run exists;
/// each reads the run from `r`, so a run the `ON CONFLICT` skipped writes nothing else (the
/// audit head is bumped only when `r` holds the run).
struct CreateRun<'a> {
    run: &'a NewRun<'a>,
    tasks: &'a serde_json::Value,
    first: &'a NewEvent,
    at: DateTime<Utc>,
    job: &'a serde_json::Value,
    audit: &'a AuditRow,
    audit_content: &'a str,
}

crate::prepared_statement!(CreateRun<'a>);

impl QueryFragment<Pg> for CreateRun<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use crate::db::schema::sql_types::{PgRunStatus, PgRunTrigger, PgTaskStatus};
        use diesel::sql_types::{Bool, Int4, Jsonb, Nullable, Text, Timestamptz, Uuid};
        let r = self.run;
        out.push_sql(
            "WITH r AS (INSERT INTO runs (id, workflow_id, version, status, inputs, \
             idempotency_key, no_cache, triggered_by, trigger, scheduled_for, last_seq) VALUES (",
        );
        out.push_bind_param::<Uuid, _>(&r.id)?;
        out.push_sql(", ");
        out.push_bind_param::<Uuid, _>(&r.workflow_id)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&r.version)?;
        out.push_sql(", ");
        out.push_bind_param::<PgRunStatus, _>(&RunStatus::Queued)?;
        out.push_sql(", ");
        out.push_bind_param::<Jsonb, _>(r.inputs)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Text>, _>(&r.idempotency_key)?;
        out.push_sql(", ");
        out.push_bind_param::<Bool, _>(&r.no_cache)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Uuid>, _>(&r.triggered_by)?;
        out.push_sql(", ");
        out.push_bind_param::<PgRunTrigger, _>(&r.trigger)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<Timestamptz>, _>(&r.scheduled_for)?;
        out.push_sql(
            ", 1) ON CONFLICT (workflow_id, scheduled_for) DO NOTHING RETURNING *), \
             t AS (INSERT INTO tasks (run_id, name, position, status, depends_on) \
             SELECT r.id, s.value->>'n', (s.ord - 1)::int, ",
        );
        out.push_bind_param::<PgTaskStatus, _>(&TaskStatus::Pending)?;
        out.push_sql(
            ", ARRAY(SELECT jsonb_array_elements_text(s.value->'d')) \
             FROM r, jsonb_array_elements(",
        );
        out.push_bind_param::<Jsonb, _>(self.tasks)?;
        out.push_sql(
            ") WITH ORDINALITY AS s(value, ord)), \
             e AS (",
        );
        crate::repo::events::push_insert(out.reborrow(), "r", "1", self.first, &self.at)?;
        out.push_sql(" FROM r), o AS (INSERT INTO job_outbox (run_id, payload) SELECT r.id, ");
        out.push_bind_param::<Jsonb, _>(self.job)?;
        out.push_sql(" FROM r), ");
        crate::repo::audit::push_head(out.reborrow(), self.audit_content, Some("r"))?;
        out.push_sql(", a AS (");
        crate::repo::audit::push_insert(out.reborrow(), self.audit)?;
        out.push_sql(") SELECT * FROM r");
        Ok(())
    }
}
