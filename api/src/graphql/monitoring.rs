//! GraphQL types and root fields of the monitoring queries (role `monitor` and admins):
//! `systemHealth`, `queueStats`, `workers`, `runStats(windowSeconds)`.

use async_graphql::{Context, Enum, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::monitoring;

use crate::context::caller;
use crate::error::GqlResult;
use crate::state::Services;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::health::Status")]
pub enum HealthStatus {
    Ok,
    Degraded,
    Down,
}

/// One probed component: `latencyMs` is how long its probe took (bounded by its timeout),
/// `detail` a short reason when it is not ok.
#[derive(SimpleObject)]
pub struct ComponentHealth {
    pub name: String,
    pub status: HealthStatus,
    pub latency_ms: i64,
    pub detail: Option<String>,
}

/// Postgres, Redis and the workers as this api sees them now.
#[derive(SimpleObject)]
pub struct SystemHealth {
    pub status: HealthStatus,
    pub components: Vec<ComponentHealth>,
}

/// The run queue: `pending` ready to be picked up, `running` held by workers, `retrying`
/// scheduled for later, `dead` given up; and how long the oldest waiting run has waited.
#[derive(SimpleObject)]
pub struct QueueStats {
    pub pending: i64,
    pub running: i64,
    pub retrying: i64,
    pub dead: i64,
    pub oldest_pending_age_seconds: f64,
}

/// A worker as it last announced itself; `stale` when it has not for 30 s.
#[derive(SimpleObject)]
pub struct WorkerStatus {
    pub name: String,
    pub version: String,
    pub started_at: DateTime<Utc>,
    pub last_heartbeat_at: DateTime<Utc>,
    pub busy_slots: i32,
    pub total_slots: i32,
    pub stale: bool,
}

/// Runs created in the window: counts by outcome, duration percentiles of the finished ones,
/// failure rate ((failed + timed out) / finished) and the steps' cache-hit ratio.
#[derive(SimpleObject)]
pub struct RunStats {
    pub window_seconds: i32,
    pub total: i64,
    pub succeeded: i64,
    pub failed: i64,
    pub cancelled: i64,
    pub timed_out: i64,
    pub running: i64,
    pub p50_duration_seconds: Option<f64>,
    pub p95_duration_seconds: Option<f64>,
    pub failure_rate: f64,
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
