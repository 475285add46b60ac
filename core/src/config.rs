//! Configuration shared by every binary: connection settings read from flags or the environment.

use clap::Args;

/// Every `TMS_*` variable any TMS binary or script reads. Start-up refuses other `TMS_*` names so a
/// typo (`TMS_WORKER_CONCURENCY`) fails loudly instead of being silently ignored.
pub const KNOWN_ENV: &[&str] = &[
    "TMS_DATA_DIR",
    "TMS_PG_PORT",
    "TMS_REDIS_PORT",
    "TMS_LISTEN",
    "TMS_WORKER_LISTEN",
    "TMS_WORKER_CONCURRENCY",
    "TMS_WORKER_NAME",
    "TMS_WORK_DIR",
    "TMS_EXECUTOR",
    "TMS_STEP_TIMEOUT_SECONDS",
    "TMS_ARTIFACTS",
    "TMS_ARTIFACT_MAX_STEP_BYTES",
    "TMS_ARTIFACT_MAX_RUN_BYTES",
    "TMS_RETENTION_DAYS",
    "TMS_ARTIFACT_SWEEP_SECONDS",
    "TMS_RUN_LEASE_SECONDS",
    "TMS_MAX_DELIVERIES",
    "TMS_STEP_LOG_MAX_BYTES",
    "TMS_RECONCILE_SECONDS",
    "TMS_LOST_JOB_SECONDS",
    "TMS_SHUTDOWN_GRACE_SECONDS",
    "TMS_SCHEDULER_ENABLED",
    "TMS_SCHEDULER_POLL_MS",
    "TMS_JWT_SECRET",
    "TMS_ACCESS_TOKEN_TTL_SECONDS",
    "TMS_JWT_KEYS",
    "TMS_REFRESH_IDLE_TTL_SECONDS",
    "TMS_REFRESH_ABSOLUTE_TTL_SECONDS",
    "TMS_REFRESH_REUSE_GRACE_SECONDS",
    "TMS_LOGIN_FAILURE_LIMIT",
    "TMS_BOOTSTRAP_ADMIN_EMAIL",
    "TMS_BOOTSTRAP_ADMIN_PASSWORD",
    "TMS_OIDC_ISSUER",
    "TMS_OIDC_CLIENT_ID",
    "TMS_OIDC_CLIENT_SECRET",
    "TMS_OIDC_REDIRECT_URL",
    "TMS_OIDC_GROUP_ROLES",
    "TMS_OIDC_POST_LOGIN_URL",
    "TMS_PRODUCTION",
    "TMS_ALLOWED_ORIGINS",
    "TMS_QUEUE",
    "TMS_DB_POOL_SIZE",
    "TMS_BUILD_PROFILE",
    "TMS_SETUP_LOG",
    "TMS_URL",
    "TMS_TOKEN",
    "TMS_EMAIL",
    "TMS_PASSWORD",
    "TMS_CONFIG",
];

/// Prefixes of variable families: per-secret values and the test harness's own settings.
const KNOWN_PREFIXES: &[&str] = &["TMS_SECRET_", "TMS_TEST_"];

/// Returns the names of `TMS_*` variables in `vars` that no TMS component understands.
pub fn unknown_env<I: IntoIterator<Item = String>>(vars: I) -> Vec<String> {
    let mut unknown: Vec<String> = vars
        .into_iter()
        .filter(|k| k.starts_with("TMS_"))
        .filter(|k| !KNOWN_ENV.contains(&k.as_str()))
        .filter(|k| !KNOWN_PREFIXES.iter().any(|p| k.starts_with(p)))
        .collect();
    unknown.sort();
    unknown
}

/// Fails with a readable message when the process environment holds unknown `TMS_*` names.
pub fn check_env() -> Result<(), String> {
    let unknown = unknown_env(std::env::vars_os().filter_map(|(k, _)| k.into_string().ok()));
    if unknown.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "unknown configuration variable(s): {} (see --help for the accepted names)",
            unknown.join(", ")
        ))
    }
}

/// Variables outside the `TMS_` namespace a config file may set.
const FILE_EXTRA_KEYS: &[&str] = &[
    "DATABASE_URL",
    "REDIS_URL",
    "RUST_LOG",
    "DAGGER_SESSION_PORT",
    "DAGGER_SESSION_TOKEN",
    "_EXPERIMENTAL_DAGGER_CLI_BIN",
    "_EXPERIMENTAL_DAGGER_RUNNER_HOST",
];

/// Shown under every binary's `--help`.
pub const CONFIG_FILE_HELP: &str = "Settings may also come from a file named by TMS_CONFIG: \
KEY=VALUE lines with the variable names above (# comments, optional quotes). The environment wins \
over the file; unknown or malformed lines stop start-up.";

/// Parses a config file: `KEY=VALUE` lines, blank lines and `#` comments, optional `export `
/// and surrounding quotes. Errors name the line.
pub fn parse_file(text: &str, origin: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((key, value)) = line.split_once('=') else {
            return Err(format!("{origin}:{}: expected KEY=VALUE", i + 1));
        };
        let key = key.trim();
        let known = (key.starts_with("TMS_") && unknown_env([key.to_string()]).is_empty())
            || FILE_EXTRA_KEYS.contains(&key)
            || key.starts_with("OTEL_");
        if !known {
            return Err(format!("{origin}:{}: unknown setting `{key}`", i + 1));
        }
        let value = value.trim();
        let unquoted = ['"', '\'']
            .iter()
            .find_map(|q| value.strip_prefix(*q).and_then(|v| v.strip_suffix(*q)))
            .unwrap_or(value);
        out.push((key.to_string(), unquoted.to_string()));
    }
    Ok(out)
}

/// Start-up configuration step shared by the binaries: applies the `TMS_CONFIG` file (where the
/// environment does not already set a key), then refuses unknown `TMS_*` variables. Must run
/// first in `main`, before any thread exists.
pub fn prepare() -> Result<(), String> {
    if let Some(path) = std::env::var_os("TMS_CONFIG") {
        let origin = path.to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path)
            .map_err(|e| format!("TMS_CONFIG: cannot read {origin}: {e}"))?;
        for (k, v) in parse_file(&text, &origin)? {
            if std::env::var_os(&k).is_none() {
                // SAFETY: called at the top of main, while the process is single-threaded.
                unsafe { std::env::set_var(k, v) };
            }
        }
    }
    check_env()
}

/// Connection settings both the api and the worker need.
#[derive(Debug, Clone, Args)]
pub struct CommonConfig {
    /// Postgres connection URL.
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,

    /// Redis connection URL (queue and event bus).
    #[arg(long, env = "REDIS_URL", hide_env_values = true)]
    pub redis_url: String,

    /// Maximum Postgres connections held by this process.
    #[arg(long, env = "TMS_DB_POOL_SIZE", default_value_t = 10, value_parser = clap::value_parser!(u32).range(1..=500))]
    pub db_pool_size: u32,

    /// Name of the Redis job queue shared by api (producer) and worker (consumer).
    #[arg(long, env = "TMS_QUEUE", default_value = "tms-runs")]
    pub queue: String,

    /// Production mode: no introspection or GraphiQL, explicit secrets required.
    #[arg(long, env = "TMS_PRODUCTION", default_value_t = false, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub production: bool,

    /// Run the schedule loop in this process. Every process may: only the one holding the
    /// scheduler lease fires, another takes over when it stops.
    #[arg(long, env = "TMS_SCHEDULER_ENABLED", default_value_t = true, action = clap::ArgAction::Set,
          value_parser = clap::builder::BoolishValueParser::new())]
    pub scheduler_enabled: bool,

    /// How often the scheduler looks for due ticks, in milliseconds (a tick fires at most this
    /// late while a leader runs).
    #[arg(long, env = "TMS_SCHEDULER_POLL_MS", default_value_t = 250,
          value_parser = clap::value_parser!(u64).range(50..=60_000))]
    pub scheduler_poll_ms: u64,

    /// How often the reconciler looks for runs nobody drives whose job is not on the queue
    /// (worker died, job lost with Redis, Redis came back empty), in seconds.
    #[arg(long, env = "TMS_RECONCILE_SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(u64).range(1..=3600))]
    pub reconcile_seconds: u64,

    /// A run nobody drives is re-enqueued when its job is not on the queue this many seconds
    /// after it was sent (a fresh job may be between the queue and a worker's claim).
    #[arg(long, env = "TMS_LOST_JOB_SECONDS", default_value_t = 5,
          value_parser = clap::value_parser!(u64).range(1..=86_400))]
    pub lost_job_seconds: u64,

    /// On SIGTERM: how long the api drains requests in flight, and how long a worker lets its
    /// running steps finish before stopping them and handing their runs back, in seconds.
    #[arg(long, env = "TMS_SHUTDOWN_GRACE_SECONDS", default_value_t = 25,
          value_parser = clap::value_parser!(u64).range(0..=3600))]
    pub shutdown_grace_seconds: u64,
}

impl CommonConfig {
    /// The reconciler's timing.
    pub fn reconcile(&self) -> crate::queue::relay::Reconcile {
        crate::queue::relay::Reconcile {
            every: std::time::Duration::from_secs(self.reconcile_seconds),
            lost_after: std::time::Duration::from_secs(self.lost_job_seconds),
        }
    }

    /// The scheduler's settings, or `None` when this process runs no scheduler. The lease lasts
    /// at least four polls, so a leader renewing on time never loses it.
    pub fn scheduler(&self) -> Option<crate::schedules::SchedulerConfig> {
        if !self.scheduler_enabled {
            return None;
        }
        let poll = std::time::Duration::from_millis(self.scheduler_poll_ms);
        let base = crate::schedules::SchedulerConfig::default();
        Some(crate::schedules::SchedulerConfig {
            poll,
            lease: base.lease.max(poll * 4),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_files_parse_and_name_bad_lines() {
        let ok = parse_file(
            "# comment\n\nexport TMS_LISTEN=127.0.0.1:9000\nDATABASE_URL=\"postgres://x/y\"\nTMS_SECRET_TOKEN='s3'\n",
            "f",
        )
        .unwrap();
        assert_eq!(
            ok,
            vec![
                ("TMS_LISTEN".into(), "127.0.0.1:9000".into()),
                ("DATABASE_URL".into(), "postgres://x/y".into()),
                ("TMS_SECRET_TOKEN".into(), "s3".into()),
            ]
        );
        assert_eq!(
            parse_file("TMS_LISTEN 1", "f").unwrap_err(),
            "f:1: expected KEY=VALUE"
        );
        assert_eq!(
            parse_file("\nTMS_LISTN=1", "f").unwrap_err(),
            "f:2: unknown setting `TMS_LISTN`"
        );
        assert!(parse_file("HOME=/root", "f").is_err());
    }

    #[test]
    fn unknown_tms_variables_are_reported_and_known_ones_pass() {
        let vars = [
            "TMS_LISTEN",
            "TMS_WORKER_CONCURENCY",
            "TMS_SECRET_DB_PASSWORD",
            "PATH",
            "TMS_TEST_REDIS_URL",
            "TMS_BOGUS",
        ]
        .map(String::from);
        assert_eq!(
            unknown_env(vars),
            vec!["TMS_BOGUS".to_string(), "TMS_WORKER_CONCURENCY".to_string()]
        );
    }
}
