//! `tms import …` end to end: the real `tms` binary against a real api. A crontab is checked
//! (dry run: nothing written), applied with a tag, listed, half enabled, verified (unchanged:
//! exit 0; edited: exit 1 naming the legacy id), rolled back (twice: exit 5); a malformed
//! crontab exits 3 with the line, a garbage token or a viewer's 4, an unknown batch 6.

use std::path::{Path, PathBuf};
use std::process::{Output, Stdio};

use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tms_tests::{EnvOptions, TestEnv, bin_dir};
use tokio::io::AsyncWriteExt;

const CRONTAB: &str = "\
# nightly jobs of the legacy box
PATH=/usr/local/bin:/usr/bin:/bin
0 2 * * * /opt/jobs/backup.sh --full
*/15 * * * 1-5 /opt/jobs/poll.sh
30 6 1 * * /opt/jobs/report.sh monthly
@daily /opt/jobs/cleanup.sh
";

/// What `tms` printed and how it exited.
struct Run {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Run {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }
}

impl std::fmt::Display for Run {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// Runs `tms` with `args` as the holder of `token`, feeding `stdin` when given.
async fn tms(env: &TestEnv, token: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let mut child = tokio::process::Command::new(bin_dir().join("tms"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("TMS_URL", format!("http://127.0.0.1:{}", env.api_port))
        .env("TMS_TOKEN", token)
        .envs(tms_tests::coverage_env())
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning tms (did `cargo build --workspace --bins` run?)");
    if let Some(input) = stdin {
        let mut pipe = child.stdin.take().expect("stdin");
        pipe.write_all(input.as_bytes()).await.expect("write stdin");
        drop(pipe);
    }
    let out: Output = child.wait_with_output().await.expect("tms output");
    let run = Run {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    };
    // Shown with --nocapture (and on a failure): the transcript of every invocation.
    println!("$ tms {}\n{run}", args.join(" "));
    run
}

/// A crontab line's legacy id, as documented: `cron-` + 12 hex of SHA-256(schedule\ncommand).
fn legacy_id(schedule: &str, command: &str) -> String {
    let digest = Sha256::digest(format!("{schedule}\n{command}").as_bytes());
    format!("cron-{}", &hex::encode(digest)[..12])
}

/// Workflows stored, as `(legacyId, schedule enabled)`.
async fn workflows(env: &TestEnv) -> anyhow::Result<Vec<(String, bool)>> {
    let d = env
        .gql(
            "{workflows(first:100){edges{node{legacyId schedule{enabled}}}}}",
            json!({}),
        )
        .await?;
    Ok(d["workflows"]["edges"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| {
            (
                e["node"]["legacyId"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                e["node"]["schedule"]["enabled"] == true,
            )
        })
        .collect())
}

fn write(dir: &Path, name: &str, content: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, content).expect("write source");
    path
}

#[tokio::test]
async fn tms_import_drives_a_crontab_migration_with_exit_codes() -> anyhow::Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let token = env.token.clone().expect("admin token");
    std::fs::create_dir_all(&env.work_dir)?;
    let file = write(&env.work_dir, "crontab.txt", CRONTAB);
    let file = file.to_str().unwrap();

    // Dry run, as a person reads it: the summary says nothing was written; nothing was.
    let dry = tms(&env, &token, &["import", file, "--dry-run"], None).await;
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(dry.stdout.contains("dry run: nothing written"), "{dry}");
    assert!(
        dry.stdout
            .lines()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == ["4", "0", "0", "0", "0"]),
        "the counts row says 4 created: {dry}"
    );
    assert!(
        workflows(&env).await?.is_empty(),
        "a dry run wrote workflows"
    );

    // The same dry run from stdin, as JSON.
    let piped = tms(
        &env,
        &token,
        &["import", "-", "--dry-run", "--output", "json"],
        Some(CRONTAB),
    )
    .await;
    assert_eq!(piped.code, Some(0), "{piped}");
    assert_eq!(piped.json()["dryRun"], true, "{piped}");
    assert_eq!(piped.json()["created"].as_array().map(Vec::len), Some(4));

    // Applied with a tag: four disabled schedules and a batch.
    let applied = tms(
        &env,
        &token,
        &["import", file, "--tag", "wave-1", "--output", "json"],
        None,
    )
    .await;
    assert_eq!(applied.code, Some(0), "{applied}");
    let report = applied.json();
    let backup = legacy_id("0 2 * * *", "/opt/jobs/backup.sh --full");
    let created: Vec<&str> = report["created"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    assert_eq!(created.len(), 4, "{applied}");
    assert!(created.contains(&backup.as_str()), "{backup}: {applied}");
    assert_eq!(report["batch"]["tag"], "wave-1", "{applied}");
    assert_eq!(report["batch"]["status"], "APPLIED", "{applied}");
    let batch = report["batch"]["id"]
        .as_str()
        .expect("batch id")
        .to_string();
    let stored = workflows(&env).await?;
    assert_eq!(stored.len(), 4, "{stored:?}");
    assert!(
        stored.iter().all(|(_, on)| !on),
        "imported enabled: {stored:?}"
    );

    // Listed, in JSON and in the table.
    let listed = tms(&env, &token, &["import", "list", "--output", "json"], None).await;
    assert_eq!(listed.code, Some(0), "{listed}");
    let entry = listed
        .json()
        .as_array()
        .and_then(|a| a.iter().find(|b| b["id"] == batch.as_str()).cloned())
        .unwrap_or_else(|| panic!("batch {batch} not listed: {listed}"));
    assert_eq!(
        entry["counts"],
        json!({"tasks": 4, "workflows": 4}),
        "{listed}"
    );
    let table = tms(&env, &token, &["import", "list"], None).await;
    assert!(
        table
            .stdout
            .lines()
            .any(|l| l.contains(&batch) && l.contains("wave-1") && l.contains("APPLIED")),
        "{table}"
    );

    // Half of the schedules enabled.
    let half = tms(
        &env,
        &token,
        &[
            "import", "enable", &batch, "--share", "0.5", "--output", "json",
        ],
        None,
    )
    .await;
    assert_eq!(half.code, Some(0), "{half}");
    assert_eq!(
        half.json()["enabled"].as_array().map(Vec::len),
        Some(2),
        "{half}"
    );
    let on = workflows(&env).await?.into_iter().filter(|w| w.1).count();
    assert_eq!(on, 2, "{half}");

    // Verified: the same file matches; an edited line is named by its legacy id.
    let same = tms(&env, &token, &["import", "verify", &batch, file], None).await;
    assert_eq!(same.code, Some(0), "{same}");
    let edited = write(
        &env.work_dir,
        "crontab-edited.txt",
        &CRONTAB.replace("backup.sh --full", "backup.sh --incremental"),
    );
    let differs = tms(
        &env,
        &token,
        &["import", "verify", &batch, edited.to_str().unwrap()],
        None,
    )
    .await;
    assert_eq!(differs.code, Some(1), "{differs}");
    assert!(
        differs
            .stdout
            .lines()
            .any(|l| l.contains(&backup) && l.contains("EXTRA")),
        "{differs}"
    );

    // Rolled back: the created workflows are gone; a second rollback is a conflict.
    let back = tms(&env, &token, &["import", "rollback", &batch], None).await;
    assert_eq!(back.code, Some(0), "{back}");
    assert!(back.stdout.contains("ROLLED_BACK"), "{back}");
    assert!(workflows(&env).await?.is_empty(), "{back}");
    let again = tms(&env, &token, &["import", "rollback", &batch], None).await;
    assert_eq!(again.code, Some(5), "{again}");
    assert!(again.stderr.contains("CONFLICT"), "{again}");

    // A malformed crontab is refused with the line of the fault, and nothing is written.
    let bad = write(
        &env.work_dir,
        "bad.txt",
        "0 2 * * * /opt/jobs/ok.sh\n# comment\n0 0 1 * MON /opt/jobs/either.sh\n",
    );
    let refused = tms(&env, &token, &["import", bad.to_str().unwrap()], None).await;
    assert_eq!(refused.code, Some(3), "{refused}");
    assert!(refused.stdout.contains("crontab:3"), "{refused}");
    assert!(refused.stderr.contains("VALIDATION"), "{refused}");
    assert!(workflows(&env).await?.is_empty(), "{refused}");

    // A garbage token, or a viewer importing: exit 4 with the code; an unknown batch: exit 6.
    let denied = tms(&env, "not-a-token", &["import", "list"], None).await;
    assert_eq!(denied.code, Some(4), "{denied}");
    assert!(denied.stderr.contains("UNAUTHENTICATED"), "{denied}");
    let viewer = env
        .gql(
            "mutation{createApiToken(name:\"cli-viewer\",role:VIEWER){token}}",
            json!({}),
        )
        .await?["createApiToken"]["token"]
        .as_str()
        .expect("viewer token")
        .to_string();
    let forbidden = tms(&env, &viewer, &["import", file, "--dry-run"], None).await;
    assert_eq!(forbidden.code, Some(4), "{forbidden}");
    assert!(forbidden.stderr.contains("FORBIDDEN"), "{forbidden}");
    let unknown = tms(
        &env,
        &token,
        &["import", "rollback", "01900000-0000-7000-8000-000000000000"],
        None,
    )
    .await;
    assert_eq!(unknown.code, Some(6), "{unknown}");
    assert!(unknown.stderr.contains("NOT_FOUND"), "{unknown}");
    Ok(())
}
