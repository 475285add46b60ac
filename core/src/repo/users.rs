//! Users and their roles.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::auth::Role;
use crate::db::schema::{user_roles, users};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = users)]
pub struct UserRow {
    pub id: Uuid,
    pub email: String,
    pub display_name: String,
    pub password_hash: Option<String>,
    pub disabled: bool,
    pub created_at: DateTime<Utc>,
}

pub fn find_by_email(conn: &mut PgConnection, email: &str) -> Result<Option<UserRow>> {
    Ok(users::table
        .filter(
            diesel::dsl::sql::<diesel::sql_types::Bool>("lower(email) = lower(")
                .bind::<diesel::sql_types::Text, _>(email.to_string())
                .sql(")"),
        )
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<UserRow>> {
    Ok(users::table
        .find(id)
        .select(UserRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn roles_of(conn: &mut PgConnection, user_id: Uuid) -> Result<Vec<Role>> {
    let names: Vec<String> = user_roles::table
        .filter(user_roles::user_id.eq(user_id))
        .select(user_roles::role)
        .load(conn)?;
    Ok(parse_roles(&names))
}

/// Stored role names as roles, sorted; names this build does not know are left out.
pub fn parse_roles(names: &[String]) -> Vec<Role> {
    let mut roles: Vec<Role> = names.iter().filter_map(|n| n.parse().ok()).collect();
    roles.sort();
    roles
}

pub fn insert(
    conn: &mut PgConnection,
    email: &str,
    display_name: &str,
    password_hash: Option<&str>,
) -> Result<UserRow> {
    Ok(diesel::insert_into(users::table)
        .values((
            users::id.eq(Uuid::now_v7()),
            users::email.eq(email),
            users::display_name.eq(display_name),
            users::password_hash.eq(password_hash),
        ))
        .returning(UserRow::as_returning())
        .get_result(conn)?)
}

pub fn grant_role(
    conn: &mut PgConnection,
    user_id: Uuid,
    role: Role,
    by: Option<Uuid>,
) -> Result<()> {
    diesel::insert_into(user_roles::table)
        .values((
            user_roles::user_id.eq(user_id),
            user_roles::role.eq(role.as_str()),
            user_roles::granted_by.eq(by),
        ))
        .on_conflict_do_nothing()
        .execute(conn)?;
    Ok(())
}

pub fn count_with_role(conn: &mut PgConnection, role: Role) -> Result<i64> {
    Ok(user_roles::table
        .filter(user_roles::role.eq(role.as_str()))
        .count()
        .get_result(conn)?)
}

/// A page of users in id order (ids are time-ordered v7 uuids), after `after`.
pub fn list_page(conn: &mut PgConnection, after: Option<Uuid>, limit: i64) -> Result<Vec<UserRow>> {
    let mut q = users::table
        .select(UserRow::as_select())
        .order(users::id.asc())
        .limit(limit)
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(users::id.gt(a));
    }
    Ok(q.load(conn)?)
}

/// Removes `role` from the user; whether it was held.
pub fn remove_role(conn: &mut PgConnection, user_id: Uuid, role: Role) -> Result<bool> {
    let n = diesel::delete(
        user_roles::table
            .filter(user_roles::user_id.eq(user_id))
            .filter(user_roles::role.eq(role.as_str())),
    )
    .execute(conn)?;
    Ok(n > 0)
}

/// Users holding `role` who are not disabled.
pub fn count_enabled_with_role(conn: &mut PgConnection, role: Role) -> Result<i64> {
    Ok(user_roles::table
        .inner_join(users::table)
        .filter(user_roles::role.eq(role.as_str()))
        .filter(users::disabled.eq(false))
        .count()
        .get_result(conn)?)
}

/// Takes the transaction-scoped lock that serialises changes to who is an admin (the bootstrap
/// takes it too), so two concurrent revocations cannot both pass the "last admin" check.
pub fn lock_admin_set(conn: &mut PgConnection) -> Result<()> {
    diesel::sql_query("SELECT pg_advisory_xact_lock(7346502)").execute(conn)?;
    Ok(())
}

/// Sets the `disabled` flag; `None` when no such user exists.
pub fn set_disabled(conn: &mut PgConnection, id: Uuid, disabled: bool) -> Result<Option<UserRow>> {
    Ok(diesel::update(users::table.find(id))
        .set(users::disabled.eq(disabled))
        .returning(UserRow::as_returning())
        .get_result(conn)
        .optional()?)
}
