//! Start-up refusals of the real `tms-api` and `tms-worker` binaries: a configuration they
//! cannot honour stops them before they serve, with an exit status and a message naming the
//! setting. Nothing here needs Postgres or Redis: every refusal comes before the first
//! connection (the URLs point at closed ports to prove it).

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use tms_tests::{Proc, bin_dir, coverage_env};

/// Runs `bin` with only `vars` (and the coverage variables) in its environment and returns
/// its exit code and stderr. Every case here is refused at once; one that started serving
/// instead is stopped (SIGTERM, then SIGKILL) after 60 s and fails the test.
fn run(bin: &str, vars: &[(&str, &str)]) -> Result<Output> {
    let log =
        std::env::temp_dir().join(format!("tms-startup-{}.log", uuid::Uuid::new_v4().simple()));
    let child = Command::new(bin_dir().join(bin))
        .env_clear()
        .envs(vars.iter().copied())
        .envs(coverage_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log)?)
        .spawn()?;
    let mut proc = Proc {
        name: "startup",
        child,
        log: log.clone(),
        killed: false,
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let status = loop {
        if let Some(status) = proc.child.try_wait()? {
            break Some(status);
        }
        if Instant::now() > deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let stderr = proc.log_text();
    drop(proc);
    let _ = std::fs::remove_file(&log);
    let Some(status) = status else {
        bail!("{bin} was still running after 60 s instead of refusing to start: {stderr}");
    };
    Ok(Output {
        code: status.code(),
        success: status.success(),
        stderr,
    })
}

/// What a refused start left behind.
struct Output {
    code: Option<i32>,
    success: bool,
    stderr: String,
}

fn stderr(out: &Output) -> String {
    out.stderr.clone()
}

/// Postgres and Redis URLs on port 1, where nothing listens.
const NOWHERE: [(&str, &str); 2] = [
    ("DATABASE_URL", "postgres://postgres@127.0.0.1:1/none"),
    ("REDIS_URL", "redis://127.0.0.1:1/"),
];

fn with_nowhere<'a>(vars: &[(&'a str, &'a str)]) -> Vec<(&'a str, &'a str)> {
    NOWHERE
        .iter()
        .copied()
        .chain(vars.iter().copied())
        .collect()
}

#[test]
fn both_binaries_refuse_an_unknown_tms_variable_naming_it() -> Result<()> {
    for bin in ["tms-api", "tms-worker"] {
        let out = run(bin, &with_nowhere(&[("TMS_WORKER_CONCURENCY", "4")]))?;
        assert_eq!(out.code, Some(2), "{bin}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!(
                "{bin}: unknown configuration variable(s): TMS_WORKER_CONCURENCY"
            )),
            "{bin}: {err}"
        );
    }
    Ok(())
}

#[test]
fn both_binaries_refuse_a_config_file_they_cannot_read() -> Result<()> {
    let missing = std::env::temp_dir().join(format!(
        "tms-no-such-config-{}.env",
        uuid::Uuid::new_v4().simple()
    ));
    let missing = missing.to_string_lossy().into_owned();
    for bin in ["tms-api", "tms-worker"] {
        let out = run(bin, &with_nowhere(&[("TMS_CONFIG", &missing)]))?;
        assert_eq!(out.code, Some(2), "{bin}: {}", stderr(&out));
        let err = stderr(&out);
        assert!(
            err.contains(&format!("TMS_CONFIG: cannot read {missing}")),
            "{bin}: {err}"
        );
    }
    Ok(())
}

#[test]
fn out_of_range_settings_stop_start_up_naming_the_variable() -> Result<()> {
    let cases = [
        ("tms-api", "TMS_DB_POOL_SIZE", "--db-pool-size", "0"),
        ("tms-worker", "TMS_WORKER_CONCURRENCY", "--concurrency", "0"),
        (
            "tms-worker",
            "TMS_RUN_LEASE_SECONDS",
            "--run-lease-seconds",
            "1",
        ),
        ("tms-worker", "TMS_EXECUTOR", "--executor", "kubernetes"),
    ];
    for (bin, var, flag, value) in cases {
        let out = run(bin, &with_nowhere(&[(var, value)]))?;
        assert_eq!(out.code, Some(2), "{bin} {var}={value}: {}", stderr(&out));
        let err = stderr(&out);
        // clap names the flag and the value it refused.
        assert!(
            err.contains(flag) && err.contains(value),
            "{bin} {var}={value}: {err}"
        );
    }
    Ok(())
}

#[test]
fn a_worker_told_to_use_dagger_without_an_engine_refuses_to_start() -> Result<()> {
    // No PATH: no `dagger` CLI to be found, and no session variables.
    let out = run(
        "tms-worker",
        &with_nowhere(&[("TMS_EXECUTOR", "dagger"), ("TMS_WORKER_NAME", "w")]),
    )?;
    assert!(!out.success);
    let err = stderr(&out);
    assert!(
        err.contains("TMS_EXECUTOR=dagger but no Dagger engine is configured"),
        "{err}"
    );
    assert!(
        err.contains("TMS_EXECUTOR=local"),
        "names the way out: {err}"
    );
    Ok(())
}

#[test]
fn a_half_set_dagger_session_stops_the_worker_naming_the_missing_variable() -> Result<()> {
    let out = run(
        "tms-worker",
        &with_nowhere(&[("TMS_EXECUTOR", "auto"), ("DAGGER_SESSION_PORT", "8080")]),
    )?;
    assert!(!out.success);
    let err = stderr(&out);
    assert!(
        err.contains("Dagger engine configuration")
            && err.contains("DAGGER_SESSION_PORT is set but DAGGER_SESSION_TOKEN is not"),
        "{err}"
    );
    Ok(())
}

#[test]
fn a_worker_told_to_use_an_unreachable_dagger_session_refuses_to_start() -> Result<()> {
    let port = tms_tests::free_port().to_string();
    let out = run(
        "tms-worker",
        &with_nowhere(&[
            ("TMS_EXECUTOR", "dagger"),
            ("DAGGER_SESSION_PORT", &port),
            ("DAGGER_SESSION_TOKEN", "not-a-real-token"),
        ]),
    )?;
    assert!(!out.success);
    let err = stderr(&out);
    assert!(
        err.contains("TMS_EXECUTOR=dagger but no Dagger engine is reachable"),
        "{err}"
    );
    assert!(
        !err.contains("not-a-real-token"),
        "the session token leaked: {err}"
    );
    Ok(())
}

#[test]
fn a_worker_whose_work_dir_cannot_be_created_says_which() -> Result<()> {
    // A path below a regular file can never be created.
    let file = std::env::temp_dir().join(format!("tms-file-{}", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, "not a directory")?;
    let work = file.join("work");
    let work_s = work.to_string_lossy().into_owned();
    let out = run(
        "tms-worker",
        &with_nowhere(&[("TMS_EXECUTOR", "local"), ("TMS_WORK_DIR", &work_s)]),
    );
    let _ = std::fs::remove_file(&file);
    let out = out?;
    assert!(!out.success);
    let err = stderr(&out);
    assert!(err.contains(&format!("cannot create {work_s}")), "{err}");
    Ok(())
}
