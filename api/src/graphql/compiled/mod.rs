//! The compiled read path: a runs page (`Query.runs` with plain fields of its runs, their
//! tasks and workflow, the console's and monitors' most frequent read) answered without the
//! general executor. The page is read as `Query.runs` reads it (one service call, the tasks
//! and workflows with it) and its answer built straight from the rows: no validation pass over
//! a document already known valid, no future per field, no loaders.
//!
//! It answers only what it can answer exactly as the general executor would (the differential
//! test `api/tests/compiled_reads.rs` holds it to that): a caller who may read everything the
//! page selects, a document [`plan::of`] recognises, a page whose every run's workflow exists.
//! Everything else (a refusal, a bad argument, an unknown field, a denied or failed read) goes
//! to the general executor, which validates, authorises field by field and reports each error
//! in place, as before.

mod plan;
mod render;

use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ID, Response, Value, Variables};
use tms_core::auth::{Permission, rbac};
use tms_core::runs::reads::PageWants;
use tms_core::runs::service::RunService;

use crate::context::RequestAuth;
use crate::graphql::ids::{decode_cursor, page_size, uuid};
use crate::state::Services;
use plan::RunField;

/// The answer to `doc`, or `None` when the general executor must give it.
pub async fn execute(
    services: &Services,
    doc: &ExecutableDocument,
    operation: Option<&str>,
    vars: &Variables,
    auth: &RequestAuth,
) -> Option<Response> {
    let plan = plan::of(doc, operation, vars)?;
    let who = auth.caller().ok()??;
    let wants = PageWants {
        tasks: plan.wants(|f| matches!(f, RunField::Tasks(_))),
        workflows: plan.wants(|f| matches!(f, RunField::Workflow(_))),
    };
    // Checked without recording: a denial is the general executor's to report and audit.
    rbac::require(Some(who), Permission::ReadRuns).ok()?;
    if wants.workflows {
        rbac::require(Some(who), Permission::ReadWorkflows).ok()?;
    }
    let args = &plan.args;
    let limit = page_size(args.first).ok()?;
    let before = match &args.after {
        Some(c) => Some(uuid(&ID(decode_cursor("run", c).ok()?), "after").ok()?),
        None => None,
    };
    let workflow_id = match &args.workflow_id {
        Some(w) => Some(uuid::Uuid::parse_str(w).ok()?),
        None => None,
    };
    let page = services
        .runs
        .page(Some(who), before, limit, workflow_id, args.status, wants)
        .await
        .ok()?;
    let extras = match page.extras {
        Some(e) => e,
        None if !wants.tasks && !wants.workflows => Default::default(),
        None => return None,
    };
    let mut estimates = HashMap::new();
    if plan.wants(|f| matches!(f, RunField::Percent | RunField::EtaSeconds)) {
        let mut open = Vec::new();
        for r in &page.runs {
            match RunService::estimate_if_ended(r) {
                Some(e) => {
                    estimates.insert(r.id, e);
                }
                None => open.push(r.id),
            }
        }
        if !open.is_empty() {
            estimates.extend(services.runs.estimates(Some(who), &open).await.ok()?);
        }
    }
    let data = render::PageData {
        runs: &page.runs,
        has_previous: before.is_some(),
        has_next: page.has_next,
        tasks: &extras.tasks,
        workflows: &extras.workflows,
        estimates: &estimates,
    };
    let connection = render::page(&plan.page, &data)?;
    Some(Response::new(Value::Object(IndexMap::from([(
        plan.key, connection,
    )]))))
}
