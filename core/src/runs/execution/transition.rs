//! The run's tasks as the lease holder keeps them in memory, and the one-statement task
//! transition that keeps them: a task change and its event, fenced by the lease, estimated
//! from memory rather than from a read of the run.

use std::time::Duration;

use diesel::PgConnection;

use crate::error::{Error, Result};
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::runs::{TaskChange, TaskRow};
use crate::repo::task_transition::Fence;
use crate::runs::{EventKind, EventStatus};

use super::{Execution, WRITE_RETRIES};

/// The run's tasks as the database holds them, kept by the lease holder, which is their only
/// writer while it holds the lease. Locked across each write that changes a task (and the
/// estimate made for its event), so events are estimated in the order they are numbered, as
/// the run row's lock orders them in the database.
pub(super) type TaskView = tokio::sync::Mutex<Vec<TaskRow>>;

impl Execution {
    /// Applies `change` to task `step` and records `ev` about it: one statement, whose event is
    /// estimated from the tasks in memory with the change applied. Falls back to a transaction
    /// that reads the run when the tasks are not in memory (never in practice: the claim or the
    /// resume fills them).
    pub(super) async fn transition(
        &self,
        step: &str,
        change: TaskChange,
        ev: NewEvent,
    ) -> Result<()> {
        let mut view = self.tasks.lock().await;
        let Some(i) = view.iter().position(|t| t.name == step) else {
            drop(view);
            return self.change_in_transaction(step, change, ev).await;
        };
        let mut after = view.clone();
        change.apply_to(&mut after[i]);
        let succeeded = (ev.kind == EventKind::Task && ev.status == Some(EventStatus::Succeeded))
            .then(|| step.to_string());
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let (est, wf, step) = (self.est.clone(), self.claim.workflow_id, step.to_string());
        let tasks = after.clone();
        let row = self
            .retrying(move |conn| {
                let e = est.estimate_after(conn, wf, tasks.clone(), succeeded.as_deref())?;
                let mut ev = ev.clone();
                ev.percent = e.percent;
                ev.eta_seconds = e.eta_seconds;
                let fence = Fence {
                    run_id,
                    owner: &owner,
                    epoch,
                };
                repo::task_transition::apply(conn, &fence, &step, &change, &ev)?
                    .ok_or_else(|| Error::Conflict("run lease lost".into()))
            })
            .await?;
        *view = after;
        // Published in the order numbered (a queue send, no round trip).
        self.bus.publish(&[row.into()]).await;
        Ok(())
    }

    /// Runs `f` (one statement, atomic on its own) on a pooled connection, retried while the
    /// database is unreachable, backing off from 200 ms to 2 s.
    pub(super) async fn retrying<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut PgConnection) -> Result<T> + Send + Sync + Clone + 'static,
    {
        let mut delay = Duration::from_millis(200);
        let mut tries = 0;
        loop {
            match self.db.run(f.clone()).await {
                Err(Error::Unavailable(e)) if tries < WRITE_RETRIES => {
                    tries += 1;
                    tracing::warn!(run_id = %self.run_id, error = %e, "database unavailable; retrying write");
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(Duration::from_secs(2));
                }
                other => return other,
            }
        }
    }
}
