//! The periodic sweep of expired step outputs (see `tms_core::artifacts::sweep`). Every worker
//! may run it: the sweep lock makes concurrent sweeps wait for each other.

use std::time::Duration;

use tms_core::artifacts::BlobStore;
use tms_core::artifacts::sweep::sweep;
use tms_core::db::Db;
use tokio_util::sync::CancellationToken;

/// Unreferenced manifests and blobs younger than this are kept: a step may be storing them.
const GRACE: Duration = Duration::from_secs(24 * 3600);

pub struct Every {
    pub interval: Duration,
    pub retention: Duration,
}

pub async fn run(db: Db, blobs: BlobStore, every: Every, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every.interval) => {}
            _ = stop.cancelled() => return,
        }
        match sweep(&db, &blobs, every.retention, GRACE).await {
            Ok(r) => tracing::info!(
                task_outputs = r.expired.task_outputs,
                cache_entries = r.expired.cache_entries,
                manifests = r.expired.manifests,
                blobs_deleted = r.blobs_deleted,
                blobs_kept = r.blobs_kept,
                "artifact sweep done"
            ),
            Err(e) => tracing::warn!(error = %tms_core::error::report(&e), "artifact sweep failed"),
        }
    }
}
