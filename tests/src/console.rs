//! Helpers of the web console's tests (`tests/tests/console.rs`): plain HTTP against the
//! console's endpoints, and the fixtures and signals of the browser test.

use std::time::Duration;

use anyhow::Result;
use reqwest::header::{HeaderMap, SET_COOKIE};
use serde_json::{Value, json};

use crate::TestEnv;

/// An HTTP client that does not follow redirects.
pub fn client() -> Result<reqwest::Client> {
    Ok(reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// A header as text ("" when absent).
pub fn header<'a>(h: &'a HeaderMap, name: &str) -> &'a str {
    h.get(name).and_then(|v| v.to_str().ok()).unwrap_or("")
}

/// The `tms_console` Set-Cookie line of a response, if any.
pub fn session_cookie(h: &HeaderMap) -> Option<String> {
    h.get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|c| c.starts_with("tms_console="))
        .map(str::to_string)
}

pub fn cookie_value(set_cookie: &str) -> String {
    set_cookie
        .split(';')
        .next()
        .and_then(|kv| kv.split_once('='))
        .map(|(_, v)| v.to_string())
        .unwrap_or_default()
}

/// POSTs to a console session endpoint as the console does; returns (status, headers, body).
pub async fn session(
    env: &TestEnv,
    path: &str,
    body: Value,
    cookie: Option<&str>,
    origin: Option<&str>,
    marked: bool,
) -> Result<(u16, HeaderMap, Value)> {
    let mut req = client()?
        .post(format!(
            "http://127.0.0.1:{}/ui/session{path}",
            env.api_port
        ))
        .json(&body);
    if marked {
        req = req.header("x-tms-console", "1");
    }
    if let Some(o) = origin {
        req = req.header("origin", o);
    }
    if let Some(c) = cookie {
        req = req.header("cookie", format!("tms_console={c}"));
    }
    let resp = req.send().await?;
    let status = resp.status().as_u16();
    let headers = resp.headers().clone();
    Ok((status, headers, resp.json().await.unwrap_or(Value::Null)))
}

/// The browser test's workflows: a two-step run that succeeds, a `sleep 600` to cancel, a step
/// that fails once (until `marker` exists) to retry, and a ticker that reports progress 4× a second.
pub fn fixtures_steps(marker: &std::path::Path) -> [(&'static str, Value); 4] {
    let marker = marker.display();
    [
        (
            "live",
            json!([
                {"name": "greet", "image": "alpine", "run": "echo hello from greet; sleep 2"},
                {"name": "after", "image": "alpine", "dependsOn": ["greet"], "run": "sleep 1; echo done"}
            ]),
        ),
        (
            "slow",
            json!([{"name": "nap", "image": "alpine", "run": "sleep 600"}]),
        ),
        (
            "flaky",
            json!([{"name": "flaky", "image": "alpine",
                "run": format!("if [ -f {marker} ]; then echo second try; else touch {marker}; echo first try; exit 3; fi")}]),
        ),
        (
            "ticker",
            json!([{"name": "tick", "image": "alpine",
                "run": "for i in $(seq 1 400); do echo \"::progress $((i / 4)) tick $i\"; sleep 0.25; done"}]),
        ),
    ]
}

/// Waits for the browser script, restarting the api (every connection dropped) when it asks.
pub async fn serve_signals(
    env: &mut TestEnv,
    signals: &std::path::Path,
    child: tokio::process::Child,
) -> Result<std::process::Output> {
    let done = child.wait_with_output();
    tokio::pin!(done);
    let mut restarted = false;
    loop {
        tokio::select! {
            out = &mut done => return Ok(out?),
            _ = tokio::time::sleep(Duration::from_millis(50)) => {}
        }
        if !restarted && signals.join("restart-api").exists() {
            env.restart_api().await?;
            std::fs::write(signals.join("api-restarted"), b"")?;
            restarted = true;
        }
    }
}
