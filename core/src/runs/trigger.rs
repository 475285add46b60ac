//! Triggering a run by hand: the request's checks, then the run's creation, grouped with the
//! triggers that arrive at the same moment (`trigger_batch`).

use crate::audit::{self, Action};
use crate::auth::{Permission, Principal};
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::runs::RunRow;
use crate::runs::eta::Estimator;
use crate::runs::service::{Origin, RunService, create_run, run_entry};
use crate::runs::trigger_batch::{Outcome, Trigger};
use crate::runs::{Run, RunTrigger};

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
pub const MAX_INPUTS_BYTES: usize = 256 * 1024;

pub struct TriggerRequest {
    pub workflow_id: uuid::Uuid,
    pub inputs: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub no_cache: bool,
}

impl RunService {
    /// Creates the run, its tasks, its first event, its outbox row and its audit record in one
    /// transaction (shared with the triggers that arrive at the same moment). The same
    /// idempotency key on the same workflow returns the existing run.
    pub async fn trigger(&self, who: Option<&Principal>, req: TriggerRequest) -> Result<Run> {
        let who = audit::require(&self.db, who, Permission::OperateRuns)
            .await?
            .clone();
        let inputs = checked(&req)?;
        let trigger = Trigger {
            who,
            workflow_id: req.workflow_id,
            inputs,
            key: req.idempotency_key,
            no_cache: req.no_cache,
            span: tracing::Span::current(),
        };
        let (run, event) = self.triggers.submit(trigger).await?;
        if let Some(ev) = event {
            self.relay.poke();
            self.bus.publish(&[ev]).await;
            tracing::info!(run_id = %run.id, workflow_id = %run.workflow_id, "run queued");
        }
        Ok(run.into())
    }
}

/// The request's inputs (`{}` when absent), once they and the idempotency key pass their checks.
fn checked(req: &TriggerRequest) -> Result<serde_json::Value> {
    let inputs = req.inputs.clone().unwrap_or_else(|| serde_json::json!({}));
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
    Ok(inputs)
}

/// One trigger on its own, outside a transaction: the run and its audit record are written by
/// one statement (`create_run`), so the audit chain's head is never held across a round trip.
pub(super) fn alone(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    t: &Trigger,
) -> Result<Outcome> {
    let _entered = t.span.enter();
    let key = t.key.as_deref();
    match inner_trigger(conn, est, t) {
        Err(Error::Duplicate(_)) if key.is_some() => {
            // Lost a race with a concurrent trigger using the same key: return its run.
            let existing =
                repo::runs::find_by_idempotency_key(conn, t.workflow_id, key.unwrap_or_default())?
                    .ok_or(Error::Conflict(
                        "idempotencyKey is being used concurrently".into(),
                    ))?;
            same_inputs(&existing, &t.inputs)?;
            Ok((existing, None))
        }
        other => other,
    }
}

fn inner_trigger(conn: &mut diesel::PgConnection, est: &Estimator, t: &Trigger) -> Result<Outcome> {
    let key = t.key.as_deref();
    let (wf, current) = repo::workflows::find_with_current(conn, t.workflow_id)?
        .ok_or(Error::NotFound("workflow"))?;
    if let Some(k) = key
        && let Some(existing) = repo::runs::find_by_idempotency_key(conn, t.workflow_id, k)?
    {
        same_inputs(&existing, &t.inputs)?;
        return Ok((existing, None));
    }
    wf.ensure_active()?;
    let (run, ev) = create_run(
        conn,
        est,
        &Origin::by(&t.who, RunTrigger::Manual),
        &wf,
        wf.current_version,
        current,
        &t.inputs,
        key,
        t.no_cache,
        None,
        |id| {
            run_entry(
                &t.who,
                Action::RunTrigger,
                id,
                t.workflow_id,
                wf.current_version,
                None,
            )
        },
    )?;
    Ok((run, Some(ev)))
}

pub(super) fn same_inputs(existing: &RunRow, inputs: &serde_json::Value) -> Result<()> {
    if &existing.inputs == inputs {
        Ok(())
    } else {
        Err(Error::Conflict(
            "idempotencyKey was already used with different inputs".into(),
        ))
    }
}
