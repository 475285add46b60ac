//! Import batches and what each did to which workflow; the import state of workflows.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{import_batch_workflows, import_batches, workflows};
use crate::error::Result;
use crate::imports::stored::{BatchStatus, ImportAction, StoredFormat};
use crate::repo::workflows::WorkflowRow;

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = import_batches)]
pub struct BatchRow {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub format: StoredFormat,
    pub checksum: String,
    pub tag: Option<String>,
    pub task_count: i32,
    pub workflow_count: i32,
    pub created_count: i32,
    pub updated_count: i32,
    pub unchanged_count: i32,
    pub status: BatchStatus,
    pub problems: serde_json::Value,
    pub skipped: Vec<String>,
    pub rolled_back_at: Option<DateTime<Utc>>,
}

#[derive(Debug, Clone, Queryable, Selectable, Insertable)]
#[diesel(table_name = import_batch_workflows)]
pub struct BatchWorkflowRow {
    pub batch_id: Uuid,
    pub workflow_id: Uuid,
    pub legacy_id: String,
    pub action: ImportAction,
    pub version: i32,
    pub previous: Option<serde_json::Value>,
    pub tags: Vec<String>,
    pub has_schedule: bool,
    pub enabled_at: Option<DateTime<Utc>>,
}

pub fn insert_batch(conn: &mut PgConnection, row: &BatchRow) -> Result<()> {
    diesel::insert_into(import_batches::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

pub fn insert_batch_workflow(conn: &mut PgConnection, row: &BatchWorkflowRow) -> Result<()> {
    diesel::insert_into(import_batch_workflows::table)
        .values(row)
        .execute(conn)?;
    Ok(())
}

/// Newest first, after the cursor `(created_at, id)` when given.
pub fn list_batches(
    conn: &mut PgConnection,
    before: Option<(DateTime<Utc>, Uuid)>,
    limit: i64,
) -> Result<Vec<BatchRow>> {
    let mut q = import_batches::table
        .select(BatchRow::as_select())
        .order((import_batches::created_at.desc(), import_batches::id.desc()))
        .limit(limit)
        .into_boxed();
    if let Some((at, id)) = before {
        q = q.filter(
            import_batches::created_at
                .lt(at)
                .or(import_batches::created_at
                    .eq(at)
                    .and(import_batches::id.lt(id))),
        );
    }
    Ok(q.load(conn)?)
}

pub fn find_batch(conn: &mut PgConnection, id: Uuid) -> Result<Option<BatchRow>> {
    Ok(import_batches::table
        .find(id)
        .select(BatchRow::as_select())
        .first(conn)
        .optional()?)
}

/// Imported workflows with these legacy ids, locked for the import's transaction.
pub fn workflows_by_legacy_id(conn: &mut PgConnection, ids: &[String]) -> Result<Vec<WorkflowRow>> {
    Ok(workflows::table
        .filter(workflows::legacy_id.eq_any(ids))
        .select(WorkflowRow::as_select())
        .for_update()
        .load(conn)?)
}

/// Records that `id` now holds the imported group with `checksum`.
pub fn set_import_state(
    conn: &mut PgConnection,
    id: Uuid,
    legacy_id: &str,
    checksum: &str,
    meta: &serde_json::Value,
) -> Result<()> {
    diesel::update(workflows::table.find(id))
        .set((
            workflows::legacy_id.eq(Some(legacy_id)),
            workflows::import_checksum.eq(Some(checksum)),
            workflows::import_meta.eq(Some(meta)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find_batch_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<BatchRow>> {
    Ok(import_batches::table
        .find(id)
        .select(BatchRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

pub fn batch_workflows(conn: &mut PgConnection, batch_id: Uuid) -> Result<Vec<BatchWorkflowRow>> {
    Ok(import_batch_workflows::table
        .filter(import_batch_workflows::batch_id.eq(batch_id))
        .order(import_batch_workflows::legacy_id.asc())
        .select(BatchWorkflowRow::as_select())
        .load(conn)?)
}

pub fn mark_enabled(
    conn: &mut PgConnection,
    batch_id: Uuid,
    workflow_id: Uuid,
    at: DateTime<Utc>,
) -> Result<()> {
    diesel::update(import_batch_workflows::table.find((batch_id, workflow_id)))
        .set(import_batch_workflows::enabled_at.eq(Some(at)))
        .execute(conn)?;
    Ok(())
}

/// Applied batches after `batch` that wrote any of its workflows.
pub fn later_batches_touching(conn: &mut PgConnection, batch: &BatchRow) -> Result<Vec<Uuid>> {
    #[derive(QueryableByName)]
    struct Id {
        #[diesel(sql_type = diesel::sql_types::Uuid)]
        id: Uuid,
    }
    let rows: Vec<Id> = diesel::sql_query(
        "SELECT DISTINCT b.id FROM import_batches b \
         JOIN import_batch_workflows w ON w.batch_id = b.id \
         WHERE b.id <> $1 AND b.status = 'applied' AND b.created_at >= $2 \
           AND w.workflow_id IN (SELECT workflow_id FROM import_batch_workflows WHERE batch_id = $1) \
         ORDER BY b.id",
    )
    .bind::<diesel::sql_types::Uuid, _>(batch.id)
    .bind::<diesel::sql_types::Timestamptz, _>(batch.created_at)
    .load(conn)?;
    Ok(rows.into_iter().map(|r| r.id).collect())
}

pub fn has_runs(conn: &mut PgConnection, workflow_id: Uuid) -> Result<bool> {
    use crate::db::schema::runs;
    Ok(diesel::select(diesel::dsl::exists(
        runs::table.filter(runs::workflow_id.eq(workflow_id)),
    ))
    .get_result(conn)?)
}

/// Archives a workflow that has run history and turns its schedule off; it keeps its legacy
/// id, so importing the same tasks again finds it.
pub fn archive_and_stop(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    diesel::update(workflows::table.find(id))
        .set((
            workflows::archived_at.eq(Some(Utc::now())),
            workflows::schedule_enabled.eq(false),
            workflows::updated_at.eq(Utc::now()),
        ))
        .execute(conn)?;
    Ok(())
}

/// Takes a workflow out of the archive.
pub fn unarchive(conn: &mut PgConnection, id: Uuid) -> Result<WorkflowRow> {
    Ok(diesel::update(workflows::table.find(id))
        .set(workflows::archived_at.eq(None::<DateTime<Utc>>))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?)
}

/// Deletes a workflow without runs and its versions.
pub fn delete_workflow(conn: &mut PgConnection, id: Uuid) -> Result<()> {
    use crate::db::schema::{cache_entries, workflow_versions};
    diesel::delete(cache_entries::table.filter(cache_entries::workflow_id.eq(id))).execute(conn)?;
    diesel::delete(workflow_versions::table.filter(workflow_versions::workflow_id.eq(id)))
        .execute(conn)?;
    diesel::delete(workflows::table.find(id)).execute(conn)?;
    Ok(())
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Previous {
    name: String,
    description: String,
    current_version: i32,
    updated_at: DateTime<Utc>,
    #[serde(default)]
    archived_at: Option<DateTime<Utc>>,
    schedule_cron: Option<String>,
    schedule_timezone: Option<String>,
    schedule_enabled: bool,
    schedule_fired_through: Option<DateTime<Utc>>,
    import_checksum: Option<String>,
    import_meta: Option<serde_json::Value>,
}

/// Puts an updated workflow back as it was before the batch: its columns, and its current
/// version (later versions no run uses are deleted; those a run pinned stay as history).
pub fn restore_previous(conn: &mut PgConnection, id: Uuid, prev: &serde_json::Value) -> Result<()> {
    use crate::db::schema::{runs, workflow_versions};
    let p: Previous = serde_json::from_value(prev.clone()).map_err(crate::Error::internal)?;
    diesel::update(workflows::table.find(id))
        .set((
            workflows::name.eq(&p.name),
            workflows::description.eq(&p.description),
            workflows::current_version.eq(p.current_version),
            workflows::updated_at.eq(p.updated_at),
            workflows::schedule_cron.eq(&p.schedule_cron),
            workflows::schedule_timezone.eq(&p.schedule_timezone),
            workflows::schedule_enabled.eq(p.schedule_enabled),
            workflows::schedule_fired_through.eq(p.schedule_fired_through),
            workflows::import_checksum.eq(&p.import_checksum),
            workflows::import_meta.eq(&p.import_meta),
            workflows::archived_at.eq(p.archived_at),
        ))
        .execute(conn)?;
    let pinned = runs::table
        .filter(runs::workflow_id.eq(id))
        .select(runs::version);
    diesel::delete(
        workflow_versions::table
            .filter(workflow_versions::workflow_id.eq(id))
            .filter(workflow_versions::version.gt(p.current_version))
            .filter(workflow_versions::version.ne_all(pinned)),
    )
    .execute(conn)?;
    Ok(())
}

pub fn mark_rolled_back(conn: &mut PgConnection, id: Uuid) -> Result<BatchRow> {
    Ok(diesel::update(import_batches::table.find(id))
        .set((
            import_batches::status.eq(BatchStatus::RolledBack),
            import_batches::rolled_back_at.eq(Some(Utc::now())),
        ))
        .returning(BatchRow::as_returning())
        .get_result(conn)?)
}
