//! The run queue: job payloads, the apalis-redis storage both sides use, and the outbox relay.

pub mod relay;

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// One job = one run to drive to completion. Carries the trace context so a worker's spans join
/// the trace of the request that triggered the run.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RunJob {
    pub run_id: Uuid,
    #[serde(default)]
    pub trace: BTreeMap<String, String>,
    /// The workflow version the run is pinned to, when the job was made with the run: a worker
    /// then starts a queued run in the statement that claims it (it knows the version's steps
    /// and estimate beforehand). Absent from jobs made later (re-enqueued runs), and from jobs
    /// written before it existed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<RunVersion>,
}

/// A run's workflow and version, as its job carries them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RunVersion {
    pub workflow_id: Uuid,
    pub version: i32,
}

/// Writes the outbox row that will put `run_id` on the queue; call in the transaction that
/// made the run ready to execute, so the two commit together.
pub fn enqueue(conn: &mut diesel::PgConnection, run_id: Uuid) -> crate::error::Result<()> {
    crate::repo::outbox::insert(conn, run_id, &job_payload(run_id, None)?)
}

/// The outbox payload that puts `run_id` (pinned to `version`, when the caller knows it) on
/// the queue.
pub fn job_payload(
    run_id: Uuid,
    version: Option<RunVersion>,
) -> crate::error::Result<serde_json::Value> {
    let job = RunJob {
        run_id,
        // The caller's span (carried into the blocking call by `Db::run`): the worker's run
        // span becomes its child.
        trace: crate::telemetry::inject(),
        version,
    };
    serde_json::to_value(job).map_err(crate::error::Error::internal)
}

pub type RunStorage = apalis_redis::RedisStorage<RunJob>;

/// The one place producer and consumer get their queue settings from, so they cannot drift.
pub fn storage_config(queue: &str) -> apalis_redis::Config {
    apalis_redis::Config::default()
        .queue(queue)
        .batch_size(1)
        .heartbeat_interval(Duration::from_secs(5))
        .missed_heartbeats(6)
}

/// Pub/sub channel the relay pings after pushing, so idle workers fetch at once instead of
/// waiting for their next poll.
pub fn wake_channel(queue: &str) -> String {
    format!("{queue}:wake")
}

/// Redis set of the runs whose job is on the queue and not yet picked up by a worker. The relay
/// adds a run before pushing its job, a worker removes it on pick-up; the reconciler re-enqueues
/// unattended runs missing from it (a job lost with Redis, or a Redis that came back empty).
pub fn pending_key(queue: &str) -> String {
    format!("{queue}:pending-runs")
}

/// A worker picked up `run_id`'s job: it is no longer waiting on the queue. Bounded (1 s) and
/// best effort: a stale entry only delays the reconciler's re-enqueue of a lost run.
pub async fn picked_up(conn: &redis::aio::ConnectionManager, queue: &str, run_id: Uuid) {
    let mut conn = conn.clone();
    let mut cmd = redis::cmd("SREM");
    cmd.arg(pending_key(queue)).arg(run_id.to_string());
    let srem = cmd.query_async::<()>(&mut conn);
    match tokio::time::timeout(Duration::from_secs(1), srem).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::debug!(%run_id, error = %e, "pending-run mark not cleared"),
        Err(_) => tracing::debug!(%run_id, "pending-run mark not cleared in time"),
    }
}

pub fn storage(conn: redis::aio::ConnectionManager, queue: &str) -> RunStorage {
    apalis_redis::RedisStorage::new(conn).with_config(storage_config(queue))
}
