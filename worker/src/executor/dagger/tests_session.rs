//! The engine session as the executor sees it: a refused token, an engine that goes away and
//! comes back, and a `dagger session` the executor starts itself and ends with it.

use std::time::Duration;

use tms_core::error::report;
use tms_tests::dagger_engine::{ExecOutput, FakeEngine};
use uuid::Uuid;

use super::tests::{Scratch, executor, run, shell_step};
use super::*;

#[tokio::test]
async fn a_wrong_session_token_is_refused_and_reported() {
    let engine = FakeEngine::start().await.unwrap();
    let dir = Scratch::new();
    let exec = DaggerExecutor::new(EngineSource::Session {
        port: engine.port,
        token: "not-the-token".into(),
    });
    let err = report(&exec.connect().await.unwrap_err());
    assert!(err.contains("rejected the session token"), "{err}");
    assert!(!err.contains("not-the-token"), "{err}");
    assert_eq!(engine.rejected(), 1);
    assert!(engine.documents().is_empty());
    let (res, _) = run(&exec, dir.req(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
    assert!(matches!(res, Err(ExecError::Transient(_))), "{res:?}");
}

#[tokio::test]
async fn an_engine_that_goes_away_makes_the_executor_unready_until_it_is_back() {
    let engine = FakeEngine::start().await.unwrap();
    engine.on_exec(|_| ExecOutput::ok("hi\n"));
    let (port, token) = (engine.port, engine.token.clone());
    let exec = executor(&engine);
    let dir = Scratch::new();
    exec.ready().await.unwrap();

    drop(engine);
    let err = report(&exec.ready().await.unwrap_err());
    assert!(err.contains("cannot connect"), "{err}");
    let (res, _) = run(&exec, dir.req(shell_step("s", "true"), 1, &[], &[]), vec![]).await;
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
    let (res, _) = run(&exec, dir.req(shell_step("s", "true"), 2, &[], &[]), vec![]).await;
    assert_eq!(res.unwrap().log_tail, "back\n");
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

    let scratch = Scratch::new();
    let exec = DaggerExecutor::new(EngineSource::Cli {
        path: cli,
        via: "PATH",
    });
    assert_eq!(exec.connect().await.unwrap(), "v1.0.0-beta.23-fake");
    let (res, _) = run(
        &exec,
        scratch.req(shell_step("s", "true"), 1, &[], &[]),
        vec![],
    )
    .await;
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
