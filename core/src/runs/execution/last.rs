//! The end of the step a run waited for last, and the run's end with it: one statement
//! (`repo::run_end::finish_with_task`) instead of the two a step's end and a run's end take
//! apart. Every run ends this way unless a cancellation or a hand-back ends it.

use std::sync::Arc;

use super::{Execution, TaskEnd, observe_run, run_ended};
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::task_transition::Fence;
use crate::runs::events::task_changed;
use crate::runs::{RunStatus, TaskStatus};

impl Execution {
    /// Records the final attempt of `step` as [`Self::finish_task`] does and, with it, the
    /// run's end with `status` and `error` as [`Self::finish_run`] does; the caller knows no
    /// other step of the run is left to run. One statement, unless something else must be
    /// written with them (a cacheable success's cache entry; the wake-up of runs waiting for a
    /// slot of a capped workflow): then the two writes, one after the other.
    pub async fn finish_last(
        &self,
        step: &str,
        end: TaskEnd,
        status: RunStatus,
        error: Option<String>,
    ) -> Result<()> {
        let caches = end.cache.is_some() && end.output.is_some();
        let mut view = self.tasks.lock().await;
        let found = view.iter().position(|t| t.name == step);
        let (Some(i), false, false) = (found, caches, self.claim.capped) else {
            drop(view);
            self.finish_task(step, end).await?;
            return self.finish_run(status, error).await;
        };
        let change = end.change();
        let mut after = view.clone();
        change.apply_to(&mut after[i]);
        let succeeded = (end.status == TaskStatus::Succeeded).then(|| step.to_string());
        let task_ev = task_changed(step, end.status, end.error);
        let run_ev = run_ended(status, error.clone());
        let (run_id, owner, epoch) = (self.run_id, self.owner.clone(), self.epoch());
        let (est, wf, step) = (self.est.clone(), self.claim.workflow_id, step.to_string());
        let after = Arc::new(after);
        let tasks = after.clone();
        let (task_row, ended) = self
            .retrying(move |conn| {
                // Estimated as the step's own end would be, which also learns its duration.
                let e = est.estimate_after(conn, wf, &tasks, succeeded.as_deref())?;
                let mut task_ev = task_ev.clone();
                (task_ev.percent, task_ev.eta_seconds) = (e.percent, e.eta_seconds);
                let fence = Fence {
                    run_id,
                    owner: &owner,
                    epoch,
                };
                repo::run_end::finish_with_task(
                    conn,
                    &fence,
                    &step,
                    &change,
                    &task_ev,
                    status,
                    error.as_deref(),
                    &run_ev,
                )?
                .ok_or_else(|| Error::Conflict("run lease lost".into()))
            })
            .await?;
        *view = Arc::try_unwrap(after).unwrap_or_else(|shared| (*shared).clone());
        self.bus
            .publish(&[task_row.into(), ended.event.into()])
            .await;
        observe_run(status, ended.took);
        Ok(())
    }
}
