//! `tms watch <run-id>`: a run's steps with progress bars and the ETA, live, through the
//! `runProgress` subscription; it resumes with `afterSeq` when the connection drops (an api
//! restart loses nothing).

use std::collections::HashMap;
use std::time::Duration;

use anyhow::{Result, bail};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};
use tms_cli::ws::{GqlWs, WsError, WsEvent};

use crate::api::Api;

/// The terminal view: one bar per step and one for the run.
struct View {
    _multi: MultiProgress,
    run: ProgressBar,
    steps: HashMap<String, ProgressBar>,
    plain: bool,
}

impl View {
    fn new(workflow: &str, steps: &[Value], plain: bool) -> Self {
        let multi = MultiProgress::with_draw_target(if plain {
            ProgressDrawTarget::hidden()
        } else {
            ProgressDrawTarget::stderr()
        });
        let run_style =
            ProgressStyle::with_template("{prefix:>16} [{bar:30.cyan/blue}] {pos:>3}% {msg}")
                .expect("template");
        let step_style =
            ProgressStyle::with_template("{prefix:>16} [{bar:30.green/white}] {pos:>3}% {msg}")
                .expect("template");
        let run = multi.add(
            ProgressBar::new(100)
                .with_style(run_style)
                .with_prefix(workflow.to_string()),
        );
        let mut bars = HashMap::new();
        for s in steps {
            let name = s["name"].as_str().unwrap_or_default().to_string();
            let bar = multi.add(
                ProgressBar::new(100)
                    .with_style(step_style.clone())
                    .with_prefix(name.clone()),
            );
            bar.set_message(s["status"].as_str().unwrap_or_default().to_lowercase());
            if matches!(
                s["status"].as_str(),
                Some("SUCCEEDED" | "CACHED" | "FAILED" | "SKIPPED" | "CANCELLED")
            ) {
                bar.set_position(100);
            }
            bars.insert(name, bar);
        }
        View {
            _multi: multi,
            run,
            steps: bars,
            plain,
        }
    }

    fn apply(&self, e: &Value) {
        let eta = match e["etaSeconds"].as_f64() {
            Some(s) => format!("ETA {s:.0}s"),
            None => "ETA unknown".into(),
        };
        let status = e["status"].as_str().unwrap_or_default();
        self.run
            .set_position(e["percent"].as_f64().unwrap_or(0.0) as u64);
        if matches!(e["kind"].as_str(), Some("RUN" | "SNAPSHOT")) {
            self.run
                .set_message(format!("{} · {eta}", status.to_lowercase()));
        } else {
            self.run.set_message(eta.clone());
        }
        if let Some(bar) = e["step"].as_str().and_then(|s| self.steps.get(s)) {
            match e["kind"].as_str() {
                Some("PROGRESS") => {
                    bar.set_position(e["stepPercent"].as_f64().unwrap_or(0.0) as u64);
                    bar.set_message(e["message"].as_str().unwrap_or("running").to_string());
                }
                _ => {
                    if matches!(
                        status,
                        "SUCCEEDED" | "CACHED" | "FAILED" | "SKIPPED" | "CANCELLED"
                    ) {
                        bar.set_position(100);
                    } else if status == "RUNNING" {
                        bar.set_position(0);
                    }
                    bar.set_message(status.to_lowercase());
                }
            }
        }
        if self.plain {
            // Enum values (`PROGRESS`, `RUNNING`) read better in lower case on a terminal.
            println!(
                "#{seq} {kind} {step}{status} {pct}% {eta}{msg}",
                seq = e["seq"],
                kind = e["kind"].as_str().unwrap_or_default().to_lowercase(),
                status = status.to_lowercase(),
                step = e["step"]
                    .as_str()
                    .map(|s| format!("{s} "))
                    .unwrap_or_default(),
                pct = e["percent"],
                msg = e["message"]
                    .as_str()
                    .map(|m| format!(" — {m}"))
                    .unwrap_or_default(),
            );
        }
    }
}

const SUBSCRIPTION: &str = "subscription($r: ID!, $a: Int) { runProgress(runId: $r, afterSeq: $a) \
    { seq kind status step percent etaSeconds stepPercent message } }";

/// Streams events after `after` into `view` until the run ends (Ok(Some(final status))) or the
/// connection drops (Ok(None), to resume).
async fn stream_once(
    api: &Api,
    run_id: &str,
    after: &mut i64,
    view: &View,
) -> Result<Option<String>> {
    let ws_url = api.url.replacen("http", "ws", 1) + "/graphql";
    let mut ws = match GqlWs::connect(&ws_url, &api.token, Duration::from_secs(30)).await {
        Ok(ws) => ws,
        Err(WsError::Closed {
            code: Some(4403), ..
        }) => bail!("the api refused the token"),
        Err(_) => return Ok(None),
    };
    ws.subscribe("1", SUBSCRIPTION, json!({"r": run_id, "a": *after}))
        .await?;
    let mut last_status = None;
    loop {
        let event = match ws.next(None).await {
            Ok(event) => event,
            Err(_) => return Ok(None),
        };
        match event {
            WsEvent::Next(data) => {
                let e = &data["runProgress"];
                *after = e["seq"].as_i64().unwrap_or(*after);
                view.apply(e);
                if e["kind"] == "RUN" {
                    last_status = e["status"].as_str().map(str::to_string);
                }
            }
            WsEvent::Error(errs) => {
                if errs[0]["extensions"]["code"] == "SLOW_CONSUMER" {
                    return Ok(None);
                }
                bail!(
                    "{}",
                    errs[0]["message"].as_str().unwrap_or("subscription failed")
                );
            }
            WsEvent::Complete => return Ok(Some(last_status.unwrap_or_default())),
            WsEvent::Closed(Some(4403), _) => bail!("the api refused the token"),
            WsEvent::Closed(..) => return Ok(None),
        }
    }
}

pub async fn watch(api: &Api, run_id: &str, plain: bool) -> Result<bool> {
    let data = api
        .gql(
            "query($id: ID!) { run(id: $id) { status lastSeq workflow { name } tasks { name status } } }",
            json!({"id": run_id}),
        )
        .await?;
    let run = &data["run"];
    if run.is_null() {
        bail!("no run {run_id}");
    }
    let view = View::new(
        run["workflow"]["name"].as_str().unwrap_or("run"),
        run["tasks"]
            .as_array()
            .map(Vec::as_slice)
            .unwrap_or_default(),
        plain,
    );
    // Start from the beginning so the bars reflect every step's history.
    let mut after = 0i64;
    let mut delay = Duration::from_millis(200);
    let status = loop {
        match stream_once(api, run_id, &mut after, &view).await? {
            Some(status) => break status,
            None => {
                view.run
                    .set_message(format!("reconnecting (after #{after})…"));
                tokio::time::sleep(delay).await;
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    };
    let shown = status.to_lowercase();
    view.run.finish_with_message(shown.clone());
    for bar in view.steps.values() {
        bar.finish();
    }
    eprintln!("run {run_id}: {shown}");
    Ok(status == "SUCCEEDED")
}
