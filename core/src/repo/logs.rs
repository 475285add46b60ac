//! Full step logs: each attempt's output as ordered chunks, appended while the step runs.

use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::task_logs;
use crate::error::Result;

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
