//! Batch reads behind list pages: each authorises once and costs a fixed number of statements
//! whatever the number of runs asked about.

use std::collections::HashMap;

use uuid::Uuid;

use crate::auth::{Permission, Principal, rbac};
use crate::error::Result;
use crate::repo;
use crate::runs::eta::Estimate;
use crate::runs::service::RunService;
use crate::runs::{Run, Task};
use crate::workflows::Workflow;

impl RunService {
    /// The tasks of each of `run_ids`, in position order; runs without tasks are left out.
    pub async fn tasks_many(
        &self,
        who: Option<&Principal>,
        run_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Vec<Task>>> {
        crate::audit::require(&self.db, who, Permission::ReadRuns).await?;
        let ids = run_ids.to_vec();
        let rows = self
            .db
            .run(move |c| repo::runs_batch::tasks_of_runs(c, &ids))
            .await?;
        let mut out: HashMap<Uuid, Vec<Task>> = HashMap::new();
        for row in rows {
            out.entry(row.run_id).or_default().push(Task::from(row));
        }
        Ok(out)
    }

    /// Percent done and ETA of each of `run_ids` that exists, as of now.
    pub async fn estimates(
        &self,
        who: Option<&Principal>,
        run_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Estimate>> {
        crate::audit::require(&self.db, who, Permission::ReadRuns).await?;
        let ids = run_ids.to_vec();
        let est = self.est.clone();
        self.db.run(move |c| est.estimate_many(c, &ids)).await
    }

    /// The estimate of `run` when it is known from the run alone, with no statement: a run
    /// that has ended is 100 % done with nothing left (what [`Self::estimates`] would say).
    /// `None` for a run still queued or running, whose estimate needs its tasks and history.
    pub fn estimate_if_ended(run: &Run) -> Option<Estimate> {
        run.status.is_terminal().then_some(Estimate {
            percent: 100.0,
            eta_seconds: Some(0.0),
        })
    }

    /// What a runs page asks of its runs besides their estimates, in one pool checkout and one
    /// blocking-pool hop instead of one each: the tasks of `task_runs` (by run, in position
    /// order; runs without tasks are left out) and the workflows among `workflow_ids` that
    /// exist. Either list may be empty.
    ///
    /// `None` when the caller lacks a permission either read needs: then nothing is read and
    /// nothing recorded, and the caller reads them separately through [`Self::tasks_many`] and
    /// the workflow service, which report (and audit) the denial where it applies.
    pub async fn page_extras(
        &self,
        who: Option<&Principal>,
        task_runs: &[Uuid],
        workflow_ids: &[Uuid],
    ) -> Result<Option<PageExtras>> {
        let allowed = |needed: bool, p: Permission| !needed || rbac::require(who, p).is_ok();
        if !allowed(!task_runs.is_empty(), Permission::ReadRuns)
            || !allowed(!workflow_ids.is_empty(), Permission::ReadWorkflows)
        {
            return Ok(None);
        }
        let (runs, wfs) = (task_runs.to_vec(), workflow_ids.to_vec());
        let (task_rows, wf_rows) = self
            .db
            .run(move |c| {
                Ok((
                    repo::runs_batch::tasks_of_runs(c, &runs)?,
                    repo::workflows::find_many(c, &wfs)?,
                ))
            })
            .await?;
        let mut tasks: HashMap<Uuid, Vec<Task>> = HashMap::new();
        for row in task_rows {
            tasks.entry(row.run_id).or_default().push(Task::from(row));
        }
        let workflows = wf_rows
            .into_iter()
            .map(|r| (r.id, Workflow::from(r)))
            .collect();
        Ok(Some(PageExtras { tasks, workflows }))
    }
}

/// What [`RunService::page_extras`] read.
pub struct PageExtras {
    pub tasks: HashMap<Uuid, Vec<Task>>,
    pub workflows: HashMap<Uuid, Workflow>,
}
