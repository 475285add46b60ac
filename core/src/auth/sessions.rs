//! Sessions: refresh-token families, rotation with re-use detection, and the revocation notices
//! that end open WebSocket subscriptions on every api instance.
//!
//! A refresh token is 256 random bits, shown once, stored as its SHA-256. Every use rotates it.
//! Presenting an already rotated token is re-use: the whole family (the newest token too) is
//! revoked and `auth.token_reuse` audited — except within `reuse_grace_seconds` of the rotation,
//! where it is taken for a concurrent refresh by the same client (two tabs) and merely refused.

use base64::Engine;
use chrono::{DateTime, Duration, Utc};
use diesel::PgConnection;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::auth::throttle::ThrottleConfig;
use crate::error::Result;
use crate::repo;
use crate::repo::users::UserRow;

/// Prefix of refresh tokens, so that secret scanners (and people) can recognise one.
pub const REFRESH_PREFIX: &str = "tmsr_";

/// Redis channel carrying [`SessionRevoked`] notices.
pub const REVOCATIONS_CHANNEL: &str = "tms:session-revoked";

#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// A refresh token unused this long expires (each rotation starts a new idle period).
    pub refresh_idle_seconds: i64,
    /// No session outlives this, however often it is refreshed.
    pub refresh_absolute_seconds: i64,
    /// A rotated token presented again within this many seconds is refused without revoking
    /// the family (a concurrent refresh, not a replay). 0 treats every second use as re-use.
    pub reuse_grace_seconds: i64,
    pub throttle: ThrottleConfig,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            refresh_idle_seconds: 14 * 24 * 3600,
            refresh_absolute_seconds: 30 * 24 * 3600,
            reuse_grace_seconds: 2,
            throttle: ThrottleConfig::default(),
        }
    }
}

/// Published after a session (one family) or all of a user's sessions were revoked.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SessionRevoked {
    pub user_id: Uuid,
    /// `None`: every session of the user (disabled).
    pub family_id: Option<Uuid>,
    pub reason: String,
}

impl SessionRevoked {
    /// Whether a connection of `user_id` opened with a token of session `sid` is affected (an
    /// API token's connection passes the token's id: its revocation names it as the family).
    pub fn ends(&self, user_id: Uuid, sid: Option<Uuid>) -> bool {
        self.user_id == user_id
            && match self.family_id {
                None => true,
                // A connection whose token names no session ends with any of the user's
                // revocations: it cannot be told apart.
                Some(f) => sid.is_none_or(|s| s == f),
            }
    }
}

pub fn hash(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

fn new_token() -> String {
    let bytes: [u8; 32] = rand::random();
    format!(
        "{REFRESH_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// Starts a family for `user_id` with its first token; returns (family id, token). Call inside
/// the transaction that records the sign-in.
pub fn start(
    conn: &mut PgConnection,
    cfg: &SessionConfig,
    user_id: Uuid,
) -> Result<(Uuid, String)> {
    let now = Utc::now();
    let family = repo::refresh_tokens::insert_family(
        conn,
        user_id,
        now + Duration::seconds(cfg.refresh_absolute_seconds),
    )?;
    let token = next_in(conn, cfg, family.id, family.expires_at, now)?;
    Ok((family.id, token))
}

fn next_in(
    conn: &mut PgConnection,
    cfg: &SessionConfig,
    family_id: Uuid,
    family_expires: DateTime<Utc>,
    now: DateTime<Utc>,
) -> Result<String> {
    let token = new_token();
    let idle = (now + Duration::seconds(cfg.refresh_idle_seconds)).min(family_expires);
    repo::refresh_tokens::insert_token(conn, family_id, &hash(&token), idle)?;
    Ok(token)
}

/// What presenting a refresh token led to. Only `Rotated` hands out anything.
#[derive(Debug)]
pub enum Presented {
    Rotated {
        user: UserRow,
        family_id: Uuid,
        token: String,
    },
    /// Refused; `reason` goes to the audit log only. `user_id`/`family_id` when known.
    Refused {
        reason: &'static str,
        user_id: Option<Uuid>,
        family_id: Option<Uuid>,
    },
    /// A rotated token came back: its family is now revoked.
    Reused { user_id: Uuid, family_id: Uuid },
}

/// Rotates `presented` inside the caller's transaction. The token and family rows stay locked
/// until it ends, so concurrent presentations of one token run one after the other and at most
/// one of them rotates it.
pub fn rotate(conn: &mut PgConnection, cfg: &SessionConfig, presented: &str) -> Result<Presented> {
    let now = Utc::now();
    let Some((token, family)) = repo::refresh_tokens::lock_by_hash(conn, &hash(presented))? else {
        return Ok(Presented::Refused {
            reason: "unknown_token",
            user_id: None,
            family_id: None,
        });
    };
    let refused = |reason| Presented::Refused {
        reason,
        user_id: Some(family.user_id),
        family_id: Some(family.id),
    };
    if family.revoked_at.is_some() {
        return Ok(refused("session_revoked"));
    }
    if let Some(rotated) = token.rotated_at {
        if now - rotated < Duration::seconds(cfg.reuse_grace_seconds) {
            return Ok(refused("concurrent_rotation"));
        }
        repo::refresh_tokens::revoke_family(conn, family.id, "reuse")?;
        return Ok(Presented::Reused {
            user_id: family.user_id,
            family_id: family.id,
        });
    }
    if token.idle_expires_at <= now || family.expires_at <= now {
        return Ok(refused("expired"));
    }
    let user = repo::users::find(conn, family.user_id)?;
    let Some(user) = user.filter(|u| !u.disabled) else {
        repo::refresh_tokens::revoke_family(conn, family.id, "user_disabled")?;
        return Ok(refused("user_disabled"));
    };
    if !repo::refresh_tokens::mark_rotated(conn, token.id, now)? {
        // Unreachable under the row lock; refuse rather than hand out a second token.
        return Ok(refused("concurrent_rotation"));
    }
    let next = next_in(conn, cfg, family.id, family.expires_at, now)?;
    Ok(Presented::Rotated {
        user,
        family_id: family.id,
        token: next,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_long_random_and_hashed() {
        let a = new_token();
        let b = new_token();
        assert_ne!(a, b);
        assert!(a.starts_with(REFRESH_PREFIX));
        // 32 bytes → 43 base64url characters: 256 bits.
        assert_eq!(a.len(), REFRESH_PREFIX.len() + 43);
        assert_eq!(hash(&a).len(), 64);
        assert_ne!(hash(&a), a);
    }

    #[test]
    fn revocation_notices_match_their_connections() {
        let u = Uuid::new_v4();
        let f = Uuid::new_v4();
        let all = SessionRevoked {
            user_id: u,
            family_id: None,
            reason: "disabled".into(),
        };
        assert!(all.ends(u, Some(Uuid::new_v4())));
        assert!(!all.ends(Uuid::new_v4(), None));
        let one = SessionRevoked {
            user_id: u,
            family_id: Some(f),
            reason: "logout".into(),
        };
        assert!(one.ends(u, Some(f)));
        assert!(!one.ends(u, Some(Uuid::new_v4())));
        assert!(one.ends(u, None));
    }
}
