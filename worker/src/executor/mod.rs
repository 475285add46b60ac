//! Executors run one step and report its outcome; the runner decides what the outcome means.

pub mod dagger;
pub mod local;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use async_trait::async_trait;
use tms_core::runs::progress::ProgressLine;
use tms_core::workflows::StepSpec;
use tokio::sync::mpsc::UnboundedSender;
use uuid::Uuid;

/// Everything an executor needs to run one attempt of one step.
#[derive(Clone)]
pub struct StepRequest {
    pub run_id: Uuid,
    /// Scope of the step's cache volumes.
    pub workflow_id: Uuid,
    pub step: StepSpec,
    pub attempt: i32,
    /// This step's private directory (holds its `out/`, `in/` and working directory).
    pub step_dir: PathBuf,
    /// `(dependency name, host directory)` for each dependency: the dependency's outputs,
    /// restored from the artifact store (whichever worker produced them). Mounted or visible at
    /// `/in/<name>`; read-only by convention.
    pub inputs: Vec<(String, PathBuf)>,
    /// A host file holding the run's inputs as a JSON object: `$TMS_INPUTS` locally,
    /// `/in/_inputs.json` in a container (with `TMS_INPUTS` pointing at it).
    pub run_inputs: PathBuf,
    /// `TMS_INPUT_<KEY>` variables for the run inputs' top-level scalar keys.
    pub input_vars: BTreeMap<String, String>,
    /// Resolved secret values by name. Never logged; masked in captured output.
    pub secrets: BTreeMap<String, String>,
    /// Every secret value any step of the run uses: a step can receive another's secret
    /// through `/in`, so output is masked against all of them.
    pub masks: Vec<String>,
    /// Where every line of output goes (secrets masked) to be kept as the step's full log;
    /// `None`: only the tail is kept.
    pub log: Option<UnboundedSender<String>>,
}

/// Debug output names the secrets but never shows their values.
impl std::fmt::Debug for StepRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StepRequest")
            .field("run_id", &self.run_id)
            .field("workflow_id", &self.workflow_id)
            .field("step", &self.step.name)
            .field("attempt", &self.attempt)
            .field("step_dir", &self.step_dir)
            .field("inputs", &self.inputs)
            .field("run_inputs", &self.run_inputs)
            .field("input_vars", &self.input_vars.keys().collect::<Vec<_>>())
            .field("secrets", &self.secrets.keys().collect::<Vec<_>>())
            .field("masks", &self.masks.len())
            .finish()
    }
}

#[derive(Debug, Clone, Default)]
pub struct StepOutcome {
    /// Exit status; signals are reported as 128 + signal number.
    pub exit_code: Option<i32>,
    /// The last lines of combined stdout/stderr, secrets masked.
    pub log_tail: String,
}

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    /// The step could not be started or its result read (bad program, missing image).
    #[error("{0}")]
    Step(String),
    /// The executor itself is unavailable (engine down); retried without failing the step.
    #[error("executor unavailable: {0}")]
    Transient(String),
}

/// Why an executor cannot take steps now; `/readyz` logs the whole chain and shows none of it.
#[derive(Debug, thiserror::Error)]
pub enum ReadyError {
    #[error("no Dagger engine session")]
    NoSession(#[from] dagger::SessionError),
    #[error("the Dagger engine did not answer its version query")]
    Engine(#[source] dagger_sdk::errors::DaggerError),
    #[error("the Dagger SDK panicked on the engine's answer")]
    SdkPanicked,
}

#[async_trait]
pub trait Executor: Send + Sync {
    fn name(&self) -> &'static str;

    /// Readiness for `/readyz`.
    async fn ready(&self) -> Result<(), ReadyError>;

    /// Runs the step to completion. Dropping the future must stop the step (timeouts and
    /// cancellation rely on it). When the step exits 0, its `/out` must be in
    /// `req.step_dir/out` on the host by the time this returns: the worker stores that
    /// directory in the artifact store, from which every dependent (on any worker) reads it.
    async fn run(
        &self,
        req: StepRequest,
        progress: UnboundedSender<ProgressLine>,
    ) -> Result<StepOutcome, ExecError>;
}

pub type SharedExecutor = Arc<dyn Executor>;

/// Keeps the last `max_lines` lines (at most `max_bytes` in all) of a step's output.
pub struct Tail {
    lines: std::collections::VecDeque<String>,
    bytes: usize,
    max_lines: usize,
    max_bytes: usize,
    masks: Vec<String>,
    /// The full log's sink: every masked line, uncut.
    sink: Option<UnboundedSender<String>>,
}

impl Tail {
    pub fn new(max_lines: usize, max_bytes: usize, masks: &[String]) -> Self {
        Self {
            lines: Default::default(),
            bytes: 0,
            max_lines,
            max_bytes,
            masks: masks.to_vec(),
            sink: None,
        }
    }

    /// Also sends every (masked) line to `sink`, for the step's full log.
    pub fn with_sink(mut self, sink: Option<UnboundedSender<String>>) -> Self {
        self.sink = sink;
        self
    }

    pub fn push(&mut self, line: &str) {
        // Mask before cutting, so a secret straddling the cut cannot leak its first part.
        let masked = tms_core::secrets::mask(line, &self.masks);
        if let Some(sink) = &self.sink {
            let _ = sink.send(masked.clone());
        }
        let line: String = masked.chars().take(2_000).collect();
        self.bytes += line.len() + 1;
        self.lines.push_back(line);
        while self.lines.len() > self.max_lines || self.bytes > self.max_bytes {
            match self.lines.pop_front() {
                Some(l) => self.bytes -= l.len() + 1,
                None => break,
            }
        }
    }

    pub fn text(&self) -> String {
        let mut s = String::with_capacity(self.bytes);
        for l in &self.lines {
            s.push_str(l);
            s.push('\n');
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_end_and_masks_secrets() {
        let mut t = Tail::new(3, 1000, &["hunter2".to_string()]);
        for i in 0..5 {
            t.push(&format!("line {i}"));
        }
        t.push("the token is hunter2");
        assert_eq!(t.text(), "line 3\nline 4\nthe token is ***\n");
    }
}
