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
    /// Print a generated reference (docs/reference/<which>.md) and exit.
    PrintDocs {
        #[arg(value_enum)]
        which: crate::reference::Doc,
    },
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

    /// Secret (≥ 32 bytes) signing access tokens (HS256; its `kid` is a digest prefix of it).
    /// Generated per process when neither this nor TMS_JWT_KEYS is set, outside production
    /// (tokens then die with the process).
    #[arg(long, env = "TMS_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,

    /// Key ring for rotation: comma-separated secrets (≥ 32 bytes each), newest first, or
    /// `@<path>` of a file with one secret per line. The first key of TMS_JWT_SECRET followed
    /// by these signs; all of them verify tokens naming their `kid`. Rotate by moving the old
    /// secret here and setting a new TMS_JWT_SECRET; drop it after TMS_ACCESS_TOKEN_TTL_SECONDS.
    #[arg(long, env = "TMS_JWT_KEYS", hide_env_values = true)]
    pub jwt_keys: Option<String>,

    /// Access-token lifetime in seconds (default 15 minutes; values under 60 are for tests).
    #[arg(long, env = "TMS_ACCESS_TOKEN_TTL_SECONDS", default_value_t = 900,
          value_parser = clap::value_parser!(i64).range(2..=86_400))]
    pub access_token_ttl_seconds: i64,

    /// A refresh token unused for this many seconds expires (default 14 days).
    #[arg(long, env = "TMS_REFRESH_IDLE_TTL_SECONDS", default_value_t = 14 * 24 * 3600,
          value_parser = clap::value_parser!(i64).range(2..=366 * 24 * 3600))]
    pub refresh_idle_ttl_seconds: i64,

    /// No session outlives this many seconds, however often it is refreshed (default 30 days).
    #[arg(long, env = "TMS_REFRESH_ABSOLUTE_TTL_SECONDS", default_value_t = 30 * 24 * 3600,
          value_parser = clap::value_parser!(i64).range(2..=366 * 24 * 3600))]
    pub refresh_absolute_ttl_seconds: i64,

    /// A rotated refresh token presented again within this many seconds is refused without
    /// revoking its session (two tabs refreshing at once); later, it revokes the whole session.
    #[arg(long, env = "TMS_REFRESH_REUSE_GRACE_SECONDS", default_value_t = 2,
          value_parser = clap::value_parser!(i64).range(0..=60))]
    pub refresh_reuse_grace_seconds: i64,

    /// Failed sign-ins (within 15 minutes) after which an account is locked for 30 s, doubling
    /// with each further failure up to 15 minutes; a client address gets 4× as many.
    #[arg(long, env = "TMS_LOGIN_FAILURE_LIMIT", default_value_t = 5,
          value_parser = clap::value_parser!(i32).range(1..=1000))]
    pub login_failure_limit: i32,

    /// Email of the admin created at start-up when no admin exists.
    #[arg(long, env = "TMS_BOOTSTRAP_ADMIN_EMAIL")]
    pub bootstrap_admin_email: Option<String>,

    /// Password of that admin (≥ 12 characters).
    #[arg(long, env = "TMS_BOOTSTRAP_ADMIN_PASSWORD", hide_env_values = true)]
    pub bootstrap_admin_password: Option<String>,

    /// Browser origins (comma-separated, e.g. `https://console.example.com`) allowed to open a
    /// WebSocket besides the api's own host, and to call `/graphql` and the step-log download
    /// cross-origin (CORS, without credentials: the API takes bearer tokens). Requests without
    /// an `Origin` header (non-browser clients) are always allowed.
    #[arg(long, env = "TMS_ALLOWED_ORIGINS", value_delimiter = ',',
          value_parser = crate::origin::Origin::parse)]
    pub allowed_origins: Vec<crate::origin::Origin>,

    #[command(flatten)]
    pub oidc: OidcArgs,
}

/// Single sign-on (OpenID Connect). Off unless TMS_OIDC_ISSUER is set; then the client id and
/// redirect URL are required too.
#[derive(Debug, Clone, Args)]
pub struct OidcArgs {
    /// OIDC issuer (discovery at `<issuer>/.well-known/openid-configuration`); https, or http on
    /// loopback only.
    #[arg(long, env = "TMS_OIDC_ISSUER", value_parser = tms_core::auth::oidc::parse_issuer)]
    pub oidc_issuer: Option<String>,

    /// Client id registered at the provider.
    #[arg(long, env = "TMS_OIDC_CLIENT_ID")]
    pub oidc_client_id: Option<String>,

    /// Client secret (confidential client, sent with HTTP Basic); omit for a public client.
    #[arg(long, env = "TMS_OIDC_CLIENT_SECRET", hide_env_values = true)]
    pub oidc_client_secret: Option<String>,

    /// This api's `/auth/callback` as registered at the provider, e.g.
    /// `https://tms.example.com/auth/callback`. https makes the login cookie `Secure` and
    /// `__Host-` prefixed.
    #[arg(long, env = "TMS_OIDC_REDIRECT_URL", value_parser = tms_core::auth::oidc::parse_url)]
    pub oidc_redirect_url: Option<tms_core::auth::oidc::url::Url>,

    /// IdP group → TMS role, applied at every SSO login, e.g. `ops=operator,devs=maintainer`.
    #[arg(long, env = "TMS_OIDC_GROUP_ROLES", default_value = "",
          value_parser = tms_core::auth::oidc::parse_group_roles)]
    pub oidc_group_roles: GroupRoles,

    /// Front-end page a browser login lands on, with `?code=<one-time code>` to exchange at
    /// `POST /auth/exchange`. Without it `/auth/callback` always answers JSON.
    #[arg(long, env = "TMS_OIDC_POST_LOGIN_URL", value_parser = tms_core::auth::oidc::parse_url)]
    pub oidc_post_login_url: Option<tms_core::auth::oidc::url::Url>,
}

/// Parsed `TMS_OIDC_GROUP_ROLES`.
pub type GroupRoles = Vec<(String, tms_core::auth::Role)>;

impl OidcArgs {
    /// The settings when SSO is configured, `None` when it is off, an error naming the missing
    /// variable when it is half configured.
    pub fn settings(&self) -> Result<Option<tms_core::auth::oidc::OidcSettings>, String> {
        let Some(issuer) = self.oidc_issuer.clone() else {
            let stray = [
                ("TMS_OIDC_CLIENT_ID", self.oidc_client_id.is_some()),
                ("TMS_OIDC_CLIENT_SECRET", self.oidc_client_secret.is_some()),
                ("TMS_OIDC_REDIRECT_URL", self.oidc_redirect_url.is_some()),
                (
                    "TMS_OIDC_POST_LOGIN_URL",
                    self.oidc_post_login_url.is_some(),
                ),
                ("TMS_OIDC_GROUP_ROLES", !self.oidc_group_roles.is_empty()),
            ];
            return match stray.iter().find(|(_, set)| *set) {
                Some((name, _)) => Err(format!("{name} is set but TMS_OIDC_ISSUER is not")),
                None => Ok(None),
            };
        };
        let client_id = self
            .oidc_client_id
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or("TMS_OIDC_CLIENT_ID is required when TMS_OIDC_ISSUER is set")?;
        let redirect_url = self
            .oidc_redirect_url
            .clone()
            .ok_or("TMS_OIDC_REDIRECT_URL is required when TMS_OIDC_ISSUER is set")?;
        if !redirect_url.path().ends_with("/auth/callback") {
            return Err("TMS_OIDC_REDIRECT_URL must be this api's /auth/callback URL".into());
        }
        Ok(Some(tms_core::auth::oidc::OidcSettings {
            issuer,
            client_id,
            client_secret: self.oidc_client_secret.clone().filter(|s| !s.is_empty()),
            redirect_url,
            group_roles: self.oidc_group_roles.clone(),
            post_login_url: self.oidc_post_login_url.clone(),
        }))
    }
}
