//! Run events: the per-run, gap-free, ordered log of state changes and progress.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{run_events, runs};
use crate::error::Result;
use crate::runs::{EventKind, EventStatus};

/// A stored run event, as the database holds it. The rest of the system sees
/// [`crate::runs::RunEvent`].
#[derive(Debug, Clone, PartialEq, Queryable, Selectable)]
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

/// Appends an event with the run's next sequence number. The `UPDATE ... RETURNING` takes the
/// run row's lock, so concurrent appenders for one run serialise and numbers never collide or skip.
pub fn append(conn: &mut PgConnection, run_id: Uuid, ev: NewEvent) -> Result<EventRow> {
    let (seq, workflow_id): (i64, Uuid) = diesel::update(runs::table.find(run_id))
        .set(runs::last_seq.eq(runs::last_seq + 1))
        .returning((runs::last_seq, runs::workflow_id))
        .get_result(conn)?;
    Ok(diesel::insert_into(run_events::table)
        .values((
            run_events::run_id.eq(run_id),
            run_events::seq.eq(seq),
            run_events::kind.eq(ev.kind),
            run_events::status.eq(ev.status),
            run_events::step.eq(ev.step),
            run_events::percent.eq(ev.percent),
            run_events::eta_seconds.eq(ev.eta_seconds),
            run_events::message.eq(ev.message),
            run_events::at.eq(Utc::now()),
            run_events::workflow_id.eq(workflow_id),
            run_events::step_percent.eq(ev.step_percent),
        ))
        .returning(EventRow::as_returning())
        .get_result(conn)?)
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
