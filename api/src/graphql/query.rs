//! The root query type.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, ID, Object, Result};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::api_tokens::{self, ApiToken};
use crate::graphql::audit::{self, AuditChainReport, AuditEventConnection};
use crate::graphql::cache::{self, CacheExplanation};
use crate::graphql::ids::{decode_cursor, encode_cursor, page_size};
use crate::graphql::imports::{self, ImportBatchConnection};
use crate::graphql::loaders::loaders;
use crate::graphql::monitoring::{self, QueueStats, RunStats, SystemHealth, WorkerStatus};
use crate::graphql::runs::{Run, RunConnection, RunStatus, list_runs};
use crate::graphql::users::{self, User, UserConnection};
use crate::graphql::workflows::{Workflow, parse_id};
use crate::state::Services;

pub struct QueryRoot;

pub type WorkflowConnection = Connection<String, Workflow>;

/// Reads. Each field names the roles that may call it; others get FORBIDDEN.
#[Object(name = "Query")]
impl QueryRoot {
    /// Why `step` of run `runId` hit or missed the step cache, and which parts of its key
    /// changed since the step's last cached success.
    async fn explain_cache(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] run_id: ID,
        #[graphql(desc = "The step's name in that run.")] step: String,
    ) -> Result<CacheExplanation> {
        cache::explain(ctx, run_id, step).await
    }

    /// Import batches, newest first.
    async fn import_batches(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> Result<ImportBatchConnection> {
        imports::import_batches(ctx, first, after).await
    }

    /// The authenticated caller.
    async fn me(&self, ctx: &Context<'_>) -> Result<User> {
        let svc = ctx.data_unchecked::<Services>();
        Ok(User(svc.auth.me(caller(ctx).gql()?).await.gql()?))
    }

    /// Every account in creation order (admins).
    async fn users(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
    ) -> Result<UserConnection> {
        users::list(ctx, first, after).await
    }

    /// Live (not revoked) API tokens, newest first (admins).
    async fn api_tokens(&self, ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
        api_tokens::list(ctx).await
    }

    /// One workflow by id, archived or not; null when there is none with that id.
    async fn workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's id.")] id: ID,
    ) -> Result<Option<Workflow>> {
        let svc = ctx.data_unchecked::<Services>();
        let id = parse_id(&id, "id")?;
        Ok(svc
            .workflows
            .get(caller(ctx).gql()?, id)
            .await
            .gql()?
            .map(Workflow))
    }

    /// Workflows by name. Archived ones are left out unless `includeArchived`.
    async fn workflows(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(default, desc = "Include archived workflows.")] include_archived: bool,
    ) -> Result<WorkflowConnection> {
        let svc = ctx.data_unchecked::<Services>();
        let limit = page_size(first).gql()?;
        let after_name = after.map(|c| decode_cursor("wf", &c)).transpose().gql()?;
        let had_cursor = after_name.is_some();
        let mut rows = svc
            .workflows
            .list(caller(ctx).gql()?, after_name, limit + 1, include_archived)
            .await
            .gql()?;
        let has_next = rows.len() as i64 > limit;
        rows.truncate(limit as usize);
        let node = ctx.look_ahead().field("edges").field("node");
        loaders(ctx)?.prime_workflows(&node, &rows).await;
        let mut conn = Connection::new(had_cursor, has_next);
        conn.edges.extend(
            rows.into_iter()
                .map(|w| Edge::new(encode_cursor("wf", &w.name), Workflow(w))),
        );
        Ok(conn)
    }

    /// One run by id; null when there is none with that id.
    async fn run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] id: ID,
    ) -> Result<Option<Run>> {
        let svc = ctx.data_unchecked::<Services>();
        let id = parse_id(&id, "id")?;
        Ok(svc
            .runs
            .get(caller(ctx).gql()?, id)
            .await
            .gql()?
            .map(Run::from))
    }

    /// Runs newest first, optionally of one workflow and in one status.
    async fn runs(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only runs of this workflow.")] workflow_id: Option<ID>,
        #[graphql(desc = "Only runs in this state.")] status: Option<RunStatus>,
    ) -> Result<RunConnection> {
        let wf = workflow_id
            .map(|w| parse_id(&w, "workflowId"))
            .transpose()?;
        list_runs(ctx, first, after, wf, status).await
    }

    /// Security events, newest first (auditors and admins).
    async fn audit_log(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Page size (1-100, default 20); more is refused with QUERY_LIMIT.")]
        first: Option<i32>,
        #[graphql(desc = "Cursor of the last edge of the previous page.")] after: Option<String>,
        #[graphql(desc = "Only events with this action, e.g. `auth.login`.")] action: Option<
            String,
        >,
        #[graphql(desc = "Only events by this user.")] actor_id: Option<ID>,
    ) -> Result<AuditEventConnection> {
        audit::audit_log(ctx, first, after, action, actor_id).await
    }

    /// Recomputes the audit log's hash chain and reports the first broken link.
    async fn verify_audit_chain(&self, ctx: &Context<'_>) -> Result<AuditChainReport> {
        audit::verify_chain(ctx).await
    }

    /// Postgres, Redis and workers, each probed within 2 s (monitors and admins).
    async fn system_health(&self, ctx: &Context<'_>) -> Result<SystemHealth> {
        monitoring::system_health(ctx).await
    }

    /// The run queue by state (monitors and admins).
    async fn queue_stats(&self, ctx: &Context<'_>) -> Result<QueueStats> {
        monitoring::queue_stats(ctx).await
    }

    /// Workers by their heartbeats, stale ones included (monitors and admins).
    async fn workers(&self, ctx: &Context<'_>) -> Result<Vec<WorkerStatus>> {
        monitoring::workers(ctx).await
    }

    /// Runs created in the last `windowSeconds` (1 to 2592000) (monitors and admins).
    async fn run_stats(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The window, in seconds back from now (1-2592000, i.e. 30 days).")]
        window_seconds: i32,
    ) -> Result<RunStats> {
        monitoring::run_stats(ctx, window_seconds).await
    }
}
