//! Logging set-up shared by the binaries (OpenTelemetry export is added here later).

use std::io::IsTerminal;

use tracing_subscriber::EnvFilter;

/// Installs a `tracing` subscriber honouring `RUST_LOG` (default `info`).
pub fn init_logging() {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(true)
        .with_ansi(std::io::stdout().is_terminal())
        .try_init();
}
