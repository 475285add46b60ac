//! Per-request authentication state handed to resolvers.

use async_graphql::Context;
use tms_core::auth::Principal;
use tms_core::{Error, auth::service::AuthService};

/// What the transport learnt about the caller. A present-but-invalid token is kept as an error so
/// that it is reported as such instead of silently degrading to anonymous.
#[derive(Clone, Debug, Default)]
pub struct RequestAuth {
    pub principal: Option<Principal>,
    pub token_error: Option<&'static str>,
}

impl RequestAuth {
    /// Resolves an `Authorization` header value (or `None`).
    pub async fn from_header(auth: &AuthService, header: Option<&str>) -> Self {
        let Some(value) = header else {
            return Self::default();
        };
        let Some(token) = value
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty())
        else {
            return Self {
                principal: None,
                token_error: Some("Authorization header must be `Bearer <token>`"),
            };
        };
        match auth.authenticate(token).await {
            Ok(p) => Self {
                principal: Some(p),
                token_error: None,
            },
            Err(Error::Unauthenticated(msg)) => Self {
                principal: None,
                token_error: Some(msg),
            },
            Err(e) => {
                tracing::warn!(error = %e, "could not resolve access token");
                Self {
                    principal: None,
                    token_error: Some("could not verify the access token"),
                }
            }
        }
    }
}

impl RequestAuth {
    /// The caller, or an `UNAUTHENTICATED` error when a bad token was sent.
    pub fn caller(&self) -> Result<Option<&Principal>, Error> {
        match self.token_error {
            Some(msg) => Err(Error::Unauthenticated(msg)),
            None => Ok(self.principal.as_ref()),
        }
    }
}

/// The caller of this request, or an `UNAUTHENTICATED` error when a bad token was sent.
pub fn caller<'a>(ctx: &'a Context<'_>) -> Result<Option<&'a Principal>, Error> {
    match ctx.data_opt::<RequestAuth>() {
        Some(a) => a.caller(),
        None => Ok(None),
    }
}
