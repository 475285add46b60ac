//! `tms-api`: serves the GraphQL API, or (subcommands) applies migrations or prints the schema.

use clap::Parser;
use tms_api::config::{Cli, Command};

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    if let Err(msg) = tms_core::config::check_env() {
        eprintln!("tms-api: {msg}");
        std::process::exit(2);
    }
    tms_core::telemetry::init_logging();
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::PrintSchema) => {
            print!("{}", tms_api::graphql::sdl());
            Ok(())
        }
        Some(Command::Migrate(m)) => rt.block_on(async {
            let db =
                tms_core::db::Db::new(&m.database_url, 2).map_err(|e| anyhow::anyhow!("{e}"))?;
            tms_api::migrate_with_retry(&db).await
        }),
        None => {
            let cfg = cli
                .serve
                .ok_or_else(|| anyhow::anyhow!("missing settings; see --help"))?;
            rt.block_on(tms_api::serve(cfg))
        }
    }
}
