//! Contract tests of the Dagger executor against the loopback fake engine
//! (`tms_tests::dagger_engine`): the exact documents sent for a representative pair of steps, and
//! how every kind of engine answer maps onto outcomes and errors. The host side of files (inputs
//! read from the host, `/out` exported to it) is in `tests_files.rs`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use tms_core::runs::progress::ProgressLine;
use tms_core::workflows::StepSpec;
use tms_tests::dagger_engine::{ExecErrorStyle, ExecOutput, FakeEngine, Fault, canonicalize};
use uuid::Uuid;

use super::*;

pub(super) const RUN: &str = "0190f3c2-7d1e-7000-8000-00000000abcd";
pub(super) const SECRET: &str = "s3cr3t-value";

pub(super) fn executor(engine: &FakeEngine) -> DaggerExecutor {
    DaggerExecutor::new(EngineSource::Session {
        port: engine.port,
        token: engine.token.clone(),
    })
}

/// A private host directory per test, laid out as the runner lays out a run: `<dir>/<step>` is a
/// step's directory, `<dir>/<dep>/out` a dependency's outputs, `<dir>/_inputs.json` the run's
/// inputs (absent unless a test writes it). Removed when dropped.
pub(super) struct Scratch(PathBuf);

impl Scratch {
    pub(super) fn new() -> Self {
        let dir = std::env::temp_dir().join(format!("tms-dagger-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(super) fn path(&self) -> &Path {
        &self.0
    }

    /// `<dir>/<step>/out` as the string the engine is given.
    pub(super) fn out(&self, step: &str) -> String {
        self.0.join(step).join("out").display().to_string()
    }

    /// A request for `step` whose run's secrets (`masks`) are the ones it is given.
    pub(super) fn req(
        &self,
        step: StepSpec,
        attempt: i32,
        deps: &[&str],
        secrets: &[(&str, &str)],
    ) -> StepRequest {
        StepRequest {
            run_id: Uuid::parse_str(RUN).unwrap(),
            workflow_id: Uuid::nil(),
            step_dir: self.0.join(&step.name),
            step,
            attempt,
            inputs: deps
                .iter()
                .map(|d| (d.to_string(), self.0.join(d).join("out")))
                .collect(),
            secrets: secrets
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            masks: secrets.iter().map(|(_, v)| v.to_string()).collect(),
            run_inputs: self.0.join("_inputs.json"),
            input_vars: Default::default(),
            log: None,
        }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) fn shell_step(name: &str, script: &str) -> StepSpec {
    StepSpec {
        name: name.into(),
        image: "alpine:3.20".into(),
        run: Some(script.into()),
        ..Default::default()
    }
}

pub(super) async fn run(
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
pub(super) fn doc(fields: &[&str]) -> String {
    format!("query{{{}{}", fields.join("{"), "}".repeat(fields.len()))
}

pub(super) fn count(engine: &FakeEngine, doc: &str) -> usize {
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
    let dir = Scratch::new();

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
    let (res, _) = run(&exec, dir.req(build, 1, &[], &[]), vec![]).await;
    let out = res.unwrap();
    assert_eq!(out.exit_code, Some(0));
    assert_eq!(out.log_tail, "built\n");

    // shell form, a secret, a dependency directory, the run's inputs, a cache volume, attempt 2.
    std::fs::write(dir.path().join("_inputs.json"), r#"{"mode":"quick"}"#).unwrap();
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
    let mut req = dir.req(test, 2, &["build"], &[("API_TOKEN", SECRET)]);
    req.input_vars = BTreeMap::from([("TMS_INPUT_MODE".to_string(), "quick".to_string())]);
    let (res, progress) = run(&exec, req, cache).await;
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

    let tms_env = |step: &str, attempt: u8, input_vars: &[&str]| {
        let mut env = vec![
            r#"withEnvVariable(name:"TMS_OUT", value:"/out")"#.to_string(),
            r#"withEnvVariable(name:"TMS_IN", value:"/in")"#.to_string(),
            r#"withEnvVariable(name:"TMS_INPUTS", value:"/in/_inputs.json")"#.to_string(),
        ];
        env.extend(input_vars.iter().map(|v| v.to_string()));
        env.extend([
            format!(r#"withEnvVariable(name:"TMS_RUN_ID", value:"{RUN}")"#),
            format!(r#"withEnvVariable(name:"TMS_STEP", value:"{step}")"#),
            format!(r#"withEnvVariable(name:"TMS_ATTEMPT", value:"{attempt}")"#),
        ]);
        env
    };
    let build_chain = [
        vec![
            r#"node(id:"ctr:1")"#.to_string(),
            "... on Container".into(),
            r#"withWorkdir(path:"/src")"#.into(),
            r#"withEnvVariable(name:"CC", value:"gcc")"#.into(),
            r#"withEnvVariable(name:"MODE", value:"release \"fast\"\n")"#.into(),
        ],
        tms_env("build", 1, &[]),
        vec![
            r#"withDirectory(inheritOwner:true, path:"/out", source:"dir:2")"#.into(),
            r#"withExec(args:["make","-C","src","all"])"#.into(),
            "sync".into(),
        ],
    ]
    .concat();
    let test_chain = [
        vec![r#"node(id:"ctr:4")"#.to_string(), "... on Container".into()],
        tms_env(
            "test",
            2,
            &[r#"withEnvVariable(name:"TMS_INPUT_MODE", value:"quick")"#],
        ),
        vec![
            r#"withSecretVariable(name:"API_TOKEN", secret:"secret:5")"#.into(),
            r#"withDirectory(path:"/in/build", source:"dir:7")"#.into(),
            r#"withFile(path:"/in/_inputs.json", source:"file:8")"#.into(),
            r#"withDirectory(inheritOwner:true, path:"/out", source:"dir:9")"#.into(),
            r#"withMountedCache(cache:"cache:6", path:"/root/.cache/pip")"#.into(),
            r#"withExec(args:["sh","-c","pytest -q | tee /out/report.txt"])"#.into(),
            "sync".into(),
        ],
    ]
    .concat();
    let on =
        |id: &str, leaf: &str| doc(&[&format!(r#"node(id:"{id}")"#), "... on Container", leaf]);
    let export = |id: &str, step: &str| {
        doc(&[
            &format!(r#"node(id:"{id}")"#),
            "... on Container",
            r#"directory(path:"/out")"#,
            &format!(r#"export(path:"{}")"#, dir.out(step)),
        ])
    };
    let root = dir.path().display();
    let expected = vec![
        doc(&["version"]),
        // build
        doc(&[r#"container"#, r#"from(address:"alpine:3.20")"#, "id"]),
        doc(&["directory", "id"]),
        doc(&build_chain.iter().map(String::as_str).collect::<Vec<_>>()),
        on("ctr:3", "exitCode"),
        on("ctr:3", "stdout"),
        on("ctr:3", "stderr"),
        export("ctr:3", "build"),
        // test
        doc(&["container", r#"from(address:"python:3.12-slim")"#, "id"]),
        doc(&[
            &format!(r#"setSecret(name:"API_TOKEN", plaintext:"{SECRET}")"#),
            "id",
        ]),
        doc(&[r#"cacheVolume(key:"tms:wf-1:/root/.cache/pip")"#, "id"]),
        doc(&[
            "host",
            &format!(r#"directory(noCache:true, path:"{root}/build/out")"#),
            "id",
        ]),
        doc(&[
            "host",
            &format!(r#"file(noCache:true, path:"{root}/_inputs.json")"#),
            "id",
        ]),
        doc(&["directory", "id"]),
        doc(&test_chain.iter().map(String::as_str).collect::<Vec<_>>()),
        on("ctr:10", "exitCode"),
        on("ctr:10", "stdout"),
        on("ctr:10", "stderr"),
        export("ctr:10", "test"),
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

    // What the engine ran with: the dependency's files (exported by `build`, read back from the
    // host), the run's inputs, the secret, the cache volume.
    let execs = engine.execs();
    assert_eq!(execs.len(), 2);
    assert_eq!(execs[0].workdir.as_deref(), Some("/src"));
    assert_eq!(execs[0].env("MODE"), Some("release \"fast\"\n"));
    assert!(
        execs[0].files.is_empty(),
        "no inputs file yet: nothing mounted"
    );
    assert_eq!(execs[1].dirs["/in/build"]["app.bin"], "ELF");
    assert_eq!(execs[1].files["/in/_inputs.json"], r#"{"mode":"quick"}"#);
    assert_eq!(execs[1].env("TMS_INPUT_MODE"), Some("quick"));
    let on_host = |p: &str| std::fs::read_to_string(dir.path().join(p)).unwrap();
    assert_eq!(on_host("build/out/app.bin"), "ELF");
    assert_eq!(on_host("test/out/report.txt"), "ok");
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
    let dir = Scratch::new();

    let boom = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("boom", "exit 3")
    };
    let (res, progress) = run(&exec, dir.req(boom, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
    let out = res.expect("an EXEC_ERROR is an outcome, not an executor error");
    assert_eq!(out.exit_code, Some(3));
    assert_eq!(
        out.log_tail,
        "about to fail\n::progress 40 nearly\nbad token ***\n"
    );
    assert_eq!(progress.len(), 1);
    assert_eq!(progress[0].percent, 40.0);

    // A failed step exports nothing: its host `out` was emptied and stays empty.
    assert!(!engine.documents().iter().any(|d| d.contains("export(")));
    let left: Vec<_> = std::fs::read_dir(dir.path().join("boom/out"))
        .unwrap()
        .collect();
    assert!(left.is_empty(), "{left:?}");

    // Engines that send `combinedOutput` instead of stdout/stderr.
    engine.set_exec_error_style(ExecErrorStyle::CombinedOutput);
    let other = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("other", "exit 5")
    };
    let (res, _) = run(&exec, dir.req(other, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
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
    let dir = Scratch::new();
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
            dir.req(step.clone(), 1, &[], &[("TOKEN", SECRET)]),
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
            dir.req(step.clone(), 2, &[], &[("TOKEN", SECRET)]),
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
    let dir = Scratch::new();
    exec.connect().await.unwrap();
    let step = StepSpec {
        image: "ghcr.io/acme/nope:1".into(),
        ..shell_step("pull", "true")
    };
    let (res, _) = run(&exec, dir.req(step, 1, &[], &[]), vec![]).await;
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

#[test]
fn masks_hide_secret_values_but_not_short_ones() {
    let dir = Scratch::new();
    let mut req = dir.req(shell_step("s", "true"), 1, &[], &[("A", SECRET)]);
    req.masks = vec!["xy".to_string()];
    let m = Masks::for_request(&req);
    assert_eq!(
        m.apply(&format!("{SECRET} and xy and {SECRET}")),
        "*** and xy and ***"
    );
}
