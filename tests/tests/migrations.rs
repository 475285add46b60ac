//! Every migration applies, reverts with its own down.sql, and applies again.

use std::path::PathBuf;
use std::process::Command;

use tms_tests::{create_database, psql};

fn migrate(url: &str) -> anyhow::Result<()> {
    let status = Command::new(tms_tests::bin_dir().join("tms-api"))
        .args(["migrate", "--database-url", url])
        .env_clear()
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
