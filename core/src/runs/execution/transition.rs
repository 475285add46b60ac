//! How an execution writes: the one-statement task transition (a task change and its event,
//! fenced by the lease, estimated from the run's tasks the lease holder keeps in memory), the
//! transactions that re-check the lease for everything else, and the retries of both while the
//! database is unreachable.

use std::sync::Arc;
use std::time::Duration;

use diesel::{Connection, PgConnection};

use crate::error::{Error, Result};
use crate::repo;
use crate::repo::events::NewEvent;
use crate::repo::runs::{TaskChange, TaskRow};
use crate::repo::task_transition::Fence;
use crate::runs::events::change_task;
use crate::runs::{EventKind, EventStatus, RunEvent};

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
        // Shared with the closure (cloned per try) rather than copied: a task row carries its
        // log tail.
        let after = Arc::new(after);
        let tasks = after.clone();
        let row = self
            .retrying(move |conn| {
                let e = est.estimate_after(conn, wf, &tasks, succeeded.as_deref())?;
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
        // `retrying` has dropped its closure: `after` is the only handle left.
        *view = Arc::try_unwrap(after).unwrap_or_else(|shared| (*shared).clone());
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

    /// As [`Self::transition`], in a transaction that reads the run for the event's estimate.
    pub(super) async fn change_in_transaction(
        &self,
        step: &str,
        change: TaskChange,
        ev: crate::repo::events::NewEvent,
    ) -> Result<()> {
        let (run_id, step, est) = (self.run_id, step.to_string(), self.est.clone());
        self.write(move |conn| {
            let ev = change_task(conn, &est, run_id, &step, &change, ev.clone())?;
            Ok(((), vec![ev]))
        })
        .await
    }

    /// Runs `f` in a transaction that first re-checks this worker still holds the lease, then
    /// publishes the events it returns. Retried while the database is unreachable.
    pub(super) async fn write<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut PgConnection) -> Result<(T, Vec<RunEvent>)> + Send + Sync + Clone + 'static,
    {
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let (out, events) = self
            .retrying(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    if !repo::leases::holds_lease(conn, run_id, &owner, epoch)? {
                        return Err(Error::Conflict("run lease lost".into()));
                    }
                    f(conn)
                })
            })
            .await?;
        self.bus.publish(&events).await;
        Ok(out)
    }

    /// As [`Self::write`], for a transaction that changes task `step` as the change `f` returns
    /// says; the tasks in memory follow once it committed (locked throughout, like
    /// [`Self::transition`]).
    pub(super) async fn write_task<T, F>(&self, step: &str, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: Fn(&mut PgConnection) -> Result<(T, TaskChange, Vec<RunEvent>)>
            + Send
            + Sync
            + Clone
            + 'static,
    {
        let mut view = self.tasks.lock().await;
        let (out, change) = self
            .write(move |conn| {
                let (out, change, events) = f(conn)?;
                Ok(((out, change), events))
            })
            .await?;
        if let Some(t) = view.iter_mut().find(|t| t.name == step) {
            change.apply_to(t);
        }
        Ok(out)
    }
}
