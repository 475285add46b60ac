//! Errors end to end: a log line for a failing Postgres call names its cause, while the GraphQL
//! client (and `/readyz`) get only the public message and a stable code.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use serde_json::{Value, json};
use tms_tests::{EnvOptions, Proc, TestEnv, bin_dir, error_code, free_port, psql};

/// Waits until the log of `proc` holds a line containing every one of `needles`; returns it.
fn wait_for_line(proc: &Proc, needles: &[&str]) -> Result<String> {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = proc.log_text();
        if let Some(line) = log.lines().find(|l| needles.iter().all(|n| l.contains(n))) {
            return Ok(line.to_string());
        }
        if Instant::now() > deadline {
            bail!("no log line with {needles:?} in 30s:\n{log}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// What a client must never see in an error response.
fn assert_no_internals(resp: &Value) {
    let text = resp.to_string();
    for leak in [
        "does not exist",
        "relation",
        "database",
        "accepting",
        "timed out",
    ] {
        assert!(
            !text.contains(leak),
            "`{leak}` leaked to the client: {resp}"
        );
    }
}

#[tokio::test]
async fn a_failing_query_is_logged_with_its_cause_and_the_client_sees_internal() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    // The table the query reads disappears behind the api's back: a real failing Postgres call.
    psql(
        &env.database_url,
        &["-c", "ALTER TABLE workflows RENAME TO workflows_elsewhere"],
    )?;
    let resp = env
        .gql_raw(
            env.token.as_deref(),
            "{ workflows(first: 5) { edges { node { id } } } }",
            json!({}),
        )
        .await?;
    assert_eq!(error_code(&resp), "INTERNAL", "{resp}");
    assert_eq!(resp["errors"][0]["message"], "internal error", "{resp}");
    assert_no_internals(&resp);

    let api = env.api.as_ref().context("api process")?;
    let line = wait_for_line(api, &["request failed", "internal error: database:"])?;
    assert!(line.contains("does not exist"), "{line}");
    assert!(line.contains("workflows"), "{line}");
    Ok(())
}

#[tokio::test]
async fn an_unreachable_database_is_logged_with_its_cause_and_the_client_sees_unavailable()
-> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    // No new connections to the database, and the pooled ones are gone.
    let db = env.database_url.rsplit('/').next().context("db name")?;
    psql(
        &tms_tests::services::admin_url(),
        &[
            "-c",
            &format!("ALTER DATABASE {db} ALLOW_CONNECTIONS false"),
            "-c",
            &format!(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = '{db}'"
            ),
        ],
    )?;
    let login = "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken}}";
    let vars = json!({"e": tms_tests::ADMIN_EMAIL, "p": tms_tests::ADMIN_PASSWORD});
    // The first calls may still pick a connection that was killed under them (INTERNAL); once
    // the pool has none left, every call waits for a new one and reports UNAVAILABLE.
    let deadline = Instant::now() + Duration::from_secs(60);
    let resp = loop {
        let resp = env.gql_raw(None, login, vars.clone()).await?;
        assert_no_internals(&resp);
        let code = error_code(&resp);
        assert!(
            code == "UNAVAILABLE" || code == "INTERNAL",
            "the login must fail while Postgres refuses connections: {resp}"
        );
        if code == "UNAVAILABLE" {
            break resp;
        }
        assert!(Instant::now() < deadline, "never UNAVAILABLE: {resp}");
    };
    assert_eq!(
        resp["errors"][0]["message"], "service temporarily unavailable",
        "{resp}"
    );
    let api = env.api.as_ref().context("api process")?;
    let line = wait_for_line(api, &["request failed", "UNAVAILABLE"])?;
    // Killed under a query (the server's notice, or the socket closing before the client read
    // it), or refused when the pool asked for a new one: either way, the cause.
    assert!(
        line.contains("service unavailable: database unreachable")
            && (line.contains("terminating connection due to administrator command")
                || line.contains("server closed the connection unexpectedly")
                || line.contains("is not currently accepting connections")),
        "{line}"
    );

    // Readiness says which component is down, with a short reason and nothing more.
    let r = reqwest::get(format!("http://127.0.0.1:{}/readyz", env.api_port)).await?;
    assert_eq!(r.status().as_u16(), 503);
    let body: Value = r.json().await?;
    assert_eq!(body["components"]["postgres"]["status"], "down", "{body}");
    assert_eq!(body["components"]["redis"]["status"], "ok", "{body}");
    assert_eq!(body["status"], "degraded", "{body}");
    assert_no_internals(&body);
    Ok(())
}

#[tokio::test]
async fn an_api_started_on_a_missing_database_logs_why_it_is_not_ready() -> Result<()> {
    let missing = format!("tms_missing_{}", uuid::Uuid::new_v4().simple());
    let url = tms_tests::services::database_url(&missing)?;
    let log = std::env::temp_dir().join(format!("tms-errors-{missing}.log"));
    let f = std::fs::File::create(&log)?;
    let child = Command::new(bin_dir().join("tms-api"))
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("RUST_LOG", "info")
        .env("DATABASE_URL", &url)
        .env("REDIS_URL", tms_tests::services::redis_url())
        .env("TMS_LISTEN", format!("127.0.0.1:{}", free_port()))
        .envs(tms_tests::coverage_env())
        .stdin(Stdio::null())
        .stdout(f.try_clone()?)
        .stderr(f)
        .spawn()
        .context("spawning tms-api")?;
    let api = Proc {
        name: "api",
        child,
        log: log.clone(),
        killed: false,
    };
    let line = wait_for_line(&api, &["database not ready"]);
    drop(api);
    let _ = std::fs::remove_file(&log);
    let line = line?;
    assert!(
        line.contains(&format!("database \"{missing}\" does not exist")),
        "{line}"
    );
    Ok(())
}
