//! `tms-api`: serves the GraphQL API, or (subcommands) applies migrations or prints the schema
//! or a generated reference.

use clap::{CommandFactory, FromArgMatches};
use tms_api::config::{ApiConfig, Cli, Command};

// mimalloc instead of glibc malloc: a profile of the api serving `scripts/bench reads` spent
// about 20 % of its CPU in glibc's malloc/free (`_int_malloc`, `_int_free`,
// `malloc_consolidate`), about 12 % in mimalloc's. Back to back against glibc on a busy
// machine: nested page 559 -> 936 req/s (api CPU per request 1.31 -> 0.84 ms); see
// docs/performance.md.
//
// Built with `no_thp`: mimalloc otherwise advises transparent huge pages (`MADV_HUGEPAGE`) on
// the memory it maps, and where the kernel grants them (its `madvise` mode, Debian's default) a
// 2 MiB page backs what may be a few KiB of live objects. An idle api held 50 of its 74 MiB in
// such pages; the api's heap is small objects (a subscriber's state is ~20 KiB).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    if let Err(msg) = tms_core::config::prepare() {
        eprintln!("tms-api: {msg}");
        std::process::exit(2);
    }
    let matches = Cli::command().get_matches();
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit());
    let _telemetry = tms_core::telemetry::init("tms-api");
    let rt = tokio::runtime::Runtime::new()?;
    match cli.command {
        Some(Command::PrintSchema) => {
            print!("{}", tms_api::graphql::sdl());
            Ok(())
        }
        Some(Command::PrintDocs { which }) => {
            print!("{}", which.render());
            Ok(())
        }
        Some(Command::Migrate(m)) => rt.block_on(async {
            let db =
                tms_core::db::Db::new(&m.database_url, 2).map_err(|e| anyhow::anyhow!("{e}"))?;
            tms_api::migrate_with_retry(&db).await
        }),
        None => {
            // clap leaves the flattened group `None` when every value came from the environment
            // or a default, so read the settings from the matches directly.
            let cfg = cli
                .serve
                .map(Ok)
                .unwrap_or_else(|| ApiConfig::from_arg_matches(&matches))
                .unwrap_or_else(|e| e.exit());
            rt.block_on(tms_api::serve(cfg))
        }
    }
}
