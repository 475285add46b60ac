//! GraphQL types for workflows, their versions and steps.

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::Error;
use tms_core::workflows::StepSpec;

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::loaders::{VersionKey, loaders};
use crate::graphql::runs::{RunConnection, RunStatus, list_runs};
use crate::state::Services;

pub use crate::graphql::workflow_input::{
    EnvVarInput, RateLimitInput, ScheduleInput, StepInput, WorkflowInput,
};

/// One plain environment variable of a step.
#[derive(SimpleObject, Clone)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Its value (plain configuration, never a secret).
    pub value: String,
}

/// A workflow's start rate: at most `runs` runs start in any `perSeconds` window.
#[derive(SimpleObject, Clone, Copy)]
pub struct RateLimit {
    /// Runs that may start per window.
    pub runs: i32,
    /// The window, in seconds.
    pub per_seconds: i32,
}

pub struct Schedule(pub tms_core::schedules::Schedule, pub bool);

// The flag says whether the workflow is archived.
/// A workflow's cron schedule (an archived workflow's schedule never fires).
#[Object]
impl Schedule {
    /// The cron expression (five fields, or six with leading seconds).
    async fn cron(&self) -> &str {
        &self.0.cron
    }
    /// IANA time zone the expression is read in.
    async fn timezone(&self) -> &str {
        &self.0.timezone
    }
    /// Whether it fires.
    async fn enabled(&self) -> bool {
        self.0.enabled
    }
    /// The next tick it fires for; null while disabled (or the workflow is archived).
    async fn next_fire_at(&self) -> Option<DateTime<Utc>> {
        if self.1 {
            return None;
        }
        self.0.next_fire_at(Utc::now())
    }
}

pub struct Step(pub StepSpec);

/// One step of a workflow version.
#[Object]
impl Step {
    /// Unique within the workflow.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Container image (ignored by the local executor).
    async fn image(&self) -> &str {
        &self.0.image
    }
    /// Shell script run with `sh -c`; null when the step has an argv `command`.
    async fn run(&self) -> Option<&str> {
        self.0.run.as_deref()
    }
    /// Argv list; null when the step has a `run` script.
    async fn command(&self) -> Option<&Vec<String>> {
        self.0.command.as_ref()
    }
    /// Plain environment variables, by name.
    async fn env(&self) -> Vec<EnvVar> {
        self.0
            .env
            .iter()
            .map(|(k, v)| EnvVar {
                name: k.clone(),
                value: v.clone(),
            })
            .collect()
    }
    /// Secret names only; values are never exposed.
    async fn secrets(&self) -> &Vec<String> {
        &self.0.secrets
    }
    /// Steps that must succeed before this one starts.
    async fn depends_on(&self) -> &Vec<String> {
        &self.0.depends_on
    }
    /// Working directory; null: the image's.
    async fn workdir(&self) -> Option<&str> {
        self.0.workdir.as_deref()
    }
    /// Seconds before the step is stopped; null: the worker's default (3600).
    async fn timeout_seconds(&self) -> Option<u32> {
        self.0.timeout_seconds
    }
    /// Extra attempts after a failure; null: none.
    async fn retries(&self) -> Option<u32> {
        self.0.retries
    }
    /// Seconds before the first retry, doubling each time; null: 1.
    async fn retry_backoff_seconds(&self) -> Option<u32> {
        self.0.retry_backoff_seconds
    }
    /// Whether a successful result may be reused by later runs.
    async fn cache(&self) -> bool {
        self.0.cache
    }
    /// How long a cached result stays reusable (null: the default, 7 days).
    async fn cache_ttl_seconds(&self) -> Option<u32> {
        self.0.cache_ttl_seconds
    }
    /// Directories kept between runs of this workflow (Dagger cache volumes).
    async fn cache_paths(&self) -> &Vec<String> {
        &self.0.cache_paths
    }
}

pub struct WorkflowVersion(pub tms_core::workflows::WorkflowVersion);

/// One immutable version of a workflow: every update creates the next one; runs keep the
/// version they started with.
#[Object]
impl WorkflowVersion {
    /// 1 for the first definition, then one more per update.
    async fn version(&self) -> i32 {
        self.0.version
    }
    /// When this version was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Its steps, in definition order.
    async fn steps(&self) -> Vec<Step> {
        self.0.spec.steps.iter().cloned().map(Step).collect()
    }
}

pub struct Workflow(pub tms_core::workflows::Workflow);

/// A named, versioned definition of steps that runs execute.
#[Object]
impl Workflow {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Unique name.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// Free text for people; empty when none was given.
    async fn description(&self) -> &str {
        &self.0.description
    }
    /// The version new runs start with.
    async fn current_version(&self) -> i32 {
        self.0.current_version
    }
    /// Whether it was archived: no new runs, its schedule never fires.
    async fn archived(&self) -> bool {
        self.0.archived_at.is_some()
    }
    /// The legacy id of the task (group) this workflow was imported from; null when it was
    /// not imported.
    async fn legacy_id(&self) -> Option<&str> {
        self.0.legacy_id.as_deref()
    }
    /// When it was archived; null while it is active.
    async fn archived_at(&self) -> Option<DateTime<Utc>> {
        self.0.archived_at
    }
    /// At most this many runs execute at once; null: no limit.
    async fn max_concurrent_runs(&self) -> Option<i32> {
        self.0.max_concurrent_runs.map(|n| n as i32)
    }
    /// At most `runs` runs start per `perSeconds`; null: no limit.
    async fn rate_limit(&self) -> Option<RateLimit> {
        self.0.rate_limit.map(|r| RateLimit {
            runs: r.runs as i32,
            per_seconds: r.per_seconds as i32,
        })
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it last changed (new version, schedule toggled, archived).
    async fn updated_at(&self) -> DateTime<Utc> {
        self.0.updated_at
    }
    /// The cron schedule runs are fired on, if it has one.
    async fn schedule(&self) -> Option<Schedule> {
        let archived = self.0.archived_at.is_some();
        self.0.schedule.clone().map(|s| Schedule(s, archived))
    }
    /// Steps of the current version.
    async fn steps(&self, ctx: &Context<'_>) -> Result<Vec<Step>> {
        let key = VersionKey(self.0.id, self.0.current_version);
        let v = loaders(ctx)?
            .load_one(key)
            .await?
            .ok_or_else(|| crate::error::to_gql(Error::NotFound("workflow version")))?;
        Ok(v.spec.steps.iter().cloned().map(Step).collect())
    }
    /// A specific version, or the current one; null when that version does not exist.
    async fn version(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The version number; default: `currentVersion`.")] version: Option<i32>,
    ) -> Result<Option<WorkflowVersion>> {
        let key = VersionKey(self.0.id, version.unwrap_or(self.0.current_version));
        let v = loaders(ctx)?.load_one(key).await?;
        Ok(v.map(|v| WorkflowVersion((*v).clone())))
    }
    /// Every version, oldest first.
    async fn versions(&self, ctx: &Context<'_>) -> Result<Vec<WorkflowVersion>> {
        let svc = &ctx.data_unchecked::<Services>().workflows;
        Ok(svc
            .versions(caller(ctx).gql()?, self.0.id)
            .await
            .gql()?
            .into_iter()
            .map(WorkflowVersion)
            .collect())
    }
    /// Runs of this workflow, newest first.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only runs in this state.")] status: Option<RunStatus>,
    ) -> Result<RunConnection> {
        list_runs(ctx, first, after, Some(self.0.id), status).await
    }
}

/// Accepts an `ID` argument, reporting a malformed one as a VALIDATION error on `field`.
pub fn parse_id(id: &ID, field: &str) -> Result<uuid::Uuid> {
    crate::graphql::ids::uuid(id, field).gql()
}
