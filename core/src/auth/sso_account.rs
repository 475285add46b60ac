//! Signing a verified identity in: the account keyed on issuer and subject (created, or linked
//! to a local account by verified email), group → role mapping, and the `auth.login` audit rows.

use std::collections::BTreeMap;

use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry, Outcome};
use crate::auth::oidc::{Identity, Rejection};
use crate::auth::{RequestMeta, Role, User};
use crate::error::Result;
use crate::repo;

pub(crate) type Refusal = (Rejection, Option<(Uuid, String)>);

pub(crate) fn refusal_entry(
    r: &Rejection,
    user: Option<(Uuid, String)>,
    meta: &RequestMeta,
) -> AuditEntry {
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

pub(crate) fn sign_in_tx(
    c: &mut diesel::PgConnection,
    id: &Identity,
    mapping: &[(String, Role)],
    native: bool,
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
        // Started by a native app (`tms login --sso`): the code goes to its loopback listener.
        "nativeApp": native,
    }));
    audit::append(c, entry)?;
    Ok(Ok(User::from(user)))
}
