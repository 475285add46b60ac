//! Read-path benchmark: `runs(first: 20)` under `wrk` against the real api and worker binaries,
//! in the shapes a runs list asks for:
//!
//! - `nested`: each run's `percent`, `etaSeconds`, `workflow { name }` and
//!   `tasks { name status attempt exitCode }` (the page a runs list shows);
//! - `flat`: the run's own columns and its `percent`, the shape
//!   `../shared/peer-bench/postgraphile` measures;
//! - `update`: an audited mutation (`updateWorkflow`, one audit row per request) instead.
//!
//! Data: READ_REAL=20 4-step diamond runs really executed by the worker (so step durations
//! and tasks are real), then copies of one of them inserted with SQL until READ_RUNS=10,000
//! runs are stored: each copy has a time-ordered id, its own timestamps (one every 100 ms
//! into the past) and its 4 finished tasks. Copies carry no run events (reading a page
//! never reads events). Then `ANALYZE`.
//!
//! Load: wrk with 2 threads, WRK_CONNECTIONS=64 connections, WRK_WARMUP=5 s unmeasured, then
//! WRK_SECONDS=15 s measured, per shape of READ_SHAPES (`nested,flat`); one summary line per
//! shape (requests/s, p50/p90/p99/max, non-2xx). Run with `scripts/bench reads`.

use std::process::Command;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use tms_tests::bench::{Pg, Report};

const NESTED: &str = "{ runs(first: 20) { edges { node { id status createdAt finishedAt \
    percent etaSeconds workflow { name } tasks { name status attempt exitCode } } } } }";
const FLAT: &str = "{ runs(first: 20) { edges { node { id status createdAt percent } } } }";
const UPDATE: &str =
    "mutation($i: ID!, $in: WorkflowInput!) { updateWorkflow(id: $i, input: $in) { id } }";

/// wrk's report as one parseable line (as `../shared/peer-bench/postgraphile/query.lua`).
const DONE_LUA: &str = r#"
done = function(summary, latency, requests)
  local e = summary.errors
  local secs = summary.duration / 1e6
  io.write(string.format(
    "WRK_SUMMARY requests=%d secs=%.2f rps=%.0f p50_ms=%.2f p90_ms=%.2f p99_ms=%.2f max_ms=%.2f non2xx=%d socket_errors=%d\n",
    summary.requests, secs, summary.requests / secs,
    latency:percentile(50) / 1000, latency:percentile(90) / 1000, latency:percentile(99) / 1000,
    latency.max / 1000, e.status, e.connect + e.read + e.write + e.timeout))
end
"#;

/// Copies the finished run `template` (and its tasks) `n` times with SQL.
fn seed_copies(pg: &mut Pg, template: &str, n: usize) -> Result<()> {
    // Time-ordered (version 7 layout) ids, as the api creates them, one every 100 ms back from
    // the template's creation.
    pg.execute(&format!(
        "CREATE TEMP TABLE copies AS \
         SELECT (substr(h, 1, 8) || '-' || substr(h, 9, 4) || '-7' || substr(r, 1, 3) || '-8' \
                 || substr(r, 4, 3) || '-' || substr(r, 7, 12))::uuid AS id, shift \
         FROM (SELECT lpad(to_hex((extract(epoch FROM t.created_at - s.shift) * 1000)::bigint), 12, '0') AS h, \
                      md5(random()::text || i::text) AS r, s.shift \
               FROM runs t, generate_series(1, {n}) i, \
                    LATERAL (SELECT make_interval(secs => i * 0.1) AS shift) s \
               WHERE t.id = '{template}') x"
    ))?;
    pg.execute(&format!(
        "INSERT INTO runs (id, workflow_id, version, status, inputs, no_cache, triggered_by, \
           created_at, started_at, finished_at, deliveries, last_seq, trigger) \
         SELECT c.id, t.workflow_id, t.version, t.status, t.inputs, t.no_cache, t.triggered_by, \
           t.created_at - c.shift, t.started_at - c.shift, t.finished_at - c.shift, t.deliveries, \
           t.last_seq, t.trigger \
         FROM runs t, copies c WHERE t.id = '{template}'"
    ))?;
    pg.execute(&format!(
        "INSERT INTO tasks (run_id, name, position, status, attempt, depends_on, started_at, \
           finished_at, exit_code, log_tail, error) \
         SELECT c.id, t.name, t.position, t.status, t.attempt, t.depends_on, \
           t.started_at - c.shift, t.finished_at - c.shift, t.exit_code, t.log_tail, t.error \
         FROM tasks t, copies c WHERE t.run_id = '{template}'"
    ))?;
    pg.execute("ANALYZE")?;
    Ok(())
}

fn parse_summary(line: &str) -> Vec<(String, f64)> {
    line.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .filter_map(|(k, v)| Some((k.to_string(), v.parse().ok()?)))
        .collect()
}

#[tokio::main]
async fn main() -> Result<()> {
    let runs: usize = tms_tests::env_or("READ_RUNS", 10_000);
    let real: usize = tms_tests::env_or("READ_REAL", 20);
    let connections: usize = tms_tests::env_or("WRK_CONNECTIONS", 64);
    let seconds: u64 = tms_tests::env_or("WRK_SECONDS", 15);
    let warmup: u64 = tms_tests::env_or("WRK_WARMUP", 5);
    let shapes: String = match std::env::var("READ_SHAPE") {
        Ok(s) => s,
        Err(_) => tms_tests::env_or("READ_SHAPES", "nested,flat".to_string()),
    };
    let mut report = Report::new("reads");
    report.setting("runs", runs);
    report.setting("connections", connections);
    report.setting("seconds", seconds);

    let env = tms_tests::bench_env().await?;
    let mut pg = Pg::connect(&env.database_url)?;
    let wf = env
        .create_workflow("bench-read", tms_tests::diamond())
        .await?;
    let mut ids = Vec::with_capacity(real);
    for _ in 0..real.max(1) {
        ids.push(env.trigger(&wf).await?);
    }
    for id in &ids {
        let run = env.wait_run(id, Duration::from_secs(120)).await?;
        ensure!(run["status"] == "SUCCEEDED", "seed run failed: {run}");
    }
    if runs > ids.len() {
        seed_copies(&mut pg, &ids[0], runs - ids.len())?;
    }
    let stored = pg.count("SELECT count(*) AS n FROM runs")?;
    report.setting("stored_runs", stored);

    let token = env.token.clone().context("not logged in")?;
    let dir = std::env::temp_dir().join(format!("tms-read-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let mut result = Ok(());
    for shape in shapes.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (query, variables) = match shape {
            "flat" => (FLAT, json!({})),
            "update" => (
                UPDATE,
                json!({"i": wf, "in": {"name": "bench-read", "steps": tms_tests::diamond()}}),
            ),
            "nested" => (NESTED, json!({})),
            other => bail!("unknown READ_SHAPES entry {other}: nested, flat or update"),
        };
        // One request by hand: the answer must be complete and error-free before it is measured.
        let page = env.gql(query, variables.clone()).await?;
        let edges = page["runs"]["edges"].as_array().map(Vec::len).unwrap_or(0);
        if shape != "update" && edges != 20 {
            bail!("expected a full page of 20 runs, got {edges}: {page}");
        }
        let script = dir.join(format!("{shape}.lua"));
        let body = serde_json::to_string(&json!({ "query": query, "variables": variables }))?;
        std::fs::write(
            &script,
            format!(
                "wrk.method = \"POST\"\nwrk.body = {body:?}\n\
                 wrk.headers[\"Content-Type\"] = \"application/json\"\n\
                 wrk.headers[\"Authorization\"] = \"Bearer {token}\"\n{DONE_LUA}"
            ),
        )?;
        let wrk = |secs: u64| {
            Command::new("timeout")
                .arg(format!("{}", secs + 30))
                .args([
                    "wrk",
                    "-t2",
                    &format!("-c{connections}"),
                    &format!("-d{secs}s"),
                    "--latency",
                    "-s",
                ])
                .arg(&script)
                .arg(env.api_url())
                .output()
                .context("running wrk (apt-get install wrk)")
        };
        if warmup > 0 {
            wrk(warmup)?;
        }
        let out = wrk(seconds)?;
        let text = String::from_utf8_lossy(&out.stdout);
        let Some(line) = text.lines().find_map(|l| l.strip_prefix("WRK_SUMMARY ")) else {
            eprint!("{text}{}", String::from_utf8_lossy(&out.stderr));
            result = Err(anyhow::anyhow!(
                "wrk ({shape}) printed no summary: {}",
                out.status
            ));
            continue;
        };
        let kv: std::collections::HashMap<String, f64> = parse_summary(line).into_iter().collect();
        let get = |k: &str| kv.get(k).copied().unwrap_or(f64::NAN);
        let detail = format!(
            "wrk -t2 -c{connections} {seconds} s, {stored} runs stored; p50 {:.1} ms p90 {:.1} ms p99 {:.1} ms max {:.1} ms; non-2xx {} socket errors {}",
            get("p50_ms"),
            get("p90_ms"),
            get("p99_ms"),
            get("max_ms"),
            get("non2xx"),
            get("socket_errors")
        );
        report.figure(&format!("reads_{shape}_rps"), get("rps"), "req/s", &detail);
        for k in ["p50_ms", "p90_ms", "p99_ms"] {
            report.figure(&format!("reads_{shape}_{k}"), get(k), "ms", "");
        }
        if get("non2xx") > 0.0 || get("socket_errors") > 0.0 {
            result = Err(anyhow::anyhow!("wrk ({shape}) saw errors: {line}"));
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    report.write()?;
    result
}
