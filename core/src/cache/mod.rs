//! The step cache: keys ([`key`]) and the answer to "why did this step hit or miss?".
//! Lookups and stores happen inside the run's execution transactions
//! (`runs::execution::outputs`); entries live in Postgres (`repo::artifacts`).

pub mod key;

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::audit;
use crate::auth::{Permission, Principal};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::runs::TaskStatus;

pub use key::{CacheKey, compute};

/// Default lifetime of a cache entry: 7 days.
pub const DEFAULT_TTL_SECONDS: u32 = 7 * 24 * 3600;

/// Why a step of a run hit or missed the cache.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheExplanation {
    pub step: String,
    /// The key the step was looked up under; `None` when it was never looked up.
    pub key: Option<String>,
    pub hit: bool,
    pub reason: String,
    /// Parts that differ from the last cached success of the step in another run: `image`,
    /// `command`, `env`, `workdir`, `inputs`, `output:<dependency>`.
    pub changed: Vec<String>,
}

#[derive(Clone)]
pub struct CacheService {
    db: Db,
}

fn parts_of(v: Option<&serde_json::Value>) -> BTreeMap<String, String> {
    v.and_then(|v| serde_json::from_value(v.clone()).ok())
        .unwrap_or_default()
}

impl CacheService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn explain(
        &self,
        who: Option<&Principal>,
        run_id: Uuid,
        step: &str,
    ) -> Result<CacheExplanation> {
        audit::require(&self.db, who, Permission::ReadRuns).await?;
        let step = step.to_string();
        self.db
            .run(move |c| {
                let run = repo::runs::find(c, run_id)?.ok_or(Error::NotFound("run"))?;
                let spec = repo::workflows::version(c, run.workflow_id, run.version)?
                    .ok_or(Error::NotFound("workflow version"))?
                    .spec()?;
                let Some(def) = spec.steps.iter().find(|s| s.name == step) else {
                    return Err(Error::field("step", format!("the run has no step `{step}`")));
                };
                let task = repo::runs::tasks_of(c, run_id)?
                    .into_iter()
                    .find(|t| t.name == step)
                    .ok_or(Error::NotFound("task"))?;
                let mut out = CacheExplanation {
                    step: step.clone(),
                    key: task.cache_key.clone(),
                    hit: task.status == TaskStatus::Cached,
                    reason: String::new(),
                    changed: Vec::new(),
                };
                out.reason = if !def.cache {
                    "miss: the step does not opt in to caching (cache: false)".into()
                } else if run.no_cache {
                    "miss: the run was triggered with noCache: true".into()
                } else if task.cache_key.is_none() {
                    "not looked up yet: the step has not been reached".into()
                } else if out.hit {
                    let key = task.cache_key.as_deref().unwrap_or_default();
                    match repo::artifacts::entry(c, key)? {
                        Some(e) => format!(
                            "hit: reused the outputs stored by run {} at {}",
                            e.source_run_id,
                            e.created_at.to_rfc3339()
                        ),
                        None => "hit: reused an entry that has since expired".into(),
                    }
                } else {
                    let now = parts_of(task.cache_parts.as_ref());
                    match repo::artifacts::previous_entry(c, run.workflow_id, &step, run_id)? {
                        None => "miss: no earlier cached success of this step".into(),
                        Some(prev) => {
                            out.changed = key::changed(&now, &parts_of(Some(&prev.parts)));
                            if out.changed.is_empty() {
                                "miss: the last cached success had the same key but had expired or was stored after this step was looked up".into()
                            } else {
                                format!(
                                    "miss: {} changed since the last cached success (run {})",
                                    out.changed.join(", "),
                                    prev.source_run_id
                                )
                            }
                        }
                    }
                };
                Ok(out)
            })
            .await
    }
}
