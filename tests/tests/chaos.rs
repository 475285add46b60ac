//! Fault injection end to end (issue 12): two apis and three workers on real Postgres (through
//! a proxy the test controls) and a private Redis, runs triggered continuously while workers,
//! Redis and Postgres fail one after another; afterwards every accepted run succeeded, no
//! finished step ran again, no task has two results, no event seq is missing, and no trigger
//! took longer than a second.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::Result;
use serde_json::{Value, json};
use tms_tests::chaos::checks::{self, Inputs};
use tms_tests::chaos::db::{Effects, Snapshot};
use tms_tests::chaos::faults::{Chaos, FaultKind};
use tms_tests::chaos::load::Load;
use tms_tests::chaos::{self as chaos_suite, excerpt, rows, secs, sql};
use tms_tests::{EnvOptions, PrivateRedis, TestEnv};

/// Triggering tasks, and how often each triggers (2 runs/s in all: a third of the step slots).
const TRIGGERERS: usize = 4;
const TRIGGER_PERIOD: Duration = Duration::from_secs(2);
/// How long the runs accepted may take to end once triggering stopped.
const DRAIN_BOUND: Duration = Duration::from_secs(120);

/// A small DAG a -> (b, c): each step takes half a second, then appends its effect line.
fn steps(effects: &Path) -> Value {
    let run = format!(
        "sleep 0.5; echo \"$TMS_RUN_ID $TMS_STEP $TMS_ATTEMPT\" >> '{}'",
        effects.display()
    );
    json!([
        {"name": "a", "image": "alpine", "run": run},
        {"name": "b", "image": "alpine", "dependsOn": ["a"], "run": run},
        {"name": "c", "image": "alpine", "dependsOn": ["a"], "run": run},
    ])
}

/// Polls `query` (a count) until it is `done`, at most `bound`; returns the last count.
async fn wait_count(db: &str, query: &str, done: fn(i64) -> bool, bound: Duration) -> Result<i64> {
    let deadline = Instant::now() + bound;
    loop {
        let n: i64 = sql(db, query).await?.trim().parse().unwrap_or(-1);
        if done(n) || Instant::now() > deadline {
            return Ok(n);
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn accepted_runs_succeed_once_through_worker_redis_and_postgres_faults() -> Result<()> {
    let t0 = Instant::now();
    let (settings, left_out) = chaos_suite::settings();
    if !left_out.is_empty() {
        eprintln!(
            "chaos: PENDING settings the binaries do not know yet, NOT passed: {left_out:?} \
             (see chaos::PENDING_SETTINGS)"
        );
    }
    let mut redis = PrivateRedis::start()?;
    let mut env = TestEnv::start_with(EnvOptions {
        redis_url: Some(redis.url()),
        api_env: settings.clone(),
        postgres_proxy: true,
        ..EnvOptions::api_only()
    })
    .await?;
    let api2 = env.start_extra_api().await?;
    let effects_path = env.artifacts_dir.with_file_name("effects");
    let wf = env.create_workflow("chaos", steps(&effects_path)).await?;
    let db = env.database_url.clone();
    let ports = vec![env.api_port, api2];
    let apis = vec![
        (env.api_port, "api0".to_string()),
        (api2, "api1".to_string()),
    ];
    let token = env.token.clone().unwrap_or_default();

    let mut chaos = Chaos {
        env: &mut env,
        redis: &mut redis,
        settings,
        faults: Vec::new(),
        failures: Vec::new(),
    };
    for _ in 0..3 {
        chaos.start_worker().await?;
    }
    let load = Load::start(ports, token, wf, TRIGGERERS, TRIGGER_PERIOD);
    // Warm-up: faults start once the system demonstrably works.
    let done = wait_count(
        &db,
        "SELECT count(*) FROM runs WHERE status = 'succeeded'",
        |n| n > 0,
        Duration::from_secs(30),
    )
    .await?;
    if done <= 0 {
        chaos
            .failures
            .push("no run succeeded within 30s of the start, before any fault".into());
    }
    for kind in FaultKind::ALL {
        if let Err(e) = chaos.inject(kind).await {
            chaos
                .failures
                .push(format!("injecting {} failed: {e:#}", kind.name()));
            break;
        }
    }
    let Chaos {
        faults,
        mut failures,
        ..
    } = chaos;
    let triggers = load.stop().await;
    let stopped = Instant::now();
    eprintln!(
        "chaos: triggering stopped after {} ({} triggers); waiting for the runs to end",
        secs(t0.elapsed()),
        triggers.len()
    );
    let open = wait_count(
        &db,
        "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')",
        |n| n == 0,
        DRAIN_BOUND,
    )
    .await?;
    eprintln!(
        "chaos: {open} runs still queued or running {} after triggering stopped",
        secs(stopped.elapsed())
    );
    if open > 0 {
        let open_runs = sql(
            &db,
            "SELECT id, status, coalesce(lease_owner, '-'), deliveries FROM runs \
             WHERE status IN ('queued', 'running') ORDER BY created_at LIMIT 20",
        )
        .await?;
        eprintln!(
            "chaos: open runs (id, status, lease_owner, deliveries): {:?}",
            rows(&open_runs)
        );
    }

    // Processes that died without being told to.
    for p in env
        .api
        .iter_mut()
        .chain(env.extra_apis.iter_mut())
        .chain(env.workers.iter_mut())
        .filter(|p| !p.killed)
    {
        if let Ok(Some(status)) = p.child.try_wait() {
            failures.push(format!(
                "{} pid {} exited on its own with {status}; its log ends:\n    {}",
                p.name,
                p.pid(),
                excerpt(&p.log_text(), "", 20).join("\n    ")
            ));
        }
    }
    let mut logs: Vec<(String, String)> = Vec::new();
    if let Some(p) = &env.api {
        logs.push(("api0".into(), p.log_text()));
    }
    for (i, p) in env.extra_apis.iter().enumerate() {
        logs.push((format!("api{}", i + 1), p.log_text()));
    }
    for (i, p) in env.workers.iter().enumerate() {
        logs.push((format!("worker{i}"), p.log_text()));
    }
    if let Some(p) = redis.process() {
        logs.push(("redis".into(), p.log_text()));
    }

    let snapshot = Snapshot::read(&db).await?;
    let effects = Effects::read(&effects_path)?;
    let verdict = checks::check(&Inputs {
        triggers: &triggers,
        snapshot: &snapshot,
        effects: &effects,
        logs: &logs,
        apis: &apis,
        faults: &faults,
    });
    for f in &verdict.figures {
        eprintln!("chaos: {f}");
    }
    eprintln!(
        "chaos: effect lines {}, whole test {}",
        effects.lines,
        secs(t0.elapsed())
    );
    failures.extend(verdict.failures);
    assert!(
        failures.is_empty(),
        "{} chaos check(s) failed:\n\n{}",
        failures.len(),
        failures.join("\n\n")
    );
    Ok(())
}
