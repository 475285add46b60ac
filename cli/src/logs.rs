//! `tms logs RUN [STEP] [--follow]`: a run's step output (the api keeps each step's last
//! lines, `Task.logTail`); `--follow` polls and prints what is new until the step or run ends.

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

The api keeps the last lines of each step's combined stdout and stderr.";

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

const TASK_DONE: [&str; 5] = ["SUCCEEDED", "FAILED", "CACHED", "SKIPPED", "CANCELLED"];
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

/// The part of `cur` not yet printed, given that `prev` was: `cur`'s lines after the longest
/// run of `prev`'s last lines that `cur` starts with (the tail slides as the log grows).
fn new_lines<'a>(prev: &str, cur: &'a str) -> Vec<&'a str> {
    let p: Vec<&str> = prev.lines().collect();
    let c: Vec<&str> = cur.lines().collect();
    let overlap = (0..=p.len().min(c.len()))
        .rev()
        .find(|&k| p[p.len() - k..] == c[..k])
        .unwrap_or(0);
    c[overlap..].to_vec()
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
    if !a.follow {
        for t in tasks(&run) {
            match &a.step {
                Some(s) if t["name"] != s.as_str() => {}
                Some(_) => print!("{}", with_newline(&text(&t["logTail"]))),
                None => {
                    println!(
                        "==> {} ({}) <==",
                        text(&t["name"]),
                        text(&t["status"]).to_lowercase()
                    );
                    print!(
                        "{}",
                        with_newline(t["logTail"].as_str().unwrap_or_default())
                    );
                }
            }
        }
        return Ok(exit::OK);
    }
    let mut printed: HashMap<String, String> = HashMap::new();
    loop {
        let mut all_done = true;
        for t in tasks(&run) {
            let name = text(&t["name"]);
            if a.step.as_ref().is_some_and(|s| *s != name) {
                continue;
            }
            let log = t["logTail"].as_str().unwrap_or_default();
            let prev = printed.get(&name).map(String::as_str).unwrap_or_default();
            for line in new_lines(prev, log) {
                match a.step {
                    Some(_) => println!("{line}"),
                    None => println!("{name} | {line}"),
                }
            }
            printed.insert(name, log.to_string());
            all_done &= TASK_DONE.contains(&t["status"].as_str().unwrap_or_default());
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

#[cfg(test)]
mod tests {
    use super::new_lines;

    #[test]
    fn only_new_lines_of_a_sliding_tail() {
        assert_eq!(new_lines("", "a\nb\n"), ["a", "b"]);
        assert_eq!(new_lines("a\nb\n", "a\nb\nc\n"), ["c"]);
        assert_eq!(new_lines("a\nb\nc\n", "b\nc\nd\ne\n"), ["d", "e"]);
        assert_eq!(new_lines("a\nb\n", "a\nb\n"), Vec::<&str>::new());
    }
}
