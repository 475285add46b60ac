//! The types an import passes around: legacy tasks with where they came from, the problems
//! found (each with its position and reason), and the workflows planned from the tasks.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::workflows::WorkflowInput;

/// The source formats `importTasks` accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ImportFormat {
    Json,
    Crontab,
}

/// One malformed record, dependency problem or refused task.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// JSON path (`tasks[3].schedule`), `line:column` for JSON syntax errors, or
    /// `<file>:<line>` for crontab lines.
    pub position: String,
    pub reason: String,
    /// The legacy id of the task at fault, when it has one.
    pub legacy_id: Option<String>,
}

/// A task as the legacy system described it, validated field by field.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LegacyTask {
    /// Unique within the source. Crontab lines get one derived from their content.
    pub id: String,
    pub name: Option<String>,
    pub image: Option<String>,
    /// A shell script (`sh -c`).
    pub command: String,
    /// A cron expression TMS accepts (five fields, day-of-week by name), already translated
    /// from the source's dialect.
    pub schedule: Option<String>,
    pub env: BTreeMap<String, String>,
    pub tags: Vec<String>,
    pub timeout_seconds: Option<u32>,
    pub retries: Option<u32>,
    pub depends_on: Vec<String>,
    /// Where the task is in the source, for problems found later (`tasks[3]`, `crontab:12`).
    pub position: String,
}

/// What parsing a source produced: the valid tasks, and a problem for each invalid record.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Parsed {
    pub tasks: Vec<LegacyTask>,
    pub problems: Vec<Problem>,
}

/// One workflow to create or update: a connected group of tasks (by `depends_on`), or a lone
/// task.
#[derive(Debug, Clone, PartialEq)]
pub struct PlannedWorkflow {
    /// The workflow's legacy id: the legacy id of the group's root task (the smallest, when
    /// there are several).
    pub legacy_id: String,
    /// Name (unique and stable across imports of the same tasks), steps, and the schedule
    /// of the group's scheduled root, always with `enabled: Some(false)`.
    pub input: WorkflowInput,
    /// Step name → legacy id of the task it came from.
    pub step_legacy_ids: BTreeMap<String, String>,
    pub tags: BTreeSet<String>,
    /// Legacy id → SHA-256 of the task's canonical form (what verify compares).
    pub task_checksums: BTreeMap<String, String>,
    /// SHA-256 over the whole group's canonical form (what decides "changed").
    pub checksum: String,
}

/// What planning produced: workflows, problems (cycles, dangling dependencies, groups with
/// two scheduled roots), and the legacy ids of tasks left out because of them.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Planned {
    pub workflows: Vec<PlannedWorkflow>,
    pub problems: Vec<Problem>,
    pub skipped: Vec<String>,
}
