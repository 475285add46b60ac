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
    /// The worker's step directories (`TMS_WORK_DIR`): those of runs untouched for longer than
    /// the retention are removed (a failed run's directory is kept for inspection until then).
    pub work_root: std::path::PathBuf,
}

pub async fn run(db: Db, blobs: BlobStore, every: Every, stop: CancellationToken) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(every.interval) => {}
            _ = stop.cancelled() => return,
        }
        let dirs = remove_old_dirs(&every.work_root, every.retention).await;
        match sweep(&db, &blobs, every.retention, GRACE).await {
            Ok(r) => tracing::info!(
                run_dirs = dirs,
                run_events = r.expired.run_events,
                step_logs = r.expired.step_logs,
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

/// Removes run directories under `root` not modified for `retention`; returns how many.
async fn remove_old_dirs(root: &std::path::Path, retention: Duration) -> usize {
    let Ok(mut entries) = tokio::fs::read_dir(root).await else {
        return 0;
    };
    let mut removed = 0;
    while let Ok(Some(entry)) = entries.next_entry().await {
        // Only run directories (named by the run's id) are ours to remove.
        if uuid::Uuid::parse_str(&entry.file_name().to_string_lossy()).is_err() {
            continue;
        }
        let old = entry
            .metadata()
            .await
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > retention);
        if old && tokio::fs::remove_dir_all(entry.path()).await.is_ok() {
            removed += 1;
        }
    }
    removed
}
