//! `tms workflows`, and finding a workflow by name or id for the other commands.

use clap::Args;
use serde_json::{Value, json};

use crate::api::{Api, Failure, exit};
use crate::import::{Output, OutputArg, text};
use crate::table::Table;

pub const LIST_HELP: &str = "Examples:
  tms workflows
  tms workflows --archived --output json | jq '.[].name'";

#[derive(Args, Debug)]
pub struct ListArgs {
    /// Include archived workflows.
    #[arg(long)]
    pub archived: bool,
    #[command(flatten)]
    pub out: OutputArg,
}

/// The fields `apply` compares a file with.
pub const FULL: &str = "id name description currentVersion archived maxConcurrentRuns \
    rateLimit { runs perSeconds } schedule { cron timezone enabled nextFireAt } \
    steps { name image run command env { name value } secrets dependsOn workdir \
    timeoutSeconds retries retryBackoffSeconds cache cacheTtlSeconds cachePaths }";

/// Every workflow (all pages), with `fields`.
pub async fn all(api: &Api, fields: &str, archived: bool) -> Result<Vec<Value>, Failure> {
    let q = format!(
        "query($a: String, $x: Boolean!) {{ workflows(first: 100, after: $a, includeArchived: $x) \
         {{ pageInfo {{ hasNextPage endCursor }} nodes {{ {fields} }} }} }}"
    );
    let mut out = Vec::new();
    let mut after = Value::Null;
    loop {
        let d = api.gql(&q, json!({"a": after, "x": archived})).await?;
        let page = &d["workflows"];
        out.extend(page["nodes"].as_array().cloned().unwrap_or_default());
        if page["pageInfo"]["hasNextPage"] != true {
            return Ok(out);
        }
        after = page["pageInfo"]["endCursor"].clone();
    }
}

/// The workflow named `key`, else the one whose id is `key`; `NOT_FOUND` otherwise.
pub async fn find(api: &Api, key: &str, fields: &str) -> Result<Value, Failure> {
    let fields = &format!("name {fields}");
    if let Some(w) = all(api, fields, false)
        .await?
        .into_iter()
        .find(|w| w["name"] == key)
    {
        return Ok(w);
    }
    let q = format!("query($id: ID!) {{ workflow(id: $id) {{ {fields} }} }}");
    match api.gql(&q, json!({"id": key})).await {
        Ok(d) if !d["workflow"].is_null() => Ok(d["workflow"].clone()),
        Ok(_) => Err(not_found(format!("no workflow named or with id `{key}`"))),
        Err(f) if f.code == "VALIDATION" || f.code == "BAD_USER_INPUT" => {
            Err(not_found(format!("no workflow named or with id `{key}`")))
        }
        Err(f) => Err(f),
    }
}

pub fn not_found(message: String) -> Failure {
    Failure {
        exit: exit::NOT_FOUND,
        ..Failure::other("NOT_FOUND", message)
    }
}

pub async fn list(api: Api, a: &ListArgs) -> Result<i32, Failure> {
    let fields = "id name description currentVersion archived \
        schedule { cron timezone enabled nextFireAt } steps { name }";
    let ws = all(&api, fields, a.archived).await?;
    if a.out.output == Output::Json {
        println!("{}", Value::Array(ws));
        return Ok(exit::OK);
    }
    let mut t = Table::new(&["NAME", "VERSION", "STEPS", "SCHEDULE", "ID"]);
    for w in &ws {
        let schedule = match &w["schedule"] {
            Value::Null => "-".to_string(),
            s => format!(
                "{} {}{}",
                text(&s["cron"]),
                text(&s["timezone"]),
                if s["enabled"] == true { "" } else { " (off)" }
            ),
        };
        let name = if w["archived"] == true {
            format!("{} (archived)", text(&w["name"]))
        } else {
            text(&w["name"])
        };
        t.row(vec![
            name,
            text(&w["currentVersion"]),
            w["steps"].as_array().map_or(0, Vec::len).to_string(),
            schedule,
            text(&w["id"]),
        ]);
    }
    print!("{}", t.render());
    Ok(exit::OK)
}
