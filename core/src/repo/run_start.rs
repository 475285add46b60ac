//! A delivery's start on the hot path, each step one prepared statement fenced on its own (no
//! transaction): the lease claim of a queued run whose workflow has no limits, and `queued`
//! becoming `running` with its event.
//!
//! The general claim (`runs::limits::admit`) reads the run's workflow and limits first, then
//! claims, in a transaction; for the common workflow without limits that read, BEGIN and
//! COMMIT are three round trips spent on nothing.
//!
//! When the delivery knows the run's workflow version beforehand (its job says it), the claim
//! and the start are one statement: [`claim_and_start`].

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
        out.push_sql(UNLIMITED);
        out.push_sql(" RETURNING runs.*");
        Ok(())
    }
}

/// The condition, on the run's workflow `w`, of a claim without limits.
const UNLIMITED: &str = " AND w.id = runs.workflow_id AND w.max_concurrent_runs IS NULL \
     AND (w.rate_limit_runs IS NULL OR w.rate_limit_seconds IS NULL)";

/// As [`claim_unlimited`], and in the same statement `queued` becomes `running` (started now)
/// with `ev` (its estimate already set) appended as event 2: only for a run of version
/// `version` of workflow `workflow_id` delivered fewer than `max_deliveries` times before.
/// `None` (nothing written) otherwise: the caller then claims as [`claim_unlimited`] does.
#[allow(clippy::too_many_arguments)]
pub fn claim_and_start(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
    workflow_id: Uuid,
    version: i32,
    max_deliveries: i32,
    ev: &NewEvent,
) -> Result<Option<(RunRow, EventRow)>> {
    let at = Utc::now();
    let run: Option<RunRow> = ClaimAndStart {
        claim: ClaimUnlimited {
            id,
            owner,
            secs: lease_seconds as f64,
        },
        workflow_id,
        version,
        max_deliveries,
        ev,
        at,
    }
    .get_result(conn)
    .optional()?;
    Ok(run.map(|run| {
        let event = EventRow::written(&run, run.last_seq, ev, at);
        (run, event)
    }))
}

struct ClaimAndStart<'a> {
    claim: ClaimUnlimited<'a>,
    workflow_id: Uuid,
    version: i32,
    max_deliveries: i32,
    ev: &'a NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(ClaimAndStart<'a>);

impl QueryFragment<Pg> for ClaimAndStart<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Int4, Timestamptz, Uuid as SqlUuid};
        let c = &self.claim;
        out.push_sql("WITH next AS (");
        crate::repo::leases::push_take_set(out.reborrow(), c.owner, &c.secs)?;
        out.push_sql(", status = 'running', started_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(", last_seq = last_seq + 1");
        crate::repo::leases::push_take_where(
            out.reborrow(),
            &c.id,
            c.owner,
            "FROM workflows w",
            "'queued'",
        )?;
        out.push_sql(UNLIMITED);
        out.push_sql(" AND runs.workflow_id = ");
        out.push_bind_param::<SqlUuid, _>(&self.workflow_id)?;
        out.push_sql(" AND runs.version = ");
        out.push_bind_param::<Int4, _>(&self.version)?;
        out.push_sql(" AND runs.deliveries < ");
        out.push_bind_param::<Int4, _>(&self.max_deliveries)?;
        out.push_sql(" RETURNING runs.*), e AS (");
        push_insert(out.reborrow(), "next", "next.last_seq", self.ev, &self.at)?;
        out.push_sql(" FROM next) SELECT * FROM next");
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
