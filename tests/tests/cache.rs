//! The step cache end to end: what hits, what misses and why (`explainCache`), outputs restored
//! for dependents, `noCache`, secrets kept out of keys and rows, and concurrent identical runs.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tms_tests::services::psql;
use tms_tests::{EnvOptions, TestEnv, task};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

/// A diamond (a → b, c → d) with two more consumers (b → f, c → e). Every step but `d` opts in
/// to caching; each appends its name to `log` when it really executes.
fn steps(log: &Path, b_run: &str, c_run: &str) -> Value {
    let env = json!([{"name": "EXEC_LOG", "value": log.display().to_string()}]);
    let step = |name: &str, deps: &[&str], run: &str, cache: bool| {
        json!({"name": name, "image": "alpine:3.20", "dependsOn": deps, "env": env,
               "cache": cache, "run": format!("{run}; echo {name} >> \"$EXEC_LOG\"")})
    };
    json!([
        step("a", &[], "echo hello > \"$TMS_OUT/greeting\"", true),
        step("b", &["a"], b_run, true),
        step("c", &["a"], c_run, true),
        step(
            "d",
            &["b", "c"],
            "echo \"$(cat $TMS_IN/b/upper) $(cat $TMS_IN/c/len)\"",
            false
        ),
        step("e", &["c"], "cp \"$TMS_IN/c/len\" \"$TMS_OUT/len2\"", true),
        step(
            "f",
            &["b"],
            "cat \"$TMS_IN/b/upper\" > \"$TMS_OUT/copy\"",
            true
        ),
    ])
}

const B_RUN: &str = "tr a-z A-Z < \"$TMS_IN/a/greeting\" > \"$TMS_OUT/upper\"";
const C_RUN: &str = "wc -c < \"$TMS_IN/a/greeting\" | tr -d ' ' > \"$TMS_OUT/len\"";

/// Names of the steps that executed since the log was last drained.
fn drain(log: &Path) -> BTreeSet<String> {
    let text = std::fs::read_to_string(log).unwrap_or_default();
    let _ = std::fs::remove_file(log);
    text.lines().map(str::to_string).collect()
}

fn set(names: &[&str]) -> BTreeSet<String> {
    names.iter().map(|s| s.to_string()).collect()
}

fn statuses(run: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = run["tasks"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap().into(),
                t["status"].as_str().unwrap().into(),
            )
        })
        .collect();
    v.sort();
    v
}

async fn trigger(env: &TestEnv, wf: &str, no_cache: bool) -> anyhow::Result<Value> {
    let d = env
        .gql(
            "mutation($w:ID!,$n:Boolean){triggerRun(workflowId:$w,noCache:$n){id}}",
            json!({"w": wf, "n": no_cache}),
        )
        .await?;
    let id = d["triggerRun"]["id"].as_str().unwrap().to_string();
    let run = env.wait_run(&id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    Ok(run)
}

async fn explain(env: &TestEnv, run: &Value, step: &str) -> anyhow::Result<Value> {
    let d = env
        .gql(
            "query($r:ID!,$s:String!){explainCache(runId:$r,step:$s){step key hit reason changed}}",
            json!({"r": run["id"], "s": step}),
        )
        .await?;
    Ok(d["explainCache"].clone())
}

#[tokio::test]
async fn cached_steps_are_skipped_restored_and_explained() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let log = env.artifacts_dir.with_file_name("exec.log");
    let wf = env
        .create_workflow("cached", steps(&log, B_RUN, C_RUN))
        .await?;

    // First run: everything executes.
    let r1 = trigger(&env, &wf, false).await?;
    assert_eq!(drain(&log), set(&["a", "b", "c", "d", "e", "f"]));
    assert_eq!(task(&r1, "d")["logTail"], "HELLO 6\n");
    let miss = explain(&env, &r1, "a").await?;
    assert_eq!(miss["hit"], false, "{miss}");
    assert!(
        miss["reason"]
            .as_str()
            .unwrap()
            .contains("no earlier cached success"),
        "{miss}"
    );

    // Second identical run: only the uncached step executes, and it still sees the restored
    // outputs of its cached dependencies.
    let r2 = trigger(&env, &wf, false).await?;
    assert_eq!(drain(&log), set(&["d"]), "only d may execute: {r2}");
    for s in ["a", "b", "c", "e", "f"] {
        let t = task(&r2, s);
        assert_eq!(
            (t["status"].as_str(), t["cached"].as_bool()),
            (Some("CACHED"), Some(true)),
            "{t}"
        );
    }
    assert_eq!(task(&r2, "d")["status"], "SUCCEEDED");
    assert_eq!(
        task(&r2, "d")["logTail"],
        "HELLO 6\n",
        "restored files reach d"
    );
    let hit = explain(&env, &r2, "b").await?;
    assert_eq!(hit["hit"], true, "{hit}");
    assert_eq!(hit["key"].as_str().map(str::len), Some(64), "{hit}");
    assert!(
        hit["reason"]
            .as_str()
            .unwrap()
            .contains(r1["id"].as_str().unwrap()),
        "{hit}"
    );
    let never = explain(&env, &r2, "d").await?;
    assert_eq!(never["hit"], false);
    assert!(
        never["reason"].as_str().unwrap().contains("cache: false"),
        "{never}"
    );
    assert_eq!(
        never["key"],
        Value::Null,
        "an uncached step is never looked up: {never}"
    );

    // A new version: b's command changes (and so does its output); c's command changes but
    // its output stays byte-identical. b, its consumer f and d run again; c runs again, but
    // e, which only reads c's unchanged output, still hits (content addressing).
    let v2 = steps(
        &log,
        &format!("{B_RUN} && echo more >> \"$TMS_OUT/upper\""),
        "echo 6 > \"$TMS_OUT/len\"",
    );
    env.gql(
        "mutation($id:ID!,$i:WorkflowInput!){updateWorkflow(id:$id,input:$i){id}}",
        json!({"id": wf, "i": {"name": "cached", "steps": v2}}),
    )
    .await?;
    let r3 = trigger(&env, &wf, false).await?;
    assert_eq!(drain(&log), set(&["b", "c", "d", "f"]), "{r3}");
    let st = statuses(&r3);
    assert_eq!(
        st,
        [
            ("a", "CACHED"),
            ("b", "SUCCEEDED"),
            ("c", "SUCCEEDED"),
            ("d", "SUCCEEDED"),
            ("e", "CACHED"),
            ("f", "SUCCEEDED")
        ]
        .map(|(a, b)| (a.to_string(), b.to_string()))
    );
    assert_eq!(task(&r3, "d")["logTail"], "HELLO\nmore 6\n");
    let b = explain(&env, &r3, "b").await?;
    assert_eq!(
        (b["hit"].clone(), b["changed"].clone()),
        (json!(false), json!(["command"])),
        "{b}"
    );
    let f = explain(&env, &r3, "f").await?;
    assert_eq!(f["changed"], json!(["output:b"]), "{f}");
    assert!(f["reason"].as_str().unwrap().contains("output:b"), "{f}");
    assert_eq!(explain(&env, &r3, "e").await?["hit"], true);

    // noCache executes everything and says so.
    let r4 = trigger(&env, &wf, true).await?;
    assert_eq!(drain(&log), set(&["a", "b", "c", "d", "e", "f"]), "{r4}");
    assert!(statuses(&r4).iter().all(|(_, s)| s == "SUCCEEDED"), "{r4}");
    let nc = explain(&env, &r4, "a").await?;
    assert!(nc["reason"].as_str().unwrap().contains("noCache"), "{nc}");

    // Inputs are part of the key.
    let d = env
        .gql(
            "mutation($w:ID!){triggerRun(workflowId:$w,inputs:{who:\"x\"}){id}}",
            json!({"w": wf}),
        )
        .await?;
    let id = d["triggerRun"]["id"].as_str().unwrap().to_string();
    let r5 = env.wait_run(&id, RUN_TIMEOUT).await?;
    assert_eq!(drain(&log), set(&["a", "b", "c", "d", "e", "f"]), "{r5}");
    assert_eq!(explain(&env, &r5, "a").await?["changed"], json!(["inputs"]));

    // An unknown step is a validation error on `step`.
    let bad = env
        .gql_raw(
            env.token.as_deref(),
            "query($r:ID!){explainCache(runId:$r,step:\"nope\"){hit}}",
            json!({"r": r5["id"]}),
        )
        .await?;
    assert_eq!(tms_tests::error_code(&bad), "VALIDATION", "{bad}");
    Ok(())
}

#[tokio::test]
async fn secrets_change_nothing_in_the_key_and_appear_in_no_row() -> anyhow::Result<()> {
    const FIRST: &str = "first-secret-value-4f1c";
    const SECOND: &str = "second-secret-value-9b2e";
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    env.start_worker(&[("TMS_SECRET_CACHE_TOKEN".into(), FIRST.into())])
        .await?;
    let wf = env
        .create_workflow(
            "cached-secret",
            json!([{"name": "s", "image": "alpine", "cache": true, "secrets": ["CACHE_TOKEN"],
                    "run": "test -n \"$CACHE_TOKEN\" && echo \"token is $CACHE_TOKEN\" && echo ok > \"$TMS_OUT/ok\""}]),
        )
        .await?;
    let r1 = trigger(&env, &wf, false).await?;
    assert_eq!(task(&r1, "s")["status"], "SUCCEEDED");
    assert_eq!(task(&r1, "s")["logTail"], "token is ***\n");

    // Another worker with another value of the secret: the key is the same, so it hits.
    env.workers[0].kill9();
    let port = env
        .start_worker(&[("TMS_SECRET_CACHE_TOKEN".into(), SECOND.into())])
        .await?;
    let r2 = trigger(&env, &wf, false).await?;
    assert_eq!(task(&r2, "s")["status"], "CACHED", "{r2}");
    let k1 = explain(&env, &r1, "s").await?["key"].clone();
    let k2 = explain(&env, &r2, "s").await?["key"].clone();
    assert_eq!(k1, k2);
    let metrics = reqwest::get(format!("http://127.0.0.1:{port}/metrics"))
        .await?
        .text()
        .await?;
    assert!(
        metrics.contains("tms_cache_lookups_total{result=\"hit\"} 1"),
        "the hit is counted: {}",
        metrics
            .lines()
            .filter(|l| l.contains("cache"))
            .collect::<Vec<_>>()
            .join("\n")
    );

    for table in [
        "tasks",
        "cache_entries",
        "artifact_manifests",
        "run_events",
        "runs",
    ] {
        let sql = format!(
            "SELECT count(*) FROM {table} x WHERE row_to_json(x)::text LIKE '%first-secret%' \
             OR row_to_json(x)::text LIKE '%second-secret%'"
        );
        let n = psql(&env.database_url, &["-c", &sql])?;
        assert_eq!(n.trim(), "0", "a secret value is stored in {table}");
    }
    Ok(())
}

#[tokio::test]
async fn concurrent_identical_runs_leave_one_sound_entry() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .create_workflow(
            "cached-race",
            json!([
                {"name": "a", "image": "alpine", "cache": true,
                 "run": "seq 1 2000 > \"$TMS_OUT/numbers\""},
                {"name": "b", "image": "alpine", "dependsOn": ["a"],
                 "run": "sha256sum < \"$TMS_IN/a/numbers\" | cut -c1-16"}
            ]),
        )
        .await?;
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(env.trigger(&wf).await?);
    }
    let mut tails = BTreeSet::new();
    for id in &ids {
        let run = env.wait_run(id, RUN_TIMEOUT).await?;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
        tails.insert(task(&run, "b")["logTail"].as_str().unwrap().to_string());
    }
    let entries = psql(
        &env.database_url,
        &["-c", "SELECT count(*) FROM cache_entries"],
    )?;
    assert_eq!(entries.trim(), "1", "one key, one entry");
    // A later run hits, and its dependent reads the same bytes every racer produced.
    let run = env.wait_run(&env.trigger(&wf).await?, RUN_TIMEOUT).await?;
    assert_eq!(task(&run, "a")["status"], "CACHED", "{run}");
    tails.insert(task(&run, "b")["logTail"].as_str().unwrap().to_string());
    assert_eq!(tails.len(), 1, "every run saw identical outputs: {tails:?}");
    Ok(())
}
