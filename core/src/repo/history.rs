//! Run history the estimates learn from.

use std::collections::HashMap;

use diesel::prelude::*;
use diesel::sql_types::{BigInt, Double, Text, Uuid as SqlUuid};
use uuid::Uuid;

use crate::db::schema::sql_types::PgTaskStatus;
use crate::error::Result;
use crate::runs::TaskStatus;

#[derive(QueryableByName)]
struct Learnt {
    #[diesel(sql_type = Text)]
    name: String,
    #[diesel(sql_type = Double)]
    seconds: f64,
}

/// Median seconds per step name of `workflow_id`, over each step's latest `window` successful
/// executions within the workflow's latest `runs` runs (so the cost stays flat as history grows).
pub fn learnt_durations(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    window: i64,
    runs: i64,
) -> Result<HashMap<String, f64>> {
    let rows: Vec<Learnt> = diesel::sql_query(
        // `run_id = ANY(ARRAY(...))`: tasks are read by their primary key, run by run; a join
        // let the planner hash-scan the whole tasks table once it grew.
        "SELECT name, percentile_cont(0.5) WITHIN GROUP (ORDER BY secs) AS seconds FROM ( \
           SELECT t.name, extract(epoch FROM t.finished_at - t.started_at)::float8 AS secs, \
                  row_number() OVER (PARTITION BY t.name ORDER BY t.finished_at DESC) AS rn \
           FROM tasks t \
           WHERE t.run_id = ANY(ARRAY(SELECT id FROM runs WHERE workflow_id = $1 \
                                      ORDER BY id DESC LIMIT $3)) \
             AND t.status = $4 AND t.started_at IS NOT NULL AND t.finished_at IS NOT NULL) h \
         WHERE rn <= $2 GROUP BY name",
    )
    .bind::<SqlUuid, _>(workflow_id)
    .bind::<BigInt, _>(window)
    .bind::<BigInt, _>(runs)
    .bind::<PgTaskStatus, _>(TaskStatus::Succeeded)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| (r.name, r.seconds)).collect())
}
