//! Import benchmark: a JSON export of IMPORT_TASKS tasks (10,000 by default: diamonds of four
//! plus as many lone tasks) through `importTasks`: dry run, apply, and the same file again
//! (nothing changes). Prints each duration and the api's peak resident memory (VmHWM) after
//! each step.
//!
//! Run with `scripts/bench import`.

use std::time::Instant;

use anyhow::ensure;
use serde_json::{Value, json};

const IMPORT: &str =
    "mutation($c:String!,$d:Boolean){importTasks(input:{format:JSON,content:$c,dryRun:$d}){
    created updated unchanged problems{position reason}}}";

fn export(tasks: usize) -> String {
    let groups = tasks / 8;
    let mut out = Vec::with_capacity(tasks);
    for g in 0..groups {
        let id = |n: usize| format!("g{g:05}-t{n}");
        out.push(json!({"id": id(0), "command": format!("/opt/etl/extract {g}"),
                        "schedule": format!("{} 2 * * *", g % 60), "tags": [format!("team-{}", g % 8)]}));
        out.push(json!({"id": id(1), "command": "/opt/etl/transform a", "depends_on": [id(0)]}));
        out.push(
            json!({"id": id(2), "command": "/opt/etl/transform b", "depends_on": [id(0)],
                        "env": {"MODE": "fast"}}),
        );
        out.push(json!({"id": id(3), "command": "/opt/etl/load", "depends_on": [id(1), id(2)]}));
    }
    for l in 0..(tasks - groups * 4) {
        out.push(
            json!({"id": format!("lone-{l:05}"), "command": format!("/opt/jobs/run {l}"),
                        "schedule": "*/15 * * * *"}),
        );
    }
    json!({ "tasks": out }).to_string()
}

fn peak_rss_mib(pid: u32) -> f64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmHWM:"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse::<f64>().ok())
        })
        .map(|kib| kib / 1024.0)
        .unwrap_or(f64::NAN)
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let tasks: usize = tms_tests::env_or("IMPORT_TASKS", 10_000);
    let env = tms_tests::bench_env().await?;
    let pid = env.api.as_ref().map(|p| p.pid()).unwrap_or(0);
    let source = export(tasks);
    println!(
        "== TMS import benchmark: {tasks} tasks, {:.1} MiB of JSON ==",
        source.len() as f64 / 1048576.0
    );
    println!("api peak RSS before: {:.1} MiB", peak_rss_mib(pid));
    for (label, dry) in [
        ("dry run", true),
        ("apply", false),
        ("same file again", false),
    ] {
        let t0 = Instant::now();
        let v = env.gql(IMPORT, json!({"c": source, "d": dry})).await?;
        let took = t0.elapsed();
        let r: &Value = &v["importTasks"];
        ensure!(r["problems"] == json!([]), "problems: {r}");
        let n = |k: &str| r[k].as_array().map(Vec::len).unwrap_or(0);
        println!(
            "{label:<16} {:8.0} ms   created {:5} updated {:5} unchanged {:5}   api peak RSS {:.1} MiB",
            took.as_secs_f64() * 1000.0,
            n("created"),
            n("updated"),
            n("unchanged"),
            peak_rss_mib(pid)
        );
    }
    Ok(())
}
