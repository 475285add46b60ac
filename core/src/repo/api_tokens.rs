//! API tokens: rows keyed by the SHA-256 of their secret (the secret itself is never stored).

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{api_tokens, user_roles, users};
use crate::error::Result;

/// A token as listed: everything but its hash.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = api_tokens)]
pub struct ApiTokenRow {
    pub id: Uuid,
    pub name: String,
    pub role: String,
    pub created_by: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: Option<DateTime<Utc>>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

/// What authenticating with a token needs: the token and the state of its creator.
#[derive(Debug, Clone)]
pub struct TokenOwner {
    pub token: ApiTokenRow,
    pub email: String,
    pub disabled: bool,
    pub still_admin: bool,
}

pub struct NewApiToken<'a> {
    pub id: Uuid,
    pub name: &'a str,
    pub role: &'a str,
    pub token_hash: &'a str,
    pub created_by: Uuid,
    pub expires_at: Option<DateTime<Utc>>,
}

pub fn insert(conn: &mut PgConnection, t: &NewApiToken<'_>) -> Result<ApiTokenRow> {
    Ok(diesel::insert_into(api_tokens::table)
        .values((
            api_tokens::id.eq(t.id),
            api_tokens::name.eq(t.name),
            api_tokens::role.eq(t.role),
            api_tokens::token_hash.eq(t.token_hash),
            api_tokens::created_by.eq(t.created_by),
            api_tokens::expires_at.eq(t.expires_at),
        ))
        .returning(ApiTokenRow::as_returning())
        .get_result(conn)?)
}

/// The token whose secret hashes to `hash`, with its creator's email, disabled flag and whether
/// the creator still holds `admin` — one statement.
pub fn find_by_hash(conn: &mut PgConnection, hash: &str) -> Result<Option<TokenOwner>> {
    let still_admin = diesel::dsl::exists(
        user_roles::table
            .filter(user_roles::user_id.eq(api_tokens::created_by))
            .filter(user_roles::role.eq("admin")),
    );
    let row: Option<(ApiTokenRow, String, bool, bool)> = api_tokens::table
        .inner_join(users::table)
        .filter(api_tokens::token_hash.eq(hash))
        .select((
            ApiTokenRow::as_select(),
            users::email,
            users::disabled,
            still_admin,
        ))
        .first(conn)
        .optional()?;
    Ok(row.map(|(token, email, disabled, still_admin)| TokenOwner {
        token,
        email,
        disabled,
        still_admin,
    }))
}

/// Every token not revoked, newest first (revoked ones are history: the audit log keeps them).
pub fn list_live(conn: &mut PgConnection) -> Result<Vec<ApiTokenRow>> {
    Ok(api_tokens::table
        .filter(api_tokens::revoked_at.is_null())
        .order((api_tokens::created_at.desc(), api_tokens::id.desc()))
        .select(ApiTokenRow::as_select())
        .load(conn)?)
}

/// Marks the token revoked: `None` when there is no such token, else whether this call revoked
/// it (`false`: it already was) and the admin who created it.
pub fn revoke(conn: &mut PgConnection, id: Uuid) -> Result<Option<(bool, Uuid)>> {
    let changed: Option<Uuid> = diesel::update(api_tokens::table.find(id))
        .filter(api_tokens::revoked_at.is_null())
        .set(api_tokens::revoked_at.eq(diesel::dsl::now))
        .returning(api_tokens::created_by)
        .get_result(conn)
        .optional()?;
    if let Some(creator) = changed {
        return Ok(Some((true, creator)));
    }
    let creator: Option<Uuid> = api_tokens::table
        .find(id)
        .select(api_tokens::created_by)
        .first(conn)
        .optional()?;
    Ok(creator.map(|c| (false, c)))
}

/// Records a use unless one after `stale` is already recorded: the condition makes concurrent requests (and
/// several api processes) agree without a write per request.
pub fn touch(conn: &mut PgConnection, id: Uuid, stale: DateTime<Utc>) -> Result<()> {
    diesel::update(api_tokens::table.find(id))
        .filter(
            api_tokens::last_used_at
                .is_null()
                .or(api_tokens::last_used_at.lt(stale)),
        )
        .set(api_tokens::last_used_at.eq(diesel::dsl::now))
        .execute(conn)?;
    Ok(())
}
