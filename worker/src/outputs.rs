//! Step outputs and the step cache, from the worker's side: the cache key a step is looked up
//! under, its dependencies' outputs restored from the artifact store (whichever worker made
//! them), and its `/out` stored when it succeeds. Decisions and writes live in `tms_core`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use std::time::Duration;

use tms_core::artifacts::{ArtifactError, Artifacts, Saved};
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
    pub fn prepare(
        run_dir: &Path,
        workflow_id: Uuid,
        inputs: serde_json::Value,
        no_cache: bool,
    ) -> std::io::Result<Self> {
        let inputs_file = run_dir.join("_inputs.json");
        std::fs::write(&inputs_file, cache::key::canonical_json(&inputs))?;
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

/// Why outputs could not be stored or restored.
#[derive(Debug)]
pub enum OutputError {
    /// The step's own doing (too large, a symlink in `/out`, a corrupt blob): the attempt fails.
    Failed(String),
    /// Postgres stayed unreachable for [`UNAVAILABLE_PATIENCE`]: not the step's fault, so the
    /// run is interrupted and resumed later instead of the step being failed.
    Unavailable(String),
}

/// How long storing or restoring outputs waits out an unreachable database.
const UNAVAILABLE_PATIENCE: Duration = Duration::from_secs(30);

fn unavailable(e: &ArtifactError) -> bool {
    matches!(e, ArtifactError::Db(tms_core::Error::Unavailable(_)))
}

/// Retries `op` while the database is unreachable, for up to [`UNAVAILABLE_PATIENCE`]. `op`'s
/// error says which of its items failed; `what` names that item's operation in the message.
async fn patiently<T, F, Fut>(what: impl Fn(usize) -> String, mut op: F) -> Result<T, OutputError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, (usize, ArtifactError)>>,
{
    let deadline = tokio::time::Instant::now() + UNAVAILABLE_PATIENCE;
    let mut delay = Duration::from_millis(200);
    loop {
        match op().await {
            Ok(v) => return Ok(v),
            Err((i, e)) if unavailable(&e) => {
                let what = what(i);
                if tokio::time::Instant::now() >= deadline {
                    return Err(OutputError::Unavailable(format!("{what}: {}", report(&e))));
                }
                tracing::warn!(error = %report(&e), "{what}: database unavailable; retrying");
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(2));
            }
            Err((i, e)) => {
                return Err(OutputError::Failed(format!("{}: {}", what(i), report(&e))));
            }
        }
    }
}

/// Restores each dependency's outputs under `<step_dir>/deps/<dep>`.
pub async fn restore(
    artifacts: &Artifacts,
    step_dir: &Path,
    deps: &[(String, String)],
) -> Result<Vec<(String, PathBuf)>, OutputError> {
    let items: Vec<(String, PathBuf)> = deps
        .iter()
        .map(|(dep, manifest)| (manifest.clone(), step_dir.join("deps").join(dep)))
        .collect();
    let what = |i: usize| {
        let dep = deps.get(i).map_or("?", |d| d.0.as_str());
        format!("restoring the outputs of step `{dep}`")
    };
    patiently(what, || artifacts.restore_all(&items)).await?;
    Ok(deps
        .iter()
        .zip(items)
        .map(|((dep, _), (_, dir))| (dep.clone(), dir))
        .collect())
}

/// Stores a successful attempt's `/out`.
pub async fn save(
    artifacts: &Artifacts,
    exec: &Execution,
    step_dir: &Path,
) -> Result<Saved, OutputError> {
    let out = step_dir.join("out");
    // An empty `/out` adds nothing to the run's total, so that total need not be read (a round
    // trip per step saved for steps that output nothing).
    let empty = std::fs::read_dir(&out).is_ok_and(|mut d| d.next().is_none());
    let what = |_| "storing the step's outputs".to_string();
    patiently(what, || async {
        let stored = match empty {
            true => 0,
            false => exec.stored_bytes().await.map_err(|e| (0, e.into()))?,
        };
        artifacts.save(&out, stored).await.map_err(|e| (0, e))
    })
    .await
}

fn report(e: &(dyn std::error::Error + 'static)) -> String {
    tms_core::error::report(e)
}
