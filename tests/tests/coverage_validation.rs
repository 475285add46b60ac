//! Workflow validation rules through the real api: each invalid `createWorkflow` input is
//! refused with `VALIDATION`, the one offending field and why, and nothing is written.

use anyhow::Result;
use serde_json::{Value, json};
use tms_tests::{EnvOptions, TestEnv, error_code};

/// A valid one-step workflow named `name`, for the cases to spoil.
fn valid(name: &str) -> Value {
    json!({"name": name, "steps": [{"name": "a", "image": "alpine:3.20", "run": "true"}]})
}

/// `valid(name)` with `f` applied to its first step.
fn step(name: &str, f: impl FnOnce(&mut Value)) -> Value {
    let mut wf = valid(name);
    f(&mut wf["steps"][0]);
    wf
}

/// (what, input, the field refused, a fragment of the reason).
fn cases() -> Vec<(&'static str, Value, &'static str, &'static str)> {
    let many_steps: Vec<Value> = (0..201)
        .map(|i| json!({"name": format!("s{i}"), "image": "alpine", "run": "true"}))
        .collect();
    vec![
        (
            "description too long",
            {
                let mut wf = valid("long-description");
                wf["description"] = json!("d".repeat(4_001));
                wf
            },
            "input.description",
            "at most 4000 bytes",
        ),
        (
            "maxConcurrentRuns too high",
            {
                let mut wf = valid("too-many-runs");
                wf["maxConcurrentRuns"] = json!(100_001);
                wf
            },
            "input.maxConcurrentRuns",
            "between 1 and 100000",
        ),
        (
            "cron too long",
            {
                let mut wf = valid("long-cron");
                wf["schedule"] = json!({"cron": format!("* * * * *{}", " ".repeat(200))});
                wf
            },
            "input.schedule.cron",
            "at most 200 bytes",
        ),
        (
            "too many steps",
            json!({"name": "huge", "steps": many_steps}),
            "input.steps",
            "at most 200 steps are allowed, got 201",
        ),
        (
            "duplicate step name",
            json!({"name": "dup", "steps": [
                {"name": "a", "image": "alpine", "run": "true"},
                {"name": "a", "image": "alpine", "run": "true"}]}),
            "input.steps[1].name",
            "duplicate step name `a` (also used by input.steps[0])",
        ),
        (
            "run and command",
            step("both", |s| s["command"] = json!(["true"])),
            "input.steps[0].run",
            "not both",
        ),
        (
            "blank run",
            step("blank", |s| s["run"] = json!("  \n")),
            "input.steps[0].run",
            "must not be empty",
        ),
        (
            "run too long",
            step("long-run", |s| s["run"] = json!("x".repeat(64 * 1024 + 1))),
            "input.steps[0].run",
            "at most 65536 bytes",
        ),
        (
            "empty command",
            step("no-program", |s| {
                s["run"] = Value::Null;
                s["command"] = json!([]);
            }),
            "input.steps[0].command",
            "must name a program",
        ),
        (
            "too many arguments",
            step("many-args", |s| {
                s["run"] = Value::Null;
                s["command"] = json!(vec!["echo"; 257]);
            }),
            "input.steps[0].command",
            "at most 256 arguments",
        ),
        (
            "argument with NUL",
            step("nul-arg", |s| {
                s["run"] = Value::Null;
                s["command"] = json!(["echo", "a\u{0}b"]);
            }),
            "input.steps[0].command",
            "contain no NUL",
        ),
        (
            "bad secret name",
            step("bad-secret", |s| s["secrets"] = json!(["1PASSWORD"])),
            "input.steps[0].secrets[0]",
            "valid environment variable name",
        ),
        (
            "backoff too long",
            step("slow-retry", |s| s["retryBackoffSeconds"] = json!(3_601)),
            "input.steps[0].retryBackoffSeconds",
            "at most 3600",
        ),
        (
            "too many cache paths",
            step("many-caches", |s| {
                s["cachePaths"] = json!((0..11).map(|i| format!("/c{i}")).collect::<Vec<_>>())
            }),
            "input.steps[0].cachePaths",
            "at most 10 paths",
        ),
        (
            "cache path under /out",
            step("cache-out", |s| s["cachePaths"] = json!(["/out/cache"])),
            "input.steps[0].cachePaths[0]",
            "/in and /out are reserved",
        ),
        (
            "step depends on itself",
            step("self-dep", |s| s["dependsOn"] = json!(["a"])),
            "input.steps[0].dependsOn",
            "step `a` depends on itself",
        ),
        (
            "dependency listed twice",
            json!({"name": "twice", "steps": [
                {"name": "a", "image": "alpine", "run": "true"},
                {"name": "b", "image": "alpine", "run": "true", "dependsOn": ["a", "a"]}]}),
            "input.steps[1].dependsOn",
            "`a` listed twice",
        ),
    ]
}

#[tokio::test]
async fn each_validation_rule_refuses_its_field_and_writes_nothing() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let mut failures = Vec::new();
    for (what, input, field, reason) in cases() {
        let resp = env
            .gql_raw(
                env.token.as_deref(),
                "mutation($i: WorkflowInput!) { createWorkflow(input: $i) { id } }",
                json!({"i": input}),
            )
            .await?;
        let details: Vec<(String, String)> = resp["errors"][0]["extensions"]["details"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|d| {
                (
                    d["field"].as_str().unwrap_or_default().to_string(),
                    d["message"].as_str().unwrap_or_default().to_string(),
                )
            })
            .collect();
        let ok = error_code(&resp) == "VALIDATION"
            && details.len() == 1
            && details[0].0 == field
            && details[0].1.contains(reason);
        if !ok {
            failures.push(format!(
                "{what}: expected only {field} ({reason}), got {resp}"
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));

    let listed = env
        .gql(
            "{ workflows(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await?;
    assert_eq!(
        listed["workflows"]["edges"],
        json!([]),
        "a refused input was written: {listed}"
    );
    Ok(())
}
