//! Single sign-on: starting a login, finishing it (state, RFC 9207 `iss`, code, ID token), signing
//! the user in (account keyed on issuer and subject, group → role mapping) and auditing every
//! outcome as `auth.login` with `detail.method = "sso"`.

use std::collections::BTreeMap;

use base64::Engine as _;
use chrono::Utc;
use diesel::Connection;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry, Outcome};
use crate::auth::oidc::{Identity, OidcClient, OidcSettings, Rejection, oauth_code};
use crate::auth::service::{AuthService, TokenPair};
use crate::auth::{RequestMeta, Role, User};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

/// How long a started login may be finished.
pub const LOGIN_TTL_SECONDS: i64 = 600;
/// How long the one-time code handed to the front end stays valid.
pub const HANDOFF_TTL_SECONDS: i64 = 60;

/// What the transport sends the browser off with: the provider URL and the cookie secret.
pub struct LoginStart {
    pub redirect: String,
    pub binding: String,
}

/// The query of the provider's redirect to `/auth/callback`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct CallbackParams {
    pub code: Option<String>,
    pub state: Option<String>,
    pub iss: Option<String>,
    pub error: Option<String>,
}

#[derive(Clone)]
pub struct SsoService {
    db: Db,
    oidc: OidcClient,
    auth: AuthService,
}

fn random_secret() -> String {
    let mut b = [0u8; 32];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

fn sha256_hex(s: &str) -> String {
    hex::encode(Sha256::digest(s.as_bytes()))
}

/// What a refused sign-in tells the client: one stable message, the reason stays in the audit.
fn refused(r: &Rejection) -> Error {
    match r.reason {
        "provider_unavailable" | "token_endpoint_failed" => {
            Error::Unavailable(format!("single sign-on: {}", r.log))
        }
        "idp_error" => Error::Unauthenticated("the identity provider did not sign you in"),
        _ => Error::Unauthenticated("single sign-on failed"),
    }
}

impl SsoService {
    pub fn new(db: Db, settings: OidcSettings, auth: AuthService) -> Result<Self> {
        Ok(Self {
            db,
            oidc: OidcClient::new(settings)?,
            auth,
        })
    }

    pub fn settings(&self) -> &OidcSettings {
        &self.oidc.settings
    }

    /// Discovery now, so a wrong issuer shows up in the start-up log.
    pub async fn discover(&self) -> Result<()> {
        self.oidc.discover().await
    }

    /// Starts a login: a fresh cookie secret (PKCE verifier and nonce derive from it) and state;
    /// only their hashes are stored, so any api instance can finish the login, once.
    pub async fn begin(&self) -> Result<LoginStart> {
        let binding = random_secret();
        let (url, state) = self.oidc.authorization_url(&binding).await?;
        let (state_hash, binding_hash) = (sha256_hex(&state), sha256_hex(&binding));
        let expires = Utc::now() + chrono::Duration::seconds(LOGIN_TTL_SECONDS);
        self.db
            .run(move |c| repo::sso::insert_login(c, &state_hash, &binding_hash, expires))
            .await?;
        Ok(LoginStart {
            redirect: url.to_string(),
            binding,
        })
    }

    /// Finishes a login from the provider's redirect and the browser's cookie secret. Every
    /// outcome is audited; a refusal returns `UNAUTHENTICATED` with a fixed message.
    pub async fn finish(
        &self,
        params: CallbackParams,
        binding: Option<String>,
        meta: &RequestMeta,
    ) -> Result<User> {
        match self.check_and_redeem(params, binding).await {
            Ok(identity) => self.sign_in(identity, meta).await,
            Err(r) => {
                self.audit_refusal(&r, None, meta).await?;
                Err(refused(&r))
            }
        }
    }

    async fn check_and_redeem(
        &self,
        p: CallbackParams,
        binding: Option<String>,
    ) -> std::result::Result<Identity, Rejection> {
        let binding = binding.ok_or_else(|| Rejection::new("cookie_missing", "no login cookie"))?;
        let state = p
            .state
            .ok_or_else(|| Rejection::new("state_missing", "no state parameter"))?;
        let (state_hash, binding_hash) = (sha256_hex(&state), sha256_hex(&binding));
        let checked = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let Some(row) = repo::sso::lock_login(c, &state_hash)? else {
                        return Ok(Err("state_unknown"));
                    };
                    if row.binding_hash != binding_hash {
                        // Someone else's login: leave it for its own browser.
                        return Ok(Err("state_mismatch"));
                    }
                    if row.consumed_at.is_some() {
                        return Ok(Err("state_replayed"));
                    }
                    repo::sso::consume_login(c, &state_hash)?;
                    if row.expires_at <= Utc::now() {
                        return Ok(Err("state_expired"));
                    }
                    Ok(Ok(()))
                })
            })
            .await
            .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
        checked.map_err(|reason| Rejection::new(reason, "state check failed"))?;

        let (issuer, iss_required) = self
            .oidc
            .issuer()
            .await
            .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
        match &p.iss {
            Some(iss) if *iss != issuer => {
                return Err(Rejection::new("iss_mismatch", "RFC 9207 iss differs"));
            }
            None if iss_required => {
                return Err(Rejection::new("iss_missing", "RFC 9207 iss absent"));
            }
            _ => {}
        }
        if let Some(err) = &p.error {
            return Err(
                Rejection::new("idp_error", "provider returned an error").with(oauth_code(err))
            );
        }
        let code = p
            .code
            .ok_or_else(|| Rejection::new("code_missing", "no code parameter"))?;
        self.oidc.redeem(&code, &binding).await
    }

    async fn audit_refusal(
        &self,
        r: &Rejection,
        user: Option<(Uuid, String)>,
        meta: &RequestMeta,
    ) -> Result<()> {
        tracing::warn!(reason = r.reason, detail = ?r.detail, cause = %r.log, "SSO login refused");
        let entry = refusal_entry(r, user, meta);
        self.db
            .run(move |c| c.transaction::<_, Error, _>(|c| audit::append(c, entry).map(|_| ())))
            .await
    }

    /// Finds or creates the account for `id`, syncs its group roles and audits the login, all
    /// in one transaction; refusals (disabled, unverified email colliding with an account) are
    /// audited instead and change nothing.
    async fn sign_in(&self, id: Identity, meta: &RequestMeta) -> Result<User> {
        let mapping = self.settings().group_roles.clone();
        let meta2 = meta.clone();
        let outcome = self
            .db
            .run(move |c| c.transaction::<_, Error, _>(|c| sign_in_tx(c, &id, &mapping, &meta2)))
            .await?;
        match outcome {
            Ok(user) => {
                tracing::info!(user_id = %user.id, "SSO login succeeded");
                Ok(user)
            }
            Err((r, who)) => {
                self.audit_refusal(&r, who, meta).await?;
                Err(refused(&r))
            }
        }
    }

    /// The token pair for a signed-in user.
    pub async fn tokens(&self, user: &User, meta: &RequestMeta) -> Result<TokenPair> {
        self.auth.issue_session(user, meta).await
    }

    /// A one-time code the front end exchanges (once, within a minute) for the token pair.
    pub async fn create_handoff(&self, user_id: Uuid) -> Result<String> {
        let code = random_secret();
        let hash = sha256_hex(&code);
        let expires = Utc::now() + chrono::Duration::seconds(HANDOFF_TTL_SECONDS);
        self.db
            .run(move |c| repo::sso::insert_handoff(c, &hash, user_id, expires))
            .await?;
        Ok(code)
    }

    /// Redeems a hand-off code; an unknown, used or expired one is refused and audited.
    pub async fn exchange(&self, code: &str, meta: &RequestMeta) -> Result<TokenPair> {
        let hash = sha256_hex(code);
        let user = self
            .db
            .run(move |c| {
                let Some(id) = repo::sso::consume_handoff(c, &hash)? else {
                    return Ok(None);
                };
                Ok(repo::users::find(c, id)?.filter(|u| !u.disabled))
            })
            .await?;
        match user {
            Some(u) => self.auth.issue_session(&User::from(u), meta).await,
            None => {
                let r = Rejection::new("handoff_invalid", "unknown, used or expired code");
                self.audit_refusal(&r, None, meta).await?;
                Err(refused(&r))
            }
        }
    }
}

type Refusal = (Rejection, Option<(Uuid, String)>);

fn refusal_entry(r: &Rejection, user: Option<(Uuid, String)>, meta: &RequestMeta) -> AuditEntry {
    let mut detail = serde_json::json!({ "method": "sso", "reason": r.reason });
    if let Some(d) = &r.detail {
        let key = match r.reason {
            "idp_error" | "code_rejected" => "idpError",
            _ => "check",
        };
        detail[key] = serde_json::Value::String(d.clone());
    }
    let mut entry = AuditEntry::anonymous(Action::AuthLogin, "sso", meta)
        .outcome(Outcome::Failure)
        .detail(detail);
    if let Some((id, email)) = user {
        entry.actor_id = Some(id);
        entry.actor_email = Some(email);
        entry.resource = format!("user:{id}");
    }
    entry
}

fn sign_in_tx(
    c: &mut diesel::PgConnection,
    id: &Identity,
    mapping: &[(String, Role)],
    meta: &RequestMeta,
) -> Result<std::result::Result<User, Refusal>> {
    let mut created = false;
    let mut linked = false;
    let user = match repo::sso::find_by_identity(c, &id.issuer, &id.subject)? {
        Some(u) => u,
        None => {
            let Some(email) = id.email.as_deref().filter(|e| e.contains('@')) else {
                return Ok(Err((
                    Rejection::new("email_missing", "no email claim"),
                    None,
                )));
            };
            match repo::users::find_by_email(c, email)? {
                Some(existing) => {
                    let who = Some((existing.id, existing.email.clone()));
                    if repo::sso::identity_of(c, existing.id)?.is_some() {
                        let r = Rejection::new("email_taken", "email linked to another identity");
                        return Ok(Err((r, who)));
                    }
                    if !id.email_verified {
                        let r = Rejection::new(
                            "email_unverified",
                            "unverified email matches an existing account",
                        );
                        return Ok(Err((r, who)));
                    }
                    if existing.disabled {
                        return Ok(Err((Rejection::new("user_disabled", "disabled"), who)));
                    }
                    repo::sso::link_identity(c, existing.id, &id.issuer, &id.subject)?;
                    linked = true;
                    existing
                }
                None => {
                    created = true;
                    let name = id.name.clone().unwrap_or_default();
                    repo::sso::insert_user(c, email, &name, &id.issuer, &id.subject)?
                }
            }
        }
    };
    if user.disabled {
        let who = Some((user.id, user.email.clone()));
        return Ok(Err((Rejection::new("user_disabled", "disabled"), who)));
    }

    // Group mapping at every login: the roles the groups grant now, each with its group.
    let mut wanted: BTreeMap<Role, &str> = BTreeMap::new();
    for (group, role) in mapping {
        if id.groups.iter().any(|g| g == group) {
            wanted.entry(*role).or_insert(group.as_str());
        }
    }
    let held = repo::sso::sso_grants_of(c, user.id)?;
    let resource = format!("user:{}", user.id);
    let (mut added, mut removed) = (Vec::new(), Vec::new());
    for (role, group) in &held {
        if !wanted.contains_key(role) {
            repo::sso::revoke_sso_role(c, user.id, *role)?;
            removed.push(role.as_str());
            let entry = AuditEntry::anonymous(Action::RoleRevoke, resource.clone(), meta).detail(
                serde_json::json!({"method": "sso", "role": role.as_str(), "group": group}),
            );
            audit::append(c, entry)?;
        }
    }
    for (role, group) in &wanted {
        if held.iter().any(|(r, _)| r == role) {
            continue;
        }
        if repo::sso::grant_sso_role(c, user.id, *role, group)? {
            added.push(role.as_str());
            let entry = AuditEntry::anonymous(Action::RoleAssign, resource.clone(), meta).detail(
                serde_json::json!({"method": "sso", "role": role.as_str(), "group": group}),
            );
            audit::append(c, entry)?;
        }
    }
    let entry = AuditEntry {
        actor_id: Some(user.id),
        actor_email: Some(user.email.clone()),
        ..AuditEntry::anonymous(Action::AuthLogin, resource, meta)
    }
    .detail(serde_json::json!({
        "method": "sso",
        "issuer": id.issuer,
        "created": created,
        "linked": linked,
        "rolesAdded": added,
        "rolesRemoved": removed,
    }));
    audit::append(c, entry)?;
    Ok(Ok(User::from(user)))
}
