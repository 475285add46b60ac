//! The first hour with the `tms` CLI, end to end: the real binary against a real api and
//! worker, as a new user follows docs/cli.md. `tms login` (password on stdin) saves a 0600
//! token file that later commands use (and refresh); `tms apply -f examples/` creates the
//! five examples, again reports them unchanged, a changed file becomes a new version with a
//! diff; each example runs to success with `tms run … --watch` (the flaky one through its
//! retry, the cached step CACHED the second time); `tms logs`, `tms runs`, `tms cancel`,
//! `tms retry --from-failed`, `tms tokens` and `tms logout` work; file errors (local and the
//! api's) point at file:line.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use serde_json::Value;
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, TestEnv, bin_dir, task};
use tokio::io::AsyncWriteExt;

/// What `tms` printed and how it exited.
struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

impl Out {
    fn json(&self) -> Value {
        serde_json::from_str(self.stdout.trim())
            .unwrap_or_else(|e| panic!("stdout is not JSON ({e}): {self}"))
    }

    /// The run id of `run <id> of …` (the first line of `tms run`/`tms retry`).
    fn run_id(&self) -> String {
        self.stdout
            .lines()
            .find_map(|l| l.strip_prefix("run ")?.split_whitespace().next())
            .unwrap_or_else(|| panic!("no run id: {self}"))
            .to_string()
    }
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

/// A user of `tms`: a HOME of their own, the api's URL, maybe a TMS_TOKEN.
struct User {
    url: String,
    home: PathBuf,
    token: Option<String>,
}

impl User {
    fn new(env: &TestEnv, token: Option<String>) -> Self {
        let home = env
            .work_dir
            .join(format!("home-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&home).expect("home");
        User {
            url: format!("http://127.0.0.1:{}", env.api_port),
            home,
            token,
        }
    }

    fn token_file(&self) -> PathBuf {
        self.home.join(".config/tms/token")
    }

    async fn tms(&self, args: &[&str], stdin: Option<&str>) -> Out {
        let mut cmd = tokio::process::Command::new(bin_dir().join("tms"));
        cmd.args(args)
            .env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("HOME", &self.home)
            .env("XDG_CONFIG_HOME", self.home.join(".config"))
            .env("TMS_URL", &self.url)
            .envs(tms_tests::coverage_env())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(t) = &self.token {
            cmd.env("TMS_TOKEN", t);
        }
        let mut child = cmd
            .spawn()
            .expect("spawning tms (cargo build --workspace --bins)");
        if let Some(input) = stdin {
            let mut pipe = child.stdin.take().expect("stdin");
            pipe.write_all(input.as_bytes()).await.expect("stdin");
        }
        let out = child.wait_with_output().await.expect("tms output");
        let out = Out {
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        };
        println!("$ tms {}\n{out}", args.join(" "));
        out
    }
}

fn copy_examples(to: &Path) -> PathBuf {
    let dir = to.join("examples");
    std::fs::create_dir_all(&dir).expect("examples dir");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    for e in std::fs::read_dir(src).expect("examples/") {
        let p = e.expect("entry").path();
        std::fs::copy(&p, dir.join(p.file_name().expect("name"))).expect("copy");
    }
    dir
}

fn rows_with(out: &Out, word: &str) -> usize {
    out.stdout.lines().filter(|l| l.starts_with(word)).count()
}

const EXAMPLES: [&str; 5] = [
    "build-test-package",
    "data-pipeline",
    "flaky-and-cached",
    "nightly-backup",
    "scheduled-report",
];

#[tokio::test]
async fn first_hour_login_apply_run_logs() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let user = User::new(&env, None);

    // Not logged in yet: exit 4.
    let anon = user.tms(&["workflows"], None).await;
    assert_eq!(anon.code, Some(4), "{anon}");

    let started = Instant::now();
    let login = user
        .tms(
            &["login", "--email", ADMIN_EMAIL, "--password-stdin"],
            Some(&format!("{ADMIN_PASSWORD}\n")),
        )
        .await;
    assert_eq!(login.code, Some(0), "{login}");
    let meta = std::fs::metadata(user.token_file())?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "token file mode");
    }

    let examples = copy_examples(&env.work_dir);
    let ex = examples.to_str().expect("utf-8 path");
    let applied = user.tms(&["apply", "-f", ex], None).await;
    assert_eq!(applied.code, Some(0), "{applied}");
    assert_eq!(rows_with(&applied, "created"), 5, "{applied}");

    let first = user
        .tms(&["run", "build-test-package", "--watch", "--plain"], None)
        .await;
    let elapsed = started.elapsed();
    assert_eq!(first.code, Some(0), "{first}");
    println!("TIME from `tms login` to the first watched run finishing: {elapsed:.2?}");
    let run_id = first.run_id();
    assert_eq!(env.run(&run_id).await?["status"], "SUCCEEDED");

    let logs = user.tms(&["logs", &run_id, "test"], None).await;
    assert_eq!(logs.code, Some(0), "{logs}");
    assert!(logs.stdout.contains("test result: ok"), "{logs}");
    let all_logs = user.tms(&["logs", &run_id], None).await;
    assert!(
        all_logs.stdout.contains("==> package (succeeded) <=="),
        "{all_logs}"
    );
    let followed = user
        .tms(&["logs", &run_id, "package", "--follow"], None)
        .await;
    assert!(followed.stdout.contains("hello-0.1.0.tar.gz"), "{followed}");
    let as_json = user
        .tms(&["logs", &run_id, "test", "--output", "json"], None)
        .await;
    assert_eq!(as_json.json()[0]["exitCode"], 0, "{as_json}");
    let no_step = user.tms(&["logs", &run_id, "nope"], None).await;
    assert_eq!(no_step.code, Some(6), "{no_step}");

    // Idempotent: nothing changed, nothing written.
    let again = user.tms(&["apply", "-f", ex], None).await;
    assert_eq!(again.code, Some(0), "{again}");
    assert_eq!(rows_with(&again, "unchanged"), 5, "{again}");

    // A changed file: a new version, and the diff says what changed.
    let file = examples.join("flaky-and-cached.yaml");
    let text = std::fs::read_to_string(&file)?.replace("is live\"", "is live now\"")
        + "\n  - name: notify\n    image: alpine:3.20\n    dependsOn: [report]\n    run: echo notified\n";
    std::fs::write(&file, text)?;
    let dry = user.tms(&["apply", "-f", ex, "--dry-run"], None).await;
    assert_eq!(dry.code, Some(0), "{dry}");
    assert!(dry.stdout.contains("dry run: nothing written"), "{dry}");
    assert_eq!(rows_with(&dry, "update "), 1, "{dry}");
    let changed = user
        .tms(&["apply", "-f", ex, "--output", "json"], None)
        .await;
    assert_eq!(changed.code, Some(0), "{changed}");
    let updated: Vec<Value> = changed.json().as_array().cloned().unwrap_or_default();
    let flaky = updated
        .iter()
        .find(|r| r["name"] == "flaky-and-cached")
        .expect("flaky-and-cached applied");
    assert_eq!(flaky["action"], "updated", "{changed}");
    assert_eq!(flaky["version"], 2, "{changed}");
    assert_eq!(
        flaky["changes"],
        serde_json::json!(["+ step notify", "~ step report: run"]),
        "{changed}"
    );
    assert_eq!(
        updated
            .iter()
            .filter(|r| r["action"] == "unchanged")
            .count(),
        4
    );

    // Every example runs to success.
    for name in &EXAMPLES[1..] {
        let out = user.tms(&["run", name, "--watch", "--plain"], None).await;
        assert_eq!(out.code, Some(0), "{name}: {out}");
        let run = env.run(&out.run_id()).await?;
        assert_eq!(run["status"], "SUCCEEDED", "{name}: {run}");
        if *name == "flaky-and-cached" {
            assert_eq!(task(&run, "flaky")["attempt"], 2, "retried once: {run}");
            assert_eq!(task(&run, "expensive")["cached"], false, "{run}");
        }
    }
    // The expensive step is served from the cache the second time.
    let cached = user
        .tms(&["run", "flaky-and-cached", "--watch", "--plain"], None)
        .await;
    assert_eq!(cached.code, Some(0), "{cached}");
    let run = env.run(&cached.run_id()).await?;
    assert_eq!(task(&run, "expensive")["status"], "CACHED", "{run}");

    let runs = user.tms(&["runs", "--output", "json"], None).await;
    assert_eq!(runs.code, Some(0), "{runs}");
    assert!(runs.json().as_array().map_or(0, Vec::len) >= 6, "{runs}");
    let mine = user
        .tms(
            &[
                "runs",
                "--workflow",
                "flaky-and-cached",
                "--status",
                "succeeded",
            ],
            None,
        )
        .await;
    assert_eq!(
        mine.stdout.lines().count(),
        3,
        "header and two runs: {mine}"
    );
    let listed = user.tms(&["workflows", "--output", "json"], None).await;
    assert_eq!(listed.json().as_array().map(Vec::len), Some(5), "{listed}");

    // An expired access token is refreshed from the saved refresh token.
    let mut saved: Value = serde_json::from_slice(&std::fs::read(user.token_file())?)?;
    let old_refresh = saved["refreshToken"].clone();
    saved["expiresAt"] = 0.into();
    std::fs::write(user.token_file(), saved.to_string())?;
    let refreshed = user.tms(&["workflows"], None).await;
    assert_eq!(refreshed.code, Some(0), "{refreshed}");
    let now: Value = serde_json::from_slice(&std::fs::read(user.token_file())?)?;
    assert_ne!(
        now["refreshToken"], old_refresh,
        "the refresh token rotated"
    );

    let out = user.tms(&["logout"], None).await;
    assert_eq!(out.code, Some(0), "{out}");
    assert!(!user.token_file().exists());
    let after = user.tms(&["workflows"], None).await;
    assert_eq!(after.code, Some(4), "{after}");
    Ok(())
}

fn write(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write");
    path.to_str().expect("utf-8").to_string()
}

#[tokio::test]
async fn file_errors_point_at_file_and_line() -> anyhow::Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let user = User::new(&env, env.token.clone());
    let dir = env.work_dir.join("files");
    std::fs::create_dir_all(&dir)?;

    // A misspelt key: refused before anything is sent, at its line.
    let typo = write(
        &dir,
        "typo.yaml",
        "name: typo\nsteps:\n  - name: one\n    image: alpine\n    run: echo\n    dependson: [x]\n",
    );
    let out = user.tms(&["apply", "-f", &typo], None).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains(&format!("{typo}:6: ")), "{out}");
    // Broken YAML.
    let broken = write(&dir, "broken.yaml", "name: broken\nsteps:\n  - name: [\n");
    let out = user.tms(&["apply", "-f", &broken], None).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains(&format!("{broken}:")), "{out}");

    // The api's validation error (a missing dependency) at the line of that step's key.
    let missing = write(
        &dir,
        "missing.yaml",
        "name: missing-dep\nsteps:\n  - name: one\n    image: alpine\n    run: echo\n  - name: two\n    image: alpine\n    run: echo\n    dependsOn:\n      - one\n      - three\n",
    );
    let out = user.tms(&["apply", "-f", &missing], None).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(
        out.stderr.contains(&format!("{missing}:9: ")) && out.stderr.contains("three"),
        "{out}"
    );
    assert!(out.stderr.contains("VALIDATION"), "{out}");
    // The same in JSON.
    let json_file = write(
        &dir,
        "missing.json",
        "{\n  \"name\": \"missing-json\",\n  \"steps\": [\n    {\"name\": \"one\", \"image\": \"a\", \"run\": \"true\"},\n    {\n      \"name\": \"two\", \"image\": \"a\", \"run\": \"true\",\n      \"dependsOn\": [\"nope\"]\n    }\n  ]\n}\n",
    );
    let out = user.tms(&["apply", "-f", &json_file], None).await;
    assert_eq!(out.code, Some(3), "{out}");
    assert!(out.stderr.contains(&format!("{json_file}:7: ")), "{out}");
    let none = user.tms(&["workflows", "--output", "json"], None).await;
    assert_eq!(
        none.json(),
        serde_json::json!([]),
        "nothing was created: {none}"
    );

    let unknown = user.tms(&["run", "no-such-workflow"], None).await;
    assert_eq!(unknown.code, Some(6), "{unknown}");
    assert!(unknown.stderr.contains("NOT_FOUND"), "{unknown}");
    Ok(())
}

#[tokio::test]
async fn cancel_retry_and_tokens() -> anyhow::Result<()> {
    let env = TestEnv::start().await?;
    let user = User::new(&env, env.token.clone());
    let dir = env.work_dir.join("files");
    std::fs::create_dir_all(&dir)?;
    let marker = dir.join("second-time");
    let file = write(
        &dir,
        "steer.yaml",
        "name: sleeper\nsteps:\n  - name: nap\n    image: alpine\n    run: sleep 600\n",
    );
    let retry_file = write(
        &dir,
        "retry.yaml",
        &format!(
            "name: fails-once\nsteps:\n  - name: first\n    image: alpine\n    run: echo first\n  - name: second\n    image: alpine\n    dependsOn: [first]\n    run: |\n      if [ -f {m} ]; then echo recovered; else touch {m}; echo broken >&2; exit 1; fi\n",
            m = marker.display()
        ),
    );
    let applied = user
        .tms(&["apply", "-f", &file, "-f", &retry_file], None)
        .await;
    assert_eq!(applied.code, Some(0), "{applied}");

    // Cancel a long step.
    let started = user.tms(&["run", "sleeper"], None).await;
    assert_eq!(started.code, Some(0), "{started}");
    let id = started.run_id();
    let deadline = Instant::now() + Duration::from_secs(30);
    while env.run(&id).await?["tasks"][0]["status"] != "RUNNING" {
        assert!(Instant::now() < deadline, "the step never started");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let cancelled = user.tms(&["cancel", &id], None).await;
    assert_eq!(cancelled.code, Some(0), "{cancelled}");
    let run = env.wait_run(&id, Duration::from_secs(30)).await?;
    assert_eq!(run["status"], "CANCELLED", "{run}");

    // A failed run (exit 1 from --watch), retried from the failed step.
    let failed = user
        .tms(&["run", "fails-once", "--watch", "--plain"], None)
        .await;
    assert_eq!(failed.code, Some(1), "{failed}");
    let id = failed.run_id();
    let retried = user
        .tms(&["retry", &id, "--from-failed", "--watch", "--plain"], None)
        .await;
    assert_eq!(retried.code, Some(0), "{retried}");
    let run = env.run(&id).await?;
    assert_eq!(run["status"], "SUCCEEDED", "{run}");
    assert_eq!(task(&run, "first")["attempt"], 1, "not re-run: {run}");
    let logs = user.tms(&["logs", &id, "second"], None).await;
    assert!(logs.stdout.contains("recovered"), "{logs}");

    // API tokens.
    let created = user
        .tms(
            &[
                "tokens",
                "create",
                "poller",
                "--role",
                "monitor",
                "--expires-in-days",
                "1",
                "--output",
                "json",
            ],
            None,
        )
        .await;
    assert_eq!(created.code, Some(0), "{created}");
    let token_id = created.json()["apiToken"]["id"]
        .as_str()
        .expect("id")
        .to_string();
    assert!(
        created.json()["token"]
            .as_str()
            .is_some_and(|t| !t.is_empty())
    );
    let listed = user.tms(&["tokens", "list"], None).await;
    assert!(
        listed
            .stdout
            .lines()
            .any(|l| l.contains(&token_id) && l.contains("MONITOR")),
        "{listed}"
    );
    let revoked = user.tms(&["tokens", "revoke", &token_id], None).await;
    assert_eq!(revoked.code, Some(0), "{revoked}");
    assert!(revoked.stdout.contains("revoked"), "{revoked}");
    let listed = user
        .tms(&["tokens", "list", "--output", "json"], None)
        .await;
    assert!(!listed.stdout.contains(&token_id), "{listed}");
    Ok(())
}
