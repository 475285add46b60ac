//! The spine end to end: GraphQL → Postgres → outbox → Redis/apalis → worker → local executor.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tms_tests::{EnvOptions, PrivateRedis, TestEnv, error_code, task};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn diamond() -> Value {
    json!([
        {"name": "a", "image": "alpine:3.20", "run": "echo hello > \"$TMS_OUT/greeting\""},
        {"name": "b", "image": "alpine:3.20", "dependsOn": ["a"],
         "run": "cat \"$TMS_IN/a/greeting\" | tr a-z A-Z > \"$TMS_OUT/upper\""},
        {"name": "c", "image": "alpine:3.20", "dependsOn": ["a"],
         "command": ["sh", "-c", "wc -c < \"$TMS_IN/a/greeting\" | tr -d ' ' > \"$TMS_OUT/len\""]},
        {"name": "d", "image": "alpine:3.20", "dependsOn": ["b", "c"],
         "run": "echo \"$(cat $TMS_IN/b/upper) $(cat $TMS_IN/c/len)\""}
    ])
}

#[tokio::test]
async fn diamond_dag_passes_files_between_steps_and_succeeds() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env.create_workflow("diamond", diamond()).await?;
    let started = Instant::now();
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    println!(
        "4-step diamond: trigger -> finished in {:?}",
        started.elapsed()
    );

    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(run["percent"], 100.0);
    for name in ["a", "b", "c", "d"] {
        let t = task(&run, name);
        assert_eq!(t["status"], "SUCCEEDED", "{t}");
        assert_eq!(t["attempt"], 1);
        assert_eq!(t["exitCode"], 0);
    }
    // d saw b's and c's outputs, which were computed from a's.
    assert_eq!(task(&run, "d")["logTail"], "HELLO 6\n");

    // b and c only started after a finished; d after both.
    let ts = |n: &str, f: &str| task(&run, n)[f].as_str().unwrap().to_string();
    assert!(ts("b", "startedAt") >= ts("a", "finishedAt"));
    assert!(ts("c", "startedAt") >= ts("a", "finishedAt"));
    assert!(ts("d", "startedAt") >= ts("b", "finishedAt"));
    assert!(ts("d", "startedAt") >= ts("c", "finishedAt"));

    // Every state change is an event, numbered 1..n without gaps.
    let events = env.events(&run_id)?;
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    assert_eq!(events.first().map(|e| e.2.as_str()), Some("queued"));
    assert_eq!(
        events.last().map(|e| (e.1.as_str(), e.2.as_str())),
        Some(("run", "succeeded"))
    );
    let task_events = events.iter().filter(|e| e.1 == "task").count();
    assert_eq!(task_events, 8, "running + succeeded per step: {events:?}");
    Ok(())
}

#[tokio::test]
async fn failing_step_fails_the_run_and_skips_its_dependents() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .create_workflow(
            "fails",
            json!([
                {"name": "ok", "image": "alpine", "run": "echo fine"},
                {"name": "boom", "image": "alpine", "dependsOn": ["ok"], "run": "echo about to fail; exit 3"},
                {"name": "after-boom", "image": "alpine", "dependsOn": ["boom"], "run": "echo never"},
                {"name": "after-after", "image": "alpine", "dependsOn": ["after-boom"], "run": "echo never"},
                {"name": "independent", "image": "alpine", "dependsOn": ["ok"], "run": "echo still runs"}
            ]),
        )
        .await?;
    let run = env.wait_run(&env.trigger(&wf).await?, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert!(run["error"].as_str().unwrap().contains("boom"), "{run}");
    let boom = task(&run, "boom");
    assert_eq!(boom["status"], "FAILED");
    assert_eq!(boom["exitCode"], 3);
    assert_eq!(boom["logTail"], "about to fail\n");
    assert_eq!(boom["error"], "exited with code 3");
    for skipped in ["after-boom", "after-after"] {
        let t = task(&run, skipped);
        assert_eq!(t["status"], "SKIPPED", "{t}");
        assert_eq!(t["attempt"], 0, "skipped steps never run");
    }
    assert_eq!(task(&run, "independent")["status"], "SUCCEEDED");
    Ok(())
}

#[tokio::test]
async fn step_timeout_kills_the_process_group_and_times_out_the_run() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let pidfile = env.work_dir.join("..").join("background-pid");
    let script = format!("sleep 300 & echo $! > {}; sleep 600", pidfile.display());
    let wf = env
        .create_workflow(
            "slow",
            json!([
                {"name": "slow", "image": "alpine", "run": script, "timeoutSeconds": 1},
                {"name": "next", "image": "alpine", "dependsOn": ["slow"], "run": "true"}
            ]),
        )
        .await?;
    let started = Instant::now();
    let run = env.wait_run(&env.trigger(&wf).await?, RUN_TIMEOUT).await?;
    let took = started.elapsed();
    assert_eq!(run["status"], "TIMED_OUT", "{run}");
    assert!(
        took < Duration::from_secs(15),
        "timeout enforced late: {took:?}"
    );
    let slow = task(&run, "slow");
    assert_eq!(slow["status"], "FAILED");
    assert_eq!(slow["error"], "timed out after 1s");
    assert_eq!(task(&run, "next")["status"], "SKIPPED");
    // The background child was in the step's process group and died with it.
    let pid: i32 = std::fs::read_to_string(&pidfile)?.trim().parse()?;
    let deadline = Instant::now() + Duration::from_secs(5);
    while process_alive(pid) {
        assert!(
            Instant::now() < deadline,
            "background child {pid} of the timed-out step outlived it"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

#[tokio::test]
async fn retries_rerun_a_failing_step_until_it_succeeds() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let counter = env.work_dir.join("..").join("attempts");
    let script = format!(
        "echo x >> {c}; test $(wc -l < {c}) -ge 3 || exit 1",
        c = counter.display()
    );
    let wf = env
        .create_workflow(
            "flaky",
            json!([{"name": "flaky", "image": "alpine", "run": script, "retries": 3, "retryBackoffSeconds": 0}]),
        )
        .await?;
    let run = env.wait_run(&env.trigger(&wf).await?, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(task(&run, "flaky")["attempt"], 3);
    assert_eq!(std::fs::read_to_string(&counter)?.lines().count(), 3);
    Ok(())
}

#[tokio::test]
async fn idempotency_key_returns_the_same_run() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .create_workflow(
            "idem",
            json!([{"name": "s", "image": "alpine", "run": "true"}]),
        )
        .await?;
    let q = "mutation($w:ID!,$k:String,$i:JSON){triggerRun(workflowId:$w,idempotencyKey:$k,inputs:$i){id}}";
    let first = env
        .gql(q, json!({"w": wf, "k": "deploy-42", "i": {"x": 1}}))
        .await?;
    let again = env
        .gql(q, json!({"w": wf, "k": "deploy-42", "i": {"x": 1}}))
        .await?;
    assert_eq!(first["triggerRun"]["id"], again["triggerRun"]["id"]);
    let other = env
        .gql(q, json!({"w": wf, "k": "deploy-43", "i": {"x": 1}}))
        .await?;
    assert_ne!(first["triggerRun"]["id"], other["triggerRun"]["id"]);

    // Same key, different inputs: refused rather than silently returning the old run.
    let clash = env
        .gql_raw(
            env.token.as_deref(),
            q,
            json!({"w": wf, "k": "deploy-42", "i": {"x": 2}}),
        )
        .await?;
    assert_eq!(error_code(&clash), "CONFLICT", "{clash}");

    // Concurrent triggers with one key still make exactly one run.
    let mut handles = Vec::new();
    for _ in 0..8 {
        handles.push(env.gql(q, json!({"w": wf, "k": "burst", "i": {}})));
    }
    let results = futures::future::join_all(handles).await;
    let ids: std::collections::HashSet<String> = results
        .into_iter()
        .map(|r| r.unwrap()["triggerRun"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(ids.len(), 1, "{ids:?}");

    let runs = env
        .gql(
            "query($w:ID!){runs(workflowId:$w,first:50){edges{node{id}}}}",
            json!({"w": wf}),
        )
        .await?;
    assert_eq!(runs["runs"]["edges"].as_array().unwrap().len(), 3);
    Ok(())
}

#[tokio::test]
async fn invalid_workflows_are_rejected_with_codes_and_fields_and_nothing_is_written()
-> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let create = "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}";
    let step = |name: &str, deps: &[&str]| json!({"name": name, "image": "alpine", "run": "true", "dependsOn": deps});
    let cases: Vec<(&str, Value, &str, &str)> = vec![
        (
            "cycle",
            json!([step("a", &["c"]), step("b", &["a"]), step("c", &["b"])]),
            "input.steps",
            "a -> c -> b -> a",
        ),
        (
            "unknown dep",
            json!([step("a", &[]), step("b", &["ghost"])]),
            "input.steps[1].dependsOn",
            "unknown step `ghost`",
        ),
        (
            "duplicate",
            json!([step("a", &[]), step("a", &[])]),
            "input.steps[1].name",
            "duplicate step name `a`",
        ),
        (
            "bad name",
            json!([step("Not_Valid", &[])]),
            "input.steps[0].name",
            "[a-z0-9-]",
        ),
        (
            "self dep",
            json!([step("a", &["a"])]),
            "input.steps[0].dependsOn",
            "depends on itself",
        ),
        ("no steps", json!([]), "input.steps", "at least one step"),
        (
            "empty image",
            json!([{"name": "a", "image": "", "run": "true"}]),
            "input.steps[0].image",
            "must not be empty",
        ),
        (
            "bad image",
            json!([{"name": "a", "image": "alpine latest", "run": "true"}]),
            "input.steps[0].image",
            "not a valid image",
        ),
        (
            "both run and command",
            json!([{"name": "a", "image": "alpine", "run": "true", "command": ["true"]}]),
            "input.steps[0].run",
            "not both",
        ),
        (
            "neither run nor command",
            json!([{"name": "a", "image": "alpine"}]),
            "input.steps[0].run",
            "needs `run`",
        ),
        (
            "empty command",
            json!([{"name": "a", "image": "alpine", "command": []}]),
            "input.steps[0].command",
            "name a program",
        ),
        (
            "zero timeout",
            json!([{"name": "a", "image": "alpine", "run": "true", "timeoutSeconds": 0}]),
            "input.steps[0].timeoutSeconds",
            "between 1",
        ),
        (
            "negative retries",
            json!([{"name": "a", "image": "alpine", "run": "true", "retries": -1}]),
            "input.steps[0].retries",
            "negative",
        ),
        (
            "bad env name",
            json!([{"name": "a", "image": "alpine", "run": "true", "env": [{"name": "1X", "value": "v"}]}]),
            "input.steps[0].env.1X",
            "variable names",
        ),
        (
            "too many steps",
            Value::Array((0..201).map(|i| step(&format!("s{i}"), &[])).collect()),
            "input.steps",
            "at most 200",
        ),
    ];
    for (what, steps, field, reason) in cases {
        let resp = env
            .gql_raw(
                env.token.as_deref(),
                create,
                json!({"i": {"name": format!("wf-{}", what.replace(' ', "-")), "steps": steps}}),
            )
            .await?;
        assert_eq!(error_code(&resp), "VALIDATION", "{what}: {resp}");
        let ext = &resp["errors"][0]["extensions"];
        assert_eq!(ext["field"], field, "{what}: {resp}");
        assert!(
            ext["reason"].as_str().unwrap_or_default().contains(reason),
            "{what}: {resp}"
        );
        assert!(resp["data"].is_null(), "{what}: {resp}");
    }
    let bad_name = env
        .gql_raw(
            env.token.as_deref(),
            create,
            json!({"i": {"name": "has space", "steps": [step("a", &[])]}}),
        )
        .await?;
    assert_eq!(bad_name["errors"][0]["extensions"]["field"], "input.name");

    // Nothing partial was written.
    let list = env
        .gql(
            "{workflows(first:100, includeArchived:true){edges{node{name}}}}",
            json!({}),
        )
        .await?;
    assert_eq!(list["workflows"]["edges"], json!([]));

    // Name clash, unknown ids and malformed ids.
    env.create_workflow("taken", json!([step("a", &[])]))
        .await?;
    let clash = env
        .gql_raw(
            env.token.as_deref(),
            create,
            json!({"i": {"name": "taken", "steps": [step("a", &[])]}}),
        )
        .await?;
    assert_eq!(error_code(&clash), "VALIDATION");
    assert_eq!(clash["errors"][0]["extensions"]["field"], "input.name");
    let trig = "mutation($w:ID!){triggerRun(workflowId:$w){id}}";
    let missing = env
        .gql_raw(
            env.token.as_deref(),
            trig,
            json!({"w": uuid::Uuid::new_v4().to_string()}),
        )
        .await?;
    assert_eq!(error_code(&missing), "NOT_FOUND", "{missing}");
    let malformed = env
        .gql_raw(env.token.as_deref(), trig, json!({"w": "not-an-id"}))
        .await?;
    assert_eq!(error_code(&malformed), "VALIDATION");
    assert_eq!(malformed["errors"][0]["extensions"]["field"], "workflowId");
    let bad_inputs = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($w:ID!){triggerRun(workflowId:$w, inputs: [1,2]){id}}",
            json!({"w": uuid::Uuid::new_v4().to_string()}),
        )
        .await?;
    assert_eq!(error_code(&bad_inputs), "VALIDATION", "{bad_inputs}");
    let page = env
        .gql_raw(
            env.token.as_deref(),
            "{runs(first: 1000){edges{cursor}}}",
            json!({}),
        )
        .await?;
    assert_eq!(page["errors"][0]["extensions"]["field"], "first");
    let cursor = env
        .gql_raw(
            env.token.as_deref(),
            "{runs(after: \"garbage\"){edges{cursor}}}",
            json!({}),
        )
        .await?;
    assert_eq!(cursor["errors"][0]["extensions"]["field"], "after");
    // GraphQL-level mistakes carry a code as well, and never internals.
    let syntax = env
        .gql_raw(env.token.as_deref(), "{ workflows(", json!({}))
        .await?;
    assert_eq!(error_code(&syntax), "GRAPHQL_VALIDATION", "{syntax}");
    Ok(())
}

#[tokio::test]
async fn everything_but_login_requires_a_valid_token() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let queries = [
        "{me{email}}",
        "{workflows{edges{node{id}}}}",
        "{runs{edges{node{id}}}}",
        "{run(id:\"00000000-0000-0000-0000-000000000000\"){id}}",
        "{workflow(id:\"00000000-0000-0000-0000-000000000000\"){id}}",
        "mutation{createWorkflow(input:{name:\"x\",steps:[{name:\"a\",image:\"alpine\",run:\"true\"}]}){id}}",
        "mutation{triggerRun(workflowId:\"00000000-0000-0000-0000-000000000000\"){id}}",
        "mutation{archiveWorkflow(id:\"00000000-0000-0000-0000-000000000000\"){id}}",
    ];
    let forged = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJ4In0.c2lnbmF0dXJl";
    for q in queries {
        for token in [None, Some(forged), Some("garbage")] {
            let resp = env.gql_raw(token, q, json!({})).await?;
            assert_eq!(
                error_code(&resp),
                "UNAUTHENTICATED",
                "{q} with {token:?}: {resp}"
            );
            assert!(
                resp["data"].is_null()
                    || resp["data"]
                        .as_object()
                        .is_some_and(|o| o.values().all(Value::is_null)),
                "{resp}"
            );
        }
    }
    // Nothing was created by the refused mutation.
    let list = env.gql("{workflows{edges{node{name}}}}", json!({})).await?;
    assert_eq!(list["workflows"]["edges"], json!([]));

    let login = "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken}}";
    let wrong = env
        .gql_raw(
            None,
            login,
            json!({"e": tms_tests::ADMIN_EMAIL, "p": "wrong-password"}),
        )
        .await?;
    assert_eq!(error_code(&wrong), "UNAUTHENTICATED");
    let nobody = env
        .gql_raw(
            None,
            login,
            json!({"e": "nobody@tms.test", "p": "whatever-password"}),
        )
        .await?;
    assert_eq!(error_code(&nobody), "UNAUTHENTICATED");
    assert_eq!(
        wrong["errors"][0]["message"], nobody["errors"][0]["message"],
        "login must not reveal which emails exist"
    );

    let me = env.gql("{me{email roles}}", json!({})).await?;
    assert_eq!(me["me"]["email"], tms_tests::ADMIN_EMAIL);
    assert_eq!(me["me"]["roles"], json!(["ADMIN"]));
    Ok(())
}

#[tokio::test]
async fn workflow_versions_are_immutable_and_runs_pin_theirs() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let wf = env
        .create_workflow(
            "versioned",
            json!([{"name": "v", "image": "alpine", "run": "echo one"}]),
        )
        .await?;
    let run1 = env.trigger(&wf).await?;
    let upd = env
        .gql(
            "mutation($id:ID!,$i:WorkflowInput!){updateWorkflow(id:$id,input:$i){currentVersion steps{name run}}}",
            json!({"id": wf, "i": {"name": "versioned", "description": "second", "steps": [{"name": "v", "image": "alpine", "run": "echo two"}]}}),
        )
        .await?;
    assert_eq!(upd["updateWorkflow"]["currentVersion"], 2);
    assert_eq!(upd["updateWorkflow"]["steps"][0]["run"], "echo two");
    let run2 = env.trigger(&wf).await?;
    let r1 = env.wait_run(&run1, RUN_TIMEOUT).await?;
    let r2 = env.wait_run(&run2, RUN_TIMEOUT).await?;
    assert_eq!(
        (r1["version"].clone(), task(&r1, "v")["logTail"].clone()),
        (json!(1), json!("one\n"))
    );
    assert_eq!(
        (r2["version"].clone(), task(&r2, "v")["logTail"].clone()),
        (json!(2), json!("two\n"))
    );
    let versions = env
        .gql(
            "query($id:ID!){workflow(id:$id){description versions{version steps{run}}}}",
            json!({"id": wf}),
        )
        .await?;
    assert_eq!(versions["workflow"]["description"], "second");
    assert_eq!(
        versions["workflow"]["versions"][0]["steps"][0]["run"],
        "echo one"
    );

    // Archived workflows are readable but can be neither triggered nor edited.
    env.gql(
        "mutation($id:ID!){archiveWorkflow(id:$id){archived}}",
        json!({"id": wf}),
    )
    .await?;
    let trig = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($w:ID!){triggerRun(workflowId:$w){id}}",
            json!({"w": wf}),
        )
        .await?;
    assert_eq!(error_code(&trig), "CONFLICT");
    let listed = env.gql("{workflows{edges{node{name}}}}", json!({})).await?;
    assert_eq!(listed["workflows"]["edges"], json!([]));
    Ok(())
}

#[tokio::test]
async fn connections_paginate_with_cursors_and_filter() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    for i in 0..5 {
        env.create_workflow(
            &format!("wf-{i}"),
            json!([{"name": "s", "image": "alpine", "run": "true"}]),
        )
        .await?;
    }
    let page = |after: Option<String>| {
        let env = &env;
        async move {
            env.gql(
                "query($a:String){workflows(first:2, after:$a){edges{cursor node{name}} pageInfo{hasNextPage endCursor}}}",
                json!({"a": after}),
            )
            .await
        }
    };
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let p = page(after.clone()).await?;
        for e in p["workflows"]["edges"].as_array().unwrap() {
            names.push(e["node"]["name"].as_str().unwrap().to_string());
        }
        if p["workflows"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = p["workflows"]["pageInfo"]["endCursor"]
            .as_str()
            .map(String::from);
    }
    assert_eq!(names, ["wf-0", "wf-1", "wf-2", "wf-3", "wf-4"]);

    let ok = env
        .create_workflow(
            "ok",
            json!([{"name": "s", "image": "alpine", "run": "true"}]),
        )
        .await?;
    let bad = env
        .create_workflow(
            "bad",
            json!([{"name": "s", "image": "alpine", "run": "false"}]),
        )
        .await?;
    let mut ids = Vec::new();
    for w in [&ok, &bad, &ok] {
        let id = env.trigger(w).await?;
        env.wait_run(&id, RUN_TIMEOUT).await?;
        ids.push(id);
    }
    let failed = env
        .gql("{runs(status: FAILED){edges{node{id}}}}", json!({}))
        .await?;
    assert_eq!(failed["runs"]["edges"], json!([{"node": {"id": ids[1]}}]));
    let of_ok = env
        .gql(
            "query($w:ID!){runs(workflowId:$w){edges{node{id}}}}",
            json!({"w": ok}),
        )
        .await?;
    // Newest first.
    assert_eq!(
        of_ok["runs"]["edges"],
        json!([{"node": {"id": ids[2]}}, {"node": {"id": ids[0]}}])
    );
    let first = env
        .gql(
            "{runs(first:1){edges{cursor} pageInfo{hasNextPage}}}",
            json!({}),
        )
        .await?;
    let cur = first["runs"]["edges"][0]["cursor"]
        .as_str()
        .unwrap()
        .to_string();
    let rest = env
        .gql(
            "query($c:String){runs(first:10, after:$c){edges{node{id}}}}",
            json!({"c": cur}),
        )
        .await?;
    assert_eq!(rest["runs"]["edges"].as_array().unwrap().len(), 2);
    assert_eq!(first["runs"]["pageInfo"]["hasNextPage"], true);
    Ok(())
}

#[tokio::test]
async fn a_run_triggered_while_redis_is_down_completes_when_it_returns() -> anyhow::Result<()> {
    let mut redis = PrivateRedis::start()?;
    let env = TestEnv::start_with(EnvOptions {
        redis_url: Some(redis.url()),
        ..Default::default()
    })
    .await?;
    let wf = env
        .create_workflow(
            "survivor",
            json!([{"name": "s", "image": "alpine", "run": "echo made it"}]),
        )
        .await?;

    redis.stop();
    let run_id = env.trigger(&wf).await?;
    let run = env.run(&run_id).await?;
    assert_eq!(
        run["status"], "QUEUED",
        "the run is recorded even without Redis"
    );

    redis.spawn()?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(task(&run, "s")["logTail"], "made it\n");
    Ok(())
}

#[tokio::test]
async fn a_worker_killed_mid_step_loses_nothing_and_finished_steps_are_not_rerun()
-> anyhow::Result<()> {
    let lease = vec![("TMS_RUN_LEASE_SECONDS".to_string(), "3".to_string())];
    let mut env = TestEnv::start_with(EnvOptions {
        worker_env: lease.clone(),
        ..Default::default()
    })
    .await?;
    let effects = env.work_dir.join("..").join("effects");
    let e = effects.display();
    let pid_file = env.work_dir.join("..").join("long.pid");
    let p = pid_file.display();
    let wf = env
        .create_workflow(
            "resilient",
            json!([
                {"name": "first", "image": "alpine", "run": format!("echo first >> {e}; echo data > $TMS_OUT/f")},
                {"name": "long", "image": "alpine", "dependsOn": ["first"],
                 "run": format!("echo long-$TMS_ATTEMPT >> {e}; cat $TMS_IN/first/f; [ $TMS_ATTEMPT -gt 1 ] || {{ echo $$ > {p}; exec sleep 600; }}")},
                {"name": "last", "image": "alpine", "dependsOn": ["long"], "run": format!("echo last >> {e}")}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;

    // Wait until `long` is running, then kill the worker without warning.
    let deadline = Instant::now() + RUN_TIMEOUT;
    loop {
        let run = env.run(&run_id).await?;
        if task(&run, "long")["status"] == "RUNNING" {
            break;
        }
        assert!(Instant::now() < deadline, "step never started: {run}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    env.workers[0].kill9();
    // The step dies with its worker (parent-death signal), even a SIGKILLed one.
    let pid: i32 = std::fs::read_to_string(&pid_file)?.trim().parse()?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Gone, or a zombie waiting for init to reap it.
        if stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "step process {pid} outlived its SIGKILLed worker: {stat}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    env.start_worker(&lease).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(
        task(&run, "first")["attempt"],
        1,
        "finished steps are not re-run"
    );
    assert_eq!(
        task(&run, "long")["attempt"],
        2,
        "the interrupted step ran again"
    );
    assert_eq!(task(&run, "last")["attempt"], 1);
    assert!(run["deliveries"].as_i64().unwrap() >= 2, "{run}");
    // The step's output from before the crash was still there for its dependent.
    assert_eq!(task(&run, "long")["logTail"], "data\n");
    let lines: Vec<String> = std::fs::read_to_string(&effects)?
        .lines()
        .map(String::from)
        .collect();
    assert_eq!(lines, ["first", "long-1", "long-2", "last"]);

    let events = env.events(&run_id)?;
    assert!(
        events
            .iter()
            .any(|e| e.1 == "task" && e.2 == "pending" && e.3 == "long"),
        "the interruption is visible in the event stream: {events:?}"
    );
    let seqs: Vec<i64> = events.iter().map(|e| e.0).collect();
    assert_eq!(seqs, (1..=events.len() as i64).collect::<Vec<_>>());
    Ok(())
}

/// True while `pid` exists and is not a zombie awaiting its reaper.
fn process_alive(pid: i32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => stat
            .rsplit_once(") ")
            .and_then(|(_, rest)| rest.chars().next())
            .is_some_and(|state| state != 'Z' && state != 'X'),
        Err(_) => false,
    }
}

#[tokio::test]
async fn secret_values_never_reach_logs_events_or_the_api() -> anyhow::Result<()> {
    let planted = format!("planted-{}", uuid::Uuid::new_v4().simple());
    let env = TestEnv::start_with(EnvOptions {
        worker_env: vec![("TMS_SECRET_DEPLOY_TOKEN".into(), planted.clone())],
        ..Default::default()
    })
    .await?;
    let wf = env
        .create_workflow(
            "secretive",
            json!([
                {"name": "uses", "image": "alpine", "secrets": ["DEPLOY_TOKEN"],
                 "run": "echo \"token is $DEPLOY_TOKEN\"; echo \"::progress 50 sent $DEPLOY_TOKEN\"; echo \"$DEPLOY_TOKEN\" > $TMS_OUT/t"},
                {"name": "leaks", "image": "alpine", "dependsOn": ["uses"], "run": "cat $TMS_IN/uses/t; exit 1"}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "FAILED");
    assert_eq!(
        task(&run, "uses")["logTail"],
        "token is ***\n::progress 50 sent ***\n"
    );
    assert_eq!(
        task(&run, "leaks")["logTail"],
        "***\n",
        "a dependent printing it is masked too"
    );

    let mut haystacks = vec![run.to_string()];
    haystacks.push(
        env.gql(
            "query($w:ID!){workflow(id:$w){steps{name secrets env{name value}}}}",
            json!({"w": wf}),
        )
        .await?
        .to_string(),
    );
    let dump = std::process::Command::new("psql")
        .arg(&env.database_url)
        .args(["-Atc", "SELECT row_to_json(e)::text FROM run_events e"])
        .output()?;
    haystacks.push(String::from_utf8_lossy(&dump.stdout).into_owned());
    assert!(
        haystacks[2].contains("sent ***"),
        "the progress message was recorded, masked"
    );
    for p in env.api.iter().chain(env.workers.iter()) {
        haystacks.push(p.log_text());
    }
    for h in &haystacks {
        assert!(!h.contains(&planted), "secret leaked into: {h}");
    }
    Ok(())
}

/// A placeholder argument literal for a GraphQL input type (enough to get past validation).
fn dummy_arg(ty: &Value) -> Option<String> {
    let mut t = ty;
    while t["kind"] == "NON_NULL" || t["kind"] == "LIST" {
        if t["kind"] == "LIST" {
            return Some("[]".into());
        }
        t = &t["ofType"];
    }
    Some(match t["name"].as_str()? {
        "ID" => "\"00000000-0000-0000-0000-000000000000\"".into(),
        "String" => "\"x\"".into(),
        "Int" => "1".into(),
        "Float" => "1.0".into(),
        "Boolean" => "false".into(),
        "JSON" => "{}".into(),
        "WorkflowInput" => {
            "{name: \"x\", steps: [{name: \"a\", image: \"alpine\", run: \"true\"}]}".into()
        }
        "ImportInput" => "{format: JSON, content: \"{}\", dryRun: true}".into(),
        "RunStatus" => "QUEUED".into(),
        "Role" => "VIEWER".into(),
        other => panic!("no placeholder for input type {other}: extend dummy_arg"),
    })
}

#[tokio::test]
async fn every_root_field_but_login_refuses_anonymous_callers() -> anyhow::Result<()> {
    let env = TestEnv::start_with(EnvOptions {
        start_worker: false,
        ..Default::default()
    })
    .await?;
    let schema = env
        .gql(
            "{ __schema { queryType { fields { name args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } }
                          mutationType { fields { name args { name type { kind name ofType { kind name ofType { kind name ofType { kind name } } } } } } } } }",
            json!({}),
        )
        .await?;
    let mut checked = 0;
    for (op, root) in [("query", "queryType"), ("mutation", "mutationType")] {
        for field in schema["__schema"][root]["fields"].as_array().unwrap() {
            let name = field["name"].as_str().unwrap();
            if name == "login" {
                continue;
            }
            let args: Vec<String> = field["args"]
                .as_array()
                .unwrap()
                .iter()
                .filter(|a| a["type"]["kind"] == "NON_NULL")
                .map(|a| {
                    format!(
                        "{}: {}",
                        a["name"].as_str().unwrap(),
                        dummy_arg(&a["type"]).unwrap()
                    )
                })
                .collect();
            let args = if args.is_empty() {
                String::new()
            } else {
                format!("({})", args.join(", "))
            };
            let doc = format!("{op} {{ {name}{args} {{ __typename }} }}");
            // Scalar-returning fields take no selection set.
            let mut resp = env.gql_raw(None, &doc, json!({})).await?;
            if error_code(&resp) == "GRAPHQL_VALIDATION" {
                resp = env
                    .gql_raw(None, &format!("{op} {{ {name}{args} }}"), json!({}))
                    .await?;
            }
            assert_eq!(error_code(&resp), "UNAUTHENTICATED", "{doc}: {resp}");
            checked += 1;
        }
    }
    assert!(checked >= 11, "walked only {checked} fields");
    Ok(())
}
