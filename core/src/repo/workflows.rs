//! Workflows and their immutable versions.

use chrono::{DateTime, Utc};
use diesel::prelude::*;
use uuid::Uuid;

use crate::db::schema::{workflow_versions, workflows};
use crate::error::{Error, Result};
use crate::schedules::Schedule;
use crate::workflows::WorkflowSpec;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflows)]
pub struct WorkflowRow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    pub current_version: i32,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub schedule_cron: Option<String>,
    pub schedule_timezone: Option<String>,
    pub schedule_enabled: bool,
    pub schedule_fired_through: Option<DateTime<Utc>>,
    /// Set on workflows an import created: the legacy id of the group's root task.
    pub legacy_id: Option<String>,
    pub import_checksum: Option<String>,
    pub import_meta: Option<serde_json::Value>,
    /// Runs of this workflow executing at once, at most; `None`: no limit.
    pub max_concurrent_runs: Option<i32>,
    /// At most `rate_limit_runs` runs start per `rate_limit_seconds` (both set or neither).
    pub rate_limit_runs: Option<i32>,
    pub rate_limit_seconds: Option<i32>,
}

impl WorkflowRow {
    /// The schedule, when the workflow has one (the columns are all set or all unset).
    pub fn schedule(&self) -> Option<Schedule> {
        Some(Schedule {
            cron: self.schedule_cron.clone()?,
            timezone: self.schedule_timezone.clone()?,
            enabled: self.schedule_enabled,
            fired_through: self.schedule_fired_through?,
        })
    }

    /// Archived workflows can be read but not run or edited.
    pub fn ensure_active(&self) -> Result<()> {
        match self.archived_at {
            Some(_) => Err(Error::Conflict(format!(
                "workflow `{}` is archived",
                self.name
            ))),
            None => Ok(()),
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = workflow_versions)]
pub struct VersionRow {
    pub workflow_id: Uuid,
    pub version: i32,
    pub spec: serde_json::Value,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl VersionRow {
    pub fn spec(&self) -> Result<WorkflowSpec> {
        serde_json::from_value(self.spec.clone()).map_err(|e| {
            Error::Internal(format!(
                "stored spec of workflow {} v{} unreadable: {e}",
                self.workflow_id, self.version
            ))
        })
    }
}

pub fn find(conn: &mut PgConnection, id: Uuid) -> Result<Option<WorkflowRow>> {
    Ok(workflows::table
        .find(id)
        .select(WorkflowRow::as_select())
        .first(conn)
        .optional()?)
}

/// The workflow with its current version, in one round trip (a trigger reads both).
pub fn find_with_current(
    conn: &mut PgConnection,
    id: Uuid,
) -> Result<Option<(WorkflowRow, Option<VersionRow>)>> {
    Ok(workflows::table
        .find(id)
        .left_join(
            workflow_versions::table.on(workflow_versions::workflow_id
                .eq(workflows::id)
                .and(workflow_versions::version.eq(workflows::current_version))),
        )
        .select((WorkflowRow::as_select(), Option::<VersionRow>::as_select()))
        .first(conn)
        .optional()?)
}

pub fn find_for_update(conn: &mut PgConnection, id: Uuid) -> Result<Option<WorkflowRow>> {
    Ok(workflows::table
        .find(id)
        .select(WorkflowRow::as_select())
        .for_update()
        .first(conn)
        .optional()?)
}

pub fn find_by_name(conn: &mut PgConnection, name: &str) -> Result<Option<WorkflowRow>> {
    Ok(workflows::table
        .filter(workflows::name.eq(name))
        .select(WorkflowRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn version(conn: &mut PgConnection, id: Uuid, version: i32) -> Result<Option<VersionRow>> {
    Ok(workflow_versions::table
        .find((id, version))
        .select(VersionRow::as_select())
        .first(conn)
        .optional()?)
}

pub fn versions(conn: &mut PgConnection, id: Uuid) -> Result<Vec<VersionRow>> {
    Ok(workflow_versions::table
        .filter(workflow_versions::workflow_id.eq(id))
        .order(workflow_versions::version.asc())
        .select(VersionRow::as_select())
        .load(conn)?)
}

pub fn insert(
    conn: &mut PgConnection,
    name: &str,
    description: &str,
    spec: &WorkflowSpec,
    by: Uuid,
) -> Result<WorkflowRow> {
    let id = Uuid::now_v7();
    let row = diesel::insert_into(workflows::table)
        .values((
            workflows::id.eq(id),
            workflows::name.eq(name),
            workflows::description.eq(description),
            workflows::current_version.eq(1),
            workflows::created_by.eq(Some(by)),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?;
    insert_version(conn, id, 1, spec, by)?;
    Ok(row)
}

pub fn insert_version(
    conn: &mut PgConnection,
    id: Uuid,
    version: i32,
    spec: &WorkflowSpec,
    by: Uuid,
) -> Result<()> {
    let spec = serde_json::to_value(spec).map_err(Error::internal)?;
    diesel::insert_into(workflow_versions::table)
        .values((
            workflow_versions::workflow_id.eq(id),
            workflow_versions::version.eq(version),
            workflow_versions::spec.eq(spec),
            workflow_versions::created_by.eq(Some(by)),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn set_current(
    conn: &mut PgConnection,
    id: Uuid,
    name: &str,
    description: &str,
    version: i32,
) -> Result<WorkflowRow> {
    Ok(diesel::update(workflows::table.find(id))
        .set((
            workflows::name.eq(name),
            workflows::description.eq(description),
            workflows::current_version.eq(version),
            workflows::updated_at.eq(chrono::Utc::now()),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?)
}

/// Replaces the workflow's schedule (`None` removes it).
/// Sets the workflow's run limits (`None`: no limit).
pub fn set_limits(
    conn: &mut PgConnection,
    id: Uuid,
    max_concurrent_runs: Option<u32>,
    rate: Option<crate::workflows::RateLimit>,
) -> Result<WorkflowRow> {
    Ok(diesel::update(workflows::table.find(id))
        .set((
            workflows::max_concurrent_runs.eq(max_concurrent_runs.map(|n| n as i32)),
            workflows::rate_limit_runs.eq(rate.map(|r| r.runs as i32)),
            workflows::rate_limit_seconds.eq(rate.map(|r| r.per_seconds as i32)),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?)
}

pub fn set_schedule(
    conn: &mut PgConnection,
    id: Uuid,
    schedule: Option<&Schedule>,
) -> Result<WorkflowRow> {
    Ok(diesel::update(workflows::table.find(id))
        .set((
            workflows::schedule_cron.eq(schedule.map(|s| s.cron.clone())),
            workflows::schedule_timezone.eq(schedule.map(|s| s.timezone.clone())),
            workflows::schedule_enabled.eq(schedule.is_some_and(|s| s.enabled)),
            workflows::schedule_fired_through.eq(schedule.map(|s| s.fired_through)),
            workflows::updated_at.eq(chrono::Utc::now()),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?)
}

pub fn archive(conn: &mut PgConnection, id: Uuid) -> Result<WorkflowRow> {
    Ok(diesel::update(workflows::table.find(id))
        .set((
            workflows::archived_at.eq(Some(chrono::Utc::now())),
            workflows::updated_at.eq(chrono::Utc::now()),
        ))
        .returning(WorkflowRow::as_returning())
        .get_result(conn)?)
}

/// Workflows ordered by name, after the name `after`, at most `limit` rows.
pub fn list(
    conn: &mut PgConnection,
    after: Option<&str>,
    limit: i64,
    include_archived: bool,
) -> Result<Vec<WorkflowRow>> {
    let mut q = workflows::table
        .select(WorkflowRow::as_select())
        .into_boxed();
    if let Some(a) = after {
        q = q.filter(workflows::name.gt(a.to_string()));
    }
    if !include_archived {
        q = q.filter(workflows::archived_at.is_null());
    }
    Ok(q.order(workflows::name.asc()).limit(limit).load(conn)?)
}

/// The workflows among `ids` that exist, in one query.
pub fn find_many(conn: &mut PgConnection, ids: &[Uuid]) -> Result<Vec<WorkflowRow>> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    Ok(workflows::table
        .filter(workflows::id.eq_any(ids))
        .select(WorkflowRow::as_select())
        .load(conn)?)
}

/// The versions among `keys` (workflow id, version) that exist, in one query.
pub fn versions_many(conn: &mut PgConnection, keys: &[(Uuid, i32)]) -> Result<Vec<VersionRow>> {
    let Some(((first_id, first_v), rest)) = keys.split_first() else {
        return Ok(Vec::new());
    };
    let mut q = workflow_versions::table
        .filter(
            workflow_versions::workflow_id
                .eq(*first_id)
                .and(workflow_versions::version.eq(*first_v)),
        )
        .select(VersionRow::as_select())
        .into_boxed();
    for (id, v) in rest {
        q = q.or_filter(
            workflow_versions::workflow_id
                .eq(*id)
                .and(workflow_versions::version.eq(*v)),
        );
    }
    Ok(q.load(conn)?)
}
