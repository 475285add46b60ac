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

    /// Step timeout when a step sets none.
    #[arg(long, env = "TMS_STEP_TIMEOUT_SECONDS", default_value_t = 3600,
          value_parser = clap::value_parser!(u64).range(1..=604_800))]
    pub step_timeout_seconds: u64,
}
