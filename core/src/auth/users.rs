//! Managing users and their roles (admins only): listing accounts, assigning and revoking roles.
//! Every change is audited in its own transaction; the last enabled admin keeps `admin`.

use diesel::Connection;
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal, Role, User};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;

#[derive(Clone)]
pub struct UserService {
    db: Db,
}

fn resource(id: Uuid) -> String {
    format!("user:{id}")
}

impl UserService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    /// Users in creation order, after the user `after`.
    pub async fn list(
        &self,
        who: Option<&Principal>,
        after: Option<Uuid>,
        limit: i64,
    ) -> Result<Vec<User>> {
        audit::require(&self.db, who, Permission::ManageUsers).await?;
        Ok(self
            .db
            .run(move |c| repo::users::list_page(c, after, limit))
            .await?
            .into_iter()
            .map(User::from)
            .collect())
    }

    /// Grants `role` (a no-op when already held, still audited with `changed: false`).
    pub async fn assign_role(
        &self,
        who: Option<&Principal>,
        user_id: Uuid,
        role: Role,
    ) -> Result<User> {
        let who = audit::require(&self.db, who, Permission::ManageUsers)
            .await?
            .clone();
        self.db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    let user = repo::users::find(c, user_id)?.ok_or(Error::NotFound("user"))?;
                    let had = repo::users::roles_of(c, user_id)?.contains(&role);
                    repo::users::grant_role(c, user_id, role, Some(who.user_id))?;
                    let entry = AuditEntry::by(&who, Action::RoleAssign, resource(user_id))
                        .detail(serde_json::json!({ "role": role.as_str(), "changed": !had }));
                    audit::append(c, entry)?;
                    Ok(User::from(user))
                })
            })
            .await
    }

    /// Removes `role`. Taking `admin` from the last enabled admin is refused (`CONFLICT`): no one
    /// could manage users afterwards.
    pub async fn revoke_role(
        &self,
        who: Option<&Principal>,
        user_id: Uuid,
        role: Role,
    ) -> Result<User> {
        let who = audit::require(&self.db, who, Permission::ManageUsers)
            .await?
            .clone();
        self.db
            .run(move |c| {
                c.transaction::<_, Error, _>(|c| {
                    if role == Role::Admin {
                        repo::users::lock_admin_set(c)?;
                    }
                    let user = repo::users::find(c, user_id)?.ok_or(Error::NotFound("user"))?;
                    let held = repo::users::roles_of(c, user_id)?.contains(&role);
                    if held
                        && role == Role::Admin
                        && !user.disabled
                        && repo::users::count_enabled_with_role(c, Role::Admin)? <= 1
                    {
                        return Err(Error::Conflict(
                            "cannot revoke admin from the last enabled admin".into(),
                        ));
                    }
                    let changed = repo::users::remove_role(c, user_id, role)?;
                    let entry = AuditEntry::by(&who, Action::RoleRevoke, resource(user_id))
                        .detail(serde_json::json!({ "role": role.as_str(), "changed": changed }));
                    audit::append(c, entry)?;
                    Ok(User::from(user))
                })
            })
            .await
    }
}
