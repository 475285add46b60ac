//! Spine benchmark: trigger → finish latency of a 4-step diamond run through the real api and
//! worker binaries, sequentially (latency) and in bursts (throughput). Prints its figures.
//!
//! Run with `scripts/bench` (starts Postgres and Redis, builds in release mode).

use std::time::{Duration, Instant};

fn pct(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn summary(name: &str, mut d: Vec<Duration>) {
    d.sort();
    println!(
        "{name:<34} n={:<4} p50={:>8.1?} p90={:>8.1?} p99={:>8.1?} max={:>8.1?}",
        d.len(),
        pct(&d, 0.5),
        pct(&d, 0.9),
        pct(&d, 0.99),
        d[d.len() - 1]
    );
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let sequential: usize = tms_tests::env_or("BENCH_SEQUENTIAL", 30);
    let burst: usize = tms_tests::env_or("BENCH_BURST", 100);
    let env = tms_tests::bench_env().await?;
    let wf = env
        .create_workflow("bench-diamond", tms_tests::diamond())
        .await?;

    // Warm-up run (connections, page cache).
    let id = env.trigger(&wf).await?;
    env.wait_run(&id, Duration::from_secs(60)).await?;

    let mut total = Vec::new();
    let mut pickup = Vec::new();
    let mut trigger_rtt = Vec::new();
    for _ in 0..sequential {
        let t0 = Instant::now();
        let id = env.trigger(&wf).await?;
        trigger_rtt.push(t0.elapsed());
        let run = env.wait_run(&id, Duration::from_secs(60)).await?;
        total.push(t0.elapsed());
        anyhow::ensure!(run["status"] == "SUCCEEDED", "bench run failed: {run}");
        let created = chrono_ms(run["createdAt"].as_str().unwrap_or_default());
        let started = chrono_ms(run["startedAt"].as_str().unwrap_or_default());
        pickup.push(Duration::from_micros(
            ((started - created) * 1000.0).max(0.0) as u64,
        ));
    }
    println!("== TMS spine benchmark (local executor, 1 api, 1 worker, concurrency 8) ==");
    summary("triggerRun round trip", trigger_rtt);
    summary("queued -> running (pick-up)", pickup);
    summary("4-step diamond trigger -> finish", total);

    let t0 = Instant::now();
    let mut ids = Vec::new();
    for _ in 0..burst {
        ids.push(env.trigger(&wf).await?);
    }
    let enqueue = t0.elapsed();
    for id in &ids {
        env.wait_run(id, Duration::from_secs(300)).await?;
    }
    let all = t0.elapsed();
    println!(
        "burst of {burst} runs: enqueued in {enqueue:.1?} ({:.0} triggers/s), all finished in {all:.1?} ({:.1} runs/s, {:.1} steps/s)",
        burst as f64 / enqueue.as_secs_f64(),
        burst as f64 / all.as_secs_f64(),
        4.0 * burst as f64 / all.as_secs_f64()
    );
    Ok(())
}

/// Milliseconds since the epoch of an RFC 3339 timestamp (just enough parsing for the bench).
fn chrono_ms(ts: &str) -> f64 {
    // 2026-11-26T11:00:09.959236+00:00
    let time = ts.get(11..).unwrap_or_default();
    let (hms, _) = time.split_once('+').unwrap_or((time, ""));
    let mut parts = hms.split(':');
    let h: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let m: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    let s: f64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0.0);
    ((h * 60.0 + m) * 60.0 + s) * 1000.0
}
