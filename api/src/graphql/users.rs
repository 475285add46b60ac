//! GraphQL types for identities and tokens.

use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::error::GqlResult;
use crate::state::Services;

#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::auth::Role")]
pub enum Role {
    Admin,
    Maintainer,
    Operator,
    Viewer,
    Auditor,
    Monitor,
}

pub struct User(pub tms_core::auth::User);

#[Object]
impl User {
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    async fn email(&self) -> &str {
        &self.0.email
    }
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// A disabled account cannot sign in and its tokens are refused.
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    async fn roles(&self, ctx: &Context<'_>) -> Result<Vec<Role>> {
        let roles = ctx
            .data_unchecked::<Services>()
            .auth
            .roles_of(self.0.id)
            .await
            .gql()?;
        Ok(roles.into_iter().map(Role::from).collect())
    }
}

/// Tokens issued by `login`, `refreshToken` and SSO. `refreshToken` is null only where no
/// session backs the access token.
#[derive(SimpleObject)]
pub struct AuthPayload {
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    pub token_type: String,
}
