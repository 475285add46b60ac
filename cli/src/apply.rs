//! `tms apply -f FILE|DIR`: workflow files to workflows. A new name is created, a changed
//! file becomes a new version (with a short diff), an unchanged one is left alone.

use std::collections::{BTreeMap, HashMap};

use clap::Args;
use serde_json::{Value, json};

use crate::api::{Api, Failure, exit};
use crate::import::{Output, OutputArg, exit_codes, text};
use crate::table::Table;
use crate::wfile::{self, FileError, Loaded};
use crate::workflows::{self, FULL};

pub const APPLY_HELP: &str = concat!(
    "Examples:
  tms apply -f examples/                       # every *.yaml, *.yml, *.json in the folder
  tms apply -f build.yaml -f nightly.json
  tms apply -f examples/ --dry-run             # what would change; writes nothing
  tms apply -f examples/ --output json

A workflow file is WorkflowInput as YAML or JSON (env as a map); its schema is
docs/workflow.schema.json. Errors point at file:line, the api's validation errors too.

",
    exit_codes!()
);

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// A workflow file or a folder of them (repeatable).
    #[arg(short = 'f', long = "file", value_name = "FILE|DIR", required = true)]
    pub files: Vec<String>,
    /// Show what would be created or changed, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub out: OutputArg,
}

const STEP_FIELDS: [&str; 14] = [
    "name",
    "image",
    "run",
    "command",
    "env",
    "secrets",
    "dependsOn",
    "workdir",
    "timeoutSeconds",
    "retries",
    "retryBackoffSeconds",
    "cache",
    "cacheTtlSeconds",
    "cachePaths",
];
const TOP_FIELDS: [&str; 4] = ["description", "schedule", "maxConcurrentRuns", "rateLimit"];

/// A workflow (stored or from a file) in a comparable form: `WorkflowInput`'s fields only,
/// defaults spelled out, env sorted.
fn canonical(w: &Value) -> Value {
    let steps: Vec<Value> = w["steps"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
        .iter()
        .map(|s| {
            let mut m = serde_json::Map::new();
            for f in STEP_FIELDS {
                m.insert(f.into(), s[f].clone());
            }
            let mut env = s["env"].as_array().cloned().unwrap_or_default();
            env.sort_by_key(|e| text(&e["name"]));
            m.insert("env".into(), Value::Array(env));
            Value::Object(m)
        })
        .collect();
    let schedule = match &w["schedule"] {
        Value::Null => Value::Null,
        s => json!({"cron": s["cron"], "timezone": s["timezone"], "enabled": s["enabled"]}),
    };
    json!({
        "description": w["description"].as_str().unwrap_or_default(),
        "schedule": schedule,
        "maxConcurrentRuns": w["maxConcurrentRuns"],
        "rateLimit": w["rateLimit"],
        "steps": steps,
    })
}

fn short(v: &Value) -> String {
    let s = match v {
        Value::Null => "none".to_string(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    if s.chars().count() > 60 {
        format!("{}…", s.chars().take(59).collect::<String>())
    } else {
        s
    }
}

/// What differs between the stored workflow and the file, one line each; empty: unchanged.
pub fn diff(stored: &Value, file: &Value) -> Vec<String> {
    let (old, new) = (canonical(stored), canonical(file));
    let mut out = Vec::new();
    for f in TOP_FIELDS {
        if old[f] != new[f] {
            out.push(format!("~ {f}: {} → {}", short(&old[f]), short(&new[f])));
        }
    }
    let by_name = |v: &Value| -> BTreeMap<String, Value> {
        v["steps"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
            .iter()
            .map(|s| (text(&s["name"]), s.clone()))
            .collect()
    };
    let (olds, news) = (by_name(&old), by_name(&new));
    for name in olds.keys().filter(|n| !news.contains_key(*n)) {
        out.push(format!("- step {name}"));
    }
    for (name, step) in &news {
        match olds.get(name) {
            None => out.push(format!("+ step {name}")),
            Some(prev) => {
                let changed: Vec<&str> = STEP_FIELDS
                    .into_iter()
                    .filter(|f| prev[*f] != step[*f])
                    .collect();
                if !changed.is_empty() {
                    out.push(format!("~ step {name}: {}", changed.join(", ")));
                }
            }
        }
    }
    if out.is_empty() && old["steps"] != new["steps"] {
        out.push("~ step order".into());
    }
    out
}

/// Prints file errors (`file:line: message`) and gives the exit code for them.
fn refuse(errors: &[FileError], output: Output, code: &str) -> i32 {
    if output == Output::Json {
        let errs: Vec<Value> = errors
            .iter()
            .map(|e| {
                json!({"file": e.file, "line": e.line, "message": e.message,
                            "extensions": {"code": code}})
            })
            .collect();
        println!("{}", json!({ "errors": errs }));
    }
    for e in errors {
        eprintln!("{e}");
    }
    eprintln!(
        "error: {code}: {} problem(s) in workflow files",
        errors.len()
    );
    exit::REFUSED
}

pub async fn run(api: Api, a: &ApplyArgs) -> Result<i32, Failure> {
    let mut loaded: Vec<Loaded> = Vec::new();
    let mut errors = Vec::new();
    for target in &a.files {
        match wfile::collect(target) {
            Ok(paths) => {
                for p in paths {
                    match wfile::load(&p) {
                        Ok(l) => loaded.push(l),
                        Err(e) => errors.push(e),
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    let mut seen: HashMap<String, String> = HashMap::new();
    for l in &loaded {
        if let Some(first) = seen.insert(l.workflow.name.clone(), l.path.clone()) {
            errors.push(l.error_at(
                "name",
                &format!("workflow `{}` is also defined in {first}", l.workflow.name),
            ));
        }
    }
    if !errors.is_empty() {
        return Ok(refuse(&errors, a.out.output, "INVALID_FILE"));
    }
    let stored: HashMap<String, Value> = workflows::all(&api, FULL, false)
        .await?
        .into_iter()
        .map(|w| (text(&w["name"]), w))
        .collect();
    let mut results = Vec::new();
    for l in &loaded {
        let input = l.workflow.to_input();
        let (action, changes, w) = match stored.get(&l.workflow.name) {
            Some(w) => {
                let changes = diff(w, &input);
                if changes.is_empty() {
                    ("unchanged", changes, w.clone())
                } else if a.dry_run {
                    ("update", changes, w.clone())
                } else {
                    let q = format!(
                        "mutation($id: ID!, $i: WorkflowInput!) {{ updateWorkflow(id: $id, input: $i) {{ {FULL} }} }}"
                    );
                    match api.gql(&q, json!({"id": w["id"], "i": input})).await {
                        Ok(d) => ("updated", changes, d["updateWorkflow"].clone()),
                        Err(f) => return Ok(server_refusal(l, f, a.out.output)),
                    }
                }
            }
            None if a.dry_run => ("create", Vec::new(), Value::Null),
            None => {
                let q = format!(
                    "mutation($i: WorkflowInput!) {{ createWorkflow(input: $i) {{ {FULL} }} }}"
                );
                match api.gql(&q, json!({"i": input})).await {
                    Ok(d) => ("created", Vec::new(), d["createWorkflow"].clone()),
                    Err(f) => return Ok(server_refusal(l, f, a.out.output)),
                }
            }
        };
        results.push(json!({
            "file": l.path, "name": l.workflow.name, "action": action,
            "id": w["id"], "version": w["currentVersion"], "changes": changes,
        }));
    }
    print_results(&results, a);
    Ok(exit::OK)
}

/// The api refused a file: its validation details at their file:line, or the error itself.
fn server_refusal(l: &Loaded, f: Failure, output: Output) -> i32 {
    if f.code != "VALIDATION" && f.code != "BAD_USER_INPUT" {
        crate::import::report_failure(&f, output, &[]);
        return f.exit;
    }
    let mut errors: Vec<FileError> = f
        .details
        .iter()
        .map(|(field, message)| l.error_at(field, message))
        .collect();
    if errors.is_empty() {
        errors.push(l.error_at(f.field.as_deref().unwrap_or(""), &f.message));
    }
    refuse(&errors, output, &f.code)
}

fn print_results(results: &[Value], a: &ApplyArgs) {
    if a.out.output == Output::Json {
        println!("{}", Value::Array(results.to_vec()));
        return;
    }
    if a.dry_run {
        println!("dry run: nothing written");
    }
    let mut t = Table::new(&["ACTION", "WORKFLOW", "VERSION", "FILE"]);
    let mut details = String::new();
    for r in results {
        t.row(vec![
            text(&r["action"]),
            text(&r["name"]),
            text(&r["version"]),
            text(&r["file"]),
        ]);
        for c in r["changes"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default()
        {
            details.push_str(&format!("  {}: {}\n", text(&r["name"]), text(c)));
        }
    }
    print!("{}", t.render());
    print!("{details}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn diff_names_what_changed() {
        let stored = json!({"description": "", "steps": [
            {"name": "a", "image": "x", "run": "echo", "env": [{"name": "B", "value": "1"},
             {"name": "A", "value": "2"}], "cache": false},
            {"name": "b", "image": "x", "run": "echo", "env": [], "cache": false}]});
        let file = json!({"description": "", "steps": [
            {"name": "a", "image": "x", "run": "echo", "env": [{"name": "A", "value": "2"},
             {"name": "B", "value": "1"}], "cache": false},
            {"name": "b", "image": "x", "run": "echo hi", "env": [], "cache": true},
            {"name": "c", "image": "x", "run": "echo", "env": [], "cache": false}]});
        assert_eq!(diff(&stored, &stored), Vec::<String>::new());
        assert_eq!(
            diff(&stored, &file),
            vec!["~ step b: run, cache", "+ step c"]
        );
    }
}
