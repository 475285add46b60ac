//! Rows of the artifact store (manifests) and of the step cache (entries), and the sweep's
//! queries. Registering a manifest and sweeping exclude each other through one advisory lock.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use diesel::sql_types::{BigInt, Text};
use uuid::Uuid;

use crate::db::schema::{artifact_manifests, cache_entries, runs, tasks};
use crate::error::Result;

/// Held shared while a manifest is registered, exclusively while the sweep decides and deletes.
pub const SWEEP_LOCK: i64 = 7_346_611;

/// Registers (or touches) a manifest before its blobs are uploaded, so that a concurrent sweep
/// either sees it as live or has finished deleting before the uploader checks what exists. One
/// statement (its own transaction): the shared lock is taken first and held to its commit.
pub fn register_manifest(
    conn: &mut PgConnection,
    hash: &str,
    files: &serde_json::Value,
    file_count: i32,
    total_bytes: i64,
) -> Result<()> {
    use diesel::sql_types::{Int4, Jsonb, Timestamptz};
    diesel::sql_query(
        "WITH l AS (SELECT pg_advisory_xact_lock_shared($1)) \
         INSERT INTO artifact_manifests (hash, files, file_count, total_bytes) \
         SELECT $2, $3, $4, $5 FROM l \
         ON CONFLICT (hash) DO UPDATE SET last_used_at = $6",
    )
    .bind::<BigInt, _>(SWEEP_LOCK)
    .bind::<Text, _>(hash)
    .bind::<Jsonb, _>(files)
    .bind::<Int4, _>(file_count)
    .bind::<BigInt, _>(total_bytes)
    .bind::<Timestamptz, _>(Utc::now())
    .execute(conn)?;
    Ok(())
}

/// A manifest's file list.
pub fn manifest_files(conn: &mut PgConnection, hash: &str) -> Result<Option<serde_json::Value>> {
    Ok(artifact_manifests::table
        .find(hash)
        .select(artifact_manifests::files)
        .first(conn)
        .optional()?)
}

/// Bytes of output the run's tasks have stored so far.
pub fn run_output_bytes(conn: &mut PgConnection, run_id: Uuid) -> Result<i64> {
    let total: Option<i64> = tasks::table
        .filter(tasks::run_id.eq(run_id))
        .select(diesel::dsl::sql::<diesel::sql_types::Nullable<BigInt>>(
            "SUM(output_bytes)::bigint",
        ))
        .first(conn)?;
    Ok(total.unwrap_or(0))
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = cache_entries)]
pub struct CacheEntryRow {
    pub key: String,
    pub workflow_id: Uuid,
    pub step: String,
    pub manifest: String,
    pub parts: serde_json::Value,
    pub source_run_id: Uuid,
    pub created_at: DateTime<Utc>,
    pub expires_at: DateTime<Utc>,
    pub hits: i64,
    pub last_hit_at: Option<DateTime<Utc>>,
}

/// The live entry under `key`, counted as a hit (locked so concurrent hits count exactly).
pub fn take_hit(conn: &mut PgConnection, key: &str) -> Result<Option<CacheEntryRow>> {
    let now = Utc::now();
    let row = diesel::update(
        cache_entries::table
            .find(key)
            .filter(cache_entries::expires_at.gt(now)),
    )
    .set((
        cache_entries::hits.eq(cache_entries::hits + 1),
        cache_entries::last_hit_at.eq(Some(now)),
    ))
    .returning(CacheEntryRow::as_returning())
    .get_result(conn)
    .optional()?;
    if let Some(r) = &row {
        diesel::update(artifact_manifests::table.find(&r.manifest))
            .set(artifact_manifests::last_used_at.eq(now))
            .execute(conn)?;
    }
    Ok(row)
}

pub struct NewCacheEntry<'a> {
    pub key: &'a str,
    pub workflow_id: Uuid,
    pub step: &'a str,
    pub manifest: &'a str,
    pub parts: &'a serde_json::Value,
    pub source_run_id: Uuid,
    pub ttl_seconds: i64,
}

/// Stores (or replaces) the entry for a successful execution. Replacing is safe: entries are
/// whole rows pointing at content-addressed manifests, so concurrent identical runs just race
/// to write equivalent rows.
pub fn store(conn: &mut PgConnection, e: &NewCacheEntry) -> Result<()> {
    let now = Utc::now();
    let expires = now + chrono::Duration::seconds(e.ttl_seconds);
    diesel::insert_into(cache_entries::table)
        .values((
            cache_entries::key.eq(e.key),
            cache_entries::workflow_id.eq(e.workflow_id),
            cache_entries::step.eq(e.step),
            cache_entries::manifest.eq(e.manifest),
            cache_entries::parts.eq(e.parts),
            cache_entries::source_run_id.eq(e.source_run_id),
            cache_entries::created_at.eq(now),
            cache_entries::expires_at.eq(expires),
        ))
        .on_conflict(cache_entries::key)
        .do_update()
        .set((
            cache_entries::manifest.eq(e.manifest),
            cache_entries::parts.eq(e.parts),
            cache_entries::source_run_id.eq(e.source_run_id),
            cache_entries::created_at.eq(now),
            cache_entries::expires_at.eq(expires),
        ))
        .execute(conn)?;
    Ok(())
}

/// The latest entry of a step that another run than `run_id` stored: what `explainCache`
/// compares with.
pub fn previous_entry(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    step: &str,
    run_id: Uuid,
) -> Result<Option<CacheEntryRow>> {
    Ok(cache_entries::table
        .filter(cache_entries::workflow_id.eq(workflow_id))
        .filter(cache_entries::step.eq(step))
        .filter(cache_entries::source_run_id.ne(run_id))
        .order(cache_entries::created_at.desc())
        .select(CacheEntryRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn entry(conn: &mut PgConnection, key: &str) -> Result<Option<CacheEntryRow>> {
    Ok(cache_entries::table
        .find(key)
        .select(CacheEntryRow::as_select())
        .first(conn)
        .optional()?)
}

/// What the sweep did in the database.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Expired {
    /// Run events of runs finished before the retention (the runs and tasks stay).
    pub run_events: usize,
    /// Chunks of the full step logs of those runs.
    pub step_logs: usize,
    pub task_outputs: usize,
    pub cache_entries: usize,
    pub manifests: usize,
}

/// Forgets the events and outputs of runs finished before `runs_before`, expired cache entries, and
/// manifests nothing references that were last used before `unused_before`. Caller holds
/// [`SWEEP_LOCK`] exclusively.
pub fn expire(
    conn: &mut PgConnection,
    runs_before: DateTime<Utc>,
    unused_before: DateTime<Utc>,
) -> Result<Expired> {
    let old_runs = runs::table
        .filter(runs::finished_at.lt(runs_before))
        .select(runs::id);
    let run_events = diesel::delete(
        crate::db::schema::run_events::table
            .filter(crate::db::schema::run_events::run_id.eq_any(old_runs)),
    )
    .execute(conn)?;
    let step_logs = diesel::delete(
        crate::db::schema::task_logs::table
            .filter(crate::db::schema::task_logs::run_id.eq_any(old_runs)),
    )
    .execute(conn)?;
    let task_outputs = diesel::update(
        tasks::table
            .filter(tasks::run_id.eq_any(old_runs))
            .filter(tasks::output_manifest.is_not_null()),
    )
    .set(tasks::output_manifest.eq(None::<String>))
    .execute(conn)?;
    let cache_entries =
        diesel::delete(cache_entries::table.filter(cache_entries::expires_at.le(Utc::now())))
            .execute(conn)?;
    let manifests = diesel::sql_query(
        "DELETE FROM artifact_manifests m WHERE m.last_used_at < $1 AND m.file_count > 0 \
         AND NOT EXISTS (SELECT 1 FROM tasks t WHERE t.output_manifest = m.hash) \
         AND NOT EXISTS (SELECT 1 FROM cache_entries c WHERE c.manifest = m.hash)",
    )
    .bind::<diesel::sql_types::Timestamptz, _>(unused_before)
    .execute(conn)?;
    Ok(Expired {
        run_events,
        step_logs,
        task_outputs,
        cache_entries,
        manifests,
    })
}

#[derive(QueryableByName)]
struct Blob {
    #[diesel(sql_type = Text)]
    sha256: String,
}

/// Every blob some remaining manifest lists.
pub fn live_blobs(conn: &mut PgConnection) -> Result<std::collections::HashSet<String>> {
    let rows: Vec<Blob> = diesel::sql_query(
        "SELECT DISTINCT f->>'sha256' AS sha256 FROM artifact_manifests, \
         jsonb_array_elements(files) AS f",
    )
    .load(conn)?;
    Ok(rows.into_iter().map(|b| b.sha256).collect())
}
