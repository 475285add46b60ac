//! The worker's periodic sweep (`TMS_ARTIFACT_SWEEP_SECONDS`), through the real binary: run
//! directories in `TMS_WORK_DIR` untouched for longer than the retention are removed, fresh
//! ones and anything not named like a run are left alone, and each sweep is logged.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use tms_tests::{EnvOptions, TestEnv};

/// Sets `dir`'s modification time `days` days into the past.
fn age(dir: &Path, days: u32) -> Result<()> {
    let status = Command::new("touch")
        .arg("-m")
        .arg("-d")
        .arg(format!("{days} days ago"))
        .arg(dir)
        .status()?;
    ensure!(status.success(), "touch -d failed on {}", dir.display());
    Ok(())
}

#[tokio::test]
async fn the_sweep_removes_run_directories_older_than_the_retention_only() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    // Made before the worker starts, so its first sweep (a second in) finds them.
    std::fs::create_dir_all(&env.work_dir)?;
    let old_run = env.work_dir.join(uuid::Uuid::new_v4().to_string());
    let fresh_run = env.work_dir.join(uuid::Uuid::new_v4().to_string());
    let old_other = env.work_dir.join("not-a-run");
    for d in [&old_run, &fresh_run, &old_other] {
        std::fs::create_dir_all(d.join("a"))?;
        std::fs::write(d.join("a/out.txt"), "x")?;
    }
    age(&old_run, 3)?;
    age(&old_other, 3)?;
    env.start_worker(&[
        ("TMS_ARTIFACT_SWEEP_SECONDS".into(), "1".into()),
        ("TMS_RETENTION_DAYS".into(), "2".into()),
    ])
    .await?;

    let deadline = Instant::now() + Duration::from_secs(30);
    while !env.workers[0].log_text().contains("artifact sweep done") {
        if Instant::now() > deadline {
            bail!(
                "no sweep logged within 30 s:\n{}",
                env.workers[0].log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(
        !old_run.exists(),
        "a run directory 3 days old survived a 2-day retention"
    );
    assert!(
        fresh_run.join("a/out.txt").exists(),
        "a fresh run directory was removed"
    );
    assert!(
        old_other.join("a/out.txt").exists(),
        "a directory not named like a run was removed"
    );
    let log = env.workers[0].log_text();
    assert!(
        log.contains("run_dirs=1"),
        "the sweep counts what it removed: {log}"
    );
    Ok(())
}
