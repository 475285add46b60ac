//! `tms run`, `tms runs`, `tms cancel` and `tms retry`: starting, listing and steering runs.

use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::api::{Api, Failure, exit};
use crate::import::{Output, OutputArg, text};
use crate::table::Table;
use crate::workflows::{self, not_found};

pub const RUN_HELP: &str = "Examples:
  tms run build-test-package --watch
  tms run scheduled-report --input period=weekly --input limit=10
  tms run nightly-backup --idempotency-key backup-2026-01-31 --no-cache --output json

`--input k=v` values are JSON when they parse as JSON (10, true, [1,2]), else strings; each
step sees them in $TMS_INPUTS and as TMS_INPUT_<K>. With --watch the exit code is 0 only
when the run succeeded (1 otherwise).";

pub const RUNS_HELP: &str = "Examples:
  tms runs
  tms runs --workflow nightly-backup --status failed --first 5
  tms runs --output json | jq -r '.[].id'";

pub const CANCEL_HELP: &str = "Example:
  tms cancel 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d";

pub const RETRY_HELP: &str = "Examples:
  tms retry 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --from-failed --watch
  tms retry 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d      # a new run, same version and inputs";

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workflow's name or id.
    pub workflow: String,
    /// A run input `KEY=VALUE` (repeatable).
    #[arg(long = "input", value_name = "KEY=VALUE")]
    pub inputs: Vec<String>,
    /// The same key returns the same run instead of starting another.
    #[arg(long, value_name = "KEY")]
    pub idempotency_key: Option<String>,
    /// Run every step, even those whose result is cached.
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub follow: Follow,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct Follow {
    /// Follow the run live until it ends (like `tms watch`).
    #[arg(long)]
    pub watch: bool,
    /// With --watch: one line per event instead of progress bars.
    #[arg(long)]
    pub plain: bool,
}

#[derive(ValueEnum, Clone, Copy, Debug)]
pub enum Status {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
    TimedOut,
}

#[derive(Args, Debug)]
pub struct RunsArgs {
    /// Only runs of this workflow (name or id).
    #[arg(long)]
    pub workflow: Option<String>,
    /// Only runs in this status.
    #[arg(long, value_enum)]
    pub status: Option<Status>,
    /// How many runs (1-100).
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u8).range(1..=100))]
    pub first: u8,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct CancelArgs {
    pub run_id: String,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct RetryArgs {
    pub run_id: String,
    /// Re-run only the failed, skipped and cancelled steps of the same run.
    #[arg(long)]
    pub from_failed: bool,
    #[command(flatten)]
    pub follow: Follow,
    #[command(flatten)]
    pub out: OutputArg,
}

const RUN_FIELDS: &str = "id status version trigger createdAt startedAt finishedAt error \
    workflow { id name } tasks { name status attempt cached exitCode }";

/// `KEY=VALUE` pairs as a JSON object.
fn inputs(pairs: &[String]) -> Result<Value, Failure> {
    let mut m = Map::new();
    for p in pairs {
        let Some((k, v)) = p.split_once('=') else {
            return Err(Failure::usage(format!("--input `{p}` is not KEY=VALUE")));
        };
        let value = serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.into()));
        m.insert(k.to_string(), value);
    }
    Ok(Value::Object(m))
}

/// Prints a run (JSON, or one line), then follows it when asked; the exit code.
async fn show_and_follow(api: &Api, run: &Value, f: &Follow, out: Output) -> Result<i32, Failure> {
    if out == Output::Json {
        println!("{run}");
    } else {
        println!(
            "run {} of {} (version {}): {}",
            text(&run["id"]),
            text(&run["workflow"]["name"]),
            text(&run["version"]),
            text(&run["status"]).to_lowercase()
        );
    }
    if !f.watch {
        return Ok(exit::OK);
    }
    let id = text(&run["id"]);
    match crate::watch::watch(api, &id, f.plain || out == Output::Json).await {
        Ok(true) => Ok(exit::OK),
        Ok(false) => Ok(exit::DIFFERENCES),
        Err(e) => Err(Failure::other("WATCH", format!("{e:#}"))),
    }
}

pub async fn run(api: Api, a: &RunArgs) -> Result<i32, Failure> {
    let w = workflows::find(&api, &a.workflow, "id name").await?;
    let q = format!(
        "mutation($w: ID!, $i: JSON, $k: String, $n: Boolean) {{ triggerRun(workflowId: $w, \
         inputs: $i, idempotencyKey: $k, noCache: $n) {{ {RUN_FIELDS} }} }}"
    );
    let vars = json!({"w": w["id"], "i": inputs(&a.inputs)?, "k": a.idempotency_key,
                      "n": a.no_cache});
    let d = api.gql(&q, vars).await?;
    show_and_follow(&api, &d["triggerRun"], &a.follow, a.out.output).await
}

pub async fn list(api: Api, a: &RunsArgs) -> Result<i32, Failure> {
    let workflow_id = match &a.workflow {
        Some(w) => Some(workflows::find(&api, w, "id").await?["id"].clone()),
        None => None,
    };
    let status = a.status.map(|s| {
        s.to_possible_value()
            .map(|v| v.get_name().replace('-', "_").to_uppercase())
            .unwrap_or_default()
    });
    let q = format!(
        "query($f: Int, $w: ID, $s: RunStatus) {{ runs(first: $f, workflowId: $w, status: $s) \
         {{ nodes {{ {RUN_FIELDS} }} }} }}"
    );
    let d = api
        .gql(&q, json!({"f": a.first, "w": workflow_id, "s": status}))
        .await?;
    let runs = d["runs"]["nodes"].as_array().cloned().unwrap_or_default();
    if a.out.output == Output::Json {
        println!("{}", Value::Array(runs));
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["ID", "WORKFLOW", "VERSION", "STATUS", "TRIGGER", "CREATED"]);
    for r in &runs {
        t.row(vec![
            text(&r["id"]),
            text(&r["workflow"]["name"]),
            text(&r["version"]),
            text(&r["status"]),
            text(&r["trigger"]),
            text(&r["createdAt"]),
        ]);
    }
    print!("{}", t.render());
    Ok(exit::OK)
}

/// Runs that do not exist answer null (or an invalid-id error): both are NOT_FOUND.
fn missing(f: Failure, id: &str) -> Failure {
    if f.code == "BAD_USER_INPUT" {
        not_found(format!("no run {id}"))
    } else {
        f
    }
}

pub async fn cancel(api: Api, a: &CancelArgs) -> Result<i32, Failure> {
    let q = format!("mutation($id: ID!) {{ cancelRun(id: $id) {{ {RUN_FIELDS} }} }}");
    let d = api
        .gql(&q, json!({"id": a.run_id}))
        .await
        .map_err(|f| missing(f, &a.run_id))?;
    let run = &d["cancelRun"];
    if a.out.output == Output::Json {
        println!("{run}");
    } else {
        println!(
            "run {}: {}",
            text(&run["id"]),
            text(&run["status"]).to_lowercase()
        );
    }
    Ok(exit::OK)
}

pub async fn retry(api: Api, a: &RetryArgs) -> Result<i32, Failure> {
    let q = format!(
        "mutation($id: ID!, $f: Boolean) {{ retryRun(id: $id, fromFailedStep: $f) {{ {RUN_FIELDS} }} }}"
    );
    let d = api
        .gql(&q, json!({"id": a.run_id, "f": a.from_failed}))
        .await
        .map_err(|f| missing(f, &a.run_id))?;
    show_and_follow(&api, &d["retryRun"], &a.follow, a.out.output).await
}
