//! Session mutations: `refreshToken`, `logout` and `setUserDisabled` (resolvers in
//! `mutation.rs` delegate here so that the root stays one object).

use async_graphql::{Context, ID, Result};
use tms_core::auth::RequestMeta;
use tms_core::auth::service::TokenPair;

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::users::{AuthPayload, User};
use crate::graphql::workflows::parse_id;
use crate::state::Services;

impl From<TokenPair> for AuthPayload {
    fn from(pair: TokenPair) -> Self {
        AuthPayload {
            access_token: pair.access_token,
            refresh_token: pair.refresh_token,
            expires_in: pair.expires_in,
            token_type: "Bearer".into(),
        }
    }
}

fn meta(ctx: &Context<'_>) -> RequestMeta {
    ctx.data_opt::<RequestMeta>().cloned().unwrap_or_default()
}

pub async fn refresh_token(ctx: &Context<'_>, refresh_token: String) -> Result<AuthPayload> {
    let svc = ctx.data_unchecked::<Services>();
    let pair = svc.auth.refresh(&refresh_token, &meta(ctx)).await.gql()?;
    Ok(pair.into())
}

pub async fn logout(ctx: &Context<'_>, refresh_token: String) -> Result<bool> {
    let svc = ctx.data_unchecked::<Services>();
    svc.auth.logout(&refresh_token, &meta(ctx)).await.gql()
}

pub async fn set_user_disabled(ctx: &Context<'_>, user_id: ID, disabled: bool) -> Result<User> {
    let svc = ctx.data_unchecked::<Services>();
    let who = caller(ctx).gql()?;
    // Authorization before the input is looked at: a non-admin learns nothing from errors.
    svc.audit
        .require(who, tms_core::auth::Permission::ManageUsers)
        .await
        .gql()?;
    let id = parse_id(&user_id, "userId")?;
    Ok(User(
        svc.auth.set_user_disabled(who, id, disabled).await.gql()?,
    ))
}
