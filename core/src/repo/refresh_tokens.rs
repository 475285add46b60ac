//! Refresh-token families and their (hashed) tokens.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{refresh_families, refresh_tokens};
use crate::error::Result;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_families)]
pub struct FamilyRow {
    pub id: Uuid,
    pub user_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub revoked_at: Option<DateTime<Utc>>,
    pub revoked_reason: Option<String>,
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = refresh_tokens)]
pub struct TokenRow {
    pub id: Uuid,
    pub family_id: Uuid,
    pub token_hash: String,
    pub created_at: DateTime<Utc>,
    pub idle_expires_at: DateTime<Utc>,
    pub rotated_at: Option<DateTime<Utc>>,
}

pub fn insert_family(
    conn: &mut PgConnection,
    user_id: Uuid,
    expires_at: DateTime<Utc>,
) -> Result<FamilyRow> {
    Ok(diesel::insert_into(refresh_families::table)
        .values((
            refresh_families::id.eq(Uuid::now_v7()),
            refresh_families::user_id.eq(user_id),
            refresh_families::expires_at.eq(expires_at),
        ))
        .returning(FamilyRow::as_returning())
        .get_result(conn)?)
}

pub fn insert_token(
    conn: &mut PgConnection,
    family_id: Uuid,
    token_hash: &str,
    idle_expires_at: DateTime<Utc>,
) -> Result<()> {
    diesel::insert_into(refresh_tokens::table)
        .values((
            refresh_tokens::id.eq(Uuid::now_v7()),
            refresh_tokens::family_id.eq(family_id),
            refresh_tokens::token_hash.eq(token_hash),
            refresh_tokens::idle_expires_at.eq(idle_expires_at),
        ))
        .execute(conn)?;
    Ok(())
}

/// The token with this hash and its family, both rows locked until the transaction ends: two
/// refreshes presenting the same token are serialised here, and the second sees the first's
/// rotation.
pub fn lock_by_hash(
    conn: &mut PgConnection,
    token_hash: &str,
) -> Result<Option<(TokenRow, FamilyRow)>> {
    Ok(refresh_tokens::table
        .inner_join(refresh_families::table)
        .filter(refresh_tokens::token_hash.eq(token_hash))
        .select((TokenRow::as_select(), FamilyRow::as_select()))
        .for_update()
        .first(conn)
        .optional()?)
}

/// Marks a token used; returns whether it was still unrotated (compare-and-swap).
pub fn mark_rotated(conn: &mut PgConnection, token_id: Uuid, at: DateTime<Utc>) -> Result<bool> {
    let n = diesel::update(
        refresh_tokens::table
            .filter(refresh_tokens::id.eq(token_id))
            .filter(refresh_tokens::rotated_at.is_null()),
    )
    .set(refresh_tokens::rotated_at.eq(at))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revokes one family (if not yet revoked); returns whether it changed.
pub fn revoke_family(conn: &mut PgConnection, family_id: Uuid, reason: &str) -> Result<bool> {
    let n = diesel::update(
        refresh_families::table
            .filter(refresh_families::id.eq(family_id))
            .filter(refresh_families::revoked_at.is_null()),
    )
    .set((
        refresh_families::revoked_at.eq(diesel::dsl::now),
        refresh_families::revoked_reason.eq(reason),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Revokes every live family of a user; returns how many.
pub fn revoke_all_of_user(conn: &mut PgConnection, user_id: Uuid, reason: &str) -> Result<usize> {
    Ok(diesel::update(
        refresh_families::table
            .filter(refresh_families::user_id.eq(user_id))
            .filter(refresh_families::revoked_at.is_null()),
    )
    .set((
        refresh_families::revoked_at.eq(diesel::dsl::now),
        refresh_families::revoked_reason.eq(reason),
    ))
    .execute(conn)?)
}

/// Whether a family is revoked (or unknown) — access tokens of a revoked session stop at once.
pub fn family_revoked(conn: &mut PgConnection, family_id: Uuid) -> Result<bool> {
    let revoked: Option<Option<DateTime<Utc>>> = refresh_families::table
        .find(family_id)
        .select(refresh_families::revoked_at)
        .first(conn)
        .optional()?;
    Ok(!matches!(revoked, Some(None)))
}

/// The user's id, email, whether disabled, and role names, provided session `family_id` (when
/// given) is theirs and not revoked: one statement, run for every authenticated request.
pub fn find_user_in_session(
    conn: &mut PgConnection,
    user_id: Uuid,
    family_id: Option<Uuid>,
) -> Result<Option<SessionUser>> {
    use crate::db::schema::{user_roles, users};
    let roles = diesel::dsl::array::<diesel::sql_types::Text, _>(
        user_roles::table
            .filter(user_roles::user_id.eq(user_id))
            .select(user_roles::role),
    );
    let q = users::table
        .find(user_id)
        .select((users::id, users::email, users::disabled, roles));
    let row: Option<(Uuid, String, bool, Vec<String>)> = match family_id {
        None => q.first(conn).optional()?,
        Some(f) => q
            .filter(diesel::dsl::exists(
                refresh_families::table
                    .filter(refresh_families::id.eq(f))
                    .filter(refresh_families::user_id.eq(users::id))
                    .filter(refresh_families::revoked_at.is_null()),
            ))
            .first(conn)
            .optional()?,
    };
    Ok(row.map(|(id, email, disabled, roles)| SessionUser {
        id,
        email,
        disabled,
        roles: crate::repo::users::parse_roles(&roles),
    }))
}

/// What [`find_user_in_session`] reads of a user.
pub struct SessionUser {
    pub id: Uuid,
    pub email: String,
    pub disabled: bool,
    pub roles: Vec<crate::auth::Role>,
}
