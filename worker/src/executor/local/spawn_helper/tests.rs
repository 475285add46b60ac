//! The spawn helper against the real worker binary (built beside the tests).

use super::*;

/// The worker binary built beside this test (`target/<profile>/tms-worker`).
fn worker_binary() -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test executable");
    let bin = exe
        .parent()
        .and_then(Path::parent)
        .expect("target directory")
        .join("tms-worker");
    assert!(
        bin.exists(),
        "{} is missing: build the binaries first (`scripts/test` does)",
        bin.display()
    );
    bin
}

fn os(v: &[&str]) -> Vec<OsString> {
    v.iter().map(OsString::from).collect()
}

async fn read_all(mut r: pipe::Receiver) -> String {
    let mut s = String::new();
    r.read_to_string(&mut s).await.expect("read");
    s
}

#[tokio::test]
async fn the_helper_runs_a_step_with_its_environment_directory_and_exit_code() {
    let helper = Helper::start_from(&worker_binary()).expect("helper starts");
    let dir = std::env::temp_dir();
    let env = BTreeMap::from([("X".into(), "hi there".into())]);
    let argv = os(&["sh", "-c", "echo out $X; pwd; echo err >&2; exit 3"]);
    let mut s = helper
        .spawn(Path::new("/bin/sh"), &argv, &env, &dir)
        .await
        .expect("spawned");
    assert!(s.pid > 0);
    let (out, err) = (read_all(s.stdout), read_all(s.stderr));
    let (out, err) = tokio::join!(out, err);
    let canonical = dir.canonicalize().expect("temp dir");
    assert_eq!(out, format!("out hi there\n{}\n", canonical.display()));
    assert_eq!(err, "err\n");
    assert_eq!(s.exit.wait().await.expect("exit").code(), Some(3));

    let missing = helper
        .spawn(
            Path::new("/no/such/program"),
            &os(&["x"]),
            &BTreeMap::new(),
            &dir,
        )
        .await;
    match missing {
        Err(SpawnError::Step(e)) => assert_eq!(e.kind(), io::ErrorKind::NotFound),
        other => panic!(
            "expected the step's own error, got {:?}",
            other.map(|s| s.pid)
        ),
    }
    assert!(helper.is_alive());
}

#[tokio::test]
async fn a_dead_helper_takes_its_steps_along_and_is_not_used_again() {
    let helper = Helper::start_from(&worker_binary()).expect("helper starts");
    let dir = std::env::temp_dir();
    let mut s = helper
        .spawn(
            Path::new("/bin/sleep"),
            &os(&["sleep", "30"]),
            &BTreeMap::new(),
            &dir,
        )
        .await
        .expect("spawned");
    // SAFETY: signalling the helper this test started.
    unsafe { libc::kill(helper.pid, libc::SIGKILL) };
    let status = tokio::time::timeout(std::time::Duration::from_secs(10), s.exit.wait())
        .await
        .expect("the step's end is known")
        .expect("exit");
    assert_eq!(status.signal(), Some(libc::SIGKILL));
    // The step itself is gone (or a zombie for init to reap), not left running.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", s.pid)).unwrap_or_default();
        if stat.is_empty()
            || stat
                .rsplit(')')
                .next()
                .is_some_and(|r| r.trim_start().starts_with('Z'))
        {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "step {} outlived its helper: {stat}",
            s.pid
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while helper.is_alive() {
        assert!(
            std::time::Instant::now() < deadline,
            "the helper's death went unnoticed"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let refused = helper
        .spawn(
            Path::new("/bin/true"),
            &os(&["true"]),
            &BTreeMap::new(),
            &dir,
        )
        .await;
    assert!(
        matches!(refused, Err(SpawnError::Helper(_))),
        "{:?}",
        refused.map(|s| s.pid)
    );
}

#[tokio::test]
async fn a_step_too_large_for_the_socket_is_refused_and_the_helper_stays() {
    let helper = Helper::start_from(&worker_binary()).expect("helper starts");
    let dir = std::env::temp_dir();
    let env = BTreeMap::from([("BIG".into(), "x".repeat(600 * 1024).into())]);
    let big = helper
        .spawn(Path::new("/bin/true"), &os(&["true"]), &env, &dir)
        .await;
    assert!(
        matches!(big, Err(SpawnError::Helper(_))),
        "{:?}",
        big.map(|s| s.pid)
    );
    assert!(
        helper.is_alive(),
        "one large step does not retire the helper"
    );
    let mut s = helper
        .spawn(
            Path::new("/bin/true"),
            &os(&["true"]),
            &BTreeMap::new(),
            &dir,
        )
        .await
        .expect("the next step starts");
    assert_eq!(s.exit.wait().await.expect("exit").code(), Some(0));
}

#[test]
fn the_helper_is_out_of_the_workers_process_group() {
    let helper = Helper::start_from(&worker_binary()).expect("helper starts");
    // SAFETY: getpgid on this process and on the helper it started.
    let (ours, its) = unsafe { (libc::getpgid(0), libc::getpgid(helper.pid)) };
    assert_eq!(its, helper.pid, "the helper leads its own group");
    assert_ne!(its, ours);
}

#[test]
fn something_else_at_the_helper_path_is_refused_quickly() {
    // This test binary, run with the helper's argument, runs no test and exits silently.
    let exe = std::env::current_exe().expect("test executable");
    let started = std::time::Instant::now();
    assert!(Helper::start_from(&exe).is_err());
    assert!(started.elapsed() < std::time::Duration::from_secs(5));
}

#[tokio::test]
async fn a_stopped_helper_exits_on_its_own_and_takes_its_running_step() {
    let helper = Helper::start_from(&worker_binary()).expect("helper starts");
    let dir = std::env::temp_dir();
    let argv = os(&["sleep", "60"]);
    let mut s = helper
        .spawn(Path::new("/bin/sleep"), &argv, &BTreeMap::new(), &dir)
        .await
        .expect("spawned");
    assert!(
        helper.stop(std::time::Duration::from_secs(10)),
        "the helper did not exit within 10 s of its socket closing"
    );
    assert!(!helper.is_alive(), "a stopped helper is not used again");
    // The helper exited, and its step died with it.
    let step = s.exit.wait().await;
    assert!(
        step.is_err() || step.as_ref().is_ok_and(|st| !st.success()),
        "the step outlived its stopped helper: {step:?}"
    );
    // SAFETY: kill with signal 0 only asks whether the process exists.
    let helper_gone = unsafe { libc::kill(helper.pid, 0) } != 0;
    assert!(helper_gone, "helper {} still exists", helper.pid);
}
