//! A run's end by its lease holder, and the event saying so, in one prepared statement.
//!
//! Ending a run was a lease check, the run's update, the event's append: three statements, and
//! diesel sent the update unprepared (parsed and planned on every run). This is one.
//!
//! The run's last step usually ends it: [`finish_with_task`] writes that step's end, its event,
//! the run's end and its event in one statement too, instead of two.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, RETURNING, push_insert};
use crate::repo::runs::TaskChange;
use crate::repo::task_transition::{Fence, push_task_update};
use crate::runs::RunStatus;

/// The run's end as written.
pub struct Ended {
    pub event: EventRow,
    /// How long the run ran; `None` when it never started.
    pub took: Option<chrono::Duration>,
}

/// Moves the run to `status` (terminal) with `error` and appends `ev` (its estimate already
/// set), if `fence` holds the lease and the run has not ended; `None` otherwise (nothing
/// written). The lease is released with it.
pub fn finish(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    status: RunStatus,
    error: Option<&str>,
    ev: &NewEvent,
) -> Result<Option<Ended>> {
    let at = Utc::now();
    let row: Option<Row> = Finish {
        fence,
        status,
        error,
        ev,
        at,
    }
    .get_result(conn)
    .optional()?;
    Ok(row.map(|r| Ended {
        took: r.run_started_at.map(|s| at - s),
        event: r.event,
    }))
}

/// The run's end and the end of its task `step` that ends it, written together: `step`'s
/// `change` and `task_ev`, then the run's move to `status` (terminal) with `error` and `run_ev`,
/// numbered one after the other. As [`finish`]: only if `fence` holds the lease and the run has
/// not ended, else `None` and nothing written; a task that does not exist fails the statement.
#[allow(clippy::too_many_arguments)]
pub fn finish_with_task(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    step: &str,
    change: &TaskChange,
    task_ev: &NewEvent,
    status: RunStatus,
    error: Option<&str>,
    run_ev: &NewEvent,
) -> Result<Option<(EventRow, Ended)>> {
    let at = Utc::now();
    let mut rows: Vec<Row> = FinishWithTask {
        end: Finish {
            fence,
            status,
            error,
            ev: run_ev,
            at,
        },
        step,
        change,
        task_ev,
    }
    .load(conn)?;
    if rows.len() != 2 {
        return Ok(None);
    }
    rows.sort_by_key(|r| r.event.seq);
    let run = rows.pop().expect("two rows");
    let task = rows.pop().expect("two rows");
    Ok(Some((
        task.event,
        Ended {
            took: run.run_started_at.map(|s| at - s),
            event: run.event,
        },
    )))
}

#[derive(QueryableByName)]
struct Row {
    #[diesel(embed)]
    event: EventRow,
    #[diesel(sql_type = diesel::sql_types::Nullable<diesel::sql_types::Timestamptz>)]
    run_started_at: Option<DateTime<Utc>>,
}

struct Finish<'a> {
    fence: &'a Fence<'a>,
    status: RunStatus,
    error: Option<&'a str>,
    ev: &'a NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(Finish<'a>);

impl QueryFragment<Pg> for Finish<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        self.push_run_update(out.reborrow(), "1")?;
        out.push_sql(", e AS (");
        push_insert(out.reborrow(), "next", "next.last_seq", self.ev, &self.at)?;
        out.push_sql(
            " FROM next RETURNING *) SELECT e.*, next.started_at AS run_started_at \
             FROM e, next",
        );
        Ok(())
    }
}

impl<'a> Finish<'a> {
    /// `WITH next AS (UPDATE runs ...)`: the run's end under the lease, its event sequence
    /// moved on by `events` (a literal: 1, or 2 with its last task's event).
    fn push_run_update<'b>(
        &'b self,
        mut out: AstPass<'_, 'b, Pg>,
        events: &'static str,
    ) -> QueryResult<()>
    where
        'a: 'b,
    {
        use crate::db::schema::sql_types::PgRunStatus;
        use diesel::sql_types::{Nullable, Text, Timestamptz};
        out.push_sql("WITH next AS (UPDATE runs SET status = ");
        out.push_bind_param::<PgRunStatus, _>(&self.status)?;
        out.push_sql(", error = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.error)?;
        out.push_sql(", finished_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(", lease_owner = NULL, lease_expires_at = NULL, last_seq = last_seq + ");
        out.push_sql(events);
        out.push_sql(" WHERE status IN ('queued', 'running') AND ");
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(" RETURNING id, last_seq, workflow_id, started_at)");
        Ok(())
    }
}

/// The statement of [`finish_with_task`]: [`Finish`]'s run update, the task's update, then
/// the task's event (the first of the two numbers) and the run's.
struct FinishWithTask<'a> {
    end: Finish<'a>,
    step: &'a str,
    change: &'a TaskChange,
    task_ev: &'a NewEvent,
}

crate::prepared_statement!(FinishWithTask<'a>);

impl QueryFragment<Pg> for FinishWithTask<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let end = &self.end;
        end.push_run_update(out.reborrow(), "2")?;
        out.push_sql(", ");
        push_task_update(out.reborrow(), &end.fence.run_id, self.step, self.change)?;
        // A missing task leaves its event without a number: the statement fails, nothing is
        // written.
        out.push_sql(", te AS (");
        push_insert(
            out.reborrow(),
            "next",
            "CASE WHEN task.one = 1 THEN next.last_seq - 1 END",
            self.task_ev,
            &end.at,
        )?;
        out.push_sql(" FROM next LEFT JOIN task ON TRUE RETURNING ");
        out.push_sql(RETURNING);
        out.push_sql("), re AS (");
        push_insert(out.reborrow(), "next", "next.last_seq", end.ev, &end.at)?;
        out.push_sql(" FROM next RETURNING ");
        out.push_sql(RETURNING);
        out.push_sql(
            ") SELECT te.*, next.started_at AS run_started_at FROM te, next \
             UNION ALL SELECT re.*, next.started_at FROM re, next",
        );
        Ok(())
    }
}
