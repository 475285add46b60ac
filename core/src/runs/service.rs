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
use crate::runs::{Run, RunEvent, RunStatus, RunTrigger, TaskStatus};

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
pub const MAX_INPUTS_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct RunService {
    pub(super) db: Db,
    pub(super) bus: EventBus,
    pub(super) relay: Relay,
    pub(super) est: Arc<Estimator>,
}

/// Who or what starts a run, as recorded on it.
pub(super) struct Origin {
    pub triggered_by: Option<Uuid>,
    pub trigger: RunTrigger,
    pub scheduled_for: Option<chrono::DateTime<chrono::Utc>>,
}

impl Origin {
    fn by(who: &Principal, trigger: RunTrigger) -> Self {
        Origin {
            triggered_by: Some(who.user_id),
            trigger,
            scheduled_for: None,
        }
    }
}

pub struct TriggerRequest {
    pub workflow_id: Uuid,
    pub inputs: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub no_cache: bool,
}

impl RunService {
    pub fn new(db: Db, bus: EventBus, relay: Relay, est: Arc<Estimator>) -> Self {
        Self {
            db,
            bus,
            relay,
            est,
        }
    }

    /// Creates the run, its tasks, its first event and its outbox row in one transaction. The same
    /// idempotency key on the same workflow returns the existing run.
    pub async fn trigger(&self, who: Option<&Principal>, req: TriggerRequest) -> Result<Run> {
        let who = audit::require(&self.db, who, Permission::OperateRuns)
            .await?
            .clone();
        let inputs = req.inputs.unwrap_or_else(|| serde_json::json!({}));
        if !inputs.is_object() {
            return Err(Error::field("inputs", "must be a JSON object"));
        }
        if serde_json::to_vec(&inputs)
            .map(|v| v.len())
            .unwrap_or(usize::MAX)
            > MAX_INPUTS_BYTES
        {
            return Err(Error::field(
                "inputs",
                format!("must be at most {MAX_INPUTS_BYTES} bytes"),
            ));
        }
        crate::runs::inputs::env_vars(&inputs).map_err(Error::Validation)?;
        if let Some(k) = &req.idempotency_key
            && (k.is_empty() || k.len() > MAX_IDEMPOTENCY_KEY_LEN)
        {
            return Err(Error::field(
                "idempotencyKey",
                format!("must be 1-{MAX_IDEMPOTENCY_KEY_LEN} characters"),
            ));
        }

        let key = req.idempotency_key.clone();
        let wf_id = req.workflow_id;
        let no_cache = req.no_cache;
        let inputs2 = inputs.clone();
        let est = self.est.clone();
        let outcome = self
            .db
            .run(move |conn| {
                // No transaction: the run and its audit record are written by one statement
                // (`create_run`), so the audit chain's head is never held across a round trip.
                let attempt =
                    inner_trigger(conn, &est, &who, wf_id, &inputs2, key.as_deref(), no_cache);
                match attempt {
                    Ok(v) => Ok(v),
                    Err(Error::Duplicate(_)) if key.is_some() => {
                        // Lost a race with a concurrent trigger using the same key: return its run.
                        let existing = repo::runs::find_by_idempotency_key(
                            conn,
                            wf_id,
                            key.as_deref().unwrap_or_default(),
                        )?
                        .ok_or(Error::Conflict(
                            "idempotencyKey is being used concurrently".into(),
                        ))?;
                        same_inputs(&existing, &inputs2)?;
                        Ok((existing, None))
                    }
                    Err(e) => Err(e),
                }
            })
            .await?;
        let (run, event) = outcome;
        if let Some(ev) = event {
            self.relay.poke();
            self.bus.publish(&[ev]).await;
            tracing::info!(run_id = %run.id, workflow_id = %run.workflow_id, "run queued");
        }
        Ok(run.into())
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
fn run_entry(
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

fn same_inputs(existing: &RunRow, inputs: &serde_json::Value) -> Result<()> {
    if &existing.inputs == inputs {
        Ok(())
    } else {
        Err(Error::Conflict(
            "idempotencyKey was already used with different inputs".into(),
        ))
    }
}

fn inner_trigger(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    who: &Principal,
    workflow_id: Uuid,
    inputs: &serde_json::Value,
    key: Option<&str>,
    no_cache: bool,
) -> Result<(RunRow, Option<RunEvent>)> {
    let (wf, current) = repo::workflows::find_with_current(conn, workflow_id)?
        .ok_or(Error::NotFound("workflow"))?;
    if let Some(k) = key
        && let Some(existing) = repo::runs::find_by_idempotency_key(conn, workflow_id, k)?
    {
        same_inputs(&existing, inputs)?;
        return Ok((existing, None));
    }
    wf.ensure_active()?;
    let (run, ev) = create_run(
        conn,
        est,
        &Origin::by(who, RunTrigger::Manual),
        &wf,
        wf.current_version,
        current,
        inputs,
        key,
        no_cache,
        None,
        |id| {
            run_entry(
                who,
                Action::RunTrigger,
                id,
                workflow_id,
                wf.current_version,
                None,
            )
        },
    )?;
    Ok((run, Some(ev)))
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
    let spec = row.spec()?;
    let steps: Vec<(String, Vec<String>)> = spec
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.depends_on.clone()))
        .collect();
    let run_id = Uuid::now_v7();
    // Every task is pending: the first event's estimate needs nothing of the run read back.
    let e = est.estimate_new(conn, wf.id, &steps)?;
    let first = NewEvent {
        percent: e.percent,
        eta_seconds: e.eta_seconds,
        ..run_changed(RunStatus::Queued, message)
    };
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
    let job = crate::queue::job_payload(run_id)?;
    let (row, content) = crate::audit::to_row(audit(run_id));
    let (run, ev) = repo::run_create::create(conn, &new, &steps, &first, &job, (&row, &content))?
        .ok_or_else(|| Error::Duplicate("runs_workflow_scheduled_for_key".into()))?;
    crate::audit::appended(&row);
    Ok((run, ev.into()))
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
