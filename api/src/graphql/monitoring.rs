//! GraphQL types and root fields of the monitoring queries (role `monitor` and admins):
//! `systemHealth`, `queueStats`, `workers`, `runStats(windowSeconds)`.

use async_graphql::{Context, Enum, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::monitoring;

use crate::context::caller;
use crate::error::GqlResult;
use crate::state::Services;

/// A health verdict, as `/readyz` gives it.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::health::Status")]
pub enum HealthStatus {
    /// Working.
    Ok,
    /// Working with reduced capacity (e.g. some workers stale).
    Degraded,
    /// Not working.
    Down,
}

/// One probed component: `latencyMs` is how long its probe took (bounded by its timeout),
/// `detail` a short reason when it is not ok.
#[derive(SimpleObject)]
pub struct ComponentHealth {
    /// `postgres`, `redis` or `workers`.
    pub name: String,
    /// Its verdict.
    pub status: HealthStatus,
    /// How long its probe took, in milliseconds.
    pub latency_ms: i64,
    /// Why it is not ok; null when it is.
    pub detail: Option<String>,
}

/// Postgres, Redis and the workers as this api sees them now.
#[derive(SimpleObject)]
pub struct SystemHealth {
    /// The worst of the components' verdicts.
    pub status: HealthStatus,
    /// Each probed component.
    pub components: Vec<ComponentHealth>,
}

/// The run queue: `pending` ready to be picked up, `running` held by workers, `retrying`
/// scheduled for later, `dead` given up; and how long the oldest waiting run has waited.
#[derive(SimpleObject)]
pub struct QueueStats {
    /// Jobs ready to be picked up.
    pub pending: i64,
    /// Jobs held by workers.
    pub running: i64,
    /// Jobs scheduled to be tried again later.
    pub retrying: i64,
    /// Jobs given up.
    pub dead: i64,
    /// Seconds the oldest pending job has waited (0 when none waits).
    pub oldest_pending_age_seconds: f64,
}

/// A worker as it last announced itself; `stale` when it has not for 30 s.
#[derive(SimpleObject)]
pub struct WorkerStatus {
    /// The worker's unique name (`TMS_WORKER_NAME`, default host-pid-random).
    pub name: String,
    /// Its TMS version.
    pub version: String,
    /// When the process started.
    pub started_at: DateTime<Utc>,
    /// Its latest heartbeat.
    pub last_heartbeat_at: DateTime<Utc>,
    /// Step slots in use.
    pub busy_slots: i32,
    /// Step slots it has (`TMS_WORKER_CONCURRENCY`).
    pub total_slots: i32,
    /// No heartbeat for 30 s: probably gone.
    pub stale: bool,
}

/// Runs created in the window: counts by outcome, duration percentiles of the finished ones,
/// failure rate ((failed + timed out) / finished) and the steps' cache-hit ratio.
#[derive(SimpleObject)]
pub struct RunStats {
    /// The window asked for, in seconds.
    pub window_seconds: i32,
    /// Runs created in the window.
    pub total: i64,
    /// Of them, succeeded.
    pub succeeded: i64,
    /// Of them, failed.
    pub failed: i64,
    /// Of them, cancelled.
    pub cancelled: i64,
    /// Of them, timed out.
    pub timed_out: i64,
    /// Of them, running now.
    pub running: i64,
    /// Median duration of the finished ones, in seconds; null when none finished.
    pub p50_duration_seconds: Option<f64>,
    /// 95th percentile duration of the finished ones, in seconds; null when none finished.
    pub p95_duration_seconds: Option<f64>,
    /// (failed + timed out) / finished, 0-1; 0 when none finished.
    pub failure_rate: f64,
    /// Cached steps / steps that ran or were served from the cache, 0-1; 0 when none.
    pub cache_hit_ratio: f64,
}

fn svc<'a>(ctx: &'a Context<'_>) -> &'a monitoring::MonitoringService {
    &ctx.data_unchecked::<Services>().monitoring
}

pub async fn system_health(ctx: &Context<'_>) -> Result<SystemHealth> {
    let h = svc(ctx).system_health(caller(ctx).gql()?).await.gql()?;
    Ok(SystemHealth {
        status: h.status.into(),
        components: h
            .components
            .into_iter()
            .map(|c| ComponentHealth {
                name: c.name,
                status: c.status.into(),
                latency_ms: c.latency_ms.min(i64::MAX as u64) as i64,
                detail: c.detail,
            })
            .collect(),
    })
}

pub async fn queue_stats(ctx: &Context<'_>) -> Result<QueueStats> {
    let q = svc(ctx).queue_stats(caller(ctx).gql()?).await.gql()?;
    Ok(QueueStats {
        pending: q.pending,
        running: q.running,
        retrying: q.retrying,
        dead: q.dead,
        oldest_pending_age_seconds: q.oldest_pending_age_seconds,
    })
}

pub async fn workers(ctx: &Context<'_>) -> Result<Vec<WorkerStatus>> {
    let ws = svc(ctx).workers(caller(ctx).gql()?).await.gql()?;
    Ok(ws
        .into_iter()
        .map(|w| WorkerStatus {
            name: w.row.name,
            version: w.row.version,
            started_at: w.row.started_at,
            last_heartbeat_at: w.row.last_heartbeat_at,
            busy_slots: w.row.busy_slots,
            total_slots: w.row.total_slots,
            stale: w.stale,
        })
        .collect())
}

pub async fn run_stats(ctx: &Context<'_>, window_seconds: i32) -> Result<RunStats> {
    let s = svc(ctx)
        .run_stats(caller(ctx).gql()?, i64::from(window_seconds))
        .await
        .gql()?;
    Ok(RunStats {
        window_seconds,
        total: s.total,
        succeeded: s.succeeded,
        failed: s.failed,
        cancelled: s.cancelled,
        timed_out: s.timed_out,
        running: s.running,
        p50_duration_seconds: s.p50_duration_seconds,
        p95_duration_seconds: s.p95_duration_seconds,
        failure_rate: s.failure_rate,
        cache_hit_ratio: s.cache_hit_ratio,
    })
}
