//! Files between the host and the engine: a successful step's `/out` is exported to the host's
//! `step_dir/out`, a dependent's `/in/<dep>` is read from the host directory it is given (not
//! from anything the engine or executor kept), and the run's inputs file and `TMS_INPUT_*`
//! variables reach the container. Against the loopback fake engine, whose host side uses the
//! real file system.

use std::collections::BTreeMap;

use tms_core::workflows::StepSpec;
use tms_tests::dagger_engine::{ExecOutput, FakeEngine, Fault, Files};

use super::tests::{SECRET, Scratch, count, executor, run, shell_step};
use super::*;

fn files(pairs: &[(&str, &str)]) -> Files {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// Every file under `dir`, relative path → content.
fn read_tree(dir: &std::path::Path) -> Files {
    let mut found = Files::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(d) = pending.pop() {
        for e in std::fs::read_dir(&d).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                pending.push(p);
            } else {
                let rel = p.strip_prefix(dir).unwrap().display().to_string();
                found.insert(rel, std::fs::read_to_string(&p).unwrap());
            }
        }
    }
    found
}

#[tokio::test]
async fn out_is_exported_to_the_host_and_a_dependent_reads_its_input_from_the_host() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| match i.env("TMS_STEP") {
        Some("a") => ExecOutput {
            out: files(&[("greeting", "hello"), ("nested/deep.txt", "deep")]),
            ..Default::default()
        },
        Some("b") => ExecOutput::ok(format!(
            "{}\n",
            i.dirs["/in/a"]
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect::<Vec<_>>()
                .join(" ")
        )),
        other => panic!("unexpected step {other:?}"),
    });
    let dir = Scratch::new();
    // Left over from an earlier attempt: emptied before the step runs.
    std::fs::create_dir_all(dir.path().join("a/out")).unwrap();
    std::fs::write(dir.path().join("a/out/stale"), "old").unwrap();

    let (res, _) = run(
        &executor(&engine),
        dir.req(shell_step("a", "make"), 1, &[], &[]),
        vec![],
    )
    .await;
    assert_eq!(res.unwrap().exit_code, Some(0));
    assert_eq!(
        read_tree(&dir.path().join("a/out")),
        files(&[("greeting", "hello"), ("nested/deep.txt", "deep")])
    );

    // What a dependent sees is what is on the host now (as the artifact store restored it), read
    // by a new executor: nothing is carried over in the engine or in the executor's memory.
    std::fs::write(dir.path().join("a/out/restored-extra"), "from the store").unwrap();
    let (res, _) = run(
        &executor(&engine),
        dir.req(shell_step("b", "cat /in/a/*"), 1, &["a"], &[]),
        vec![],
    )
    .await;
    assert_eq!(
        res.unwrap().log_tail,
        "greeting=hello nested/deep.txt=deep restored-extra=from the store\n"
    );
    let root = dir.path().display();
    let read = format!(r#"query{{host{{directory(noCache:true, path:"{root}/a/out"){{id}}}}}}"#);
    assert_eq!(count(&engine, &read), 1, "{:#?}", engine.documents());
    assert!(read_tree(&dir.path().join("b/out")).is_empty());
}

#[tokio::test]
async fn the_run_inputs_file_and_input_variables_reach_the_container() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("ran\n"));
    let exec = executor(&engine);
    let dir = Scratch::new();
    let vars = BTreeMap::from([
        ("TMS_INPUT_NAME".to_string(), "world".to_string()),
        ("TMS_INPUT_COUNT".to_string(), "3".to_string()),
    ]);

    // No inputs file on the host: nothing is mounted, the step still runs.
    let mut req = dir.req(shell_step("s", "true"), 1, &[], &[]);
    req.input_vars = vars.clone();
    let (res, _) = run(&exec, req.clone(), vec![]).await;
    assert_eq!(res.unwrap().exit_code, Some(0));
    assert!(engine.documents().iter().all(|d| !d.contains("file(")));

    std::fs::write(
        dir.path().join("_inputs.json"),
        r#"{"name":"world","count":3}"#,
    )
    .unwrap();
    let (res, _) = run(&exec, req, vec![]).await;
    assert_eq!(res.unwrap().exit_code, Some(0));

    let execs = engine.execs();
    assert_eq!(execs.len(), 2);
    for e in &execs {
        assert_eq!(e.env("TMS_INPUTS"), Some("/in/_inputs.json"));
        assert_eq!(e.env("TMS_INPUT_NAME"), Some("world"));
        assert_eq!(e.env("TMS_INPUT_COUNT"), Some("3"));
    }
    assert!(execs[0].files.is_empty(), "{:?}", execs[0].files);
    assert_eq!(
        execs[1].files,
        BTreeMap::from([(
            "/in/_inputs.json".to_string(),
            r#"{"name":"world","count":3}"#.to_string()
        )])
    );
}

#[tokio::test]
async fn a_dependency_that_was_not_restored_is_a_step_error_naming_it() {
    let engine = FakeEngine::start().await.unwrap();
    let dir = Scratch::new();
    let req = dir.req(shell_step("b", "true"), 1, &["a"], &[]);
    let (res, _) = run(&executor(&engine), req, vec![]).await;
    match res {
        Err(ExecError::Step(m)) => {
            assert!(m.contains("output of step `a` was not restored"), "{m}");
            assert!(m.contains(&dir.out("a")), "{m}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    assert!(engine.execs().is_empty());
}

#[tokio::test]
async fn export_failures_are_transient_when_the_engine_is_unreachable_and_step_errors_otherwise() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| ExecOutput {
        out: match i.env("TMS_STEP") {
            // A file and a directory of one name: the engine cannot write that to the host.
            Some("clash") => files(&[("report", "a"), ("report/inner", "b")]),
            _ => files(&[("ok.txt", "ok")]),
        },
        ..Default::default()
    });
    let exec = executor(&engine);
    exec.connect().await.unwrap();
    let dir = Scratch::new();

    engine.fail_next("export(", Fault::Drop);
    let (res, _) = run(&exec, dir.req(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
    assert_eq!(engine.pending_faults(), 0, "the export was reached");
    match res {
        Err(ExecError::Transient(m)) => assert!(m.contains("connection"), "{m}"),
        other => panic!("expected transient, got {other:?}"),
    }
    // The next attempt opens a new session and its outputs land on the host.
    let (res, _) = run(&exec, dir.req(shell_step("s", "true"), 2, &[], &[]), vec![]).await;
    assert_eq!(res.unwrap().exit_code, Some(0));
    assert_eq!(count(&engine, "query{version}"), 2);
    assert_eq!(
        read_tree(&dir.path().join("s/out")),
        files(&[("ok.txt", "ok")])
    );

    let (res, _) = run(
        &exec,
        dir.req(shell_step("clash", "true"), 1, &[], &[]),
        vec![],
    )
    .await;
    match res {
        Err(ExecError::Step(m)) => {
            assert!(m.contains("could not export the step's /out"), "{m}");
            assert!(m.contains(&dir.out("clash")), "{m}");
        }
        other => panic!("expected a step error, got {other:?}"),
    }
    // A refusal is the step's problem, not the session's: it was kept.
    assert_eq!(count(&engine, "query{version}"), 2);
}

#[tokio::test]
async fn a_secret_handed_on_through_out_is_masked_in_the_dependent_and_never_in_a_document() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|i| match i.env("TMS_STEP") {
        Some("writer") => ExecOutput {
            out: files(&[("token", &i.secrets["TOKEN"])]),
            ..Default::default()
        },
        _ => ExecOutput::ok(format!("read {}\n", i.dirs["/in/writer"]["token"])),
    });
    let exec = executor(&engine);
    let dir = Scratch::new();
    let writer = StepSpec {
        secrets: vec!["TOKEN".into()],
        ..shell_step("writer", "echo $TOKEN > /out/token")
    };
    let (res, _) = run(&exec, dir.req(writer, 1, &[], &[("TOKEN", SECRET)]), vec![]).await;
    res.unwrap();
    // The reader has no secret of its own; the run's secrets (`masks`) still cover it.
    let mut reader = dir.req(
        shell_step("reader", "cat /in/writer/token"),
        1,
        &["writer"],
        &[],
    );
    reader.masks = vec![SECRET.to_string()];
    let (res, _) = run(&exec, reader, vec![]).await;
    assert_eq!(res.unwrap().log_tail, "read ***\n");

    // The value went through the host's files, and through no document but its setSecret.
    assert_eq!(
        std::fs::read_to_string(dir.path().join("writer/out/token")).unwrap(),
        SECRET
    );
    let carrying: Vec<_> = engine
        .received()
        .into_iter()
        .filter(|r| r.raw.contains(SECRET))
        .collect();
    assert_eq!(carrying.len(), 1, "{carrying:#?}");
    assert!(carrying[0].raw.starts_with("query{setSecret("));
}
