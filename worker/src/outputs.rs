//! Step outputs and the step cache, from the worker's side: the cache key a step is looked up
//! under, its dependencies' outputs restored from the artifact store (whichever worker made
//! them), and its `/out` stored when it succeeds. Decisions and writes live in `tms_core`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use tms_core::artifacts::{Artifacts, Saved};
use tms_core::cache;
use tms_core::runs::execution::{CacheStore, Execution};
use tms_core::workflows::StepSpec;
use uuid::Uuid;

/// What every step of a run shares about its inputs and caching.
pub struct RunData {
    pub workflow_id: Uuid,
    pub inputs: serde_json::Value,
    pub no_cache: bool,
    /// The run's inputs as a file (`$TMS_INPUTS`), written once per delivery.
    pub inputs_file: PathBuf,
    /// `TMS_INPUT_<KEY>` variables.
    pub input_vars: BTreeMap<String, String>,
}

impl RunData {
    /// Writes the inputs file under `run_dir` and derives the variables.
    pub async fn prepare(
        run_dir: &Path,
        workflow_id: Uuid,
        inputs: serde_json::Value,
        no_cache: bool,
    ) -> std::io::Result<Self> {
        tokio::fs::create_dir_all(run_dir).await?;
        let inputs_file = run_dir.join("_inputs.json");
        tokio::fs::write(&inputs_file, cache::key::canonical_json(&inputs)).await?;
        // Names were checked when the run was triggered; a run stored before that check keeps
        // only the variables that are valid.
        let input_vars = tms_core::runs::inputs::env_vars(&inputs).unwrap_or_else(|_| {
            tracing::warn!(
                "run inputs hold keys that cannot be variables; only $TMS_INPUTS has them"
            );
            BTreeMap::new()
        });
        Ok(Self {
            workflow_id,
            inputs,
            no_cache,
            inputs_file,
            input_vars,
        })
    }

    /// The cache key of `step`, when it opts in and the run does not bypass the cache.
    pub fn cache_key(&self, step: &StepSpec, deps: &[(String, String)]) -> Option<CacheStore> {
        if !step.cache || self.no_cache {
            return None;
        }
        let deps: BTreeMap<String, String> = deps.iter().cloned().collect();
        Some(CacheStore {
            key: cache::compute(self.workflow_id, step, &self.inputs, &deps),
            workflow_id: self.workflow_id,
            ttl_seconds: step.cache_ttl_seconds.unwrap_or(cache::DEFAULT_TTL_SECONDS),
        })
    }
}

/// The manifests of `step`'s dependencies, or the name of one whose outputs are not stored.
pub fn dependency_outputs(
    step: &StepSpec,
    outputs: &HashMap<String, String>,
) -> Result<Vec<(String, String)>, String> {
    step.depends_on
        .iter()
        .map(|d| match outputs.get(d) {
            Some(m) => Ok((d.clone(), m.clone())),
            None => Err(format!(
                "the outputs of step `{d}` are no longer stored (expired with the run retention, or recorded before the artifact store existed); retry the whole run"
            )),
        })
        .collect()
}

/// Restores each dependency's outputs into `step_dir/deps/<name>`.
pub async fn restore(
    artifacts: &Artifacts,
    step_dir: &Path,
    deps: &[(String, String)],
) -> Result<Vec<(String, PathBuf)>, String> {
    let mut dirs = Vec::with_capacity(deps.len());
    for (dep, manifest) in deps {
        let dir = step_dir.join("deps").join(dep);
        artifacts
            .restore(manifest, &dir)
            .await
            .map_err(|e| format!("restoring the outputs of step `{dep}`: {}", report(&e)))?;
        dirs.push((dep.clone(), dir));
    }
    Ok(dirs)
}

/// Stores a successful attempt's `/out`.
pub async fn save(
    artifacts: &Artifacts,
    exec: &Execution,
    step_dir: &Path,
) -> Result<Saved, String> {
    let stored = exec.stored_bytes().await.map_err(|e| report(&e))?;
    artifacts
        .save(&step_dir.join("out"), stored)
        .await
        .map_err(|e| format!("storing the step's outputs: {}", report(&e)))
}

fn report(e: &(dyn std::error::Error + 'static)) -> String {
    tms_core::error::report(e)
}
