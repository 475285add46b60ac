//! A run's end by its lease holder, and the event saying so, in one prepared statement.
//!
//! Ending a run was a lease check, the run's update, the event's append: three statements, and
//! diesel sent the update unprepared (parsed and planned on every run). This is one.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, push_insert};
use crate::repo::task_transition::Fence;
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
        use crate::db::schema::sql_types::PgRunStatus;
        use diesel::sql_types::{Nullable, Text, Timestamptz};
        out.push_sql("WITH next AS (UPDATE runs SET status = ");
        out.push_bind_param::<PgRunStatus, _>(&self.status)?;
        out.push_sql(", error = ");
        out.push_bind_param::<Nullable<Text>, _>(&self.error)?;
        out.push_sql(", finished_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(
            ", lease_owner = NULL, lease_expires_at = NULL, last_seq = last_seq + 1 \
             WHERE status IN ('queued', 'running') AND ",
        );
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(" RETURNING id, last_seq, workflow_id, started_at), e AS (");
        push_insert(out.reborrow(), "next", "next.last_seq", self.ev, &self.at)?;
        out.push_sql(
            " FROM next RETURNING *) SELECT e.*, next.started_at AS run_started_at \
             FROM e, next",
        );
        Ok(())
    }
}
