//! The definition of a workflow version as stored (JSONB) and as accepted from the API.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// What a client submits to create or edit a workflow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct WorkflowInput {
    pub name: String,
    pub description: Option<String>,
    pub steps: Vec<StepSpec>,
    /// `None` means the workflow has no schedule (an edit without one removes it).
    #[serde(default)]
    pub schedule: Option<ScheduleInput>,
    /// At most this many runs of the workflow execute at once; more wait queued, in order.
    #[serde(default)]
    pub max_concurrent_runs: Option<u32>,
    /// At most `runs` runs start per `per_seconds`; more wait queued, in order.
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
}

/// A per-workflow start rate: at most `runs` runs start in any `per_seconds` window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct RateLimit {
    pub runs: u32,
    pub per_seconds: u32,
}

/// A schedule as submitted: a cron expression (five fields, or six with leading seconds), an
/// IANA time zone (default UTC) and whether it fires (default yes).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ScheduleInput {
    pub cron: String,
    pub timezone: Option<String>,
    pub enabled: Option<bool>,
}

/// The immutable content of one workflow version.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkflowSpec {
    pub steps: Vec<StepSpec>,
}

#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct StepSpec {
    pub name: String,
    pub image: String,
    /// Shell script run with `sh -c`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub run: Option<String>,
    /// Argv list, exclusive with `run`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Names of secrets injected as environment variables; values never stored here.
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout_seconds: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_backoff_seconds: Option<u32>,
    #[serde(default)]
    pub cache: bool,
    /// How long a cached result stays reusable (default 7 days).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_ttl_seconds: Option<u32>,
    /// Directories kept between runs of this workflow (Dagger cache volumes, one per workflow
    /// and path), e.g. a package manager's download cache.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cache_paths: Vec<String>,
}

impl StepSpec {
    /// The argv to execute: the explicit command, or `sh -c <run>`.
    pub fn argv(&self) -> Vec<String> {
        match (&self.command, &self.run) {
            (Some(cmd), _) => cmd.clone(),
            (None, Some(script)) => vec!["sh".into(), "-c".into(), script.clone()],
            (None, None) => Vec::new(),
        }
    }
}
