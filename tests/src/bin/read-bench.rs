//! Read-path benchmark: `runs(first: 20)` with nested fields (workflow, tasks, percent, ETA),
//! the page a runs list shows, under `wrk` load against the real api and worker binaries.
//! Seeds a 4-step workflow with finished runs first, so every field has data. Prints wrk's
//! figures (requests/s, latency percentiles).
//!
//! Run with `scripts/bench read` (starts Postgres and Redis, builds in release mode).
//! Settings: READ_RUNS (runs seeded, 200), WRK_CONNECTIONS (16), WRK_SECONDS (15),
//! READ_SHAPE=flat for the shape `../shared/peer-bench/postgraphile` measures (the run's own
//! columns and its progress, nothing nested); READ_SHAPE=update for an audited mutation
//! (`updateWorkflow`, one audit row per request) instead of the read.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;

const NESTED: &str = "{ runs(first: 20) { edges { node { id status createdAt finishedAt \
    percent etaSeconds workflow { name } tasks { name status attempt exitCode } } } } }";
const FLAT: &str = "{ runs(first: 20) { edges { node { id status createdAt percent } } } }";
const UPDATE: &str =
    "mutation($i: ID!, $in: WorkflowInput!) { updateWorkflow(id: $i, input: $in) { id } }";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let runs: usize = tms_tests::env_or("READ_RUNS", 200);
    let connections: usize = tms_tests::env_or("WRK_CONNECTIONS", 16);
    let seconds: u64 = tms_tests::env_or("WRK_SECONDS", 15);
    let shape: String = tms_tests::env_or("READ_SHAPE", "nested".to_string());
    let query = match shape.as_str() {
        "flat" => FLAT,
        "update" => UPDATE,
        _ => NESTED,
    };
    let env = tms_tests::bench_env().await?;
    let wf = env
        .create_workflow("bench-read", tms_tests::diamond())
        .await?;
    let mut ids = Vec::with_capacity(runs);
    for _ in 0..runs {
        ids.push(env.trigger(&wf).await?);
    }
    for id in &ids {
        env.wait_run(id, Duration::from_secs(120)).await?;
    }
    let variables = if shape == "update" {
        json!({"i": wf, "in": {"name": "bench-read", "steps": tms_tests::diamond()}})
    } else {
        json!({})
    };
    // One request by hand: the answer must be complete and error-free before it is measured.
    let page = env.gql(query, variables.clone()).await?;
    let edges = page["runs"]["edges"].as_array().map(Vec::len).unwrap_or(0);
    if shape != "update" && edges != 20 {
        bail!("expected a full page of 20 runs, got {edges}: {page}");
    }

    let token = env.token.clone().context("not logged in")?;
    let dir = std::env::temp_dir().join(format!("tms-read-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let script = dir.join("runs.lua");
    let body = serde_json::to_string(&json!({ "query": query, "variables": variables }))?;
    std::fs::write(
        &script,
        format!(
            "wrk.method = \"POST\"\nwrk.body = {body:?}\n\
             wrk.headers[\"Content-Type\"] = \"application/json\"\n\
             wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n"
        ),
    )?;
    println!(
        "== TMS read benchmark: runs(first: 20), {shape} ({query}); {runs} runs stored, {connections} connections =="
    );
    let out = Command::new("wrk")
        .args([
            "-t2",
            &format!("-c{connections}"),
            &format!("-d{seconds}s"),
            "--latency",
            "-s",
        ])
        .arg(&script)
        .arg(env.api_url())
        .output()
        .context("running wrk (apt-get install wrk)")?;
    print!("{}", String::from_utf8_lossy(&out.stdout));
    eprint!("{}", String::from_utf8_lossy(&out.stderr));
    let _ = std::fs::remove_dir_all(&dir);
    if !out.status.success() {
        bail!("wrk failed: {}", out.status);
    }
    Ok(())
}
