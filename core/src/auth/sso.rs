//! Single sign-on: starting a login, finishing it (state, RFC 9207 `iss`, code, ID token), signing
//! the user in (account keyed on issuer and subject, group → role mapping) and auditing every
//! outcome as `auth.login` with `detail.method = "sso"`. Native apps (RFC 8252) get the one-time
//! code at their loopback redirect and redeem it with their PKCE verifier (`sso_native`).

use base64::Engine as _;
use chrono::Utc;
use diesel::Connection;
use rand::RngCore;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit;
use crate::auth::oidc::{Identity, OidcClient, OidcSettings, Rejection, oauth_code};
use crate::auth::service::{AuthService, TokenPair};
use crate::auth::sso_account::{refusal_entry, sign_in_tx};
use crate::auth::sso_native::{NativeRedirect, verifier_matches};
use crate::auth::{RequestMeta, User};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

/// How long a started login may be finished.
pub const LOGIN_TTL_SECONDS: i64 = 600;
/// How long the one-time code handed to the front end (or a native app) stays valid.
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
    /// only their hashes are stored, so any api instance can finish the login, once. A native
    /// app's loopback redirect, challenge and state are kept with it.
    pub async fn begin(&self, native: Option<&NativeRedirect>) -> Result<LoginStart> {
        let binding = random_secret();
        let (url, state) = self.oidc.authorization_url(&binding).await?;
        let (state_hash, binding_hash) = (sha256_hex(&state), sha256_hex(&binding));
        let expires = Utc::now() + chrono::Duration::seconds(LOGIN_TTL_SECONDS);
        let native = native.map(|n| {
            (
                n.redirect_uri.to_string(),
                n.code_challenge.clone(),
                n.state.clone(),
            )
        });
        self.db
            .run(move |c| {
                let native =
                    native
                        .as_ref()
                        .map(|(uri, challenge, state)| repo::sso::NativeLogin {
                            redirect_uri: uri,
                            code_challenge: challenge,
                            client_state: state,
                        });
                repo::sso::insert_login(c, &state_hash, &binding_hash, expires, native)
            })
            .await?;
        Ok(LoginStart {
            redirect: url.to_string(),
            binding,
        })
    }

    /// Finishes a login from the provider's redirect and the browser's cookie secret. Every
    /// outcome is audited; a refusal returns `UNAUTHENTICATED` with a fixed message. Once the
    /// state check passed, a native app's redirect comes back too, with success or refusal.
    pub async fn finish(
        &self,
        params: CallbackParams,
        binding: Option<String>,
        meta: &RequestMeta,
    ) -> (Option<NativeRedirect>, Result<User>) {
        let mut native = None;
        let result = match self.check_and_redeem(params, binding, &mut native).await {
            Ok(identity) => self.sign_in(identity, native.is_some(), meta).await,
            Err(r) => match self.audit_refusal(&r, None, meta).await {
                Ok(()) => Err(refused(&r)),
                Err(e) => Err(e),
            },
        };
        (native, result)
    }

    async fn check_and_redeem(
        &self,
        p: CallbackParams,
        binding: Option<String>,
        native: &mut Option<NativeRedirect>,
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
                    Ok(Ok(row))
                })
            })
            .await
            .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
        let row = checked.map_err(|reason| Rejection::new(reason, "state check failed"))?;
        *native = native_of(row);

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
    async fn sign_in(&self, id: Identity, native: bool, meta: &RequestMeta) -> Result<User> {
        let mapping = self.settings().group_roles.clone();
        let meta2 = meta.clone();
        let outcome = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| sign_in_tx(c, &id, &mapping, native, &meta2))
            })
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

    /// A one-time code the front end exchanges (once, within a minute) for the token pair; a
    /// native app's code carries its PKCE challenge and needs the verifier.
    pub async fn create_handoff(
        &self,
        user_id: Uuid,
        code_challenge: Option<String>,
    ) -> Result<String> {
        let code = random_secret();
        let hash = sha256_hex(&code);
        let expires = Utc::now() + chrono::Duration::seconds(HANDOFF_TTL_SECONDS);
        self.db
            .run(move |c| {
                repo::sso::insert_handoff(c, &hash, user_id, expires, code_challenge.as_deref())
            })
            .await?;
        Ok(code)
    }

    /// Redeems a browser hand-off code (no PKCE): [`Self::exchange_with_verifier`] without one.
    pub async fn exchange(&self, code: &str, meta: &RequestMeta) -> Result<TokenPair> {
        self.exchange_with_verifier(code, None, meta).await
    }

    /// Redeems a hand-off code; an unknown, used or expired one is refused and audited. A code
    /// issued with a PKCE challenge needs its verifier, one issued without refuses any: a wrong
    /// or missing verifier is refused too, and the code is spent either way.
    pub async fn exchange_with_verifier(
        &self,
        code: &str,
        verifier: Option<&str>,
        meta: &RequestMeta,
    ) -> Result<TokenPair> {
        let hash = sha256_hex(code);
        let found = self
            .db
            .run(move |c| {
                let Some((id, challenge)) = repo::sso::consume_handoff(c, &hash)? else {
                    return Ok(None);
                };
                Ok(Some((repo::users::find(c, id)?, challenge)))
            })
            .await?;
        let rejection = match found {
            None => Rejection::new("handoff_invalid", "unknown, used or expired code"),
            Some((user, challenge)) => {
                let pkce_ok = match (challenge.as_deref(), verifier) {
                    (None, None) => true,
                    (Some(ch), Some(v)) => verifier_matches(v, ch),
                    _ => false,
                };
                match user {
                    Some(u) if !pkce_ok => {
                        let r = Rejection::new("pkce_mismatch", "code_verifier missing or wrong");
                        self.audit_refusal(&r, Some((u.id, u.email.clone())), meta)
                            .await?;
                        return Err(refused(&r));
                    }
                    Some(u) if !u.disabled => {
                        return self.auth.issue_session(&User::from(u), meta).await;
                    }
                    _ => Rejection::new("handoff_invalid", "user gone or disabled"),
                }
            }
        };
        self.audit_refusal(&rejection, None, meta).await?;
        Err(refused(&rejection))
    }
}

/// The native-app part of a pending login, if it had one (the columns are all set or none).
fn native_of(row: repo::sso::LoginRow) -> Option<NativeRedirect> {
    let uri = row.native_redirect_uri?;
    Some(NativeRedirect {
        redirect_uri: uri.parse().ok()?,
        code_challenge: row.code_challenge?,
        state: row.client_state?,
    })
}
