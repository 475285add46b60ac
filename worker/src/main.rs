//! `tms-worker`: consumes run jobs from Redis (apalis) and executes them.

mod config;
mod executor;
mod http;
mod runner;
mod wake;

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use apalis::prelude::*;
use clap::Parser;
use tms_core::bus::{EventBus, lazy_connection};
use tms_core::db::Db;
use tms_core::queue::relay::Relay;
use tms_core::queue::{RunJob, storage, wake_channel};
use tokio_util::sync::CancellationToken;

use crate::config::{ExecutorKind, WorkerConfig};
use crate::executor::SharedExecutor;
use crate::executor::local::LocalExecutor;
use crate::runner::Runner;

/// How long a run lease lasts without renewal; a killed worker's runs resume after about this.
const RUN_LEASE: Duration = Duration::from_secs(20);

fn dagger_reachable() -> Option<&'static str> {
    if std::env::var_os("DAGGER_SESSION_PORT").is_some() {
        return Some("DAGGER_SESSION_PORT");
    }
    if std::env::var_os("_EXPERIMENTAL_DAGGER_CLI_BIN").is_some() {
        return Some("_EXPERIMENTAL_DAGGER_CLI_BIN");
    }
    None
}

fn choose_executor(kind: ExecutorKind) -> anyhow::Result<SharedExecutor> {
    match kind {
        ExecutorKind::Local => Ok(Arc::new(LocalExecutor)),
        ExecutorKind::Dagger => anyhow::bail!(
            "TMS_EXECUTOR=dagger: the Dagger executor is not available in this build; use `local` or `auto`"
        ),
        ExecutorKind::Auto => {
            if let Some(var) = dagger_reachable() {
                tracing::warn!(found = var, "a Dagger engine is configured but this build has no Dagger executor yet");
            }
            tracing::warn!(
                "==> NO DAGGER ENGINE: steps run as LOCAL HOST PROCESSES; container images are ignored <=="
            );
            Ok(Arc::new(LocalExecutor))
        }
    }
}

fn default_name() -> String {
    let host = std::fs::read_to_string("/etc/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_else(|_| "worker".into());
    let rand = &uuid::Uuid::new_v4().simple().to_string()[..6];
    format!("{host}-{}-{rand}", std::process::id())
}

async fn shutdown_signal() -> std::io::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r,
        _ = term.recv() => Ok(()),
    }
}

async fn handle(job: RunJob, runner: Data<Arc<Runner>>) -> Result<(), BoxDynError> {
    // Errors are logged, not returned: Postgres is the source of truth, and the reconciler
    // re-enqueues any run left unfinished once its lease lapses.
    if let Err(e) = runner.drive(job.run_id).await {
        tracing::error!(run_id = %job.run_id, error = ?e, "run interrupted; it will be resumed");
    }
    Ok(())
}

fn main() -> anyhow::Result<()> {
    let cfg = WorkerConfig::parse();
    if let Err(msg) = tms_core::config::check_env() {
        eprintln!("tms-worker: {msg}");
        std::process::exit(2);
    }
    tms_core::telemetry::init_logging();
    tokio::runtime::Runtime::new()?.block_on(run(cfg))
}

async fn run(cfg: WorkerConfig) -> anyhow::Result<()> {
    let executor = choose_executor(cfg.executor)?;
    let name = cfg.name.clone().unwrap_or_else(default_name);
    let concurrency = cfg
        .concurrency
        .map(|c| c as usize)
        .unwrap_or_else(|| std::thread::available_parallelism().map(|n| n.get()).unwrap_or(2));
    let work_root = cfg.work_dir.clone().unwrap_or_else(|| std::env::temp_dir().join("tms-work"));
    std::fs::create_dir_all(&work_root).with_context(|| format!("cannot create {}", work_root.display()))?;

    let db = Db::new(&cfg.common.database_url, cfg.common.db_pool_size).map_err(|e| anyhow::anyhow!("{e}"))?;
    db.migrate_with_retry().await.map_err(|e| anyhow::anyhow!("migrations failed: {e:?}"))?;
    let redis = lazy_connection(&cfg.common.redis_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = EventBus::new(redis.clone());

    // Workers relay and reconcile too, so runs keep moving while no api instance is up.
    let stop = CancellationToken::new();
    let relay = Relay::new(db.clone(), redis.clone(), &cfg.common.queue);
    let relay_task = tokio::spawn(relay.run(stop.clone()));

    let probe = http::Probe { db: db.clone(), bus: bus.clone(), executor: executor.clone(), name: name.clone() };
    let probe_server = http::server(probe, cfg.listen).with_context(|| format!("cannot listen on {}", cfg.listen))?;
    let probe_handle = probe_server.handle();
    tokio::spawn(probe_server);

    let runner = Arc::new(Runner {
        db,
        bus,
        executor: executor.clone(),
        slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
        work_root: work_root.clone(),
        worker_name: name.clone(),
        default_timeout: Duration::from_secs(cfg.step_timeout_seconds),
        lease: RUN_LEASE,
    });

    tracing::info!(
        worker = %name, queue = %cfg.common.queue, executor = executor.name(), concurrency,
        work_dir = %work_root.display(), listen = %cfg.listen, "tms-worker starting"
    );
    let wake = wake::wake_stream(cfg.common.redis_url.clone(), wake_channel(&cfg.common.queue), Duration::from_secs(1));
    let backend = storage(redis, &cfg.common.queue).poll_with_stream(wake);
    // Runs mostly wait on their steps, so a worker holds more runs than step slots.
    let worker = WorkerBuilder::new(name.clone())
        .backend(backend)
        .data(runner)
        .concurrency(concurrency * 4)
        .build(handle);
    let result = worker.run_until(shutdown_signal()).await;
    stop.cancel();
    let _ = relay_task.await;
    probe_handle.stop(true).await;
    result.map_err(|e| anyhow::anyhow!("worker stopped: {e}"))?;
    tracing::info!(worker = %name, "tms-worker stopped");
    Ok(())
}
