//! The worker binary's configuration (flags or environment; see `tms-worker --help`).

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, ValueEnum};
use tms_core::config::CommonConfig;

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExecutorKind {
    /// Dagger when an engine is reachable, otherwise local processes.
    Auto,
    /// Dagger only; start-up fails without an engine.
    Dagger,
    /// Host processes (the image is ignored).
    Local,
}

#[derive(Debug, Clone, Parser)]
#[command(
    name = "tms-worker",
    version,
    about = "TMS worker: executes queued runs"
)]
pub struct WorkerConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address of the worker's /metrics, /healthz and /readyz.
    #[arg(long, env = "TMS_WORKER_LISTEN", default_value = "127.0.0.1:9091")]
    pub listen: SocketAddr,

    /// Steps this worker runs at once (default: number of cores).
    #[arg(long, env = "TMS_WORKER_CONCURRENCY", value_parser = clap::value_parser!(u32).range(1..=1024))]
    pub concurrency: Option<u32>,

    /// Unique name of this worker process (default: host-pid-random).
    #[arg(long, env = "TMS_WORKER_NAME")]
    pub name: Option<String>,

    /// Which executor runs steps.
    #[arg(long, env = "TMS_EXECUTOR", value_enum, default_value_t = ExecutorKind::Auto)]
    pub executor: ExecutorKind,

    /// Where the local executor keeps step directories (default: <tmp>/tms-work).
    #[arg(long, env = "TMS_WORK_DIR")]
    pub work_dir: Option<PathBuf>,

    /// Seconds a run lease lasts without renewal: after a worker dies, its runs resume elsewhere
    /// about this long later.
    #[arg(long, env = "TMS_RUN_LEASE_SECONDS", default_value_t = 20,
          value_parser = clap::value_parser!(u64).range(3..=600))]
    pub run_lease_seconds: u64,

    /// A run claimed this many times without ending is dead-lettered (failed, with
    /// `Run.deadLetteredAt` set) instead of being retried forever: its job keeps failing to start.
    #[arg(long, env = "TMS_MAX_DELIVERIES", default_value_t = 10,
          value_parser = clap::value_parser!(u32).range(1..=1000))]
    pub max_deliveries: u32,

    /// Most output kept per step attempt as its full log (default 10 MiB); beyond it a marker
    /// line says the rest was not stored (the last lines are still kept as `logTail`).
    #[arg(long, env = "TMS_STEP_LOG_MAX_BYTES", default_value_t = 10 << 20,
          value_parser = clap::value_parser!(u64).range(1024..=(1 << 30)))]
    pub step_log_max_bytes: u64,

    /// Where step outputs are stored: a directory, `file:///dir`, or `s3://bucket/prefix`
    /// (credentials, region and endpoint from the standard AWS_* variables). Every worker of a
    /// deployment must use the same store. Default: $TMS_DATA_DIR/artifacts, else
    /// <tmp>/tms-artifacts.
    #[arg(long, env = "TMS_ARTIFACTS")]
    pub artifacts: Option<String>,

    /// Most bytes one step may store in /out (default 1 GiB).
    #[arg(long, env = "TMS_ARTIFACT_MAX_STEP_BYTES", default_value_t = 1 << 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub artifact_max_step_bytes: u64,

    /// Most bytes all steps of one run may store (default 10 GiB).
    #[arg(long, env = "TMS_ARTIFACT_MAX_RUN_BYTES", default_value_t = 10 << 30,
          value_parser = clap::value_parser!(u64).range(1..))]
    pub artifact_max_run_bytes: u64,

    /// Days a finished run keeps its events, stored outputs and step directories (the run and
    /// its tasks stay; cache entries keep their outputs until they expire).
    #[arg(long, env = "TMS_RETENTION_DAYS", default_value_t = 30,
          value_parser = clap::value_parser!(u64).range(1..=3650))]
    pub retention_days: u64,

    /// Seconds between sweeps of expired outputs (0: never sweep from this worker).
    #[arg(long, env = "TMS_ARTIFACT_SWEEP_SECONDS", default_value_t = 3600)]
    pub artifact_sweep_seconds: u64,

    /// Step timeout when a step sets none.
    #[arg(long, env = "TMS_STEP_TIMEOUT_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub step_timeout_seconds: u64,
}
