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
    "TMS_RUN_LEASE_SECONDS",
    "TMS_JWT_SECRET",
    "TMS_ACCESS_TOKEN_TTL_SECONDS",
    "TMS_BOOTSTRAP_ADMIN_EMAIL",
    "TMS_BOOTSTRAP_ADMIN_PASSWORD",
    "TMS_OIDC_ISSUER",
    "TMS_OIDC_CLIENT_ID",
    "TMS_OIDC_CLIENT_SECRET",
    "TMS_OIDC_REDIRECT_URL",
    "TMS_OIDC_GROUP_ROLES",
    "TMS_PRODUCTION",
    "TMS_QUEUE",
    "TMS_DB_POOL_SIZE",
    "TMS_BUILD_PROFILE",
    "TMS_SETUP_LOG",
    "TMS_URL",
    "TMS_TOKEN",
    "TMS_EMAIL",
    "TMS_PASSWORD",
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
}

#[cfg(test)]
mod tests {
    use super::*;

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
