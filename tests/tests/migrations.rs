//! Every migration applies, reverts with its own down.sql, and applies again.

use std::path::PathBuf;
use std::process::Command;

use tms_tests::{create_database, psql};

fn migrate(url: &str) -> anyhow::Result<()> {
    let status = Command::new(tms_tests::bin_dir().join("tms-api"))
        .args(["migrate", "--database-url", url])
        .env_clear()
        .envs(tms_tests::coverage_env())
        .status()?;
    anyhow::ensure!(status.success(), "tms-api migrate failed");
    Ok(())
}

fn tables(url: &str) -> anyhow::Result<Vec<String>> {
    Ok(psql(
        url,
        &["-c", "SELECT tablename FROM pg_tables WHERE schemaname = 'public' AND tablename <> '__diesel_schema_migrations' ORDER BY 1"],
    )?
    .lines()
    .map(String::from)
    .collect())
}

#[test]
fn migrations_apply_revert_and_reapply() -> anyhow::Result<()> {
    let url = create_database("tms_mig")?;

    migrate(&url)?;
    let applied = tables(&url)?;
    assert!(
        applied.contains(&"runs".to_string()) && applied.contains(&"run_events".to_string()),
        "{applied:?}"
    );

    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(&root)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    dirs.sort();
    assert!(dirs.len() >= 2);
    for dir in dirs.iter().rev() {
        let down = dir.join("down.sql");
        psql(&url, &["-f", down.to_str().unwrap()])?;
    }
    assert_eq!(
        tables(&url)?,
        Vec::<String>::new(),
        "down.sql files left tables behind"
    );

    psql(&url, &["-c", "DELETE FROM __diesel_schema_migrations"])?;
    migrate(&url)?;
    assert_eq!(tables(&url)?, applied, "re-applying gives the same schema");
    Ok(())
}

/// The schedules migration marks existing runs `manual`, except the new runs `retryRun` made
/// (an audited `run.retry` naming another run), which become `retry`.
#[test]
fn the_schedules_migration_backfills_run_triggers() -> anyhow::Result<()> {
    let url = create_database("tms_mig_sched")?;
    migrate(&url)?;
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../migrations");
    let mine = root.join("2026-12-06-000001_schedules");
    psql(&url, &["-f", mine.join("down.sql").to_str().unwrap()])?;
    psql(
        &url,
        &[
            "-c",
            "DELETE FROM __diesel_schema_migrations WHERE version = '20261206000001'",
        ],
    )?;
    let (wf, first, retry, again) = (
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
        uuid::Uuid::new_v4(),
    );
    psql(
        &url,
        &[
            "-c",
            &format!(
                "INSERT INTO workflows (id, name, current_version) VALUES ('{wf}', 'w', 1);
                 INSERT INTO workflow_versions (workflow_id, version, spec) VALUES ('{wf}', 1, '{{}}');
                 INSERT INTO runs (id, workflow_id, version, status) VALUES
                   ('{first}', '{wf}', 1, 'failed'), ('{retry}', '{wf}', 1, 'queued'),
                   ('{again}', '{wf}', 1, 'queued');
                 INSERT INTO audit_log (seq, at, action, resource, outcome, detail, prev_hash, hash) VALUES
                   (1, now(), 'run.retry', 'run:{retry}', 'success', '{{\"retryOf\": \"{first}\"}}', 'x', 'y'),
                   (2, now(), 'run.retry', 'run:{again}', 'success', '{{\"retryOf\": \"{again}\"}}', 'y', 'z');"
            ),
        ],
    )?;
    migrate(&url)?;
    let got = psql(
        &url,
        &[
            "-c",
            &format!(
                "SELECT (id = '{retry}')::text || ':' || trigger FROM runs ORDER BY trigger, id = '{retry}'"
            ),
        ],
    )?;
    assert_eq!(
        got.lines().collect::<Vec<_>>(),
        ["false:manual", "false:manual", "true:retry"],
        "run triggers after the migration"
    );
    Ok(())
}
