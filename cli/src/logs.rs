//! `tms logs RUN [STEP] [--follow]`: a run's step output, whole (the api keeps every line of
//! each step, `GET /runs/{id}/steps/{name}/log`); `--follow` asks for what is new every half
//! second until the step or run ends.

use std::collections::HashMap;
use std::time::Duration;

use clap::Args;
use serde_json::{Value, json};

use crate::api::{Api, Failure, exit};
use crate::import::{Output, OutputArg, text};
use crate::workflows::not_found;

pub const LOGS_HELP: &str = "Examples:
  tms logs 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d            # every step, one after another
  tms logs 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d test       # one step
  tms logs 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d test --follow
  tms logs 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --output json | jq -r '.[].exitCode'

The api keeps each step's whole combined stdout and stderr (up to TMS_STEP_LOG_MAX_BYTES),
secrets masked; the latest attempt is shown.";

#[derive(Args, Debug)]
pub struct LogsArgs {
    pub run_id: String,
    /// Only this step.
    pub step: Option<String>,
    /// Keep printing new output until the step (or, without STEP, the run) ends.
    #[arg(short, long)]
    pub follow: bool,
    /// `json`: the steps (name, status, attempt, exitCode, error, logTail) as a JSON array.
    #[command(flatten)]
    pub out: OutputArg,
}

const QUERY: &str = "query($id: ID!) { run(id: $id) { status tasks { name status attempt \
    exitCode error logTail } } }";

const RUN_DONE: [&str; 4] = ["SUCCEEDED", "FAILED", "CANCELLED", "TIMED_OUT"];

async fn fetch(api: &Api, id: &str) -> Result<Value, Failure> {
    let d = api.gql(QUERY, json!({"id": id})).await.map_err(|f| {
        if f.code == "BAD_USER_INPUT" {
            not_found(format!("no run {id}"))
        } else {
            f
        }
    })?;
    match &d["run"] {
        Value::Null => Err(not_found(format!("no run {id}"))),
        r => Ok(r.clone()),
    }
}

fn tasks(run: &Value) -> &[Value] {
    run["tasks"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default()
}

pub async fn run(api: Api, a: &LogsArgs) -> Result<i32, Failure> {
    let mut run = fetch(&api, &a.run_id).await?;
    if let Some(step) = &a.step
        && !tasks(&run).iter().any(|t| t["name"] == step.as_str())
    {
        return Err(not_found(format!("run {} has no step `{step}`", a.run_id)));
    }
    if a.out.output == Output::Json {
        let picked: Vec<Value> = tasks(&run)
            .iter()
            .filter(|t| a.step.as_ref().is_none_or(|s| t["name"] == s.as_str()))
            .cloned()
            .collect();
        println!("{}", Value::Array(picked));
        return Ok(exit::OK);
    }
    let picked: Vec<String> = tasks(&run)
        .iter()
        .map(|t| text(&t["name"]))
        .filter(|n| a.step.as_ref().is_none_or(|s| s == n))
        .collect();
    if !a.follow {
        for name in &picked {
            let log = api.step_log(&a.run_id, name, 0).await?;
            if a.step.is_none() {
                let status = tasks(&run)
                    .iter()
                    .find(|t| t["name"] == name.as_str())
                    .map(|t| text(&t["status"]).to_lowercase())
                    .unwrap_or_default();
                println!("==> {name} ({status}) <==");
            }
            print!("{}", with_newline(&log.text));
        }
        return Ok(exit::OK);
    }
    // Per step: the attempt being printed and how far.
    let mut at: HashMap<String, (i32, usize)> = HashMap::new();
    loop {
        let mut all_done = true;
        for name in &picked {
            let (attempt, offset) = at.get(name).copied().unwrap_or((0, 0));
            let mut log = api.step_log(&a.run_id, name, offset).await?;
            if log.attempt != attempt && attempt != 0 {
                // A new attempt (a retry): its log starts over.
                println!("--- {name}: attempt {} ---", log.attempt);
                log = api.step_log(&a.run_id, name, 0).await?;
            }
            // Only whole lines: the rest comes with the next poll.
            let upto = match log.text.rfind('\n') {
                Some(i) if !log.complete => i + 1,
                _ => log.text.len(),
            };
            for line in log.text[..upto].lines() {
                match a.step {
                    Some(_) => println!("{line}"),
                    None => println!("{name} | {line}"),
                }
            }
            let start = if log.attempt != attempt && attempt != 0 {
                0
            } else {
                offset
            };
            at.insert(name.clone(), (log.attempt, start + upto));
            all_done &= log.complete;
        }
        let run_done = RUN_DONE.contains(&run["status"].as_str().unwrap_or_default());
        if all_done || run_done {
            return Ok(exit::OK);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        run = fetch(&api, &a.run_id).await?;
    }
}

fn with_newline(s: &str) -> String {
    if s.is_empty() || s.ends_with('\n') {
        s.to_string()
    } else {
        format!("{s}\n")
    }
}
