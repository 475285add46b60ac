//! Workflow files: YAML or JSON documents equivalent to GraphQL's `WorkflowInput` (env as a
//! map), parsed strictly (unknown keys are errors) with every error pointing at `file:line`.

mod locate;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_json::{Value, json};

pub use locate::line_of;

/// A workflow file (the published schema is docs/workflow.schema.json).
#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct WorkflowFile {
    /// The schema, for editors; ignored.
    #[serde(rename = "$schema", default)]
    _schema: Option<serde::de::IgnoredAny>,
    /// A comment (JSON has no other kind); ignored.
    #[serde(rename = "$comment", default)]
    _comment: Option<serde::de::IgnoredAny>,
    pub name: String,
    #[serde(default)]
    pub description: Option<String>,
    pub steps: Vec<StepFile>,
    #[serde(default)]
    pub schedule: Option<ScheduleFile>,
    #[serde(default)]
    pub max_concurrent_runs: Option<i64>,
    #[serde(default)]
    pub rate_limit: Option<RateLimitFile>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct StepFile {
    pub name: String,
    pub image: String,
    #[serde(default)]
    pub run: Option<String>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub env: BTreeMap<String, EnvValue>,
    #[serde(default)]
    pub secrets: Vec<String>,
    #[serde(default)]
    pub depends_on: Vec<String>,
    #[serde(default)]
    pub workdir: Option<String>,
    #[serde(default)]
    pub timeout_seconds: Option<i64>,
    #[serde(default)]
    pub retries: Option<i64>,
    #[serde(default)]
    pub retry_backoff_seconds: Option<i64>,
    #[serde(default)]
    pub cache: bool,
    #[serde(default)]
    pub cache_ttl_seconds: Option<i64>,
    #[serde(default)]
    pub cache_paths: Vec<String>,
}

/// An env value: YAML scalars (`PORT: 5432`, `DEBUG: true`) are kept as their text.
#[derive(Deserialize, Debug, Clone)]
#[serde(untagged)]
pub enum EnvValue {
    Str(String),
    Int(i64),
    Float(f64),
    Bool(bool),
}

impl fmt::Display for EnvValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EnvValue::Str(s) => f.write_str(s),
            EnvValue::Int(i) => write!(f, "{i}"),
            EnvValue::Float(x) => write!(f, "{x}"),
            EnvValue::Bool(b) => write!(f, "{b}"),
        }
    }
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct ScheduleFile {
    pub cron: String,
    #[serde(default)]
    pub timezone: Option<String>,
    #[serde(default)]
    pub enabled: Option<bool>,
}

#[derive(Deserialize, Debug, Clone)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct RateLimitFile {
    pub runs: i64,
    pub per_seconds: i64,
}

/// A problem with a file, at a line when known.
#[derive(Debug, Clone)]
pub struct FileError {
    pub file: String,
    pub line: Option<usize>,
    pub message: String,
}

impl fmt::Display for FileError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(l) => write!(f, "{}:{l}: {}", self.file, self.message),
            None => write!(f, "{}: {}", self.file, self.message),
        }
    }
}

/// A parsed file with its text (kept to locate server-side errors).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: String,
    pub text: String,
    pub is_json: bool,
    pub workflow: WorkflowFile,
}

impl Loaded {
    /// A `FileError` for a GraphQL field path such as `input.steps[1].dependsOn`.
    pub fn error_at(&self, field: &str, message: &str) -> FileError {
        let path = field.strip_prefix("input.").unwrap_or(field);
        FileError {
            file: self.path.clone(),
            line: line_of(&self.text, path, self.is_json),
            message: format!("{message} ({path})"),
        }
    }
}

fn is_workflow_file(p: &Path) -> bool {
    matches!(
        p.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

/// The workflow files FILE names: itself, or a directory's `*.yaml`, `*.yml`, `*.json` sorted.
pub fn collect(target: &str) -> Result<Vec<PathBuf>, FileError> {
    let err = |m: String| FileError {
        file: target.to_string(),
        line: None,
        message: m,
    };
    let p = Path::new(target);
    if !p.is_dir() {
        if !p.exists() {
            return Err(err("no such file or directory".into()));
        }
        return Ok(vec![p.to_path_buf()]);
    }
    let mut files: Vec<PathBuf> = std::fs::read_dir(p)
        .map_err(|e| err(e.to_string()))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && is_workflow_file(p))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(err("no *.yaml, *.yml or *.json files here".into()));
    }
    Ok(files)
}

/// Reads and parses one file: JSON when it ends in `.json`, else YAML.
pub fn load(path: &Path) -> Result<Loaded, FileError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| FileError {
        file: file.clone(),
        line: None,
        message: e.to_string(),
    })?;
    parse(&file, &text)
}

/// Parses `text` (named `file` in errors) and checks what the api would only report later.
pub fn parse(file: &str, text: &str) -> Result<Loaded, FileError> {
    let is_json = file.ends_with(".json");
    let workflow: WorkflowFile = if is_json {
        serde_json::from_str(text).map_err(|e| FileError {
            file: file.into(),
            line: Some(e.line()),
            message: e.to_string(),
        })?
    } else {
        serde_yaml_ng::from_str(text).map_err(|e| FileError {
            file: file.into(),
            line: e.location().map(|l| l.line()),
            message: strip_location(&e.to_string()),
        })?
    };
    let loaded = Loaded {
        path: file.into(),
        text: text.into(),
        is_json,
        workflow,
    };
    for (i, s) in loaded.workflow.steps.iter().enumerate() {
        if s.run.is_some() == s.command.is_some() {
            return Err(loaded.error_at(
                &format!("steps[{i}].run"),
                "a step needs exactly one of `run` and `command`",
            ));
        }
    }
    Ok(loaded)
}

/// serde_yaml's message without its trailing ` at line L column C` (the line is shown first).
fn strip_location(m: &str) -> String {
    match m.rfind(" at line ") {
        Some(i) => m[..i].to_string(),
        None => m.to_string(),
    }
}

impl WorkflowFile {
    /// The GraphQL `WorkflowInput`, with every default spelled out (so it compares with what
    /// the api stores).
    pub fn to_input(&self) -> Value {
        let steps: Vec<Value> = self.steps.iter().map(StepFile::to_input).collect();
        json!({
            "name": self.name,
            "description": self.description.clone().unwrap_or_default(),
            "steps": steps,
            "schedule": self.schedule.as_ref().map(|s| json!({
                "cron": s.cron,
                "timezone": s.timezone.clone().unwrap_or_else(|| "UTC".into()),
                "enabled": s.enabled.unwrap_or(true),
            })),
            "maxConcurrentRuns": self.max_concurrent_runs,
            "rateLimit": self.rate_limit.as_ref().map(|r| json!({
                "runs": r.runs, "perSeconds": r.per_seconds,
            })),
        })
    }
}

impl StepFile {
    fn to_input(&self) -> Value {
        let env: Vec<Value> = self
            .env
            .iter()
            .map(|(k, v)| json!({"name": k, "value": v.to_string()}))
            .collect();
        json!({
            "name": self.name,
            "image": self.image,
            "run": self.run,
            "command": self.command,
            "env": env,
            "secrets": self.secrets,
            "dependsOn": self.depends_on,
            "workdir": self.workdir,
            "timeoutSeconds": self.timeout_seconds,
            "retries": self.retries,
            "retryBackoffSeconds": self.retry_backoff_seconds,
            "cache": self.cache,
            "cacheTtlSeconds": self.cache_ttl_seconds,
            "cachePaths": self.cache_paths,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unknown_key_points_at_its_line() {
        let text = "name: a\nsteps:\n  - name: one\n    image: alpine\n    run: echo\n    dependson: [x]\n";
        let e = parse("w.yaml", text).unwrap_err();
        assert_eq!(e.line, Some(6), "{e}");
        assert!(e.to_string().starts_with("w.yaml:6: "), "{e}");
    }

    #[test]
    fn env_scalars_become_text() {
        let text = "name: a\nsteps:\n  - name: one\n    image: alpine\n    run: echo\n    env: {PORT: 5432, DEBUG: true}\n";
        let w = parse("w.yaml", text).unwrap().workflow;
        let input = w.to_input();
        assert_eq!(
            input["steps"][0]["env"][0],
            json!({"name": "DEBUG", "value": "true"})
        );
        assert_eq!(
            input["steps"][0]["env"][1],
            json!({"name": "PORT", "value": "5432"})
        );
    }

    #[test]
    fn run_and_command_are_exclusive() {
        let text = "name: a\nsteps:\n  - name: one\n    image: alpine\n";
        let e = parse("w.yaml", text).unwrap_err();
        assert_eq!(e.line, Some(3), "{e}");
    }
}
