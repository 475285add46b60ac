//! Full step logs through the real binaries: every line a step prints is kept (not only the
//! tail), secrets masked, readable by pages in GraphQL (`Task.log`) and whole over HTTP
//! (`GET /runs/{id}/steps/{name}/log`), authorized like the run, and cut with a marker at
//! `TMS_STEP_LOG_MAX_BYTES`.

use std::time::Duration;

use anyhow::{Context, Result};
use serde_json::{Value, json};
use tms_tests::{EnvOptions, TestEnv, error_code, task};

const SECRET: &str = "s3cr3t-value-for-the-log-test";
const LINES: usize = 20_000;

const PAGE: &str = "query($id: ID!, $o: Int!) { run(id: $id) { tasks { name logTail \
    log(offset: $o, limit: 50000) { attempt text offset nextOffset totalBytes truncated complete } } } }";

fn expected_log() -> String {
    let mut s = String::new();
    for i in 1..=LINES {
        s.push_str(&format!("line {i} token=***\n"));
    }
    s.push_str("done\n");
    s
}

async fn read_pages(env: &TestEnv, run: &str) -> Result<(String, usize, Value)> {
    let mut text = String::new();
    let mut offset = 0;
    let mut pages = 0;
    loop {
        let r = env.gql(PAGE, json!({"id": run, "o": offset})).await?;
        let log = task(&r["run"], "talk")["log"].clone();
        text.push_str(log["text"].as_str().context("text")?);
        pages += 1;
        let next = log["nextOffset"].as_u64().context("nextOffset")? as usize;
        if next >= log["totalBytes"].as_u64().context("totalBytes")? as usize {
            return Ok((text, pages, log));
        }
        assert!(next > offset, "pages advance: {log}");
        offset = next;
    }
}

#[tokio::test]
async fn every_line_is_kept_masked_and_readable_by_pages_and_whole() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::worker_env(vec![(
        "TMS_SECRET_LOG_TOKEN".into(),
        SECRET.into(),
    )]))
    .await?;
    let script = format!(
        "i=1; while [ $i -le {LINES} ]; do echo \"line $i token=$LOG_TOKEN\"; i=$((i+1)); done; echo done >&2"
    );
    let wf = env
        .create_workflow(
            "chatty",
            json!([{"name": "talk", "image": "alpine:3.20", "run": script,
                    "secrets": ["LOG_TOKEN"]}]),
        )
        .await?;
    let run = env.trigger(&wf).await?;
    let done = env.wait_run(&run, Duration::from_secs(120)).await?;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");

    let want = expected_log();
    let (text, pages, last) = read_pages(&env, &run).await?;
    assert!(
        pages > 5,
        "{} bytes come in pages of 50,000: {pages}",
        want.len()
    );
    assert_eq!(last["attempt"], 1, "{last}");
    assert_eq!(last["complete"], true, "{last}");
    assert_eq!(last["truncated"], false, "{last}");
    assert!(
        !text.contains(SECRET),
        "the secret is masked in the stored log"
    );
    assert_eq!(text.len(), want.len(), "every byte of the output is kept");
    // stdout in order; the one stderr line may interleave anywhere after it was printed.
    let stdout: Vec<&str> = text.lines().filter(|l| *l != "done").collect();
    let want_stdout: Vec<&str> = want.lines().filter(|l| *l != "done").collect();
    assert!(stdout == want_stdout, "the log is the output, in order");
    assert_eq!(
        text.lines().filter(|l| *l == "done").count(),
        1,
        "stderr is kept too"
    );

    // The whole log over HTTP, as the run's readers may.
    let url = format!(
        "http://127.0.0.1:{}/runs/{run}/steps/talk/log",
        env.api_port
    );
    let http = reqwest::Client::new();
    let token = env.token.clone().context("token")?;
    let resp = http.get(&url).bearer_auth(&token).send().await?;
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok()),
        Some("text/plain; charset=utf-8")
    );
    assert!(resp.text().await? == text, "the download is the same log");
    let anonymous = http.get(&url).send().await?;
    assert_eq!(anonymous.status(), 401, "no token, no log");
    let missing = http
        .get(url.replace("/talk/", "/nope/"))
        .bearer_auth(&token)
        .send()
        .await?;
    assert_eq!(missing.status(), 400, "an unknown step is named");

    // Bad page arguments are refused with the field named.
    let bad = env
        .gql_raw(
            Some(&token),
            "query($id: ID!) { run(id: $id) { tasks { log(limit: 0) { text } } } }",
            json!({"id": run}),
        )
        .await?;
    assert_eq!(error_code(&bad), "VALIDATION", "{bad}");
    assert_eq!(bad["errors"][0]["extensions"]["field"], "limit", "{bad}");
    Ok(())
}

#[tokio::test]
async fn a_log_over_the_limit_is_cut_with_a_marker_and_the_tail_is_still_kept() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::worker_env(vec![(
        "TMS_STEP_LOG_MAX_BYTES".into(),
        "4096".into(),
    )]))
    .await?;
    let wf = env
        .create_workflow(
            "flood",
            json!([{"name": "talk", "image": "alpine:3.20",
                    "run": "i=1; while [ $i -le 2000 ]; do echo \"row $i\"; i=$((i+1)); done"}]),
        )
        .await?;
    let run = env.trigger(&wf).await?;
    let done = env.wait_run(&run, Duration::from_secs(60)).await?;
    assert_eq!(done["status"], "SUCCEEDED", "{done}");
    let (text, _, last) = read_pages(&env, &run).await?;
    assert_eq!(last["truncated"], true, "{last}");
    assert!(text.starts_with("row 1\nrow 2\n"), "{text}");
    assert!(
        text.len() < 4096 + 200,
        "cut near the limit: {} bytes",
        text.len()
    );
    assert!(
        text.trim_end().ends_with("the rest was not stored"),
        "the marker ends the log: {text}"
    );
    let r = env.gql(PAGE, json!({"id": run, "o": 0})).await?;
    let tail = task(&r["run"], "talk")["logTail"].as_str().unwrap_or("");
    assert!(
        tail.contains("row 2000"),
        "the tail keeps the last lines: {tail}"
    );
    Ok(())
}
