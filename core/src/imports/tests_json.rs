//! JSON export parsing: valid records, malformed records (position and reason), the schema.

use super::json::{TASK_FIELDS, parse_json};
use super::*;

fn export(tasks: &str) -> String {
    format!("{{\"tasks\": [{tasks}]}}")
}

#[test]
fn a_full_record_parses_with_its_schedule_translated() {
    let src = export(
        r#"{"id": "legacy-42", "name": "nightly-backup", "image": "postgres:16",
            "command": "pg_dump db", "schedule": "0 2 * * 1-5", "env": {"K": "V"},
            "tags": ["db", "db"], "timeout_seconds": 3600, "retries": 2,
            "depends_on": ["legacy-41"]},
           {"id": "legacy-41", "command": "true", "name": null, "schedule": null,
            "env": null, "tags": null, "timeout_seconds": 60.0}"#,
    );
    let p = parse_json(&src);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
    let t = &p.tasks[0];
    assert_eq!(t.id, "legacy-42");
    assert_eq!(t.name.as_deref(), Some("nightly-backup"));
    assert_eq!(t.image.as_deref(), Some("postgres:16"));
    assert_eq!(t.schedule.as_deref(), Some("0 2 * * MON-FRI"));
    assert_eq!(t.env["K"], "V");
    assert_eq!(t.tags, vec!["db".to_string()]);
    assert_eq!((t.timeout_seconds, t.retries), (Some(3600), Some(2)));
    assert_eq!(t.depends_on, vec!["legacy-41".to_string()]);
    assert_eq!(t.position, "tasks[0]");
    assert_eq!(p.tasks[1].timeout_seconds, Some(60));
    assert_eq!(p.tasks[1].schedule, None);
}

/// (record, position, words the reason must contain, legacy id of the problem)
const MALFORMED: &[(&str, &str, &str, Option<&str>)] = &[
    (
        r#"{"command": "x"}"#,
        "tasks[1]",
        "missing required field `id`",
        None,
    ),
    (
        r#"{"id": "", "command": "x"}"#,
        "tasks[1].id",
        "must not be empty",
        None,
    ),
    (
        r#"{"id": 7, "command": "x"}"#,
        "tasks[1].id",
        "must be a string, not a number",
        None,
    ),
    (
        r#"{"id": "a"}"#,
        "tasks[1]",
        "missing required field `command`",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "  "}"#,
        "tasks[1].command",
        "must not be empty",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": ["ls"]}"#,
        "tasks[1].command",
        "not an array",
        Some("a"),
    ),
    (
        r#"{"id": "ok", "command": "x"}"#,
        "tasks[1].id",
        "duplicate id `ok` (first used by tasks[0])",
        Some("ok"),
    ),
    (
        r#"{"id": "a", "command": "x", "cmd": "y"}"#,
        "tasks[1].cmd",
        "unknown field `cmd`",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "schedule": "0 2 * *"}"#,
        "tasks[1].schedule",
        "five fields",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "schedule": "99 * * * *"}"#,
        "tasks[1].schedule",
        "not a valid cron",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "schedule": "@reboot"}"#,
        "tasks[1].schedule",
        "@reboot",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "schedule": "0 0 1 * 1"}"#,
        "tasks[1].schedule",
        "dialects disagree",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "schedule": 5}"#,
        "tasks[1].schedule",
        "must be a string",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "env": {"1BAD": "v"}}"#,
        "tasks[1].env.1BAD",
        "[A-Za-z_]",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "env": {"TMS_X": "v"}}"#,
        "tasks[1].env.TMS_X",
        "reserved",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "env": {"K": 1}}"#,
        "tasks[1].env.K",
        "must be a string",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "env": ["K=V"]}"#,
        "tasks[1].env",
        "must be an object",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "tags": "db"}"#,
        "tasks[1].tags",
        "must be an array",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "tags": ["has space"]}"#,
        "tasks[1].tags[0]",
        "1-64 characters",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "tags": ["ok", 3]}"#,
        "tasks[1].tags[1]",
        "must be a string",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "timeout_seconds": 0}"#,
        "tasks[1].timeout_seconds",
        "between 1 and 604800",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "timeout_seconds": 604801}"#,
        "tasks[1].timeout_seconds",
        "between 1 and 604800",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "timeout_seconds": "60"}"#,
        "tasks[1].timeout_seconds",
        "must be a number",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "retries": 11}"#,
        "tasks[1].retries",
        "between 0 and 10",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "retries": -1}"#,
        "tasks[1].retries",
        "between 0 and 10",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "retries": 1.5}"#,
        "tasks[1].retries",
        "whole number",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "depends_on": "b"}"#,
        "tasks[1].depends_on",
        "must be an array",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "depends_on": [""]}"#,
        "tasks[1].depends_on[0]",
        "must not be empty",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "depends_on": ["a"]}"#,
        "tasks[1].depends_on[0]",
        "depends on itself",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "depends_on": ["ok", "ok"]}"#,
        "tasks[1].depends_on[1]",
        "listed twice",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "depends_on": [1]}"#,
        "tasks[1].depends_on[0]",
        "must be a task id",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "image": "-bad image"}"#,
        "tasks[1].image",
        "not a valid image",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "image": ""}"#,
        "tasks[1].image",
        "must not be empty",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "name": " "}"#,
        "tasks[1].name",
        "must not be empty",
        Some("a"),
    ),
    (
        r#"{"id": "a", "command": "x", "name": true}"#,
        "tasks[1].name",
        "not a boolean",
        Some("a"),
    ),
    (
        r#""a string""#,
        "tasks[1]",
        "must be an object, not a string",
        None,
    ),
    (r#"null"#, "tasks[1]", "must be an object, not null", None),
];

#[test]
fn each_malformed_record_is_a_problem_at_its_path() {
    assert!(MALFORMED.len() >= 20);
    for (record, position, reason, legacy_id) in MALFORMED {
        let src = export(&format!(r#"{{"id": "ok", "command": "true"}}, {record}"#));
        let p = parse_json(&src);
        assert_eq!(p.tasks.len(), 1, "{record}: only the valid record is kept");
        assert_eq!(p.tasks[0].id, "ok");
        assert_eq!(p.problems.len(), 1, "{record}: {:?}", p.problems);
        let got = &p.problems[0];
        assert_eq!(got.position, *position, "{record}");
        assert!(got.reason.contains(reason), "{record}: {}", got.reason);
        assert_eq!(got.legacy_id.as_deref(), *legacy_id, "{record}");
    }
}

#[test]
fn long_ids_and_names_are_refused() {
    let long = "x".repeat(201);
    let src = export(&format!(r#"{{"id": "{long}", "command": "x"}}"#));
    let p = parse_json(&src);
    assert_eq!(p.problems[0].position, "tasks[0].id");
    assert!(p.problems[0].reason.contains("at most 200"));
    let src = export(&format!(
        r#"{{"id": "a", "command": "x", "name": "{long}"}}"#
    ));
    assert_eq!(parse_json(&src).problems[0].position, "tasks[0].name");
    let tag = "t".repeat(65);
    let src = export(&format!(
        r#"{{"id": "a", "command": "x", "tags": ["{tag}"]}}"#
    ));
    assert_eq!(parse_json(&src).problems[0].position, "tasks[0].tags[0]");
}

#[test]
fn a_record_with_several_faults_reports_each() {
    let src = export(r#"{"id": "a", "command": "", "retries": 99, "x": 1}"#);
    let p = parse_json(&src);
    let positions: Vec<&str> = p.problems.iter().map(|p| p.position.as_str()).collect();
    assert_eq!(
        positions,
        ["tasks[0].x", "tasks[0].command", "tasks[0].retries"]
    );
    assert!(
        p.problems
            .iter()
            .all(|p| p.legacy_id.as_deref() == Some("a"))
    );
    assert!(p.tasks.is_empty());
}

#[test]
fn document_level_problems() {
    let cases = [
        (
            "{\"tasks\": [\n  {\"id\": \"a\",,}]}",
            "2:14",
            "invalid JSON",
        ),
        ("", "1:0", "invalid JSON"),
        ("[1, 2]", "content", "must be an object"),
        ("{}", "tasks", "missing"),
        (
            "{\"tasks\": {}}",
            "tasks",
            "must be an array of tasks, not an object",
        ),
        (
            "{\"tasks\": [], \"version\": 2}",
            "version",
            "unknown field `version`",
        ),
    ];
    for (src, position, reason) in cases {
        let p = parse_json(src);
        assert_eq!(p.problems.len(), 1, "{src}: {:?}", p.problems);
        assert_eq!(p.problems[0].position, position, "{src}");
        assert!(
            p.problems[0].reason.contains(reason),
            "{src}: {:?}",
            p.problems
        );
        assert!(p.tasks.is_empty());
    }
    assert_eq!(parse_json("{\"tasks\": []}"), Parsed::default());
}

#[test]
fn too_many_tasks_is_one_problem() {
    let record = r#"{"id":"a","command":"x"},"#;
    let mut src = String::from("{\"tasks\": [");
    src.push_str(&record.repeat(MAX_TASKS));
    src.push_str(r#"{"id":"a","command":"x"}]}"#);
    let p = parse(ImportFormat::Json, &src);
    assert_eq!(p.problems.len(), 1);
    assert_eq!(p.problems[0].position, "content");
    assert!(p.tasks.is_empty());
}

/// The property names of an object in the schema.
fn property_names(v: &serde_json::Value) -> Vec<String> {
    let mut names: Vec<String> = v["properties"]
        .as_object()
        .expect("properties")
        .keys()
        .cloned()
        .collect();
    names.sort();
    names
}

#[test]
fn the_json_schema_matches_the_parser() {
    let schema: serde_json::Value =
        serde_json::from_str(include_str!("../../../docs/import.schema.json")).unwrap();
    assert_eq!(
        schema["$schema"],
        "https://json-schema.org/draft/2020-12/schema"
    );
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(property_names(&schema), ["tasks"]);
    let task = &schema["$defs"]["task"];
    assert_eq!(task["additionalProperties"], false);
    let mut fields: Vec<String> = TASK_FIELDS.iter().map(|s| s.to_string()).collect();
    fields.sort();
    assert_eq!(property_names(task), fields);
    assert_eq!(task["required"], serde_json::json!(["id", "command"]));
    let props = &task["properties"];
    use crate::workflows::validate::{MAX_RETRIES, MAX_TIMEOUT_SECONDS};
    assert_eq!(props["timeout_seconds"]["maximum"], MAX_TIMEOUT_SECONDS);
    assert_eq!(props["retries"]["maximum"], MAX_RETRIES);
    assert_eq!(props["id"]["maxLength"], super::json::MAX_ID_LEN);
    assert_eq!(schema["properties"]["tasks"]["maxItems"], MAX_TASKS);
    // Every field the schema allows is accepted by the parser.
    let example = export(
        r#"{"id": "b", "command": "true"}, {"id": "a", "name": "n", "image": "alpine:3.20",
            "command": "true", "schedule": "@daily", "env": {"K": "V"}, "tags": ["t"],
            "timeout_seconds": 1, "retries": 0, "depends_on": ["b"]}"#,
    );
    let p = parse_json(&example);
    assert!(p.problems.is_empty(), "{:?}", p.problems);
}
