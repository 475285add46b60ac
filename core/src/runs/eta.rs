//! Percent done and remaining time of a run: learnt step durations (median of the latest
//! successful runs of the same workflow step, robust to outliers), refined by each running step's
//! own `::progress` reports, combined along the critical path of what is left.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use chrono::{DateTime, Utc};
use diesel::PgConnection;
use uuid::Uuid;

use crate::error::Result;
use crate::repo;
use crate::repo::runs::TaskRow;
use crate::runs::TaskStatus;

/// How many recent successful executions of a step its expected duration is learnt from.
pub const HISTORY_WINDOW: i64 = 20;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub percent: f64,
    /// `None` when some remaining step has neither history nor progress to go by.
    pub eta_seconds: Option<f64>,
}

/// What is known about one task right now.
#[derive(Debug, Clone)]
pub struct TaskState {
    pub name: String,
    pub status: TaskStatus,
    pub depends_on: Vec<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// Expected duration in seconds from history.
    pub expected: Option<f64>,
    /// Latest self-reported progress of the current attempt: (percent, when).
    pub progress: Option<(f64, DateTime<Utc>)>,
}

/// Seconds this task still needs, if it can be told.
fn remaining(t: &TaskState, now: DateTime<Utc>) -> Option<f64> {
    if t.status.is_terminal() {
        return Some(0.0);
    }
    let Some(started) = t.started_at.filter(|_| t.status == TaskStatus::Running) else {
        return t.expected;
    };
    let elapsed = (now - started).num_milliseconds().max(0) as f64 / 1000.0;
    let by_history = t.expected.map(|e| (e - elapsed).max(0.0));
    let by_progress = t.progress.and_then(|(p, at)| {
        let spent = (at - started).num_milliseconds() as f64 / 1000.0;
        if p <= 0.0 || spent <= 0.0 {
            return None;
        }
        let total = spent * 100.0 / p;
        let since = (now - at).num_milliseconds().max(0) as f64 / 1000.0;
        Some((total - spent - since).max(0.0))
    });
    match (by_history, by_progress, t.progress) {
        // Trust the step's own report more the further it has got.
        (Some(h), Some(p), Some((pct, _))) => {
            let w = pct / 100.0;
            Some(w * p + (1.0 - w) * h)
        }
        (None, Some(p), _) => Some(p),
        (h, _, _) => h,
    }
}

/// Percent and ETA from the tasks' states at `now`.
pub fn compute(tasks: &[TaskState], now: DateTime<Utc>) -> Estimate {
    if tasks.is_empty() {
        return Estimate {
            percent: 0.0,
            eta_seconds: None,
        };
    }
    let done: f64 = tasks
        .iter()
        .map(|t| {
            if t.status.is_terminal() {
                1.0
            } else if t.status == TaskStatus::Running {
                t.progress.map(|(p, _)| p / 100.0).unwrap_or(0.0)
            } else {
                0.0
            }
        })
        .sum();
    let percent = ((done * 100.0 / tasks.len() as f64) * 10.0).round() / 10.0;

    let by_name: HashMap<&str, &TaskState> = tasks.iter().map(|t| (t.name.as_str(), t)).collect();
    let mut finish: HashMap<&str, Option<f64>> = HashMap::new();
    fn finish_of<'a>(
        name: &'a str,
        by_name: &HashMap<&'a str, &'a TaskState>,
        memo: &mut HashMap<&'a str, Option<f64>>,
        now: DateTime<Utc>,
        depth: usize,
    ) -> Option<f64> {
        if let Some(v) = memo.get(name) {
            return *v;
        }
        let t = by_name.get(name)?;
        let own = remaining(t, now);
        let mut start = Some(0.0f64);
        if depth < 512 && !t.status.is_terminal() {
            for d in &t.depends_on {
                let f = finish_of(d.as_str(), by_name, memo, now, depth + 1);
                start = match (start, f) {
                    (Some(a), Some(b)) => Some(a.max(b)),
                    _ => None,
                };
            }
        }
        let v = match (start, own) {
            (Some(s), Some(o)) => Some(s + o),
            _ => None,
        };
        memo.insert(name, v);
        v
    }
    let mut eta = Some(0.0f64);
    for t in tasks {
        let f = finish_of(t.name.as_str(), &by_name, &mut finish, now, 0);
        eta = match (eta, f) {
            (Some(a), Some(b)) => Some(a.max(b)),
            _ => None,
        };
    }
    Estimate {
        percent,
        eta_seconds: eta.map(|e| (e * 10.0).round() / 10.0),
    }
}

/// How long learnt durations are reused before being read again. They move slowly (a median
/// over many runs), and every event of every run needs them.
pub const HISTORY_TTL: std::time::Duration = std::time::Duration::from_secs(5);
/// Only this many of a workflow's latest runs are looked at, so the cost stays flat as history
/// grows.
pub const HISTORY_RUNS: i64 = 200;
/// Learnt durations that lack a step which just succeeded are re-read no sooner than this.
const RELEARN_AFTER: std::time::Duration = std::time::Duration::from_secs(1);
/// At most this many workflows' durations are kept; past it the cache starts over.
const CACHE_WORKFLOWS: usize = 10_000;

type Durations = Arc<HashMap<String, f64>>;

/// What [`Estimator::estimate`] gives for a run that has ended.
pub const FINISHED: Estimate = Estimate {
    percent: 100.0,
    eta_seconds: Some(0.0),
};

/// Estimates runs from the database, keeping each workflow's learnt durations for
/// [`HISTORY_TTL`]. One per process, shared by whoever records events or reads estimates.
#[derive(Default)]
pub struct Estimator {
    learnt: Mutex<HashMap<Uuid, (Instant, Durations)>>,
}

impl Estimator {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }

    /// Drops the cached durations of `workflow_id` when they know nothing of `step` yet.
    /// Further successes only refine a median, which the TTL takes care of; re-reading on every
    /// success would cost a history query per event when many runs of one workflow are in flight.
    /// Read at most once per [`RELEARN_AFTER`] per workflow: while a workflow's latest runs
    /// are all still queued (a burst), history knows nothing of its steps, and re-reading it on
    /// every success was the database's largest cost (docs/performance.md).
    fn forget_unless_known(&self, workflow_id: Uuid, step: &str) {
        if let Ok(mut c) = self.learnt.lock()
            && c.get(&workflow_id)
                .is_some_and(|(at, d)| !d.contains_key(step) && at.elapsed() >= RELEARN_AFTER)
        {
            c.remove(&workflow_id);
        }
    }

    /// Expected seconds per step name of `workflow_id`: the median of each step's latest
    /// [`HISTORY_WINDOW`] successful executions within the workflow's latest [`HISTORY_RUNS`] runs.
    pub fn expected_durations(
        &self,
        conn: &mut PgConnection,
        workflow_id: Uuid,
    ) -> Result<Durations> {
        if let Ok(c) = self.learnt.lock()
            && let Some((at, d)) = c.get(&workflow_id)
            && at.elapsed() < HISTORY_TTL
        {
            return Ok(d.clone());
        }
        let learnt = Arc::new(repo::history::learnt_durations(
            conn,
            workflow_id,
            HISTORY_WINDOW,
            HISTORY_RUNS,
        )?);
        if let Ok(mut c) = self.learnt.lock() {
            if c.len() > CACHE_WORKFLOWS {
                c.clear();
            }
            c.insert(workflow_id, (Instant::now(), learnt.clone()));
        }
        Ok(learnt)
    }

    /// The estimate of a run about to be created with `steps` (name, dependencies), all
    /// pending: nothing of the run needs reading, only the workflow's learnt durations.
    pub fn estimate_new(
        &self,
        conn: &mut PgConnection,
        workflow_id: Uuid,
        steps: &[(String, Vec<String>)],
    ) -> Result<Estimate> {
        let expected = self.expected_durations(conn, workflow_id)?;
        let tasks: Vec<TaskState> = steps
            .iter()
            .map(|(name, deps)| TaskState {
                expected: expected.get(name).copied(),
                progress: None,
                status: TaskStatus::Pending,
                name: name.clone(),
                depends_on: deps.clone(),
                started_at: None,
            })
            .collect();
        Ok(compute(&tasks, Utc::now()))
    }

    /// Estimates `run_id` from the database (inside the transaction that changed it, if any).
    pub fn estimate(&self, conn: &mut PgConnection, run_id: Uuid) -> Result<Estimate> {
        self.estimate_with(conn, run_id, None)
    }

    /// As [`Self::estimate`], where `succeeded` names a step that just succeeded: if its
    /// duration was never learnt, the learnt durations are re-read at once, not after the TTL.
    pub fn estimate_with(
        &self,
        conn: &mut PgConnection,
        run_id: Uuid,
        succeeded: Option<&str>,
    ) -> Result<Estimate> {
        // The run and its tasks in one round trip: this runs for every event recorded.
        let Some(run) = repo::run_state::with_tasks(conn, run_id)? else {
            return Ok(Estimate {
                percent: 0.0,
                eta_seconds: None,
            });
        };
        if run.status.is_terminal() {
            return Ok(FINISHED);
        }
        if let Some(step) = succeeded {
            self.forget_unless_known(run.workflow_id, step);
        }
        self.estimate_of(conn, run.workflow_id, &run.tasks)
    }

    /// As [`Self::estimate_with`], for a running run whose tasks (as of the event) the caller
    /// holds in memory: nothing of the run is read. The change the event describes is not yet
    /// written, so a step that just succeeded and that history does not know yet is learnt from
    /// its own duration (what a re-read after the write would have found).
    pub fn estimate_after(
        &self,
        conn: &mut PgConnection,
        workflow_id: Uuid,
        tasks: &[TaskRow],
        succeeded: Option<&str>,
    ) -> Result<Estimate> {
        if let Some(step) = succeeded {
            self.forget_unless_known(workflow_id, step);
        }
        let mut expected = self.expected_durations(conn, workflow_id)?;
        let seen = succeeded
            .filter(|step| !expected.contains_key(*step))
            .and_then(|step| tasks.iter().find(|t| t.name == step))
            .and_then(|t| Some((t.finished_at? - t.started_at?).num_milliseconds()))
            .map(|ms| ms.max(0) as f64 / 1000.0);
        if let (Some(step), Some(secs)) = (succeeded, seen) {
            expected = self.learn_one(workflow_id, step, secs, expected);
        }
        Ok(estimate_rows(tasks, &expected, Utc::now()))
    }

    /// `expected` with `step` taking `secs`, also kept in the cache (under its original time).
    fn learn_one(
        &self,
        workflow_id: Uuid,
        step: &str,
        secs: f64,
        expected: Durations,
    ) -> Durations {
        let mut learnt = (*expected).clone();
        learnt.insert(step.to_string(), secs);
        let learnt = Arc::new(learnt);
        if let Ok(mut c) = self.learnt.lock()
            && let Some((_, d)) = c.get_mut(&workflow_id)
        {
            *d = learnt.clone();
        }
        learnt
    }

    /// The estimate of a running run of `workflow_id` whose tasks the caller has just read.
    pub fn estimate_of(
        &self,
        conn: &mut PgConnection,
        workflow_id: Uuid,
        tasks: &[TaskRow],
    ) -> Result<Estimate> {
        let expected = self.expected_durations(conn, workflow_id)?;
        Ok(estimate_rows(tasks, &expected, Utc::now()))
    }

    /// Estimates of many runs as of one instant, for list pages: the runs and all their tasks
    /// are read in one statement each, and learnt durations once per distinct workflow (and
    /// then only when none are cached). Runs that do not exist are left out.
    pub fn estimate_many(
        &self,
        conn: &mut PgConnection,
        run_ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Estimate>> {
        let runs = repo::runs_batch::find_many(conn, run_ids)?;
        let (ended, open): (Vec<_>, Vec<_>) =
            runs.into_iter().partition(|r| r.status.is_terminal());
        let mut out: HashMap<Uuid, Estimate> =
            ended.into_iter().map(|r| (r.id, FINISHED)).collect();
        let open_ids: Vec<Uuid> = open.iter().map(|r| r.id).collect();
        let mut tasks_by_run: HashMap<Uuid, Vec<TaskRow>> = HashMap::new();
        for t in repo::runs_batch::tasks_of_runs(conn, &open_ids)? {
            tasks_by_run.entry(t.run_id).or_default().push(t);
        }
        let mut learnt: HashMap<Uuid, Durations> = HashMap::new();
        let now = Utc::now();
        for run in open {
            let expected = match learnt.get(&run.workflow_id) {
                Some(d) => d.clone(),
                None => {
                    let d = self.expected_durations(conn, run.workflow_id)?;
                    learnt.insert(run.workflow_id, d.clone());
                    d
                }
            };
            let tasks = tasks_by_run.remove(&run.id).unwrap_or_default();
            out.insert(run.id, estimate_rows(&tasks, &expected, now));
        }
        Ok(out)
    }
}

/// The estimate at `now` of a run whose tasks are `tasks`, steps expected to take `expected`.
fn estimate_rows(
    tasks: &[TaskRow],
    expected: &HashMap<String, f64>,
    now: DateTime<Utc>,
) -> Estimate {
    let tasks: Vec<TaskState> = tasks.iter().map(|t| task_state(t, expected)).collect();
    compute(&tasks, now)
}

fn task_state(t: &TaskRow, expected: &HashMap<String, f64>) -> TaskState {
    TaskState {
        expected: expected.get(&t.name).copied(),
        progress: t.progress_percent.zip(t.progress_at),
        status: t.status,
        name: t.name.clone(),
        depends_on: t.depends_on.clone(),
        started_at: t.started_at,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    fn t(name: &str, status: TaskStatus, deps: &[&str], expected: Option<f64>) -> TaskState {
        TaskState {
            name: name.into(),
            status,
            depends_on: deps.iter().map(|s| s.to_string()).collect(),
            started_at: None,
            expected,
            progress: None,
        }
    }

    #[test]
    fn eta_is_the_critical_path_of_what_is_left() {
        let now = Utc::now();
        let mut a = t("a", TaskStatus::Running, &[], Some(10.0));
        a.started_at = Some(now - Duration::seconds(4));
        let tasks = vec![
            a,
            t("b", TaskStatus::Pending, &["a"], Some(5.0)),
            t("c", TaskStatus::Pending, &["a"], Some(20.0)),
            t("d", TaskStatus::Pending, &["b", "c"], Some(1.0)),
        ];
        let e = compute(&tasks, now);
        // 6 s left of a, then the longer branch c (20 s), then d (1 s).
        assert_eq!(e.eta_seconds, Some(27.0));
        assert_eq!(e.percent, 0.0);
    }

    #[test]
    fn unknown_history_gives_no_eta_and_progress_refines() {
        let now = Utc::now();
        let tasks = vec![
            t("a", TaskStatus::Succeeded, &[], None),
            t("b", TaskStatus::Pending, &["a"], None),
        ];
        assert_eq!(compute(&tasks, now).eta_seconds, None);
        assert_eq!(compute(&tasks, now).percent, 50.0);

        let mut b = t("b", TaskStatus::Running, &["a"], None);
        b.started_at = Some(now - Duration::seconds(10));
        b.progress = Some((50.0, now));
        let e = compute(&[t("a", TaskStatus::Succeeded, &[], None), b], now);
        // Half done after 10 s: about 10 s to go.
        assert_eq!(e.eta_seconds, Some(10.0));
        assert_eq!(e.percent, 75.0);
    }
}
