//! A delivery's start on the hot path, each step one prepared statement: the lease claim of a
//! run its workflow's limits cannot hold back, and `queued` becoming `running` with its event.
//!
//! The general claim (`runs::limits::admit`) reads the run's workflow and limits first, then
//! claims; for the common workflow without limits that read is a round trip spent on nothing.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, RETURNING, push_insert};
use crate::repo::runs::RunRow;

/// A run claimed by [`claim_unlimited`].
#[derive(QueryableByName)]
pub struct Claimed {
    #[diesel(embed)]
    pub run: RunRow,
    /// Whether its workflow caps concurrent runs (its end must wake runs waiting for a slot).
    #[diesel(sql_type = diesel::sql_types::Bool)]
    pub capped: bool,
}

/// Takes (or re-takes) the run's lease for `owner`, as `leases::claim`, but only when its
/// workflow's limits cannot hold it back: the workflow has none, or the run is already
/// running (it holds its slot). `None` when the run ended, another live lease holds it, or
/// limits apply: the caller then goes through `runs::limits::admit`.
pub fn claim_unlimited(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Option<Claimed>> {
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
        use diesel::sql_types::{Double, Text, Uuid as SqlUuid};
        // `UPDATE ... FROM` locks only the run's row; the workflow's is read, not locked.
        out.push_sql("UPDATE runs SET lease_owner = ");
        out.push_bind_param::<Text, _>(self.owner)?;
        out.push_sql(", lease_expires_at = now() + make_interval(secs => ");
        out.push_bind_param::<Double, _>(&self.secs)?;
        out.push_sql(
            "), deliveries = deliveries + 1, not_before = NULL FROM workflows w \
             WHERE runs.status IN ('queued', 'running') AND runs.id = ",
        );
        out.push_bind_param::<SqlUuid, _>(&self.id)?;
        out.push_sql(" AND (runs.lease_owner IS NULL OR runs.lease_owner = ");
        out.push_bind_param::<Text, _>(self.owner)?;
        out.push_sql(
            " OR runs.lease_expires_at < now()) AND w.id = runs.workflow_id \
             AND (runs.status = 'running' OR (w.max_concurrent_runs IS NULL \
             AND (w.rate_limit_runs IS NULL OR w.rate_limit_seconds IS NULL))) \
             RETURNING runs.*, w.max_concurrent_runs IS NOT NULL AS capped",
        );
        Ok(())
    }
}

/// `queued` becomes `running` (started now) and `ev` (its estimate already set) is appended
/// with the run's next sequence number; `None` (nothing written) when the run was not queued.
/// Called in the claim's transaction, which holds the lease.
pub fn start(conn: &mut PgConnection, run_id: Uuid, ev: &NewEvent) -> Result<Option<EventRow>> {
    Ok(Start {
        run_id,
        ev,
        at: Utc::now(),
    }
    .get_result(conn)
    .optional()?)
}

struct Start<'a> {
    run_id: Uuid,
    ev: &'a NewEvent,
    at: DateTime<Utc>,
}

crate::prepared_statement!(Start<'a>);

impl QueryFragment<Pg> for Start<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Timestamptz, Uuid as SqlUuid};
        out.push_sql("WITH next AS (UPDATE runs SET status = 'running', started_at = ");
        out.push_bind_param::<Timestamptz, _>(&self.at)?;
        out.push_sql(", last_seq = last_seq + 1 WHERE status = 'queued' AND id = ");
        out.push_bind_param::<SqlUuid, _>(&self.run_id)?;
        out.push_sql(" RETURNING id, last_seq, workflow_id) ");
        push_insert(out.reborrow(), "next", "next.last_seq", self.ev, &self.at)?;
        out.push_sql(" FROM next RETURNING ");
        out.push_sql(RETURNING);
        Ok(())
    }
}
