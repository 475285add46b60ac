//! What the monitoring queries report (system health, queue, workers, run statistics) and the
//! service that serves them to `monitor` and `admin` callers, from cheap sources only: probes
//! bounded by a timeout, the queue's Redis keys, the heartbeat table and an indexed window of
//! runs.

pub mod heartbeat;
pub mod queue;

use std::time::Duration;

use chrono::{DateTime, Utc};
use redis::aio::ConnectionManager;

use crate::audit::require;
use crate::auth::{Permission, Principal};
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::health::{self, Status};
use crate::queue::relay::Relay;
use crate::repo;

pub use crate::repo::monitoring::WorkerRow;

/// The widest `runStats` window: 30 days.
pub const MAX_WINDOW_SECONDS: i64 = 30 * 24 * 3600;
/// A worker silent for this long is shown as stale (it beats every [`heartbeat::EVERY`]).
pub const STALE_AFTER: Duration = Duration::from_secs(30);

/// One component of `systemHealth`.
#[derive(Debug, Clone, PartialEq)]
pub struct ComponentHealth {
    pub name: String,
    pub status: Status,
    pub latency_ms: u64,
    pub detail: Option<String>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct SystemHealth {
    pub status: Status,
    pub components: Vec<ComponentHealth>,
}

/// The run queue by state, and how long the oldest waiting run has waited.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub dead: i64,
    pub oldest_pending_age_seconds: f64,
}

/// Runs created in a window, by outcome, with duration percentiles and ratios (0 when there is
/// nothing to divide).
#[derive(Debug, Clone, PartialEq)]
pub struct RunStats {
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timed_out: i64,
    pub running: i64,
    pub p50_duration_seconds: Option<f64>,
    pub p95_duration_seconds: Option<f64>,
    /// (failed + timed out) / finished.
    pub failure_rate: f64,
    /// Cached steps / steps that ran or were served from the cache.
    pub cache_hit_ratio: f64,
}

impl RunStats {
    fn from_row(r: repo::monitoring::RunStatsRow) -> Self {
        let finished = r.succeeded + r.failed + r.cancelled + r.timed_out;
        let ratio = |a: i64, b: i64| if b > 0 { a as f64 / b as f64 } else { 0.0 };
        RunStats {
            total: r.total,
            succeeded: r.succeeded,
            failed: r.failed,
            cancelled: r.cancelled,
            timed_out: r.timed_out,
            running: r.running,
            p50_duration_seconds: r.p50,
            p95_duration_seconds: r.p95,
            failure_rate: ratio(r.failed + r.timed_out, finished),
            cache_hit_ratio: ratio(r.cached_tasks, r.executed_tasks),
        }
    }
}

/// A worker's last announcement, and whether it is stale.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkerStatus {
    pub row: WorkerRow,
    pub stale: bool,
}

#[derive(Clone)]
pub struct MonitoringService {
    db: Db,
    bus: EventBus,
    redis: ConnectionManager,
    queue: String,
}

impl MonitoringService {
    pub fn new(db: Db, bus: EventBus, relay: &Relay) -> Self {
        Self {
            db,
            bus,
            redis: relay.connection(),
            queue: relay.queue().to_string(),
        }
    }

    /// Postgres, Redis and the workers (ok when at least one has beaten recently), each probed
    /// within `health::CHECK_TIMEOUT`.
    pub async fn system_health(&self, who: Option<&Principal>) -> Result<SystemHealth> {
        require(&self.db, who, Permission::ReadMonitoring).await?;
        Ok(self.probe().await)
    }

    /// As `system_health`, without the permission check (for the process's own use).
    pub async fn probe(&self) -> SystemHealth {
        let db = self.db.clone();
        let report = health::report(vec![
            health::check("postgres", self.db.ping()),
            health::check("redis", self.bus.ping()),
            health::check("workers", async move {
                let rows = db.run(repo::monitoring::workers).await?;
                let fresh = rows.iter().any(|w| !is_stale(w, Utc::now()));
                if fresh {
                    Ok(())
                } else {
                    Err(Error::Unavailable("no worker heartbeat".into()))
                }
            }),
        ])
        .await;
        SystemHealth {
            status: report.status,
            components: report
                .components
                .into_iter()
                .map(|(name, c)| ComponentHealth {
                    name: name.to_string(),
                    status: c.status,
                    latency_ms: c.latency_ms,
                    detail: c.detail.map(str::to_string),
                })
                .collect(),
        }
    }

    pub async fn queue_stats(&self, who: Option<&Principal>) -> Result<QueueStats> {
        require(&self.db, who, Permission::ReadMonitoring).await?;
        self.read_queue().await
    }

    /// The queue as the metrics see it (no permission check: `/metrics` is for the operator's
    /// scraper).
    pub async fn read_queue(&self) -> Result<QueueStats> {
        let mut conn = self.redis.clone();
        let read = queue::read(&mut conn, &self.queue, &self.db);
        tokio::time::timeout(health::CHECK_TIMEOUT, read)
            .await
            .map_err(|_| Error::Unavailable("queue statistics: no answer in time".into()))?
    }

    pub async fn workers(&self, who: Option<&Principal>) -> Result<Vec<WorkerStatus>> {
        require(&self.db, who, Permission::ReadMonitoring).await?;
        let rows = self.db.run(repo::monitoring::workers).await?;
        let now = Utc::now();
        Ok(rows
            .into_iter()
            .map(|row| WorkerStatus {
                stale: is_stale(&row, now),
                row,
            })
            .collect())
    }

    /// Runs created in the last `window_seconds` (1 s to 30 days).
    pub async fn run_stats(
        &self,
        who: Option<&Principal>,
        window_seconds: i64,
    ) -> Result<RunStats> {
        require(&self.db, who, Permission::ReadMonitoring).await?;
        if !(1..=MAX_WINDOW_SECONDS).contains(&window_seconds) {
            return Err(Error::field(
                "windowSeconds",
                format!("must be between 1 and {MAX_WINDOW_SECONDS} (30 days)"),
            ));
        }
        let row = self
            .db
            .run(move |c| repo::monitoring::run_stats(c, window_seconds))
            .await?;
        Ok(RunStats::from_row(row))
    }
}

fn is_stale(w: &WorkerRow, now: DateTime<Utc>) -> bool {
    (now - w.last_heartbeat_at).to_std().unwrap_or_default() > STALE_AFTER
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::repo::monitoring::RunStatsRow;

    #[test]
    fn ratios_are_zero_without_data_and_count_timeouts_as_failures() {
        let empty = RunStats::from_row(RunStatsRow {
            total: 0,
            succeeded: 0,
            failed: 0,
            cancelled: 0,
            timed_out: 0,
            running: 0,
            p50: None,
            p95: None,
            cached_tasks: 0,
            executed_tasks: 0,
        });
        assert_eq!((empty.failure_rate, empty.cache_hit_ratio), (0.0, 0.0));
        let some = RunStats::from_row(RunStatsRow {
            total: 5,
            succeeded: 2,
            failed: 1,
            cancelled: 0,
            timed_out: 1,
            running: 1,
            p50: Some(1.0),
            p95: Some(2.0),
            cached_tasks: 1,
            executed_tasks: 4,
        });
        assert_eq!(some.failure_rate, 0.5);
        assert_eq!(some.cache_hit_ratio, 0.25);
    }
}
