//! Triggering and reading runs.

use diesel::Connection;
use uuid::Uuid;

use crate::auth::{Permission, Principal, rbac};
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::RunJob;
use crate::queue::relay::Relay;
use crate::repo::runs::{NewRun, RunRow, TaskRow};
use crate::repo::{self, events::EventRow};
use crate::runs::RunStatus;
use crate::runs::events::{KIND_RUN, record};

pub const MAX_IDEMPOTENCY_KEY_LEN: usize = 200;
pub const MAX_INPUTS_BYTES: usize = 256 * 1024;

#[derive(Clone)]
pub struct RunService {
    db: Db,
    bus: EventBus,
    relay: Relay,
}

pub struct TriggerRequest {
    pub workflow_id: Uuid,
    pub inputs: Option<serde_json::Value>,
    pub idempotency_key: Option<String>,
    pub no_cache: bool,
}

impl RunService {
    pub fn new(db: Db, bus: EventBus, relay: Relay) -> Self {
        Self { db, bus, relay }
    }

    /// Creates the run, its tasks, its first event and its outbox row in one transaction. The same
    /// idempotency key on the same workflow returns the existing run.
    pub async fn trigger(&self, who: Option<&Principal>, req: TriggerRequest) -> Result<RunRow> {
        let who = rbac::require(who, Permission::OperateRuns)?.clone();
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
        let outcome = self
            .db
            .run(move |conn| {
                let attempt = conn.transaction::<_, Error, _>(|conn| {
                    inner_trigger(conn, &who, wf_id, &inputs2, key.as_deref(), no_cache)
                });
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
        Ok(run)
    }

    pub async fn get(&self, who: Option<&Principal>, id: Uuid) -> Result<Option<RunRow>> {
        rbac::require(who, Permission::ReadRuns)?;
        self.db.run(move |c| repo::runs::find(c, id)).await
    }

    pub async fn list(
        &self,
        who: Option<&Principal>,
        before: Option<Uuid>,
        limit: i64,
        workflow_id: Option<Uuid>,
        status: Option<RunStatus>,
    ) -> Result<Vec<RunRow>> {
        rbac::require(who, Permission::ReadRuns)?;
        self.db
            .run(move |c| repo::runs::list(c, before, limit, workflow_id, status))
            .await
    }

    pub async fn tasks(&self, who: Option<&Principal>, run_id: Uuid) -> Result<Vec<TaskRow>> {
        rbac::require(who, Permission::ReadRuns)?;
        self.db.run(move |c| repo::runs::tasks_of(c, run_id)).await
    }
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
    who: &Principal,
    workflow_id: Uuid,
    inputs: &serde_json::Value,
    key: Option<&str>,
    no_cache: bool,
) -> Result<(RunRow, Option<EventRow>)> {
    let wf = repo::workflows::find(conn, workflow_id)?.ok_or(Error::NotFound("workflow"))?;
    if let Some(k) = key
        && let Some(existing) = repo::runs::find_by_idempotency_key(conn, workflow_id, k)?
    {
        same_inputs(&existing, inputs)?;
        return Ok((existing, None));
    }
    if wf.archived_at.is_some() {
        return Err(Error::Conflict(format!(
            "workflow `{}` is archived",
            wf.name
        )));
    }
    let version = repo::workflows::version(conn, wf.id, wf.current_version)?.ok_or_else(|| {
        Error::Internal(format!(
            "workflow {} lacks version {}",
            wf.id, wf.current_version
        ))
    })?;
    let spec = version.spec()?;
    let run_id = Uuid::now_v7();
    let run = repo::runs::insert(
        conn,
        &NewRun {
            id: run_id,
            workflow_id: wf.id,
            version: wf.current_version,
            inputs,
            idempotency_key: key,
            no_cache,
            triggered_by: who.user_id,
        },
    )?;
    let steps: Vec<(String, Vec<String>)> = spec
        .steps
        .iter()
        .map(|s| (s.name.clone(), s.depends_on.clone()))
        .collect();
    repo::runs::insert_tasks(conn, run_id, &steps)?;
    let ev = record(
        conn,
        run_id,
        KIND_RUN,
        Some(RunStatus::Queued.as_str()),
        None,
        None,
    )?;
    let payload = serde_json::to_value(RunJob {
        run_id,
        trace: Default::default(),
    })
    .map_err(Error::internal)?;
    repo::outbox::insert(conn, run_id, &payload)?;
    let run = repo::runs::find(conn, run.id)?.ok_or(Error::NotFound("run"))?;
    Ok((run, Some(ev)))
}
