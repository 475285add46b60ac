//! How the real `tms` CLI fails when it cannot talk to an api, and how `--email/--password`
//! signs in for one command: each failure has its exit code and says what went wrong.

use std::process::Stdio;

use anyhow::Result;
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, TestEnv, bin_dir, coverage_env};

struct Out {
    code: Option<i32>,
    stdout: String,
    stderr: String,
}

/// Runs `tms args` against `url` with only `vars` in its environment; a HOME of its own so
/// no saved session is found. Bounded: the CLI's requests time out, and so does this call.
async fn tms(url: &str, vars: &[(&str, &str)], args: &[&str]) -> Result<Out> {
    let home = std::env::temp_dir().join(format!("tms-cli-home-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&home)?;
    let child = tokio::process::Command::new(bin_dir().join("tms"))
        .args(args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", &home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("TMS_URL", url)
        .envs(vars.iter().copied())
        .envs(coverage_env())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    let out =
        tokio::time::timeout(std::time::Duration::from_secs(60), child.wait_with_output()).await;
    let _ = std::fs::remove_dir_all(&home);
    let out = out.map_err(|_| anyhow::anyhow!("tms {args:?} did not finish within 60 s"))??;
    Ok(Out {
        code: out.status.code(),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    })
}

#[tokio::test]
async fn an_unreachable_api_exits_7_naming_the_url() -> Result<()> {
    let url = format!("http://127.0.0.1:{}", tms_tests::free_port());
    let out = tms(&url, &[("TMS_TOKEN", "whatever")], &["workflows"]).await?;
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(
        out.stderr
            .contains(&format!("cannot reach the TMS api at {url}")),
        "{}",
        out.stderr
    );
    // Signing in fails the same way before any command runs.
    let out = tms(
        &url,
        &[],
        &["--email", "a@b.test", "--password", "pw", "runs"],
    )
    .await?;
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(
        out.stderr.contains("cannot reach the TMS api"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn a_url_that_is_not_a_tms_api_exits_7_with_the_http_status() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    // The api's own port, under a path where no GraphQL endpoint lives.
    let url = format!("http://127.0.0.1:{}/not-here", env.api_port);
    let token = env.token.clone().unwrap_or_default();
    let out = tms(&url, &[("TMS_TOKEN", &token)], &["workflows"]).await?;
    assert_eq!(out.code, Some(7), "{}", out.stderr);
    assert!(
        out.stderr.contains("the api answered HTTP 404"),
        "{}",
        out.stderr
    );
    Ok(())
}

#[tokio::test]
async fn email_and_password_sign_in_for_one_command_and_wrong_ones_exit_4() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    env.create_workflow(
        "signed-in-listing",
        serde_json::json!([{"name": "a", "image": "alpine", "run": "true"}]),
    )
    .await?;
    let url = format!("http://127.0.0.1:{}", env.api_port);

    let ok = tms(
        &url,
        &[("TMS_EMAIL", ADMIN_EMAIL), ("TMS_PASSWORD", ADMIN_PASSWORD)],
        &["workflows"],
    )
    .await?;
    assert_eq!(ok.code, Some(0), "{}", ok.stderr);
    assert!(ok.stdout.contains("signed-in-listing"), "{}", ok.stdout);

    let bad = tms(
        &url,
        &[],
        &[
            "--email",
            ADMIN_EMAIL,
            "--password",
            "not-the-password",
            "workflows",
        ],
    )
    .await?;
    assert_eq!(bad.code, Some(4), "{}", bad.stderr);
    assert!(!bad.stdout.contains("signed-in-listing"), "{}", bad.stdout);

    // Neither a token, nor credentials, nor a saved session.
    let none = tms(&url, &[], &["workflows"]).await?;
    assert_eq!(none.code, Some(4), "{}", none.stderr);
    assert!(none.stderr.contains("not logged in"), "{}", none.stderr);
    Ok(())
}
