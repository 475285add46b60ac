//! A worker's announcement in `worker_heartbeats`: registered at start, refreshed every few
//! seconds with its busy and total step slots, removed on a clean stop.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::repo;
use crate::repo::monitoring::WorkerRow;

/// How often a worker beats.
pub const EVERY: Duration = Duration::from_secs(5);
/// Rows silent for a day are forgotten.
const FORGET_AFTER_SECONDS: i64 = 24 * 3600;

/// Beats every [`EVERY`] until `stop`, reading the slots in use with `busy`; then removes the
/// row. Failures are logged: a missed beat only makes the worker look stale.
pub async fn run(
    db: Db,
    name: String,
    total_slots: usize,
    busy: Arc<dyn Fn() -> usize + Send + Sync>,
    stop: CancellationToken,
) {
    let started_at: DateTime<Utc> = Utc::now();
    loop {
        let row = WorkerRow {
            name: name.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            started_at,
            last_heartbeat_at: Utc::now(),
            busy_slots: busy() as i32,
            total_slots: total_slots as i32,
        };
        let res = db
            .run(move |c| {
                repo::monitoring::beat(c, &row)?;
                repo::monitoring::prune(c, FORGET_AFTER_SECONDS)
            })
            .await;
        if let Err(e) = res {
            tracing::warn!(error = %e, "worker heartbeat not recorded");
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(EVERY) => {}
        }
    }
    let n = name.clone();
    if let Err(e) = db.run(move |c| repo::monitoring::remove(c, &n)).await {
        tracing::warn!(error = %e, "worker heartbeat row not removed");
    }
}
