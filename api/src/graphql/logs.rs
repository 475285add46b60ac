//! A step's full log in GraphQL: `Task.log(offset, limit, attempt)` returns one page.

use async_graphql::{Context, Result, SimpleObject};

use crate::context::caller;
use crate::error::GqlResult;
use crate::state::Services;

/// Default page size of `Task.log`, in bytes.
pub const DEFAULT_PAGE_BYTES: i32 = 64 * 1024;

/// One page of a step attempt's full output (stdout and stderr interleaved, secrets masked).
#[derive(SimpleObject)]
pub struct TaskLog {
    /// The attempt this log belongs to.
    pub attempt: i32,
    /// UTF-8 text from `offset` (moved forward to a character boundary if it fell inside one).
    pub text: String,
    /// Byte offset of `text` in the whole log.
    pub offset: i32,
    /// Where the next page starts; equal to `totalBytes` at the end of what is stored so far.
    pub next_offset: i32,
    /// Bytes stored so far.
    pub total_bytes: i32,
    /// The worker stopped storing this attempt's output at `TMS_STEP_LOG_MAX_BYTES`.
    pub truncated: bool,
    /// Nothing more will be appended: the attempt ended.
    pub complete: bool,
}

pub async fn page(
    ctx: &Context<'_>,
    task: &tms_core::runs::Task,
    offset: i32,
    limit: i32,
    attempt: Option<i32>,
) -> Result<TaskLog> {
    let svc = ctx.data_unchecked::<Services>();
    if offset < 0 {
        return Err(tms_core::Error::field("offset", "must not be negative")).gql();
    }
    let p = svc
        .logs
        .page(
            caller(ctx).gql()?,
            task.run_id,
            &task.name,
            attempt,
            offset as usize,
            limit.max(0) as usize,
        )
        .await
        .gql()?;
    let int = |n: usize| i32::try_from(n).unwrap_or(i32::MAX);
    Ok(TaskLog {
        attempt: p.attempt,
        text: p.text,
        offset: int(p.offset),
        next_offset: int(p.next_offset),
        total_bytes: int(p.total_bytes),
        truncated: p.truncated,
        complete: p.complete,
    })
}
