//! Group commit for triggers: the triggers waiting when a batch starts are created by one
//! statement in one transaction, so they share one commit and take the audit chain's head once,
//! instead of queueing on its row lock one commit at a time.
//!
//! Every trigger appends to the one audit chain in the transaction that creates its run
//! (DESIGN.md), so the head's lock orders all of them: alone, each holds it through its own
//! commit, and the next waits for that commit and a wake-up. A batch holds it once for all of
//! its runs. One loop runs the batches in turn; a batch of one takes the single-trigger path.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use crate::audit::{self, Action};
use crate::auth::Principal;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::run_create_many::QueuedRun;
use crate::repo::runs::{NewRun, RunRow};
use crate::repo::workflows::{VersionRow, WorkflowRow};
use crate::runs::eta::Estimator;
use crate::runs::service::{Step, queued_start, run_entry};
use crate::runs::trigger::{alone, same_inputs};
use crate::runs::{RunEvent, RunTrigger};

/// The most triggers one batch creates: enough to take a burst of concurrent clients at once,
/// few enough that the batch's statement stays short.
const MAX_BATCH: usize = 64;
/// Triggers waiting for a batch; a caller beyond it waits to be queued.
const QUEUE: usize = 1024;

/// One trigger's checked request, with the span its run's job carries to the worker.
pub(super) struct Trigger {
    pub who: Principal,
    pub workflow_id: Uuid,
    pub inputs: serde_json::Value,
    pub key: Option<String>,
    pub no_cache: bool,
    pub span: tracing::Span,
}

/// The run a trigger created or found (by its idempotency key), and the created run's event.
pub(super) type Outcome = (RunRow, Option<RunEvent>);

struct Pending {
    trigger: Trigger,
    reply: oneshot::Sender<Result<Outcome>>,
}

/// Hands triggers to the batching loop, which ends when every handle is gone.
#[derive(Clone)]
pub(super) struct Triggers {
    tx: mpsc::Sender<Pending>,
}

impl Triggers {
    /// Starts the loop on the current tokio runtime.
    pub fn start(db: Db, est: Arc<Estimator>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(serve(db, est, rx));
        Self { tx }
    }

    /// Creates the trigger's run in the next batch; returns what it created or found.
    pub async fn submit(&self, trigger: Trigger) -> Result<Outcome> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send(Pending { trigger, reply })
            .await
            .map_err(|_| Error::Internal("the trigger batching loop has stopped".into()))?;
        answer
            .await
            .map_err(|_| Error::Internal("a trigger batch ended without an answer".into()))?
    }
}

async fn serve(db: Db, est: Arc<Estimator>, mut rx: mpsc::Receiver<Pending>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let (triggers, replies): (Vec<_>, Vec<_>) =
            batch.drain(..).map(|p| (p.trigger, p.reply)).unzip();
        let est = est.clone();
        let results = db.run(move |conn| Ok(execute(conn, &est, &triggers))).await;
        match results {
            Ok(results) => {
                for (reply, result) in replies.into_iter().zip(results) {
                    let _ = reply.send(result);
                }
            }
            Err(e) => {
                tracing::debug!(error = %e, "a trigger batch found no database connection");
                for reply in replies {
                    let _ = reply.send(Err(replica(&e)));
                }
            }
        }
    }
}

/// The triggers' outcomes, in order. Together when there are several; when that fails before
/// its commit (nothing was written), each is tried alone, so one bad trigger (a key a concurrent
/// api used first, a database error) fails alone.
fn execute(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    triggers: &[Trigger],
) -> Vec<Result<Outcome>> {
    if let [one] = triggers {
        return vec![alone(conn, est, one)];
    }
    let mut written = false;
    let grouped = {
        use diesel::Connection;
        conn.transaction::<_, Error, _>(|conn| {
            let out = together(conn, est, triggers)?;
            written = true;
            Ok(out)
        })
    };
    match grouped {
        Ok(out) => out,
        // The commit itself failed: whether it took effect is unknown, so nothing is retried.
        Err(e) if written => {
            tracing::warn!(error = %e, triggers = triggers.len(), "a trigger batch's commit failed");
            let mut out = vec![Err(replica(&e))];
            out.resize_with(triggers.len(), || Err(replica(&e)));
            out
        }
        Err(e) => {
            tracing::debug!(error = %e, triggers = triggers.len(), "a trigger batch failed: each alone");
            triggers.iter().map(|t| alone(conn, est, t)).collect()
        }
    }
}

/// One run per trigger that passes its checks, in one statement after the chain's head is
/// locked. A trigger refused by its checks (unknown or archived workflow, a key used with other
/// inputs) gets its error; a key already used returns its run. An `Err` means nothing of the
/// batch may be committed.
fn together(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    triggers: &[Trigger],
) -> Result<Vec<Result<Outcome>>> {
    let mut out: Vec<Option<Result<Outcome>>> = triggers.iter().map(|_| None).collect();
    let mut workflows: HashMap<Uuid, Option<(WorkflowRow, Option<VersionRow>)>> = HashMap::new();
    let mut made = Vec::new();
    for (i, t) in triggers.iter().enumerate() {
        let _entered = t.span.enter();
        let found = match workflows.entry(t.workflow_id) {
            Entry::Occupied(e) => e.into_mut(),
            Entry::Vacant(e) => e.insert(repo::workflows::find_with_current(conn, t.workflow_id)?),
        };
        let Some((wf, current)) = found else {
            out[i] = Some(Err(Error::NotFound("workflow")));
            continue;
        };
        if let Some(k) = &t.key
            && let Some(existing) = repo::runs::find_by_idempotency_key(conn, wf.id, k)?
        {
            out[i] = Some(same_inputs(&existing, &t.inputs).map(|()| (existing, None)));
            continue;
        }
        if let Err(e) = wf.ensure_active() {
            out[i] = Some(Err(e));
            continue;
        }
        let version = current.as_ref().ok_or_else(|| {
            Error::Internal(format!("workflow {} lacks its current version", wf.id))
        })?;
        made.push((i, prepare(conn, est, t, wf, version)?));
    }
    if !made.is_empty() {
        let (mut seq, mut prev) = repo::audit::lock_head(conn)?;
        for (_, m) in &mut made {
            seq += 1;
            m.audit.seq = seq;
            m.audit.prev_hash = std::mem::take(&mut prev);
            m.audit.hash = audit::hash_of(&m.audit);
            prev = m.audit.hash.clone();
        }
        let at = chrono::SubsecRound::trunc_subsecs(chrono::Utc::now(), 6);
        let queued: Vec<QueuedRun<'_>> =
            made.iter().map(|(i, m)| m.queued(&triggers[*i])).collect();
        let rows = repo::run_create_many::create(conn, &queued, at)?;
        let mut by_id: HashMap<Uuid, RunRow> = rows.into_iter().map(|r| (r.id, r)).collect();
        for (i, m) in made {
            let row = by_id
                .remove(&m.run_id)
                .ok_or_else(|| Error::Internal(format!("run {} was not created", m.run_id)))?;
            audit::appended(&m.audit);
            let ev = repo::events::EventRow::first(&row, &m.first, at);
            out[i] = Some(Ok((row, Some(ev.into()))));
        }
    }
    Ok(out
        .into_iter()
        .map(|o| o.unwrap_or_else(|| Err(Error::Internal("a trigger without outcome".into()))))
        .collect())
}

/// What one trigger's run is made of, before it is written.
struct Made {
    run_id: Uuid,
    version: i32,
    steps: Vec<Step>,
    first: NewEvent,
    job: serde_json::Value,
    audit: repo::audit::AuditRow,
}

fn prepare(
    conn: &mut diesel::PgConnection,
    est: &Estimator,
    t: &Trigger,
    wf: &WorkflowRow,
    version: &VersionRow,
) -> Result<Made> {
    let (steps, first) = queued_start(conn, est, version, None)?;
    let run_id = Uuid::now_v7();
    let entry = run_entry(
        &t.who,
        Action::RunTrigger,
        run_id,
        wf.id,
        version.version,
        None,
    );
    Ok(Made {
        run_id,
        version: version.version,
        steps,
        first,
        // In the trigger's span (entered by the caller): the worker's run span is its child.
        job: crate::queue::job_payload(
            run_id,
            Some(crate::queue::RunVersion {
                workflow_id: wf.id,
                version: version.version,
            }),
        )?,
        audit: audit::to_row(entry).0,
    })
}

impl Made {
    fn queued<'a>(&'a self, t: &'a Trigger) -> QueuedRun<'a> {
        QueuedRun {
            run: NewRun {
                id: self.run_id,
                workflow_id: t.workflow_id,
                version: self.version,
                inputs: &t.inputs,
                idempotency_key: t.key.as_deref(),
                no_cache: t.no_cache,
                triggered_by: Some(t.who.user_id),
                trigger: RunTrigger::Manual,
                scheduled_for: None,
            },
            steps: &self.steps,
            first: &self.first,
            job: &self.job,
            audit: &self.audit,
        }
    }
}

/// The same error again, for every trigger of a batch it ended: the kind (and so the client's
/// code) is kept, the detail stays in the log.
fn replica(e: &Error) -> Error {
    match e {
        Error::Unavailable(m) => Error::Unavailable(m.clone()),
        other => Error::Internal(other.to_string()),
    }
}
