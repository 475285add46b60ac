//! The session operations of [`AuthService`]: refreshing, logging out and disabling users,
//! each audited in its own transaction and followed by a revocation notice where sessions end.

use diesel::Connection;
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry, Outcome};
use crate::auth::service::{AuthService, TokenPair};
use crate::auth::sessions::{self, Presented, SessionRevoked};
use crate::auth::{Permission, Principal, RequestMeta, User, revocations};
use crate::error::{Error, Result};
use crate::repo;

/// The one message every refused refresh gets: which check failed is for the audit log only.
const REFRESH_REFUSED: &str = "invalid or expired refresh token";

fn as_actor(user_id: Option<Uuid>, entry: AuditEntry) -> AuditEntry {
    AuditEntry {
        actor_id: user_id,
        ..entry
    }
}

impl AuthService {
    /// Exchanges a refresh token for a new pair, rotating it. See [`sessions::rotate`].
    pub async fn refresh(&self, presented: &str, meta: &RequestMeta) -> Result<TokenPair> {
        let cfg = self.sessions.clone();
        let presented = presented.trim().to_string();
        let meta = meta.clone();
        let outcome = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let outcome = sessions::rotate(c, &cfg, &presented)?;
                    let entry = match &outcome {
                        Presented::Rotated {
                            user, family_id, ..
                        } => AuditEntry {
                            actor_id: Some(user.id),
                            actor_email: Some(user.email.clone()),
                            ..AuditEntry::anonymous(
                                Action::AuthRefresh,
                                format!("session:{family_id}"),
                                &meta,
                            )
                        },
                        Presented::Refused {
                            reason,
                            user_id,
                            family_id,
                        } => as_actor(
                            *user_id,
                            AuditEntry::anonymous(
                                Action::AuthRefresh,
                                family_id.map_or("session".into(), |f| format!("session:{f}")),
                                &meta,
                            )
                            .outcome(Outcome::Failure)
                            .detail(serde_json::json!({ "reason": reason })),
                        ),
                        Presented::Reused { user_id, family_id } => as_actor(
                            Some(*user_id),
                            AuditEntry::anonymous(
                                Action::AuthTokenReuse,
                                format!("session:{family_id}"),
                                &meta,
                            )
                            .outcome(Outcome::Failure)
                            .detail(serde_json::json!({
                                "reason": "rotated refresh token presented again; session revoked",
                            })),
                        ),
                    };
                    audit::append(c, entry)?;
                    Ok(outcome)
                })
            })
            .await?;
        match outcome {
            Presented::Rotated {
                user,
                family_id,
                token,
            } => self.pair(&User::from(user), family_id, token),
            Presented::Refused { .. } => Err(Error::Unauthenticated(REFRESH_REFUSED)),
            Presented::Reused { user_id, family_id } => {
                tracing::warn!(%user_id, %family_id, "refresh token re-use: session revoked");
                self.notify(SessionRevoked {
                    user_id,
                    family_id: Some(family_id),
                    reason: "token_reuse".into(),
                })
                .await;
                Err(Error::Unauthenticated(REFRESH_REFUSED))
            }
        }
    }

    /// Ends the session `presented` belongs to: every refresh token of its family and, on the
    /// next request or at once on open sockets, its access tokens. A token of no live session
    /// is `UNAUTHENTICATED` like any refused refresh token (nothing is revoked or audited).
    pub async fn logout(&self, presented: &str, meta: &RequestMeta) -> Result<bool> {
        let h = sessions::hash(presented.trim());
        let meta = meta.clone();
        let ended = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let Some((_, family)) = repo::refresh_tokens::lock_by_hash(c, &h)? else {
                        return Ok(None);
                    };
                    if !repo::refresh_tokens::revoke_family(c, family.id, "logout")? {
                        return Ok(None);
                    }
                    let user = repo::users::find(c, family.user_id)?;
                    audit::append(
                        c,
                        AuditEntry {
                            actor_id: Some(family.user_id),
                            actor_email: user.map(|u| u.email),
                            ..AuditEntry::anonymous(
                                Action::AuthLogout,
                                format!("session:{}", family.id),
                                &meta,
                            )
                        },
                    )?;
                    Ok(Some((family.user_id, family.id)))
                })
            })
            .await?;
        let (user_id, family_id) = ended.ok_or(Error::Unauthenticated(REFRESH_REFUSED))?;
        self.notify(SessionRevoked {
            user_id,
            family_id: Some(family_id),
            reason: "logout".into(),
        })
        .await;
        Ok(true)
    }

    /// Disables (or re-enables) an account. Disabling revokes all its sessions: its access
    /// tokens are refused from the next request on and its open subscriptions are closed.
    pub async fn set_user_disabled(
        &self,
        who: Option<&Principal>,
        user_id: Uuid,
        disabled: bool,
    ) -> Result<User> {
        let admin = audit::require(&self.db, who, Permission::ManageUsers)
            .await?
            .clone();
        if disabled && admin.user_id == user_id {
            return Err(Error::field(
                "userId",
                "an administrator cannot disable their own account",
            ));
        }
        let user = self
            .db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let user = repo::users::set_disabled(c, user_id, disabled)?
                        .ok_or(Error::NotFound("user"))?;
                    let revoked = if disabled {
                        repo::refresh_tokens::revoke_all_of_user(c, user_id, "user_disabled")?
                    } else {
                        0
                    };
                    audit::append(
                        c,
                        AuditEntry::by(&admin, Action::UserDisable, format!("user:{user_id}"))
                            .detail(serde_json::json!({
                                "disabled": disabled,
                                "email": user.email,
                                "sessionsRevoked": revoked,
                            })),
                    )?;
                    Ok(user)
                })
            })
            .await?;
        if disabled {
            self.notify(SessionRevoked {
                user_id,
                family_id: None,
                reason: "user_disabled".into(),
            })
            .await;
        }
        Ok(User::from(user))
    }

    async fn notify(&self, notice: SessionRevoked) {
        if let Some(bus) = &self.bus {
            revocations::publish(bus, &notice).await;
        }
    }
}
