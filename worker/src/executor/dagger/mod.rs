//! The Dagger executor: runs each step as a Dagger pipeline in its container image.
//!
//! One engine session per worker process ([`engine::Session`]), opened at start-up and reopened
//! on first use after it is lost. Losing it is detected from the answers: any transport-level
//! failure (connection refused or dropped, HTTP 5xx or 401, `{"data": null}`, a garbled answer,
//! a panic inside the SDK) drops the session, and the attempt fails with
//! [`ExecError::Transient`]: the step itself did nothing wrong. Reconnection attempts after a
//! failed one are spaced out (0.5 s doubling to 10 s) so that a dead engine is not hammered by
//! every step and readiness probe.
//!
//! Outcomes (see [`pipeline`] for the calls):
//! - the command exited 0 → `StepOutcome { exit_code: 0 }`, once its `/out` is exported to the
//!   host's `step_dir/out`;
//! - the command exited non-zero (`EXEC_ERROR`) → `StepOutcome` with that exit code and the
//!   output tail: a failed step, like a failing local process;
//! - the image cannot be pulled, the engine refuses an input, or it cannot export `/out` →
//!   [`ExecError::Step`] naming it;
//! - anything transport-level → [`ExecError::Transient`].
//!
//! Dagger returns a command's output when it ends, so the log tail is stdout's lines followed by
//! stderr's (not interleaved), and `::progress` lines from stdout are forwarded to the progress
//! channel only then.
//!
//! Files go through the host, never through engine state kept between steps: each dependency's
//! outputs, restored by the worker into a host directory ([`StepRequest::inputs`]), are read with
//! `host{directory}` and mounted at `/in/<dep>`; the run's inputs file is read with `host{file}`
//! and put at `/in/_inputs.json` (`TMS_INPUTS`), with the `TMS_INPUT_*` variables set beside it;
//! and a successful step's `/out` is exported to `step_dir/out` (emptied before the step runs),
//! from where the worker stores it in the artifact store. So a dependent can run in another
//! session or on another worker than its dependency. The engine reads and writes these paths on
//! the host of the session's client (`dagger run` or `dagger session`), which is the worker's.
//!
//! Secrets travel only in `setSecret` documents; they are masked (`***`) in the log tail, in
//! progress messages and in every error message this executor produces, and no document is ever
//! logged by it. Masking covers every secret value any step of the same run uses
//! ([`StepRequest::masks`]), since a step can pass its secret to a dependent through `/out`.
//!
//! Cancellation and timeouts drop the in-flight future, which closes the HTTP request; the engine
//! then cancels the call, and with it the exec, once no other client waits for the same
//! operation (see docs/dagger.md).

mod client;
mod engine;
mod pipeline;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_files;
#[cfg(test)]
mod tests_session;

use std::panic::AssertUnwindSafe;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use futures::FutureExt as _;
use tms_core::runs::progress::{ProgressLine, parse_line};
use tokio::sync::mpsc::UnboundedSender;
use tokio::time::Instant;

use engine::Session;
pub use engine::{EngineSource, SessionError};
use pipeline::{Failure, HostPaths};

use crate::executor::local::{TAIL_BYTES, TAIL_LINES};
use crate::executor::{ExecError, Executor, ReadyError, StepOutcome, StepRequest, Tail};

/// How long opening a session may take. Starting `dagger session` may have to start the engine
/// container (and pull its image the first time), hence minutes rather than seconds.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(300);
const RECONNECT_FIRST: Duration = Duration::from_millis(500);
const RECONNECT_MAX: Duration = Duration::from_secs(10);

#[derive(Clone)]
pub struct DaggerExecutor {
    inner: Arc<Inner>,
}

struct Inner {
    source: EngineSource,
    slot: tokio::sync::Mutex<Slot>,
}

/// The session, or why there is none and when to try again.
struct Slot {
    current: Option<Arc<Session>>,
    generation: u64,
    retry_at: Option<Instant>,
    backoff: Duration,
    /// Why the last attempt failed; shared by every caller refused until the next one.
    last_error: Option<Arc<SessionError>>,
}

impl DaggerExecutor {
    pub fn new(source: EngineSource) -> Self {
        Self {
            inner: Arc::new(Inner {
                source,
                slot: tokio::sync::Mutex::new(Slot {
                    current: None,
                    generation: 0,
                    retry_at: None,
                    backoff: RECONNECT_FIRST,
                    last_error: None,
                }),
            }),
        }
    }

    pub fn source(&self) -> &EngineSource {
        &self.inner.source
    }

    /// Opens the session now, whatever the reconnect schedule says; returns the engine version.
    pub async fn connect(&self) -> Result<String, SessionError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.session(true).await })
            .await
            .map_err(SessionError::Task)?
            .map(|(_, version)| version)
    }

    /// The current session, opened if needed. Opening runs on its own task: a caller that gives
    /// up (a readiness probe's deadline, a cancelled step) must not abort a `dagger session`
    /// start half-way.
    async fn session(&self) -> Result<Arc<Session>, SessionError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.session(false).await })
            .await
            .map_err(SessionError::Task)?
            .map(|(s, _)| s)
    }

    /// Forgets session `generation` after a transport failure, so the next use opens a new one.
    async fn lost(&self, generation: u64, why: &str) {
        let mut slot = self.inner.slot.lock().await;
        if slot
            .current
            .as_ref()
            .is_some_and(|s| s.generation == generation)
        {
            slot.current = None;
            slot.retry_at = None;
            tracing::warn!(reason = %why, "Dagger engine session lost; it is reopened on next use");
        }
    }

    /// [`Executor::run`] with the cache mounts given as (path, volume key).
    async fn run_with_caches(
        &self,
        req: StepRequest,
        progress: UnboundedSender<ProgressLine>,
        caches: Vec<(String, String)>,
    ) -> Result<StepOutcome, ExecError> {
        let masks = Masks::for_request(&req);
        let host = host_paths(&req)?;
        let session = self.session().await.map_err(|e| {
            let why = tms_core::error::report(&e);
            ExecError::Transient(masks.apply(&format!("no Dagger engine: {why}")))
        })?;
        tracing::info!(
            run_id = %req.run_id, step = %req.step.name, image = %req.step.image,
            attempt = req.attempt, "running step on Dagger"
        );
        let attempt = AssertUnwindSafe(pipeline::run(&session, &req, &host, &caches))
            .catch_unwind()
            .await;
        let finished = match attempt {
            Ok(Ok(f)) => f,
            Ok(Err(Failure::Step(m))) => return Err(ExecError::Step(masks.apply(&m))),
            Ok(Err(Failure::Transient(m))) => {
                let m = masks.apply(&m);
                self.lost(session.generation, &m).await;
                return Err(ExecError::Transient(m));
            }
            Err(_panic) => {
                // The SDK unwraps some answers it does not expect; the session is suspect.
                let m = "the Dagger SDK panicked on the engine's answer".to_string();
                self.lost(session.generation, &m).await;
                return Err(ExecError::Transient(m));
            }
        };

        for line in finished.stdout.lines() {
            if let Some(mut p) = parse_line(line) {
                p.message = p.message.map(|m| masks.apply(&m));
                let _ = progress.send(p);
            }
        }
        let mut tail = Tail::new(TAIL_LINES, TAIL_BYTES, &masks.0).with_sink(req.log.clone());
        for line in finished.stdout.lines().chain(finished.stderr.lines()) {
            tail.push(line);
        }
        Ok(StepOutcome {
            exit_code: Some(finished.exit_code),
            log_tail: tail.text(),
        })
    }
}

impl Inner {
    async fn session(&self, force: bool) -> Result<(Arc<Session>, String), SessionError> {
        let mut slot = self.slot.lock().await;
        if let Some(s) = &slot.current {
            return Ok((s.clone(), String::new()));
        }
        let now = Instant::now();
        if !force
            && let Some(at) = slot.retry_at.filter(|at| *at > now)
            && let Some(last) = &slot.last_error
        {
            return Err(SessionError::Backoff {
                wait_secs: (at - now).as_secs_f64(),
                last: last.clone(),
            });
        }
        slot.generation += 1;
        let generation = slot.generation;
        let opened =
            match tokio::time::timeout(OPEN_TIMEOUT, Session::open(&self.source, generation)).await
            {
                Ok(r) => r,
                Err(_) => Err(SessionError::Timeout(OPEN_TIMEOUT.as_secs())),
            };
        match opened {
            Ok((session, version)) => {
                tracing::info!(
                    engine = %version, via = %self.source.describe(), generation,
                    "Dagger engine session open"
                );
                let session = Arc::new(session);
                slot.current = Some(session.clone());
                slot.retry_at = None;
                slot.backoff = RECONNECT_FIRST;
                Ok((session, version))
            }
            Err(e) => {
                let e = Arc::new(SessionError::Unreachable {
                    via: self.source.describe(),
                    cause: Box::new(e),
                });
                let error = tms_core::error::report(&e);
                tracing::warn!(%error, "cannot open a Dagger engine session");
                slot.retry_at = Some(Instant::now() + slot.backoff);
                slot.backoff = (slot.backoff * 2).min(RECONNECT_MAX);
                slot.last_error = Some(e.clone());
                Err(SessionError::Shared(e))
            }
        }
    }
}

/// Cache mounts a step declares, as (path, volume key): one volume per workflow and path, so
/// runs of a workflow share them and workflows never see each other's.
fn declared_cache_mounts(req: &StepRequest) -> Vec<(String, String)> {
    let scope = req.workflow_id.to_string();
    req.step
        .cache_paths
        .iter()
        .map(|p| (p.clone(), pipeline::cache_volume_key(&scope, p)))
        .collect()
}

/// Checks `req`'s host inputs, empties its `step_dir/out` and returns the paths as the engine
/// takes them (absolute, UTF-8). The run's inputs file is optional: without one nothing is
/// mounted at `/in/_inputs.json`.
fn host_paths(req: &StepRequest) -> Result<HostPaths, ExecError> {
    let mut inputs = Vec::with_capacity(req.inputs.len());
    for (dep, dir) in &req.inputs {
        if !dir.is_dir() {
            return Err(ExecError::Step(format!(
                "the output of step `{dep}` was not restored into {}",
                dir.display()
            )));
        }
        inputs.push((dep.clone(), engine_path(dir)?));
    }
    let run_inputs = if req.run_inputs.is_file() {
        Some(engine_path(&req.run_inputs)?)
    } else {
        None
    };
    let out = req.step_dir.join("out");
    let prepared = match std::fs::remove_dir_all(&out) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => std::fs::create_dir_all(&out),
    };
    prepared.map_err(|e| ExecError::Step(format!("preparing {}: {e}", out.display())))?;
    Ok(HostPaths {
        inputs,
        run_inputs,
        out: engine_path(&out)?,
    })
}

/// `p` as the engine is given it: absolute (a relative path would be resolved against the
/// session client's directory) and UTF-8 (GraphQL strings cannot carry anything else).
fn engine_path(p: &Path) -> Result<String, ExecError> {
    let abs = std::path::absolute(p)
        .map_err(|e| ExecError::Step(format!("resolving {}: {e}", p.display())))?;
    abs.to_str().map(str::to_string).ok_or_else(|| {
        ExecError::Step(format!(
            "{} is not valid UTF-8, so it cannot be handed to the engine",
            abs.display()
        ))
    })
}

/// The secret values of a run, applied with the one masking rule of `tms_core::secrets`.
struct Masks(Vec<String>);

impl Masks {
    /// Every secret value of `req`'s run: its own and the other steps' (`masks`).
    fn for_request(req: &StepRequest) -> Self {
        let mut all: Vec<String> = req.masks.clone();
        all.extend(req.secrets.values().cloned());
        all.sort();
        all.dedup();
        Self(all)
    }

    fn apply(&self, text: &str) -> String {
        tms_core::secrets::mask(text, &self.0)
    }
}

#[async_trait]
impl Executor for DaggerExecutor {
    fn name(&self) -> &'static str {
        "dagger"
    }

    /// Ready when the engine answers `query{version}` on the current (or a freshly opened)
    /// session.
    async fn ready(&self) -> Result<(), ReadyError> {
        let session = self.session().await?;
        let err = match AssertUnwindSafe(session.query.version())
            .catch_unwind()
            .await
        {
            Ok(Ok(_)) => return Ok(()),
            Ok(Err(e)) => ReadyError::Engine(e),
            Err(_) => ReadyError::SdkPanicked,
        };
        self.lost(session.generation, &tms_core::error::report(&err))
            .await;
        Err(err)
    }

    async fn run(
        &self,
        req: StepRequest,
        progress: UnboundedSender<ProgressLine>,
    ) -> Result<StepOutcome, ExecError> {
        let caches = declared_cache_mounts(&req);
        self.run_with_caches(req, progress, caches).await
    }
}
