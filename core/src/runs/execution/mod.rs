//! The one home of a run's execution writes. An [`Execution`] is a worker's hold on a run's
//! lease; each of its transitions is one transaction that re-checks the lease, applies the
//! change, records its event, and publishes the event after commit. That is what makes each
//! result recorded once however often a run is delivered.

use std::sync::Arc;
use std::time::Duration;

use diesel::Connection;
use uuid::Uuid;

mod batch;
mod claim;
mod last;
mod logs;
mod outputs;
mod resume;
mod specs;
mod transition;

pub use batch::Batch;
pub use outputs::CacheStore;

use crate::artifacts::Saved;
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::runs::TaskChange;
use crate::runs::dag::Node;
use crate::runs::eta::Estimator;
use crate::runs::events::{
    cancel_remaining, change_task, progress_reported, run_changed, task_changed,
};
use crate::runs::{RunStatus, TaskStatus};
use crate::workflows::WorkflowSpec;

/// Writes retried while Postgres is unreachable, backing off from 200 ms to 2 s.
const WRITE_RETRIES: u32 = 10;

/// A worker's hold on one run.
#[derive(Clone)]
pub struct Execution {
    db: Db,
    bus: EventBus,
    est: Arc<Estimator>,
    run_id: Uuid,
    owner: String,
    /// What the claim read of the run; its `deliveries` is the fencing token (see `epoch`).
    claim: Arc<Claim>,
    /// The run's tasks, filled by the resume and kept by every write that changes one.
    tasks: Arc<transition::TaskView>,
}

/// How a worker takes runs.
#[derive(Debug, Clone, Copy)]
pub struct ClaimPolicy {
    pub lease: Duration,
    /// A run claimed more often than this without ending is dead-lettered (its job keeps failing
    /// to start or to get anywhere) instead of looping.
    pub max_deliveries: i32,
}

/// What became of a delivery.
pub enum Claimed {
    /// The run is this worker's to drive; resumed already (see [`Execution::resume`]) unless
    /// that could not be done in the claim's transaction.
    Run(Execution, Claim, Option<Box<Resumed>>),
    /// Finished, or driven by another worker: a duplicate delivery.
    Gone,
    /// Over its workflow's limits; it waits queued until `until` or until a run finishes.
    Waiting(chrono::DateTime<chrono::Utc>),
    /// Given up after too many deliveries; the run is now failed and marked dead-lettered.
    DeadLettered,
}

/// What a claim tells the worker about the run it now holds.
#[derive(Debug, Clone)]
pub struct Claim {
    pub workflow_id: Uuid,
    /// How many times a worker picked the run up, this time included.
    pub deliveries: i32,
    pub cancel_requested: bool,
    /// The run's status when claimed: `queued` (first start), or `running` (resumed, or
    /// started by the claim's own statement).
    pub status: RunStatus,
    /// Whether its workflow capped concurrent runs when claimed: the run's end then wakes
    /// runs waiting for a slot, in the transaction that ends it. (A cap set while an uncapped
    /// run runs: the runs it made wait are looked at again after the limits' recheck delay.)
    pub capped: bool,
    /// The run as the claim read it: its version, inputs and cache bypass, which never change
    /// once the run exists, so resuming need not read the run again.
    pub version: i32,
    pub inputs: serde_json::Value,
    pub no_cache: bool,
}

impl Claim {
    fn of(run: &repo::runs::RunRow, capped: bool) -> Self {
        Claim {
            workflow_id: run.workflow_id,
            deliveries: run.deliveries,
            cancel_requested: run.cancel_requested_at.is_some(),
            status: run.status,
            capped,
            version: run.version,
            inputs: run.inputs.clone(),
            no_cache: run.no_cache,
        }
    }
}

/// The run as resumed: its definition and its tasks, interrupted attempts back to `pending`.
#[derive(Debug, Clone)]
pub struct Resumed {
    pub spec: Arc<WorkflowSpec>,
    pub tasks: Vec<ResumedTask>,
    /// The run's inputs (a JSON object) and whether it bypasses the step cache.
    pub inputs: serde_json::Value,
    pub no_cache: bool,
}

#[derive(Debug, Clone)]
pub struct ResumedTask {
    pub node: Node,
    /// Attempts already made by earlier deliveries or retries.
    pub attempt: i32,
    /// The manifest of the task's stored outputs, when it succeeded or was cached.
    pub output: Option<String>,
}

/// How an attempt that ran to its end turned out.
#[derive(Debug, Clone, PartialEq)]
pub struct TaskEnd {
    pub status: TaskStatus,
    pub exit_code: Option<i32>,
    pub log_tail: String,
    pub error: Option<String>,
    /// The stored `/out` of a successful attempt.
    pub output: Option<Saved>,
    /// Where a successful result of a cacheable step is kept for reuse.
    pub cache: Option<CacheStore>,
}

impl TaskEnd {
    /// The task's change that records this end.
    fn change(&self) -> TaskChange {
        let mut change = TaskChange {
            exit_code: Some(self.exit_code),
            log_tail: Some(self.log_tail.clone()),
            ..TaskChange::finished(self.status, self.error.clone())
        };
        if let Some(o) = &self.output {
            change.output_manifest = Some(Some(o.manifest.clone()));
            change.output_bytes = Some(Some(o.bytes as i64));
        }
        change
    }
}

/// The event of a run's end: nothing is left of it.
fn run_ended(status: RunStatus, error: Option<String>) -> crate::repo::events::NewEvent {
    let mut ev = run_changed(status, error);
    ev.percent = crate::runs::eta::FINISHED.percent;
    ev.eta_seconds = crate::runs::eta::FINISHED.eta_seconds;
    ev
}

/// `tms_run_duration_seconds` of a run that ended after running for `took`.
fn observe_run(status: RunStatus, took: Option<chrono::Duration>) {
    if let Some(d) = took.and_then(|d| d.to_std().ok()) {
        crate::metrics::runs::RUN_DURATION
            .with_label_values(&[status.as_str()])
            .observe(d.as_secs_f64());
    }
}

impl Execution {
    /// Gives the run up: unfinished tasks are cancelled, the run fails with the reason and is
    /// marked dead-lettered (visible in the API and `tms_runs_dead_lettered_total`).
    async fn dead_letter(&self, deliveries: i32) -> Result<()> {
        let (run_id, est) = (self.run_id, self.est.clone());
        let why = format!(
            "dead-lettered: delivered {deliveries} times without finishing (see the workers' logs for run {run_id})"
        );
        self.write(move |conn| {
            let events = crate::runs::events::dead_letter(conn, &est, run_id, &why)?;
            crate::runs::limits::wake_next(conn, run_id)?;
            Ok(((), events))
        })
        .await?;
        crate::metrics::runs::DEAD_LETTERED.inc();
        tracing::error!(%run_id, deliveries, "run dead-lettered after too many deliveries");
        Ok(())
    }

    pub fn run_id(&self) -> Uuid {
        self.run_id
    }

    /// The run's delivery count when this worker claimed it: a fencing token every write and
    /// renewal checks, so a holder that lost its lease (paused past it) cannot write afterwards.
    fn epoch(&self) -> i32 {
        self.claim.deliveries
    }

    /// Extends the lease. `None`: it was lost; otherwise whether a cancellation was requested.
    pub async fn renew(&self, lease: Duration) -> Result<Option<bool>> {
        let (id, o, secs) = (self.run_id, self.owner.clone(), lease.as_secs() as i64);
        let epoch = self.epoch();
        self.db
            .run(move |c| repo::leases::renew_lease(c, id, &o, epoch, secs))
            .await
    }

    /// Gives the lease back (shutdown), so the reconciler hands the run to another worker.
    pub async fn release(&self) -> Result<()> {
        let (id, o, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        self.db
            .run(move |c| repo::leases::release_lease(c, id, &o, epoch))
            .await
    }

    /// Starts or resumes the run: `queued` becomes `running`, and tasks a lost worker left
    /// `running` go back to `pending` (each visible as an event). [`Execution::claim`] does this
    /// in the claim's own transaction; this is for a claim that could not.
    pub async fn resume(&self) -> Result<Resumed> {
        let (run_id, est, claim) = (self.run_id, self.est.clone(), self.claim.clone());
        let owner = self.owner.clone();
        let mut view = self.tasks.lock().await;
        let (resumed, rows) = self
            .write(move |conn| {
                let (resumed, rows, events) =
                    resume::resume_in(conn, &est, run_id, &claim, &owner)?;
                Ok(((resumed, rows), events))
            })
            .await?;
        *view = rows;
        Ok(resumed)
    }

    /// A new attempt of `step` starts (the change and event [`Batch::start`] writes in a turn).
    pub async fn start_attempt(&self, step: &str, attempt: i32) -> Result<()> {
        let mut batch = Batch::default();
        batch.start(step, attempt);
        self.record(batch).await
    }

    /// A note about a running step that changes nothing else (e.g. the executor is unreachable).
    pub async fn note(&self, step: &str, message: String) -> Result<()> {
        let ev = task_changed(step, TaskStatus::Running, Some(message));
        self.transition(step, TaskChange::default(), ev).await
    }

    /// An attempt failed and another will follow: keep its log, say when the next one starts.
    pub async fn retry_later(&self, step: &str, log_tail: String, message: String) -> Result<()> {
        let change = TaskChange {
            log_tail: Some(log_tail),
            ..Default::default()
        };
        self.change(step, change, TaskStatus::Running, Some(message))
            .await
    }

    /// The step's final attempt ended: its outputs are recorded and, for a cacheable step that
    /// succeeded, kept in the cache, all in the transaction that records the end.
    pub async fn finish_task(&self, step: &str, end: TaskEnd) -> Result<()> {
        let change = end.change();
        let cache = match (&end.output, end.cache, end.status) {
            (Some(o), Some(c), TaskStatus::Succeeded) => Some((c, o.manifest.clone())),
            _ => None,
        };
        let ev = task_changed(step, end.status, end.error);
        let Some((c, manifest)) = cache else {
            return self.transition(step, change, ev).await;
        };
        // A cacheable success also stores its cache entry: a transaction.
        let (run_id, name, est) = (self.run_id, step.to_string(), self.est.clone());
        self.write_task(step, move |conn| {
            let ev = change_task(conn, &est, run_id, &name, &change, ev.clone())?;
            outputs::store_entry(conn, run_id, &name, &c, &manifest)?;
            Ok(((), change.clone(), vec![ev]))
        })
        .await
    }

    /// A running step was stopped because a user cancelled the run.
    pub async fn cancel_task(&self, step: &str) -> Result<()> {
        let change = TaskChange::finished(TaskStatus::Cancelled, Some("cancelled".into()));
        let msg = Some("cancelled while running".to_string());
        self.change(step, change, TaskStatus::Cancelled, msg).await
    }

    /// A running step reported its progress (`message` is already masked and bounded).
    pub async fn progress(&self, step: &str, percent: f64, message: String) -> Result<()> {
        let ev = progress_reported(step, percent, message);
        self.transition(step, TaskChange::progress(percent), ev)
            .await
    }

    /// The run ended with `status`: one statement fenced by the lease (and, when its workflow
    /// caps concurrent runs, the wake-up of runs waiting for a slot, in the same transaction).
    pub async fn finish_run(&self, status: RunStatus, error: Option<String>) -> Result<()> {
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let ev = run_ended(status, error.clone());
        let capped = self.claim.capped;
        let ended = self
            .retrying(move |conn| {
                let fence = repo::task_transition::Fence {
                    run_id,
                    owner: &owner,
                    epoch,
                };
                // An ended run holds no lease either.
                let lost = || Error::Conflict("run lease lost".into());
                if !capped {
                    // Nothing waits for its slot: one statement, no transaction.
                    return repo::run_end::finish(conn, &fence, status, error.as_deref(), &ev)?
                        .ok_or_else(lost);
                }
                conn.transaction::<_, Error, _>(|conn| {
                    let end = repo::run_end::finish(conn, &fence, status, error.as_deref(), &ev)?
                        .ok_or_else(lost)?;
                    crate::runs::limits::wake_next(conn, run_id)?;
                    Ok(end)
                })
            })
            .await?;
        self.bus.publish(&[ended.event.into()]).await;
        observe_run(status, ended.took);
        Ok(())
    }

    /// Records a user's cancellation: every task not yet finished, then the run.
    pub async fn cancel(&self, why: &str) -> Result<()> {
        let (run_id, why, est) = (self.run_id, why.to_string(), self.est.clone());
        self.write(move |conn| {
            let events = cancel_remaining(conn, &est, run_id, &why)?;
            crate::runs::limits::wake_next(conn, run_id)?;
            Ok(((), events))
        })
        .await
    }

    async fn change(
        &self,
        step: &str,
        change: TaskChange,
        status: TaskStatus,
        message: Option<String>,
    ) -> Result<()> {
        let ev = task_changed(step, status, message);
        self.transition(step, change, ev).await
    }
}
