//! Step outputs through the artifact store, end to end with the real binaries: a dependent
//! resumed on another worker (another work dir) or retried after the work dir is wiped still
//! reads its dependency's files, the size limits fail the step that exceeds them, and identical
//! content is stored once.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tms_tests::{EnvOptions, TestEnv, task};

const RUN_TIMEOUT: Duration = Duration::from_secs(90);

fn vars(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every worker's log, for failure messages.
fn worker_logs(env: &TestEnv) -> String {
    env.workers
        .iter()
        .enumerate()
        .map(|(i, w)| format!("--- worker {i} ---\n{}", w.log_text()))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Polls the run until `ready` holds for it; fails with the run and the worker logs after
/// `RUN_TIMEOUT`.
async fn wait_for(
    env: &TestEnv,
    run_id: &str,
    what: &str,
    ready: impl Fn(&Value) -> bool,
) -> anyhow::Result<Value> {
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let run = env.run(run_id).await?;
        if ready(&run) {
            return Ok(run);
        }
        if Instant::now() > deadline {
            anyhow::bail!("{what} never happened: {run}\n{}", worker_logs(env));
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Every blob file under `<store>/blobs`, as its path relative to the store.
fn blob_paths(store: &Path) -> Vec<String> {
    fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                walk(root, &p, out);
            } else {
                out.push(p.strip_prefix(root).unwrap().display().to_string());
            }
        }
    }
    let mut out = Vec::new();
    walk(store, &store.join("blobs"), &mut out);
    out.sort();
    out
}

fn sibling(env: &TestEnv, name: &str) -> PathBuf {
    env.work_dir.parent().expect("env dir").join(name)
}

#[tokio::test]
async fn a_step_resumed_on_another_worker_reads_its_dependency_from_the_store() -> anyhow::Result<()>
{
    let lease = vars(&[("TMS_RUN_LEASE_SECONDS", "3")]);
    let mut env = TestEnv::start_with(EnvOptions::worker_env(lease.clone())).await?;
    let wf = env
        .create_workflow(
            "resume-elsewhere",
            json!([
                {"name": "a", "image": "alpine",
                 "run": "echo \"payload of $TMS_RUN_ID\" > $TMS_OUT/data.txt; mkdir $TMS_OUT/sub; echo nested > $TMS_OUT/sub/n.txt"},
                {"name": "b", "image": "alpine", "dependsOn": ["a"],
                 "run": "[ $TMS_ATTEMPT -gt 1 ] || exec sleep 300; \
                         cat $TMS_IN/a/data.txt $TMS_IN/a/sub/n.txt; \
                         readlink -f $TMS_IN/a; \
                         [ -e $TMS_OUT/../../a ] && echo a-ran-here || echo a-not-here"}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    wait_for(&env, &run_id, "a succeeded and b running", |r| {
        task(r, "a")["status"] == "SUCCEEDED" && task(r, "b")["status"] == "RUNNING"
    })
    .await?;
    env.workers[0].kill9();
    // Nothing of the first worker's directory may help the second one.
    std::fs::remove_dir_all(&env.work_dir)?;

    let work2 = sibling(&env, "work2");
    let mut second = lease.clone();
    second.push(("TMS_WORK_DIR".into(), work2.display().to_string()));
    env.start_worker(&second).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    let logs = worker_logs(&env);
    assert_eq!(run["status"], "SUCCEEDED", "{run}\n{logs}");
    let (a, b) = (task(&run, "a"), task(&run, "b"));
    assert_eq!(
        a["attempt"], 1,
        "a finished before the kill: not re-run: {run}"
    );
    assert_eq!(b["attempt"], 2, "b was interrupted and ran again: {run}");
    assert!(run["deliveries"].as_i64().unwrap_or(0) >= 2, "{run}");
    let restored = work2.join(&run_id).join("b").join("deps").join("a");
    let expected = format!(
        "payload of {run_id}\nnested\n{}\na-not-here\n",
        restored
            .canonicalize()
            .unwrap_or(restored.clone())
            .display()
    );
    assert_eq!(b["logTail"], expected, "{run}\n{logs}");
    assert!(
        !env.work_dir.exists(),
        "the first worker's directory stayed gone"
    );
    Ok(())
}

#[tokio::test]
async fn retry_from_the_failed_step_reuses_stored_outputs_after_the_work_dir_is_wiped()
-> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let (flag, effects) = (sibling(&env, "fail-b"), sibling(&env, "effects"));
    std::fs::write(&flag, "")?;
    let wf = env
        .create_workflow(
            "retry-from-failed",
            json!([
                {"name": "a", "image": "alpine",
                 "run": format!("echo a-ran >> {}; echo from-a > $TMS_OUT/a.txt", effects.display())},
                {"name": "b", "image": "alpine", "dependsOn": ["a"],
                 "run": format!("cat $TMS_IN/a/a.txt; if [ -e {} ]; then echo failing on purpose; exit 7; fi",
                                flag.display())}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(task(&run, "a")["status"], "SUCCEEDED", "{run}");
    let b = task(&run, "b");
    assert_eq!(b["exitCode"], 7, "{run}");
    assert_eq!(b["logTail"], "from-a\nfailing on purpose\n", "{run}");

    // The failed run left a's /out on this worker; wipe it all.
    let local_a = env
        .work_dir
        .join(&run_id)
        .join("a")
        .join("out")
        .join("a.txt");
    assert!(
        local_a.exists(),
        "expected {} before the wipe",
        local_a.display()
    );
    for e in std::fs::read_dir(&env.work_dir)? {
        std::fs::remove_dir_all(e?.path())?;
    }
    std::fs::remove_file(&flag)?;

    let d = env
        .gql(
            "mutation($id:ID!){retryRun(id:$id, fromFailedStep:true){id status}}",
            json!({"id": run_id}),
        )
        .await?;
    assert_eq!(d["retryRun"]["id"], run_id.as_str(), "the same run: {d}");
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    let logs = worker_logs(&env);
    assert_eq!(run["status"], "SUCCEEDED", "{run}\n{logs}");
    let (a, b) = (task(&run, "a"), task(&run, "b"));
    assert_eq!(a["status"], "SUCCEEDED", "{run}");
    assert_eq!(a["attempt"], 1, "a is not re-run: {run}");
    assert_eq!(b["attempt"], 2, "{run}");
    assert_eq!(
        b["logTail"], "from-a\n",
        "b read a's stored output: {run}\n{logs}"
    );
    assert_eq!(std::fs::read_to_string(&effects)?, "a-ran\n");
    Ok(())
}

#[tokio::test]
async fn outputs_over_the_step_or_run_limit_fail_the_step_and_skip_its_dependents()
-> anyhow::Result<()> {
    let env = TestEnv::start_with(EnvOptions::worker_env(vars(&[
        ("TMS_ARTIFACT_MAX_STEP_BYTES", "1000"),
        ("TMS_ARTIFACT_MAX_RUN_BYTES", "1500"),
    ])))
    .await?;
    let step = |name: &str, deps: &[&str], run: &str| json!({"name": name, "image": "alpine", "dependsOn": deps, "run": run});
    let per_step = env
        .create_workflow(
            "too-big-step",
            json!([
                step("big", &[], "head -c 600 /dev/zero > $TMS_OUT/x; head -c 600 /dev/zero | tr '\\0' y > $TMS_OUT/y; echo wrote"),
                step("after", &["big"], "echo never"),
            ]),
        )
        .await?;
    let run = env
        .wait_run(&env.trigger(&per_step).await?, RUN_TIMEOUT)
        .await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    let big = task(&run, "big");
    assert_eq!(big["status"], "FAILED", "{run}");
    assert_eq!(big["exitCode"], 0, "the process itself succeeded: {run}");
    assert_eq!(big["logTail"], "wrote\n", "{run}");
    let err = big["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("TMS_ARTIFACT_MAX_STEP_BYTES") && err.contains("1000"),
        "{run}"
    );
    assert_eq!(task(&run, "after")["status"], "SKIPPED", "{run}");
    assert_eq!(task(&run, "after")["attempt"], 0, "{run}");

    let per_run = env
        .create_workflow(
            "too-big-run",
            json!([
                step("p1", &[], "head -c 800 /dev/zero > $TMS_OUT/p1"),
                step(
                    "p2",
                    &["p1"],
                    "head -c 800 /dev/zero | tr '\\0' z > $TMS_OUT/p2"
                ),
                step("p3", &["p2"], "echo never"),
            ]),
        )
        .await?;
    let run = env
        .wait_run(&env.trigger(&per_run).await?, RUN_TIMEOUT)
        .await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(task(&run, "p1")["status"], "SUCCEEDED", "{run}");
    let p2 = task(&run, "p2");
    assert_eq!(p2["status"], "FAILED", "{run}");
    let err = p2["error"].as_str().unwrap_or_default();
    assert!(
        err.contains("TMS_ARTIFACT_MAX_RUN_BYTES") && err.contains("1500"),
        "{run}"
    );
    assert_eq!(task(&run, "p3")["status"], "SKIPPED", "{run}");

    // Only p1's output reached the store: nothing of a refused /out is uploaded.
    let blobs = blob_paths(&env.artifacts_dir);
    let p1 = hex::encode(Sha256::digest([0u8; 800]));
    assert_eq!(blobs, [format!("blobs/{}/{p1}", &p1[..2])], "{blobs:?}");
    Ok(())
}

#[tokio::test]
async fn run_inputs_reach_steps_as_variables_and_a_file() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .create_workflow(
            "inputs",
            json!([{"name": "show", "image": "alpine",
                    "run": "echo \"$TMS_INPUT_NAME $TMS_INPUT_COUNT $TMS_INPUT_FLAG nested:${TMS_INPUT_NESTED-unset}\"; cat \"$TMS_INPUTS\"; echo"}]),
        )
        .await?;
    let trigger = "mutation($w:ID!,$i:JSON){triggerRun(workflowId:$w,inputs:$i){id}}";
    let inputs = json!({"name": "world", "count": 3, "flag": true, "nested": {"x": 1}});
    let d = env.gql(trigger, json!({"w": wf, "i": inputs})).await?;
    let run_id = d["triggerRun"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}\n{}", worker_logs(&env));
    let tail = task(&run, "show")["logTail"].as_str().unwrap_or_default();
    let lines: Vec<&str> = tail.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{run}");
    assert_eq!(lines[0], "world 3 true nested:unset", "{run}");
    let file: Value = serde_json::from_str(lines[1])
        .map_err(|e| anyhow::anyhow!("$TMS_INPUTS is not JSON ({e}): {run}"))?;
    assert_eq!(file, inputs, "{run}");

    let runs_of = |wf: &str| -> anyhow::Result<String> {
        let q = format!("SELECT count(*) FROM runs WHERE workflow_id = '{wf}'");
        Ok(tms_tests::psql(&env.database_url, &["-c", &q])?
            .trim()
            .to_string())
    };
    assert_eq!(runs_of(&wf)?, "1");
    let resp = env
        .gql_raw(
            env.token.as_deref(),
            trigger,
            json!({"w": wf, "i": {"my-key": 1}}),
        )
        .await?;
    assert_eq!(tms_tests::error_code(&resp), "VALIDATION", "{resp}");
    assert_eq!(
        resp["errors"][0]["extensions"]["field"], "inputs.my-key",
        "{resp}"
    );
    assert!(resp["data"].is_null(), "{resp}");
    assert_eq!(runs_of(&wf)?, "1", "a refused trigger writes no run");
    Ok(())
}

#[tokio::test]
async fn identical_content_is_stored_once() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let same = "the same bytes in every run and file\n";
    let wf = env
        .create_workflow(
            "dedup",
            json!([{"name": "write", "image": "alpine",
                    "run": format!("printf '{}' > $TMS_OUT/x; mkdir $TMS_OUT/d; cp $TMS_OUT/x $TMS_OUT/d/copy; \
                                    echo $TMS_RUN_ID > $TMS_OUT/unique", same.replace('\n', "\\n"))}]),
        )
        .await?;
    let mut runs = Vec::new();
    for _ in 0..2 {
        let id = env.trigger(&wf).await?;
        let run = env.wait_run(&id, RUN_TIMEOUT).await?;
        assert_eq!(run["status"], "SUCCEEDED", "{run}\n{}", worker_logs(&env));
        runs.push(id);
    }
    let key = |content: &str| {
        let sha = hex::encode(Sha256::digest(content.as_bytes()));
        format!("blobs/{}/{sha}", &sha[..2])
    };
    let mut expected = vec![
        key(same),
        key(&format!("{}\n", runs[0])),
        key(&format!("{}\n", runs[1])),
    ];
    expected.sort();
    let blobs = blob_paths(&env.artifacts_dir);
    assert_eq!(
        blobs, expected,
        "one blob for the shared content, one per unique file"
    );
    let stored = std::fs::read_to_string(env.artifacts_dir.join(key(same)))?;
    assert_eq!(stored, same);
    Ok(())
}
