//! Spine benchmarks through the real api and worker binaries: trigger (GraphQL) → queue →
//! worker → finished in Postgres. One program, three scenarios (first argument):
//!
//! - `dag` (also `spine`): a 4-step diamond trigger → finished, one run at a time
//!   (BENCH_SEQUENTIAL=30), then a burst of BENCH_BURST=1000 diamond runs triggered by
//!   BENCH_CLIENTS=16 clients: runs/s and steps/s until the last one finished.
//! - `e2e`: BENCH_RUNS=2000 one-step runs (`command: ["true"]`, no shell) triggered through
//!   GraphQL by BENCH_CLIENTS=16 clients, until every one has SUCCEEDED in Postgres: runs/s,
//!   trigger → finished p50/p99, and a check that each run has its events.
//! - `trigger`: BENCH_RUNS=2000 `triggerRun`s at BENCH_CLIENTS=16 concurrent clients against
//!   the api alone (no worker, so this is the enqueue path only, as BullMQ's enqueue figure):
//!   triggers/s and latency.
//!
//! Latencies end at the run's `finished_at` as Postgres recorded it (same host clock), so they
//! do not depend on how often the program polls. Every wait is capped by BENCH_TIMEOUT
//! seconds (600). Run with `scripts/bench dag|e2e|trigger`.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, Result, bail, ensure};
use serde_json::json;
use tms_tests::TestEnv;
use tms_tests::bench::{Pg, Report, epoch_secs, sorted_ms};

const FINAL: &str = "('succeeded','failed','cancelled','timed_out')";

/// One trigger: the run's id, when the request was sent, and how long it took.
struct Sent {
    id: String,
    at: SystemTime,
    rtt: Duration,
}

/// Triggers `n` runs of `wf` from `clients` concurrent clients (each one request at a time).
async fn trigger_pool(env: &Arc<TestEnv>, wf: &str, n: usize, clients: usize) -> Result<Vec<Sent>> {
    let next = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for _ in 0..clients {
        let (env, next, wf) = (env.clone(), next.clone(), wf.to_string());
        tasks.push(tokio::spawn(async move {
            let mut out = Vec::new();
            while next.fetch_add(1, Ordering::Relaxed) < n {
                let at = SystemTime::now();
                let t0 = Instant::now();
                let id = env.trigger(&wf).await?;
                out.push(Sent {
                    id,
                    at,
                    rtt: t0.elapsed(),
                });
            }
            Ok::<_, anyhow::Error>(out)
        }));
    }
    let mut all = Vec::with_capacity(n);
    for t in tasks {
        all.extend(t.await??);
    }
    Ok(all)
}

/// Waits until `n` runs of `wf` have finished (polling Postgres every `every`); returns how
/// many of them did not succeed.
async fn wait_finished(pg: &mut Pg, wf: &str, n: usize, every: Duration) -> Result<i64> {
    let timeout: u64 = tms_tests::env_or("BENCH_TIMEOUT", 600);
    let deadline = Instant::now() + Duration::from_secs(timeout);
    let sql =
        format!("SELECT count(*) AS n FROM runs WHERE workflow_id = '{wf}' AND status IN {FINAL}");
    loop {
        let done = pg.count(&sql)?;
        if done as usize >= n {
            break;
        }
        if Instant::now() > deadline {
            bail!("only {done} of {n} runs finished after {timeout} s");
        }
        tokio::time::sleep(every).await;
    }
    pg.count(&format!(
        "SELECT count(*) AS n FROM runs WHERE workflow_id = '{wf}' AND status <> 'succeeded'"
    ))
}

/// `finished_at` (epoch seconds) of every finished run of `wf`, by id.
fn finished_at(pg: &mut Pg, wf: &str) -> Result<HashMap<String, f64>> {
    Ok(pg
        .pairs(&format!(
            "SELECT id::text AS k, extract(epoch FROM finished_at)::float8 AS v FROM runs \
             WHERE workflow_id = '{wf}' AND finished_at IS NOT NULL"
        ))?
        .into_iter()
        .collect())
}

/// Trigger → finished of each sent run, in ms, sorted; and the last finish (epoch seconds).
fn to_finish(sent: &[Sent], finished: &HashMap<String, f64>) -> (Vec<f64>, f64) {
    let mut lat: Vec<f64> = sent
        .iter()
        .filter_map(|s| finished.get(&s.id).map(|f| (f - epoch_secs(s.at)) * 1000.0))
        .collect();
    lat.sort_by(f64::total_cmp);
    let last = sent
        .iter()
        .filter_map(|s| finished.get(&s.id))
        .fold(0.0f64, |a, b| a.max(*b));
    (lat, last)
}

fn one_step() -> serde_json::Value {
    json!([{"name": "t", "image": "alpine", "command": ["true"]}])
}

async fn env_and_pg(worker: bool) -> Result<(Arc<TestEnv>, Pg)> {
    let env = if worker {
        tms_tests::bench_env().await?
    } else {
        tms_tests::bench_env_api_only().await?
    };
    let pg = Pg::connect(&env.database_url)?;
    Ok((Arc::new(env), pg))
}

async fn e2e(report: &mut Report) -> Result<()> {
    let n: usize = tms_tests::env_or("BENCH_RUNS", 2000);
    let clients: usize = tms_tests::env_or("BENCH_CLIENTS", 16);
    report.setting("runs", n);
    report.setting("clients", clients);
    let (env, mut pg) = env_and_pg(true).await?;
    // Warm-up on its own workflow: connections, page cache, the worker's first jobs.
    let warm = env.create_workflow("bench-e2e-warm", one_step()).await?;
    trigger_pool(&env, &warm, 50, clients).await?;
    wait_finished(&mut pg, &warm, 50, Duration::from_millis(50)).await?;

    let wf = env.create_workflow("bench-e2e", one_step()).await?;
    let t0 = SystemTime::now();
    let sent = trigger_pool(&env, &wf, n, clients).await?;
    let enqueued = t0.elapsed()?;
    let failed = wait_finished(&mut pg, &wf, n, Duration::from_millis(100)).await?;
    let finished = finished_at(&mut pg, &wf)?;
    let (lat, last) = to_finish(&sent, &finished);
    let secs = last - epoch_secs(t0);
    let without_events = pg.count(&format!(
        "SELECT count(*) AS n FROM runs r WHERE r.workflow_id = '{wf}' AND NOT EXISTS \
         (SELECT 1 FROM run_events e WHERE e.run_id = r.id AND e.kind = 'run' AND e.status = 'succeeded')"
    ))?;
    let events = pg.count(&format!(
        "SELECT count(*) AS n FROM run_events WHERE workflow_id = '{wf}'"
    ))?;
    report.figure(
        "e2e_runs_per_s",
        n as f64 / secs,
        "runs/s",
        &format!("{n} one-step `true` runs, {clients} clients, first trigger -> last finished_at {secs:.2} s"),
    );
    report.latency("e2e_trigger_to_finished", &lat);
    report.figure(
        "e2e_triggers_per_s",
        n as f64 / enqueued.as_secs_f64(),
        "triggers/s",
        "while the worker ran them",
    );
    report.latency(
        "e2e_trigger_rtt",
        &sorted_ms(&sent.iter().map(|s| s.rtt).collect::<Vec<_>>()),
    );
    report.figure("e2e_runs_not_succeeded", failed as f64, "runs", "");
    report.figure(
        "e2e_runs_without_final_event",
        without_events as f64,
        "runs",
        &format!("{events} run events stored"),
    );
    ensure!(failed == 0, "{failed} runs did not succeed");
    ensure!(
        without_events == 0,
        "{without_events} runs have no final event"
    );
    Ok(())
}

async fn trigger(report: &mut Report) -> Result<()> {
    let n: usize = tms_tests::env_or("BENCH_RUNS", 2000);
    let clients: usize = tms_tests::env_or("BENCH_CLIENTS", 16);
    report.setting("triggers", n);
    report.setting("clients", clients);
    report.setting("worker", false);
    let (env, mut pg) = env_and_pg(false).await?;
    let wf = env.create_workflow("bench-trigger", one_step()).await?;
    trigger_pool(&env, &wf, 100.min(n), clients).await?;
    let t0 = Instant::now();
    let sent = trigger_pool(&env, &wf, n, clients).await?;
    let secs = t0.elapsed().as_secs_f64();
    report.figure(
        "trigger_per_s",
        n as f64 / secs,
        "triggers/s",
        &format!("{n} triggerRun at {clients} concurrent clients, api alone"),
    );
    report.latency(
        "trigger",
        &sorted_ms(&sent.iter().map(|s| s.rtt).collect::<Vec<_>>()),
    );
    let stored = pg.count(&format!(
        "SELECT count(*) AS n FROM runs WHERE workflow_id = '{wf}'"
    ))?;
    ensure!(
        stored as usize == n + 100.min(n),
        "{stored} runs stored, expected {}",
        n + 100.min(n)
    );
    Ok(())
}

async fn dag(report: &mut Report) -> Result<()> {
    let sequential: usize = tms_tests::env_or("BENCH_SEQUENTIAL", 30);
    let burst: usize = tms_tests::env_or("BENCH_BURST", 1000);
    let clients: usize = tms_tests::env_or("BENCH_CLIENTS", 16);
    report.setting("sequential", sequential);
    report.setting("burst", burst);
    report.setting("clients", clients);
    let (env, mut pg) = env_and_pg(true).await?;
    let wf = env
        .create_workflow("bench-diamond", tms_tests::diamond())
        .await?;
    // Warm-up run (connections, page cache).
    let id = env.trigger(&wf).await?;
    env.wait_run(&id, Duration::from_secs(60)).await?;

    let mut total = Vec::new();
    let mut trigger_rtt = Vec::new();
    for _ in 0..sequential {
        let at = SystemTime::now();
        let t0 = Instant::now();
        let id = env.trigger(&wf).await?;
        trigger_rtt.push(t0.elapsed());
        let done =
            format!("SELECT count(*) AS n FROM runs WHERE id = '{id}' AND status IN {FINAL}");
        let deadline = Instant::now() + Duration::from_secs(60);
        while pg.count(&done)? == 0 {
            ensure!(
                Instant::now() < deadline,
                "run {id} not finished after 60 s"
            );
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        let run = env.run(&id).await?;
        ensure!(run["status"] == "SUCCEEDED", "bench run failed: {run}");
        let f = finished_at(&mut pg, &wf)?;
        let end = f.get(&id).context("finished_at")?;
        total.push((end - epoch_secs(at)) * 1000.0);
    }
    total.sort_by(f64::total_cmp);
    // Where the time goes: each event's median offset from its run's creation (the profile
    // behind the diamond's latency, see docs/performance.md).
    for (event, ms) in pg.pairs(&format!(
        "SELECT concat_ws(' ', e.kind::text, e.step, e.status::text) AS k, \
         (percentile_cont(0.5) WITHIN GROUP (ORDER BY extract(epoch FROM e.at - r.created_at)) * 1000)::float8 AS v \
         FROM run_events e JOIN runs r ON r.id = e.run_id WHERE r.workflow_id = '{wf}' \
         GROUP BY 1 ORDER BY 2"
    ))? {
        println!("dag timeline (median, from trigger): +{ms:7.2} ms  {event}");
    }
    report.latency("dag_trigger_rtt", &sorted_ms(&trigger_rtt));
    report.latency("dag_diamond_trigger_to_finished", &total);

    let burst_wf = env
        .create_workflow("bench-diamond-burst", tms_tests::diamond())
        .await?;
    let t0 = SystemTime::now();
    let sent = trigger_pool(&env, &burst_wf, burst, clients).await?;
    let enqueued = t0.elapsed()?;
    let failed = wait_finished(&mut pg, &burst_wf, burst, Duration::from_millis(100)).await?;
    let (lat, last) = to_finish(&sent, &finished_at(&mut pg, &burst_wf)?);
    let secs = last - epoch_secs(t0);
    report.figure(
        "dag_burst_steps_per_s",
        4.0 * burst as f64 / secs,
        "steps/s",
        &format!("burst of {burst} 4-step runs, {clients} clients, all finished in {secs:.2} s"),
    );
    report.figure("dag_burst_runs_per_s", burst as f64 / secs, "runs/s", "");
    report.figure(
        "dag_burst_triggers_per_s",
        burst as f64 / enqueued.as_secs_f64(),
        "triggers/s",
        "",
    );
    report.latency("dag_burst_trigger_to_finished", &lat);
    report.figure("dag_burst_runs_not_succeeded", failed as f64, "runs", "");
    ensure!(failed == 0, "{failed} burst runs did not succeed");
    Ok(())
}

#[tokio::main]
async fn main() -> Result<()> {
    let scenario = std::env::args().nth(1).unwrap_or_else(|| "dag".into());
    let name = if scenario == "spine" {
        "dag"
    } else {
        scenario.as_str()
    };
    let mut report = Report::new(name);
    let result = match name {
        "dag" => dag(&mut report).await,
        "e2e" => e2e(&mut report).await,
        "trigger" => trigger(&mut report).await,
        other => bail!("unknown scenario {other}: dag, e2e or trigger"),
    };
    // The figures measured so far are written even when a check failed.
    report.write()?;
    result
}
