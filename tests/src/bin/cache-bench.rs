//! Cache benchmark: what the step cache saves and what the artifact store costs, through the
//! real api and worker binaries (local executor). Prints its figures.
//!
//! 1. A 4-step diamond, every step `cache: true` and leaving an output: trigger → SUCCEEDED
//!    latency with caching off, executed (`noCache: true`) and fully cached (all 4 tasks
//!    CACHED, checked on every run). CACHE_RUNS=30 runs each.
//! 2. A 100 MiB output: `a` writes it to $TMS_OUT, `b` reads it from $TMS_IN, against a
//!    baseline whose `a` writes the same bytes to its work dir (and a small file to $TMS_OUT).
//!    A task's startedAt → finishedAt covers its command and the store of its /out; the
//!    restore of its inputs happens before startedAt, so restore is measured from `a`'s
//!    finishedAt to `b`'s. ARTIFACT_RUNS=3 of each; medians.
//!
//! Runs are waited for by polling their status every 5 ms (a cached run takes tens of ms).
//! Run with `scripts/bench cache` (starts Postgres and Redis, builds in release mode).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use chrono::{DateTime, FixedOffset};
use serde_json::{Value, json};
use tms_tests::TestEnv;

/// Bytes of the large output: 100 MiB.
const BLOB: u64 = 104_857_600;
const MIB: f64 = 1_048_576.0;

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn median(d: &[Duration]) -> Duration {
    let mut d = d.to_vec();
    d.sort();
    pct(&d, 0.5)
}

/// The diamond a -> (b, c) -> d, each step hashing a little data into its /out.
fn diamond(cache: bool) -> Value {
    json!([
        {"name": "a", "image": "alpine", "cache": cache,
         "run": "seq 1 20000 | sha256sum > $TMS_OUT/a"},
        {"name": "b", "image": "alpine", "cache": cache, "dependsOn": ["a"],
         "run": "seq 1 20000 | cat $TMS_IN/a/a - | sha256sum > $TMS_OUT/b"},
        {"name": "c", "image": "alpine", "cache": cache, "dependsOn": ["a"],
         "run": "seq 20000 -1 1 | cat $TMS_IN/a/a - | sha256sum > $TMS_OUT/c"},
        {"name": "d", "image": "alpine", "cache": cache, "dependsOn": ["b", "c"],
         "run": "cat $TMS_IN/b/b $TMS_IN/c/c | sha256sum > $TMS_OUT/d"}
    ])
}

async fn trigger(env: &TestEnv, wf: &str, no_cache: bool) -> Result<String> {
    let d = env
        .gql(
            "mutation($w:ID!,$n:Boolean){triggerRun(workflowId:$w,noCache:$n){id}}",
            json!({"w": wf, "n": no_cache}),
        )
        .await?;
    d["triggerRun"]["id"]
        .as_str()
        .map(str::to_string)
        .with_context(|| format!("triggerRun returned no id: {d}"))
}

/// Waits for the run to reach a final status (polling it every 5 ms) and returns the whole
/// run; fails unless it SUCCEEDED.
async fn finish(env: &TestEnv, id: &str, timeout: Duration) -> Result<Value> {
    let deadline = Instant::now() + timeout;
    loop {
        let d = env
            .gql("query($id:ID!){run(id:$id){status}}", json!({"id": id}))
            .await?;
        if !matches!(d["run"]["status"].as_str(), Some("QUEUED" | "RUNNING")) {
            break;
        }
        if Instant::now() > deadline {
            // Fails with the worker logs when the run is still not final.
            env.wait_run(id, Duration::ZERO).await?;
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let run = env.run(id).await?;
    ensure!(run["status"] == "SUCCEEDED", "bench run {id} failed: {run}");
    Ok(run)
}

fn ts(v: &Value, field: &str) -> Result<DateTime<FixedOffset>> {
    let s = v[field]
        .as_str()
        .with_context(|| format!("no {field} in {v}"))?;
    Ok(DateTime::parse_from_rfc3339(s)?)
}

/// Time from `from[f]` to `to[t]` (zero when negative).
fn span(from: &Value, f: &str, to: &Value, t: &str) -> Result<Duration> {
    Ok((ts(to, t)? - ts(from, f)?).to_std().unwrap_or_default())
}

/// Client-side trigger → SUCCEEDED and server-side createdAt → finishedAt of `n` sequential
/// runs, each with exactly `want_cached` of its 4 tasks served from the cache.
async fn series(
    env: &TestEnv,
    wf: &str,
    no_cache: bool,
    n: usize,
    want_cached: usize,
) -> Result<(Vec<Duration>, Vec<Duration>, String)> {
    let (mut client, mut server, mut last) = (Vec::new(), Vec::new(), String::new());
    for _ in 0..n {
        let t0 = Instant::now();
        let id = trigger(env, wf, no_cache).await?;
        let run = finish(env, &id, Duration::from_secs(60)).await?;
        client.push(t0.elapsed());
        server.push(span(&run, "createdAt", &run, "finishedAt")?);
        let tasks = run["tasks"].as_array().context("run without tasks")?;
        let cached = tasks
            .iter()
            .filter(|t| t["cached"] == true && t["status"] == "CACHED")
            .count();
        ensure!(
            tasks.len() == 4 && cached == want_cached,
            "run {id}: {cached} of {} tasks CACHED, expected {want_cached}: {run}",
            tasks.len()
        );
        last = id;
    }
    Ok((client, server, last))
}

fn line(name: &str, client: &[Duration], server: &[Duration]) -> (Duration, Duration) {
    let (mut c, mut s) = (client.to_vec(), server.to_vec());
    c.sort();
    s.sort();
    println!(
        "{name:<40} n={:<3} p50={:>8.1?} p95={:>8.1?}   (server createdAt->finishedAt p50={:>8.1?} p95={:>8.1?})",
        c.len(),
        pct(&c, 0.5),
        pct(&c, 0.95),
        pct(&s, 0.5),
        pct(&s, 0.95)
    );
    (pct(&c, 0.5), pct(&c, 0.95))
}

/// Part 1: the cache-hit path against execution.
async fn cache_hits(env: &TestEnv, n: usize) -> Result<()> {
    let plain = env
        .create_workflow("bench-diamond-nocache", diamond(false))
        .await?;
    let wf = env
        .create_workflow("bench-diamond-cache", diamond(true))
        .await?;
    // Warm-up (connections, page cache), executing everything.
    finish(
        env,
        &trigger(env, &plain, false).await?,
        Duration::from_secs(60),
    )
    .await?;
    finish(
        env,
        &trigger(env, &wf, true).await?,
        Duration::from_secs(60),
    )
    .await?;

    let (off_c, off_s, _) = series(env, &plain, false, n, 0).await?;
    let (exe_c, exe_s, _) = series(env, &wf, true, n, 0).await?;
    // One run executes and stores the 4 entries; every later run hits all of them.
    series(env, &wf, false, 1, 0).await?;
    let (hit_c, hit_s, last) = series(env, &wf, false, n, 4).await?;
    let why = env
        .gql(
            "query($r:ID!){explainCache(runId:$r,step:\"d\"){hit reason}}",
            json!({"r": last}),
        )
        .await?;
    ensure!(
        why["explainCache"]["hit"] == true,
        "explainCache says no hit: {why}"
    );

    println!("== TMS cache benchmark (local executor, 1 api, 1 worker, concurrency 8) ==");
    line("diamond, cache: false, trigger->finish", &off_c, &off_s);
    let (e50, e95) = line("diamond executed (noCache: true)", &exe_c, &exe_s);
    let (h50, h95) = line("diamond fully cached (4/4 CACHED)", &hit_c, &hit_s);
    println!(
        "cache hit path: executed/cached = {:.1}x at p50, {:.1}x at p95",
        e50.as_secs_f64() / h50.as_secs_f64(),
        e95.as_secs_f64() / h95.as_secs_f64()
    );
    Ok(())
}

/// One run of a 2-step artifact workflow.
#[derive(Default)]
struct Sample {
    /// `a`'s startedAt → finishedAt: its command and the store of its /out.
    a: Duration,
    /// `b`'s startedAt → finishedAt: its command alone.
    b: Duration,
    /// `a`'s finishedAt → `b`'s finishedAt: scheduling, restore of a's output, b's command.
    a_end_to_b_end: Duration,
    /// Trigger → SUCCEEDED as the client sees it.
    total: Duration,
}

async fn artifact_run(env: &TestEnv, wf: &str, want: &str) -> Result<Sample> {
    let t0 = Instant::now();
    let id = trigger(env, wf, false).await?;
    let run = finish(env, &id, Duration::from_secs(600)).await?;
    let total = t0.elapsed();
    let (a, b) = (tms_tests::task(&run, "a"), tms_tests::task(&run, "b"));
    let tail = b["logTail"].as_str().unwrap_or_default();
    ensure!(tail.contains(want), "b printed {tail:?}, expected {want}");
    Ok(Sample {
        a: span(a, "startedAt", a, "finishedAt")?,
        b: span(b, "startedAt", b, "finishedAt")?,
        a_end_to_b_end: span(a, "finishedAt", b, "finishedAt")?,
        total,
    })
}

fn rate(extra: Duration) -> String {
    if extra.is_zero() {
        "n/a (no measurable extra time)".into()
    } else {
        format!("{:.0} MiB/s", BLOB as f64 / MIB / extra.as_secs_f64())
    }
}

/// Part 2: storing and restoring a 100 MiB output.
async fn artifacts(env: &TestEnv, runs: usize) -> Result<()> {
    let gen_cmd = format!("head -c {BLOB} /dev/urandom");
    let with_out = env
        .create_workflow(
            "bench-artifact-100m",
            json!([
                {"name": "a", "image": "alpine", "run": format!("{gen_cmd} > $TMS_OUT/blob")},
                {"name": "b", "image": "alpine", "dependsOn": ["a"],
                 "run": "wc -c $TMS_IN/a/blob"}
            ]),
        )
        .await?;
    let baseline = env
        .create_workflow(
            "bench-artifact-baseline",
            json!([
                {"name": "a", "image": "alpine",
                 "run": format!("{gen_cmd} > blob && echo small > $TMS_OUT/small")},
                {"name": "b", "image": "alpine", "dependsOn": ["a"],
                 "run": "wc -c $TMS_IN/a/small"}
            ]),
        )
        .await?;
    let (mut gen_alone, mut base, mut out) = (Vec::new(), Vec::new(), Vec::new());
    for _ in 0..runs {
        let t0 = Instant::now();
        let st = Command::new("sh")
            .args(["-c", &format!("{gen_cmd} > /dev/null")])
            .status()?;
        ensure!(st.success(), "generating the blob failed: {st}");
        gen_alone.push(t0.elapsed());
        // Interleaved, so drift on the machine hits both alike.
        base.push(artifact_run(env, &baseline, "6 ").await?);
        out.push(artifact_run(env, &with_out, &format!("{BLOB} ")).await?);
    }
    let med =
        |v: &[Sample], f: fn(&Sample) -> Duration| median(&v.iter().map(f).collect::<Vec<_>>());
    let (a_base, a_out) = (med(&base, |s| s.a), med(&out, |s| s.a));
    let (r_base, r_out) = (
        med(&base, |s| s.a_end_to_b_end),
        med(&out, |s| s.a_end_to_b_end),
    );
    println!("== 100 MiB step output through the artifact store (medians of {runs}) ==");
    println!(
        "{:<52} {:>8.1?}",
        "urandom generation alone (head -c ... > /dev/null)",
        median(&gen_alone)
    );
    println!(
        "{:<52} {a_base:>8.1?}",
        "a baseline: 100 MiB -> work dir (task duration)"
    );
    println!(
        "{:<52} {a_out:>8.1?}",
        "a: 100 MiB -> $TMS_OUT, incl. store (task duration)"
    );
    println!(
        "{:<52} {:>8.1?} / {:>8.1?}",
        "b task duration (wc -c), baseline / 100 MiB",
        med(&base, |s| s.b),
        med(&out, |s| s.b)
    );
    println!(
        "{:<52} {r_base:>8.1?}",
        "a finished -> b finished, small input (baseline)"
    );
    println!(
        "{:<52} {r_out:>8.1?}",
        "a finished -> b finished, 100 MiB input (restore)"
    );
    println!(
        "{:<52} {:>8.1?} / {:>8.1?}",
        "trigger -> SUCCEEDED, baseline / 100 MiB",
        med(&base, |s| s.total),
        med(&out, |s| s.total)
    );
    println!(
        "{:<52} {}",
        "store rate: 100 MiB / (a - a baseline)",
        rate(a_out.saturating_sub(a_base))
    );
    println!(
        "{:<52} {}",
        "restore rate: 100 MiB / (a->b 100 MiB - baseline)",
        rate(r_out.saturating_sub(r_base))
    );
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let cache_runs: usize = tms_tests::env_or("CACHE_RUNS", 30);
    let artifact_runs: usize = tms_tests::env_or("ARTIFACT_RUNS", 3);
    ensure!(
        cache_runs > 0 && artifact_runs > 0,
        "CACHE_RUNS and ARTIFACT_RUNS must be at least 1"
    );
    // The environment's temporary directory (work dir, artifact store) goes when it drops.
    let env = tms_tests::bench_env().await?;
    cache_hits(&env, cache_runs).await?;
    artifacts(&env, artifact_runs).await?;
    Ok(())
}
