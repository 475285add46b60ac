//! `tms import verify|enable|rollback|list`: the life of a batch after the import.

use clap::Args;
use serde_json::{Value, json};

use super::apply::{read_source, spinner};
use super::{Output, OutputArg, exit_codes, text};
use crate::api::{Api, Failure, exit};
use crate::table::Table;

pub const VERIFY_HELP: &str = concat!(
    "Example:
  tms import verify 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d crontab.txt

FILE is read in the batch's format; `-` reads stdin. Each difference names the legacy id:
MISSING (in FILE, not stored), EXTRA (stored, not in FILE), CHANGED (stored differently, e.g.
edited after the import). A changed crontab line has a new legacy id, so it shows up as one
MISSING and one EXTRA.

",
    exit_codes!()
);

pub const ENABLE_HELP: &str = concat!(
    "Examples:
  tms import enable 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --tag wave-1
  tms import enable 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --share 0.25

Without --tag or --share every schedule of the batch is enabled. With both, the share is
taken of the workflows with the tag. Shares are stable and nested: --share 0.5 enables a
superset of --share 0.25. Schedules already enabled stay so and are not listed again.

",
    exit_codes!()
);

pub const ROLLBACK_HELP: &str = concat!(
    "Examples:
  tms import rollback 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d
  tms import rollback 0192f1c4-5e6f-7a8b-9c0d-1e2f3a4b5c6d --force

Workflows the batch created are deleted, or archived (schedule stopped) when they have runs;
run history stays. Workflows it updated get their previous version and settings back.
Refused (exit 5) when the batch was already rolled back, and, unless --force, when a later
batch or an edit changed the same workflows.

",
    exit_codes!()
);

pub const LIST_HELP: &str = concat!(
    "Examples:
  tms import list
  tms import list --output json | jq -r '.[0].id'

",
    exit_codes!()
);

#[derive(Args, Debug)]
pub struct VerifyArgs {
    /// The batch id (from `tms import list`).
    pub batch: String,
    /// The source to compare; `-` reads stdin.
    pub file: String,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct EnableArgs {
    /// The batch id.
    pub batch: String,
    /// Only the workflows with this tag.
    #[arg(long, value_name = "T")]
    pub tag: Option<String>,
    /// Only this share of the workflows (greater than 0, at most 1), in a stable order.
    #[arg(long, value_name = "SHARE")]
    pub share: Option<f64>,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The batch id.
    pub batch: String,
    /// Roll back even when later batches or edits changed the same workflows.
    #[arg(long)]
    pub force: bool,
    #[command(flatten)]
    pub out: OutputArg,
}

#[derive(Args, Debug)]
pub struct ListArgs {
    #[command(flatten)]
    pub out: OutputArg,
}

const BATCH_FIELDS: &str = "id createdAt actor format checksum tag status \
    counts { tasks workflows } problems { position reason legacyId } skipped";

pub async fn verify(api: &Api, a: VerifyArgs) -> Result<i32, Failure> {
    let content = read_source(&a.file)?;
    let bar = spinner(format!("verifying {} against batch {}", a.file, a.batch));
    let data = api
        .gql(
            "mutation($b: ID!, $c: String!) { verifyImport(batchId: $b, content: $c) \
             { ok differences { legacyId kind detail } } }",
            json!({"b": a.batch, "c": content}),
        )
        .await;
    bar.finish_and_clear();
    let v = &data?["verifyImport"];
    let code = if v["ok"] == true {
        exit::OK
    } else {
        exit::DIFFERENCES
    };
    if a.out.output == Output::Json {
        println!("{v}");
        return Ok(code);
    }
    let diffs = v["differences"].as_array().cloned().unwrap_or_default();
    if diffs.is_empty() {
        println!("batch {}: {} matches what is stored", a.batch, a.file);
        return Ok(code);
    }
    println!("batch {}: {} difference(s)", a.batch, diffs.len());
    let mut t = Table::new(&["LEGACY ID", "KIND", "DETAIL"]);
    for d in &diffs {
        t.row(vec![
            text(&d["legacyId"]),
            text(&d["kind"]),
            text(&d["detail"]),
        ]);
    }
    print!("{}", t.render());
    Ok(code)
}

pub async fn enable(api: &Api, a: EnableArgs) -> Result<i32, Failure> {
    let data = api
        .gql(
            "mutation($b: ID!, $t: String, $s: Float) { enableImportPhase(batchId: $b, tag: $t, \
             share: $s) { batchId enabled } }",
            json!({"b": a.batch, "t": a.tag, "s": a.share}),
        )
        .await?;
    let p = &data["enableImportPhase"];
    if a.out.output == Output::Json {
        println!("{p}");
        return Ok(exit::OK);
    }
    let enabled = p["enabled"].as_array().cloned().unwrap_or_default();
    println!(
        "batch {}: enabled {} schedule(s)",
        text(&p["batchId"]),
        enabled.len()
    );
    if !enabled.is_empty() {
        let mut t = Table::new(&["ENABLED LEGACY ID"]);
        for id in &enabled {
            t.row(vec![text(id)]);
        }
        print!("{}", t.render());
    }
    Ok(exit::OK)
}

pub async fn rollback(api: &Api, a: RollbackArgs) -> Result<i32, Failure> {
    let data = api
        .gql(
            &format!(
                "mutation($b: ID!, $f: Boolean) {{ rollbackImport(batchId: $b, force: $f) \
                 {{ {BATCH_FIELDS} }} }}"
            ),
            json!({"b": a.batch, "f": a.force}),
        )
        .await?;
    let b = &data["rollbackImport"];
    if a.out.output == Output::Json {
        println!("{b}");
        return Ok(exit::OK);
    }
    println!("batch {}: {}", text(&b["id"]), text(&b["status"]));
    print!("{}", batches_table(std::slice::from_ref(b)).render());
    Ok(exit::OK)
}

pub async fn list(api: &Api, a: ListArgs) -> Result<i32, Failure> {
    let mut batches: Vec<Value> = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let data = api
            .gql(
                &format!(
                    "query($a: String) {{ importBatches(first: 100, after: $a) {{ \
                     pageInfo {{ hasNextPage endCursor }} nodes {{ {BATCH_FIELDS} }} }} }}"
                ),
                json!({ "a": after }),
            )
            .await?;
        let conn = &data["importBatches"];
        batches.extend(conn["nodes"].as_array().cloned().unwrap_or_default());
        match conn["pageInfo"]["endCursor"].as_str() {
            Some(c) if conn["pageInfo"]["hasNextPage"] == true => after = Some(c.to_string()),
            _ => break,
        }
    }
    if a.out.output == Output::Json {
        println!("{}", Value::Array(batches));
        return Ok(exit::OK);
    }
    if batches.is_empty() {
        println!("no import batches");
    } else {
        print!("{}", batches_table(&batches).render());
    }
    Ok(exit::OK)
}

fn batches_table(batches: &[Value]) -> Table {
    let mut t = Table::new(&[
        "BATCH",
        "CREATED",
        "FORMAT",
        "TAG",
        "TASKS",
        "WORKFLOWS",
        "SKIPPED",
        "STATUS",
    ]);
    for b in batches {
        t.row(vec![
            text(&b["id"]),
            text(&b["createdAt"]),
            text(&b["format"]),
            text(&b["tag"]),
            text(&b["counts"]["tasks"]),
            text(&b["counts"]["workflows"]),
            b["skipped"].as_array().map_or(0, Vec::len).to_string(),
            text(&b["status"]),
        ]);
    }
    t
}
