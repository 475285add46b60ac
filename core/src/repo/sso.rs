//! Single sign-on data: pending logins, one-time hand-off codes, linked identities and the role
//! rows group mapping granted.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::schema::{sso_handoffs, sso_logins, sso_role_grants, user_roles, users};
use crate::error::Result;
use crate::repo::users::UserRow;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sso_logins)]
pub struct LoginRow {
    pub state_hash: String,
    pub binding_hash: String,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub consumed_at: Option<DateTime<Utc>>,
    pub native_redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub client_state: Option<String>,
}

/// What a native-app login keeps until its callback: where to send the code, the client's PKCE
/// challenge and its `state`.
pub struct NativeLogin<'a> {
    pub redirect_uri: &'a str,
    pub code_challenge: &'a str,
    pub client_state: &'a str,
}

pub fn insert_login(
    conn: &mut PgConnection,
    state_hash: &str,
    binding_hash: &str,
    expires_at: DateTime<Utc>,
    native: Option<NativeLogin<'_>>,
) -> Result<()> {
    // Old rows are useless once expired; clearing them here keeps the table small.
    diesel::delete(sso_logins::table)
        .filter(sso_logins::expires_at.lt(Utc::now() - chrono::Duration::hours(1)))
        .execute(conn)?;
    diesel::insert_into(sso_logins::table)
        .values((
            sso_logins::state_hash.eq(state_hash),
            sso_logins::binding_hash.eq(binding_hash),
            sso_logins::expires_at.eq(expires_at),
            sso_logins::native_redirect_uri.eq(native.as_ref().map(|n| n.redirect_uri)),
            sso_logins::code_challenge.eq(native.as_ref().map(|n| n.code_challenge)),
            sso_logins::client_state.eq(native.as_ref().map(|n| n.client_state)),
        ))
        .execute(conn)?;
    Ok(())
}

/// The pending login for `state_hash`, locked until the transaction ends.
pub fn lock_login(conn: &mut PgConnection, state_hash: &str) -> Result<Option<LoginRow>> {
    Ok(sso_logins::table
        .find(state_hash)
        .select(LoginRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

pub fn consume_login(conn: &mut PgConnection, state_hash: &str) -> Result<()> {
    diesel::update(sso_logins::table.find(state_hash))
        .set(sso_logins::consumed_at.eq(Utc::now()))
        .execute(conn)?;
    Ok(())
}

pub fn insert_handoff(
    conn: &mut PgConnection,
    code_hash: &str,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
    code_challenge: Option<&str>,
) -> Result<()> {
    diesel::delete(sso_handoffs::table)
        .filter(sso_handoffs::expires_at.lt(Utc::now() - chrono::Duration::hours(1)))
        .execute(conn)?;
    diesel::insert_into(sso_handoffs::table)
        .values((
            sso_handoffs::code_hash.eq(code_hash),
            sso_handoffs::user_id.eq(user_id),
            sso_handoffs::expires_at.eq(expires_at),
            sso_handoffs::code_challenge.eq(code_challenge),
        ))
        .execute(conn)?;
    Ok(())
}

/// Marks the hand-off used and returns its user and PKCE challenge, only if it was unused and
/// unexpired: one statement, so two concurrent exchanges cannot both succeed.
pub fn consume_handoff(
    conn: &mut PgConnection,
    code_hash: &str,
) -> Result<Option<(Uuid, Option<String>)>> {
    Ok(diesel::update(sso_handoffs::table.find(code_hash))
        .filter(sso_handoffs::consumed_at.is_null())
        .filter(sso_handoffs::expires_at.gt(Utc::now()))
        .set(sso_handoffs::consumed_at.eq(Utc::now()))
        .returning((sso_handoffs::user_id, sso_handoffs::code_challenge))
        .get_result(conn)
        .optional()?)
}

pub fn find_by_identity(
    conn: &mut PgConnection,
    issuer: &str,
    subject: &str,
) -> Result<Option<UserRow>> {
    Ok(users::table
        .filter(users::oidc_issuer.eq(issuer))
        .filter(users::oidc_subject.eq(subject))
        .select(UserRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

/// The (issuer, subject) an account is linked to, if any.
pub fn identity_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Option<(String, String)>> {
    let row: (Option<String>, Option<String>) = users::table
        .find(user_id)
        .select((users::oidc_issuer, users::oidc_subject))
        .first(conn)?;
    Ok(row.0.zip(row.1))
}

pub fn link_identity(
    conn: &mut PgConnection,
    user_id: Uuid,
    issuer: &str,
    subject: &str,
) -> Result<()> {
    diesel::update(users::table.find(user_id))
        .set((
            users::oidc_issuer.eq(issuer),
            users::oidc_subject.eq(subject),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn insert_user(
    conn: &mut PgConnection,
    email: &str,
    display_name: &str,
    issuer: &str,
    subject: &str,
) -> Result<UserRow> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(email),
            users::display_name.eq(display_name),
            users::oidc_issuer.eq(issuer),
            users::oidc_subject.eq(subject),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)?)
}

/// Roles the user holds because of a group, with that group.
pub fn sso_grants_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<(Role, String)>> {
    let rows: Vec<(String, String)> = sso_role_grants::table
        .filter(sso_role_grants::user_id.eq(user_id))
        .select((sso_role_grants::role, sso_role_grants::group_name))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(r, g)| r.parse().ok().map(|r| (r, g)))
        .collect())
}

/// Grants `role` because of `group`, unless the user already holds it (then the existing,
/// e.g. manual, grant stays as it is). Returns whether a role row was added.
pub fn grant_sso_role(
    conn: &mut PgConnection,
    user_id: Uuid,
    role: Role,
    group: &str,
) -> Result<bool> {
    let added = diesel::insert_into(user_roles::table)
        .values((
            user_roles::user_id.eq(user_id),
            user_roles::role.eq(role.as_str()),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    if added == 1 {
        diesel::insert_into(sso_role_grants::table)
            .values((
                sso_role_grants::user_id.eq(user_id),
                sso_role_grants::role.eq(role.as_str()),
                sso_role_grants::group_name.eq(group),
            ))
            .execute(conn)?;
    }
    Ok(added == 1)
}

/// Removes a role that group mapping granted (its marker goes with it, by cascade).
pub fn revoke_sso_role(conn: &mut PgConnection, user_id: Uuid, role: Role) -> Result<()> {
    diesel::delete(
        user_roles::table
            .filter(user_roles::user_id.eq(user_id))
            .filter(user_roles::role.eq(role.as_str())),
    )
    .execute(conn)?;
    Ok(())
}
