//! Several tasks of one run changing at once, each with its event, fenced by the run's lease,
//! in one statement: a step's end and the starts of the steps it unblocked (or the skips it
//! caused) are one round trip instead of one each.

use chrono::{DateTime, Utc};
use diesel::pg::Pg;
use diesel::prelude::*;
use diesel::query_builder::{AstPass, QueryFragment, QueryId};

use crate::error::Result;
use crate::repo::events::{EventRow, NewEvent, RETURNING, push_insert};
use crate::repo::runs::TaskChange;
use crate::repo::task_transition::{Fence, push_task_update_as};

/// One task's change and the event about it (already stamped with its estimate).
pub struct Item<'a> {
    pub step: &'a str,
    pub change: &'a TaskChange,
    pub ev: &'a NewEvent,
}

/// Applies each item's change to its task and appends its event, numbered in the items' order,
/// if `fence` still holds the lease; `None` when it does not (nothing written). The items must
/// name distinct tasks (Postgres applies only one change to a row per statement); a task that
/// does not exist fails the whole statement. Returns the events in order.
pub fn apply_many(
    conn: &mut PgConnection,
    fence: &Fence<'_>,
    items: &[Item<'_>],
) -> Result<Option<Vec<EventRow>>> {
    debug_assert!(
        {
            let mut names: Vec<_> = items.iter().map(|i| i.step).collect();
            names.sort_unstable();
            names.windows(2).all(|w| w[0] != w[1])
        },
        "a batch changes each task once"
    );
    if items.is_empty() {
        return Ok(Some(Vec::new()));
    }
    let at = Utc::now();
    let mut rows: Vec<EventRow> = Transitions { fence, items, at }.load(conn)?;
    if rows.len() != items.len() {
        return Ok(None);
    }
    rows.sort_by_key(|r| r.seq);
    Ok(Some(rows))
}

struct Transitions<'a> {
    fence: &'a Fence<'a>,
    items: &'a [Item<'a>],
    at: DateTime<Utc>,
}

// The SQL depends on the number of items: prepared and cached by its text, not by type.
impl QueryId for Transitions<'_> {
    type QueryId = ();
    const HAS_STATIC_QUERY_ID: bool = false;
}

impl diesel::query_builder::Query for Transitions<'_> {
    type SqlType = diesel::sql_types::Untyped;
}

impl RunQueryDsl<PgConnection> for Transitions<'_> {}

impl QueryFragment<Pg> for Transitions<'_> {
    fn walk_ast<'b>(&'b self, mut out: AstPass<'_, 'b, Pg>) -> QueryResult<()> {
        let n = self.items.len();
        // The run row first, as in the one-task transition: its lock orders the numbers, and a
        // holder fenced off by a new claim matches nothing.
        out.push_sql("WITH next AS (UPDATE runs SET last_seq = last_seq + ");
        out.push_sql(&n.to_string());
        out.push_sql(" WHERE ");
        self.fence.push_condition(out.reborrow())?;
        out.push_sql(" RETURNING id, last_seq, workflow_id)");
        for (i, item) in self.items.iter().enumerate() {
            out.push_sql(", ");
            push_task_update_as(
                out.reborrow(),
                &format!("t{i}"),
                &self.fence.run_id,
                item.step,
                item.change,
            )?;
        }
        for (i, item) in self.items.iter().enumerate() {
            // A missing task leaves its event without a number: the statement fails.
            out.push_sql(&format!(", e{i} AS ("));
            let seq = format!(
                "CASE WHEN t{i}.one = 1 THEN next.last_seq - {} END",
                n - 1 - i
            );
            push_insert(out.reborrow(), "next", &seq, item.ev, &self.at)?;
            out.push_sql(&format!(" FROM next LEFT JOIN t{i} ON TRUE RETURNING "));
            out.push_sql(RETURNING);
            out.push_sql(")");
        }
        for i in 0..n {
            out.push_sql(if i == 0 {
                " SELECT * FROM e0"
            } else {
                " UNION ALL SELECT * FROM "
            });
            if i > 0 {
                out.push_sql(&format!("e{i}"));
            }
        }
        Ok(())
    }
}
