//! Creating many queued runs at once: their rows, tasks, first events, outbox rows and audit
//! records in one statement, for triggers that arrive together and commit together.

use chrono::{DateTime, SecondsFormat, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use crate::error::{Error, Result};
use crate::repo::audit::AuditRow;
use crate::repo::events::NewEvent;
use crate::repo::runs::{NewRun, RunRow};
use crate::runs::{RunStatus, TaskStatus};

/// One run of [`create`]: what `repo::run_create::create` takes for one, with its audit row
/// already placed in the chain (`seq`, `prev_hash` and `hash` set by the caller).
pub struct QueuedRun<'a> {
    pub run: NewRun<'a>,
    pub steps: &'a [(String, Vec<String>)],
    pub first: &'a NewEvent,
    pub job: &'a serde_json::Value,
    pub audit: &'a AuditRow,
}

/// Inserts every run of `runs` (queued, event 1 counted in `last_seq`), its steps as pending
/// tasks, its first event stamped `at`, its outbox row and its audit row, and moves the audit
/// chain's head to the last audit row. Returns the runs as stored, in no particular order.
///
/// Call it in a transaction that locked the head (`repo::audit::lock_head`) and read the `seq`
/// and hash the audit rows continue from. The runs must share their trigger and carry no
/// `scheduled_for`, their first events must share kind and status, and their audit rows action
/// and outcome (they are bound once); an `idempotency_key` already used fails the statement with
/// a unique violation, and nothing is written.
pub fn create(
    conn: &mut PgConnection,
    runs: &[QueuedRun<'_>],
    at: DateTime<Utc>,
) -> Result<Vec<RunRow>> {
    let Some(one) = runs.first() else {
        return Ok(Vec::new());
    };
    let shared = |q: &QueuedRun<'_>| {
        q.run.trigger == one.run.trigger
            && q.run.scheduled_for.is_none()
            && (q.first.kind, q.first.status) == (one.first.kind, one.first.status)
            && q.first.step.is_none()
            && q.first.step_percent.is_none()
            && (q.audit.action, q.audit.outcome) == (one.audit.action, one.audit.outcome)
    };
    if !runs.iter().all(shared) {
        return Err(Error::Internal(
            "runs created together must share their trigger, first event and audit action".into(),
        ));
    }
    let doc = serde_json::Value::Array(runs.iter().map(document).collect());
    Ok(CreateMany {
        doc: &doc,
        one,
        at: chrono::SubsecRound::trunc_subsecs(at, 6),
    }
    .load(conn)?)
}

/// The JSON object `jsonb_to_recordset` reads one run from; the keys are the columns of `x`.
fn document(q: &QueuedRun<'_>) -> serde_json::Value {
    let (r, a) = (&q.run, q.audit);
    serde_json::json!({
        "id": r.id,
        "workflow_id": r.workflow_id,
        "version": r.version,
        "inputs": r.inputs,
        "idempotency_key": r.idempotency_key,
        "no_cache": r.no_cache,
        "triggered_by": r.triggered_by,
        "tasks": crate::repo::run_create::tasks_document(q.steps),
        "percent": q.first.percent,
        "eta_seconds": q.first.eta_seconds,
        "message": q.first.message,
        "job": q.job,
        "seq": a.seq,
        // The hash covers this text: microseconds and `Z`, as `crate::audit` writes it.
        "at": a.at.to_rfc3339_opts(SecondsFormat::Micros, true),
        "actor_id": a.actor_id,
        "api_token_id": a.api_token_id,
        "actor_email": a.actor_email,
        "resource": a.resource,
        "ip": a.ip,
        "user_agent": a.user_agent,
        "detail": a.detail,
        "prev_hash": a.prev_hash,
        "hash": a.hash,
    })
}

/// The statement of [`create`]: every insert reads the runs from the one JSON parameter. The
/// tasks', events', outbox rows' foreign keys are checked at the statement's end, when the runs
/// exist. Its text never changes, so diesel prepares it once per connection.
struct CreateMany<'a> {
    doc: &'a serde_json::Value,
    one: &'a QueuedRun<'a>,
    at: DateTime<Utc>,
}

crate::prepared_statement!(CreateMany<'a>);

impl QueryFragment<Pg> for CreateMany<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use crate::db::schema::sql_types::{
            PgAuditAction, PgAuditOutcome, PgEventKind, PgEventStatus, PgRunStatus, PgRunTrigger,
            PgTaskStatus,
        };
        use diesel::sql_types::{Jsonb, Nullable, Timestamptz};
        out.push_sql("WITH x AS (SELECT * FROM jsonb_to_recordset(");
        out.push_bind_param::<Jsonb, _>(self.doc)?;
        out.push_sql(
            ") AS x(id uuid, workflow_id uuid, version int4, inputs jsonb, idempotency_key text, \
             no_cache bool, triggered_by uuid, tasks jsonb, percent float8, eta_seconds float8, \
             message text, job jsonb, seq int8, at timestamptz, actor_id uuid, api_token_id uuid, \
             actor_email text, resource text, ip text, user_agent text, detail jsonb, \
             prev_hash text, hash text)), \
             r AS (INSERT INTO runs (id, workflow_id, version, status, inputs, idempotency_key, \
             no_cache, triggered_by, trigger, last_seq) SELECT id, workflow_id, version, ",
        );
        out.push_bind_param::<PgRunStatus, _>(&RunStatus::Queued)?;
        out.push_sql(", inputs, idempotency_key, no_cache, triggered_by, ");
        out.push_bind_param::<PgRunTrigger, _>(&self.one.run.trigger)?;
        out.push_sql(
            ", 1 FROM x RETURNING *), \
             t AS (INSERT INTO tasks (run_id, name, position, status, depends_on) \
             SELECT x.id, s.value->>'n', (s.ord - 1)::int, ",
        );
        out.push_bind_param::<PgTaskStatus, _>(&TaskStatus::Pending)?;
        out.push_sql(
            ", ARRAY(SELECT jsonb_array_elements_text(s.value->'d')) \
             FROM x, jsonb_array_elements(x.tasks) WITH ORDINALITY AS s(value, ord)), \
             e AS (INSERT INTO run_events (run_id, seq, kind, status, step, percent, \
             eta_seconds, message, at, workflow_id, step_percent) SELECT x.id, 1, ",
        );
        out.push_bind_param::<PgEventKind, _>(&self.one.first.kind)?;
        out.push_sql(", ");
        out.push_bind_param::<Nullable<PgEventStatus>, _>(&self.one.first.status)?;
        out.push_sql(", NULL, x.percent, x.eta_seconds, x.message, ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(
            ", x.workflow_id, NULL FROM x), \
             o AS (INSERT INTO job_outbox (run_id, payload) SELECT x.id, x.job FROM x), \
             a AS (INSERT INTO audit_log (seq, at, actor_id, api_token_id, actor_email, action, \
             resource, outcome, ip, user_agent, detail, prev_hash, hash) \
             SELECT seq, at, actor_id, api_token_id, actor_email, ",
        );
        out.push_bind_param::<PgAuditAction, _>(&self.one.audit.action)?;
        out.push_sql(", resource, ");
        out.push_bind_param::<PgAuditOutcome, _>(&self.one.audit.outcome)?;
        out.push_sql(
            ", ip, user_agent, detail, prev_hash, hash FROM x), \
             h AS (UPDATE audit_chain_head SET seq = l.seq, prev_hash = l.prev_hash, \
             hash = l.hash FROM (SELECT seq, prev_hash, hash FROM x ORDER BY seq DESC LIMIT 1) l) \
             SELECT * FROM r",
        );
        Ok(())
    }
}
