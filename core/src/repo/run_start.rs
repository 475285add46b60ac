//! A delivery's start on the hot path, each step one prepared statement fenced on its own (no
//! transaction): the lease claim of a queued run whose workflow has no limits, and `queued`
//! becoming `running` with its event.
//!
//! The general claim (`runs::limits::admit`) reads the run's workflow and limits first, then
//! claims, in a transaction; for the common workflow without limits that read, BEGIN and
//! COMMIT are three round trips spent on nothing.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, RETURNING, push_insert};
use crate::repo::runs::RunRow;
use crate::repo::task_transition::Fence;

/// Takes the lease of a queued run for `owner`, as `leases::claim`, but only when its workflow
/// has no limits. `None` when the run is not queued (ended, or running and to be resumed),
/// another live lease holds it, or limits apply: the caller then goes through
/// `runs::limits::admit`.
pub fn claim_unlimited(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Option<RunRow>> {
    Ok(ClaimUnlimited {
        id,
        owner,
        secs: lease_seconds as f64,
    }
    .get_result(conn)
    .optional()?)
}

struct ClaimUnlimited<'a> {
    id: Uuid,
    owner: &'a str,
    secs: f64,
}

crate::prepared_statement!(ClaimUnlimited<'a>);

impl QueryFragment<Pg> for ClaimUnlimited<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        // `UPDATE ... FROM` locks only the run's row; the workflow's is read, not locked.
        let from = "FROM workflows w";
        crate::repo::leases::push_take(
            out.reborrow(),
            &self.id,
            self.owner,
            &self.secs,
            from,
            "'queued'",
        )?;
        out.push_sql(
            " AND w.id = runs.workflow_id AND w.max_concurrent_runs IS NULL \
             AND (w.rate_limit_runs IS NULL OR w.rate_limit_seconds IS NULL) RETURNING runs.*",
        );
        Ok(())
    }
}

/// `queued` becomes `running` (started now) and `ev` (its estimate already set) is appended
/// with the run's next sequence number, if `fence` holds the lease; `None` (nothing written)
/// when it does not or the run was not queued.
pub fn start(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    ev: &NewEvent,
) -> Result<Option<EventRow>> {
    Ok(Start {
        fence,
        ev,
        at: Utc::now(),
    }
    .get_result(conn)
    .optional()?)
}

struct Start<'a> {
    fence: &'a Fence<'a>,
    ev: &'a NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(Start<'a>);

impl QueryFragment<Pg> for Start<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::Timestamptz;
        out.push_sql("WITH next AS (UPDATE runs SET status = 'running', started_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(", last_seq = last_seq + 1 WHERE status = 'queued' AND ");
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(" RETURNING id, last_seq, workflow_id) ");
        push_insert(out.reborrow(), "next", "next.last_seq", self.ev, &self.at)?;
        out.push_sql(" FROM next RETURNING ");
        out.push_sql(RETURNING);
        Ok(())
    }
}
