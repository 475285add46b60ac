//! Parsing the legacy JSON export (`docs/import.schema.json` describes it):
//!
//! ```json
//! {"tasks": [{"id": "legacy-42", "name": "nightly-backup", "image": "postgres:16",
//!   "command": "pg_dump ...", "schedule": "0 2 * * *", "env": {"K": "V"}, "tags": ["db"],
//!   "timeout_seconds": 3600, "retries": 2, "depends_on": ["legacy-41"]}]}
//! ```
//!
//! Only `id` and `command` are required; an optional field may be `null` (same as absent).
//! Every problem names its JSON path (`tasks[3].schedule`, `tasks[3]`, `tasks`), or
//! `line:column` for a syntax error. `schedule` is crontab syntax (five fields or a macro)
//! and is translated like a crontab line (see [`super::crontab`]).

use std::collections::{BTreeMap, HashMap};

use serde_json::{Map, Value};

use super::crontab::translate_schedule;
use super::model::{LegacyTask, Parsed, Problem};
use super::{MAX_TASKS, check_env_name, too_many_tasks};
use crate::workflows::validate::{
    MAX_CRON_LEN, MAX_ENV_VALUE_LEN, MAX_ENV_VARS, MAX_IMAGE_LEN, MAX_RETRIES, MAX_SCRIPT_LEN,
    MAX_TIMEOUT_SECONDS,
};

/// The fields a task record may have.
pub const TASK_FIELDS: [&str; 10] = [
    "id",
    "name",
    "image",
    "command",
    "schedule",
    "env",
    "tags",
    "timeout_seconds",
    "retries",
    "depends_on",
];
pub const MAX_ID_LEN: usize = 200;
pub const MAX_TASK_NAME_LEN: usize = 200;
pub const MAX_TAG_LEN: usize = 64;
pub const MAX_TAGS: usize = 50;
pub const MAX_DEPENDENCIES: usize = 200;

/// Parses a JSON export into tasks and a problem for each malformed record or field.
pub fn parse_json(content: &str) -> Parsed {
    let mut out = Parsed::default();
    let root: Value = match serde_json::from_str(content) {
        Ok(v) => v,
        Err(e) => {
            out.problems.push(Problem {
                position: format!("{}:{}", e.line(), e.column()),
                reason: format!("invalid JSON: {e}"),
                legacy_id: None,
            });
            return out;
        }
    };
    let problem = |position: &str, reason: String| Problem {
        position: position.to_string(),
        reason,
        legacy_id: None,
    };
    let Value::Object(root) = root else {
        out.problems.push(problem(
            "content",
            format!(
                "must be an object {{\"tasks\": [...]}}, not {}",
                kind(&root)
            ),
        ));
        return out;
    };
    for key in root.keys().filter(|k| *k != "tasks") {
        out.problems.push(problem(
            key,
            format!("unknown field `{key}` (the export has only `tasks`)"),
        ));
    }
    let tasks = match root.get("tasks") {
        None => {
            out.problems.push(problem(
                "tasks",
                "missing: expected {\"tasks\": [...]}".into(),
            ));
            return out;
        }
        Some(Value::Array(tasks)) => tasks,
        Some(other) => {
            out.problems.push(problem(
                "tasks",
                format!("must be an array of tasks, not {}", kind(other)),
            ));
            return out;
        }
    };
    if tasks.len() > MAX_TASKS {
        return Parsed {
            tasks: Vec::new(),
            problems: vec![too_many_tasks(tasks.len())],
        };
    }
    let mut first_at: HashMap<String, usize> = HashMap::new();
    for (i, record) in tasks.iter().enumerate() {
        let at = format!("tasks[{i}]");
        let Value::Object(obj) = record else {
            out.problems.push(problem(
                &at,
                format!("a task must be an object, not {}", kind(record)),
            ));
            continue;
        };
        let mut r = Record {
            at: &at,
            id: None,
            problems: Vec::new(),
        };
        let task = r.task(obj);
        if let Some(id) = &r.id {
            if let Some(first) = first_at.get(id) {
                r.push(
                    "id",
                    format!("duplicate id `{id}` (first used by tasks[{first}])"),
                );
            } else {
                first_at.insert(id.clone(), i);
            }
        }
        if r.problems.is_empty()
            && let Some(task) = task
        {
            out.tasks.push(task);
        } else {
            out.problems.append(&mut r.problems);
        }
    }
    out
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// One record being checked: its path, id (once known) and problems.
struct Record<'a> {
    at: &'a str,
    id: Option<String>,
    problems: Vec<Problem>,
}

impl Record<'_> {
    fn push(&mut self, field: &str, reason: String) {
        let position = if field.is_empty() {
            self.at.to_string()
        } else {
            format!("{}.{field}", self.at)
        };
        self.problems.push(Problem {
            position,
            reason,
            legacy_id: self.id.clone(),
        });
    }

    /// A string field (`None` when absent or null, with a problem when another type).
    fn string<'v>(&mut self, obj: &'v Map<String, Value>, field: &str) -> Option<&'v str> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            Some(Value::String(s)) => Some(s),
            Some(v) => {
                self.push(field, format!("must be a string, not {}", kind(v)));
                None
            }
        }
    }

    fn task(&mut self, obj: &Map<String, Value>) -> Option<LegacyTask> {
        // The id first, so that every later problem carries it.
        match obj.get("id") {
            None | Some(Value::Null) => self.push("", "missing required field `id`".into()),
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.push("id", "must not be empty".into())
            }
            Some(Value::String(s)) if s.chars().count() > MAX_ID_LEN => {
                self.id = Some(s.clone());
                self.push("id", format!("must be at most {MAX_ID_LEN} characters"));
            }
            Some(Value::String(s)) => self.id = Some(s.clone()),
            Some(v) => self.push("id", format!("must be a string, not {}", kind(v))),
        }
        for key in obj.keys() {
            if !TASK_FIELDS.contains(&key.as_str()) {
                self.push(
                    key,
                    format!(
                        "unknown field `{key}` (expected one of: {})",
                        TASK_FIELDS.join(", ")
                    ),
                );
            }
        }
        let name = self.string(obj, "name").map(str::to_string);
        if let Some(n) = &name {
            if n.trim().is_empty() {
                self.push("name", "must not be empty (leave it out instead)".into());
            } else if n.chars().count() > MAX_TASK_NAME_LEN {
                self.push(
                    "name",
                    format!("must be at most {MAX_TASK_NAME_LEN} characters"),
                );
            }
        }
        let image = self.string(obj, "image").map(str::to_string);
        if let Some(img) = &image
            && let Err(reason) = check_image(img)
        {
            self.push("image", reason);
        }
        let command = match obj.get("command") {
            None | Some(Value::Null) => {
                self.push("", "missing required field `command`".into());
                None
            }
            Some(Value::String(s)) if s.trim().is_empty() => {
                self.push("command", "must not be empty".into());
                None
            }
            Some(Value::String(s)) if s.len() > MAX_SCRIPT_LEN || s.contains('\0') => {
                self.push(
                    "command",
                    format!("must be at most {MAX_SCRIPT_LEN} bytes and contain no NUL"),
                );
                None
            }
            Some(Value::String(s)) => Some(s.clone()),
            Some(v) => {
                self.push("command", format!("must be a string, not {}", kind(v)));
                None
            }
        };
        let schedule = match self.string(obj, "schedule") {
            None => None,
            Some(s) if s.len() > MAX_CRON_LEN => {
                self.push(
                    "schedule",
                    format!("must be at most {MAX_CRON_LEN} characters"),
                );
                None
            }
            Some(s) => match translate_schedule(s) {
                Ok(t) => Some(t),
                Err(e) => {
                    self.push("schedule", format!("`{s}`: {e}"));
                    None
                }
            },
        };
        let env = self.env(obj.get("env"));
        let tags = self.tags(obj.get("tags"));
        let timeout_seconds = self.number(obj, "timeout_seconds", 1, MAX_TIMEOUT_SECONDS);
        let retries = self.number(obj, "retries", 0, MAX_RETRIES);
        let depends_on = self.depends_on(obj.get("depends_on"));
        Some(LegacyTask {
            id: self.id.clone()?,
            name,
            image,
            command: command?,
            schedule,
            env,
            tags,
            timeout_seconds,
            retries,
            depends_on,
            position: self.at.to_string(),
        })
    }

    fn env(&mut self, v: Option<&Value>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        let obj = match v {
            None | Some(Value::Null) => return env,
            Some(Value::Object(o)) => o,
            Some(v) => {
                self.push(
                    "env",
                    format!("must be an object of strings, not {}", kind(v)),
                );
                return env;
            }
        };
        if obj.len() > MAX_ENV_VARS {
            self.push("env", format!("at most {MAX_ENV_VARS} variables"));
        }
        for (k, val) in obj {
            let field = format!("env.{k}");
            if let Err(reason) = check_env_name(k) {
                self.push(&field, reason);
                continue;
            }
            match val {
                Value::String(s) if s.len() > MAX_ENV_VALUE_LEN || s.contains('\0') => self.push(
                    &field,
                    format!("values must be at most {MAX_ENV_VALUE_LEN} bytes and contain no NUL"),
                ),
                Value::String(s) => {
                    env.insert(k.clone(), s.clone());
                }
                v => self.push(&field, format!("must be a string, not {}", kind(v))),
            }
        }
        env
    }

    fn tags(&mut self, v: Option<&Value>) -> Vec<String> {
        let mut tags = Vec::new();
        let items = match v {
            None | Some(Value::Null) => return tags,
            Some(Value::Array(a)) => a,
            Some(v) => {
                self.push(
                    "tags",
                    format!("must be an array of strings, not {}", kind(v)),
                );
                return tags;
            }
        };
        if items.len() > MAX_TAGS {
            self.push("tags", format!("at most {MAX_TAGS} tags"));
        }
        for (j, t) in items.iter().enumerate() {
            let field = format!("tags[{j}]");
            match t {
                Value::String(s)
                    if !s.is_empty()
                        && s.len() <= MAX_TAG_LEN
                        && s.bytes().all(|b| {
                            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')
                        }) =>
                {
                    if !tags.contains(s) {
                        tags.push(s.clone());
                    }
                }
                Value::String(s) => self.push(
                    &field,
                    format!(
                        "tag `{s}` must be 1-{MAX_TAG_LEN} characters of letters, digits, '-', \
                         '_' or '.'"
                    ),
                ),
                v => self.push(&field, format!("must be a string, not {}", kind(v))),
            }
        }
        tags
    }

    fn number(&mut self, obj: &Map<String, Value>, field: &str, min: u32, max: u32) -> Option<u32> {
        match obj.get(field) {
            None | Some(Value::Null) => None,
            // JSON Schema's `integer` includes `3600.0`.
            Some(Value::Number(n)) => match n.as_u64().or_else(|| {
                n.as_f64()
                    .filter(|f| f.fract() == 0.0 && *f >= 0.0)
                    .map(|f| f as u64)
            }) {
                Some(x) if x >= u64::from(min) && x <= u64::from(max) => Some(x as u32),
                _ => {
                    self.push(
                        field,
                        format!("must be a whole number between {min} and {max}, not {n}"),
                    );
                    None
                }
            },
            Some(v) => {
                self.push(field, format!("must be a number, not {}", kind(v)));
                None
            }
        }
    }

    fn depends_on(&mut self, v: Option<&Value>) -> Vec<String> {
        let mut deps: Vec<String> = Vec::new();
        let items = match v {
            None | Some(Value::Null) => return deps,
            Some(Value::Array(a)) => a,
            Some(v) => {
                self.push(
                    "depends_on",
                    format!("must be an array of task ids, not {}", kind(v)),
                );
                return deps;
            }
        };
        if items.len() > MAX_DEPENDENCIES {
            self.push(
                "depends_on",
                format!("at most {MAX_DEPENDENCIES} dependencies"),
            );
        }
        for (j, d) in items.iter().enumerate() {
            let field = format!("depends_on[{j}]");
            match d {
                Value::String(s) if s.trim().is_empty() => {
                    self.push(&field, "must not be empty".into())
                }
                Value::String(s) if self.id.as_deref() == Some(s.as_str()) => {
                    self.push(&field, format!("task `{s}` depends on itself"))
                }
                Value::String(s) if deps.contains(s) => {
                    self.push(&field, format!("`{s}` listed twice"))
                }
                Value::String(s) => deps.push(s.clone()),
                v => self.push(
                    &field,
                    format!("must be a task id (string), not {}", kind(v)),
                ),
            }
        }
        deps
    }
}

/// The image reference rule of workflow validation (`alpine:3.20`, `ghcr.io/x/y@sha256:…`).
pub(crate) fn check_image(image: &str) -> Result<(), String> {
    if image.trim().is_empty() {
        Err("must not be empty (leave it out to use the default image)".into())
    } else if image.len() > MAX_IMAGE_LEN {
        Err(format!("must be at most {MAX_IMAGE_LEN} characters"))
    } else if !image
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b"./:-_@+".contains(&b))
        || image.starts_with(['.', '-', ':', '@', '/'])
    {
        Err(format!(
            "`{image}` is not a valid image reference (e.g. alpine:3.20)"
        ))
    } else {
        Ok(())
    }
}
