//! Run leases: a worker holds a run's lease to write to it; leases expire, are renewed and
//! handed back, and unleased unfinished runs are found again by the reconciler.

use chrono::Utc;
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::db::schema::runs;
use crate::db::schema::sql_types::PgRunStatus;
use crate::error::Result;
use crate::repo::runs::RunRow;
use crate::runs::RunStatus;

/// Takes (or re-takes) the run's lease for `owner` if the run is unfinished and no other live
/// lease holds it. Returns the run as claimed, or `None` when someone else owns it or it ended.
pub fn claim(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    lease_seconds: i64,
) -> Result<Option<RunRow>> {
    Ok(Claim {
        id,
        owner,
        secs: lease_seconds as f64,
    }
    .get_result::<RunRow>(conn)
    .optional()?)
}

/// The statement of [`claim`], prepared once per connection (it runs on every delivery).
struct Claim<'a> {
    id: Uuid,
    owner: &'a str,
    secs: f64,
}

crate::prepared_statement!(Claim<'a>);

impl QueryFragment<Pg> for Claim<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        push_take(
            out.reborrow(),
            &self.id,
            self.owner,
            &self.secs,
            "",
            "'queued', 'running'",
        )?;
        out.push_sql(" RETURNING *");
        Ok(())
    }
}

/// Pushes `UPDATE runs SET <the lease, for owner> <from> WHERE runs.status IN (<statuses>) AND
/// runs.id = <id> AND <no other live lease>`; the caller adds conditions and `RETURNING`.
/// Shared by the claims (`claim`, `run_start::claim_unlimited`).
pub(crate) fn push_take<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    id: &'b Uuid,
    owner: &'b str,
    secs: &'b f64,
    from: &'static str,
    statuses: &'static str,
) -> QueryResult<()> {
    push_take_set(out.reborrow(), owner, secs)?;
    push_take_where(out, id, owner, from, statuses)
}

/// The first half of [`push_take`]: `UPDATE runs SET <the lease, for owner>`, to which the
/// caller may add more of the run's columns.
pub(crate) fn push_take_set<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    owner: &'b str,
    secs: &'b f64,
) -> QueryResult<()> {
    use diesel::sql_types::{Double, Text};
    out.push_sql("UPDATE runs SET lease_owner = ");
    out.push_bind_param::<Text, _>(owner)?;
    out.push_sql(", lease_expires_at = now() + make_interval(secs => ");
    out.push_bind_param::<Double, _>(secs)?;
    out.push_sql("), deliveries = deliveries + 1, not_before = NULL");
    Ok(())
}

/// The second half of [`push_take`]: ` <from> WHERE runs.status IN (<statuses>) AND runs.id =
/// <id> AND <no other live lease>`.
pub(crate) fn push_take_where<'b>(
    mut out: AstPass<'_, 'b, Pg>,
    id: &'b Uuid,
    owner: &'b str,
    from: &'static str,
    statuses: &'static str,
) -> QueryResult<()> {
    use diesel::sql_types::{Text, Uuid as SqlUuid};
    out.push_sql(" ");
    out.push_sql(from);
    out.push_sql(" WHERE runs.status IN (");
    out.push_sql(statuses);
    out.push_sql(") AND runs.id = ");
    out.push_bind_param::<SqlUuid, _>(id)?;
    out.push_sql(" AND (runs.lease_owner IS NULL OR runs.lease_owner = ");
    out.push_bind_param::<Text, _>(owner)?;
    out.push_sql(" OR runs.lease_expires_at < now())");
    Ok(())
}

/// Extends the lease. `None` means it was lost (expired and taken, or the run ended);
/// otherwise whether a cancellation of the run was requested, read in the same statement.
/// `epoch` is the run's delivery count at the claim: a later claim, even by the same owner,
/// fences this one off.
pub fn renew_lease(
    conn: &mut PgConnection,
    id: Uuid,
    owner: &str,
    epoch: i32,
    lease_seconds: i64,
) -> Result<Option<bool>> {
    #[derive(QueryableByName)]
    struct Renewed {
        #[diesel(sql_type = diesel::sql_types::Bool)]
        cancel_requested: bool,
    }
    let renewed: Option<Renewed> = diesel::sql_query(
        "UPDATE runs SET lease_expires_at = now() + make_interval(secs => $3) \
         WHERE id = $1 AND lease_owner = $2 AND status IN ($4, $5) AND deliveries = $6 \
         RETURNING cancel_requested_at IS NOT NULL AS cancel_requested",
    )
    .bind::<diesel::sql_types::Uuid, _>(id)
    .bind::<diesel::sql_types::Text, _>(owner)
    .bind::<diesel::sql_types::Double, _>(lease_seconds as f64)
    .bind::<PgRunStatus, _>(RunStatus::Queued)
    .bind::<PgRunStatus, _>(RunStatus::Running)
    .bind::<diesel::sql_types::Integer, _>(epoch)
    .get_result(conn)
    .optional()?;
    Ok(renewed.map(|r| r.cancel_requested))
}

/// Gives the lease up by expiring it now, so the reconciler hands the run to another worker.
pub fn release_lease(conn: &mut PgConnection, id: Uuid, owner: &str, epoch: i32) -> Result<()> {
    diesel::update(
        runs::table
            .filter(runs::id.eq(id))
            .filter(runs::lease_owner.eq(owner))
            .filter(runs::deliveries.eq(epoch)),
    )
    .set(runs::lease_expires_at.eq(Some(Utc::now() - chrono::Duration::seconds(1))))
    .execute(conn)?;
    Ok(())
}

/// An unfinished run nobody drives and no job is known to be on its way to: the reconciler
/// checks whether the queue still holds its job.
#[derive(Debug, Clone, QueryableByName)]
pub struct Unattended {
    #[diesel(sql_type = diesel::sql_types::Uuid)]
    pub id: Uuid,
    /// Seconds since its job was last handed to the queue.
    #[diesel(sql_type = diesel::sql_types::Double)]
    pub sent_ago: f64,
}

/// Unfinished runs without a live lease, not held back by their workflow's limits, with no
/// outbox row waiting, whose job was last sent more than `quiet_seconds` ago (oldest first).
pub fn unattended(
    conn: &mut PgConnection,
    quiet_seconds: f64,
    limit: i64,
) -> Result<Vec<Unattended>> {
    Ok(diesel::sql_query(
        "SELECT r.id, COALESCE(EXTRACT(EPOCH FROM now() - max(o.sent_at))::float8, 1e9) AS sent_ago \
         FROM runs r LEFT JOIN job_outbox o ON o.run_id = r.id \
         WHERE r.status IN ($3, $4) \
           AND (r.lease_expires_at IS NULL OR r.lease_expires_at < now()) \
           AND (r.not_before IS NULL OR r.not_before <= now()) \
         GROUP BY r.id \
         HAVING bool_and(o.id IS NULL OR o.sent_at IS NOT NULL) \
            AND (max(o.sent_at) IS NULL OR max(o.sent_at) < now() - make_interval(secs => $1)) \
         ORDER BY min(r.created_at) LIMIT $2",
    )
    .bind::<diesel::sql_types::Double, _>(quiet_seconds)
    .bind::<diesel::sql_types::BigInt, _>(limit)
    .bind::<PgRunStatus, _>(RunStatus::Queued)
    .bind::<PgRunStatus, _>(RunStatus::Running)
    .load(conn)?)
}

/// Locks the run row and tells whether `owner` still holds the lease it took at delivery
/// `epoch` (a later claim fences earlier holders off, even the same owner's).
pub fn holds_lease(conn: &mut PgConnection, id: Uuid, owner: &str, epoch: i32) -> Result<bool> {
    let holder: Option<(Option<String>, i32)> = runs::table
        .find(id)
        .select((runs::lease_owner, runs::deliveries))
        .for_update()
        .first(conn)
        .optional()?;
    Ok(matches!(holder, Some((Some(h), e)) if h == owner && e == epoch))
}

/// Whether a worker holds a live lease on the run, judged by the database clock (the one that
/// set `lease_expires_at`), not the caller's.
pub fn lease_live(conn: &mut PgConnection, id: Uuid) -> Result<bool> {
    let live = runs::table
        .find(id)
        .filter(diesel::dsl::sql::<diesel::sql_types::Bool>(
            "lease_expires_at > now()",
        ))
        .count()
        .get_result::<i64>(conn)?;
    Ok(live == 1)
}
