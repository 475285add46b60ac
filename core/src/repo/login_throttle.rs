//! Failed-login counters per account and per client address.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Int4, Nullable, Text, Timestamptz};

use crate::db::schema::login_throttle;
use crate::error::Result;

/// The latest lock among `keys` still in force, if any.
pub fn locked_until(conn: &mut PgConnection, keys: &[String]) -> Result<Option<DateTime<Utc>>> {
    let until: Option<Option<DateTime<Utc>>> = login_throttle::table
        .filter(login_throttle::key.eq_any(keys))
        .filter(login_throttle::locked_until.gt(diesel::dsl::now))
        .select(diesel::dsl::max(login_throttle::locked_until))
        .first(conn)
        .optional()?;
    Ok(until.flatten())
}

#[derive(QueryableByName)]
struct Counted {
    #[diesel(sql_type = Int4)]
    failures: i32,
    #[diesel(sql_type = Nullable<Timestamptz>)]
    locked_until: Option<DateTime<Utc>>,
}

/// Counts one failure for `key` in one statement (so concurrent api instances never lose a
/// count): the counter restarts when the window has passed; from the `limit`-th failure on, the
/// key is locked for `base_secs · 2^(failures − limit)` seconds, at most `max_secs`. Returns the
/// new count and lock.
pub fn record_failure(
    conn: &mut PgConnection,
    key: &str,
    window_secs: i64,
    limit: i32,
    base_secs: i64,
    max_secs: i64,
) -> Result<(i32, Option<DateTime<Utc>>)> {
    let row: Counted = diesel::sql_query(
        "INSERT INTO login_throttle AS t (key, failures, window_started_at, locked_until)
         VALUES ($1, 1, now(), NULL)
         ON CONFLICT (key) DO UPDATE SET
           failures = CASE WHEN t.window_started_at < now() - $2 * interval '1 second'
                           THEN 1 ELSE t.failures + 1 END,
           window_started_at = CASE WHEN t.window_started_at < now() - $2 * interval '1 second'
                           THEN now() ELSE t.window_started_at END,
           updated_at = now()
         RETURNING failures, locked_until",
    )
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(window_secs)
    .get_result(conn)?;
    if row.failures < limit {
        return Ok((row.failures, row.locked_until));
    }
    // 2^(failures − limit), the exponent capped so the shift cannot overflow.
    let exp = (row.failures - limit).clamp(0, 20) as u32;
    let secs = base_secs.saturating_mul(1i64 << exp).min(max_secs);
    let until: Counted = diesel::sql_query(
        "UPDATE login_throttle SET locked_until = now() + $2 * interval '1 second'
         WHERE key = $1 RETURNING failures, locked_until",
    )
    .bind::<Text, _>(key)
    .bind::<BigInt, _>(secs)
    .get_result(conn)?;
    Ok((until.failures, until.locked_until))
}

/// Forgets the failures of `key` (a successful sign-in).
pub fn reset(conn: &mut PgConnection, key: &str) -> Result<()> {
    diesel::delete(login_throttle::table.filter(login_throttle::key.eq(key))).execute(conn)?;
    Ok(())
}

/// Drops rows whose window and lock are long over, so random e-mail addresses tried by an
/// attacker do not accumulate.
pub fn prune(conn: &mut PgConnection, older_than_secs: i64) -> Result<usize> {
    Ok(diesel::sql_query(
        "DELETE FROM login_throttle WHERE updated_at < now() - $1 * interval '1 second'
         AND (locked_until IS NULL OR locked_until < now())",
    )
    .bind::<BigInt, _>(older_than_secs)
    .execute(conn)?)
}
