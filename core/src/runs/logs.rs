//! Reading a step's full log: by pages (GraphQL `Task.log`) or whole (the HTTP download),
//! authorized like the run it belongs to.

use uuid::Uuid;

use crate::audit;
use crate::auth::{Permission, Principal};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

/// The line a worker stores when a step's log reached `TMS_STEP_LOG_MAX_BYTES`.
pub const TRUNCATED_MARKER: &str = "[tms] log truncated: the step printed more than";

/// Largest page `Task.log` returns.
pub const MAX_PAGE_BYTES: usize = 1 << 20;

/// One page of an attempt's log.
#[derive(Debug, Clone, PartialEq)]
pub struct LogPage {
    pub attempt: i32,
    /// UTF-8 text starting at `offset` (moved forward to a character boundary if needed).
    pub text: String,
    pub offset: usize,
    /// Where the next page starts; equals `total_bytes` at the end of what is stored so far.
    pub next_offset: usize,
    pub total_bytes: usize,
    /// The worker stopped storing this attempt's output at the size limit.
    pub truncated: bool,
    /// Nothing more will be appended (the attempt ended).
    pub complete: bool,
}

#[derive(Clone)]
pub struct LogService {
    db: Db,
}

impl LogService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Everything stored of `step`'s `attempt` (default: the latest) from `offset`, for the
    /// download (and for following a log: ask again from `next_offset`).
    pub async fn rest(
        &self,
        who: Option<&Principal>,
        run_id: Uuid,
        step: &str,
        attempt: Option<i32>,
        offset: usize,
    ) -> Result<LogPage> {
        audit::require(&self.db, who, Permission::ReadRuns).await?;
        self.read(run_id, step, attempt, offset, usize::MAX).await
    }

    /// `limit` bytes of `step`'s log from `offset`, of `attempt` (default: the latest).
    pub async fn page(
        &self,
        who: Option<&Principal>,
        run_id: Uuid,
        step: &str,
        attempt: Option<i32>,
        offset: usize,
        limit: usize,
    ) -> Result<LogPage> {
        if limit == 0 || limit > MAX_PAGE_BYTES {
            return Err(Error::field(
                "limit",
                format!("must be between 1 and {MAX_PAGE_BYTES}"),
            ));
        }
        audit::require(&self.db, who, Permission::ReadRuns).await?;
        self.read(run_id, step, attempt, offset, limit).await
    }

    async fn read(
        &self,
        run_id: Uuid,
        step: &str,
        attempt: Option<i32>,
        offset: usize,
        limit: usize,
    ) -> Result<LogPage> {
        let step = step.to_string();
        self.db
            .run(move |c| {
                let task = repo::runs::tasks_of(c, run_id)?
                    .into_iter()
                    .find(|t| t.name == step);
                let Some(task) = task else {
                    return Err(match repo::runs::find(c, run_id)? {
                        None => Error::NotFound("run"),
                        Some(_) => Error::field("step", format!("the run has no step `{step}`")),
                    });
                };
                let attempt = attempt.unwrap_or(task.attempt);
                if attempt < 0 || attempt > task.attempt {
                    return Err(Error::field(
                        "attempt",
                        format!("the step has made {} attempt(s)", task.attempt),
                    ));
                }
                let text = repo::logs::chunks(c, run_id, &step, attempt)?.concat();
                let complete = attempt < task.attempt || task.status().is_terminal();
                Ok(slice(attempt, &text, offset, limit, complete))
            })
            .await
    }
}

/// The page of `text` at `offset` (moved forward to a character boundary), at most `limit`
/// bytes (cut back to one).
fn slice(attempt: i32, text: &str, offset: usize, limit: usize, complete: bool) -> LogPage {
    let total = text.len();
    let mut start = offset.min(total);
    while !text.is_char_boundary(start) {
        start += 1;
    }
    let mut end = start.saturating_add(limit).min(total);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    LogPage {
        attempt,
        text: text[start..end].to_string(),
        offset: start,
        next_offset: end,
        total_bytes: total,
        truncated: text.contains(TRUNCATED_MARKER),
        complete,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pages_cover_the_text_once_and_never_split_a_character() {
        let text = "héllo wörld\n".repeat(50);
        let mut at = 0;
        let mut joined = String::new();
        loop {
            let p = slice(1, &text, at, 7, true);
            joined.push_str(&p.text);
            if p.next_offset == p.total_bytes {
                break;
            }
            assert!(p.next_offset > at, "progress");
            at = p.next_offset;
        }
        assert_eq!(joined, text);
        let past = slice(1, &text, 10_000, 7, true);
        assert_eq!((past.text.as_str(), past.offset), ("", text.len()));
    }
}
