//! Drives one run to its end: takes the run's lease, starts the steps the DAG rules say are
//! ready with bounded parallelism, and stops when nothing is left. Decisions come from
//! `tms_core::runs::dag`, writes from `tms_core::runs::execution`; this is orchestration only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::queue::RunVersion;
use tms_core::runs::TaskStatus;
use tms_core::runs::dag::Dag;
use tms_core::runs::eta::Estimator;
use tms_core::runs::execution::{Batch, Claim, ClaimPolicy, Claimed, Execution, Resumed, TaskEnd};
use tms_core::workflows::StepSpec;
use tms_core::{Error, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::control::{ActiveRuns, Control};
use crate::executor::SharedExecutor;
use crate::outputs;
use crate::step::{self, Ended, StepEnv, StepJob};

pub struct Runner {
    pub db: Db,
    pub bus: EventBus,
    /// Percent and ETA of every event this worker records (caches learnt durations).
    pub estimator: Arc<Estimator>,
    pub executor: SharedExecutor,
    /// Where step outputs are stored and restored from.
    pub artifacts: tms_core::artifacts::Artifacts,
    /// Worker-wide step slots (`TMS_WORKER_CONCURRENCY`).
    pub slots: Arc<Semaphore>,
    pub work_root: PathBuf,
    /// Run and step directories, reused from succeeded runs.
    pub workdirs: Arc<crate::workdirs::WorkDirs>,
    pub worker_name: String,
    /// The queue's Redis connection and name (to mark a job picked up).
    pub redis: redis::aio::ConnectionManager,
    pub queue: String,
    pub default_timeout: Duration,
    /// `TMS_STEP_LOG_MAX_BYTES`.
    pub log_max_bytes: usize,
    pub policy: ClaimPolicy,
    /// Runs driven at once by this process, whatever happens to the queue consumer: a consumer
    /// rebuilt after a Redis reconnect waits for the previous one's runs to free their slots.
    pub run_slots: Arc<Semaphore>,
    /// Runs this process is driving, so a duplicate delivery does not drive one twice and a
    /// cancellation request finds its run.
    pub active: Arc<ActiveRuns>,
    /// Fired when shutdown begins: runs start no new step; each hands its run back once its
    /// running steps have finished.
    pub draining: CancellationToken,
    /// Fired when the shutdown grace is over: runs stop their steps and hand their lease back.
    pub stopping: CancellationToken,
}

/// How a drive ended.
enum Drove {
    /// The run reached its end (finished or cancelled) and it is recorded.
    Ended,
    /// This worker let go of the run: lease lost, or handed back at shutdown.
    LetGo,
}

impl Runner {
    /// Executes the run if this worker can take its lease; returns quietly when another worker
    /// holds it or the run already ended (a duplicate delivery), or its workflow's limits make
    /// it wait. `version`: the workflow version the run's job says it is pinned to, if it says
    /// (a queued run is then claimed and started in one statement).
    pub async fn drive(self: &Arc<Self>, run_id: Uuid, version: Option<RunVersion>) -> Result<()> {
        let permit = tokio::select! {
            p = self.run_slots.clone().acquire_owned() => p,
            _ = self.draining.cancelled() => return Ok(()),
        };
        let Ok(_permit) = permit else {
            return Ok(());
        };
        if self.draining.is_cancelled() {
            // Not claimed: the reconciler re-enqueues the run for another worker.
            return Ok(());
        }
        let Some(active) = self.active.enter(run_id) else {
            tracing::info!(%run_id, "run already being driven by this worker; ignoring duplicate delivery");
            return Ok(());
        };
        let claimed = Execution::claim(
            self.db.clone(),
            self.bus.clone(),
            self.estimator.clone(),
            run_id,
            self.worker_name.clone(),
            self.policy,
            version,
        )
        .await?;
        let (exec, claim, resumed) = match claimed {
            Claimed::Run(exec, claim, resumed) => (exec, claim, resumed),
            Claimed::Gone => {
                tracing::info!(%run_id, "run is finished or leased by another worker; skipping delivery");
                return Ok(());
            }
            Claimed::Waiting(until) => {
                tracing::info!(%run_id, %until, "run waits for its workflow's limits");
                return Ok(());
            }
            Claimed::DeadLettered => return Ok(()),
        };
        tracing::info!(%run_id, delivery = claim.deliveries, "driving run");
        let ctl = Control::new(self.stopping.child_token());
        active.set_control(ctl.clone());
        if claim.cancel_requested {
            ctl.cancel_by_user();
        }
        let renewer = tokio::spawn(crate::renewal::keep_lease(
            exec.clone(),
            self.policy.lease,
            ctl.clone(),
        ));
        let result = self.drive_claimed(&exec, &claim, resumed, &ctl).await;
        renewer.abort();
        match &result {
            Ok(Drove::Ended) => {}
            _ if self.draining.is_cancelled() => {
                if let Err(e) = exec.release().await {
                    tracing::warn!(%run_id, error = %e, "lease not handed back; it will expire");
                }
                tracing::warn!(%run_id, "worker stopping; run handed back for another worker to resume");
            }
            _ if ctl.let_go() => {
                tracing::warn!(%run_id, "lease lost; another worker will finish the run")
            }
            Err(e) => {
                // Given back at once rather than held until the lease lapses: the run is
                // delivered again soon, and one that never gets anywhere reaches
                // `TMS_MAX_DELIVERIES` and is dead-lettered instead of looping slowly forever.
                tracing::warn!(%run_id, error = %e, "run interrupted; handing it back");
                if let Err(e) = exec.release().await {
                    tracing::warn!(%run_id, error = %e, "lease not handed back; it will expire");
                }
            }
            _ => {}
        }
        result.map(|_| ())
    }

    /// Cancels `run_id` if this worker is driving it (a cancellation request arrived).
    pub fn cancel(&self, run_id: Uuid) -> bool {
        match self.active.control(run_id) {
            Some(ctl) => {
                tracing::info!(%run_id, "cancelling run on request");
                ctl.cancel_by_user();
                true
            }
            None => false,
        }
    }

    /// Graceful stop: runs start no new step; running steps may finish for up to `grace`
    /// (their results are recorded), then the rest are stopped; every unfinished run is handed
    /// back for another worker to resume.
    pub async fn shutdown(&self, grace: Duration) {
        self.draining.cancel();
        let deadline = tokio::time::Instant::now() + grace;
        while !self.active.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        self.stopping.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !self.active.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn drive_claimed(
        &self,
        exec: &Execution,
        claim: &Claim,
        resumed: Option<Box<Resumed>>,
        ctl: &Control,
    ) -> Result<Drove> {
        let run_id = exec.run_id();
        let workflow_id = claim.workflow_id;
        // Resumed by the claim's own transaction, unless that could not be done.
        let resumed = match resumed {
            Some(r) => *r,
            None => exec.resume().await?,
        };
        let Resumed {
            spec,
            tasks,
            inputs,
            no_cache,
        } = resumed;
        let attempts: HashMap<String, i32> = tasks
            .iter()
            .map(|t| (t.node.name.clone(), t.attempt))
            .collect();
        // Manifests of the outputs of tasks that succeeded or were cached, wherever they ran.
        let mut produced: HashMap<String, String> = tasks
            .iter()
            .filter_map(|t| Some((t.node.name.clone(), t.output.clone()?)))
            .collect();
        let mut dag = Dag::new(tasks.into_iter().map(|t| t.node).collect())?;
        let steps: HashMap<String, StepSpec> = spec
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let run_dir = self.work_root.join(run_id.to_string());
        let masks = Arc::new(tms_core::secrets::values(
            spec.steps.iter().flat_map(|s| s.secrets.iter()),
        ));
        // The run's directory and inputs file are made in the first turn's trip to the blocking
        // pool, with that turn's step directories, while the turn's writes go to Postgres.
        let mut unprepared = Some((inputs, no_cache));
        let mut env: Option<StepEnv> = None;
        let mut running: JoinSet<(String, Result<Ended>)> = JoinSet::new();
        // Ends of steps that ran to their end, not yet recorded: written with the next turn's
        // skips and starts.
        let mut ends: Vec<(String, TaskEnd)> = Vec::new();
        // The run's status once its last step's end also ended it.
        let mut ended = None;

        loop {
            let cancelling = ctl.user_cancelled();
            if ctl.let_go() {
                running.shutdown().await;
                return Ok(Drove::LetGo);
            }
            let draining = self.draining.is_cancelled();
            // Nothing runs and nothing is left to start or skip: the step that just ended ends
            // the run, and its end and the run's are written together.
            let last = running.is_empty()
                && dag.ready().is_empty()
                && dag.blocked().is_empty()
                && ends.len() == 1
                && !cancelling
                && !ctl.let_go();
            if last {
                let (name, task_end) = ends.pop().expect("one end");
                let outcome = dag.outcome();
                exec.finish_last(&name, task_end, outcome.status, outcome.error)
                    .await?;
                ended = Some(outcome.status);
                break;
            }
            // This turn's writes, in order: the ends, then the skips and starts they cause.
            let mut batch = Batch::default();
            for (name, end) in ends.drain(..) {
                batch.end(&name, end);
            }
            let mut starts = Vec::new();
            let mut step_dirs = Vec::new();
            // A cancelled run starts nothing new; its running steps stop and report themselves.
            // A draining worker starts nothing new either, and hands the run back below.
            if !cancelling && !draining {
                for (name, dep) in dag.blocked() {
                    batch.skip(&name, &dep);
                    dag.set(&name, TaskStatus::Skipped);
                }
                let ready = dag.ready();
                step_dirs.clone_from(&ready);
                for name in ready {
                    let step = steps.get(&name).cloned().ok_or_else(|| {
                        Error::Internal(format!(
                            "task `{name}` has no step in its workflow version"
                        ))
                    })?;
                    dag.set(&name, TaskStatus::Running);
                    let step_dir = run_dir.join(&name);
                    let prev_attempt = attempts.get(&name).copied().unwrap_or(0);
                    // A free slot now: the first attempt's start is written with this turn's
                    // other writes. A cacheable step looks the cache up before it may start.
                    let started = match step.cache {
                        false => self.slots.clone().try_acquire_owned().ok(),
                        true => None,
                    };
                    if started.is_some() {
                        batch.start(&name, prev_attempt + 1);
                    }
                    starts.push(StepJob {
                        deps: outputs::dependency_outputs(&step, &produced),
                        prev_attempt,
                        step_dir,
                        step,
                        started,
                    });
                }
            }
            // The turn's directories (every one in one trip to the blocking pool) and its writes,
            // side by side: neither needs the other, and a step starts only once both are done.
            // Should the directories fail after the writes, the run is handed back with steps
            // recorded as started, as after a crash, and resumes as it would then.
            let run = unprepared
                .take()
                .map(|(inputs, no_cache)| (workflow_id, inputs, no_cache));
            let prepare = crate::workdirs::prepare_turn(&self.workdirs, &run_dir, run, step_dirs);
            let (prepared, recorded) = tokio::join!(prepare, exec.record(batch));
            match recorded.and(prepared) {
                Err(e) => {
                    running.shutdown().await;
                    return Err(e);
                }
                Ok(Some(run)) => {
                    env = Some(StepEnv {
                        artifacts: self.artifacts.clone(),
                        run: Arc::new(run),
                        exec: exec.clone(),
                        executor: self.executor.clone(),
                        slots: self.slots.clone(),
                        default_timeout: self.default_timeout,
                        ctl: ctl.clone(),
                        workflow_id,
                        log_max_bytes: self.log_max_bytes,
                        masks: masks.clone(),
                    });
                }
                Ok(None) => {}
            }
            for job in starts {
                let name = job.step.name.clone();
                let env = env.clone().ok_or_else(|| {
                    Error::Internal("a step started before its run's directory".into())
                })?;
                let span =
                    tracing::info_span!("step", otel.name = format!("step {name}"), step = %name);
                running
                    .spawn(async move { (name, step::execute(env, job).await) }.instrument(span));
            }
            if running.is_empty() {
                if draining && !cancelling && (!dag.ready().is_empty() || !dag.blocked().is_empty())
                {
                    return Ok(Drove::LetGo);
                }
                break;
            }
            tokio::select! {
                joined = running.join_next() => {
                    // Every step that has ended by now is taken in this turn.
                    let mut joined = joined;
                    while let Some(j) = joined {
                        match j {
                            Ok((name, Ok(Ended { end, output, unrecorded }))) => {
                                if let Some(m) = output {
                                    produced.insert(name.clone(), m);
                                }
                                if end.timed_out {
                                    dag.set_timed_out(&name);
                                }
                                dag.set(&name, end.status);
                                if let Some(task_end) = unrecorded {
                                    ends.push((name, task_end));
                                }
                            }
                            Ok((_, Err(e))) => {
                                running.shutdown().await;
                                self.record_ends(exec, &mut ends).await;
                                return Err(e);
                            }
                            Err(join_err) => {
                                running.shutdown().await;
                                self.record_ends(exec, &mut ends).await;
                                return Err(Error::Internal(format!("step task panicked: {join_err}")));
                            }
                        }
                        joined = running.try_join_next();
                    }
                },
                _ = ctl.stop.cancelled(), if !cancelling => {}
                _ = self.draining.cancelled(), if !draining => {}
            }
        }

        let status = match ended {
            Some(status) => status,
            None if ctl.user_cancelled() => {
                exec.cancel("cancelled by request").await?;
                tracing::info!(%run_id, "run cancelled");
                return Ok(Drove::Ended);
            }
            None => {
                let outcome = dag.outcome();
                exec.finish_run(outcome.status, outcome.error).await?;
                outcome.status
            }
        };
        tracing::info!(%run_id, %status, "run finished");
        if status == tms_core::runs::RunStatus::Succeeded {
            // A failed run's directory stays for inspection until the retention sweep.
            let dirs = self.workdirs.clone();
            let _ = tokio::task::spawn_blocking(move || dirs.recycle(&run_dir)).await;
        }
        Ok(Drove::Ended)
    }

    /// Records the ends of steps that ended before the run was interrupted, so that they are
    /// not run again when it resumes; a failure only means they will be.
    async fn record_ends(&self, exec: &Execution, ends: &mut Vec<(String, TaskEnd)>) {
        let mut batch = Batch::default();
        for (name, end) in ends.drain(..) {
            batch.end(&name, end);
        }
        if let Err(e) = exec.record(batch).await {
            tracing::warn!(run_id = %exec.run_id(), error = %e, "ended steps not recorded; they run again on resume");
        }
    }
}
