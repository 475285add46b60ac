//! `tms import`: importing tasks from a legacy scheduler (a crontab or a JSON export) and the
//! life of an import batch afterwards (verify, enable in phases, roll back, list).
//!
//! Command shape: `tms import FILE [OPTIONS]` applies a source; `tms import verify|enable|
//! rollback|list …` manage batches. Clap reads the first word after `import` as a subcommand
//! when it names one (`args_conflicts_with_subcommands`), else as the FILE; `tms import apply
//! FILE` is the explicit spelling, for a file literally called `verify` (or write `./verify`).

mod apply;
mod manage;

use clap::{Args, Subcommand, ValueEnum};
use serde_json::Value;

use crate::api::{Api, Failure};
use crate::table::Table;

/// Exit codes, shown in every import command's help (a macro so `concat!` can use it).
macro_rules! exit_codes {
    () => {
        "Exit codes:
  0  success (import verify: no differences)
  1  the run did not succeed (run --watch, retry --watch, watch), or import verify found
     differences
  2  usage error (bad arguments)
  3  a file or another input was refused (VALIDATION, BAD_USER_INPUT; file:line printed)
  4  not signed in or not allowed (UNAUTHENTICATED, FORBIDDEN; no session or token)
  5  conflict (CONFLICT, e.g. a rollback refused)
  6  not found (NOT_FOUND: no such workflow, run, step, token or batch)
  7  api unreachable, or any other error"
    };
}
pub(crate) use exit_codes;

const IMPORT_HELP: &str = concat!(
    "Examples:
  tms import crontab.txt --dry-run          # what would be created; writes nothing
  tms import crontab.txt --tag wave-1       # apply; schedules are imported disabled
  tms import export.json --skip-invalid --output json
  crontab -l | tms import - --format crontab
  tms import list
  tms import verify 0192f1c4-… crontab.txt
  tms import enable 0192f1c4-… --share 0.25
  tms import rollback 0192f1c4-…

`tms import FILE` is short for `tms import apply FILE`; a file named like a subcommand
(`verify`, `list`, …) is written `./verify` or given to `tms import apply`.

",
    exit_codes!()
);

/// How results are printed.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Output {
    /// A summary table for people.
    Table,
    /// The GraphQL result object, as JSON (errors: `{"errors": […]}`).
    Json,
}

#[derive(Args, Debug)]
pub struct OutputArg {
    /// Print a table, or the GraphQL result as JSON.
    #[arg(long, value_enum, default_value_t = Output::Table)]
    pub output: Output,
}

/// Import legacy tasks (a crontab or a JSON export) as workflows, or manage import batches.
#[derive(Args, Debug)]
#[command(
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true,
    after_help = IMPORT_HELP
)]
pub struct ImportCmd {
    #[command(subcommand)]
    pub action: Option<Action>,
    #[command(flatten)]
    pub apply: apply::ApplyArgs,
}

#[derive(Subcommand, Debug)]
pub enum Action {
    /// Import FILE (the explicit form of `tms import FILE`).
    #[command(after_help = apply::APPLY_HELP)]
    Apply(apply::ApplyArgs),
    /// Compare FILE with what batch BATCH stored; exits 1 when anything differs.
    #[command(after_help = manage::VERIFY_HELP)]
    Verify(manage::VerifyArgs),
    /// Enable the schedules of a batch, all of them or a phase (--tag, --share).
    #[command(after_help = manage::ENABLE_HELP)]
    Enable(manage::EnableArgs),
    /// Undo a batch: delete the workflows it created (archive those with runs), restore
    /// those it updated.
    #[command(after_help = manage::ROLLBACK_HELP)]
    Rollback(manage::RollbackArgs),
    /// List import batches, newest first.
    #[command(after_help = manage::LIST_HELP)]
    List(manage::ListArgs),
}

impl ImportCmd {
    /// Runs the command; the process's exit code.
    pub async fn run(self, api: Result<Api, Failure>) -> i32 {
        let output = match &self.action {
            None => self.apply.out.output,
            Some(Action::Apply(a)) => a.out.output,
            Some(Action::Verify(a)) => a.out.output,
            Some(Action::Enable(a)) => a.out.output,
            Some(Action::Rollback(a)) => a.out.output,
            Some(Action::List(a)) => a.out.output,
        };
        let result = match api {
            Err(f) => Err(f),
            Ok(api) => match self.action {
                None => apply::run(&api, self.apply).await,
                Some(Action::Apply(a)) => apply::run(&api, a).await,
                Some(Action::Verify(a)) => manage::verify(&api, a).await,
                Some(Action::Enable(a)) => manage::enable(&api, a).await,
                Some(Action::Rollback(a)) => manage::rollback(&api, a).await,
                Some(Action::List(a)) => manage::list(&api, a).await,
            },
        };
        match result {
            Ok(code) => code,
            Err(f) => {
                report_failure(&f, output, &[]);
                f.exit
            }
        }
    }
}

/// Prints a failure: `error: CODE: message` on stderr; the api's response on stdout with
/// `--output json`, else the validation details (or `problems`, when given) as a table.
pub fn report_failure(f: &Failure, output: Output, problems: &[Value]) {
    if output == Output::Json {
        let body = f.response.as_deref().cloned().unwrap_or_else(|| {
            serde_json::json!({"errors": [{"message": f.message, "extensions": {"code": f.code}}]})
        });
        println!("{body}");
    } else if !problems.is_empty() {
        print!("{}", problems_table(problems).render());
    } else if !f.details.is_empty() {
        let mut t = Table::new(&["POSITION", "REASON"]);
        for (field, message) in &f.details {
            let pos = field.strip_prefix("input.content:").unwrap_or(field);
            t.row(vec![pos.to_string(), message.clone()]);
        }
        print!("{}", t.render());
    }
    eprintln!("error: {f}");
}

/// `problems { position reason legacyId }` as a table.
pub fn problems_table(problems: &[Value]) -> Table {
    let mut t = Table::new(&["POSITION", "LEGACY ID", "REASON"]);
    for p in problems {
        t.row(vec![
            text(&p["position"]),
            text(&p["legacyId"]),
            text(&p["reason"]),
        ]);
    }
    t
}

/// A JSON value as a table cell: strings bare, null as `-`.
pub fn text(v: &Value) -> String {
    match v {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}
