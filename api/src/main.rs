//! `tms-api`: serves the GraphQL API (default), applies migrations, or prints the schema.

use clap::Parser;
use tms_api::config::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse_from(with_default_subcommand(std::env::args().collect()));
    if let Err(msg) = tms_core::config::check_env() {
        eprintln!("tms-api: {msg}");
        std::process::exit(2);
    }
    tms_core::telemetry::init_logging();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command.expect("default subcommand inserted") {
        Command::PrintSchema => {
            print!("{}", tms_api::graphql::sdl());
            Ok(())
        }
        Command::Migrate(m) => rt.block_on(async {
            let db =
                tms_core::db::Db::new(&m.database_url, 2).map_err(|e| anyhow::anyhow!("{e}"))?;
            tms_api::migrate_with_retry(&db).await
        }),
        Command::Serve(cfg) => rt.block_on(tms_api::serve(cfg)),
    }
}

/// `tms-api` alone (or with only flags) means `tms-api serve`.
fn with_default_subcommand(mut args: Vec<String>) -> Vec<String> {
    let known = [
        "serve",
        "migrate",
        "print-schema",
        "help",
        "-h",
        "--help",
        "-V",
        "--version",
    ];
    if args.get(1).is_none_or(|a| !known.contains(&a.as_str())) {
        args.insert(1, "serve".into());
    }
    args
}
