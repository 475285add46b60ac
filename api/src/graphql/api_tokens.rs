//! GraphQL types and root fields for API tokens (admins only; see `tms_core::auth::api_tokens`).

use async_graphql::{Context, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::ids::uuid;
use crate::graphql::users::Role;
use crate::state::Services;

pub struct ApiToken(pub tms_core::auth::api_tokens::ApiToken);

/// A service account's token, without its secret.
#[Object]
impl ApiToken {
    /// Stable id (a UUID), for `revokeApiToken`.
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// What the token is for.
    async fn name(&self) -> &str {
        &self.0.name
    }
    /// The one role the token grants.
    async fn role(&self) -> Role {
        self.0.role.into()
    }
    /// When it was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// When it stops working; null: never expires.
    async fn expires_at(&self) -> Option<DateTime<Utc>> {
        self.0.expires_at
    }
    /// When it last authenticated a request (updated at most once a minute); null: never used.
    async fn last_used_at(&self) -> Option<DateTime<Utc>> {
        self.0.last_used_at
    }
}

/// A new token: `token` is the secret, shown here once and never again.
#[derive(SimpleObject)]
pub struct ApiTokenPayload {
    /// The secret: send it as `Authorization: Bearer <token>`. Stored hashed; not retrievable.
    pub token: String,
    /// The token's description.
    pub api_token: ApiToken,
}

/// `Query.apiTokens`.
pub async fn list(ctx: &Context<'_>) -> Result<Vec<ApiToken>> {
    let svc = ctx.data_unchecked::<Services>();
    Ok(svc
        .api_tokens
        .list(caller(ctx).gql()?)
        .await
        .gql()?
        .into_iter()
        .map(ApiToken)
        .collect())
}

/// `Mutation.createApiToken`.
pub async fn create(
    ctx: &Context<'_>,
    name: String,
    role: Role,
    expires_in_days: Option<i32>,
) -> Result<ApiTokenPayload> {
    let svc = ctx.data_unchecked::<Services>();
    let created = svc
        .api_tokens
        .create(caller(ctx).gql()?, &name, role.into(), expires_in_days)
        .await
        .gql()?;
    Ok(ApiTokenPayload {
        token: created.token,
        api_token: ApiToken(created.api_token),
    })
}

/// `Mutation.revokeApiToken`.
pub async fn revoke(ctx: &Context<'_>, id: ID) -> Result<bool> {
    let svc = ctx.data_unchecked::<Services>();
    let who = caller(ctx).gql()?;
    // Authorization before parsing the id, so a caller without the permission learns nothing.
    svc.audit
        .require(who, tms_core::auth::Permission::ManageUsers)
        .await
        .gql()?;
    let id = uuid(&id, "id").gql()?;
    svc.api_tokens.revoke(who, id).await.gql()
}
