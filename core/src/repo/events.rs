//! Run events: the per-run, gap-free, ordered log of state changes and progress.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::db::schema::run_events;
use crate::error::Result;
use crate::runs::{EventKind, EventStatus};

/// A stored run event, as the database holds it. The rest of the system sees
/// [`crate::runs::RunEvent`].
#[derive(Debug, Clone, PartialEq, Queryable, QueryableByName, Selectable)]
#[diesel(table_name = run_events)]
pub struct EventRow {
    pub run_id: Uuid,
    pub seq: i64,
    pub kind: EventKind,
    pub status: Option<EventStatus>,
    pub step: Option<String>,
    pub percent: f64,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
    pub at: DateTime<Utc>,
    pub workflow_id: Uuid,
    /// The step's own reported progress (0-100), on `progress` events.
    pub step_percent: Option<f64>,
}

impl EventRow {
    /// Event 1 of the run `run`: `ev` as a statement creating the run stored it, stamped `at`.
    pub fn first(run: &crate::repo::runs::RunRow, ev: &NewEvent, at: DateTime<Utc>) -> Self {
        Self::written(run, 1, ev, at)
    }

    /// Event `seq` of the run `run`: `ev` as a statement that returned the run (not the event)
    /// stored it, stamped `at`.
    pub fn written(
        run: &crate::repo::runs::RunRow,
        seq: i64,
        ev: &NewEvent,
        at: DateTime<Utc>,
    ) -> Self {
        EventRow {
            run_id: run.id,
            seq,
            kind: ev.kind,
            status: ev.status,
            step: ev.step.clone(),
            percent: ev.percent,
            eta_seconds: ev.eta_seconds,
            message: ev.message.clone(),
            at,
            workflow_id: run.workflow_id,
            step_percent: ev.step_percent,
        }
    }
}

/// An event to append; the sequence number, time and workflow are filled in by [`append`].
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: EventKind,
    pub status: Option<EventStatus>,
    pub step: Option<String>,
    pub percent: f64,
    pub eta_seconds: Option<f64>,
    pub message: Option<String>,
    pub step_percent: Option<f64>,
}

impl NewEvent {
    pub fn new(kind: EventKind, status: Option<EventStatus>) -> Self {
        Self {
            kind,
            status,
            step: None,
            percent: 0.0,
            eta_seconds: None,
            message: None,
            step_percent: None,
        }
    }
}

/// Appends an event with the run's next sequence number, in one statement (one round trip).
/// The `UPDATE ... RETURNING` takes the run row's lock, so concurrent appenders for one run
/// serialise and numbers never collide or skip.
pub fn append(conn: &mut PgConnection, run_id: Uuid, ev: NewEvent) -> Result<EventRow> {
    Ok(AppendEvent {
        run_id,
        ev,
        at: Utc::now(),
    }
    .get_result(conn)?)
}

/// The statement of [`append`]. Written out as a query type rather than `sql_query` so that
/// diesel prepares it once per connection (it never caches `sql_query`'s statements): it runs
/// for every event.
struct AppendEvent {
    run_id: Uuid,
    ev: NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(AppendEvent);

impl QueryFragment<Pg> for AppendEvent {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::Uuid as SqlUuid;
        out.push_sql("WITH next AS (UPDATE runs SET last_seq = last_seq + 1 WHERE id = ");
        out.push_bind_param::<SqlUuid, _>(&self.run_id)?;
        out.push_sql(" RETURNING id, last_seq, workflow_id) ");
        push_insert(out.reborrow(), "next", "next.last_seq", &self.ev, &self.at)?;
        out.push_sql(" FROM next RETURNING ");
        out.push_sql(RETURNING);
        Ok(())
    }
}

/// The columns of an [`EventRow`], for `RETURNING`.
pub(crate) const RETURNING: &str =
    "run_id, seq, kind, status, step, percent, eta_seconds, message, at, workflow_id, step_percent";

/// Pushes `INSERT INTO run_events (...) SELECT ...` of `ev`, its run and workflow taken from
/// the CTE `source` (a runs row: `id`, `workflow_id`) and its sequence number the SQL
/// expression `seq`; the caller adds `FROM <source> ...`. Shared by every statement that
/// appends an event.
pub(crate) fn push_insert<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    source: &str,
    seq: &str,
    ev: &'b NewEvent,
    at: &'b DateTime<Utc>,
) -> QueryResult<()> {
    use crate::db::schema::sql_types::{PgEventKind, PgEventStatus};
    use diesel::sql_types::{Double, Nullable, Text, Timestamptz};
    out.push_sql(
        "INSERT INTO run_events (run_id, seq, kind, status, step, percent, eta_seconds, \
         message, at, workflow_id, step_percent) SELECT ",
    );
    out.push_sql(source);
    out.push_sql(".id, ");
    out.push_sql(seq);
    out.push_sql(", ");
    out.push_bind_param::<PgEventKind, _>(&ev.kind)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<PgEventStatus>, _>(&ev.status)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Text>, _>(&ev.step)?;
    out.push_sql(", ");
    out.push_bind_param::<Double, _>(&ev.percent)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Double>, _>(&ev.eta_seconds)?;
    out.push_sql(", ");
    out.push_bind_param::<Nullable<Text>, _>(&ev.message)?;
    out.push_sql(", ");
    out.push_bind_param::<Timestamptz, _>(at)?;
    out.push_sql(", ");
    out.push_sql(source);
    out.push_sql(".workflow_id, ");
    out.push_bind_param::<Nullable<Double>, _>(&ev.step_percent)?;
    Ok(())
}

pub fn after(
    conn: &mut PgConnection,
    run_id: Uuid,
    after_seq: i64,
    limit: i64,
) -> Result<Vec<EventRow>> {
    Ok(run_events::table
        .filter(run_events::run_id.eq(run_id))
        .filter(run_events::seq.gt(after_seq))
        .order(run_events::seq.asc())
        .limit(limit)
        .select(EventRow::as_select())
        .load(conn)?)
}
