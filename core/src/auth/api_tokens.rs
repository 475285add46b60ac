//! API tokens for service accounts (e.g. monitoring pollers): created, listed and revoked by
//! admins (`ManageUsers`); each carries exactly one role and acts for the admin who created it.
//!
//! The secret is `tms_` followed by 256 random bits (base64url), shown once; only its SHA-256
//! is stored. Every request looks the token up (no cache), so a revocation, an expiry or the
//! creator being disabled or losing `admin` takes effect on the very next request.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Duration, Utc};
use diesel::Connection;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry};
use crate::auth::revocations;
use crate::auth::sessions::SessionRevoked;
use crate::auth::{Permission, Principal, RequestMeta, Role};
use crate::bus::EventBus;
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::api_tokens::{ApiTokenRow, NewApiToken};

/// What every API token starts with: lets `authenticate` tell it from a JWT (which starts with
/// `eyJ`), and lets secret scanners recognise a leaked one.
pub const PREFIX: &str = "tms_";
const SECRET_BYTES: usize = 32;
pub const MAX_NAME_CHARS: usize = 100;
pub const MAX_EXPIRY_DAYS: i32 = 3650;
/// `lastUsedAt` is written at most this often per token.
pub const TOUCH_EVERY_SECONDS: i64 = 60;

const REFUSED: Error = Error::Unauthenticated("invalid, expired or revoked API token");

/// A token as listed (never its secret or hash).
#[derive(Debug, Clone, PartialEq)]
pub struct ApiToken {
    pub id: Uuid,
    pub name: String,
    pub role: Role,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
}

impl TryFrom<ApiTokenRow> for ApiToken {
    type Error = Error;
    fn try_from(r: ApiTokenRow) -> Result<Self> {
        Ok(ApiToken {
            role: r
                .role
                .parse()
                .map_err(|e| Error::Internal(format!("api token {}: {e}", r.id)))?,
            id: r.id,
            name: r.name,
            created_by: r.created_by,
            created_at: r.created_at,
            expires_at: r.expires_at,
            last_used_at: r.last_used_at,
        })
    }
}

/// A new token and its secret. `Debug` leaves the secret out so it cannot reach a log line.
pub struct CreatedApiToken {
    pub token: String,
    pub api_token: ApiToken,
}

impl std::fmt::Debug for CreatedApiToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CreatedApiToken")
            .field("token", &"<redacted>")
            .field("api_token", &self.api_token)
            .finish()
    }
}

pub fn is_api_token(bearer: &str) -> bool {
    bearer.starts_with(PREFIX)
}

fn hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

fn new_secret() -> String {
    let mut bytes = [0u8; SECRET_BYTES];
    rand::fill(&mut bytes);
    format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes))
}

fn resource(id: Uuid) -> String {
    format!("api_token:{id}")
}

/// Checks `name` and `expiresInDays` as the API names them.
fn validate(name: &str, expires_in_days: Option<i32>) -> Result<()> {
    let mut problems = Vec::new();
    if name.trim().is_empty() {
        problems.push(crate::FieldError::new("name", "must not be empty"));
    } else if name.chars().count() > MAX_NAME_CHARS {
        problems.push(crate::FieldError::new(
            "name",
            format!("must be at most {MAX_NAME_CHARS} characters"),
        ));
    }
    if let Some(d) = expires_in_days
        && !(1..=MAX_EXPIRY_DAYS).contains(&d)
    {
        problems.push(crate::FieldError::new(
            "expiresInDays",
            format!("must be between 1 and {MAX_EXPIRY_DAYS}"),
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(Error::Validation(problems))
    }
}

#[derive(Clone)]
pub struct ApiTokenService {
    db: Db,
    /// Where revocations are announced, so that sockets opened with a revoked token close at
    /// once (without it they close when a request is refused).
    bus: Option<EventBus>,
}

impl ApiTokenService {
    pub fn new(db: Db, bus: Option<EventBus>) -> Self {
        Self { db, bus }
    }

    /// Creates a token holding `role`, expiring after `expires_in_days` (never, without it).
    pub async fn create(
        &self,
        who: Option<&Principal>,
        name: &str,
        role: Role,
        expires_in_days: Option<i32>,
    ) -> Result<CreatedApiToken> {
        let who = audit::require(&self.db, who, Permission::ManageUsers)
            .await?
            .clone();
        validate(name, expires_in_days)?;
        let name = name.trim().to_string();
        let secret = new_secret();
        let token_hash = hash(&secret);
        let expires_at = expires_in_days.map(|d| Utc::now() + Duration::days(d.into()));
        let row = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let row = repo::api_tokens::insert(
                        c,
                        &NewApiToken {
                            id: Uuid::now_v7(),
                            name: &name,
                            role: role.as_str(),
                            token_hash: &token_hash,
                            created_by: who.user_id,
                            expires_at,
                        },
                    )?;
                    let entry = AuditEntry::by(&who, Action::ApiTokenCreate, resource(row.id))
                        .detail(serde_json::json!({
                            "name": row.name,
                            "role": row.role,
                            "expiresAt": row.expires_at,
                        }));
                    audit::append(c, entry)?;
                    Ok(row)
                })
            })
            .await?;
        tracing::info!(api_token_id = %row.id, role = %row.role, "api token created");
        Ok(CreatedApiToken {
            token: secret,
            api_token: row.try_into()?,
        })
    }

    /// Live (not revoked) tokens, newest first; expired ones are listed until revoked.
    pub async fn list(&self, who: Option<&Principal>) -> Result<Vec<ApiToken>> {
        audit::require(&self.db, who, Permission::ManageUsers).await?;
        self.db
            .run(repo::api_tokens::list_live)
            .await?
            .into_iter()
            .map(ApiToken::try_from)
            .collect()
    }

    /// Revokes a token; `false` when it was already revoked. Effective on the next request.
    pub async fn revoke(&self, who: Option<&Principal>, id: Uuid) -> Result<bool> {
        let who = audit::require(&self.db, who, Permission::ManageUsers)
            .await?
            .clone();
        let (changed, creator) = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let (changed, creator) =
                        repo::api_tokens::revoke(c, id)?.ok_or(Error::NotFound("api token"))?;
                    if changed {
                        audit::append(
                            c,
                            AuditEntry::by(&who, Action::ApiTokenRevoke, resource(id)),
                        )?;
                    }
                    Ok((changed, creator))
                })
            })
            .await?;
        if let (true, Some(bus)) = (changed, &self.bus) {
            // Sockets opened with an API token watch its id as their session.
            let notice = SessionRevoked {
                user_id: creator,
                family_id: Some(id),
                reason: "api token revoked".into(),
            };
            revocations::publish(bus, &notice).await;
        }
        Ok(changed)
    }
}

/// Resolves an API token into a principal holding exactly the token's role, acting as the
/// admin who created it. Refused (all alike) when unknown, revoked, expired, or when the
/// creator is disabled or no longer an admin.
pub async fn authenticate(db: &Db, secret: &str) -> Result<Principal> {
    let token_hash = hash(secret);
    let now = Utc::now();
    let owner = db
        .run(move |c| {
            let owner = repo::api_tokens::find_by_hash(c, &token_hash)?;
            if let Some(o) = &owner {
                let due = o
                    .token
                    .last_used_at
                    .is_none_or(|t| now - t >= Duration::seconds(TOUCH_EVERY_SECONDS));
                if due && o.token.revoked_at.is_none() {
                    repo::api_tokens::touch(
                        c,
                        o.token.id,
                        now - Duration::seconds(TOUCH_EVERY_SECONDS),
                    )?;
                }
            }
            Ok(owner)
        })
        .await?
        .ok_or(REFUSED)?;
    let t = &owner.token;
    let live = t.revoked_at.is_none()
        && t.expires_at.is_none_or(|e| e > now)
        && !owner.disabled
        && owner.still_admin;
    if !live {
        tracing::info!(api_token_id = %t.id, "refused an API token that is no longer valid");
        return Err(REFUSED);
    }
    let role: Role = t
        .role
        .parse()
        .map_err(|e| Error::Internal(format!("api token {}: {e}", t.id)))?;
    Ok(Principal {
        user_id: t.created_by,
        email: owner.email,
        roles: vec![role],
        api_token_id: Some(t.id),
        meta: RequestMeta::default(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secrets_are_prefixed_long_and_distinct() {
        let a = new_secret();
        let b = new_secret();
        assert!(is_api_token(&a), "{a}");
        // 32 bytes → 43 base64url characters.
        assert_eq!(a.len(), PREFIX.len() + 43);
        assert_ne!(a, b);
        assert_ne!(hash(&a), hash(&b));
        assert!(!is_api_token("eyJhbGciOiJIUzI1NiJ9.e30.x"));
    }

    #[test]
    fn validation_names_the_field() {
        let fields = |r: Result<()>| match r {
            Err(Error::Validation(v)) => v.into_iter().map(|f| f.field).collect::<Vec<_>>(),
            other => panic!("expected a validation error, got {other:?}"),
        };
        assert_eq!(fields(validate(" ", None)), ["name"]);
        assert_eq!(fields(validate(&"x".repeat(101), Some(1))), ["name"]);
        assert_eq!(fields(validate("ok", Some(0))), ["expiresInDays"]);
        assert_eq!(fields(validate("ok", Some(3651))), ["expiresInDays"]);
        assert!(validate(&"x".repeat(100), Some(3650)).is_ok());
        assert!(validate("ok", None).is_ok());
    }

    #[test]
    fn debug_never_shows_the_secret() {
        let c = CreatedApiToken {
            token: "tms_secret-value".into(),
            api_token: ApiToken {
                id: Uuid::nil(),
                name: "n".into(),
                role: Role::Viewer,
                created_by: Uuid::nil(),
                created_at: Utc::now(),
                expires_at: None,
                last_used_at: None,
            },
        };
        assert!(!format!("{c:?}").contains("secret-value"));
    }
}
