//! Batch reads behind list pages: each authorises once and costs a fixed number of statements
//! whatever the number of runs asked about.

use std::collections::HashMap;

use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::error::Result;
use crate::repo;
use crate::runs::eta::Estimate;
use crate::runs::service::RunService;
use crate::runs::{Run, Task};

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
}
