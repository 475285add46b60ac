//! Live run-event streams for subscribers: replay from Postgres, then the live feed from the
//! event hub, stitched so that no event is skipped or delivered twice.

use std::sync::Arc;
use std::time::Duration;

use futures::Stream;
use tokio::sync::broadcast::error::RecvError;
use uuid::Uuid;

use crate::auth::{Permission, Principal};
use crate::bus::EventHub;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::runs::eta::Estimator;
use crate::runs::{EventKind, RunEvent};

/// With no live event for this long, a subscriber checks Postgres for events whose publish was
/// lost (crash between commit and publish, Redis blip).
pub const IDLE_RECHECK: Duration = Duration::from_secs(2);
const PAGE: i64 = 500;

#[derive(Clone)]
pub struct ProgressService {
    db: Db,
    hub: EventHub,
    est: Arc<Estimator>,
}

impl ProgressService {
    pub fn new(db: Db, hub: EventHub, est: Arc<Estimator>) -> Self {
        Self { db, hub, est }
    }

    pub fn hub(&self) -> &EventHub {
        &self.hub
    }

    async fn events_after(&self, run_id: Uuid, after: i64) -> Result<Vec<RunEvent>> {
        let rows = self
            .db
            .run(move |c| repo::events::after(c, run_id, after, PAGE))
            .await?;
        Ok(rows.into_iter().map(RunEvent::from).collect())
    }

    /// Events of one run after `after_seq` (or a snapshot first when `None`), then live ones,
    /// ending after the event that finishes the run.
    pub async fn run_progress(
        &self,
        who: Option<&Principal>,
        run_id: Uuid,
        after_seq: Option<i64>,
    ) -> Result<impl Stream<Item = Result<RunEvent>> + Send + use<>> {
        crate::audit::require(&self.db, who, Permission::ReadRuns).await?;
        if after_seq.is_some_and(|s| s < 0) {
            return Err(Error::field("afterSeq", "must not be negative"));
        }
        // Subscribe before reading Postgres: anything committed after the read is then
        // guaranteed to be in the live feed, so the seam has no gap.
        let mut live = self.hub.subscribe();
        let run = self
            .db
            .run(move |c| repo::runs::find(c, run_id))
            .await?
            .ok_or(Error::NotFound("run"))?;
        let this = self.clone();
        let snapshot = match after_seq {
            Some(_) => None,
            None => {
                let e = self.est.clone();
                let est = self.db.run(move |c| e.estimate(c, run_id)).await?;
                // The run's state now, when the subscriber gives no `afterSeq`.
                Some(RunEvent {
                    run_id,
                    seq: run.last_seq,
                    kind: EventKind::Snapshot,
                    status: Some(run.status.into()),
                    step: None,
                    percent: est.percent,
                    eta_seconds: est.eta_seconds,
                    message: None,
                    at: chrono::Utc::now(),
                    workflow_id: run.workflow_id,
                    step_percent: None,
                })
            }
        };
        let mut last = after_seq.unwrap_or(run.last_seq);
        Ok(async_stream::try_stream! {
            if let Some(s) = snapshot {
                let done = run.status.is_terminal();
                yield s;
                if done {
                    return;
                }
            }
            // Replay what the subscriber missed.
            loop {
                let page = this.events_after(run_id, last).await?;
                let n = page.len();
                let mut ended = false;
                for ev in page {
                    last = ev.seq;
                    ended = ev.ends_run();
                    yield ev;
                }
                if (n as i64) < PAGE {
                    if ended {
                        return;
                    }
                    break;
                }
            }
            // Live, with gap repair from Postgres. The re-check deadline counts from this run's
            // last event: other runs' traffic must not postpone it.
            let mut recheck_at = tokio::time::Instant::now() + IDLE_RECHECK;
            loop {
                let next = tokio::select! {
                    r = live.recv() => Some(r),
                    _ = tokio::time::sleep_until(recheck_at) => None,
                };
                let candidate: Option<Arc<RunEvent>> = match next {
                    Some(Ok(ev)) if ev.run_id == run_id => Some(ev),
                    Some(Ok(_)) => continue,
                    Some(Err(RecvError::Lagged(_))) => Err(Error::SlowConsumer)?,
                    Some(Err(RecvError::Closed)) => Err(Error::Unavailable("event hub stopped".into()))?,
                    None => None,
                };
                recheck_at = tokio::time::Instant::now() + IDLE_RECHECK;
                let target = match &candidate {
                    Some(ev) if ev.seq <= last => continue,
                    Some(ev) if ev.seq == last + 1 => None,
                    // A gap (publishes can arrive out of order) or an idle period: read Postgres.
                    _ => Some(()),
                };
                if target.is_some() {
                    let mut ended = false;
                    for ev in this.events_after(run_id, last).await? {
                        last = ev.seq;
                        ended = ev.ends_run();
                        yield ev;
                    }
                    if ended {
                        return;
                    }
                    continue;
                }
                if let Some(ev) = candidate {
                    last = ev.seq;
                    let ended = ev.ends_run();
                    yield (*ev).clone();
                    if ended {
                        return;
                    }
                }
            }
        })
    }

    /// Run status changes (run started, finished, …) of every run, or of one workflow's runs.
    pub async fn run_events(
        &self,
        who: Option<&Principal>,
        workflow_id: Option<Uuid>,
    ) -> Result<impl Stream<Item = Result<RunEvent>> + Send + use<>> {
        crate::audit::require(&self.db, who, Permission::ReadRuns).await?;
        let mut live = self.hub.subscribe();
        Ok(async_stream::try_stream! {
            loop {
                match live.recv().await {
                    Ok(ev) => {
                        if ev.kind == EventKind::Run && workflow_id.is_none_or(|w| w == ev.workflow_id) {
                            yield (*ev).clone();
                        }
                    }
                    Err(RecvError::Lagged(_)) => Err(Error::SlowConsumer)?,
                    Err(RecvError::Closed) => Err(Error::Unavailable("event hub stopped".into()))?,
                }
            }
        })
    }
}
