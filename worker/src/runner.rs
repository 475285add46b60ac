//! Drives one run to its end: takes the run's lease, executes its DAG through the executor with
//! bounded parallelism, and records every state change exactly once (guarded by the lease).

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use diesel::PgConnection;
use tms_core::bus::EventBus;
use tms_core::db::Db;
use tms_core::repo::events::{EventRow, NewEvent};
use tms_core::repo::runs::{RunRow, TaskChange};
use tms_core::runs::events::{
    KIND_PROGRESS, KIND_RUN, KIND_TASK, append_estimated, cancel_remaining, record,
};
use tms_core::runs::{RunStatus, TaskStatus};
use tms_core::workflows::StepSpec;
use tms_core::{Error, Result, repo};
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::executor::{ExecError, SharedExecutor, StepRequest};

pub struct Runner {
    pub db: Db,
    pub bus: EventBus,
    pub executor: SharedExecutor,
    /// Worker-wide step slots (`TMS_WORKER_CONCURRENCY`).
    pub slots: Arc<Semaphore>,
    pub work_root: PathBuf,
    pub worker_name: String,
    pub default_timeout: Duration,
    pub lease: Duration,
    /// Runs this process is driving, so a duplicate delivery does not drive one twice.
    pub active: std::sync::Mutex<std::collections::HashSet<Uuid>>,
    /// Fired at shutdown: runs stop their steps and hand their lease back.
    pub stopping: CancellationToken,
    /// Controls of the runs in progress, for cancellation requests.
    pub controls: std::sync::Mutex<HashMap<Uuid, Control>>,
}

/// Removes a run from the active set when its drive ends, however it ends.
struct ActiveGuard<'a>(&'a Runner, Uuid);

impl Drop for ActiveGuard<'_> {
    fn drop(&mut self) {
        if let Ok(mut a) = self.0.active.lock() {
            a.remove(&self.1);
        }
        if let Ok(mut c) = self.0.controls.lock() {
            c.remove(&self.1);
        }
    }
}

/// Stops a run in progress. `stop` fires when this worker must let go (lease lost, shutdown)
/// or when a user cancelled the run; `user_cancel` tells the two apart, because only a user's
/// cancellation is recorded (a run let go of is resumed by another worker).
#[derive(Clone)]
pub struct Control {
    pub stop: CancellationToken,
    user: Arc<std::sync::atomic::AtomicBool>,
}

impl Control {
    fn new(stop: CancellationToken) -> Self {
        Self {
            stop,
            user: Default::default(),
        }
    }

    pub fn cancel_by_user(&self) {
        self.user.store(true, std::sync::atomic::Ordering::SeqCst);
        self.stop.cancel();
    }

    pub fn user_cancelled(&self) -> bool {
        self.user.load(std::sync::atomic::Ordering::SeqCst)
    }
}

/// Waits between attempts to reach an unavailable executor: 1 s, doubling, at most 30 s.
const TRANSIENT_BACKOFF_START: Duration = Duration::from_secs(1);
const TRANSIENT_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// One step of a run to execute.
struct StepJob {
    run_id: Uuid,
    workflow_id: Uuid,
    step: StepSpec,
    /// Attempts already made (by earlier deliveries or retries of the run).
    prev_attempt: i32,
    step_dir: PathBuf,
    inputs: Vec<(String, PathBuf)>,
    masks: Arc<Vec<String>>,
}

/// How one step ended, as the run needs to know it.
#[derive(Debug, Clone, Copy)]
struct StepEnd {
    status: TaskStatus,
    timed_out: bool,
}

impl Runner {
    /// Executes the run if this worker can take its lease; returns quietly when another worker
    /// holds it or the run already ended (a duplicate delivery).
    pub async fn drive(self: &Arc<Self>, run_id: Uuid) -> Result<()> {
        if self.stopping.is_cancelled() {
            return Ok(());
        }
        if !self
            .active
            .lock()
            .map(|mut a| a.insert(run_id))
            .unwrap_or(false)
        {
            tracing::info!(%run_id, "run already being driven by this worker; ignoring duplicate delivery");
            return Ok(());
        }
        let _active = ActiveGuard(self, run_id);
        let owner = self.worker_name.clone();
        let lease_secs = self.lease.as_secs() as i64;
        let claimed = self
            .db
            .run(move |c| repo::runs::claim(c, run_id, &owner, lease_secs))
            .await?;
        let Some(run) = claimed else {
            tracing::info!(%run_id, "run is finished or leased by another worker; skipping delivery");
            return Ok(());
        };
        tracing::info!(%run_id, delivery = run.deliveries, "driving run");
        let ctl = Control::new(self.stopping.child_token());
        if let Ok(mut c) = self.controls.lock() {
            c.insert(run_id, ctl.clone());
        }
        if run.cancel_requested_at.is_some() {
            ctl.cancel_by_user();
        }
        let renewer = tokio::spawn(self.clone().keep_lease(run_id, ctl.clone()));
        let result = self.drive_claimed(run, ctl.clone()).await;
        renewer.abort();
        if self.stopping.is_cancelled() {
            let owner = self.worker_name.clone();
            let _ = self
                .db
                .run(move |c| repo::runs::release_lease(c, run_id, &owner))
                .await;
            tracing::warn!(%run_id, "worker stopping; run handed back for another worker to resume");
        } else if ctl.stop.is_cancelled() && !ctl.user_cancelled() {
            tracing::warn!(%run_id, "lease lost; another worker will finish the run");
        }
        result
    }

    /// Cancels `run_id` if this worker is driving it (a cancellation request arrived).
    pub fn cancel(&self, run_id: Uuid) -> bool {
        let ctl = self
            .controls
            .lock()
            .ok()
            .and_then(|c| c.get(&run_id).cloned());
        match ctl {
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
        while self.active.lock().map(|a| !a.is_empty()).unwrap_or(false)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        self.stopping.cancel();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while self.active.lock().map(|a| !a.is_empty()).unwrap_or(false)
            && tokio::time::Instant::now() < deadline
        {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn keep_lease(self: Arc<Self>, run_id: Uuid, ctl: Control) {
        let every = self.lease / 3;
        let mut failures = 0u32;
        loop {
            tokio::time::sleep(every).await;
            let owner = self.worker_name.clone();
            let secs = self.lease.as_secs() as i64;
            match self
                .db
                .run(move |c| repo::runs::renew_lease(c, run_id, &owner, secs))
                .await
            {
                Ok(Some(cancel_requested)) => {
                    failures = 0;
                    // Backstop for a cancellation request whose message never arrived.
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
                    tracing::warn!(%run_id, error = %e, "lease renewal failed");
                    // Past the lease length someone else may have taken over: stop writing.
                    if every * failures >= self.lease {
                        ctl.stop.cancel();
                        return;
                    }
                }
            }
        }
    }

    /// Runs `f` in a transaction that first re-checks this worker still holds the lease, then
    /// publishes the events it returns. This is what makes each result recorded once.
    async fn write<F>(&self, run_id: Uuid, f: F) -> Result<Vec<EventRow>>
    where
        F: Fn(&mut PgConnection) -> Result<Vec<EventRow>> + Send + Sync + Clone + 'static,
    {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            let owner = self.worker_name.clone();
            let f = f.clone();
            let res = self
                .db
                .run(move |conn| {
                    use diesel::Connection;
                    conn.transaction::<_, Error, _>(|conn| {
                        if !repo::runs::holds_lease(conn, run_id, &owner)? {
                            return Err(Error::Conflict("run lease lost".into()));
                        }
                        f(conn)
                    })
                })
                .await;
            match res {
                Ok(events) => {
                    self.bus.publish(&events).await;
                    return Ok(events);
                }
                Err(Error::Unavailable(e)) if tries < 10 => {
                    tries += 1;
                    tracing::warn!(%run_id, error = %e, "database unavailable; retrying write");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Applies `change` to task `name` and records the matching task event, under the lease.
    async fn set_task(
        &self,
        run_id: Uuid,
        name: &str,
        change: TaskChange,
        event_status: TaskStatus,
        message: Option<String>,
    ) -> Result<()> {
        let name = name.to_string();
        self.write(run_id, move |conn| {
            repo::runs::update_task(conn, run_id, &name, &change)?;
            let ev = record(
                conn,
                run_id,
                KIND_TASK,
                Some(event_status.as_str()),
                Some(&name),
                message.clone(),
            )?;
            Ok(vec![ev])
        })
        .await
        .map(|_| ())
    }

    async fn drive_claimed(self: &Arc<Self>, run: RunRow, ctl: Control) -> Result<()> {
        let run_id = run.id;
        let (wf_id, version) = (run.workflow_id, run.version);
        let spec = self
            .db
            .run(move |c| {
                repo::workflows::version(c, wf_id, version)?
                    .ok_or(Error::NotFound("workflow version"))?
                    .spec()
            })
            .await?;

        // Start (or resume) the run: tasks a dead worker left `running` go back to `pending`.
        self.write(run_id, move |conn| {
            let mut evs = Vec::new();
            if repo::runs::mark_running(conn, run_id)? {
                evs.push(record(conn, run_id, KIND_RUN, Some("running"), None, None)?);
            }
            for t in repo::runs::tasks_of(conn, run_id)? {
                if t.status() == TaskStatus::Running {
                    repo::runs::update_task(
                        conn,
                        run_id,
                        &t.name,
                        &TaskChange {
                            status: Some("pending".into()),
                            ..Default::default()
                        },
                    )?;
                    evs.push(record(
                        conn,
                        run_id,
                        KIND_TASK,
                        Some("pending"),
                        Some(&t.name),
                        Some(format!(
                            "attempt {} was interrupted (worker lost); re-queued",
                            t.attempt
                        )),
                    )?);
                }
            }
            Ok(evs)
        })
        .await?;

        let tasks = self
            .db
            .run(move |c| repo::runs::tasks_of(c, run_id))
            .await?;
        let steps: HashMap<String, StepSpec> = spec
            .steps
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let order: Vec<String> = tasks.iter().map(|t| t.name.clone()).collect();
        let mut status: HashMap<String, TaskStatus> =
            tasks.iter().map(|t| (t.name.clone(), t.status())).collect();
        let attempts: HashMap<String, i32> =
            tasks.iter().map(|t| (t.name.clone(), t.attempt)).collect();
        let mut timed_out_any = false;
        // Every secret value of the run, for masking whatever any step prints or reports.
        let masks = Arc::new(tms_core::secrets::values(
            spec.steps.iter().flat_map(|s| s.secrets.iter()),
        ));
        let mut running: JoinSet<(String, Result<StepEnd>)> = JoinSet::new();
        let run_dir = self.work_root.join(run_id.to_string());

        loop {
            let cancelling = ctl.user_cancelled();
            if ctl.stop.is_cancelled() && !cancelling {
                running.shutdown().await;
                return Ok(());
            }
            // A cancelled run starts nothing new; its running steps stop and report themselves.
            let pending_names: Vec<&String> = if cancelling {
                Vec::new()
            } else {
                order.iter().collect()
            };
            // Skip every pending step that has a dependency which can no longer succeed.
            for name in pending_names.iter().copied() {
                if status[name] != TaskStatus::Pending {
                    continue;
                }
                let blocked = steps[name].depends_on.iter().find(|d| {
                    status
                        .get(*d)
                        .is_some_and(|s| s.is_terminal() && !s.is_success())
                });
                if let Some(dep) = blocked {
                    let msg = format!("skipped: dependency `{dep}` did not succeed");
                    let change = TaskChange {
                        status: Some(TaskStatus::Skipped.as_str().into()),
                        finished_at: Some(Some(chrono::Utc::now())),
                        error: Some(Some(msg.clone())),
                        ..Default::default()
                    };
                    self.set_task(run_id, name, change, TaskStatus::Skipped, Some(msg))
                        .await?;
                    status.insert(name.clone(), TaskStatus::Skipped);
                }
            }
            // Start every pending step whose dependencies all succeeded.
            for name in pending_names.iter().copied() {
                if status[name] != TaskStatus::Pending {
                    continue;
                }
                let step = &steps[name];
                if step
                    .depends_on
                    .iter()
                    .all(|d| status.get(d).is_some_and(|s| s.is_success()))
                {
                    status.insert(name.clone(), TaskStatus::Running);
                    let inputs = step
                        .depends_on
                        .iter()
                        .map(|d| (d.clone(), run_dir.join(d).join("out")))
                        .collect();
                    let this = self.clone();
                    let job = StepJob {
                        run_id,
                        workflow_id: wf_id,
                        step: step.clone(),
                        prev_attempt: attempts[name],
                        step_dir: run_dir.join(name),
                        inputs,
                        masks: masks.clone(),
                    };
                    let ctl = ctl.clone();
                    running.spawn(async move {
                        let name = job.step.name.clone();
                        let end = this.execute_step(job, ctl).await;
                        (name, end)
                    });
                }
            }
            if running.is_empty() {
                break;
            }
            tokio::select! {
                joined = running.join_next() => {
                    match joined {
                        Some(Ok((name, Ok(end)))) => {
                            timed_out_any |= end.timed_out;
                            status.insert(name, end.status);
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
                    }
                }
                _ = ctl.stop.cancelled(), if !cancelling => {}
            }
        }

        if ctl.user_cancelled() {
            return self.finish_cancelled(run_id).await;
        }

        let failed: Vec<&String> = order
            .iter()
            .filter(|n| status[*n] == TaskStatus::Failed)
            .collect();
        let (final_status, error) = if failed.is_empty() {
            (RunStatus::Succeeded, None)
        } else if timed_out_any {
            (
                RunStatus::TimedOut,
                Some(format!("step `{}` timed out", failed[0])),
            )
        } else {
            (
                RunStatus::Failed,
                Some(format!("step `{}` failed", failed[0])),
            )
        };
        self.write(run_id, move |conn| {
            if repo::runs::finish(conn, run_id, final_status, error.as_deref())? {
                Ok(vec![record(
                    conn,
                    run_id,
                    KIND_RUN,
                    Some(final_status.as_str()),
                    None,
                    error.clone(),
                )?])
            } else {
                Ok(vec![])
            }
        })
        .await?;
        tracing::info!(%run_id, status = %final_status, "run finished");
        if final_status == RunStatus::Succeeded {
            let _ = tokio::fs::remove_dir_all(&run_dir).await;
        }
        Ok(())
    }

    /// A step interrupted by `ctl`: recorded as cancelled when a user cancelled the run, left
    /// alone (to be resumed elsewhere) when this worker let go of the run.
    async fn step_stopped(&self, run_id: Uuid, name: &str, ctl: &Control) -> Result<StepEnd> {
        if ctl.user_cancelled() {
            let change = TaskChange {
                status: Some(TaskStatus::Cancelled.as_str().into()),
                finished_at: Some(Some(chrono::Utc::now())),
                error: Some(Some("cancelled".into())),
                ..Default::default()
            };
            let msg = Some("cancelled while running".to_string());
            self.set_task(run_id, name, change, TaskStatus::Cancelled, msg)
                .await?;
        }
        Ok(StepEnd {
            status: TaskStatus::Cancelled,
            timed_out: false,
        })
    }

    /// Records a user's cancellation: every task not yet finished, then the run.
    async fn finish_cancelled(&self, run_id: Uuid) -> Result<()> {
        self.write(run_id, move |conn| {
            cancel_remaining(conn, run_id, "cancelled by request")
        })
        .await?;
        tracing::info!(%run_id, "run cancelled");
        Ok(())
    }

    /// Runs one step with its retries; returns how it ended once its final state is recorded.
    async fn execute_step(self: Arc<Self>, job: StepJob, ctl: Control) -> Result<StepEnd> {
        let StepJob {
            run_id,
            workflow_id,
            step,
            prev_attempt,
            step_dir,
            inputs,
            masks,
        } = job;
        let name = step.name.clone();
        let retries = step.retries.unwrap_or(0);
        let backoff = Duration::from_secs(step.retry_backoff_seconds.unwrap_or(1) as u64);
        let timeout = step
            .timeout_seconds
            .map(|s| Duration::from_secs(s as u64))
            .unwrap_or(self.default_timeout);

        let (secrets, missing) = match tms_core::secrets::resolve(&step.secrets) {
            Ok(v) => (v, None),
            Err(name) => (BTreeMap::new(), Some(name)),
        };

        let mut attempt = prev_attempt;
        let mut try_no = 0u32;
        loop {
            let mut permit = Some(tokio::select! {
                p = self.slots.clone().acquire_owned() => p.map_err(|_| Error::internal("worker shutting down"))?,
                _ = ctl.stop.cancelled() => return self.step_stopped(run_id, &name, &ctl).await,
            });
            attempt += 1;
            let change = TaskChange {
                status: Some(TaskStatus::Running.as_str().into()),
                attempt: Some(attempt),
                started_at: Some(Some(chrono::Utc::now())),
                finished_at: Some(None),
                exit_code: Some(None),
                error: Some(None),
                progress_percent: Some(None),
                progress_at: Some(None),
                ..Default::default()
            };
            let msg = format!("attempt {attempt}");
            self.set_task(run_id, &name, change, TaskStatus::Running, Some(msg))
                .await?;

            let (exit_code, log_tail, error, timed_out) = if let Some(s) = &missing {
                (
                    None,
                    String::new(),
                    Some(format!("secret `{s}` is not configured on this worker")),
                    false,
                )
            } else {
                let req = StepRequest {
                    run_id,
                    workflow_id,
                    step: step.clone(),
                    attempt,
                    step_dir: step_dir.clone(),
                    inputs: inputs.clone(),
                    secrets: secrets.clone(),
                    masks: masks.to_vec(),
                };
                // The timeout covers the whole attempt, including waits for an unavailable
                // executor (which do not use up the step's retries).
                let deadline = tokio::time::Instant::now() + timeout;
                let mut wait = TRANSIENT_BACKOFF_START;
                let res = loop {
                    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
                    let forwarder = tokio::spawn(self.clone().forward_progress(
                        run_id,
                        name.clone(),
                        rx,
                        masks.clone(),
                    ));
                    let res = tokio::select! {
                        r = tokio::time::timeout_at(deadline, self.executor.run(req.clone(), tx)) => Some(r),
                        _ = ctl.stop.cancelled() => None,
                    };
                    let _ = forwarder.await;
                    let Some(Ok(Err(ExecError::Transient(why)))) = &res else {
                        break res;
                    };
                    if tokio::time::Instant::now() + wait >= deadline {
                        break res;
                    }
                    let why = tms_core::secrets::mask(why, &masks);
                    tracing::warn!(%run_id, step = %name, error = %why, "executor unavailable; retrying");
                    let msg = format!(
                        "executor unavailable: {why}; retrying in {}s",
                        wait.as_secs()
                    );
                    let step_name = name.clone();
                    self.write(run_id, move |conn| {
                        let st = Some(TaskStatus::Running.as_str());
                        Ok(vec![record(
                            conn,
                            run_id,
                            KIND_TASK,
                            st,
                            Some(&step_name),
                            Some(msg.clone()),
                        )?])
                    })
                    .await?;
                    drop(permit.take());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = ctl.stop.cancelled() => return self.step_stopped(run_id, &name, &ctl).await,
                    }
                    permit = Some(tokio::select! {
                        p = self.slots.clone().acquire_owned() => p.map_err(|_| Error::internal("worker shutting down"))?,
                        _ = ctl.stop.cancelled() => return self.step_stopped(run_id, &name, &ctl).await,
                    });
                    wait = (wait * 2).min(TRANSIENT_BACKOFF_MAX);
                };
                match res {
                    None => return self.step_stopped(run_id, &name, &ctl).await,
                    Some(Ok(Ok(o))) if o.exit_code == Some(0) => {
                        (o.exit_code, o.log_tail, None, false)
                    }
                    Some(Ok(Ok(o))) => {
                        let why = match o.exit_code {
                            Some(c) => format!("exited with code {c}"),
                            None => "ended without an exit code".into(),
                        };
                        (o.exit_code, o.log_tail, Some(why), false)
                    }
                    Some(Ok(Err(e))) => {
                        let why = tms_core::secrets::mask(&e.to_string(), &masks);
                        (None, String::new(), Some(why), false)
                    }
                    Some(Err(_elapsed)) => (
                        None,
                        String::new(),
                        Some(format!("timed out after {}s", timeout.as_secs())),
                        true,
                    ),
                }
            };
            drop(permit);

            let succeeded = error.is_none();
            if !succeeded && try_no < retries && missing.is_none() {
                let wait = backoff
                    .saturating_mul(1 << try_no.min(10))
                    .min(Duration::from_secs(3600));
                let msg = format!(
                    "attempt {attempt} failed ({}); retrying in {}s",
                    error.clone().unwrap_or_default(),
                    wait.as_secs()
                );
                let change = TaskChange {
                    log_tail: Some(log_tail),
                    ..Default::default()
                };
                self.set_task(run_id, &name, change, TaskStatus::Running, Some(msg))
                    .await?;
                try_no += 1;
                tokio::select! {
                    _ = tokio::time::sleep(wait) => {}
                    _ = ctl.stop.cancelled() => return self.step_stopped(run_id, &name, &ctl).await,
                }
                continue;
            }

            let final_status = if succeeded {
                TaskStatus::Succeeded
            } else {
                TaskStatus::Failed
            };
            let change = TaskChange {
                status: Some(final_status.as_str().into()),
                finished_at: Some(Some(chrono::Utc::now())),
                exit_code: Some(exit_code),
                log_tail: Some(log_tail),
                error: Some(error.clone()),
                ..Default::default()
            };
            self.set_task(run_id, &name, change, final_status, error)
                .await?;
            return Ok(StepEnd {
                status: final_status,
                timed_out,
            });
        }
    }

    /// Turns a step's `::progress` lines into progress events, at most one every 200 ms per step
    /// (the latest wins) so a chatty step cannot flood the event log.
    async fn forward_progress(
        self: Arc<Self>,
        run_id: Uuid,
        step: String,
        mut rx: tokio::sync::mpsc::UnboundedReceiver<tms_core::runs::progress::ProgressLine>,
        masks: Arc<Vec<String>>,
    ) {
        let mut last_sent = tokio::time::Instant::now() - Duration::from_secs(1);
        while let Some(mut line) = rx.recv().await {
            while let Ok(newer) = rx.try_recv() {
                line = newer;
            }
            let since = last_sent.elapsed();
            if since < Duration::from_millis(200) {
                tokio::time::sleep(Duration::from_millis(200) - since).await;
                while let Ok(newer) = rx.try_recv() {
                    line = newer;
                }
            }
            last_sent = tokio::time::Instant::now();
            let s = step.clone();
            let message = match &line.message {
                Some(m) => {
                    let m: String = tms_core::secrets::mask(m, &masks)
                        .chars()
                        .take(500)
                        .collect();
                    format!("{}% {m}", line.percent)
                }
                None => format!("{}%", line.percent),
            };
            let res = self
                .write(run_id, move |conn| {
                    let change = TaskChange {
                        progress_percent: Some(Some(line.percent)),
                        progress_at: Some(Some(chrono::Utc::now())),
                        ..Default::default()
                    };
                    repo::runs::update_task(conn, run_id, &s, &change)?;
                    let ev = NewEvent {
                        kind: KIND_PROGRESS,
                        status: Some(TaskStatus::Running.as_str().into()),
                        step: Some(s.clone()),
                        message: Some(message.clone()),
                        step_percent: Some(line.percent),
                        ..Default::default()
                    };
                    Ok(vec![append_estimated(conn, run_id, ev)?])
                })
                .await;
            if let Err(e) = res {
                tracing::warn!(%run_id, error = %e, "progress event not recorded");
            }
        }
    }
}
