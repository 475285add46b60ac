//! One step of a run, from its first attempt to its final state: a worker slot per attempt,
//! the step's retries with backoff, waits for an unreachable executor (which spend no retry),
//! the timeout, and its `::progress` reports. Every write goes through the run's
//! [`Execution`]; this module only orchestrates.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tms_core::runs::TaskStatus;
use tms_core::runs::execution::{CacheStore, Execution, TaskEnd};
use tms_core::runs::progress::ProgressLine;
use tms_core::workflows::StepSpec;
use tms_core::{Error, Result, secrets};
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tracing::Instrument;
use uuid::Uuid;

use crate::control::Control;
use crate::executor::{ExecError, SharedExecutor, StepRequest};
use crate::outputs::OutputError;
use crate::outputs::{self, RunData};

/// Waits between attempts to reach an unavailable executor: 1 s, doubling, at most 30 s.
const TRANSIENT_BACKOFF_START: Duration = Duration::from_secs(1);
const TRANSIENT_BACKOFF_MAX: Duration = Duration::from_secs(30);
/// At most one progress event per step this often (the latest report wins).
const PROGRESS_EVERY: Duration = Duration::from_millis(200);

/// What a step's attempts share with the rest of the run.
#[derive(Clone)]
pub struct StepEnv {
    pub exec: Execution,
    pub executor: SharedExecutor,
    /// Worker-wide step slots (`TMS_WORKER_CONCURRENCY`).
    pub slots: Arc<Semaphore>,
    pub default_timeout: Duration,
    pub ctl: Control,
    pub workflow_id: Uuid,
    /// Every secret value of the run, for masking whatever any step prints or reports.
    pub masks: Arc<Vec<String>>,
    pub artifacts: tms_core::artifacts::Artifacts,
    pub run: Arc<RunData>,
    /// `TMS_STEP_LOG_MAX_BYTES`: most output kept per attempt as the step's full log.
    pub log_max_bytes: usize,
}

/// One step to execute.
pub struct StepJob {
    pub step: StepSpec,
    /// Attempts already made (by earlier deliveries or retries of the run).
    pub prev_attempt: i32,
    pub step_dir: PathBuf,
    /// `(dependency, manifest of its outputs)`, or why they are not available.
    pub deps: std::result::Result<Vec<(String, String)>, String>,
    /// The slot of a first attempt the runner already recorded as started (with the writes of
    /// its turn); `None`: the step takes a slot and records its start itself.
    pub started: Option<OwnedSemaphorePermit>,
}

/// How one step ended, as the run needs to know it.
#[derive(Debug, Clone, Copy)]
pub struct StepEnd {
    pub status: TaskStatus,
    pub timed_out: bool,
}

/// How one step ended, with the manifest of its outputs when it succeeded or was cached.
#[derive(Debug, Clone)]
pub struct Ended {
    pub end: StepEnd,
    pub output: Option<String>,
    /// The final attempt's end, not yet recorded: the caller records it, with the run's end
    /// when no other step is left (one write instead of two). `None` when the step's end is
    /// recorded already (cached, stopped).
    pub unrecorded: Option<TaskEnd>,
}

/// How one attempt ended, when it ran to an end (rather than being stopped).
struct AttemptEnd {
    exit_code: Option<i32>,
    log_tail: String,
    error: Option<String>,
    timed_out: bool,
}

/// Looks the step up in the cache, else restores its inputs and runs it with its retries;
/// returns how it ended, its final attempt's end left for the caller to record.
pub async fn execute(env: StepEnv, job: StepJob) -> Result<Ended> {
    let name = job.step.name.clone();
    let deps = job.deps.clone().unwrap_or_default();
    let cache = env.run.cache_key(&job.step, &deps);
    if job.deps.is_ok()
        && let Some(c) = &cache
        && let Some(manifest) = env.exec.cache_lookup(&name, &c.key).await?
    {
        let end = StepEnd {
            status: TaskStatus::Cached,
            timed_out: false,
        };
        return Ok(Ended {
            end,
            output: Some(manifest),
            unrecorded: None,
        });
    }
    // Inputs that cannot be restored fail the step without running it: retrying cannot help.
    let restored = match &job.deps {
        Ok(deps) => match outputs::restore(&env.artifacts, &job.step_dir, deps).await {
            Ok(dirs) => Ok(dirs),
            Err(OutputError::Failed(why)) => Err(why),
            Err(OutputError::Unavailable(why)) => return Err(Error::Unavailable(why)),
        },
        Err(why) => Err(why.clone()),
    };
    attempts(env, job, restored, cache).await
}

/// The step's attempts, until one succeeds (and its `/out` is stored) or none is left.
async fn attempts(
    env: StepEnv,
    mut job: StepJob,
    restored: std::result::Result<Vec<(String, PathBuf)>, String>,
    cache: Option<CacheStore>,
) -> Result<Ended> {
    let name = job.step.name.clone();
    let retries = job.step.retries.unwrap_or(0);
    let backoff = Duration::from_secs(job.step.retry_backoff_seconds.unwrap_or(1) as u64);
    // A secret missing on this worker, or inputs that cannot be restored, fail the step at
    // once: retrying cannot help.
    let (secrets, mut missing) = match secrets::resolve(&job.step.secrets) {
        Ok(v) => (v, None),
        Err(s) => (
            BTreeMap::new(),
            Some(format!("secret `{s}` is not configured on this worker")),
        ),
    };
    let inputs = match restored {
        Ok(dirs) => dirs,
        Err(why) => {
            missing.get_or_insert(why);
            Vec::new()
        }
    };
    let mut attempt = job.prev_attempt;
    let mut try_no = 0u32;
    let mut first_started: Option<std::time::Instant> = None;
    loop {
        attempt += 1;
        let permit = match job.started.take() {
            Some(permit) => permit,
            None => {
                let Some(permit) = acquire(&env).await? else {
                    return stopped(&env, &name).await;
                };
                env.exec.start_attempt(&name, attempt).await?;
                permit
            }
        };
        let started = *first_started.get_or_insert_with(std::time::Instant::now);
        let end = match &missing {
            Some(s) => AttemptEnd {
                exit_code: None,
                log_tail: String::new(),
                error: Some(s.clone()),
                timed_out: false,
            },
            None => {
                let req = StepRequest {
                    run_id: env.exec.run_id(),
                    workflow_id: env.workflow_id,
                    step: job.step.clone(),
                    attempt,
                    step_dir: job.step_dir.clone(),
                    inputs: inputs.clone(),
                    run_inputs: env.run.inputs_file.clone(),
                    input_vars: env.run.input_vars.clone(),
                    secrets: secrets.clone(),
                    masks: env.masks.to_vec(),
                    log: None,
                };
                let span = tracing::info_span!("step.attempt", attempt);
                match run_attempt(&env, req, permit).instrument(span).await? {
                    Some(end) => end,
                    None => return stopped(&env, &name).await,
                }
            }
        };
        // A successful attempt counts once its `/out` is stored; failing to store it is the
        // attempt's failure (and retried like one).
        let mut end = end;
        let mut output = None;
        if end.error.is_none() {
            match outputs::save(&env.artifacts, &env.exec, &job.step_dir).await {
                Ok(saved) => output = Some(saved),
                Err(OutputError::Failed(why)) => end.error = Some(secrets::mask(&why, &env.masks)),
                // Not the step's fault: the run is interrupted and resumed, not failed.
                Err(OutputError::Unavailable(why)) => return Err(Error::Unavailable(why)),
            }
        }
        if end.error.is_some() && try_no < retries && missing.is_none() {
            let wait = backoff
                .saturating_mul(1 << try_no.min(10))
                .min(Duration::from_secs(3600));
            let msg = format!(
                "attempt {attempt} failed ({}); retrying in {}s",
                end.error.as_deref().unwrap_or_default(),
                wait.as_secs()
            );
            env.exec.retry_later(&name, end.log_tail, msg).await?;
            try_no += 1;
            tokio::select! {
                _ = tokio::time::sleep(wait) => continue,
                _ = env.ctl.stop.cancelled() => return stopped(&env, &name).await,
            }
        }
        let status = match end.error {
            None => TaskStatus::Succeeded,
            Some(_) => TaskStatus::Failed,
        };
        let manifest = output.as_ref().map(|o| o.manifest.clone());
        let task_end = TaskEnd {
            status,
            exit_code: end.exit_code,
            log_tail: end.log_tail,
            error: end.error,
            output,
            cache: cache.clone(),
        };
        tms_core::metrics::runs::STEP_DURATION
            .with_label_values(&[status.as_str()])
            .observe(started.elapsed().as_secs_f64());
        let end = StepEnd {
            status,
            timed_out: end.timed_out,
        };
        return Ok(Ended {
            end,
            output: manifest,
            unrecorded: Some(task_end),
        });
    }
}

/// A worker slot, or `None` when the run is being stopped first.
async fn acquire(env: &StepEnv) -> Result<Option<OwnedSemaphorePermit>> {
    tokio::select! {
        p = env.slots.clone().acquire_owned() => {
            p.map(Some).map_err(|_| Error::internal("worker shutting down"))
        }
        _ = env.ctl.stop.cancelled() => Ok(None),
    }
}

/// A step interrupted by the run's control: recorded as cancelled when a user cancelled the
/// run, left alone (to be resumed elsewhere) when this worker let go of the run.
async fn stopped(env: &StepEnv, name: &str) -> Result<Ended> {
    if env.ctl.user_cancelled() {
        env.exec.cancel_task(name).await?;
    }
    let end = StepEnd {
        status: TaskStatus::Cancelled,
        timed_out: false,
    };
    Ok(Ended {
        end,
        output: None,
        unrecorded: None,
    })
}

/// One attempt, its output kept as the step's full log while it runs (see `crate::logs`).
async fn run_attempt(
    env: &StepEnv,
    mut req: StepRequest,
    permit: OwnedSemaphorePermit,
) -> Result<Option<AttemptEnd>> {
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let recorder = tokio::spawn(crate::logs::record(
        env.exec.clone(),
        req.step.name.clone(),
        req.attempt,
        rx,
        env.log_max_bytes,
    ));
    req.log = Some(tx);
    let end = execute_attempt(env, req, permit).await;
    // Every line is stored before the attempt's end is recorded; bounded, so a log that cannot
    // be written (database away past the writes' own retries) never holds the step up.
    if tokio::time::timeout(Duration::from_secs(60), recorder)
        .await
        .is_err()
    {
        tracing::warn!(run_id = %env.exec.run_id(), "step log still being written after 60s; going on without it");
    }
    end
}

/// One attempt, holding a slot while the executor runs it. The timeout covers the whole
/// attempt, including waits for an unavailable executor. `None`: the run's control stopped it.
async fn execute_attempt(
    env: &StepEnv,
    req: StepRequest,
    permit: OwnedSemaphorePermit,
) -> Result<Option<AttemptEnd>> {
    let name = req.step.name.clone();
    let timeout = req
        .step
        .timeout_seconds
        .map(|s| Duration::from_secs(s as u64))
        .unwrap_or(env.default_timeout);
    let deadline = tokio::time::Instant::now() + timeout;
    let mut wait = TRANSIENT_BACKOFF_START;
    let mut permit = Some(permit);
    loop {
        let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
        let forwarder = tokio::spawn(forward_progress(env.clone(), name.clone(), rx));
        let res = tokio::select! {
            r = tokio::time::timeout_at(
                deadline,
                env.executor
                    .run(req.clone(), tx)
                    .instrument(tracing::info_span!("executor.run", executor = env.executor.name())),
            ) => Some(r),
            _ = env.ctl.stop.cancelled() => None,
        };
        let _ = forwarder.await;
        let end = match res {
            None => return Ok(None),
            Some(Err(_elapsed)) => AttemptEnd {
                exit_code: None,
                log_tail: String::new(),
                error: Some(format!("timed out after {}s", timeout.as_secs())),
                timed_out: true,
            },
            Some(Ok(Ok(o))) => AttemptEnd {
                error: match o.exit_code {
                    Some(0) => None,
                    Some(c) => Some(format!("exited with code {c}")),
                    None => Some("ended without an exit code".into()),
                },
                exit_code: o.exit_code,
                log_tail: o.log_tail,
                timed_out: false,
            },
            Some(Ok(Err(ExecError::Transient(why))))
                if tokio::time::Instant::now() + wait < deadline =>
            {
                // The executor is unreachable: wait without spending a retry or a slot.
                let why = secrets::mask(&why, &env.masks);
                tracing::warn!(run_id = %req.run_id, step = %name, error = %why, "executor unavailable; retrying");
                let msg = format!(
                    "executor unavailable: {why}; retrying in {}s",
                    wait.as_secs()
                );
                env.exec.note(&name, msg).await?;
                drop(permit.take());
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = env.ctl.stop.cancelled() => return Ok(None),
                }
                match acquire(env).await? {
                    Some(p) => permit = Some(p),
                    None => return Ok(None),
                }
                wait = (wait * 2).min(TRANSIENT_BACKOFF_MAX);
                continue;
            }
            Some(Ok(Err(e))) => AttemptEnd {
                exit_code: None,
                log_tail: String::new(),
                error: Some(secrets::mask(&e.to_string(), &env.masks)),
                timed_out: false,
            },
        };
        return Ok(Some(end));
    }
}

/// Turns a step's `::progress` lines into progress events, at most one per
/// [`PROGRESS_EVERY`] (the latest wins) so a chatty step cannot flood the event log.
async fn forward_progress(env: StepEnv, step: String, mut rx: UnboundedReceiver<ProgressLine>) {
    let mut last_sent = tokio::time::Instant::now() - PROGRESS_EVERY;
    while let Some(mut line) = rx.recv().await {
        let since = last_sent.elapsed();
        if since < PROGRESS_EVERY {
            tokio::time::sleep(PROGRESS_EVERY - since).await;
        }
        while let Ok(newer) = rx.try_recv() {
            line = newer;
        }
        last_sent = tokio::time::Instant::now();
        let message = match &line.message {
            Some(m) => {
                let m: String = secrets::mask(m, &env.masks).chars().take(500).collect();
                format!("{}% {m}", line.percent)
            }
            None => format!("{}%", line.percent),
        };
        if let Err(e) = env.exec.progress(&step, line.percent, message).await {
            tracing::warn!(run_id = %env.exec.run_id(), error = %e, "progress event not recorded");
        }
    }
}
