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
    /// The token could not be checked because a backing service (Postgres) is unreachable:
    /// the request answers `UNAVAILABLE`, not `UNAUTHENTICATED` (the token may well be good).
    pub unavailable: bool,
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
                token_error: Some("Authorization header must be `Bearer <token>`"),
                ..Self::default()
            };
        };
        match auth.authenticate(token).await {
            Ok(p) => Self {
                principal: Some(p),
                ..Self::default()
            },
            Err(Error::Unauthenticated(msg)) => Self {
                token_error: Some(msg),
                ..Self::default()
            },
            Err(Error::Unavailable(e)) => {
                tracing::warn!(error = %e, "access token not checked: a backing service is unavailable");
                Self {
                    token_error: Some("could not verify the access token"),
                    unavailable: true,
                    ..Self::default()
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "could not resolve access token");
                Self {
                    token_error: Some("could not verify the access token"),
                    ..Self::default()
                }
            }
        }
    }
}

impl RequestAuth {
    /// The caller, or an `UNAUTHENTICATED` error when a bad token was sent.
    pub fn caller(&self) -> Result<Option<&Principal>, Error> {
        if self.unavailable {
            return Err(Error::Unavailable("access token not checked".into()));
        }
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
