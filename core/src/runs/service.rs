//! Triggering and reading runs.

use std::sync::Arc;

use diesel::Connection;
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal};
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::relay::Relay;
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::runs::{NewRun, RunRow, TaskChange};
use crate::repo::workflows::WorkflowRow;
use crate::runs::eta::Estimator;
use crate::runs::events::{cancel_remaining, record, run_changed};
use crate::runs::trigger_batch::Triggers;
use crate::runs::{Run, RunEvent, RunStatus, RunTrigger, TaskStatus};

pub use crate::runs::trigger::TriggerRequest;

#[derive(Clone)]
pub struct RunService {
    pub(super) db: Db,
    pub(super) bus: EventBus,
    pub(super) relay: Relay,
    pub(super) est: Arc<Estimator>,
    pub(super) triggers: Triggers,
}

/// Who or what starts a run, as recorded on it.
pub(super) struct Origin {
    pub triggered_by: Option<Uuid>,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
}

impl Origin {
    pub(super) fn by(who: &Principal, trigger: RunTrigger) -> Self {
        Origin {
            triggered_by: Some(who.user_id),
            trigger,
            scheduled_for: None,
        }
    }
}

impl RunService {
    /// Starts the trigger batching loop (`trigger_batch`) on the current tokio runtime.
    pub fn new(db: Db, bus: EventBus, relay: Relay, est: Arc<Estimator>) -> Self {
        let triggers = Triggers::start(db.clone(), est.clone());
        Self {
            db,
            bus,
            relay,
            est,
            triggers,
        }
    }

    /// Cancels a run: directly when no worker holds it, otherwise by telling the worker that
    /// does (which stops its running steps at once). Waits briefly for the run to end, so the
    /// caller normally sees `cancelled`. Cancelling a finished run changes nothing.
    pub async fn cancel(&self, who: Option<&Principal>, id: Uuid) -> Result<Run> {
        let who = audit::require(&self.db, who, Permission::OperateRuns)
            .await?
            .clone();
        let est = self.est.clone();
        let (run, events, notify) = self
            .db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let run =
                        repo::runs::find_for_update(conn, id)?.ok_or(Error::NotFound("run"))?;
                    if run.status().is_terminal() {
                        return Ok((run, Vec::new(), false));
                    }
                    repo::runs::request_cancel(conn, id)?;
                    audit_run(conn, &who, Action::RunCancel, &run, None)?;
                    if repo::leases::lease_live(conn, id)? {
                        return Ok((run, Vec::new(), true));
                    }
                    let why = format!("cancelled by {}", who.email);
                    // Nobody is executing it: cancel every unfinished task, then the run.
                    let events = cancel_remaining(conn, &est, id, &why)?;
                    let run = repo::runs::find(conn, id)?.ok_or(Error::NotFound("run"))?;
                    Ok((run, events, false))
                })
            })
            .await?;
        self.bus.publish(&events).await;
        if !notify {
            return Ok(run.into());
        }
        self.bus.request_cancel(id).await;
        tracing::info!(run_id = %id, "cancellation requested from the worker holding the run");
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(3);
        loop {
            let now = self
                .db
                .run(move |c| repo::runs::find(c, id))
                .await?
                .ok_or(Error::NotFound("run"))?;
            if now.status().is_terminal() || tokio::time::Instant::now() > deadline {
                return Ok(now.into());
            }
            tokio::time::sleep(std::time::Duration::from_millis(25)).await;
        }
    }

    /// Retries a finished run. `from_failed_step` re-queues the same run (refused when every
    /// step succeeded): only failed, skipped and cancelled steps run again, and succeeded
    /// steps' outputs are reused. Otherwise a new run of the same version with the same
    /// inputs starts, whatever the old run's outcome (a re-run, like Argo's resubmit).
    pub async fn retry(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        from_failed_step: bool,
    ) -> Result<Run> {
        let who = audit::require(&self.db, who, Permission::OperateRuns)
            .await?
            .clone();
        let est = self.est.clone();
        let (run, ev) = self
            .db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let run =
                        repo::runs::find_for_update(conn, id)?.ok_or(Error::NotFound("run"))?;
                    if !run.status().is_terminal() {
                        return Err(Error::Conflict(
                            "the run has not finished; cancel it first".into(),
                        ));
                    }
                    if !from_failed_step {
                        let wf = repo::workflows::find(conn, run.workflow_id)?
                            .ok_or(Error::NotFound("workflow"))?;
                        wf.ensure_active()?;
                        let message = Some(format!("retry of run {id}"));
                        let (new_run, ev) = create_run(
                            conn,
                            &est,
                            &Origin::by(&who, RunTrigger::Retry),
                            &wf,
                            run.version,
                            None,
                            &run.inputs,
                            None,
                            run.no_cache,
                            message,
                            |new_id| {
                                let v = run.version;
                                run_entry(
                                    &who,
                                    Action::RunRetry,
                                    new_id,
                                    run.workflow_id,
                                    v,
                                    Some(id),
                                )
                            },
                        )?;
                        return Ok((new_run, ev));
                    }
                    if run.status() == RunStatus::Succeeded {
                        return Err(Error::Conflict(
                            "nothing to retry: every step succeeded".into(),
                        ));
                    }
                    for t in repo::runs::tasks_of(conn, id)? {
                        if matches!(
                            t.status,
                            TaskStatus::Failed | TaskStatus::Skipped | TaskStatus::Cancelled
                        ) {
                            repo::runs::update_task(conn, id, &t.name, &TaskChange::reset())?;
                        }
                    }
                    repo::runs::requeue(conn, id)?;
                    audit_run(conn, &who, Action::RunRetry, &run, Some(id))?;
                    let message = Some(format!("retry from failed steps by {}", who.email));
                    enqueue(conn, &est, id, message)
                })
            })
            .await?;
        self.relay.poke();
        self.bus.publish(&[ev]).await;
        Ok(run.into())
    }

    pub async fn get(&self, who: Option<&Principal>, id: Uuid) -> Result<Option<Run>> {
        audit::require(&self.db, who, Permission::ReadRuns).await?;
        let row = self.db.run(move |c| repo::runs::find(c, id)).await?;
        Ok(row.map(Run::from))
    }

    pub async fn list(
        &self,
        who: Option<&Principal>,
        before: Option<Uuid>,
        limit: i64,
        workflow_id: Option<Uuid>,
        status: Option<RunStatus>,
    ) -> Result<Vec<Run>> {
        audit::require(&self.db, who, Permission::ReadRuns).await?;
        let rows = self
            .db
            .run(move |c| repo::runs::list(c, before, limit, workflow_id, status))
            .await?;
        Ok(rows.into_iter().map(Run::from).collect())
    }
}

/// Records `action` on `run` in the caller's transaction; `retry_of` names the run retried.
fn audit_run(
    conn: &mut diesel::PgConnection,
    who: &Principal,
    action: Action,
    run: &RunRow,
    retry_of: Option<Uuid>,
) -> Result<i64> {
    let entry = run_entry(who, action, run.id, run.workflow_id, run.version, retry_of);
    audit::append(conn, entry)
}

/// The audit record of `action` on run `run_id` of `workflow_id` at `version`.
pub(super) fn run_entry(
    who: &Principal,
    action: Action,
    run_id: Uuid,
    workflow_id: Uuid,
    version: i32,
    retry_of: Option<Uuid>,
) -> AuditEntry {
    let mut detail = serde_json::json!({ "workflowId": workflow_id, "version": version });
    if let Some(of) = retry_of {
        detail["retryOf"] = serde_json::json!(of);
    }
    AuditEntry::by(who, action, format!("run:{run_id}")).detail(detail)
}

/// Inserts a queued run of `version` with its tasks, first event and outbox row. A scheduled
/// run whose tick another run already holds is refused as `Error::Duplicate`. `known` is that
/// version's row when the caller has already read it. `audit` gives the audit record of the
/// new run's id; it is appended by the same statement. One statement: call it outside a
/// transaction when it is the caller's only write (see `repo::run_create`).
#[allow(clippy::too_many_arguments)]
pub(super) fn create_run(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    origin: &Origin,
    wf: &WorkflowRow,
    version: i32,
    known: Option<repo::workflows::VersionRow>,
    inputs: &serde_json::Value,
    key: Option<&str>,
    no_cache: bool,
    message: Option<String>,
    audit: impl FnOnce(Uuid) -> AuditEntry,
) -> Result<(RunRow, RunEvent)> {
    let row = match known.filter(|v| v.workflow_id == wf.id && v.version == version) {
        Some(v) => v,
        None => repo::workflows::version(conn, wf.id, version)?.ok_or_else(|| {
            Error::Internal(format!("workflow {} lacks version {version}", wf.id))
        })?,
    };
    let (steps, first) = queued_start(conn, est, &row, message)?;
    let run_id = Uuid::now_v7();
    let new = NewRun {
        id: run_id,
        workflow_id: wf.id,
        version,
        inputs,
        idempotency_key: key,
        no_cache,
        triggered_by: origin.triggered_by,
        trigger: origin.trigger,
        scheduled_for: origin.scheduled_for,
    };
    let pinned = crate::queue::RunVersion {
        workflow_id: wf.id,
        version,
    };
    let job = crate::queue::job_payload(run_id, Some(pinned))?;
    let (row, content) = crate::audit::to_row(audit(run_id));
    let (run, ev) = repo::run_create::create(conn, &new, &steps, &first, &job, (&row, &content))?
        .ok_or_else(|| Error::Duplicate("runs_workflow_scheduled_for_key".into()))?;
    crate::audit::appended(&row);
    Ok((run, ev.into()))
}

/// A step as a new run's task is made of it: its name and the names it depends on.
pub(super) type Step = (String, Vec<String>);

/// What a new run of `row` starts with: its steps (name, dependencies) in order, and its first
/// event, `queued` with `message` and the estimate of a run whose tasks are all pending (which
/// needs nothing of the run read back).
pub(super) fn queued_start(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    row: &repo::workflows::VersionRow,
    message: Option<String>,
) -> Result<(Vec<Step>, NewEvent)> {
    let steps: Vec<Step> = row
        .spec()?
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.depends_on.clone()))
        .collect();
    let e = est.estimate_new(conn, row.workflow_id, &steps)?;
    let first = NewEvent {
        percent: e.percent,
        eta_seconds: e.eta_seconds,
        ..run_changed(RunStatus::Queued, message)
    };
    Ok((steps, first))
}

/// Records the run's `queued` event and its outbox row; returns the run as it now stands.
fn enqueue(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    run_id: Uuid,
    message: Option<String>,
) -> Result<(RunRow, RunEvent)> {
    let ev = record(conn, est, run_id, run_changed(RunStatus::Queued, message))?;
    crate::queue::enqueue(conn, run_id)?;
    let run = repo::runs::find(conn, run_id)?.ok_or(Error::NotFound("run"))?;
    Ok((run, ev))
}
