//! The root mutation type.

use async_graphql::{Context, ID, Json, Object, Result};
use tms_core::auth::RequestMeta;
use tms_core::runs::service::TriggerRequest;

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::api_tokens::{self, ApiTokenPayload};
use crate::graphql::runs::Run;
use crate::graphql::users::{self, AuthPayload, Role, User};
use crate::graphql::workflows::{Workflow, WorkflowInput, parse_id};
use crate::state::Services;

pub struct MutationRoot;

/// Changes. Each field names the roles that may call it; others get FORBIDDEN.
#[Object(name = "Mutation")]
impl MutationRoot {
    /// Exchanges a local account's email and password for an access and a refresh token.
    async fn login(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's email.")] email: String,
        #[graphql(
            desc = "Its password. Wrong credentials answer UNAUTHENTICATED; repeated failures RATE_LIMITED."
        )]
        password: String,
    ) -> Result<AuthPayload> {
        let svc = ctx.data_unchecked::<Services>();
        let meta = ctx.data_opt::<RequestMeta>().cloned().unwrap_or_default();
        let pair = svc.auth.login(&email, &password, &meta).await.gql()?;
        Ok(pair.into())
    }

    /// Exchanges a refresh token for a new pair; the presented token is used up. Presenting a
    /// used-up token again ends the whole session.
    async fn refresh_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The refresh token of the latest pair.")] refresh_token: String,
    ) -> Result<AuthPayload> {
        crate::graphql::sessions::refresh_token(ctx, refresh_token).await
    }

    /// Ends the session of `refreshToken`: its refresh tokens, its access tokens and the
    /// subscriptions opened with them. A token of no live session is `UNAUTHENTICATED`.
    async fn logout(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "A refresh token of the session to end.")] refresh_token: String,
    ) -> Result<bool> {
        crate::graphql::sessions::logout(ctx, refresh_token).await
    }

    /// Disables or re-enables an account (admin). Disabling ends all its sessions at once.
    async fn set_user_disabled(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's id.")] user_id: ID,
        #[graphql(desc = "True to disable, false to enable.")] disabled: bool,
    ) -> Result<crate::graphql::users::User> {
        crate::graphql::sessions::set_user_disabled(ctx, user_id, disabled).await
    }

    /// Creates a workflow (version 1). A name already taken is CONFLICT; every problem with
    /// the definition is reported at once as VALIDATION.
    async fn create_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The definition.")] input: WorkflowInput,
    ) -> Result<Workflow> {
        let svc = ctx.data_unchecked::<Services>();
        let who = caller(ctx).gql()?;
        // Authorization comes before looking at the input, so a viewer learns nothing from errors.
        svc.audit
            .require(who, tms_core::auth::Permission::WriteWorkflows)
            .await
            .gql()?;
        let input = input.into_core().gql()?;
        Ok(Workflow(svc.workflows.create(who, input).await.gql()?))
    }

    /// Stores `input` as a new version; runs already started keep their version.
    async fn update_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's id.")] id: ID,
        #[graphql(desc = "The whole new definition (not a patch).")] input: WorkflowInput,
    ) -> Result<Workflow> {
        let svc = ctx.data_unchecked::<Services>();
        let who = caller(ctx).gql()?;
        svc.audit
            .require(who, tms_core::auth::Permission::WriteWorkflows)
            .await
            .gql()?;
        let id = parse_id(&id, "id")?;
        let input = input.into_core().gql()?;
        Ok(Workflow(svc.workflows.update(who, id, input).await.gql()?))
    }

    /// Archives a workflow: it can no longer be triggered or edited; its runs stay readable.
    async fn archive_workflow(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's id.")] id: ID,
    ) -> Result<Workflow> {
        let svc = ctx.data_unchecked::<Services>();
        let id = parse_id(&id, "id")?;
        Ok(Workflow(
            svc.workflows.archive(caller(ctx).gql()?, id).await.gql()?,
        ))
    }

    /// Turns a workflow's schedule on or off. Turning it on fires no tick that passed while it
    /// was off. A workflow without a schedule is a `VALIDATION` error.
    async fn set_schedule_enabled(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's id.")] workflow_id: ID,
        #[graphql(desc = "Whether the schedule fires.")] enabled: bool,
    ) -> Result<Workflow> {
        let svc = ctx.data_unchecked::<Services>();
        let who = caller(ctx).gql()?;
        svc.audit
            .require(who, tms_core::auth::Permission::WriteWorkflows)
            .await
            .gql()?;
        let id = parse_id(&workflow_id, "workflowId")?;
        Ok(Workflow(
            svc.workflows
                .set_schedule_enabled(who, id, enabled)
                .await
                .gql()?,
        ))
    }

    /// Imports tasks from a legacy scheduler (a JSON export or a crontab) as workflows with
    /// disabled schedules; `dryRun` reports what would change and writes nothing.
    async fn import_tasks(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The source and how to import it.")]
        input: crate::graphql::imports::ImportInput,
    ) -> Result<crate::graphql::imports::ImportReport> {
        crate::graphql::imports::import_tasks(ctx, input).await
    }

    /// Compares a source (in the batch's format) with what the import stored, task by task.
    async fn verify_import(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The import batch's id.")] batch_id: ID,
        #[graphql(desc = "The source text, in the batch's format.")] content: String,
    ) -> Result<crate::graphql::imports::ImportVerification> {
        crate::graphql::imports::verify(ctx, batch_id, content).await
    }

    /// Enables the schedules of part of a batch: all, those with `tag`, or a deterministic
    /// `share` (0-1] of them; the same phase twice enables nothing new.
    async fn enable_import_phase(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The import batch's id.")] batch_id: ID,
        #[graphql(desc = "Only the batch's workflows whose legacy task had this tag.")] tag: Option<
            String,
        >,
        #[graphql(desc = "The fraction (0-1] of the batch to enable, chosen deterministically.")]
        share: Option<f64>,
    ) -> Result<crate::graphql::imports::ImportPhase> {
        crate::graphql::imports::enable_phase(ctx, batch_id, tag, share).await
    }

    /// Undoes a batch: created workflows are deleted (archived when they have runs), updated
    /// ones get their previous version back. Refused after a later batch touched the same
    /// workflows unless `force`.
    async fn rollback_import(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The import batch's id.")] batch_id: ID,
        #[graphql(desc = "Roll back even when a later batch touched the same workflows.")]
        force: Option<bool>,
    ) -> Result<crate::graphql::imports::ImportBatch> {
        crate::graphql::imports::rollback(ctx, batch_id, force).await
    }

    /// Starts a run of the workflow's current version. The same `idempotencyKey` returns the same run.
    async fn trigger_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The workflow's id; an archived workflow is refused.")] workflow_id: ID,
        #[graphql(
            desc = "A JSON object the steps read as `$TMS_INPUTS` and `TMS_INPUT_<KEY>` (default `{}`)."
        )]
        inputs: Option<Json<serde_json::Value>>,
        #[graphql(
            desc = "1-200 characters; the same key on the same workflow returns the run it first created."
        )]
        idempotency_key: Option<String>,
        #[graphql(desc = "Bypass the step cache for this run (default false).")] no_cache: Option<
            bool,
        >,
    ) -> Result<Run> {
        let svc = ctx.data_unchecked::<Services>();
        let workflow_id = parse_id(&workflow_id, "workflowId")?;
        let run = svc
            .runs
            .trigger(
                caller(ctx).gql()?,
                TriggerRequest {
                    workflow_id,
                    inputs: inputs.map(|j| j.0),
                    idempotency_key,
                    no_cache: no_cache.unwrap_or(false),
                },
            )
            .await
            .gql()?;
        Ok(Run::from(run))
    }

    /// Cancels a run: running steps are stopped within a second, pending ones cancelled.
    /// Cancelling a finished run returns it unchanged.
    async fn cancel_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] id: ID,
    ) -> Result<Run> {
        let svc = ctx.data_unchecked::<Services>();
        let id = parse_id(&id, "id")?;
        Ok(Run::from(
            svc.runs.cancel(caller(ctx).gql()?, id).await.gql()?,
        ))
    }

    /// Retries a finished run that did not succeed. With `fromFailedStep: true` the same run
    /// re-runs only its failed, skipped and cancelled steps (succeeded steps' outputs are
    /// reused); otherwise a new run of the same version and inputs starts.
    async fn retry_run(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] id: ID,
        #[graphql(
            desc = "Re-run only what failed, was skipped or cancelled, in the same run (default false)."
        )]
        from_failed_step: Option<bool>,
    ) -> Result<Run> {
        let svc = ctx.data_unchecked::<Services>();
        let id = parse_id(&id, "id")?;
        let who = caller(ctx).gql()?;
        Ok(Run::from(
            svc.runs
                .retry(who, id, from_failed_step.unwrap_or(false))
                .await
                .gql()?,
        ))
    }

    /// Grants `role` to a user (admins).
    async fn assign_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's id.")] user_id: ID,
        #[graphql(desc = "The role to grant.")] role: Role,
    ) -> Result<User> {
        users::change_role(ctx, user_id, role, true).await
    }

    /// Takes `role` from a user (admins). Taking `ADMIN` from the last enabled admin is refused
    /// with `CONFLICT`.
    async fn revoke_role(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The account's id.")] user_id: ID,
        #[graphql(desc = "The role to take away.")] role: Role,
    ) -> Result<User> {
        users::change_role(ctx, user_id, role, false).await
    }

    /// Creates an API token for a service account holding exactly `role` (admins). The
    /// secret is in `token`, shown only in this response. Without `expiresInDays` it never
    /// expires.
    async fn create_api_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "What the token is for (1-100 characters), e.g. `prometheus-poller`.")]
        name: String,
        #[graphql(desc = "The one role it grants.")] role: Role,
        #[graphql(desc = "Days until it expires (1-3650); without it, never.")]
        expires_in_days: Option<i32>,
    ) -> Result<ApiTokenPayload> {
        api_tokens::create(ctx, name, role, expires_in_days).await
    }

    /// Revokes an API token (admins): refused from the next request on. `false` when it was
    /// already revoked.
    async fn revoke_api_token(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The token's id (`ApiToken.id`).")] id: ID,
    ) -> Result<bool> {
        api_tokens::revoke(ctx, id).await
    }
}
