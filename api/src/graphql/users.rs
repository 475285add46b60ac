//! GraphQL types for identities and tokens.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, Object, Result, SimpleObject};
use chrono::{DateTime, Utc};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::ids::{decode_cursor, encode_cursor, page_size, uuid};
use crate::state::Services;

/// What a user or API token may do. Deny by default: a field names the roles it needs.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::auth::Role")]
pub enum Role {
    /// Everything, including accounts, roles and API tokens.
    Admin,
    /// Creates, edits and archives workflows; reads workflows and runs.
    Maintainer,
    /// Triggers, cancels and retries runs; reads workflows and runs.
    Operator,
    /// Reads workflows and runs.
    Viewer,
    /// Reads and verifies the audit log.
    Auditor,
    /// Reads the monitoring queries (health, queue, workers, run statistics).
    Monitor,
}

pub struct User(pub tms_core::auth::User);

/// An account (local or single sign-on).
#[Object]
impl User {
    /// Stable id (a UUID).
    async fn id(&self) -> ID {
        ID(self.0.id.to_string())
    }
    /// Email address, unique; the sign-in name of a local account.
    async fn email(&self) -> &str {
        &self.0.email
    }
    /// The person's name (the same as `displayName`).
    async fn name(&self) -> &str {
        &self.0.display_name
    }
    /// The person's name, as shown in the console.
    async fn display_name(&self) -> &str {
        &self.0.display_name
    }
    /// A disabled user cannot sign in, and their API tokens stop working.
    async fn disabled(&self) -> bool {
        self.0.disabled
    }
    /// When the account was created.
    async fn created_at(&self) -> DateTime<Utc> {
        self.0.created_at
    }
    /// Its roles (an account without any can sign in and read only itself).
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
    /// A JWT to send as `Authorization: Bearer <accessToken>`; lasts `expiresIn` seconds.
    pub access_token: String,
    /// Opaque, single use: exchange it with `refreshToken` for a new pair before it idles out.
    pub refresh_token: Option<String>,
    /// Seconds until the access token expires.
    pub expires_in: i64,
    /// Always `Bearer`.
    pub token_type: String,
}

pub type UserConnection = Connection<String, User>;

/// `Query.users`: every account in creation order (admins only).
pub async fn list(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<UserConnection> {
    let svc = ctx.data_unchecked::<Services>();
    let who = caller(ctx).gql()?;
    // Authorization before looking at the arguments, so a caller without it learns nothing.
    svc.audit
        .require(who, tms_core::auth::Permission::ManageUsers)
        .await
        .gql()?;
    let limit = page_size(first).gql()?;
    let after = after
        .map(|c| {
            let id = decode_cursor("user", &c)?;
            uuid::Uuid::parse_str(&id)
                .map_err(|_| tms_core::Error::field("after", "is not a cursor"))
        })
        .transpose()
        .gql()?;
    let mut rows = svc.users.list(who, after, limit + 1).await.gql()?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut conn = Connection::new(after.is_some(), has_next);
    conn.edges.extend(
        rows.into_iter()
            .map(|u| Edge::new(encode_cursor("user", &u.id.to_string()), User(u))),
    );
    Ok(conn)
}

/// `Mutation.assignRole` / `Mutation.revokeRole`.
pub async fn change_role(ctx: &Context<'_>, user_id: ID, role: Role, grant: bool) -> Result<User> {
    let svc = ctx.data_unchecked::<Services>();
    let who = caller(ctx).gql()?;
    svc.audit
        .require(who, tms_core::auth::Permission::ManageUsers)
        .await
        .gql()?;
    let id = uuid(&user_id, "userId").gql()?;
    let user = if grant {
        svc.users.assign_role(who, id, role.into()).await
    } else {
        svc.users.revoke_role(who, id, role.into()).await
    };
    Ok(User(user.gql()?))
}
