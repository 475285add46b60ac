//! Logging in with a local account, resolving access tokens, and the bootstrap admin.

use uuid::Uuid;

use crate::auth::jwt::JwtKeys;
use crate::auth::sessions::{self, SessionConfig};
use crate::auth::throttle::{self, Keys};
use crate::bus::EventBus;
use diesel::Connection;

use crate::audit::{self, Action, AuditEntry, Outcome};
use crate::auth::{Permission, Principal, RequestMeta, Role, User, password};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

#[derive(Clone)]
pub struct AuthService {
    pub(crate) db: Db,
    pub(crate) keys: JwtKeys,
    pub(crate) sessions: SessionConfig,
    /// Where revocation notices go; `None` in-process (tests) where no socket listens.
    pub(crate) bus: Option<EventBus>,
}

/// What a successful sign-in (password, SSO or refresh) hands the client.
pub struct TokenPair {
    pub access_token: String,
    /// `None` only where refresh tokens are not issued.
    pub refresh_token: Option<String>,
    pub expires_in: i64,
}

/// What a verified access token says about its session, for connections that outlive a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TokenSession {
    pub user_id: Uuid,
    /// The refresh-token family, when the token belongs to one.
    pub sid: Option<Uuid>,
    /// `exp`, seconds since the epoch.
    pub expires_at: i64,
}

impl TokenSession {
    /// The principal of this (verified) token with the user's current roles, read on the
    /// caller's connection: `None` when the user is disabled or gone or the session revoked.
    /// What [`AuthService::authenticate`] checks, for a caller that reads more in the same hop.
    pub fn principal_on(&self, c: &mut diesel::PgConnection) -> Result<Option<Principal>> {
        let user = repo::refresh_tokens::find_user_in_session(c, self.user_id, self.sid)?
            .filter(|u| !u.disabled);
        Ok(user.map(|user| Principal {
            user_id: user.id,
            email: user.email,
            roles: user.roles,
            api_token_id: None,
            meta: RequestMeta::default(),
        }))
    }
}

enum LoginOutcome {
    Ok(User, Uuid, String),
    Refused,
    Throttled(u64),
}

impl AuthService {
    pub fn new(db: Db, keys: JwtKeys) -> Self {
        Self {
            db,
            keys,
            sessions: SessionConfig::default(),
            bus: None,
        }
    }

    pub fn with_sessions(mut self, cfg: SessionConfig) -> Self {
        self.sessions = cfg;
        self
    }

    pub fn with_bus(mut self, bus: EventBus) -> Self {
        self.bus = Some(bus);
        self
    }

    /// The refresh-token lifetimes in force (e.g. for how long a browser keeps its cookie).
    pub fn session_config(&self) -> &SessionConfig {
        &self.sessions
    }

    /// Verifies email and password; every failure looks the same to the caller. Both outcomes
    /// are audited: a failure with the attempted email, never the password. Too many recent
    /// failures for the account or the address refuse the attempt (`RATE_LIMITED`) before the
    /// password is looked at.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        meta: &RequestMeta,
    ) -> Result<TokenPair> {
        let email = email.trim().to_string();
        let pw = password.to_string();
        let meta = meta.clone();
        let cfg = self.sessions.clone();
        let outcome = self
            .db
            .run(move |c| {
                let keys = Keys::of(&email, &meta);
                let failed = |reason: &str| {
                    AuditEntry::anonymous(Action::AuthLogin, "login", &meta)
                        .outcome(Outcome::Failure)
                        .detail(serde_json::json!({ "email": email, "reason": reason }))
                };
                if let Some(retry) = throttle::retry_after(c, &keys)? {
                    let entry = failed("rate_limited").detail(serde_json::json!({
                        "email": email, "reason": "rate_limited", "retryAfterSeconds": retry,
                    }));
                    c.transaction::<_, Error, _>(|c| audit::append(c, entry))?;
                    return Ok(LoginOutcome::Throttled(retry));
                }
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
                c.transaction::<_, Error, _>(|c| match user.filter(|_| ok) {
                    Some(u) => {
                        throttle::record_success(c, &cfg.throttle, &keys)?;
                        let (family, token) = sessions::start(c, &cfg, u.id)?;
                        audit::append(
                            c,
                            AuditEntry {
                                actor_id: Some(u.id),
                                actor_email: Some(u.email.clone()),
                                ..AuditEntry::anonymous(
                                    Action::AuthLogin,
                                    format!("user:{}", u.id),
                                    &meta,
                                )
                            }
                            .detail(serde_json::json!({ "session": family })),
                        )?;
                        Ok(LoginOutcome::Ok(User::from(u), family, token))
                    }
                    None => {
                        throttle::record_failure(c, &cfg.throttle, &keys)?;
                        audit::append(c, failed("bad_credentials"))?;
                        Ok(LoginOutcome::Refused)
                    }
                })
            })
            .await?;
        match outcome {
            LoginOutcome::Ok(user, family, refresh) => {
                tracing::info!(user_id = %user.id, "login succeeded");
                self.pair(&user, family, refresh)
            }
            LoginOutcome::Refused => Err(Error::Unauthenticated("invalid email or password")),
            LoginOutcome::Throttled(retry_after_seconds) => Err(Error::RateLimited {
                retry_after_seconds,
            }),
        }
    }

    /// Starts a session for a user who has just proven who they are (password or SSO): the
    /// token pair every sign-in path returns, with a new refresh-token family.
    pub async fn issue_session(&self, user: &User, _meta: &RequestMeta) -> Result<TokenPair> {
        let cfg = self.sessions.clone();
        let id = user.id;
        let (family, refresh) = self
            .db
            .run(move |c| c.transaction::<_, Error, _>(|c| sessions::start(c, &cfg, id)))
            .await?;
        self.pair(user, family, refresh)
    }

    pub(crate) fn pair(&self, user: &User, family: Uuid, refresh: String) -> Result<TokenPair> {
        Ok(TokenPair {
            access_token: self.keys.issue_for(user.id, &user.email, Some(family))?,
            refresh_token: Some(refresh),
            expires_in: self.keys.ttl_seconds,
        })
    }

    /// Resolves a bearer token into a principal with the user's current roles. A disabled
    /// user's tokens, and tokens of a revoked session (logout), stop working at once.
    /// API tokens (recognised by their prefix) are looked up in the database; anything else
    /// must be one of our JWTs.
    pub async fn authenticate(&self, bearer: &str) -> Result<Principal> {
        if crate::auth::api_tokens::is_api_token(bearer) {
            return crate::auth::api_tokens::authenticate(&self.db, bearer).await;
        }
        let claims = self.keys.verify(bearer)?;
        let session = TokenSession {
            user_id: claims.sub,
            sid: claims.sid,
            expires_at: claims.exp,
        };
        self.db
            .run(move |c| session.principal_on(c))
            .await?
            .ok_or(Error::Unauthenticated("invalid or expired access token"))
    }

    /// The session a valid access token belongs to, its signature and expiry checked (no
    /// database access: whether the session still stands is [`TokenSession::principal_on`]'s,
    /// or `authenticate`'s, to say). `None` for anything that is not one of our access tokens.
    pub fn token_session(&self, bearer: &str) -> Option<TokenSession> {
        let claims = self.keys.verify(bearer).ok()?;
        Some(TokenSession {
            user_id: claims.sub,
            sid: claims.sid,
            expires_at: claims.exp,
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
