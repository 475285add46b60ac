//! Full step logs: each attempt's output as ordered chunks, appended while the step runs.

use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment};
use uuid::Uuid;

use crate::db::schema::task_logs;
use crate::error::Result;
use crate::repo::task_transition::Fence;

/// As [`append`], only while `fence` holds the run's lease, in one statement (a log chunk is
/// written for every step that prints, so a transaction's four round trips were worth saving);
/// `false` when the lease is not held (and nothing was written). The lease row is read `FOR
/// SHARE`, so a claim that moves the lease waits for the chunk or the chunk sees the move.
pub fn append_fenced(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    step: &str,
    attempt: i32,
    seq: i32,
    content: &str,
) -> Result<bool> {
    #[derive(QueryableByName)]
    struct Held {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        held: i64,
    }
    let row: Held = AppendFenced {
        fence,
        step,
        attempt,
        seq,
        content,
    }
    .get_result(conn)?;
    Ok(row.held == 1)
}

struct AppendFenced<'a> {
    fence: &'a Fence<'a>,
    step: &'a str,
    attempt: i32,
    seq: i32,
    content: &'a str,
}

crate::prepared_statement!(AppendFenced<'a>);

impl QueryFragment<Pg> for AppendFenced<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        use diesel::sql_types::{Int4, Text};
        out.push_sql("WITH lease AS (SELECT id FROM runs WHERE ");
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(
            " FOR SHARE), chunk AS (INSERT INTO task_logs (run_id, step, attempt, seq, content) \
             SELECT id, ",
        );
        out.push_bind_param::<Text, _>(self.step)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&self.attempt)?;
        out.push_sql(", ");
        out.push_bind_param::<Int4, _>(&self.seq)?;
        out.push_sql(", ");
        out.push_bind_param::<Text, _>(self.content)?;
        out.push_sql(" FROM lease ON CONFLICT DO NOTHING) SELECT count(*) AS held FROM lease");
        Ok(())
    }
}

/// Appends chunk `seq` of an attempt's log; a chunk already stored (a retried write) is kept.
pub fn append(
    conn: &mut PgConnection,
    run_id: Uuid,
    step: &str,
    attempt: i32,
    seq: i32,
    content: &str,
) -> Result<()> {
    diesel::insert_into(task_logs::table)
        .values((
            task_logs::run_id.eq(run_id),
            task_logs::step.eq(step),
            task_logs::attempt.eq(attempt),
            task_logs::seq.eq(seq),
            task_logs::content.eq(content),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

/// The chunks of an attempt's log, in order.
pub fn chunks(
    conn: &mut PgConnection,
    run_id: Uuid,
    step: &str,
    attempt: i32,
) -> Result<Vec<String>> {
    Ok(task_logs::table
        .filter(task_logs::run_id.eq(run_id))
        .filter(task_logs::step.eq(step))
        .filter(task_logs::attempt.eq(attempt))
        .order(task_logs::seq.asc())
        .select(task_logs::content)
        .load(conn)?)
}
