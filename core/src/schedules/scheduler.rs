//! The scheduler loop. Every api and worker process runs one; only the holder of the leader
//! lease fires. The lease is a row with an expiry and a fencing epoch: the leader renews it on
//! every poll, another process takes it once it expires (a killed leader is replaced within
//! the lease time), and each fire commits only if the epoch it was started under is still
//! current, so a leader that stalled past its lease cannot fire after its successor.

use std::time::Duration;

use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::Result;
use crate::repo;
use crate::runs::scheduled::FireOutcome;
use crate::runs::service::RunService;
use crate::schedules::CronSchedule;

#[derive(Debug, Clone)]
pub struct SchedulerConfig {
    /// How often the loop looks for due ticks (and renews the lease).
    pub poll: Duration,
    /// How long the lease outlives its last renewal: the longest a dead leader goes unreplaced.
    pub lease: Duration,
}

impl Default for SchedulerConfig {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(250),
            lease: Duration::from_secs(3),
        }
    }
}

pub struct Scheduler {
    db: Db,
    runs: RunService,
    cfg: SchedulerConfig,
    /// This process's name on the lease: kind, process id (so operators can tell which
    /// process leads) and a random part (unique per process start).
    holder: String,
}

impl Scheduler {
    pub fn new(db: Db, runs: RunService, cfg: SchedulerConfig, process: &str) -> Self {
        let holder = format!(
            "{process}:{}:{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        );
        Self {
            db,
            runs,
            cfg,
            holder,
        }
    }

    /// Polls until `stop` fires, then gives the lease up so another process takes over at once.
    pub async fn run(self, stop: CancellationToken) {
        tracing::info!(holder = %self.holder, poll_ms = self.cfg.poll.as_millis() as u64, "scheduler started");
        let mut epoch: Option<i64> = None;
        loop {
            tokio::select! {
                _ = stop.cancelled() => break,
                _ = tokio::time::sleep(self.cfg.poll) => {}
            }
            let held = match self.acquire().await {
                Ok(held) => held,
                Err(e) => {
                    tracing::warn!(error = %e, "scheduler lease check failed");
                    None
                }
            };
            if held != epoch {
                match held {
                    Some(e) => {
                        tracing::info!(holder = %self.holder, epoch = e, "became scheduler leader")
                    }
                    None => tracing::info!(holder = %self.holder, "no longer scheduler leader"),
                }
                epoch = held;
            }
            if let Some(e) = epoch
                && let Err(err) = self.fire_due(e).await
            {
                tracing::warn!(error = %err, "scheduler round failed; will retry");
            }
        }
        if epoch.is_some() {
            let holder = self.holder.clone();
            if let Err(e) = self
                .db
                .run(move |c| repo::schedules::release_lease(c, &holder))
                .await
            {
                tracing::warn!(error = %e, "could not release the scheduler lease");
            }
        }
        tracing::info!(holder = %self.holder, "scheduler stopped");
    }

    async fn acquire(&self) -> Result<Option<i64>> {
        let holder = self.holder.clone();
        let ttl = self.cfg.lease.as_secs_f64();
        self.db
            .run(move |c| repo::schedules::acquire_lease(c, &holder, ttl))
            .await
    }

    /// Fires every schedule with a due tick, as the leader at `epoch`.
    async fn fire_due(&self, epoch: i64) -> Result<()> {
        let (rows, now) = self
            .db
            .run(|c| Ok((repo::schedules::enabled(c)?, repo::schedules::db_now(c)?)))
            .await?;
        for wf in rows {
            let Some(schedule) = wf.schedule() else {
                continue;
            };
            let due = match CronSchedule::parse(&schedule.cron, &schedule.timezone) {
                Ok(cron) => cron
                    .next_after(schedule.fired_through)
                    .is_some_and(|t| t <= now),
                Err(e) => {
                    tracing::warn!(workflow_id = %wf.id, error = %e, "stored schedule unreadable");
                    false
                }
            };
            if !due {
                continue;
            }
            match self.runs.fire_scheduled(wf.id, &self.holder, epoch).await? {
                FireOutcome::Fired { run, tick, missed } => {
                    let late_ms = (chrono::Utc::now() - tick).num_milliseconds();
                    crate::metrics::schedules::fired(missed);
                    tracing::info!(
                        workflow_id = %wf.id, run_id = %run.id, scheduled_for = %tick.to_rfc3339(),
                        missed, late_ms, "schedule fired"
                    );
                }
                FireOutcome::AlreadyFired => {
                    tracing::info!(workflow_id = %wf.id, "tick already fired by another run")
                }
                FireOutcome::NotDue => {}
                FireOutcome::Fenced => {
                    tracing::warn!(holder = %self.holder, epoch, "lease lost while firing; stopping this round");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}
