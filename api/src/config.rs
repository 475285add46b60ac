//! The api binary's configuration (flags or environment; see `tms-api --help`).

use std::net::SocketAddr;

use clap::{Args, Parser, Subcommand};
use tms_core::config::CommonConfig;

/// Without a subcommand `tms-api` serves the API with the settings below.
#[derive(Debug, Parser)]
#[command(
    name = "tms-api",
    version,
    about = "TMS GraphQL API server",
    after_help = tms_core::config::CONFIG_FILE_HELP,
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
pub struct Cli {
    #[command(flatten)]
    pub serve: Option<ApiConfig>,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Apply database migrations and exit.
    Migrate(MigrateConfig),
    /// Print the GraphQL schema (SDL) and exit.
    PrintSchema,
}

#[derive(Debug, Clone, Args)]
pub struct MigrateConfig {
    #[arg(long, env = "DATABASE_URL", hide_env_values = true)]
    pub database_url: String,
}

#[derive(Debug, Clone, Args)]
pub struct ApiConfig {
    #[command(flatten)]
    pub common: CommonConfig,

    /// Address the API listens on.
    #[arg(long, env = "TMS_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// Secret (≥ 32 bytes) signing access tokens. Generated per process when absent outside
    /// production (tokens then die with the process).
    #[arg(long, env = "TMS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Access-token lifetime in seconds.
    #[arg(long, env = "TMS_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(30..=86_400))]
    pub access_token_ttl_seconds: i64,

    /// Email of the admin created at start-up when no admin exists.
    #[arg(long, env = "TMS_BOOTSTRAP_ADMIN_EMAIL")]
    pub bootstrap_admin_email: Option<String>,

    /// Password of that admin (≥ 12 characters).
    #[arg(long, env = "TMS_BOOTSTRAP_ADMIN_PASSWORD", hide_env_values = true)]
    pub bootstrap_admin_password: Option<String>,

    /// Browser origins (comma-separated, e.g. `https://console.example.com`) allowed to open a
    /// WebSocket besides the api's own host. Upgrades without an `Origin` header (non-browser
    /// clients) are always allowed.
    #[arg(long, env = "TMS_ALLOWED_ORIGINS", value_delimiter = ',',
          value_parser = crate::origin::Origin::parse)]
    pub allowed_origins: Vec<crate::origin::Origin>,
}
