//! Drives one run to its end: takes the run's lease, starts the steps the DAG rules say are
//! ready with bounded parallelism, and stops when nothing is left. Decisions come from
//! `tms_core::runs::dag`, writes from `tms_core::runs::execution`; this is orchestration only.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::runs::TaskStatus;
use tms_core::runs::dag::Dag;
use tms_core::runs::eta::Estimator;
use tms_core::runs::execution::{Execution, Resumed};
use tms_core::workflows::StepSpec;
use tms_core::{Error, Result};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;
use uuid::Uuid;

use crate::control::{ActiveRuns, Control};
use crate::executor::SharedExecutor;
use crate::outputs::{self, RunData};
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
    pub worker_name: String,
    pub default_timeout: Duration,
    pub lease: Duration,
    /// Runs this process is driving, so a duplicate delivery does not drive one twice and a
    /// cancellation request finds its run.
    pub active: Arc<ActiveRuns>,
    /// Fired at shutdown: runs stop their steps and hand their lease back.
    pub stopping: CancellationToken,
}

impl Runner {
    /// Executes the run if this worker can take its lease; returns quietly when another worker
    /// holds it or the run already ended (a duplicate delivery).
    pub async fn drive(self: &Arc<Self>, run_id: Uuid) -> Result<()> {
        if self.stopping.is_cancelled() {
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
            self.lease,
        )
        .await?;
        let Some((exec, claim)) = claimed else {
            tracing::info!(%run_id, "run is finished or leased by another worker; skipping delivery");
            return Ok(());
        };
        tracing::info!(%run_id, delivery = claim.deliveries, "driving run");
        let ctl = Control::new(self.stopping.child_token());
        active.set_control(ctl.clone());
        if claim.cancel_requested {
            ctl.cancel_by_user();
        }
        let renewer = tokio::spawn(keep_lease(exec.clone(), self.lease, ctl.clone()));
        let result = self.drive_claimed(&exec, claim.workflow_id, &ctl).await;
        renewer.abort();
        if self.stopping.is_cancelled() {
            if let Err(e) = exec.release().await {
                tracing::warn!(%run_id, error = %e, "lease not handed back; it will expire");
            }
            tracing::warn!(%run_id, "worker stopping; run handed back for another worker to resume");
        } else if ctl.let_go() {
            tracing::warn!(%run_id, "lease lost; another worker will finish the run");
        }
        result
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

    /// Lets runs in progress finish for up to `grace`, then stops their steps and hands them back.
    pub async fn shutdown(&self, grace: Duration) {
        let deadline = tokio::time::Instant::now() + grace;
        while !self.active.is_empty() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(100)).await;
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
        workflow_id: Uuid,
        ctl: &Control,
    ) -> Result<()> {
        let run_id = exec.run_id();
        let Resumed {
            spec,
            tasks,
            inputs,
            no_cache,
        } = exec.resume().await?;
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
        let run = RunData::prepare(&run_dir, workflow_id, inputs, no_cache)
            .await
            .map_err(|e| Error::Internal(format!("writing the run's inputs file: {e}")))?;
        let env = StepEnv {
            artifacts: self.artifacts.clone(),
            run: Arc::new(run),
            exec: exec.clone(),
            executor: self.executor.clone(),
            slots: self.slots.clone(),
            default_timeout: self.default_timeout,
            ctl: ctl.clone(),
            workflow_id,
            masks: Arc::new(tms_core::secrets::values(
                spec.steps.iter().flat_map(|s| s.secrets.iter()),
            )),
        };
        let mut running: JoinSet<(String, Result<Ended>)> = JoinSet::new();

        loop {
            let cancelling = ctl.user_cancelled();
            if ctl.let_go() {
                running.shutdown().await;
                return Ok(());
            }
            // A cancelled run starts nothing new; its running steps stop and report themselves.
            if !cancelling {
                for (name, dep) in dag.blocked() {
                    exec.skip(&name, &dep).await?;
                    dag.set(&name, TaskStatus::Skipped);
                }
                for name in dag.ready() {
                    let step = steps.get(&name).cloned().ok_or_else(|| {
                        Error::Internal(format!(
                            "task `{name}` has no step in its workflow version"
                        ))
                    })?;
                    dag.set(&name, TaskStatus::Running);
                    let job = StepJob {
                        deps: outputs::dependency_outputs(&step, &produced),
                        prev_attempt: attempts.get(&name).copied().unwrap_or(0),
                        step_dir: run_dir.join(&name),
                        step,
                    };
                    let env = env.clone();
                    let span = tracing::info_span!("step", otel.name = format!("step {name}"), step = %name);
                    running.spawn(
                        async move { (name, step::execute(env, job).await) }.instrument(span),
                    );
                }
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => match joined {
                    Some(Ok((name, Ok(Ended { end, output })))) => {
                        if let Some(m) = output {
                            produced.insert(name.clone(), m);
                        }
                        if end.timed_out {
                            dag.set_timed_out(&name);
                        }
                        dag.set(&name, end.status);
                    }
                    Some(Ok((_, Err(e)))) => {
                        running.shutdown().await;
                        return Err(e);
                    }
                    Some(Err(join_err)) => {
                        running.shutdown().await;
                        return Err(Error::Internal(format!("step task panicked: {join_err}")));
                    }
                    None => {}
                },
                _ = ctl.stop.cancelled(), if !cancelling => {}
            }
        }

        if ctl.user_cancelled() {
            exec.cancel("cancelled by request").await?;
            tracing::info!(%run_id, "run cancelled");
            return Ok(());
        }
        let outcome = dag.outcome();
        exec.finish_run(outcome.status, outcome.error).await?;
        tracing::info!(%run_id, status = %outcome.status, "run finished");
        if outcome.status == tms_core::runs::RunStatus::Succeeded {
            let _ = tokio::fs::remove_dir_all(&run_dir).await;
        }
        Ok(())
    }
}

/// Renews the lease every third of its length. Stops the run when the lease is lost, or when
/// renewals keep failing for longer than a lease (someone else may have taken over); fires a
/// user cancellation whose message never arrived.
async fn keep_lease(exec: Execution, lease: Duration, ctl: Control) {
    let every = lease / 3;
    let mut failures = 0u32;
    loop {
        tokio::time::sleep(every).await;
        match exec.renew(lease).await {
            Ok(Some(cancel_requested)) => {
                failures = 0;
                if cancel_requested {
                    ctl.cancel_by_user();
                }
            }
            Ok(None) => {
                ctl.stop.cancel();
                return;
            }
            Err(e) => {
                failures += 1;
                tracing::warn!(run_id = %exec.run_id(), error = %e, "lease renewal failed");
                if every * failures >= lease {
                    ctl.stop.cancel();
                    return;
                }
            }
        }
    }
}
