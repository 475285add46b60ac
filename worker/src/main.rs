//! `tms-worker`: consumes run jobs from Redis (apalis) and executes them.

mod cancel;
mod config;
mod control;
mod executor;
mod http;
mod logs;
mod outputs;
mod renewal;
mod runner;
mod step;
mod sweeper;
mod wake;
mod workdirs;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use clap::Parser;
use tms_core::bus::{EventBus, lazy_connection};
use tms_core::db::Db;
use tms_core::monitoring::MonitoringService;
use tms_core::queue::relay::Relay;
use tms_core::queue::{RunJob, storage, wake_channel};
use tms_core::runs::eta::Estimator;
use tms_core::runs::service::RunService;
use tms_core::schedules::Scheduler;
use tokio_util::sync::CancellationToken;
use tracing::Instrument;

use crate::config::{ExecutorKind, WorkerConfig};
use crate::executor::SharedExecutor;
use crate::executor::dagger::{DaggerExecutor, EngineSource};
use crate::executor::local::LocalExecutor;
use crate::runner::Runner;

// mimalloc instead of glibc malloc, as in tms-api (see api/src/main.rs, where it was measured;
// the worker's own throughput was not measured with it).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs a worker drives at once per step slot: runs mostly wait on their steps.
const RUNS_PER_SLOT: usize = 4;

async fn wait_for_redis(bus: &EventBus, shutdown: &CancellationToken) {
    let mut delay = Duration::from_millis(200);
    loop {
        if bus.ping().await.is_ok() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = shutdown.cancelled() => return,
        }
        delay = (delay * 2).min(Duration::from_secs(2));
    }
}

/// Where a Dagger engine is configured, if anywhere: `DAGGER_SESSION_PORT` + `DAGGER_SESSION_TOKEN`,
/// `_EXPERIMENTAL_DAGGER_CLI_BIN`, or `dagger` on `PATH`. A half-set or malformed configuration
/// stops start-up rather than silently running steps on the host.
fn dagger_reachable() -> anyhow::Result<Option<EngineSource>> {
    EngineSource::from_env().map_err(|e| anyhow::anyhow!("Dagger engine configuration: {e}"))
}

/// `local`: host processes. `dagger`: the engine must answer now, or start-up fails. `auto`:
/// Dagger whenever an engine is configured, even if it does not answer yet (steps then wait for
/// it and `/readyz` says not ready: a deployment that configured an engine must never fall back
/// to running images' commands on the host); local processes, loudly, when none is.
/// The local executor, its spawn helper started now: started at the first step instead, its
/// start (an exec and a readiness wait) would hold up a runtime thread and that step. Called
/// on the main thread (`block_on` polls `run` there), which lives as long as the process: the
/// helper's parent-death signal fires when the *thread* that started it ends, so it must not
/// be started from a blocking-pool thread, which tokio ends when idle.
fn local_executor() -> SharedExecutor {
    executor::local::start_helper();
    Arc::new(LocalExecutor)
}

async fn choose_executor(kind: ExecutorKind) -> anyhow::Result<SharedExecutor> {
    const HOW: &str = "set DAGGER_SESSION_PORT and DAGGER_SESSION_TOKEN (e.g. start the worker with `dagger run tms-worker`), set _EXPERIMENTAL_DAGGER_CLI_BIN to a dagger CLI, or put `dagger` on PATH; or choose TMS_EXECUTOR=local";
    match kind {
        ExecutorKind::Local => Ok(local_executor()),
        ExecutorKind::Dagger => {
            let Some(source) = dagger_reachable()? else {
                anyhow::bail!("TMS_EXECUTOR=dagger but no Dagger engine is configured: {HOW}");
            };
            let dagger = DaggerExecutor::new(source);
            match dagger.connect().await {
                Ok(version) => {
                    tracing::info!(engine = %version, via = %dagger.source().describe(), "steps run on Dagger");
                    Ok(Arc::new(dagger))
                }
                Err(e) => anyhow::bail!(
                    "TMS_EXECUTOR=dagger but no Dagger engine is reachable: {}. Start the engine or fix the configuration: {HOW}",
                    tms_core::error::report(&e)
                ),
            }
        }
        ExecutorKind::Auto => match dagger_reachable()? {
            Some(source) => {
                let dagger = DaggerExecutor::new(source);
                match dagger.connect().await {
                    Ok(version) => {
                        tracing::info!(engine = %version, via = %dagger.source().describe(), "steps run on Dagger")
                    }
                    Err(e) => tracing::error!(
                        error = %tms_core::error::report(&e),
                        "==> DAGGER ENGINE CONFIGURED BUT NOT REACHABLE: steps wait for it (worker not ready until it answers) <=="
                    ),
                }
                Ok(Arc::new(dagger))
            }
            None => {
                tracing::warn!(
                    "==> NO DAGGER ENGINE: steps run as LOCAL HOST PROCESSES; container images are ignored <=="
                );
                Ok(local_executor())
            }
        },
    }
}

/// Awaits one part of the shutdown for at most 10 s (each part's own work is bounded well
/// below that), so the process always exits; a part that overstays is named in the log.
async fn bounded<F: std::future::Future>(what: &str, part: F) {
    if tokio::time::timeout(Duration::from_secs(10), part)
        .await
        .is_err()
    {
        tracing::warn!(
            part = what,
            "shutdown step did not finish in 10s; exiting without it"
        );
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    let rand = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{rand}", std::process::id())
}

/// Cancels `token` on SIGINT or SIGTERM.
fn watch_signals(token: CancellationToken) {
    tokio::spawn(async move {
        let Ok(mut term) =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        else {
            return;
        };
        tokio::select! {
            _ = tokio::signal::ctrl_c() => {}
            _ = term.recv() => {}
        }
        tracing::info!("shutdown requested");
        token.cancel();
    });
}

async fn handle(job: RunJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    // The job left the queue: the reconciler now judges the run by its lease.
    tms_core::queue::picked_up(&runner.redis, &runner.queue, job.run_id).await;
    // The run is driven on its own task so that losing the apalis worker (Redis outage, restart)
    // does not abort it. Errors are logged, not returned: Postgres is the source of truth, and
    // the reconciler re-enqueues any run left unfinished once its lease lapses.
    let runner = runner.0.clone();
    let (run_id, version) = (job.run_id, job.version);
    // The run's span continues the trace of the request that triggered it.
    let span = tracing::info_span!("run", otel.name = "run.execute", %run_id, trace_id = tracing::field::Empty);
    tms_core::telemetry::adopt(&span, &job.trace);
    let outcome =
        tokio::spawn(async move { runner.drive(run_id, version).await }.instrument(span)).await;
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => tracing::error!(%run_id, error = ?e, "run interrupted; it will be resumed"),
        Err(e) => tracing::error!(%run_id, error = %e, "run task failed; it will be resumed"),
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    // The step spawn helper is this binary too, started by the worker itself (before anything
    // else: it is single-threaded and reads no configuration).
    if std::env::args_os().nth(1).as_deref()
        == Some(std::ffi::OsStr::new(executor::local::helper_side::ARG))
    {
        executor::local::helper_side::main();
    }
    if let Err(msg) = tms_core::config::prepare() {
        eprintln!("tms-worker: {msg}");
        std::process::exit(2);
    }
    let cfg = WorkerConfig::parse();
    let _telemetry = tms_core::telemetry::init("tms-worker");
    tms_core::metrics::init();
    let runtime = tokio::runtime::Runtime::new()?;
    let result = runtime.block_on(run(cfg));
    // Blocking calls still in flight (a database or Redis call with its own timeout) must not
    // hold the exit up.
    runtime.shutdown_timeout(Duration::from_secs(5));
    result
}

async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let executor = choose_executor(cfg.executor).await?;
    let name = cfg.name.clone().unwrap_or_else(default_name);
    let concurrency = cfg.concurrency.map(|c| c as usize).unwrap_or_else(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2)
    });
    let work_root = cfg
        .work_dir
        .clone()
        .unwrap_or_else(|| std::env::temp_dir().join("tms-work"));
    std::fs::create_dir_all(&work_root)
        .with_context(|| format!("cannot create {}", work_root.display()))?;

    let db = Db::new(&cfg.common.database_url, cfg.common.db_pool_size)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    db.migrate_with_retry()
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e:?}"))?;
    let redis = lazy_connection(&cfg.common.redis_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = EventBus::new(redis.clone());
    let location = cfg.artifacts.clone().unwrap_or_else(|| {
        tms_core::artifacts::default_location()
            .display()
            .to_string()
    });
    let blobs = tms_core::artifacts::BlobStore::open(&location)?;
    tracing::info!(store = %blobs.describe(), "step outputs are stored in the artifact store");
    let limits = tms_core::artifacts::Limits {
        max_step_bytes: cfg.artifact_max_step_bytes,
        max_run_bytes: cfg.artifact_max_run_bytes,
    };
    let artifacts = tms_core::artifacts::Artifacts::new(db.clone(), blobs.clone(), limits);

    // Workers relay and reconcile too, so runs keep moving while no api instance is up.
    let stop = CancellationToken::new();
    let relay = Relay::new(db.clone(), redis.clone(), &cfg.common.queue)
        .with_reconcile(cfg.common.reconcile());
    let monitoring = MonitoringService::new(db.clone(), bus.clone(), &relay);
    let runs = RunService::new(db.clone(), bus.clone(), relay.clone(), Estimator::new());
    let relay_task = tokio::spawn(relay.run(stop.clone()));
    if cfg.artifact_sweep_seconds > 0 {
        tokio::spawn(sweeper::run(
            db.clone(),
            blobs,
            sweeper::Every {
                interval: Duration::from_secs(cfg.artifact_sweep_seconds),
                retention: Duration::from_secs(cfg.retention_days * 86_400),
                work_root: work_root.clone(),
            },
            stop.clone(),
        ));
    }

    let slots = Arc::new(tokio::sync::Semaphore::new(concurrency));
    let probe = http::Probe {
        db: db.clone(),
        bus: bus.clone(),
        executor: executor.clone(),
        name: name.clone(),
        monitoring,
        slots: slots.clone(),
        total_slots: concurrency,
    };
    // The worker's row in `worker_heartbeats`, for the `workers` query.
    let heartbeat_stop = CancellationToken::new();
    let heartbeat_task = {
        let probe = probe.clone();
        tokio::spawn(tms_core::monitoring::heartbeat::run(
            db.clone(),
            name.clone(),
            concurrency,
            Arc::new(move || probe.busy_slots()),
            heartbeat_stop.clone(),
        ))
    };
    let probe_server = http::server(probe, cfg.listen)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let probe_handle = probe_server.handle();
    tokio::spawn(probe_server);

    let workdirs = Arc::new(
        workdirs::WorkDirs::open(&work_root, 4 * concurrency * RUNS_PER_SLOT)
            .with_context(|| format!("cannot prepare {}", work_root.display()))?,
    );
    let runner = Arc::new(Runner {
        db,
        bus: bus.clone(),
        estimator: tms_core::runs::eta::Estimator::new(),
        executor: executor.clone(),
        artifacts,
        slots,
        work_root: work_root.clone(),
        workdirs,
        worker_name: name.clone(),
        default_timeout: Duration::from_secs(cfg.step_timeout_seconds),
        log_max_bytes: cfg.step_log_max_bytes as usize,
        policy: tms_core::runs::execution::ClaimPolicy {
            lease: Duration::from_secs(cfg.run_lease_seconds),
            max_deliveries: cfg.max_deliveries as i32,
        },
        run_slots: Arc::new(tokio::sync::Semaphore::new(concurrency * RUNS_PER_SLOT)),
        redis: redis.clone(),
        queue: cfg.common.queue.clone(),
        active: Default::default(),
        draining: CancellationToken::new(),
        stopping: CancellationToken::new(),
    });
    cancel::listen(&cfg.common.redis_url, runner.clone(), stop.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;

    tracing::info!(
        worker = %name, queue = %cfg.common.queue, executor = executor.name(), concurrency,
        work_dir = %work_root.display(), listen = %cfg.listen, "tms-worker starting"
    );
    let shutdown = CancellationToken::new();
    watch_signals(shutdown.clone());
    // Draining starts with the signal, alongside the queue consumer's own stop: no new step
    // starts, running ones get the grace to finish, then the rest is handed back.
    let grace = Duration::from_secs(cfg.common.shutdown_grace_seconds);
    let drain_task = {
        let (runner, shutdown) = (runner.clone(), shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            runner.shutdown(grace).await;
        })
    };
    // Workers run the schedule loop too, so schedules fire while no api instance is up; only
    // the lease holder fires, and it hands the lease back as soon as shutdown begins.
    let scheduler_task = cfg.common.scheduler().map(|sc| {
        let scheduler = Scheduler::new(runner.db.clone(), runs, sc, "worker");
        tokio::spawn(scheduler.run(shutdown.clone()))
    });
    let mut generation = 0u32;
    let result = loop {
        // apalis stops a worker for good when its backend fails (e.g. Redis restarts), so the
        // worker is rebuilt under a fresh name: names are leases and the old one may linger.
        let apalis_name = if generation == 0 {
            name.clone()
        } else {
            format!("{name}.{generation}")
        };
        let generation_done = shutdown.child_token();
        let wake = wake::wake_stream(
            &cfg.common.redis_url,
            wake_channel(&cfg.common.queue),
            Duration::from_secs(1),
            generation_done.clone(),
        )
        .map_err(|e| anyhow::anyhow!("{e}"))?;
        let backend = storage(redis.clone(), &cfg.common.queue).poll_with_stream(wake);
        // Runs mostly wait on their steps, so a worker holds more runs than step slots.
        let worker = WorkerBuilder::new(apalis_name)
            .backend(backend)
            .data(runner.clone())
            .concurrency(concurrency * RUNS_PER_SLOT)
            .build(handle);
        let stop = shutdown.clone();
        let consumer = worker.run_until(async move {
            stop.cancelled().await;
            Ok::<(), std::io::Error>(())
        });
        // The consumer waits for its in-flight jobs, which end within the grace; past that
        // (e.g. a fetch stuck on a Redis that went away) it is left behind rather than holding
        // the process up: every run it held is handed back or finished by then.
        let overdue = {
            let shutdown = shutdown.clone();
            async move {
                shutdown.cancelled().await;
                tokio::time::sleep(grace + Duration::from_secs(10)).await;
            }
        };
        let res = tokio::select! {
            res = consumer => res,
            _ = overdue => {
                tracing::warn!("queue consumer did not stop in time; leaving it behind");
                Ok(())
            }
        };
        generation_done.cancel();
        if shutdown.is_cancelled() {
            break res;
        }
        tracing::error!(error = ?res.err(), "queue consumer stopped; reconnecting to Redis");
        wait_for_redis(&bus, &shutdown).await;
        if shutdown.is_cancelled() {
            break Ok(());
        }
        generation += 1;
    };
    tracing::info!("queue consumer stopped");
    if let Some(t) = scheduler_task {
        bounded("scheduler", t).await;
    }
    bounded("drain", drain_task).await;
    heartbeat_stop.cancel();
    bounded("heartbeat", heartbeat_task).await;
    stop.cancel();
    bounded("relay", relay_task).await;
    bounded("probe server", probe_handle.stop(true)).await;
    bounded(
        "spawn helper",
        tokio::task::spawn_blocking(executor::local::stop_helper),
    )
    .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "queue consumer ended with an error");
    }
    tracing::info!(worker = %name, "tms-worker stopped");
    Ok(())
}
