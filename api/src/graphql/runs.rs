//! GraphQL types for runs and their tasks.

use std::sync::Arc;

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, Json, Object, Result};
use chrono::{DateTime, Utc};
use tms_core::runs::TaskStatus as CoreTaskStatus;
use tms_core::runs::eta::Estimate;

use crate::context::caller;
use crate::error::{GqlResult, to_gql};
use crate::graphql::ids::{decode_cursor, encode_cursor, page_size, uuid};
use crate::graphql::loaders::{EstimateOf, TasksOf, WorkflowId, loaders};
use crate::graphql::workflows::Workflow;
use crate::state::Services;

/// Where a run is in its life: `QUEUED → RUNNING → SUCCEEDED | FAILED | CANCELLED | TIMED_OUT`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::runs::RunStatus")]
pub enum RunStatus {
    /// Waiting for a worker (or for the workflow's concurrency or rate limit).
    Queued,
    /// A worker is executing its steps.
    Running,
    /// Every step succeeded (or was served from the cache).
    Succeeded,
    /// A step failed (its dependents were skipped), or the run was dead-lettered.
    Failed,
    /// Cancelled by `cancelRun`.
    Cancelled,
    /// A step exceeded its timeout.
    TimedOut,
}

/// How a run was started.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::runs::RunTrigger")]
pub enum RunTrigger {
    /// `triggerRun` (from the API, the console or the CLI).
    Manual,
    /// A tick of the workflow's schedule (`Run.scheduledFor` says which).
    Schedule,
    /// `retryRun` of an earlier run.
    Retry,
}

/// Where a step of a run is: `PENDING → RUNNING → SUCCEEDED | FAILED | CACHED | SKIPPED |
/// CANCELLED`.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::runs::TaskStatus")]
pub enum TaskStatus {
    /// Waiting for its dependencies or a slot.
    Pending,
    /// Executing (or waiting between retries).
    Running,
    /// Exited 0.
    Succeeded,
    /// Failed on its last attempt (non-zero exit, timeout, missing output).
    Failed,
    /// Served from the cache: nothing executed, outputs restored.
    Cached,
    /// Not run because a dependency did not succeed.
    Skipped,
    /// Stopped or never started because the run was cancelled.
    Cancelled,
}

/// Shared with the request's loader cache rather than copied.
pub struct Task(pub Arc<tms_core::runs::Task>);

/// One step of one run.
#[Object]
impl Task {
    /// The step's name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Where the step is.
    async fn status(&self) -> TaskStatus {
        self.0.status.into()
    }
    /// 1 for the first execution, incremented by every retry or re-delivery; 0 if never started.
    async fn attempt(&self) -> i32 {
        self.0.attempt
    }
    /// Steps it waits for.
    async fn depends_on(&self) -> &Vec<String> {
        &self.0.depends_on
    }
    /// When its latest attempt started; null if it never started.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it ended; null while pending or running.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// The process's exit code; null if it never ran to an exit (pending, cached, skipped,
    /// cancelled, timed out).
    async fn exit_code(&self) -> Option<i32> {
        self.0.exit_code
    }
    /// True when the step was served from the cache (`status` is `CACHED`).
    async fn cached(&self) -> bool {
        self.0.status == CoreTaskStatus::Cached
    }
    /// The last lines of the step's combined stdout and stderr.
    async fn log_tail(&self) -> &str {
        &self.0.log_tail
    }
    /// A page of the step's full output (stdout and stderr, secrets masked), of `attempt`
    /// (default: the latest). Page on with `offset: nextOffset` until `complete` and
    /// `nextOffset == totalBytes`. The whole log: `GET /runs/{id}/steps/{name}/log`.
    async fn log(
        &self,
        ctx: &Context<'_>,
        #[graphql(default = 0, desc = "Byte offset to read from (0: the start).")] offset: i32,
        #[graphql(default = 65536, desc = "Most bytes to return (1-1048576).")] limit: i32,
        #[graphql(desc = "Which attempt (1, 2, ...); default: the latest.")] attempt: Option<i32>,
    ) -> Result<crate::graphql::logs::TaskLog> {
        crate::graphql::logs::page(ctx, &self.0, offset, limit, attempt).await
    }
    /// The running attempt's latest `::progress` percent, if it reported one.
    async fn progress_percent(&self) -> Option<f64> {
        self.0.progress_percent
    }
    /// Why the step failed, was skipped or cancelled.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
}

pub struct Run(pub tms_core::runs::Run);

impl From<tms_core::runs::Run> for Run {
    fn from(run: tms_core::runs::Run) -> Self {
        Run(run)
    }
}

// Its workflow, tasks and estimate come through the request's loaders, so a page of runs costs
// a fixed number of statements, and the estimate is computed once however many fields ask.
/// One execution of a workflow version: its status, progress and one task per step.
#[Object]
impl Run {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Where the run is.
    async fn status(&self) -> RunStatus {
        self.0.status.into()
    }
    /// The workflow it runs.
    async fn workflow(&self, ctx: &Context<'_>) -> Result<Workflow> {
        loaders(ctx)?
            .load_one(WorkflowId(self.0.workflow_id))
            .await?
            .map(Workflow)
            .ok_or_else(|| to_gql(tms_core::Error::NotFound("workflow")))
    }
    /// The workflow version this run is pinned to.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// How it was started.
    async fn trigger(&self) -> RunTrigger {
        self.0.trigger.into()
    }
    /// The schedule tick a scheduled run belongs to (unique per workflow); null for other runs.
    async fn scheduled_for(&self) -> Option<DateTime<Utc>> {
        self.0.scheduled_for
    }
    /// The run's inputs (a JSON object, `{}` when none were given); steps read them from
    /// `$TMS_INPUTS` and `TMS_INPUT_<KEY>`.
    async fn inputs(&self) -> Json<serde_json::Value> {
        Json(self.0.inputs.clone())
    }
    /// The key `triggerRun` was called with; null when none was given.
    async fn idempotency_key(&self) -> Option<&str> {
        self.0.idempotency_key.as_deref()
    }
    /// Whether the cache was bypassed for this run.
    async fn no_cache(&self) -> bool {
        self.0.no_cache
    }
    /// When the run was created (queued).
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When a worker first started it; null while queued.
    async fn started_at(&self) -> Option<DateTime<Utc>> {
        self.0.started_at
    }
    /// When it ended; null until then.
    async fn finished_at(&self) -> Option<DateTime<Utc>> {
        self.0.finished_at
    }
    /// Why the run failed, if it did.
    async fn error(&self) -> Option<&str> {
        self.0.error.as_deref()
    }
    /// When the run was given up (dead-lettered) because its job kept failing to start or to
    /// get anywhere over `TMS_MAX_DELIVERIES` deliveries; the run is then `FAILED` with the
    /// reason in `error`. Null for every other run.
    async fn dead_lettered_at(&self) -> Option<DateTime<Utc>> {
        self.0.dead_lettered_at
    }
    /// How many times a worker picked this run up (more than 1 after a worker crash).
    async fn deliveries(&self) -> i32 {
        self.0.deliveries
    }
    /// Sequence number of the latest run event.
    async fn last_seq(&self) -> i64 {
        self.0.last_seq
    }
    /// Percent done, 0-100: finished steps, plus running steps' own `::progress` reports.
    async fn percent(&self, ctx: &Context<'_>) -> Result<f64> {
        Ok(self.estimate(ctx).await?.percent)
    }
    /// Estimated seconds until the run ends (critical path over what is left, from earlier runs'
    /// step durations, refined by progress reports); null when there is no history to go by.
    async fn eta_seconds(&self, ctx: &Context<'_>) -> Result<Option<f64>> {
        Ok(self.estimate(ctx).await?.eta_seconds)
    }
    /// When a cancellation was requested, if one was.
    async fn cancel_requested_at(&self) -> Option<DateTime<Utc>> {
        self.0.cancel_requested_at
    }
    /// One task per step of the run's workflow version.
    async fn tasks(&self, ctx: &Context<'_>) -> Result<Vec<Task>> {
        let tasks = loaders(ctx)?.load_one(TasksOf(self.0.id)).await?;
        Ok(tasks
            .map(|t| t.iter().cloned().map(Task).collect())
            .unwrap_or_default())
    }
}

impl Run {
    /// A run that no longer exists has made no progress and has no estimate.
    async fn estimate(&self, ctx: &Context<'_>) -> Result<Estimate> {
        let est = loaders(ctx)?.load_one(EstimateOf(self.0.id)).await?;
        Ok(est.unwrap_or(Estimate {
            percent: 0.0,
            eta_seconds: None,
        }))
    }
}

pub type RunConnection = Connection<String, Run>;

/// Shared by `Query.runs` and `Workflow.runs`: newest first, keyset-paginated by run id.
pub async fn list_runs(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
    workflow_id: Option<uuid::Uuid>,
    status: Option<RunStatus>,
) -> Result<RunConnection> {
    let limit = page_size(first).gql()?;
    let before = match after {
        Some(c) => Some(uuid(&ID(decode_cursor("run", &c).gql()?), "after").gql()?),
        None => None,
    };
    let svc = &ctx.data_unchecked::<Services>().runs;
    let loaders = loaders(ctx)?;
    let node = ctx.look_ahead().field("edges").field("node");
    // The page's tasks and workflows are read with it, in one blocking-pool hop.
    let page = svc
        .page(
            caller(ctx).gql()?,
            before,
            limit,
            workflow_id,
            status.map(Into::into),
            loaders.page_wants(&node),
        )
        .await
        .gql()?;
    loaders.prime_runs(&node, &page.runs, page.extras).await;
    let mut conn = Connection::new(before.is_some(), page.has_next);
    conn.edges.extend(
        page.runs
            .into_iter()
            .map(|r| Edge::new(encode_cursor("run", &r.id.to_string()), Run::from(r))),
    );
    Ok(conn)
}
