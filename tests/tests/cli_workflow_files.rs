//! Workflow files without a server: every file in examples/ validates against
//! docs/workflow.schema.json, the schema's properties are exactly `WorkflowInput`'s (and its
//! nested inputs') fields in schema.graphql, and every `tms` command's help has an example.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use serde_json::Value;
use tms_tests::bin_dir;

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path:?}: {e}"));
    if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    } else {
        serde_yaml_ng::from_str(&text).unwrap_or_else(|e| panic!("{path:?}: {e}"))
    }
}

fn examples() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("examples"))
        .expect("examples/")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .collect();
    files.sort();
    files
}

/// The field names of `input NAME { … }` in schema.graphql (descriptions skipped).
fn input_fields(sdl: &str, name: &str) -> BTreeSet<String> {
    let start = sdl
        .find(&format!("input {name} {{"))
        .unwrap_or_else(|| panic!("no input {name} in schema.graphql"));
    let body = &sdl[start..];
    let body = &body[body.find('{').expect("{") + 1..body.find("\n}").expect("}")];
    let mut fields = BTreeSet::new();
    let mut in_doc = false;
    for line in body.lines().map(str::trim) {
        if line.starts_with("\"\"\"") {
            let single = line.len() > 3 && line.ends_with("\"\"\"");
            if !single {
                in_doc = !in_doc;
            }
            continue;
        }
        if in_doc || line.is_empty() {
            continue;
        }
        if let Some((field, _)) = line.split_once(':') {
            fields.insert(field.trim().to_string());
        }
    }
    fields
}

fn props(schema: &Value) -> BTreeSet<String> {
    schema["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .filter(|k| !k.starts_with('$'))
        .cloned()
        .collect()
}

#[test]
fn the_schema_has_exactly_workflow_inputs_fields() {
    let sdl = std::fs::read_to_string(repo().join("schema.graphql")).expect("schema.graphql");
    let schema = read_json(&repo().join("docs/workflow.schema.json"));
    let p = &schema["properties"];
    assert_eq!(props(&schema), input_fields(&sdl, "WorkflowInput"));
    assert_eq!(
        props(&schema["$defs"]["step"]),
        input_fields(&sdl, "StepInput")
    );
    assert_eq!(props(&p["schedule"]), input_fields(&sdl, "ScheduleInput"));
    assert_eq!(props(&p["rateLimit"]), input_fields(&sdl, "RateLimitInput"));
}

#[test]
fn every_example_validates_against_the_schema() {
    let schema = read_json(&repo().join("docs/workflow.schema.json"));
    let validator = jsonschema::draft202012::new(&schema).expect("a valid 2020-12 schema");
    let files = examples();
    assert_eq!(files.len(), 5, "{files:?}");
    for f in &files {
        let doc = read_json(f);
        let errors: Vec<String> = validator
            .iter_errors(&doc)
            .map(|e| format!("{}: {e}", e.instance_path()))
            .collect();
        assert!(errors.is_empty(), "{f:?}: {errors:#?}");
    }
    // The schema is strict: a misspelt key or a step with both `run` and `command` fails.
    let mut bad = read_json(&files[0]);
    bad["steps"][0]["dependson"] = serde_json::json!(["x"]);
    assert!(!validator.is_valid(&bad));
    let mut both = read_json(&files[0]);
    both["steps"][0]["command"] = serde_json::json!(["true"]);
    assert!(!validator.is_valid(&both));
}

fn help(args: &[&str]) -> String {
    let out = std::process::Command::new(bin_dir().join("tms"))
        .args(args)
        .arg("--help")
        .env_remove("TMS_TOKEN")
        .output()
        .expect("spawning tms (did `cargo build --workspace --bins` run?)");
    assert!(out.status.success(), "tms {args:?} --help: {out:?}");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn every_subcommand_help_has_an_example() {
    let top = help(&[]);
    assert!(top.contains("Exit codes:"), "{top}");
    let commands: &[&[&str]] = &[
        &[],
        &["login"],
        &["logout"],
        &["apply"],
        &["workflows"],
        &["run"],
        &["runs"],
        &["logs"],
        &["cancel"],
        &["retry"],
        &["watch"],
        &["tokens"],
        &["tokens", "create"],
        &["tokens", "list"],
        &["tokens", "revoke"],
        &["import"],
        &["import", "apply"],
        &["import", "verify"],
        &["import", "enable"],
        &["import", "rollback"],
        &["import", "list"],
        &["completions"],
    ];
    for args in commands {
        let text = help(args);
        assert!(text.contains("Example"), "tms {args:?} --help: {text}");
    }
    // Every subcommand of the top-level help is in the list above.
    let listed: BTreeSet<&str> = commands.iter().filter_map(|a| a.first().copied()).collect();
    let section = top.split("Commands:").nth(1).expect("Commands:");
    for line in section.lines().take_while(|l| !l.trim().is_empty()) {
        let name = line.split_whitespace().next().unwrap_or_default();
        if name != "help" {
            assert!(listed.contains(name), "`tms {name}` is not checked");
        }
    }
    let bash = std::process::Command::new(bin_dir().join("tms"))
        .args(["completions", "bash"])
        .output()
        .expect("tms completions");
    assert!(bash.status.success());
    assert!(String::from_utf8_lossy(&bash.stdout).contains("_tms()"));
}
