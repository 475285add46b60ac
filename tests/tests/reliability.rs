//! Reliability end to end, through the real binaries: per-workflow run limits, graceful
//! shutdown of a worker (running steps finish, the rest is handed back, exit 0) and of the api
//! (WebSockets closed with 1001, exit 0). Crash and outage faults are in `chaos.rs`.

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tms_tests::ws::{GqlWs, WsEvent};
use tms_tests::{EnvOptions, TestEnv, error_code, services::psql, task};

fn sigterm(pid: u32) {
    // SAFETY: sending a signal to a child process this test started.
    unsafe {
        libc::kill(pid as i32, libc::SIGTERM);
    }
}

/// Waits for the child to exit (bounded) and returns its exit code.
fn wait_exit(child: &mut std::process::Child, within: Duration) -> Result<Option<i32>> {
    let deadline = Instant::now() + within;
    loop {
        if let Some(status) = child.try_wait()? {
            return Ok(status.code());
        }
        if Instant::now() > deadline {
            bail!("process {} still running after {within:?}", child.id());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_task_status(env: &TestEnv, run: &str, step: &str, want: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = env.run(run).await?;
        if task(&r, step)["status"] == want {
            return Ok(r);
        }
        if Instant::now() > deadline {
            bail!("step {step} of run {run} never became {want}: {r}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn runs_over_max_concurrent_runs_wait_their_turn_in_order() -> Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .gql(
            "mutation($i: WorkflowInput!) { createWorkflow(input: $i) { id maxConcurrentRuns rateLimit { runs perSeconds } } }",
            json!({"i": {"name": "one-at-a-time", "maxConcurrentRuns": 1,
                "rateLimit": {"runs": 100, "perSeconds": 60},
                "steps": [{"name": "a", "image": "alpine:3.20", "run": "sleep 0.4"}]}}),
        )
        .await?;
    let created = &wf["createWorkflow"];
    assert_eq!(created["maxConcurrentRuns"], 1, "{wf}");
    assert_eq!(
        created["rateLimit"],
        json!({"runs": 100, "perSeconds": 60}),
        "{wf}"
    );
    let wf_id = created["id"].as_str().context("workflow id")?.to_string();
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(env.trigger(&wf_id).await?);
    }
    for r in &runs {
        let done = env.wait_run(r, Duration::from_secs(60)).await?;
        assert_eq!(done["status"], "SUCCEEDED", "{done}");
    }
    // Straight from Postgres: the runs executed one after another, in creation order.
    let rows = psql(
        &env.database_url,
        &[
            "-Atc",
            &format!(
                "SELECT id, extract(epoch FROM started_at), extract(epoch FROM finished_at) \
                 FROM runs WHERE workflow_id = '{wf_id}' ORDER BY created_at, id"
            ),
        ],
    )?;
    let spans: Vec<(String, f64, f64)> = rows
        .lines()
        .map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (
                f[0].to_string(),
                f[1].parse().unwrap_or(0.0),
                f[2].parse().unwrap_or(0.0),
            )
        })
        .collect();
    assert_eq!(spans.len(), 3, "{rows}");
    for pair in spans.windows(2) {
        assert!(
            pair[1].1 >= pair[0].2,
            "run {} started before run {} finished (limit 1): {spans:?}",
            pair[1].0,
            pair[0].0
        );
    }

    // Bad limits: every problem named, nothing written.
    let bad = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($i: WorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"name": "bad-limits", "maxConcurrentRuns": 0,
                "rateLimit": {"runs": 1, "perSeconds": 0},
                "steps": [{"name": "a", "image": "alpine:3.20", "run": "true"}]}}),
        )
        .await?;
    assert_eq!(error_code(&bad), "VALIDATION", "{bad}");
    let fields: Vec<&str> = bad["errors"][0]["extensions"]["details"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|e| e["field"].as_str())
        .collect();
    assert!(
        fields.contains(&"input.maxConcurrentRuns")
            && fields.contains(&"input.rateLimit.perSeconds"),
        "{bad}"
    );
    let listed = env
        .gql(
            "{ workflows(first: 100) { edges { node { name } } } }",
            json!({}),
        )
        .await?;
    assert!(!listed.to_string().contains("bad-limits"), "{listed}");
    Ok(())
}

#[tokio::test]
async fn sigterm_lets_a_running_step_finish_hands_the_run_back_and_exits_0() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::worker_env(vec![(
        "TMS_SHUTDOWN_GRACE_SECONDS".into(),
        "20".into(),
    )]))
    .await?;
    let marker = env.work_dir.join("a-finished");
    let wf = env
        .create_workflow(
            "drain",
            json!([
                {"name": "a", "image": "alpine:3.20",
                 "run": format!("sleep 1.5; echo $TMS_ATTEMPT >> {}", marker.display())},
                {"name": "b", "image": "alpine:3.20", "dependsOn": ["a"], "run": "true"}
            ]),
        )
        .await?;
    let run = env.trigger(&wf).await?;
    wait_task_status(&env, &run, "a", "RUNNING").await?;
    let worker = env.workers.first_mut().context("worker")?;
    sigterm(worker.pid());
    let code = wait_exit(&mut worker.child, Duration::from_secs(20))?;
    worker.killed = true;
    let log = worker.log_text();
    assert_eq!(code, Some(0), "worker exit code; log:\n{log}");
    assert!(
        log.contains("handed back"),
        "the run was handed back; log:\n{log}"
    );
    let r = env.run(&run).await?;
    assert_eq!(
        task(&r, "a")["status"],
        "SUCCEEDED",
        "the running step finished: {r}"
    );
    assert_eq!(
        task(&r, "b")["status"],
        "PENDING",
        "no new step started while draining: {r}"
    );

    // Another worker resumes the run at once; the finished step is not run again.
    env.start_worker(&[]).await?;
    let done = env.wait_run(&run, Duration::from_secs(30)).await?;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    assert_eq!(
        std::fs::read_to_string(&marker)?.trim(),
        "1",
        "step a ran exactly once"
    );
    Ok(())
}

#[tokio::test]
async fn sigterm_closes_websockets_with_1001_and_the_api_exits_0() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let token = env.token.clone().context("token")?;
    let mut ws = GqlWs::connect(env.api_port, &token).await?;
    ws.subscribe("1", "subscription { runEvents { seq } }", json!({}))
        .await?;
    let api = env.api.as_mut().context("api")?;
    let started = Instant::now();
    sigterm(api.pid());
    match ws.next(Duration::from_secs(10)).await? {
        WsEvent::Closed(code, _) => assert_eq!(code, Some(1001)),
        other => panic!("expected close 1001, got {other:?}"),
    }
    let code = wait_exit(&mut api.child, Duration::from_secs(20))?;
    api.killed = true;
    assert_eq!(code, Some(0), "api exit code; log:\n{}", api.log_text());
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "an idle api stops at once, not after the grace: {:?}",
        started.elapsed()
    );
    Ok(())
}

#[tokio::test]
async fn a_run_whose_job_keeps_failing_to_start_is_dead_lettered() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let wf = env
        .create_workflow(
            "poison",
            json!([{"name": "a", "image": "alpine:3.20", "run": "true"}]),
        )
        .await?;
    let run = env.trigger(&wf).await?;
    // A poison payload: the stored definition no longer reads as a workflow, so every
    // delivery fails before any step starts.
    psql(
        &env.database_url,
        &[
            "-c",
            &format!(
                "UPDATE workflow_versions SET spec = '{{\"steps\": 5}}' WHERE workflow_id = '{wf}'"
            ),
        ],
    )?;
    env.start_worker(&[
        ("TMS_MAX_DELIVERIES".into(), "3".into()),
        ("TMS_RECONCILE_SECONDS".into(), "1".into()),
        ("TMS_LOST_JOB_SECONDS".into(), "1".into()),
    ])
    .await?;
    let done = env.wait_run(&run, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "FAILED", "{done}");
    let r = env
        .gql(
            "query($id: ID!) { run(id: $id) { deadLetteredAt deliveries error } queueStats { dead } }",
            json!({"id": run}),
        )
        .await?;
    assert!(r["run"]["deadLetteredAt"].is_string(), "{r}");
    assert_eq!(
        r["run"]["deliveries"], 4,
        "given up on the delivery after the third: {r}"
    );
    assert!(
        r["run"]["error"]
            .as_str()
            .unwrap_or("")
            .contains("dead-lettered"),
        "{r}"
    );
    assert!(r["queueStats"]["dead"].as_i64().unwrap_or(0) >= 1, "{r}");
    Ok(())
}
