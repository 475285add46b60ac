//! `tms`: a terminal client for TMS. `tms watch <run-id>` follows a run live (see `watch`);
//! `tms import …` imports tasks from a legacy scheduler and manages import batches (see
//! `import` and docs/migration.md).

mod api;
mod import;
mod table;
mod watch;

use std::time::Duration;

use clap::{Parser, Subcommand};

use crate::api::{Api, Failure, exit};

#[derive(Parser)]
#[command(name = "tms", version, about = "TMS command-line client")]
struct Cli {
    /// Base URL of the TMS api.
    #[arg(
        long,
        env = "TMS_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Access or API token (or log in with --email/--password).
    #[arg(long, env = "TMS_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    #[arg(long, env = "TMS_EMAIL", global = true)]
    email: Option<String>,
    #[arg(long, env = "TMS_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Watch a run live until it ends; exits 0 if it succeeded, 1 otherwise.
    #[command(after_help = "Example:\n  tms watch 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --plain")]
    Watch {
        run_id: String,
        /// Plain line-per-event output instead of progress bars (for logs and pipes).
        #[arg(long)]
        plain: bool,
    },
    /// Import tasks from a crontab or a JSON export, and manage import batches.
    Import(import::ImportCmd),
}

/// The api client for the given credentials (logging in with email and password if needed).
async fn connect(cli: &Cli) -> Result<Api, Failure> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| Failure::other("INTERNAL", e.to_string()))?;
    let url = cli.url.trim_end_matches('/').to_string();
    let token = match (&cli.token, &cli.email, &cli.password) {
        (Some(t), _, _) => t.clone(),
        (None, Some(e), Some(p)) => api::login(&http, &url, e, p).await?,
        _ => {
            return Err(Failure::usage(
                "give --token (or TMS_TOKEN), or --email and --password",
            ));
        }
    };
    Ok(Api { http, url, token })
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let api = connect(&cli).await;
    let code = match cli.command {
        Command::Import(cmd) => cmd.run(api).await,
        Command::Watch { run_id, plain } => {
            let result = match api {
                Ok(api) => watch::watch(&api, &run_id, plain).await,
                Err(f) => Err(f.into()),
            };
            match result {
                Ok(true) => exit::OK,
                Ok(false) => 1,
                Err(e) => {
                    eprintln!("Error: {e:#}");
                    1
                }
            }
        }
    };
    std::process::exit(code);
}
