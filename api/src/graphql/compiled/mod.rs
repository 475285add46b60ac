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
use std::sync::{Arc, RwLock};

use async_graphql::indexmap::IndexMap;
use async_graphql::parser::types::ExecutableDocument;
use async_graphql::{ID, Response, Value, Variables};
use tms_core::auth::service::TokenSession;
use tms_core::auth::{Permission, Principal, rbac};
use tms_core::runs::RunStatus;
use tms_core::runs::reads::{PageWants, RunPage};
use uuid::Uuid;

use crate::context::RequestAuth;
use crate::graphql::ids::{decode_cursor, page_size, uuid};
use crate::graphql::op_metrics::Operation;
use crate::state::Services;
pub use plan::Plan;
use plan::{Args, RunField, TaskField};

/// Documents kept by [`Plans`]: a client sends a handful of page shapes, so this is plenty;
/// when it is full it starts over (the shapes in use are learnt again at their next request).
pub const MAX_PLANS: usize = 256;

/// The documents this process has recognised, by their text and operation name: a request
/// sending one of them again is answered without parsing it or walking it for the limits (it
/// passed them when it was learnt; what depends on its variables, the page size, is checked
/// before anything is read).
#[derive(Default)]
pub struct Plans {
    /// By text, then by operation name.
    known: RwLock<HashMap<String, ByOperation>>,
}

/// The plans of one document text, by operation name.
type ByOperation = Vec<(Option<String>, Arc<Known>)>;

/// A recognised document and how the request metrics count it.
pub struct Known {
    pub plan: Plan,
    pub op: Operation,
}

impl Plans {
    /// The plan of `query` (named `operation`), if it was learnt.
    pub fn get(&self, query: &str, operation: Option<&str>) -> Option<Arc<Known>> {
        let known = self.known.read().unwrap_or_else(|e| e.into_inner());
        known
            .get(query)?
            .iter()
            .find(|(o, _)| o.as_deref() == operation)
            .map(|(_, k)| k.clone())
    }

    /// Learns `doc` (the parsed `query`, which passed the limits) if the compiled path answers
    /// it, and returns its plan.
    pub fn learn(
        &self,
        query: &str,
        operation: Option<&str>,
        doc: &ExecutableDocument,
        op: Operation,
    ) -> Option<Arc<Known>> {
        let known = Arc::new(Known {
            plan: plan::of(doc, operation)?,
            op,
        });
        let mut all = self.known.write().unwrap_or_else(|e| e.into_inner());
        if all.len() >= MAX_PLANS {
            all.clear();
        }
        let ops = all.entry(query.to_string()).or_default();
        ops.retain(|(o, _)| o.as_deref() != operation);
        ops.push((operation.map(str::to_string), known.clone()));
        Some(known)
    }
}

/// `Query.runs`'s arguments, checked as its resolver checks them.
pub struct PageArgs {
    limit: i64,
    before: Option<Uuid>,
    workflow_id: Option<Uuid>,
    status: Option<RunStatus>,
}

/// The page `plan` asks for with `vars`; `None` when an argument is refused (the general
/// executor then reports it). Reads nothing, so a refused page size costs no statement.
pub fn page_args(plan: &Plan, vars: &Variables) -> Option<PageArgs> {
    let Args {
        first,
        after,
        workflow_id,
        status,
    } = plan.args(vars)?;
    Some(PageArgs {
        limit: page_size(first).ok()?,
        before: match after {
            Some(c) => Some(uuid(&ID(decode_cursor("run", &c).ok()?), "after").ok()?),
            None => None,
        },
        workflow_id: match workflow_id {
            Some(w) => Some(uuid(&ID(w), "workflowId").ok()?),
            None => None,
        },
        status,
    })
}

/// The answer to `doc` with `vars`, or `None` when the general executor must give it.
pub async fn execute(
    services: &Services,
    doc: &ExecutableDocument,
    operation: Option<&str>,
    vars: &Variables,
    auth: &RequestAuth,
) -> Option<Response> {
    let plan = plan::of(doc, operation)?;
    let args = page_args(&plan, vars)?;
    answer(services, &plan, args, auth).await
}

/// The answer to `plan` for the page `args`, or `None` when the general executor must give it.
pub async fn answer(
    services: &Services,
    plan: &Plan,
    args: PageArgs,
    auth: &RequestAuth,
) -> Option<Response> {
    let who = auth.caller().ok()??;
    let wants = wants_of(plan);
    // Checked without recording: a denial is the general executor's to report and audit.
    rbac::require(Some(who), Permission::ReadRuns).ok()?;
    if wants.workflows {
        rbac::require(Some(who), Permission::ReadWorkflows).ok()?;
    }
    let page = services
        .runs
        .page(
            Some(who),
            args.before,
            args.limit,
            args.workflow_id,
            args.status,
            wants,
        )
        .await
        .ok()?;
    respond(services, plan, wants, &args, who, page).await
}

/// [`answer`] for the holder of `session` (an access token whose signature and expiry are
/// checked), whose session is checked in the page's own hop: one trip to the blocking pool
/// and the pool for the token and the page. `None` as for [`answer`], and also when the
/// session no longer stands: the general executor then checks the token itself and refuses it.
pub async fn answer_in_session(
    services: &Services,
    plan: &Plan,
    args: PageArgs,
    session: TokenSession,
) -> Option<Response> {
    let wants = wants_of(plan);
    let (who, page) = services
        .runs
        .page_in_session(
            session,
            args.before,
            args.limit,
            args.workflow_id,
            args.status,
            wants,
        )
        .await
        .ok()??;
    respond(services, plan, wants, &args, &who, page).await
}

/// What `plan` needs read besides the runs.
fn wants_of(plan: &Plan) -> PageWants {
    PageWants {
        tasks: plan.wants(|f| matches!(f, RunField::Tasks(_))),
        workflows: plan.wants(|f| matches!(f, RunField::Workflow(_))),
        brief_tasks: !plan.wants(|f| match f {
            RunField::Tasks(sel) => sel.iter().any(|(_, t)| !brief(t)),
            _ => false,
        }),
    }
}

/// The answer built from `page`, read for `who` with what `wants` (the plan's [`wants_of`])
/// asked.
async fn respond(
    services: &Services,
    plan: &Plan,
    wants: PageWants,
    args: &PageArgs,
    who: &Principal,
    page: RunPage,
) -> Option<Response> {
    let extras = match page.extras {
        Some(e) => e,
        None if !wants.tasks && !wants.workflows => Default::default(),
        None => return None,
    };
    let estimates = if plan.wants(|f| matches!(f, RunField::Percent | RunField::EtaSeconds)) {
        services
            .runs
            .estimates_of_runs(Some(who), &page.runs)
            .await
            .ok()?
    } else {
        HashMap::new()
    };
    let data = render::PageData {
        runs: &page.runs,
        has_previous: args.before.is_some(),
        has_next: page.has_next,
        tasks: &extras.tasks,
        workflows: &extras.workflows,
        estimates: &estimates,
    };
    let connection = render::page(&plan.page, &data)?;
    Some(Response::new(Value::Object(IndexMap::from([(
        plan.key.clone(),
        connection,
    )]))))
}

/// Whether `field` is one of what a brief read of a task has (see `PageWants::brief_tasks`).
fn brief(field: &TaskField) -> bool {
    use TaskField::*;
    matches!(
        field,
        Typename | Name | Status | Attempt | ExitCode | Cached
    )
}
