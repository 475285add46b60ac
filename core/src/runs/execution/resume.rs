//! Resuming a claimed run: `queued` becomes `running`, and tasks a lost worker left `running`
//! go back to `pending`, each visible as an event.

use diesel::PgConnection;
use uuid::Uuid;

use super::{Claim, Resumed, ResumedTask};
use crate::error::Result;
use crate::repo;
use crate::repo::runs::{TaskChange, TaskRow};
use crate::runs::dag::Node;
use crate::runs::eta::Estimator;
use crate::runs::events::{change_task, run_changed, task_changed};
use crate::runs::{RunEvent, RunStatus, TaskStatus};

/// Resumes `run_id`, whose lease `owner` took with `claim`; returns the run as resumed, its
/// tasks as they now stand (for the lease holder's memory) and the events to publish once
/// written. A run that was `running` (interrupted tasks go back to `pending`) is resumed in
/// the caller's transaction, which holds the lease; a queued one needs none (its start is one
/// statement fenced by the lease, and none of its tasks can be running).
pub(super) fn resume_in(
    conn: &mut PgConnection,
    est: &Estimator,
    run_id: Uuid,
    claim: &Claim,
    owner: &str,
) -> Result<(Resumed, Vec<TaskRow>, Vec<RunEvent>)> {
    let spec = super::specs::version(conn, claim.workflow_id, claim.version)?;
    let rows = repo::runs::tasks_of(conn, run_id)?;
    let mut events = Vec::new();
    if claim.status == RunStatus::Queued {
        // The tasks just read are the run's as of this event: its estimate needs no second read.
        let e = est.estimate_of(conn, claim.workflow_id, &rows)?;
        let mut ev = run_changed(RunStatus::Running, None);
        (ev.percent, ev.eta_seconds) = (e.percent, e.eta_seconds);
        let fence = repo::task_transition::Fence {
            run_id,
            owner,
            epoch: claim.deliveries,
        };
        if let Some(row) = repo::run_start::start(conn, &fence, &ev)? {
            events.push(row.into());
        }
    }
    let (mut tasks, mut now) = (Vec::new(), Vec::new());
    for mut t in rows {
        if t.status == TaskStatus::Running {
            let why = format!(
                "attempt {} was interrupted (worker lost); re-queued",
                t.attempt
            );
            let ev = task_changed(&t.name, TaskStatus::Pending, Some(why));
            let change = TaskChange::to(TaskStatus::Pending);
            events.push(change_task(conn, est, run_id, &t.name, &change, ev)?);
            change.apply_to(&mut t);
        }
        tasks.push(resumed_task(&t));
        now.push(t);
    }
    let resumed = Resumed {
        spec,
        tasks,
        inputs: claim.inputs.clone(),
        no_cache: claim.no_cache,
    };
    Ok((resumed, now, events))
}

/// What the runner needs of task `t` to go on with it.
pub(super) fn resumed_task(t: &TaskRow) -> ResumedTask {
    ResumedTask {
        attempt: t.attempt,
        output: t.output_manifest.clone(),
        node: Node {
            name: t.name.clone(),
            depends_on: t.depends_on.clone(),
            status: t.status,
        },
    }
}
