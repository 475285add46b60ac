//! Progress tracking end to end, through a real WebSocket client: replay + live streams with no
//! gap or duplicate, across api instances and restarts; cancellation; retry; ETA.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tms_tests::ws::{GqlWs, PROGRESS_QUERY, WsEvent, open};
use tms_tests::{TestEnv, chain, error_code, task};

const T: Duration = Duration::from_secs(60);

fn seqs(events: &[Value]) -> Vec<i64> {
    events.iter().map(|e| e["seq"].as_i64().unwrap()).collect()
}

fn diamond() -> Value {
    json!([
        {"name": "a", "image": "alpine", "run": "echo '::progress 50 half way'; echo x > $TMS_OUT/x"},
        {"name": "b", "image": "alpine", "dependsOn": ["a"], "run": "cat $TMS_IN/a/x"},
        {"name": "c", "image": "alpine", "dependsOn": ["a"], "run": "cat $TMS_IN/a/x"},
        {"name": "d", "image": "alpine", "dependsOn": ["b", "c"], "run": "true"}
    ])
}

/// Polls until a task of the run reaches `status`.
async fn wait_task(env: &TestEnv, run_id: &str, step: &str, status: &str) -> anyhow::Result<Value> {
    let deadline = Instant::now() + T;
    loop {
        let run = env.run(run_id).await?;
        if task(&run, step)["status"] == status {
            return Ok(run);
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{step} never reached {status}: {run}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn the_event_stream_of_a_diamond_is_complete_ordered_and_ends_with_the_run()
-> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env.create_workflow("diamond", diamond()).await?;
    let run_id = env.trigger(&wf).await?;
    let mut ws = GqlWs::connect(env.api_port, env.token.as_deref().unwrap()).await?;
    ws.subscribe("1", PROGRESS_QUERY, json!({"r": run_id, "a": 0}))
        .await?;
    let (events, completed) = ws.collect_progress(1000, T).await?;
    assert!(completed, "the subscription completes when the run ends");
    assert_eq!(
        seqs(&events),
        (1..=events.len() as i64).collect::<Vec<_>>(),
        "{events:?}"
    );
    assert_eq!(events[0]["status"], "QUEUED");
    let last = events.last().unwrap();
    assert_eq!(
        (last["kind"].as_str(), last["status"].as_str()),
        (Some("RUN"), Some("SUCCEEDED"))
    );
    assert_eq!(last["percent"], 100.0);
    for step in ["a", "b", "c", "d"] {
        let states: Vec<&str> = events
            .iter()
            .filter(|e| e["kind"] == "TASK" && e["step"] == step)
            .map(|e| e["status"].as_str().unwrap())
            .collect();
        assert_eq!(states, ["RUNNING", "SUCCEEDED"], "{step}: {events:?}");
    }
    let progress: Vec<&Value> = events.iter().filter(|e| e["kind"] == "PROGRESS").collect();
    assert_eq!(progress.len(), 1, "{events:?}");
    assert_eq!(progress[0]["step"], "a");
    assert_eq!(progress[0]["stepPercent"], 50.0);
    assert_eq!(progress[0]["message"], "50% half way");
    // Percent never goes backwards.
    let pct: Vec<f64> = events
        .iter()
        .map(|e| e["percent"].as_f64().unwrap())
        .collect();
    assert!(pct.windows(2).all(|w| w[1] >= w[0]), "{pct:?}");
    // The stream equals what Postgres holds.
    assert_eq!(env.events(&run_id)?.len(), events.len());

    // Without afterSeq a finished run yields one snapshot and completes.
    ws.subscribe("2", PROGRESS_QUERY, json!({"r": run_id}))
        .await?;
    let (snap, completed) = ws.collect_progress(10, T).await?;
    assert!(completed);
    assert_eq!(snap.len(), 1);
    assert_eq!(
        (snap[0]["kind"].as_str(), snap[0]["status"].as_str()),
        (Some("SNAPSHOT"), Some("SUCCEEDED"))
    );
    Ok(())
}

#[tokio::test]
async fn resuming_with_after_seq_yields_exactly_the_missing_events() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let steps = chain(6, "sleep 0.2");
    let wf = env.create_workflow("chain", steps).await?;
    let run_id = env.trigger(&wf).await?;
    let token = env.token.clone().unwrap();

    let mut first = GqlWs::connect(env.api_port, &token).await?;
    first
        .subscribe("1", PROGRESS_QUERY, json!({"r": run_id, "a": 0}))
        .await?;
    let (part1, done) = first.collect_progress(5, T).await?;
    assert!(!done);
    first.close().await;
    let resume_at = part1.last().unwrap()["seq"].as_i64().unwrap();

    let mut second = GqlWs::connect(env.api_port, &token).await?;
    second
        .subscribe("1", PROGRESS_QUERY, json!({"r": run_id, "a": resume_at}))
        .await?;
    let (part2, done) = second.collect_progress(1000, T).await?;
    assert!(done);
    let mut all = seqs(&part1);
    all.extend(seqs(&part2));
    assert_eq!(
        all,
        (1..=all.len() as i64).collect::<Vec<_>>(),
        "no gap, no duplicate"
    );
    assert_eq!(all.len(), env.events(&run_id)?.len());
    Ok(())
}

#[tokio::test]
async fn a_subscriber_on_one_api_sees_runs_triggered_through_another() -> anyhow::Result<()> {
    let mut env = TestEnv::start().await?;
    let other = env.start_extra_api().await?;
    let wf = env.create_workflow("across", diamond()).await?;
    let token = env.token.clone().unwrap();

    let mut ws = GqlWs::connect(other, &token).await?;
    ws.subscribe(
        "all",
        "subscription($w: ID) { runEvents(workflowId: $w) { seq runId kind status workflowId } }",
        json!({"w": wf}),
    )
    .await?;
    // The subscription is registered once the server has processed it.
    ws.barrier().await?;

    let run_id = env.trigger(&wf).await?; // through the first api
    let mut statuses = Vec::new();
    while statuses.last().map(String::as_str) != Some("SUCCEEDED") {
        match ws.next(T).await? {
            WsEvent::Next(d) => {
                let e = &d["runEvents"];
                assert_eq!(e["runId"], run_id);
                assert_eq!(e["kind"], "RUN");
                assert_eq!(e["workflowId"], wf);
                statuses.push(e["status"].as_str().unwrap().to_string());
            }
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(statuses, ["QUEUED", "RUNNING", "SUCCEEDED"]);

    // runProgress through the other api replays the same events.
    let mut ws2 = GqlWs::connect(other, &token).await?;
    ws2.subscribe("p", PROGRESS_QUERY, json!({"r": run_id, "a": 0}))
        .await?;
    let (events, done) = ws2.collect_progress(1000, T).await?;
    assert!(done);
    assert_eq!(events.len(), env.events(&run_id)?.len());
    Ok(())
}

#[tokio::test]
async fn an_api_restarted_mid_run_loses_no_event_for_resuming_subscribers() -> anyhow::Result<()> {
    let mut env = TestEnv::start().await?;
    let steps = chain(8, "sleep 0.3");
    let wf = env.create_workflow("long", steps).await?;
    let run_id = env.trigger(&wf).await?;
    let token = env.token.clone().unwrap();
    let mut ws = GqlWs::connect(env.api_port, &token).await?;
    ws.subscribe("1", PROGRESS_QUERY, json!({"r": run_id, "a": 0}))
        .await?;
    let (before, done) = ws.collect_progress(4, T).await?;
    assert!(!done);

    env.restart_api().await?;
    // The old connection died with the process.
    loop {
        match ws.next(T).await {
            Ok(WsEvent::Closed(..)) | Err(_) => break,
            Ok(WsEvent::Next(_)) => continue,
            Ok(other) => panic!("unexpected {other:?}"),
        }
    }
    let last = before.last().unwrap()["seq"].as_i64().unwrap();
    let mut ws = GqlWs::connect(env.api_port, &token).await?;
    ws.subscribe("1", PROGRESS_QUERY, json!({"r": run_id, "a": last}))
        .await?;
    let (after, done) = ws.collect_progress(1000, T).await?;
    assert!(done);
    let mut all = seqs(&before);
    all.extend(seqs(&after));
    assert_eq!(all, (1..=all.len() as i64).collect::<Vec<_>>());
    assert_eq!(after.last().unwrap()["status"], "SUCCEEDED");
    Ok(())
}

#[tokio::test]
async fn cancel_stops_a_running_step_within_a_second() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let pidfile = env.work_dir.join("..").join("sleeper-pid");
    let wf = env
        .create_workflow(
            "cancellable",
            json!([
                {"name": "sleeper", "image": "alpine", "run": format!("echo $$ > {}; exec sleep 600", pidfile.display())},
                {"name": "after", "image": "alpine", "dependsOn": ["sleeper"], "run": "true"}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    wait_task(&env, &run_id, "sleeper", "RUNNING").await?;
    let deadline = Instant::now() + T;
    while !pidfile.exists() {
        anyhow::ensure!(Instant::now() < deadline, "step never wrote its pid");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;

    let started = Instant::now();
    let resp = env
        .gql(
            "mutation($id: ID!) { cancelRun(id: $id) { status } }",
            json!({"id": run_id}),
        )
        .await?;
    let took = started.elapsed();
    assert_eq!(resp["cancelRun"]["status"], "CANCELLED", "{resp}");
    assert!(took < Duration::from_secs(1), "cancel took {took:?}");
    assert!(
        !std::path::Path::new(&format!("/proc/{pid}")).exists() || proc_state(pid) == Some('Z'),
        "the step process still runs"
    );
    println!("cancelRun -> CANCELLED in {took:?}");

    let run = env.run(&run_id).await?;
    assert_eq!(task(&run, "sleeper")["status"], "CANCELLED");
    assert_eq!(task(&run, "after")["status"], "CANCELLED");
    // Idempotent.
    let again = env
        .gql(
            "mutation($id: ID!) { cancelRun(id: $id) { status } }",
            json!({"id": run_id}),
        )
        .await?;
    assert_eq!(again["cancelRun"]["status"], "CANCELLED");
    let events = env.events(&run_id)?;
    assert_eq!(
        events
            .iter()
            .filter(|e| e.1 == "run" && e.2 == "cancelled")
            .count(),
        1
    );
    Ok(())
}

fn proc_state(pid: i32) -> Option<char> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat.rsplit_once(") ")?.1.chars().next()
}

#[tokio::test]
async fn a_queued_run_without_a_worker_is_cancelled_directly() -> anyhow::Result<()> {
    let env = TestEnv::start_with(tms_tests::EnvOptions {
        start_worker: false,
        ..Default::default()
    })
    .await?;
    let wf = env
        .create_workflow(
            "nobody",
            json!([{"name": "s", "image": "alpine", "run": "true"}]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let resp = env
        .gql(
            "mutation($id: ID!) { cancelRun(id: $id) { status tasks { status } } }",
            json!({"id": run_id}),
        )
        .await?;
    assert_eq!(resp["cancelRun"]["status"], "CANCELLED");
    assert_eq!(resp["cancelRun"]["tasks"][0]["status"], "CANCELLED");
    let unknown = env
        .gql_raw(
            env.token.as_deref(),
            "mutation { cancelRun(id: \"00000000-0000-0000-0000-000000000000\") { id } }",
            json!({}),
        )
        .await?;
    assert_eq!(error_code(&unknown), "NOT_FOUND");
    Ok(())
}

#[tokio::test]
async fn retry_from_the_failed_step_reruns_only_what_failed_and_reuses_outputs()
-> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let dir = env.work_dir.join("..");
    let effects = dir.join("effects");
    let gate = dir.join("gate");
    let wf = env
        .create_workflow(
            "retryable",
            json!([
                {"name": "build", "image": "alpine", "run": format!("echo build >> {e}; echo artifact > $TMS_OUT/a", e = effects.display())},
                {"name": "test", "image": "alpine", "dependsOn": ["build"],
                 "run": format!("echo test >> {e}; test -f {g} && cat $TMS_IN/build/a", e = effects.display(), g = gate.display())},
                {"name": "ship", "image": "alpine", "dependsOn": ["test"], "run": format!("echo ship >> {}", effects.display())}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, T).await?;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(task(&run, "ship")["status"], "SKIPPED");

    std::fs::write(&gate, "open")?;
    let q =
        "mutation($id: ID!, $f: Boolean) { retryRun(id: $id, fromFailedStep: $f) { id status } }";
    let retried = env.gql(q, json!({"id": run_id, "f": true})).await?;
    assert_eq!(retried["retryRun"]["id"], run_id, "the same run is retried");
    let run = env.wait_run(&run_id, T).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(
        task(&run, "build")["attempt"],
        1,
        "succeeded steps are not re-run"
    );
    assert_eq!(task(&run, "test")["attempt"], 2);
    assert_eq!(
        task(&run, "test")["logTail"],
        "artifact\n",
        "the earlier output was reused"
    );
    assert_eq!(task(&run, "ship")["attempt"], 1);
    let lines: Vec<String> = std::fs::read_to_string(&effects)?
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, ["build", "test", "test", "ship"]);

    // A succeeded run has nothing to retry from a failed step; a full retry is a new run.
    let nothing = env
        .gql_raw(env.token.as_deref(), q, json!({"id": run_id, "f": true}))
        .await?;
    assert_eq!(error_code(&nothing), "CONFLICT");
    let fresh = env.gql(q, json!({"id": run_id, "f": false})).await?;
    assert_ne!(fresh["retryRun"]["id"], run_id);
    let fresh = env
        .wait_run(fresh["retryRun"]["id"].as_str().unwrap(), T)
        .await?;
    assert_eq!(fresh["status"], "SUCCEEDED");
    assert_eq!(task(&fresh, "build")["attempt"], 1);
    Ok(())
}

#[tokio::test]
async fn eta_is_null_without_history_and_close_to_reality_with_stable_steps() -> anyhow::Result<()>
{
    let env = TestEnv::start().await?;
    let steps = chain(4, "sleep 1");
    let wf = env.create_workflow("steady", steps).await?;
    let token = env.token.clone().unwrap();

    // First run: no history, so no ETA until the end.
    let first = env.trigger(&wf).await?;
    let mut ws = GqlWs::connect(env.api_port, &token).await?;
    ws.subscribe("1", PROGRESS_QUERY, json!({"r": first, "a": 0}))
        .await?;
    let (events, done) = ws.collect_progress(1000, T).await?;
    assert!(done);
    for e in events
        .iter()
        .filter(|e| e["percent"].as_f64() < Some(100.0))
    {
        assert!(
            e["etaSeconds"].is_null(),
            "made-up ETA without history: {e}"
        );
    }

    // Second run: the ETA after the first step is within 25 % of the real remaining time.
    let second = env.trigger(&wf).await?;
    ws.subscribe("2", PROGRESS_QUERY, json!({"r": second, "a": 0}))
        .await?;
    let mut eta_at_first_step: Option<(f64, Instant)> = None;
    loop {
        match ws.next(T).await? {
            WsEvent::Next(d) => {
                let e = &d["runProgress"];
                if e["kind"] == "TASK" && e["step"] == "s0" && e["status"] == "SUCCEEDED" {
                    let eta = e["etaSeconds"].as_f64().expect("an ETA with history");
                    eta_at_first_step = Some((eta, Instant::now()));
                }
            }
            WsEvent::Complete => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let (eta, at) = eta_at_first_step.expect("saw s0 succeed");
    let real = at.elapsed().as_secs_f64();
    let error = (eta - real).abs() / real;
    println!(
        "ETA after step 1: predicted {eta:.2}s, real {real:.2}s ({:.0}% off)",
        error * 100.0
    );
    assert!(error <= 0.25, "ETA {eta:.2}s vs real {real:.2}s");
    let run = env.run(&second).await?;
    assert_eq!(run["etaSeconds"], 0.0);
    Ok(())
}

#[tokio::test]
async fn subscriptions_refuse_missing_or_bad_tokens_with_4403() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    for payload in [json!({}), json!({"Authorization": "Bearer not-a-token"})] {
        let socket = open(env.api_port).await?;
        let mut ws = GqlWs::from_socket(socket);
        ws.send(json!({"type": "connection_init", "payload": payload}))
            .await?;
        match ws.next(T).await? {
            WsEvent::Closed(code, _) => assert_eq!(code, Some(4403)),
            other => panic!("expected close 4403, got {other:?}"),
        }
    }
    Ok(())
}

#[tokio::test]
async fn tms_watch_follows_a_run_to_its_end() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env.create_workflow("watched", diamond()).await?;
    let run_id = env.trigger(&wf).await?;
    let out = tokio::process::Command::new(tms_tests::bin_dir().join("tms"))
        .args([
            "watch",
            &run_id,
            "--plain",
            "--url",
            &format!("http://127.0.0.1:{}", env.api_port),
        ])
        .env("TMS_TOKEN", env.token.as_deref().unwrap())
        .output()
        .await?;
    let stdout = String::from_utf8(out.stdout)?;
    let stderr = String::from_utf8(out.stderr)?;
    assert!(out.status.success(), "tms watch failed: {stdout}\n{stderr}");
    let seqs: Vec<i64> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix('#')?.split_whitespace().next()?.parse().ok())
        .collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as i64).collect::<Vec<_>>(),
        "{stdout}"
    );
    assert_eq!(seqs.len(), env.events(&run_id)?.len());
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("progress a running") && l.contains("50% half way")),
        "{stdout}"
    );
    assert!(
        stderr.contains(&format!("run {run_id}: succeeded")),
        "{stderr}"
    );
    Ok(())
}

#[tokio::test]
async fn a_subscriber_that_stops_reading_is_dropped_with_a_clear_signal() -> anyhow::Result<()> {
    let env = TestEnv::start_with(tms_tests::EnvOptions {
        start_worker: false,
        ..Default::default()
    })
    .await?;
    let token = env.token.clone().unwrap();
    let mut ws = GqlWs::connect(env.api_port, &token).await?;
    ws.subscribe(
        "all",
        "subscription { runEvents { seq message } }",
        json!({}),
    )
    .await?;
    // Prove the subscription is live before flooding.
    ws.barrier().await?;

    // Flood the bus while this client reads nothing: more events than the hub buffers, each
    // big enough that socket buffers fill too.
    let client = redis::Client::open(env.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    let padding = "x".repeat(2000);
    for n in 0..12_000i64 {
        let ev = json!({
            "run_id": uuid::Uuid::new_v4(), "seq": n, "kind": "run", "status": "running", "step": null,
            "percent": 0.0, "eta_seconds": null, "message": padding, "at": "2026-01-01T00:00:00Z",
            "workflow_id": uuid::Uuid::new_v4(), "step_percent": null
        });
        redis::cmd("PUBLISH")
            .arg(tms_tests::EVENTS_CHANNEL)
            .arg(ev.to_string())
            .query_async::<()>(&mut conn)
            .await?;
    }
    // Now read: what was buffered arrives, then the server's verdict.
    let deadline = Instant::now() + Duration::from_secs(60);
    let mut received = 0;
    let verdict = loop {
        anyhow::ensure!(
            Instant::now() < deadline,
            "never dropped after {received} events"
        );
        match ws.next(T).await? {
            WsEvent::Next(_) => received += 1,
            WsEvent::Error(e) => break format!("error {}", e[0]["extensions"]["code"]),
            WsEvent::Closed(code, reason) => break format!("close {code:?} {reason}"),
            WsEvent::Complete => break "complete".into(),
        }
    };
    println!("slow subscriber: {received} events delivered, then {verdict}");
    assert!(
        received < 12_000,
        "a subscriber that stopped reading got everything"
    );
    assert!(
        verdict == "error \"SLOW_CONSUMER\"" || verdict.starts_with("close Some(4008)"),
        "{verdict}"
    );
    // The api is fine and serves others.
    let me = env.gql("{ me { email } }", json!({})).await?;
    assert_eq!(me["me"]["email"], tms_tests::ADMIN_EMAIL);
    Ok(())
}
