//! GraphQL types for workflows, their versions and steps.

use std::collections::BTreeMap;

use async_graphql::{Context, ID, InputObject, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::workflows::{ScheduleInput as CoreSchedule, StepSpec, WorkflowInput as CoreInput};
use tms_core::{Error, FieldError};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::loaders::{VersionKey, loaders};
use crate::graphql::runs::{RunConnection, RunStatus, list_runs};
use crate::state::Services;

/// One plain environment variable of a step (secrets go in `StepInput.secrets` instead).
#[derive(InputObject)]
pub struct EnvVarInput {
    /// Variable name, `[A-Za-z_][A-Za-z0-9_]*`; at most 100 per step, each name once.
    pub name: String,
    /// Its value (at most 8 KiB). Plain configuration: readable by every role that reads the
    /// workflow, and part of the step's cache key.
    pub value: String,
}

/// One plain environment variable of a step.
#[derive(SimpleObject, Clone)]
pub struct EnvVar {
    /// Variable name.
    pub name: String,
    /// Its value (plain configuration, never a secret).
    pub value: String,
}

/// One step of a workflow: a container image and what to execute in it.
#[derive(InputObject)]
pub struct StepInput {
    /// Unique within the workflow, `[a-z0-9-]{1,63}`.
    pub name: String,
    /// Container image, e.g. `alpine:3.20`.
    pub image: String,
    /// Shell script run with `sh -c`; exclusive with `command`.
    pub run: Option<String>,
    /// Argv list; exclusive with `run`.
    pub command: Option<Vec<String>>,
    /// Plain environment variables of the step (part of its cache key).
    #[graphql(default)]
    pub env: Vec<EnvVarInput>,
    /// Names of secrets (`TMS_SECRET_<NAME>` on the worker) injected as environment variables;
    /// their values are never logged, never in cache keys, never in the API.
    #[graphql(default)]
    pub secrets: Vec<String>,
    /// Names of steps of this workflow that must succeed first; each one's `/out` is visible
    /// at `/in/<step>`. The graph must be acyclic (VALIDATION names the cycle or missing step).
    #[graphql(default)]
    pub depends_on: Vec<String>,
    /// Absolute working directory inside the step (default: the image's).
    pub workdir: Option<String>,
    /// Seconds the step may run before it is stopped and fails (1-604800; default: the worker's
    /// `TMS_STEP_TIMEOUT_SECONDS`, 3600).
    pub timeout_seconds: Option<i32>,
    /// Extra attempts after a failure (0-10; default 0).
    pub retries: Option<i32>,
    /// Seconds before the first retry, doubling with each further one up to an hour (0-3600;
    /// default 1).
    pub retry_backoff_seconds: Option<i32>,
    /// Whether a successful result may be reused by later runs (see the caching guide).
    #[graphql(default)]
    pub cache: bool,
    /// How long a cached result stays reusable, in seconds (default 7 days).
    pub cache_ttl_seconds: Option<i32>,
    /// Directories kept between runs of this workflow (Dagger cache volumes).
    #[graphql(default)]
    pub cache_paths: Vec<String>,
}

/// A workflow definition: what `createWorkflow` creates and `updateWorkflow` turns into a new
/// version. Every problem is reported at once as VALIDATION with the path of each field.
#[derive(InputObject)]
pub struct WorkflowInput {
    /// Unique name (1-100 characters); runs and the CLI refer to the workflow by it.
    pub name: String,
    /// Free text for people (at most 4000 characters).
    pub description: Option<String>,
    /// The steps (1-200), with unique names; they form a DAG through `dependsOn`.
    pub steps: Vec<StepInput>,
    /// Fires runs on a cron schedule; leaving it out of an update removes the schedule.
    pub schedule: Option<ScheduleInput>,
    /// At most this many runs of the workflow execute at once (1-100000); more wait `QUEUED`
    /// and start in the order they were created. Leaving it out of an update removes the limit.
    pub max_concurrent_runs: Option<i32>,
    /// At most `runs` runs start in any `perSeconds` window; more wait `QUEUED`, in order.
    /// Leaving it out of an update removes the limit.
    pub rate_limit: Option<RateLimitInput>,
}

/// A start rate: at most `runs` runs (1-100000) per `perSeconds` seconds (1-86400).
#[derive(InputObject)]
pub struct RateLimitInput {
    /// Runs that may start per window (1-100000).
    pub runs: i32,
    /// The window, in seconds (1-86400).
    pub per_seconds: i32,
}

/// A workflow's start rate: at most `runs` runs start in any `perSeconds` window.
#[derive(SimpleObject, Clone, Copy)]
pub struct RateLimit {
    /// Runs that may start per window.
    pub runs: i32,
    /// The window, in seconds.
    pub per_seconds: i32,
}

/// A cron schedule: `cron` has five fields (minute hour day month weekday) or six with leading
/// seconds; days of week by name (`MON-FRI`). `timezone` is an IANA name (default `UTC`);
/// `enabled` defaults to true.
#[derive(InputObject)]
pub struct ScheduleInput {
    /// Five fields (`0 2 * * *`) or six with leading seconds.
    pub cron: String,
    /// IANA time zone the expression is read in, e.g. `Europe/Paris` (default `UTC`).
    pub timezone: Option<String>,
    /// Whether it fires (default true); `setScheduleEnabled` toggles it without a new version.
    pub enabled: Option<bool>,
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

fn non_negative(v: Option<i32>, field: String, errs: &mut Vec<FieldError>) -> Option<u32> {
    match v {
        None => None,
        Some(n) if n >= 0 => Some(n as u32),
        Some(_) => {
            errs.push(FieldError::new(field, "must not be negative"));
            None
        }
    }
}

fn positive(v: Option<i32>, field: String, errs: &mut Vec<FieldError>) -> Option<u32> {
    match v {
        None => None,
        Some(n) if n > 0 => Some(n as u32),
        Some(_) => {
            errs.push(FieldError::new(field, "must be at least 1"));
            None
        }
    }
}

impl WorkflowInput {
    /// Converts to the library's input, reporting shape problems GraphQL types cannot express.
    pub fn into_core(self) -> Result<CoreInput, Error> {
        let mut errs = Vec::new();
        let mut steps = Vec::with_capacity(self.steps.len());
        for (i, s) in self.steps.into_iter().enumerate() {
            let mut env = BTreeMap::new();
            for v in s.env {
                if env.insert(v.name.clone(), v.value).is_some() {
                    errs.push(FieldError::new(
                        format!("input.steps[{i}].env.{}", v.name),
                        "variable given twice",
                    ));
                }
            }
            steps.push(StepSpec {
                timeout_seconds: non_negative(
                    s.timeout_seconds,
                    format!("input.steps[{i}].timeoutSeconds"),
                    &mut errs,
                ),
                retries: non_negative(s.retries, format!("input.steps[{i}].retries"), &mut errs),
                retry_backoff_seconds: non_negative(
                    s.retry_backoff_seconds,
                    format!("input.steps[{i}].retryBackoffSeconds"),
                    &mut errs,
                ),
                cache_ttl_seconds: non_negative(
                    s.cache_ttl_seconds,
                    format!("input.steps[{i}].cacheTtlSeconds"),
                    &mut errs,
                ),
                name: s.name,
                image: s.image,
                run: s.run,
                command: s.command,
                env,
                secrets: s.secrets,
                depends_on: s.depends_on,
                workdir: s.workdir,
                cache: s.cache,
                cache_paths: s.cache_paths,
            });
        }
        let max_concurrent_runs = positive(
            self.max_concurrent_runs,
            "input.maxConcurrentRuns".into(),
            &mut errs,
        );
        let rate_limit = self.rate_limit.and_then(|r| {
            let runs = positive(Some(r.runs), "input.rateLimit.runs".into(), &mut errs);
            let per_seconds = positive(
                Some(r.per_seconds),
                "input.rateLimit.perSeconds".into(),
                &mut errs,
            );
            Some(tms_core::workflows::RateLimit {
                runs: runs?,
                per_seconds: per_seconds?,
            })
        });
        if !errs.is_empty() {
            return Err(Error::Validation(errs));
        }
        Ok(CoreInput {
            max_concurrent_runs,
            rate_limit,
            name: self.name,
            description: self.description,
            steps,
            schedule: self.schedule.map(|s| CoreSchedule {
                cron: s.cron,
                timezone: s.timezone,
                enabled: s.enabled,
            }),
        })
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
