//! Logging in with a local account, resolving access tokens, and the bootstrap admin.

use uuid::Uuid;

use crate::auth::jwt::JwtKeys;
use diesel::Connection;

use crate::audit::{self, Action, AuditEntry, Outcome};
use crate::auth::{Permission, Principal, RequestMeta, Role, User, password};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

#[derive(Clone)]
pub struct AuthService {
    db: Db,
    keys: JwtKeys,
}

/// What a successful sign-in (password, SSO or refresh) hands the client.
pub struct TokenPair {
    pub access_token: String,
    /// `None` only where refresh tokens are not issued.
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

impl AuthService {
    pub fn new(db: Db, keys: JwtKeys) -> Self {
        Self { db, keys }
    }

    /// Verifies email and password; every failure looks the same to the caller. Both outcomes
    /// are audited: a failure with the attempted email, never the password.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<TokenPair> {
        let email = email.trim().to_string();
        let pw = password.to_string();
        let request_meta = meta.clone();
        let meta = meta.clone();
        let user = self
            .db
            .run(move |c| {
                let user = repo::users::find_by_email(c, &email)?;
                let ok = match &user {
                    Some(u) if !u.disabled => u
                        .password_hash
                        .as_deref()
                        .is_some_and(|h| password::verify(&pw, h)),
                    _ => {
                        // Spend the same time as a real check so timing does not reveal accounts.
                        let _ = password::verify(&pw, password::dummy_hash());
                        false
                    }
                };
                let user = if ok { user } else { None };
                let entry = match &user {
                    Some(u) => AuditEntry {
                        actor_id: Some(u.id),
                        actor_email: Some(u.email.clone()),
                        ..AuditEntry::anonymous(Action::AuthLogin, format!("user:{}", u.id), &meta)
                    },
                    None => AuditEntry::anonymous(Action::AuthLogin, "login", &meta)
                        .outcome(Outcome::Failure)
                        .detail(serde_json::json!({ "email": email })),
                };
                c.transaction::<_, Error, _>(|c| audit::append(c, entry))?;
                Ok(user)
            })
            .await?;
        let user = user.ok_or(Error::Unauthenticated("invalid email or password"))?;
        tracing::info!(user_id = %user.id, "login succeeded");
        self.issue_session(&User::from(user), &request_meta).await
    }

    /// Starts a session for a user who has just proven who they are (password or SSO): the
    /// token pair every sign-in path returns.
    pub async fn issue_session(&self, user: &User, _meta: &RequestMeta) -> Result<TokenPair> {
        Ok(TokenPair {
            access_token: self.keys.issue(user.id, &user.email)?,
            refresh_token: None,
            expires_in: self.keys.ttl_seconds,
        })
    }

    /// Resolves a bearer token into a principal with the user's current roles.
    /// API tokens (recognised by their prefix) are looked up in the database; anything else
    /// must be one of our JWTs.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if crate::auth::api_tokens::is_api_token(bearer) {
            return crate::auth::api_tokens::authenticate(&self.db, bearer).await;
        }
        let claims = self.keys.verify(bearer)?;
        let id = claims.sub;
        let (user, roles) = self
            .db
            .run(move |c| Ok((repo::users::find(c, id)?, repo::users::roles_of(c, id)?)))
            .await?;
        let user = user
            .filter(|u| !u.disabled)
            .ok_or(Error::Unauthenticated("invalid or expired access token"))?;
        Ok(Principal {
            user_id: user.id,
            email: user.email,
            roles,
            api_token_id: None,
            meta: RequestMeta::default(),
        })
    }

    pub async fn me(&self, who: Option<&Principal>) -> Result<User> {
        let id = audit::require(&self.db, who, Permission::ReadSelf)
            .await?
            .user_id;
        self.db
            .run(move |c| repo::users::find(c, id))
            .await?
            .map(User::from)
            .ok_or(Error::NotFound("user"))
    }

    pub async fn roles_of(&self, user_id: Uuid) -> Result<Vec<Role>> {
        self.db
            .run(move |c| repo::users::roles_of(c, user_id))
            .await
    }
}

/// Creates `email` as an admin when no admin exists yet. Returns whether one was created.
pub async fn bootstrap_admin(db: &Db, email: &str, pw: &str) -> Result<bool> {
    if email.trim().is_empty() || !email.contains('@') {
        return Err(Error::field(
            "TMS_BOOTSTRAP_ADMIN_EMAIL",
            "must be an email address",
        ));
    }
    if pw.len() < 12 {
        return Err(Error::field(
            "TMS_BOOTSTRAP_ADMIN_PASSWORD",
            "must be at least 12 characters",
        ));
    }
    let email = email.trim().to_string();
    let hash = password::hash(pw)?;
    db.run(move |c| {
        c.transaction::<bool, Error, _>(|c| {
            use diesel::RunQueryDsl;
            // Serialise concurrent bootstraps (several api instances starting together).
            diesel::sql_query("SELECT pg_advisory_xact_lock(7346502)").execute(c)?;
            if repo::users::count_with_role(c, Role::Admin)? > 0 {
                return Ok(false);
            }
            let user = match repo::users::find_by_email(c, &email)? {
                Some(u) => u,
                None => repo::users::insert(c, &email, "Administrator", Some(&hash))?,
            };
            repo::users::grant_role(c, user.id, Role::Admin, None)?;
            Ok(true)
        })
    })
    .await
}
