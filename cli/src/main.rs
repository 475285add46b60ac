//! `tms`: the terminal client for TMS. Sessions (`login`, `logout`), workflow files
//! (`apply`), workflows and runs (`workflows`, `run`, `runs`, `logs`, `cancel`, `retry`,
//! `watch`), API tokens (`tokens`), legacy imports (`import`, docs/migration.md) and shell
//! completions. Every command is documented with examples in docs/cli.md.

mod api;
mod apply;
mod auth;
mod import;
mod logs;
mod loopback;
mod runs;
mod session;
mod sso;
mod table;
mod tokens;
mod watch;
mod wfile;
mod workflows;

use std::time::Duration;

use clap::{CommandFactory, Parser, Subcommand};

use crate::api::{Api, Failure, exit};
use crate::import::exit_codes;

const MAIN_HELP: &str = concat!(
    "Example (a first session):
  tms login --email admin@localhost        # prompts for the password
  tms apply -f examples/                   # create or update workflows from files
  tms run build-test-package --watch       # start a run and follow it
  tms logs <RUN_ID> test                   # the output of one step

Configuration: TMS_URL (default http://127.0.0.1:8080); the session saved by `tms login` in
~/.config/tms/token (or $XDG_CONFIG_HOME/tms/token), mode 0600; TMS_TOKEN (an access or
API token) overrides it. See docs/cli.md.

",
    exit_codes!()
);

#[derive(Parser)]
#[command(name = "tms", version, about = "TMS command-line client", after_help = MAIN_HELP)]
struct Cli {
    /// Base URL of the TMS api.
    #[arg(
        long,
        env = "TMS_URL",
        default_value = "http://127.0.0.1:8080",
        global = true
    )]
    url: String,
    /// Access or API token; overrides the session saved by `tms login`.
    #[arg(long, env = "TMS_TOKEN", hide_env_values = true, global = true)]
    token: Option<String>,
    /// Email to log in with (with --password, for one command without a saved session).
    #[arg(long, env = "TMS_EMAIL", global = true)]
    email: Option<String>,
    #[arg(long, env = "TMS_PASSWORD", hide_env_values = true, global = true)]
    password: Option<String>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Log in with an email and password, or in the browser (--sso); the session is saved.
    #[command(after_help = auth::LOGIN_HELP)]
    Login(auth::LoginArgs),
    /// End the saved session (at the api too) and delete the token file.
    #[command(after_help = auth::LOGOUT_HELP)]
    Logout,
    /// Create or update workflows from YAML or JSON files (idempotent; shows what changed).
    #[command(after_help = apply::APPLY_HELP)]
    Apply(apply::ApplyArgs),
    /// List workflows.
    #[command(after_help = workflows::LIST_HELP)]
    Workflows(workflows::ListArgs),
    /// Start a run of a workflow (by name or id), optionally following it.
    #[command(after_help = runs::RUN_HELP)]
    Run(runs::RunArgs),
    /// List runs, newest first.
    #[command(after_help = runs::RUNS_HELP)]
    Runs(runs::RunsArgs),
    /// Print a run's step logs, or follow one until the step ends.
    #[command(after_help = logs::LOGS_HELP)]
    Logs(logs::LogsArgs),
    /// Cancel a run: running steps stop within a second, pending ones are cancelled.
    #[command(after_help = runs::CANCEL_HELP)]
    Cancel(runs::CancelArgs),
    /// Retry a finished run: all of it as a new run, or (--from-failed) only what did not succeed.
    #[command(after_help = runs::RETRY_HELP)]
    Retry(runs::RetryArgs),
    /// Watch a run live until it ends; exits 0 if it succeeded, 1 otherwise.
    #[command(after_help = "Example:\n  tms watch 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --plain")]
    Watch {
        run_id: String,
        /// Plain line-per-event output instead of progress bars (for logs and pipes).
        #[arg(long)]
        plain: bool,
    },
    /// Create, list and revoke API tokens for service accounts (admins).
    #[command(subcommand, after_help = tokens::TOKENS_HELP)]
    Tokens(tokens::TokensCmd),
    /// Import tasks from a crontab or a JSON export, and manage import batches.
    Import(import::ImportCmd),
    /// Print a shell completion script.
    #[command(
        after_help = "Example:\n  tms completions bash > ~/.local/share/bash-completion/completions/tms\n  tms completions zsh > \"${fpath[1]}/_tms\"\n  tms completions fish > ~/.config/fish/completions/tms.fish"
    )]
    Completions { shell: clap_complete::Shell },
}

/// The api client: TMS_TOKEN/--token, else --email/--password, else the saved session.
async fn connect(cli: &Cli) -> Result<Api, Failure> {
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(600))
        .build()
        .map_err(|e| Failure::other("INTERNAL", e.to_string()))?;
    let url = cli.url.trim_end_matches('/').to_string();
    let token = match (&cli.token, &cli.email, &cli.password) {
        (Some(t), _, _) => t.clone(),
        (None, Some(e), Some(p)) => api::login(&http, &url, e, p).await?,
        _ => match session::Saved::load()? {
            Some(saved) => saved.access_token(&http, &url).await?,
            None => {
                return Err(Failure {
                    exit: exit::AUTH,
                    ..Failure::other(
                        "UNAUTHENTICATED",
                        "not logged in: run `tms login` (or set TMS_TOKEN)",
                    )
                });
            }
        },
    };
    Ok(Api { http, url, token })
}

/// Runs a command that needs the api; prints a failure and maps it to its exit code.
async fn with_api<F, Fut>(cli: &Cli, output: import::Output, f: F) -> i32
where
    F: FnOnce(Api) -> Fut,
    Fut: Future<Output = Result<i32, Failure>>,
{
    let result = match connect(cli).await {
        Ok(api) => f(api).await,
        Err(e) => Err(e),
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            import::report_failure(&e, output, &[]);
            e.exit
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    let table = import::Output::Table;
    let code = match &cli.command {
        Command::Login(a) => auth::login(&cli.url, cli.email.clone(), a).await,
        Command::Logout => auth::logout(&cli.url).await,
        Command::Apply(a) => with_api(&cli, a.out.output, |api| apply::run(api, a)).await,
        Command::Workflows(a) => with_api(&cli, a.out.output, |api| workflows::list(api, a)).await,
        Command::Run(a) => with_api(&cli, a.out.output, |api| runs::run(api, a)).await,
        Command::Runs(a) => with_api(&cli, a.out.output, |api| runs::list(api, a)).await,
        Command::Logs(a) => with_api(&cli, a.out.output, |api| logs::run(api, a)).await,
        Command::Cancel(a) => with_api(&cli, a.out.output, |api| runs::cancel(api, a)).await,
        Command::Retry(a) => with_api(&cli, a.out.output, |api| runs::retry(api, a)).await,
        Command::Tokens(c) => with_api(&cli, c.output(), |api| tokens::run(api, c)).await,
        Command::Completions { shell } => {
            let mut cmd = Cli::command();
            clap_complete::generate(*shell, &mut cmd, "tms", &mut std::io::stdout());
            exit::OK
        }
        Command::Watch { run_id, plain } => {
            with_api(&cli, table, |api| async move {
                match watch::watch(&api, run_id, *plain).await {
                    Ok(true) => Ok(exit::OK),
                    Ok(false) => Ok(exit::DIFFERENCES),
                    Err(e) => Err(Failure::other("WATCH", format!("{e:#}"))),
                }
            })
            .await
        }
        Command::Import(_) => {
            let api = connect(&cli).await;
            match cli.command {
                Command::Import(cmd) => cmd.run(api).await,
                _ => exit::OTHER,
            }
        }
    };
    std::process::exit(code);
}
