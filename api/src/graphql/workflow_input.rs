//! GraphQL input types of workflow definitions, and their conversion to the library's input.

use std::collections::BTreeMap;

use async_graphql::InputObject;
use tms_core::workflows::{ScheduleInput as CoreSchedule, StepSpec, WorkflowInput as CoreInput};
use tms_core::{Error, FieldError};

/// One plain environment variable of a step (secrets go in `StepInput.secrets` instead).
#[derive(InputObject)]
pub struct EnvVarInput {
    /// Variable name, `[A-Za-z_][A-Za-z0-9_]*`; at most 100 per step, each name once.
    pub name: String,
    /// Its value (at most 8 KiB). Plain configuration: readable by every role that reads the
    /// workflow, and part of the step's cache key.
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
