//! Contract tests of the Dagger executor against the loopback fake engine
//! (`tms_tests::dagger_engine`): the exact documents sent for a representative pair of steps, and
//! how every kind of engine answer maps onto outcomes and errors.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use tms_core::error::report;
use tms_core::runs::progress::ProgressLine;
use tms_core::workflows::StepSpec;
use tms_tests::dagger_engine::{ExecErrorStyle, ExecOutput, FakeEngine, Fault, canonicalize};
use uuid::Uuid;

use super::*;

const RUN: &str = "0190f3c2-7d1e-7000-8000-00000000abcd";
const SECRET: &str = "s3cr3t-value";

fn executor(engine: &FakeEngine) -> DaggerExecutor {
    DaggerExecutor::new(EngineSource::Session {
        port: engine.port,
        token: engine.token.clone(),
    })
}

fn request(step: StepSpec, attempt: i32, deps: &[&str], secrets: &[(&str, &str)]) -> StepRequest {
    StepRequest {
        run_id: Uuid::parse_str(RUN).unwrap(),
        workflow_id: Uuid::nil(),
        step,
        attempt,
        step_dir: PathBuf::from("/nonexistent/unused-by-dagger"),
        inputs: deps
            .iter()
            .map(|d| (d.to_string(), PathBuf::from("/nonexistent")))
            .collect(),
        secrets: secrets
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        masks: Vec::new(),
        run_inputs: PathBuf::from("/nonexistent/_inputs.json"),
        input_vars: Default::default(),
    }
}

fn shell_step(name: &str, script: &str) -> StepSpec {
    StepSpec {
        name: name.into(),
        image: "alpine:3.20".into(),
        run: Some(script.into()),
        ..Default::default()
    }
}

async fn run(
    exec: &DaggerExecutor,
    req: StepRequest,
    caches: Vec<(String, String)>,
) -> (Result<StepOutcome, ExecError>, Vec<ProgressLine>) {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    let res = exec.run_with_caches(req, tx, caches).await;
    let mut lines = Vec::new();
    while let Ok(l) = rx.try_recv() {
        lines.push(l);
    }
    (res, lines)
}

/// A document as the SDK writes it: `query{a{b{c}}}` from `["a", "b", "c"]`.
fn doc(fields: &[&str]) -> String {
    format!("query{{{}{}", fields.join("{"), "}".repeat(fields.len()))
}

fn count(engine: &FakeEngine, doc: &str) -> usize {
    engine.documents().iter().filter(|d| *d == doc).count()
}

#[tokio::test]
async fn representative_steps_send_exactly_these_documents() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| match i.env("TMS_STEP") {
        Some("build") => ExecOutput {
            stdout: "built\n".into(),
            out: [("app.bin".to_string(), "ELF".to_string())].into(),
            ..Default::default()
        },
        Some("test") => ExecOutput {
            stdout: format!(
                "token={}\n::progress 50 tests {} half done\n",
                i.secrets["API_TOKEN"], i.secrets["API_TOKEN"]
            ),
            stderr: "warning: slow\n".into(),
            out: [("report.txt".to_string(), "ok".to_string())].into(),
            ..Default::default()
        },
        other => panic!("unexpected step {other:?}"),
    });
    let exec = executor(&engine);
    exec.connect().await.unwrap();

    // argv form, plain env (with characters that need escaping), workdir.
    let build = StepSpec {
        name: "build".into(),
        image: "alpine:3.20".into(),
        command: Some(vec!["make".into(), "-C".into(), "src".into(), "all".into()]),
        env: BTreeMap::from([
            ("CC".to_string(), "gcc".to_string()),
            ("MODE".to_string(), "release \"fast\"\n".to_string()),
        ]),
        workdir: Some("/src".into()),
        ..Default::default()
    };
    let (res, _) = run(&exec, request(build, 1, &[], &[]), vec![]).await;
    let out = res.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.log_tail, "built\n");

    // shell form, a secret, a dependency directory, a cache volume, a second attempt.
    let test = StepSpec {
        secrets: vec!["API_TOKEN".into()],
        depends_on: vec!["build".into()],
        image: "python:3.12-slim".into(),
        ..shell_step("test", "pytest -q | tee /out/report.txt")
    };
    let cache = vec![(
        "/root/.cache/pip".to_string(),
        pipeline::cache_volume_key("wf-1", "/root/.cache/pip"),
    )];
    let (res, progress) = run(
        &exec,
        request(test, 2, &["build"], &[("API_TOKEN", SECRET)]),
        cache,
    )
    .await;
    let out = res.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(
        out.log_tail,
        "token=***\n::progress 50 tests *** half done\nwarning: slow\n"
    );
    assert_eq!(
        progress,
        vec![ProgressLine {
            percent: 50.0,
            message: Some("tests *** half done".into())
        }]
    );

    let tms_env = |step: &str, attempt: u8| {
        vec![
            r#"withEnvVariable(name:"TMS_OUT", value:"/out")"#.to_string(),
            r#"withEnvVariable(name:"TMS_IN", value:"/in")"#.to_string(),
            format!(r#"withEnvVariable(name:"TMS_RUN_ID", value:"{RUN}")"#),
            format!(r#"withEnvVariable(name:"TMS_STEP", value:"{step}")"#),
            format!(r#"withEnvVariable(name:"TMS_ATTEMPT", value:"{attempt}")"#),
        ]
    };
    let build_chain = [
        vec![
            r#"node(id:"ctr:1")"#.to_string(),
            "... on Container".into(),
            r#"withWorkdir(path:"/src")"#.into(),
            r#"withEnvVariable(name:"CC", value:"gcc")"#.into(),
            r#"withEnvVariable(name:"MODE", value:"release \"fast\"\n")"#.into(),
        ],
        tms_env("build", 1),
        vec![
            r#"withDirectory(inheritOwner:true, path:"/out", source:"dir:2")"#.into(),
            r#"withExec(args:["make","-C","src","all"])"#.into(),
            "sync".into(),
        ],
    ]
    .concat();
    let test_chain = [
        vec![r#"node(id:"ctr:5")"#.to_string(), "... on Container".into()],
        tms_env("test", 2),
        vec![
            r#"withSecretVariable(name:"API_TOKEN", secret:"secret:6")"#.into(),
            r#"withDirectory(path:"/in/build", source:"dir:4")"#.into(),
            r#"withDirectory(inheritOwner:true, path:"/out", source:"dir:8")"#.into(),
            r#"withMountedCache(cache:"cache:7", path:"/root/.cache/pip")"#.into(),
            r#"withExec(args:["sh","-c","pytest -q | tee /out/report.txt"])"#.into(),
            "sync".into(),
        ],
    ]
    .concat();
    let on =
        |id: &str, leaf: &str| doc(&[&format!(r#"node(id:"{id}")"#), "... on Container", leaf]);
    let expected = vec![
        doc(&["version"]),
        // build
        doc(&[r#"container"#, r#"from(address:"alpine:3.20")"#, "id"]),
        doc(&["directory", "id"]),
        doc(&build_chain.iter().map(String::as_str).collect::<Vec<_>>()),
        on("ctr:3", "exitCode"),
        on("ctr:3", "stdout"),
        on("ctr:3", "stderr"),
        doc(&[
            r#"node(id:"ctr:3")"#,
            "... on Container",
            r#"directory(path:"/out")"#,
            "id",
        ]),
        // test
        doc(&["container", r#"from(address:"python:3.12-slim")"#, "id"]),
        doc(&[
            &format!(r#"setSecret(name:"API_TOKEN", plaintext:"{SECRET}")"#),
            "id",
        ]),
        doc(&[r#"cacheVolume(key:"tms:wf-1:/root/.cache/pip")"#, "id"]),
        doc(&["directory", "id"]),
        doc(&test_chain.iter().map(String::as_str).collect::<Vec<_>>()),
        on("ctr:9", "exitCode"),
        on("ctr:9", "stdout"),
        on("ctr:9", "stderr"),
        doc(&[
            r#"node(id:"ctr:9")"#,
            "... on Container",
            r#"directory(path:"/out")"#,
            "id",
        ]),
    ];
    let expected: Vec<String> = expected.iter().map(|d| canonicalize(d)).collect();
    let got = engine.documents();
    for (i, (g, e)) in got.iter().zip(&expected).enumerate() {
        assert_eq!(g, e, "document {i} differs");
    }
    assert_eq!(got.len(), expected.len(), "{got:#?}");

    // The secret's plaintext went to the engine exactly once, in its setSecret document.
    let carrying: Vec<_> = engine
        .received()
        .into_iter()
        .filter(|r| r.raw.contains(SECRET))
        .collect();
    assert_eq!(carrying.len(), 1);
    assert!(carrying[0].raw.starts_with("query{setSecret("));

    // What the engine ran with: the dependency's files, the secret, the cache volume.
    let execs = engine.execs();
    assert_eq!(execs.len(), 2);
    assert_eq!(execs[0].workdir.as_deref(), Some("/src"));
    assert_eq!(execs[0].env("MODE"), Some("release \"fast\"\n"));
    assert_eq!(execs[1].dirs["/in/build"]["app.bin"], "ELF");
    assert_eq!(execs[1].secrets["API_TOKEN"], SECRET);
    assert_eq!(
        execs[1].caches["/root/.cache/pip"],
        "tms:wf-1:/root/.cache/pip"
    );
    assert_eq!(execs[1].workdir, None, "no workdir: the image's own");
}

#[tokio::test]
async fn a_failing_command_is_a_failed_outcome_with_its_exit_code_and_masked_output() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| ExecOutput {
        exit_code: if i.env("TMS_STEP") == Some("boom") {
            3
        } else {
            5
        },
        stdout: "about to fail\n::progress 40 nearly\n".into(),
        stderr: format!("bad token {}\n", i.secrets["TOKEN"]),
        out: [("partial".to_string(), "x".to_string())].into(),
    });
    let exec = executor(&engine);

    let boom = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("boom", "exit 3")
    };
    let (res, progress) = run(&exec, request(boom, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
    let out = res.expect("an EXEC_ERROR is an outcome, not an executor error");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(
        out.log_tail,
        "about to fail\n::progress 40 nearly\nbad token ***\n"
    );
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].percent, 40.0);

    // A failed step hands nothing to dependents.
    let after = shell_step("after", "true");
    let (res, _) = run(&exec, request(after, 1, &["boom"], &[]), vec![]).await;
    match res {
        Err(ExecError::Step(m)) => assert!(m.contains("output of step `boom`"), "{m}"),
        other => panic!("expected a step error, got {other:?}"),
    }

    // Engines that send `combinedOutput` instead of stdout/stderr.
    engine.set_exec_error_style(ExecErrorStyle::CombinedOutput);
    let other = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("other", "exit 5")
    };
    let (res, _) = run(&exec, request(other, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
    let out = res.unwrap();
    assert_eq!(out.exit_code, Some(5));
    assert_eq!(
        out.log_tail,
        "about to fail\n::progress 40 nearly\nbad token ***\n"
    );
}

#[tokio::test]
async fn transport_failures_are_transient_and_the_session_is_reopened() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("fine\n"));
    let exec = executor(&engine);
    exec.connect().await.unwrap();
    let step = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("s", "echo fine")
    };
    let cases = [
        ("{sync}", Fault::Http500, "HTTP 500"),
        ("{sync}", Fault::Drop, "connection"),
        ("{exitCode}", Fault::DataNull, "without data"),
        ("from(", Fault::Http500, "HTTP 500"),
        ("setSecret(", Fault::Drop, "connection"),
        ("{directory{id}}", Fault::DataNull, "without data"),
    ];
    for (pattern, fault, says) in cases {
        let opened = count(&engine, "query{version}");
        engine.fail_next(pattern, fault);
        let (res, _) = run(
            &exec,
            request(step.clone(), 1, &[], &[("TOKEN", SECRET)]),
            vec![],
        )
        .await;
        assert_eq!(engine.pending_faults(), 0, "{pattern}: fault not reached");
        match res {
            Err(ExecError::Transient(m)) => {
                assert!(m.contains(says), "{fault:?} on {pattern}: {m}");
                assert!(!m.contains("panicked"), "{m}");
                assert!(!m.contains(SECRET), "{m}");
            }
            other => panic!("{fault:?} on {pattern}: expected transient, got {other:?}"),
        }
        // The next attempt opens a new session (a fresh version check) and succeeds.
        let (res, _) = run(
            &exec,
            request(step.clone(), 2, &[], &[("TOKEN", SECRET)]),
            vec![],
        )
        .await;
        assert_eq!(
            res.unwrap().exit_code,
            Some(0),
            "after {fault:?} on {pattern}"
        );
        assert_eq!(count(&engine, "query{version}"), opened + 1, "{pattern}");
    }
}

#[tokio::test]
async fn an_image_that_cannot_be_pulled_is_a_step_error_naming_it() {
    let engine = FakeEngine::start().await.unwrap();
    engine.missing_image("ghcr.io/acme/nope:1");
    let exec = executor(&engine);
    exec.connect().await.unwrap();
    let step = StepSpec {
        image: "ghcr.io/acme/nope:1".into(),
        ..shell_step("pull", "true")
    };
    let (res, _) = run(&exec, request(step, 1, &[], &[]), vec![]).await;
    match res {
        Err(ExecError::Step(m)) => {
            assert!(m.contains("cannot pull image `ghcr.io/acme/nope:1`"), "{m}");
            assert!(m.contains("pull access denied"), "{m}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    assert!(engine.execs().is_empty());
    // The engine answered: the session is fine and was kept.
    assert_eq!(count(&engine, "query{version}"), 1);
    exec.ready().await.unwrap();
}

#[tokio::test]
async fn a_wrong_session_token_is_refused_and_reported() {
    let engine = FakeEngine::start().await.unwrap();
    let exec = DaggerExecutor::new(EngineSource::Session {
        port: engine.port,
        token: "not-the-token".into(),
    });
    let err = report(&exec.connect().await.unwrap_err());
    assert!(err.contains("rejected the session token"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    assert_eq!(engine.rejected(), 1);
    assert!(engine.documents().is_empty());
    let (res, _) = run(&exec, request(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
    assert!(matches!(res, Err(ExecError::Transient(_))), "{res:?}");
}

#[tokio::test]
async fn an_engine_that_goes_away_makes_the_executor_unready_until_it_is_back() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("hi\n"));
    let (port, token) = (engine.port, engine.token.clone());
    let exec = executor(&engine);
    exec.ready().await.unwrap();

    drop(engine);
    let err = report(&exec.ready().await.unwrap_err());
    assert!(err.contains("cannot connect"), "{err}");
    let (res, _) = run(&exec, request(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
    match res {
        Err(ExecError::Transient(m)) => assert!(m.contains("not reachable"), "{m}"),
        other => panic!("expected transient, got {other:?}"),
    }

    let engine = FakeEngine::start_on(port, &token).await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("back\n"));
    // Reconnection is spaced out after failures; wait for it (bounded by the 10 s maximum).
    let deadline = Instant::now() + Duration::from_secs(15);
    while exec.ready().await.is_err() {
        assert!(
            Instant::now() < deadline,
            "executor never became ready again"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (res, _) = run(&exec, request(shell_step("s", "true"), 2, &[], &[]), vec![]).await;
    assert_eq!(res.unwrap().log_tail, "back\n");
}

#[tokio::test]
async fn a_secret_handed_on_through_out_is_masked_in_the_dependent_too() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| match i.env("TMS_STEP") {
        Some("writer") => ExecOutput {
            out: [("token".to_string(), i.secrets["TOKEN"].clone())].into(),
            ..Default::default()
        },
        _ => ExecOutput::ok(format!("read {}\n", i.dirs["/in/writer"]["token"])),
    });
    let exec = executor(&engine);
    let writer = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("writer", "echo $TOKEN > /out/token")
    };
    let (res, _) = run(&exec, request(writer, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
    res.unwrap();
    let reader = shell_step("reader", "cat /in/writer/token");
    let (res, _) = run(&exec, request(reader, 1, &["writer"], &[]), vec![]).await;
    assert_eq!(res.unwrap().log_tail, "read ***\n");
}

#[test]
fn masks_hide_secret_values_but_not_short_ones() {
    let secrets = BTreeMap::from([
        ("A".to_string(), SECRET.to_string()),
        ("B".to_string(), "xy".to_string()),
    ]);
    let m = Masks::new(&secrets);
    assert_eq!(
        m.apply(&format!("{SECRET} and xy and {SECRET}")),
        "*** and xy and ***"
    );
}

/// Whether `pid` has exited (gone, or a zombie waiting to be reaped).
fn exited(pid: &str) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(") ")
            .is_some_and(|(_, rest)| rest.starts_with('Z')),
    }
}

#[tokio::test]
async fn a_cli_found_on_the_system_is_run_as_dagger_session_and_ends_with_the_worker() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("via cli\n"));
    // A stand-in CLI: announces the fake engine's session like `dagger session` does, then lives
    // until its stdin closes.
    let dir = std::env::temp_dir().join(format!("tms-dagger-cli-{}", Uuid::new_v4().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let pidfile = dir.join("pid");
    let cli = dir.join("dagger");
    std::fs::write(
        &cli,
        format!(
            "#!/bin/sh\n[ \"$1\" = session ] || exit 2\necho $$ > {pid}\necho 'starting engine'\necho '{{\"port\":{port},\"session_token\":\"{token}\"}}'\nexec cat >/dev/null\n",
            pid = pidfile.display(),
            port = engine.port,
            token = engine.token,
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&cli, std::fs::Permissions::from_mode(0o755)).unwrap();

    let exec = DaggerExecutor::new(EngineSource::Cli {
        path: cli,
        via: "PATH",
    });
    assert_eq!(exec.connect().await.unwrap(), "v1.0.0-beta.23-fake");
    let (res, _) = run(&exec, request(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
    assert_eq!(res.unwrap().log_tail, "via cli\n");
    let pid = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .to_string();
    assert!(
        !exited(&pid),
        "the session must live while the executor does"
    );

    drop(exec);
    let deadline = Instant::now() + Duration::from_secs(10);
    while !exited(&pid) {
        assert!(
            Instant::now() < deadline,
            "`dagger session` {pid} outlived the executor"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let _ = std::fs::remove_dir_all(&dir);
}
