//! Batch reads behind list pages: each authorises once and costs a fixed number of statements
//! whatever the number of runs asked about, and a runs page read with them in one hop.

use std::collections::HashMap;

use uuid::Uuid;

use crate::auth::service::TokenSession;
use crate::auth::{Permission, Principal, rbac};
use crate::error::Result;
use crate::repo;
use crate::runs::eta::Estimate;
use crate::runs::service::RunService;
use crate::runs::{Run, RunStatus, Task};
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
            .run(move |c| repo::runs_batch::task_views_of_runs(c, &ids))
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

    /// The estimates of `runs`: each ended run's from the run alone
    /// ([`Self::estimate_if_ended`], most of a page), the others' in one [`Self::estimates`].
    pub async fn estimates_of_runs(
        &self,
        who: Option<&Principal>,
        runs: &[Run],
    ) -> Result<HashMap<Uuid, Estimate>> {
        let mut found = HashMap::with_capacity(runs.len());
        let mut open = Vec::new();
        for r in runs {
            match Self::estimate_if_ended(r) {
                Some(e) => {
                    found.insert(r.id, e);
                }
                None => open.push(r.id),
            }
        }
        if !open.is_empty() {
            found.extend(self.estimates(who, &open).await?);
        }
        Ok(found)
    }

    /// A page of runs, newest first, before the run `before`: at most `limit` runs and whether
    /// more follow, with what `wants` asks of them (their tasks, their workflows) read in the
    /// same pool checkout and blocking-pool hop instead of one each: a page of finished runs
    /// then costs one hop. Needs `runs:read` (a denial is recorded, as by [`Self::list`]). The
    /// extras are read only when the caller also holds what they need; else `extras` is `None`,
    /// nothing of them is read or recorded, and the fields load on their own through
    /// [`Self::tasks_many`] and the workflow service, which report and record the denial.
    #[allow(clippy::too_many_arguments)]
    pub async fn page(
        &self,
        who: Option<&Principal>,
        before: Option<Uuid>,
        limit: i64,
        workflow_id: Option<Uuid>,
        status: Option<RunStatus>,
        wants: PageWants,
    ) -> Result<RunPage> {
        crate::audit::require(&self.db, who, Permission::ReadRuns).await?;
        let extras = (wants.tasks || wants.workflows) && wants.allowed(who);
        let at = PageAt {
            before,
            limit,
            workflow_id,
            status,
        };
        self.db.run(move |c| read_page(c, at, wants, extras)).await
    }

    /// [`Self::page`] for the holder of an access token whose signature and expiry are checked,
    /// with its session checked on the page's own connection (one hop for both), and with the
    /// principal it resolved. `None`, with nothing recorded, when the session no longer stands
    /// or its user may not read all that `wants` asks: the caller then goes the general way
    /// (`AuthService::authenticate`, then [`Self::page`]), which reports and records it.
    #[allow(clippy::too_many_arguments)]
    pub async fn page_in_session(
        &self,
        session: TokenSession,
        before: Option<Uuid>,
        limit: i64,
        workflow_id: Option<Uuid>,
        status: Option<RunStatus>,
        wants: PageWants,
    ) -> Result<Option<(Principal, RunPage)>> {
        let at = PageAt {
            before,
            limit,
            workflow_id,
            status,
        };
        self.db
            .run(move |c| {
                let Some(who) = session.principal_on(c)? else {
                    return Ok(None);
                };
                if rbac::require(Some(&who), Permission::ReadRuns).is_err()
                    || !wants.allowed(Some(&who))
                {
                    return Ok(None);
                }
                let extras = wants.tasks || wants.workflows;
                Ok(Some((who, read_page(c, at, wants, extras)?)))
            })
            .await
    }
}

/// Which page of runs: newest first, before the run `before`, at most `limit`, filtered.
#[derive(Clone, Copy)]
struct PageAt {
    before: Option<Uuid>,
    limit: i64,
    workflow_id: Option<Uuid>,
    status: Option<RunStatus>,
}

/// The page `at`, and its extras when `extras` (the caller has checked they are permitted).
fn read_page(
    c: &mut diesel::PgConnection,
    at: PageAt,
    wants: PageWants,
    extras: bool,
) -> Result<RunPage> {
    let mut rows = repo::runs::list(c, at.before, at.limit + 1, at.workflow_id, at.status)?;
    let has_next = rows.len() as i64 > at.limit;
    rows.truncate(usize::try_from(at.limit).unwrap_or(0));
    let extras = if extras {
        let runs: Vec<Uuid> = if wants.tasks {
            rows.iter().map(|r| r.id).collect()
        } else {
            Vec::new()
        };
        let mut wfs: Vec<Uuid> = if wants.workflows {
            rows.iter().map(|r| r.workflow_id).collect()
        } else {
            Vec::new()
        };
        wfs.sort_unstable();
        wfs.dedup();
        Some(PageExtras::read(c, &runs, &wfs, wants.brief_tasks)?)
    } else {
        None
    };
    Ok(RunPage {
        runs: rows.into_iter().map(Run::from).collect(),
        has_next,
        extras,
    })
}

/// What a runs page asks of its runs besides the runs themselves and their estimates.
#[derive(Clone, Copy, Debug, Default)]
pub struct PageWants {
    /// Each run's tasks (`runs:read`).
    pub tasks: bool,
    /// Each run's workflow (`workflows:read`).
    pub workflows: bool,
    /// Only each task's name, position, status, attempt and exit code are read; its other
    /// fields are left empty. For a caller that shows nothing else of the tasks (the compiled
    /// read path, which knows the whole selection), never for one that hands them on.
    pub brief_tasks: bool,
}

impl PageWants {
    /// Whether `who` may read all that is wanted; checked without recording anything, since a
    /// caller who may not reads each separately, where the denial is reported and recorded.
    fn allowed(self, who: Option<&Principal>) -> bool {
        let ok = |needed: bool, p: Permission| !needed || rbac::require(who, p).is_ok();
        ok(self.tasks, Permission::ReadRuns) && ok(self.workflows, Permission::ReadWorkflows)
    }
}

/// A page of runs read by [`RunService::page`].
pub struct RunPage {
    pub runs: Vec<Run>,
    /// More runs follow the page.
    pub has_next: bool,
    /// The page's tasks and workflows, when asked for and permitted.
    pub extras: Option<PageExtras>,
}

/// What [`RunService::page`] read besides the runs.
#[derive(Default)]
pub struct PageExtras {
    pub tasks: HashMap<Uuid, Vec<Task>>,
    pub workflows: HashMap<Uuid, Workflow>,
}

impl PageExtras {
    /// The tasks of `runs` (by run, in position order; runs without tasks are left out) and
    /// the workflows among `workflows` that exist: two statements at most.
    fn read(
        c: &mut diesel::PgConnection,
        runs: &[Uuid],
        workflows: &[Uuid],
        brief: bool,
    ) -> Result<Self> {
        let mut tasks: HashMap<Uuid, Vec<Task>> = HashMap::with_capacity(runs.len());
        if brief {
            for row in repo::runs_batch::task_briefs_of_runs(c, runs)? {
                tasks.entry(row.run_id).or_default().push(Task::from(row));
            }
        } else {
            for row in repo::runs_batch::task_views_of_runs(c, runs)? {
                tasks.entry(row.run_id).or_default().push(Task::from(row));
            }
        }
        let workflows = repo::workflows::find_many(c, workflows)?
            .into_iter()
            .map(|r| (r.id, Workflow::from(r)))
            .collect();
        Ok(Self { tasks, workflows })
    }
}
