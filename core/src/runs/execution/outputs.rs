//! The execution's writes about step outputs and the step cache: a lookup that either marks
//! the task `cached` (with the entry's outputs) or records the key it missed under, and the
//! entry a cacheable success leaves behind.

use diesel::PgConnection;
use uuid::Uuid;

use super::Execution;
use crate::cache::CacheKey;
use crate::error::Result;
use crate::repo;
use crate::repo::runs::TaskChange;
use crate::runs::TaskStatus;
use crate::runs::events::{change_task, task_changed};

/// How a successful result of a cacheable step is kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheStore {
    pub key: CacheKey,
    pub workflow_id: Uuid,
    pub ttl_seconds: u32,
}

/// Stores the cache entry of a successful cacheable step (inside the finishing transaction).
pub(super) fn store_entry(
    conn: &mut PgConnection,
    run_id: Uuid,
    step: &str,
    c: &CacheStore,
    manifest: &str,
) -> Result<()> {
    let parts = c.key.parts_json();
    repo::artifacts::store(
        conn,
        &repo::artifacts::NewCacheEntry {
            key: &c.key.key,
            workflow_id: c.workflow_id,
            step,
            manifest,
            parts: &parts,
            source_run_id: run_id,
            ttl_seconds: i64::from(c.ttl_seconds),
        },
    )
}

impl Execution {
    /// Looks `step` up under `key`. A hit marks the task `cached` with the entry's outputs
    /// (one event) and returns their manifest; a miss records the key on the task for
    /// `explainCache`.
    pub async fn cache_lookup(&self, step: &str, key: &CacheKey) -> Result<Option<String>> {
        let (run_id, name, est) = (self.run_id, step.to_string(), self.est.clone());
        let (k, parts) = (key.key.clone(), key.parts_json());
        let hit = self
            .write_task(step, move |conn| {
                let mut change = TaskChange {
                    cache_key: Some(Some(k.clone())),
                    cache_parts: Some(Some(parts.clone())),
                    ..Default::default()
                };
                let Some(entry) = repo::artifacts::take_hit(conn, &k)? else {
                    repo::runs::update_task(conn, run_id, &name, &change)?;
                    return Ok((None, change, vec![]));
                };
                let now = chrono::Utc::now();
                change.status = Some(TaskStatus::Cached);
                change.started_at = Some(Some(now));
                change.finished_at = Some(Some(now));
                change.error = Some(None);
                change.exit_code = Some(None);
                change.output_manifest = Some(Some(entry.manifest.clone()));
                change.output_bytes = Some(Some(0));
                let msg = format!(
                    "cache hit: outputs of run {} reused (key {})",
                    entry.source_run_id,
                    &k[..12]
                );
                let ev = task_changed(&name, TaskStatus::Cached, Some(msg));
                let ev = change_task(conn, &est, run_id, &name, &change, ev)?;
                Ok((Some(entry.manifest), change, vec![ev]))
            })
            .await?;
        crate::metrics::runs::cache_lookup(hit.is_some());
        Ok(hit)
    }

    /// Bytes of output the run has stored so far (for the per-run limit): the sum over the
    /// tasks this worker keeps in memory, read from the database only when it keeps none.
    pub async fn stored_bytes(&self) -> Result<u64> {
        {
            let view = self.tasks.lock().await;
            if !view.is_empty() {
                let n: i64 = view.iter().filter_map(|t| t.output_bytes).sum();
                return Ok(n.max(0) as u64);
            }
        }
        let run_id = self.run_id;
        let n = self
            .db
            .run(move |c| repo::artifacts::run_output_bytes(c, run_id))
            .await?;
        Ok(n.max(0) as u64)
    }
}
