//! `tms import FILE`: one source sent to `importTasks`, with a spinner while the api works and
//! a summary at the end.

use std::io::{IsTerminal, Read};
use std::path::Path;
use std::time::Duration;

use clap::{Args, ValueEnum};
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use serde_json::{Value, json};

use super::{Output, OutputArg, exit_codes, problems_table, report_failure, text};
use crate::api::{Api, Failure, exit};
use crate::table::Table;

pub const APPLY_HELP: &str = concat!(
    "Examples:
  tms import crontab.txt --dry-run        # report what would happen, write nothing
  tms import crontab.txt --tag wave-1     # apply; every workflow gets the tag wave-1
  tms import export.json --skip-invalid   # import the valid records, list the others
  crontab -l | tms import - --format crontab --output json

The format is JSON when FILE ends in .json or its content starts with `{`, else crontab.
Schedules are imported disabled: enable them with `tms import enable BATCH`.
A dry run that finds problems exits 3 unless --skip-invalid is given (the real import
would be refused).

",
    exit_codes!()
);

/// A source's format.
#[derive(ValueEnum, Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    /// The JSON export format (docs/import.schema.json).
    Json,
    /// A crontab (Vixie cron / cronie user crontab).
    Crontab,
}

#[derive(Args, Debug)]
pub struct ApplyArgs {
    /// The source: a crontab or a JSON export; `-` reads stdin.
    #[arg(required = true)]
    pub file: Option<String>,
    /// The source's format (guessed from the extension or the content when not given).
    #[arg(long, value_enum)]
    pub format: Option<Format>,
    /// Report what would be created, updated or left alone, and write nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Import the valid records and list the invalid ones instead of refusing the source.
    #[arg(long)]
    pub skip_invalid: bool,
    /// A tag added to every imported workflow (usable by `tms import enable --tag`).
    #[arg(long, value_name = "T")]
    pub tag: Option<String>,
    #[command(flatten)]
    pub out: OutputArg,
}

const IMPORT: &str = "mutation($i: ImportInput!) { importTasks(input: $i) { dryRun created \
    updated unchanged skipped problems { position reason legacyId } batch { id createdAt \
    format checksum tag status counts { tasks workflows } } } }";

/// Reads FILE (`-`: stdin).
pub fn read_source(file: &str) -> Result<String, Failure> {
    if file == "-" {
        let mut s = String::new();
        std::io::stdin()
            .read_to_string(&mut s)
            .map_err(|e| Failure::other("READ", format!("reading stdin: {e}")))?;
        return Ok(s);
    }
    std::fs::read_to_string(file)
        .map_err(|e| Failure::other("READ", format!("reading {file}: {e}")))
}

/// The format given, else JSON for a `.json` file or content starting with `{`, else crontab.
pub fn guess_format(file: &str, content: &str, given: Option<Format>) -> Format {
    if let Some(f) = given {
        return f;
    }
    let json_ext = Path::new(file)
        .extension()
        .is_some_and(|e| e.eq_ignore_ascii_case("json"));
    if json_ext || content.trim_start().starts_with('{') {
        Format::Json
    } else {
        Format::Crontab
    }
}

/// A spinner on stderr while the api works; hidden when stdout is not a terminal.
pub fn spinner(message: String) -> ProgressBar {
    let bar = ProgressBar::new_spinner();
    if std::io::stdout().is_terminal() && std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::stderr());
        bar.set_style(
            ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("template"),
        );
        bar.set_message(message);
        bar.enable_steady_tick(Duration::from_millis(100));
    } else {
        bar.set_draw_target(ProgressDrawTarget::hidden());
    }
    bar
}

pub async fn run(api: &Api, args: ApplyArgs) -> Result<i32, Failure> {
    let file = args.file.clone().unwrap_or_else(|| "-".into());
    let content = read_source(&file)?;
    let format = guess_format(&file, &content, args.format);
    let format_name = match format {
        Format::Json => "JSON",
        Format::Crontab => "CRONTAB",
    };
    let mut input = json!({
        "format": format_name, "content": content, "dryRun": args.dry_run,
        "skipInvalid": args.skip_invalid,
    });
    if let Some(t) = &args.tag {
        input["tag"] = json!(t);
    }
    let what = if args.dry_run {
        "checking"
    } else {
        "importing"
    };
    let bar = spinner(format!("{what} {file} ({} bytes)", content.len()));
    let result = api.gql(IMPORT, json!({ "i": input })).await;
    let data = match result {
        Ok(d) => d,
        Err(f) => {
            // A refused source: a dry run of it lists the problems with their legacy ids.
            let problems = if f.code == "VALIDATION"
                && f.details
                    .iter()
                    .any(|(k, _)| k.starts_with("input.content:"))
                && args.out.output == Output::Table
            {
                input["dryRun"] = json!(true);
                api.gql(IMPORT, json!({ "i": input }))
                    .await
                    .ok()
                    .and_then(|d| d["importTasks"]["problems"].as_array().cloned())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            bar.finish_and_clear();
            report_failure(&f, args.out.output, &problems);
            return Ok(f.exit);
        }
    };
    bar.finish_and_clear();
    let r = &data["importTasks"];
    let problems = r["problems"].as_array().cloned().unwrap_or_default();
    // A dry run with problems stands for a refusal, unless invalid records are to be skipped.
    let code = if args.dry_run && !problems.is_empty() && !args.skip_invalid {
        exit::REFUSED
    } else {
        exit::OK
    };
    if args.out.output == Output::Json {
        println!("{r}");
        return Ok(code);
    }
    print!("{}", summary(&file, format_name, args.tag.as_deref(), r));
    if !problems.is_empty() {
        println!();
        println!("Problems ({}):", problems.len());
        print!("{}", problems_table(&problems).render());
    }
    if code == exit::REFUSED {
        eprintln!(
            "error: VALIDATION: the source has problems; without --skip-invalid it would be refused"
        );
    }
    Ok(code)
}

fn count(v: &Value) -> String {
    v.as_array().map_or(0, Vec::len).to_string()
}

/// The counts and the batch of a report.
fn summary(file: &str, format: &str, tag: Option<&str>, r: &Value) -> String {
    let mut head = Table::new(&["SOURCE", "FORMAT", "BATCH", "TAG"]);
    let batch = if r["dryRun"] == true {
        "none (dry run: nothing written)".to_string()
    } else if r["batch"].is_null() {
        "none (nothing changed)".to_string()
    } else {
        text(&r["batch"]["id"])
    };
    head.row(vec![
        file.to_string(),
        format.to_string(),
        batch,
        tag.unwrap_or("-").to_string(),
    ]);
    let mut counts = Table::new(&["CREATED", "UPDATED", "UNCHANGED", "SKIPPED", "PROBLEMS"]);
    counts.row(vec![
        count(&r["created"]),
        count(&r["updated"]),
        count(&r["unchanged"]),
        count(&r["skipped"]),
        count(&r["problems"]),
    ]);
    format!("{}\n{}", head.render(), counts.render())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_format_is_guessed_from_the_extension_then_the_content() {
        assert_eq!(guess_format("a.JSON", "", None), Format::Json);
        assert_eq!(guess_format("-", "  {\"tasks\": []}", None), Format::Json);
        assert_eq!(
            guess_format("crontab.txt", "0 * * * * x", None),
            Format::Crontab
        );
        assert_eq!(
            guess_format("a.json", "", Some(Format::Crontab)),
            Format::Crontab
        );
    }
}
