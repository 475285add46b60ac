//! The Dagger executor end to end: the real `tms-worker` binary (and api) against the loopback
//! fake engine (`tms_tests::dagger_engine`), and against a real engine when one is reachable.
//!
//! The fake engine runs commands through a handler that emulates the few shell scripts used here
//! (there is no container runtime on the machines that run this suite); the real-engine test runs
//! the same workflows for real and is skipped, loudly and with its reason, when no engine is
//! reachable.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tms_tests::dagger_engine::{ExecInput, ExecOutput, FakeEngine, Fault, canonicalize};
use tms_tests::{EnvOptions, TestEnv, free_port, task};

const RUN_TIMEOUT: Duration = Duration::from_secs(60);

fn kv(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Worker settings that make it use `engine` and nothing else.
fn dagger_env(engine: &FakeEngine) -> Vec<(String, String)> {
    let mut env = kv(&[("TMS_EXECUTOR", "dagger")]);
    env.extend(engine.session_env());
    env
}

/// A directory with nothing in it, as `PATH`: no `dagger` CLI can be found there, whatever the
/// machine has installed.
fn empty_path() -> String {
    let dir =
        std::env::temp_dir().join(format!("tms-empty-path-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.display().to_string()
}

/// Three steps passing files along: argv form with env, shell form reading a dependency, and a
/// step with a workdir reading two dependencies. Real shell, so a real engine can run it too.
fn chain_workflow() -> Value {
    json!([
        {"name": "a", "image": "alpine:3.20",
         "command": ["sh", "-c", "echo '::progress 50 writing'; printf \"$GREETING\" > \"$TMS_OUT/greeting\"; echo wrote"],
         "env": [{"name": "GREETING", "value": "hello"}]},
        {"name": "b", "image": "alpine:3.20", "dependsOn": ["a"],
         "run": "tr a-z A-Z < \"$TMS_IN/a/greeting\" > \"$TMS_OUT/upper\"; cat \"$TMS_OUT/upper\""},
        {"name": "c", "image": "alpine:3.20", "dependsOn": ["a", "b"], "workdir": "/tmp",
         "run": "echo \"$(cat \"$TMS_IN/a/greeting\") $(cat \"$TMS_IN/b/upper\")\""}
    ])
}

fn file<'a>(i: &'a ExecInput, dir: &str, name: &str) -> Option<&'a String> {
    i.dirs.get(dir).and_then(|d| d.get(name))
}

/// What the steps of [`chain_workflow`] do, for the fake engine.
fn emulate_chain(i: &ExecInput) -> ExecOutput {
    let missing = |what: &str| ExecOutput {
        exit_code: 1,
        stderr: format!("{what}: No such file or directory\n"),
        ..Default::default()
    };
    match i.env("TMS_STEP") {
        Some("a") => ExecOutput {
            stdout: "::progress 50 writing\nwrote\n".into(),
            out: [("greeting".into(), i.env("GREETING").unwrap_or("").into())].into(),
            ..Default::default()
        },
        Some("b") => match file(i, "/in/a", "greeting") {
            Some(g) => ExecOutput {
                stdout: g.to_uppercase(),
                out: [("upper".into(), g.to_uppercase())].into(),
                ..Default::default()
            },
            None => missing("/in/a/greeting"),
        },
        Some("c") => match (file(i, "/in/a", "greeting"), file(i, "/in/b", "upper")) {
            (Some(g), Some(u)) => ExecOutput::ok(format!("{g} {u}\n")),
            _ => missing("/in/a/greeting or /in/b/upper"),
        },
        other => ExecOutput {
            exit_code: 127,
            stderr: format!("unexpected step {other:?}\n"),
            ..Default::default()
        },
    }
}

fn assert_chain_succeeded(run: &Value) {
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    for (name, tail) in [
        ("a", "::progress 50 writing\nwrote\n"),
        ("b", "HELLO\n"),
        ("c", "hello HELLO\n"),
    ] {
        let t = task(run, name);
        assert_eq!(t["status"], "SUCCEEDED", "{t}");
        assert_eq!(t["exitCode"], 0, "{t}");
        assert_eq!(t["logTail"], tail, "{t}");
    }
}

/// A document as the SDK writes it: `query{a{b{c}}}` from `["a", "b", "c"]`.
fn doc(fields: &[&str]) -> String {
    canonicalize(&format!(
        "query{{{}{}",
        fields.join("{"),
        "}".repeat(fields.len())
    ))
}

/// What a run of [`chain_workflow`] hands every step besides its dependencies: whether the run's
/// inputs file was on the host (and so mounted), and its `TMS_INPUT_*` variables. Taken from
/// what the engine ran, so the expectations hold whether or not the runner writes them.
struct RunInputs {
    file: bool,
    vars: Vec<(String, String)>,
}

/// The documents one step without secrets or caches sends, given the IDs the fake engine hands
/// out from `base` on: the image, each dependency's host directory (restored from the artifact
/// store into `run_dir/<step>/deps/<dep>`),
/// the run's inputs file, the empty `/out`, the synced container, whose `/out` is exported to
/// `run_dir/<step>/out`. Returns the documents and the next free ID.
fn step_documents(
    run_dir: &std::path::Path,
    step: &str,
    argv: &[&str],
    before_tms: &[String],
    deps: &[&str],
    inputs: &RunInputs,
    base: u32,
) -> (Vec<String>, u32) {
    let run_id = run_dir.file_name().unwrap().to_str().unwrap();
    let out = |s: &str| run_dir.join(s).join("out").display().to_string();
    let mut docs = vec![doc(&["container", r#"from(address:"alpine:3.20")"#, "id"])];
    let mut next = base + 1;
    let mut mounts = Vec::new();
    for dep in deps {
        docs.push(doc(&[
            "host",
            &format!(
                r#"directory(noCache:true, path:"{}")"#,
                run_dir.join(step).join("deps").join(dep).display()
            ),
            "id",
        ]));
        mounts.push(format!(
            r#"withDirectory(path:"/in/{dep}", source:"dir:{next}")"#
        ));
        next += 1;
    }
    if inputs.file {
        let file = run_dir.join("_inputs.json").display().to_string();
        docs.push(doc(&[
            "host",
            &format!(r#"file(noCache:true, path:"{file}")"#),
            "id",
        ]));
        mounts.push(format!(
            r#"withFile(path:"/in/_inputs.json", source:"file:{next}")"#
        ));
        next += 1;
    }
    docs.push(doc(&["directory", "id"]));
    mounts.push(format!(
        r#"withDirectory(inheritOwner:true, path:"/out", source:"dir:{next}")"#
    ));
    let synced = format!(r#"node(id:"ctr:{}")"#, next + 1);

    let mut chain = vec![
        format!(r#"node(id:"ctr:{base}")"#),
        "... on Container".into(),
    ];
    chain.extend(before_tms.iter().cloned());
    let mut vars = vec![
        ("TMS_OUT".to_string(), "/out".to_string()),
        ("TMS_IN".into(), "/in".into()),
        ("TMS_INPUTS".into(), "/in/_inputs.json".into()),
    ];
    vars.extend(inputs.vars.iter().cloned());
    vars.extend([
        ("TMS_RUN_ID".to_string(), run_id.to_string()),
        ("TMS_STEP".into(), step.to_string()),
        ("TMS_ATTEMPT".into(), "1".into()),
    ]);
    for (k, v) in vars {
        chain.push(format!(r#"withEnvVariable(name:"{k}", value:"{v}")"#));
    }
    chain.extend(mounts);
    chain.push(format!(
        "withExec(args:{})",
        serde_json::to_string(argv).unwrap()
    ));
    chain.push("sync".into());
    docs.extend([
        doc(&chain.iter().map(String::as_str).collect::<Vec<_>>()),
        doc(&[&synced, "... on Container", "exitCode"]),
        doc(&[&synced, "... on Container", "stdout"]),
        doc(&[&synced, "... on Container", "stderr"]),
        doc(&[
            &synced,
            "... on Container",
            r#"directory(path:"/out")"#,
            &format!(r#"export(path:"{}")"#, out(step)),
        ]),
    ]);
    (docs, next + 2)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_worker_runs_a_three_step_dag_through_the_engine_with_exact_documents()
-> anyhow::Result<()> {
    let engine = FakeEngine::start().await?;
    engine.on_exec(emulate_chain);
    let env = TestEnv::start_with(EnvOptions::worker_env(dagger_env(&engine))).await?;
    let wf = env
        .create_workflow("dagger-chain", chain_workflow())
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_chain_succeeded(&run);
    assert_eq!(engine.rejected(), 0);

    // a's `::progress` line became a progress event once a finished.
    let events = env.events(&run_id)?;
    assert!(
        events.iter().any(|e| e.1 == "progress" && e.3 == "a"),
        "{events:?}"
    );

    // b and c read a's and b's files from host directories: what a and b exported to their
    // `run_dir/<step>/out` went to the artifact store and came back restored for each
    // dependent. The engine keeps nothing between steps.
    let execs = engine.execs();
    assert_eq!(execs.len(), 3);
    assert_eq!(execs[2].workdir.as_deref(), Some("/tmp"));
    assert_eq!(file(&execs[1], "/in/a", "greeting").unwrap(), "hello");
    assert_eq!(file(&execs[2], "/in/b", "upper").unwrap(), "HELLO");
    let inputs = RunInputs {
        file: execs[0].files.contains_key("/in/_inputs.json"),
        vars: execs[0]
            .env
            .iter()
            .filter(|(k, _)| k.starts_with("TMS_INPUT_"))
            .cloned()
            .collect(),
    };
    for e in &execs {
        assert_eq!(e.env("TMS_INPUTS"), Some("/in/_inputs.json"));
        assert_eq!(e.files.contains_key("/in/_inputs.json"), inputs.file);
    }

    // The steps run one after another (c needs b needs a), so the IDs are predictable.
    let run_dir = env.work_dir.join(&run_id);
    let (a, next) = step_documents(
        &run_dir,
        "a",
        &[
            "sh",
            "-c",
            "echo '::progress 50 writing'; printf \"$GREETING\" > \"$TMS_OUT/greeting\"; echo wrote",
        ],
        &[r#"withEnvVariable(name:"GREETING", value:"hello")"#.into()],
        &[],
        &inputs,
        1,
    );
    let (b, next) = step_documents(
        &run_dir,
        "b",
        &[
            "sh",
            "-c",
            "tr a-z A-Z < \"$TMS_IN/a/greeting\" > \"$TMS_OUT/upper\"; cat \"$TMS_OUT/upper\"",
        ],
        &[],
        &["a"],
        &inputs,
        next,
    );
    let (c, _) = step_documents(
        &run_dir,
        "c",
        &[
            "sh",
            "-c",
            "echo \"$(cat \"$TMS_IN/a/greeting\") $(cat \"$TMS_IN/b/upper\")\"",
        ],
        &[r#"withWorkdir(path:"/tmp")"#.into()],
        &["a", "b"],
        &inputs,
        next,
    );
    let expected: Vec<String> = [a, b, c].concat();
    let got = engine.step_documents();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "document {i} differs");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn exec_errors_pull_errors_and_engine_outages_map_onto_tasks() -> anyhow::Result<()> {
    let engine = FakeEngine::start().await?;
    engine.missing_image("ghcr.io/acme/missing:1");
    engine.on_exec(|i| match i.env("TMS_STEP") {
        Some("boom") => ExecOutput {
            exit_code: 3,
            stdout: "about to fail\n".into(),
            stderr: "oops\n".into(),
            ..Default::default()
        },
        Some(s) => ExecOutput::ok(format!("{s} ok\n")),
        None => ExecOutput::default(),
    });
    // The first attempt of each flaky step meets an engine failure at its exec.
    for (step, fault) in [
        ("flaky-500", Fault::Http500),
        ("flaky-drop", Fault::Drop),
        ("flaky-null", Fault::DataNull),
    ] {
        engine.fail_next(
            &format!(
                r#"withEnvVariable(name:"TMS_STEP", value:"{step}"){{withEnvVariable(name:"TMS_ATTEMPT", value:"1")"#
            ),
            fault,
        );
    }
    let mut env = TestEnv::start_with(EnvOptions::worker_env(dagger_env(&engine))).await?;
    let flaky = |name: &str| json!({"name": name, "image": "alpine:3.20", "run": "echo ok", "retries": 2, "retryBackoffSeconds": 0});
    let wf = env
        .create_workflow(
            "dagger-failures",
            json!([
                {"name": "ok", "image": "alpine:3.20", "run": "echo fine"},
                {"name": "boom", "image": "alpine:3.20", "dependsOn": ["ok"], "run": "echo about to fail; echo oops >&2; exit 3"},
                {"name": "after-boom", "image": "alpine:3.20", "dependsOn": ["boom"], "run": "echo never"},
                {"name": "pull", "image": "ghcr.io/acme/missing:1", "run": "true"},
                flaky("flaky-500"), flaky("flaky-drop"), flaky("flaky-null"),
            ]),
        )
        .await?;
    let run = env.wait_run(&env.trigger(&wf).await?, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "FAILED", "{run}");

    let boom = task(&run, "boom");
    assert_eq!(boom["status"], "FAILED", "{boom}");
    assert_eq!(boom["exitCode"], 3);
    assert_eq!(boom["logTail"], "about to fail\noops\n");
    assert_eq!(boom["error"], "exited with code 3");
    assert_eq!(task(&run, "after-boom")["status"], "SKIPPED");

    let pull = task(&run, "pull");
    assert_eq!(pull["status"], "FAILED", "{pull}");
    let why = pull["error"].as_str().unwrap_or_default();
    assert!(
        why.contains("cannot pull image `ghcr.io/acme/missing:1`"),
        "{pull}"
    );

    // An engine outage never fails a step by itself: the step ran again and succeeded.
    assert_eq!(engine.pending_faults(), 0, "every fault was hit");
    for step in ["flaky-500", "flaky-drop", "flaky-null"] {
        let t = task(&run, step);
        assert_eq!(t["status"], "SUCCEEDED", "{t}");
        assert_eq!(t["logTail"], format!("{step} ok\n"), "{t}");
    }
    // The worker neither crashed nor panicked on `{"data": null}`.
    let worker = &mut env.workers[0];
    assert!(worker.child.try_wait()?.is_none(), "worker exited");
    let log = worker.log_text();
    assert!(!log.contains("panicked"), "{log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_planted_secret_appears_nowhere_outside_the_engine() -> anyhow::Result<()> {
    let planted = format!("planted-{}", uuid::Uuid::new_v4().simple());
    let engine = FakeEngine::start().await?;
    // The engine echoes the secret everywhere a step's output can go.
    engine.on_exec(|i| {
        if i.env("TMS_STEP") == Some("reader") {
            // `cat $TMS_IN/leaky/token.txt`: a step without the secret printing it.
            return match file(i, "/in/leaky", "token.txt") {
                Some(t) => ExecOutput::ok(format!("{t}\n")),
                None => ExecOutput {
                    exit_code: 1,
                    ..Default::default()
                },
            };
        }
        let s = i.secrets.get("API_TOKEN").cloned().unwrap_or_default();
        ExecOutput {
            exit_code: if i.env("TMS_STEP") == Some("leaky-fail") {
                1
            } else {
                0
            },
            stdout: format!("token={s}\n::progress 30 using {s}\n"),
            stderr: format!("debug: {s}\n"),
            out: [("token.txt".into(), s)].into(),
        }
    });
    let mut worker_env = dagger_env(&engine);
    worker_env.push(("TMS_SECRET_API_TOKEN".into(), planted.clone()));
    let env = TestEnv::start_with(EnvOptions::worker_env(worker_env)).await?;
    let wf = env
        .create_workflow(
            "dagger-secret",
            json!([
                {"name": "leaky", "image": "alpine:3.20", "secrets": ["API_TOKEN"],
                 "run": "echo token=$API_TOKEN"},
                {"name": "leaky-fail", "image": "alpine:3.20", "secrets": ["API_TOKEN"],
                 "run": "echo token=$API_TOKEN; exit 1"},
                {"name": "reader", "image": "alpine:3.20", "dependsOn": ["leaky"],
                 "run": "cat $TMS_IN/leaky/token.txt"}
            ]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, RUN_TIMEOUT).await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    assert_eq!(
        task(&run, "leaky")["logTail"],
        "token=***\n::progress 30 using ***\ndebug: ***\n"
    );
    assert_eq!(task(&run, "leaky-fail")["exitCode"], 1);
    assert_eq!(task(&run, "reader")["logTail"], "***\n");

    // Not vacuous: the secret did reach the engine, and only through setSecret.
    let execs = engine.execs();
    assert!(
        execs
            .iter()
            .any(|e| e.secrets.get("API_TOKEN") == Some(&planted))
    );
    for r in engine.received() {
        if r.raw.contains(&planted) {
            assert!(r.raw.starts_with("query{setSecret("), "{}", r.raw);
        }
    }

    let mut places: BTreeMap<String, String> = BTreeMap::new();
    places.insert("api log".into(), env.api.as_ref().unwrap().log_text());
    for (i, w) in env.workers.iter().enumerate() {
        places.insert(format!("worker {i} log"), w.log_text());
    }
    places.insert("run (API)".into(), run.to_string());
    let listing = env
        .gql(
            "query($w:ID!){runs(workflowId:$w,first:10){edges{node{id status tasks{name status error logTail exitCode}}}}}",
            json!({"w": wf}),
        )
        .await?;
    places.insert("runs (API)".into(), listing.to_string());
    places.insert(
        "workflow (API)".into(),
        env.gql("query($w:ID!){workflow(id:$w){id name}}", json!({"w": wf}))
            .await?
            .to_string(),
    );
    let psql = |sql: &str| tms_tests::psql(&env.database_url, &["-c", sql]);
    let events = psql(&format!(
        "SELECT row_to_json(e) FROM run_events e WHERE run_id = '{run_id}' ORDER BY seq"
    ))?;
    assert!(events.contains("progress"), "{events}");
    places.insert("run events".into(), events);
    places.insert(
        "task errors".into(),
        psql(&format!(
            "SELECT coalesce(error, '') FROM tasks WHERE run_id = '{run_id}'"
        ))
        .unwrap_or_default(),
    );
    let dump = std::process::Command::new("pg_dump")
        .args(["--data-only", &env.database_url])
        .output()?;
    anyhow::ensure!(dump.status.success(), "pg_dump failed");
    places.insert(
        "the whole database".into(),
        String::from_utf8_lossy(&dump.stdout).to_string(),
    );

    for (place, text) in &places {
        assert!(!text.is_empty(), "{place} is empty: nothing was checked");
        assert!(
            !text.contains(&planted),
            "the secret leaked into {place}:\n{text}"
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dagger_mode_refuses_to_start_without_a_reachable_engine() -> anyhow::Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let path = empty_path();
    let nobody = free_port().to_string();
    let engine = FakeEngine::start().await?;
    let cases: Vec<(Vec<(String, String)>, &str)> = vec![
        (
            kv(&[("TMS_EXECUTOR", "dagger"), ("PATH", &path)]),
            "no Dagger engine is configured",
        ),
        (
            kv(&[
                ("TMS_EXECUTOR", "dagger"),
                ("DAGGER_SESSION_PORT", &nobody),
                ("DAGGER_SESSION_TOKEN", "t"),
            ]),
            "no Dagger engine is reachable",
        ),
        (
            kv(&[
                ("TMS_EXECUTOR", "dagger"),
                ("DAGGER_SESSION_PORT", &engine.port.to_string()),
                ("DAGGER_SESSION_TOKEN", "wrong-token"),
            ]),
            "rejected the session token",
        ),
        (
            kv(&[("TMS_EXECUTOR", "auto"), ("DAGGER_SESSION_PORT", &nobody)]),
            "DAGGER_SESSION_TOKEN is not",
        ),
    ];
    for (extra, says) in cases {
        let started = Instant::now();
        let err = match env.start_worker(&extra).await {
            Ok(_) => panic!("worker started with {extra:?}"),
            Err(e) => format!("{e:#}"),
        };
        // It exited as it should; the harness must not take that for the next one's failure.
        if let Some(w) = env.workers.last_mut() {
            w.killed = true;
        }
        assert!(err.contains(says), "{extra:?}: {err}");
        assert!(
            !err.contains("wrong-token"),
            "the token is never printed: {err}"
        );
        assert!(
            started.elapsed() < Duration::from_secs(20),
            "not fast: {:?}",
            started.elapsed()
        );
    }
    assert_eq!(engine.rejected(), 1);
    Ok(())
}

async fn readyz(port: u16) -> anyhow::Result<(u16, Value)> {
    let r = reqwest::get(format!("http://127.0.0.1:{port}/readyz")).await?;
    Ok((r.status().as_u16(), r.json().await?))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn auto_picks_the_configured_engine_and_readyz_follows_it() -> anyhow::Result<()> {
    let engine = FakeEngine::start().await?;
    let (port, token) = (engine.port, engine.token.clone());
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let mut extra = kv(&[("TMS_EXECUTOR", "auto")]);
    extra.extend(engine.session_env());
    let wport = env.start_worker(&extra).await?;
    let (status, body) = readyz(wport).await?;
    assert_eq!(
        (status, &body["executor"]),
        (200, &json!("dagger")),
        "{body}"
    );

    // The engine goes away: not ready, and says which check failed.
    drop(engine);
    let (status, body) = readyz(wport).await?;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["components"]["executor"]["status"], "down", "{body}");
    assert_eq!(body["components"]["postgres"]["status"], "ok", "{body}");

    // It comes back on the same port: the worker reconnects by itself.
    let engine = FakeEngine::start_on(port, &token).await?;
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let (status, body) = readyz(wport).await?;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "never ready again: {body}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(engine.documents().iter().any(|d| d == "query{version}"));

    // With no engine anywhere, auto runs steps locally and says so loudly.
    let wport = env
        .start_worker(&kv(&[("TMS_EXECUTOR", "auto"), ("PATH", &empty_path())]))
        .await?;
    let (_, body) = readyz(wport).await?;
    assert_eq!(body["executor"], "local", "{body}");
    assert!(env.workers[1].log_text().contains("NO DAGGER ENGINE"));
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// A real engine
// ---------------------------------------------------------------------------------------------

/// Says something on the terminal even when the test harness captures output.
fn say(line: &str) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "{line}");
}

/// Asks an engine session for its version.
async fn probe(port: &str, token: &str) -> Result<String, String> {
    let resp = reqwest::Client::new()
        .post(format!("http://127.0.0.1:{port}/query"))
        .basic_auth(token, None::<&str>)
        .json(&json!({"query": "query{version}", "variables": null}))
        .timeout(Duration::from_secs(30))
        .send()
        .await
        .map_err(|e| format!("{e}"))?;
    let v: Value = resp.json().await.map_err(|e| format!("{e}"))?;
    v["data"]["version"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| format!("unexpected answer {v}"))
}

/// The engine major version the worker's SDK (dagger-sdk 1.0.0-beta.23) speaks: its API
/// (`node(id:)`, `inheritOwner`, …) is not that of 0.x engines.
const ENGINE_MAJOR: &str = "1";

/// A reachable engine session as (port, token), plus the `dagger session` child that holds it
/// open when this test started one; `Err` is why there is none.
async fn real_engine() -> Result<(String, String, Option<tokio::process::Child>), String> {
    let (port, token, child) = open_real_engine().await?;
    let version = probe(&port, &token).await?;
    let major = version
        .trim_start_matches('v')
        .split('.')
        .next()
        .unwrap_or("");
    if major != ENGINE_MAJOR {
        return Err(format!(
            "the reachable engine is {version}, but this worker's SDK speaks the {ENGINE_MAJOR}.x API"
        ));
    }
    Ok((port, token, child))
}

async fn open_real_engine() -> Result<(String, String, Option<tokio::process::Child>), String> {
    if let (Ok(port), Ok(token)) = (
        std::env::var("DAGGER_SESSION_PORT"),
        std::env::var("DAGGER_SESSION_TOKEN"),
    ) {
        return probe(&port, &token)
            .await
            .map(|_| (port, token, None))
            .map_err(|e| {
                format!("DAGGER_SESSION_PORT is set but the session does not answer: {e}")
            });
    }
    let cli = std::env::var_os("_EXPERIMENTAL_DAGGER_CLI_BIN")
        .map(std::path::PathBuf::from)
        .or_else(|| {
            std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
                .map(|d| d.join("dagger"))
                .find(|p| p.is_file())
        })
        .ok_or("no DAGGER_SESSION_PORT/DAGGER_SESSION_TOKEN, no _EXPERIMENTAL_DAGGER_CLI_BIN and no `dagger` on PATH")?;
    let mut child = tokio::process::Command::new(&cli)
        .arg("session")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot start `{} session`: {e}", cli.display()))?;
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    // Starting the engine may pull its image the first time.
    let params = tokio::time::timeout(Duration::from_secs(600), async {
        while let Ok(Some(line)) = lines.next_line().await {
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && let (Some(port), Some(token)) = (v["port"].as_u64(), v["session_token"].as_str())
            {
                return Some((port.to_string(), token.to_string()));
            }
        }
        None
    })
    .await;
    let Ok(Some((port, token))) = params else {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            use tokio::io::AsyncReadExt;
            let _ =
                tokio::time::timeout(Duration::from_secs(5), e.read_to_string(&mut stderr)).await;
        }
        return Err(format!(
            "`{} session` did not open a session (no container runtime?): {}",
            cli.display(),
            stderr.lines().rev().take(5).collect::<Vec<_>>().join(" | ")
        ));
    };
    probe(&port, &token)
        .await
        .map_err(|e| format!("`dagger session` opened but does not answer: {e}"))?;
    Ok((port, token, Some(child)))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_real_engine_runs_the_workflows_when_one_is_reachable() -> anyhow::Result<()> {
    let (port, token, _session) = match real_engine().await {
        Ok(e) => e,
        Err(why) => {
            say(&format!(
                "SKIPPED a_real_engine_runs_the_workflows_when_one_is_reachable: no Dagger engine reachable: {why}"
            ));
            return Ok(());
        }
    };
    say(&format!(
        "real Dagger engine on 127.0.0.1:{port}: running the workflows"
    ));
    let planted = format!("planted-{}", uuid::Uuid::new_v4().simple());
    let env = TestEnv::start_with(EnvOptions::worker_env(kv(&[
        ("TMS_EXECUTOR", "dagger"),
        ("DAGGER_SESSION_PORT", &port),
        ("DAGGER_SESSION_TOKEN", &token),
        ("TMS_SECRET_API_TOKEN", &planted),
    ])))
    .await?;
    let slow = Duration::from_secs(600);

    let wf = env.create_workflow("real-chain", chain_workflow()).await?;
    let run = env.wait_run(&env.trigger(&wf).await?, slow).await?;
    assert_chain_succeeded(&run);

    let wf = env
        .create_workflow(
            "real-failures",
            json!([
                {"name": "boom", "image": "alpine:3.20", "run": "echo about to fail; echo oops >&2; exit 3"},
                {"name": "secret", "image": "alpine:3.20", "secrets": ["API_TOKEN"], "run": "echo token=$API_TOKEN"},
                {"name": "pull", "image": "registry.invalid/tms/none:1", "run": "true"}
            ]),
        )
        .await?;
    let run = env.wait_run(&env.trigger(&wf).await?, slow).await?;
    assert_eq!(run["status"], "FAILED", "{run}");
    let boom = task(&run, "boom");
    assert_eq!(boom["exitCode"], 3, "{boom}");
    assert_eq!(boom["logTail"], "about to fail\noops\n", "{boom}");
    let secret = task(&run, "secret");
    assert_eq!(secret["status"], "SUCCEEDED", "{secret}");
    assert_eq!(secret["logTail"], "token=***\n", "{secret}");
    let pull = task(&run, "pull");
    assert_eq!(pull["status"], "FAILED", "{pull}");
    assert!(
        pull["error"]
            .as_str()
            .unwrap_or_default()
            .contains("registry.invalid/tms/none:1"),
        "{pull}"
    );
    let worker_log = env.workers[0].log_text();
    assert!(!run.to_string().contains(&planted));
    assert!(!worker_log.contains(&planted), "{worker_log}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_cache_paths_mount_one_volume_per_workflow_and_path() -> anyhow::Result<()> {
    let engine = FakeEngine::start().await?;
    engine.on_exec(|_| ExecOutput::ok("cached\n"));
    let env = TestEnv::start_with(EnvOptions::worker_env(dagger_env(&engine))).await?;
    let steps = json!([{"name": "deps", "image": "node:22", "run": "npm ci",
                        "cachePaths": ["/root/.npm", "/work/node_modules"]}]);
    let wf = env.create_workflow("cached-deps", steps.clone()).await?;
    let other = env.create_workflow("other-deps", steps).await?;
    for w in [&wf, &other] {
        let run = env.wait_run(&env.trigger(w).await?, RUN_TIMEOUT).await?;
        assert_eq!(run["status"], "SUCCEEDED", "{run}");
    }
    let docs = engine.documents().join("\n");
    for w in [&wf, &other] {
        for path in ["/root/.npm", "/work/node_modules"] {
            let key = format!("cacheVolume(key:\"tms:{w}:{path}\")");
            assert!(docs.contains(&key), "missing {key} in:\n{docs}");
        }
    }
    assert_eq!(docs.matches("withMountedCache").count(), 4, "{docs}");
    assert!(docs.contains("path:\"/root/.npm\""), "{docs}");

    // Invalid cache paths are refused up front, naming the field.
    let bad = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($i: WorkflowInput!) { createWorkflow(input: $i) { id } }",
            json!({"i": {"name": "bad-cache", "steps": [{"name": "s", "image": "alpine", "run": "true", "cachePaths": ["relative/dir"]}]}}),
        )
        .await?;
    assert_eq!(
        bad["errors"][0]["extensions"]["field"],
        "input.steps[0].cachePaths[0]"
    );
    Ok(())
}
