//! OpenID Connect client: settings, discovery, the authorization URL (PKCE S256, state, nonce),
//! code redemption without following redirects, and ID-token verification.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use openidconnect::core::{
    CoreAuthDisplay, CoreAuthPrompt, CoreAuthenticationFlow, CoreClaimName, CoreClaimType,
    CoreClientAuthMethod, CoreErrorResponseType, CoreGenderClaim, CoreGrantType, CoreJsonWebKey,
    CoreJweContentEncryptionAlgorithm, CoreJweKeyManagementAlgorithm, CoreJwsSigningAlgorithm,
    CoreResponseMode, CoreResponseType, CoreRevocableToken, CoreRevocationErrorResponse,
    CoreSubjectIdentifierType, CoreTokenIntrospectionResponse, CoreTokenType,
};
pub use openidconnect::url;
use openidconnect::{
    AccessTokenHash, AdditionalClaims, AdditionalProviderMetadata, AuthorizationCode, ClientId,
    ClientSecret, CsrfToken, EmptyExtraTokenFields, EndpointMaybeSet, EndpointNotSet, EndpointSet,
    IssuerUrl, JsonWebKey, JwsSigningAlgorithm, Nonce, OAuth2TokenResponse, PkceCodeChallenge,
    PkceCodeVerifier, ProviderMetadata, RedirectUrl, RequestTokenError, Scope,
    StandardErrorResponse, StandardTokenResponse, TokenResponse,
};
use serde::{Deserialize, Serialize};
use tokio::sync::RwLock;
use url::Url;

use crate::error::{Error, Result};

pub use settings::{OidcSettings, parse_group_roles, parse_issuer, parse_url};

mod checks;
mod settings;

use checks::{check_of, header_fields};
pub use checks::{derive, oauth_code};

/// The `groups` claim, besides the standard ones.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct GroupsClaim {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub groups: Option<Vec<String>>,
}
impl AdditionalClaims for GroupsClaim {}

/// RFC 9207: whether the provider promises an `iss` parameter in authorization responses.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct IssMetadata {
    #[serde(default)]
    pub authorization_response_iss_parameter_supported: bool,
}
impl AdditionalProviderMetadata for IssMetadata {}

type Metadata = ProviderMetadata<
    IssMetadata,
    CoreAuthDisplay,
    CoreClientAuthMethod,
    CoreClaimName,
    CoreClaimType,
    CoreGrantType,
    CoreJweContentEncryptionAlgorithm,
    CoreJweKeyManagementAlgorithm,
    CoreJsonWebKey,
    CoreResponseMode,
    CoreResponseType,
    CoreSubjectIdentifierType,
>;
type IdFields = openidconnect::IdTokenFields<
    GroupsClaim,
    EmptyExtraTokenFields,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJwsSigningAlgorithm,
>;
type Tokens = StandardTokenResponse<IdFields, CoreTokenType>;
type Client = openidconnect::Client<
    GroupsClaim,
    CoreAuthDisplay,
    CoreGenderClaim,
    CoreJweContentEncryptionAlgorithm,
    CoreJsonWebKey,
    CoreAuthPrompt,
    StandardErrorResponse<CoreErrorResponseType>,
    Tokens,
    CoreTokenIntrospectionResponse,
    CoreRevocableToken,
    CoreRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointMaybeSet,
    EndpointMaybeSet,
>;

/// What discovery taught us about the provider.
struct Provider {
    client: Client,
    issuer: String,
    iss_param_required: bool,
    groups_scope: bool,
    /// Asymmetric algorithms the provider signs ID tokens with: never `none`, never HS*.
    algs: Vec<CoreJwsSigningAlgorithm>,
    kids: HashSet<String>,
    fetched: Instant,
}

/// A verified sign-in: who the provider says the user is.
#[derive(Debug, Clone)]
pub struct Identity {
    pub issuer: String,
    pub subject: String,
    pub email: Option<String>,
    pub email_verified: bool,
    pub name: Option<String>,
    pub groups: Vec<String>,
}

/// Why a callback was refused: a stable `reason` for the audit log, an optional stable detail
/// (an OAuth error code or the failed ID-token check), and a cause for the server log only.
#[derive(Debug, Clone)]
pub struct Rejection {
    pub reason: &'static str,
    pub detail: Option<String>,
    pub log: String,
}

impl Rejection {
    pub fn new(reason: &'static str, log: impl Into<String>) -> Self {
        Self {
            reason,
            detail: None,
            log: log.into(),
        }
    }
    pub fn with(mut self, detail: impl Into<String>) -> Self {
        self.detail = Some(detail.into());
        self
    }
}

/// How long a discovery (and its JWKS) is trusted before an unknown `kid` may refresh it.
const JWKS_REFRESH_AFTER: Duration = Duration::from_secs(60);

/// The OIDC client of one api process; discovery happens on first use and is cached.
#[derive(Clone)]
pub struct OidcClient {
    pub settings: Arc<OidcSettings>,
    http: openidconnect::reqwest::Client,
    provider: Arc<RwLock<Option<Arc<Provider>>>>,
}

impl OidcClient {
    pub fn new(settings: OidcSettings) -> Result<Self> {
        let http = openidconnect::reqwest::ClientBuilder::new()
            // Following redirects would open the token and discovery calls to SSRF.
            .redirect(openidconnect::reqwest::redirect::Policy::none())
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(Error::internal)?;
        Ok(Self {
            settings: Arc::new(settings),
            http,
            provider: Arc::new(RwLock::new(None)),
        })
    }

    /// Runs discovery now (at start-up, to report a misconfiguration early).
    pub async fn discover(&self) -> Result<()> {
        self.provider(false).await.map(|_| ())
    }

    async fn provider(&self, refresh: bool) -> Result<Arc<Provider>> {
        if let Some(p) = self.provider.read().await.as_ref()
            && (!refresh || p.fetched.elapsed() < JWKS_REFRESH_AFTER)
        {
            return Ok(p.clone());
        }
        let mut slot = self.provider.write().await;
        if let Some(p) = slot.as_ref()
            && (!refresh || p.fetched.elapsed() < JWKS_REFRESH_AFTER)
        {
            return Ok(p.clone());
        }
        let p = Arc::new(self.fetch().await?);
        *slot = Some(p.clone());
        Ok(p)
    }

    async fn fetch(&self) -> Result<Provider> {
        let s = &self.settings;
        let issuer = IssuerUrl::new(s.issuer.clone())
            .map_err(|e| Error::Unavailable(format!("OIDC issuer: {e}")))?;
        // Checks that the document's `issuer` is exactly ours and fetches the JWKS.
        let meta = Metadata::discover_async(issuer, &self.http)
            .await
            .map_err(|e| {
                Error::Unavailable(format!("OIDC discovery: {}", crate::error::report(&e)))
            })?;
        let algs: Vec<CoreJwsSigningAlgorithm> = meta
            .id_token_signing_alg_values_supported()
            .iter()
            .filter(|a| !a.uses_shared_secret())
            .cloned()
            .collect();
        if algs.is_empty() {
            return Err(Error::Unavailable(
                "OIDC discovery: the provider offers no asymmetric ID-token algorithm".into(),
            ));
        }
        let kids = meta
            .jwks()
            .keys()
            .iter()
            .filter_map(|k| k.key_id().map(|id| id.to_string()))
            .collect();
        let groups_scope = meta
            .scopes_supported()
            .is_some_and(|s| s.iter().any(|s| s.as_str() == "groups"));
        let iss_param_required = meta
            .additional_metadata()
            .authorization_response_iss_parameter_supported;
        let issuer = meta.issuer().to_string();
        let redirect = RedirectUrl::from_url(s.redirect_url.clone());
        let client = Client::from_provider_metadata(
            meta,
            ClientId::new(s.client_id.clone()),
            s.client_secret.clone().map(ClientSecret::new),
        )
        .set_redirect_uri(redirect);
        tracing::info!(issuer = %issuer, ?algs, "OIDC provider discovered");
        Ok(Provider {
            client,
            issuer,
            iss_param_required,
            groups_scope,
            algs,
            kids,
            fetched: Instant::now(),
        })
    }

    /// The issuer as the provider names itself (compared with RFC 9207 `iss`), and whether the
    /// provider promises that parameter.
    pub async fn issuer(&self) -> Result<(String, bool)> {
        let p = self.provider(false).await?;
        Ok((p.issuer.clone(), p.iss_param_required))
    }

    /// The authorization URL for a login bound to `binding` (the cookie secret), and its state.
    pub async fn authorization_url(&self, binding: &str) -> Result<(Url, String)> {
        let p = self.provider(false).await?;
        let verifier = PkceCodeVerifier::new(derive(binding, "pkce"));
        let challenge = PkceCodeChallenge::from_code_verifier_sha256(&verifier);
        let nonce = derive(binding, "nonce");
        let mut req = p
            .client
            .authorize_url(
                CoreAuthenticationFlow::AuthorizationCode,
                CsrfToken::new_random,
                move || Nonce::new(nonce),
            )
            .add_scope(Scope::new("email".into()))
            .add_scope(Scope::new("profile".into()))
            .set_pkce_challenge(challenge);
        if p.groups_scope {
            req = req.add_scope(Scope::new("groups".into()));
        }
        let (url, state, _nonce) = req.url();
        Ok((url, state.secret().clone()))
    }

    /// Redeems `code` (PKCE verifier derived from `binding`) and verifies the ID token.
    pub async fn redeem(
        &self,
        code: &str,
        binding: &str,
    ) -> std::result::Result<Identity, Rejection> {
        let p = self
            .provider(false)
            .await
            .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
        let request = p
            .client
            .exchange_code(AuthorizationCode::new(code.to_string()))
            .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?
            .set_pkce_verifier(PkceCodeVerifier::new(derive(binding, "pkce")));
        let tokens = request
            .request_async(&self.http)
            .await
            .map_err(|e| match e {
                RequestTokenError::ServerResponse(r) => {
                    let code = match r.error() {
                        CoreErrorResponseType::InvalidGrant => "invalid_grant".to_string(),
                        other => oauth_code(&format!("{other:?}").to_lowercase()),
                    };
                    Rejection::new("code_rejected", format!("token endpoint: {r}")).with(code)
                }
                // Only the path: serde's message may quote the offending value (a token).
                RequestTokenError::Parse(err, _) => Rejection::new(
                    "id_token_invalid",
                    format!("token response does not parse at `{}`", err.path()),
                )
                .with("malformed"),
                other => Rejection::new("token_endpoint_failed", crate::error::report(&other)),
            })?;
        let id_token = tokens
            .id_token()
            .ok_or_else(|| Rejection::new("id_token_missing", "no id_token in the response"))?;

        // The algorithm must be one the provider signs with (never `none`, never HS*); checked
        // first so a token without a signature is reported as such.
        let (alg, kid) = header_fields(&id_token.to_string());
        let alg_ok = alg.as_deref().is_some_and(|a| {
            p.algs.iter().any(|x| {
                serde_json::to_value(x)
                    .ok()
                    .and_then(|v| v.as_str().map(|s| s == a))
                    == Some(true)
            })
        });
        if !alg_ok {
            return Err(Rejection::new(
                "id_token_invalid",
                format!("algorithm {alg:?} not allowed"),
            )
            .with("alg"));
        }
        // The key must be named (`kid`) and published; an unknown one may mean rotation, so the
        // JWKS is fetched again (at most once a minute) before giving up.
        let kid = kid.ok_or_else(|| Rejection::new("id_token_invalid", "no kid").with("kid"))?;
        let p = if p.kids.contains(&kid) {
            p
        } else {
            let fresh = self
                .provider(true)
                .await
                .map_err(|e| Rejection::new("provider_unavailable", e.to_string()))?;
            if !fresh.kids.contains(&kid) {
                return Err(
                    Rejection::new("id_token_invalid", format!("unknown kid `{kid}`")).with("kid"),
                );
            }
            fresh
        };
        let verifier = p
            .client
            .id_token_verifier()
            .set_allowed_algs(p.algs.clone());
        let nonce = Nonce::new(derive(binding, "nonce"));
        let claims = id_token
            .claims(&verifier, &nonce)
            .map_err(|e| Rejection::new("id_token_invalid", e.to_string()).with(check_of(&e)))?;
        if let Some(expected) = claims.access_token_hash() {
            let alg = id_token
                .signing_alg()
                .map_err(|e| Rejection::new("id_token_invalid", e.to_string()).with("signature"))?;
            let key = id_token
                .signing_key(&verifier)
                .map_err(|e| Rejection::new("id_token_invalid", e.to_string()).with("signature"))?;
            let actual = AccessTokenHash::from_token(tokens.access_token(), alg, key)
                .map_err(|e| Rejection::new("id_token_invalid", e.to_string()).with("at_hash"))?;
            if actual != *expected {
                return Err(Rejection::new("id_token_invalid", "at_hash mismatch").with("at_hash"));
            }
        }
        Ok(Identity {
            issuer: p.issuer.clone(),
            subject: claims.subject().to_string(),
            email: claims.email().map(|e| e.to_string()),
            email_verified: claims.email_verified() == Some(true),
            name: claims
                .name()
                .and_then(|n| n.get(None))
                .map(|n| n.to_string()),
            groups: claims
                .additional_claims()
                .groups
                .clone()
                .unwrap_or_default(),
        })
    }
}
