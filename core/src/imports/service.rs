//! Applying an import: parse and plan the source, compare each planned workflow with what is
//! stored under its legacy id, and either report (dry run) or write everything in one
//! transaction as one batch. Idempotent by legacy id: an unchanged group writes nothing, a
//! changed one becomes a new version of its workflow.

use chrono::{DateTime, Utc};
use diesel::Connection;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::stored::{BatchStatus, ImportAction, StoredFormat};
use super::{ImportFormat, PlannedWorkflow, Problem};
use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal};
use crate::db::Db;
use crate::error::{Error, FieldError, Result};
use crate::repo;
use crate::repo::imports::{BatchRow, BatchWorkflowRow};
use crate::repo::workflows::WorkflowRow;
use crate::workflows::validate::validate_workflow;
use crate::workflows::{WorkflowSpec, schedule};

/// The image of steps whose legacy task names none (crontab lines, JSON tasks without one).
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// What the caller submitted.
#[derive(Debug, Clone)]
pub struct ImportRequest {
    pub format: ImportFormat,
    pub content: String,
    pub dry_run: bool,
    pub skip_invalid: bool,
    pub tag: Option<String>,
}

/// What an import did (or, in a dry run, would do). The lists hold legacy ids of workflows.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ImportReport {
    pub dry_run: bool,
    /// The batch written; `None` for a dry run or when nothing changed.
    pub batch: Option<Batch>,
    pub created: Vec<String>,
    pub updated: Vec<String>,
    pub unchanged: Vec<String>,
    pub problems: Vec<Problem>,
    /// Legacy ids of tasks left out (invalid, or in a group with a problem).
    pub skipped: Vec<String>,
}

/// An applied import.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    pub id: Uuid,
    pub created_at: DateTime<Utc>,
    pub actor_id: Option<Uuid>,
    pub format: StoredFormat,
    pub checksum: String,
    pub tag: Option<String>,
    pub tasks: i32,
    pub workflows: i32,
    pub status: BatchStatus,
    pub problems: Vec<Problem>,
    pub skipped: Vec<String>,
}

impl From<BatchRow> for Batch {
    fn from(r: BatchRow) -> Self {
        Batch {
            id: r.id,
            created_at: r.created_at,
            actor_id: r.actor_id,
            format: r.format,
            checksum: r.checksum,
            tag: r.tag,
            tasks: r.task_count,
            workflows: r.workflow_count,
            status: r.status,
            problems: serde_json::from_value(r.problems).unwrap_or_default(),
            skipped: r.skipped,
        }
    }
}

/// What the import decided for one planned workflow.
enum Decision {
    Create,
    Update(Box<WorkflowRow>),
    Unchanged,
}

#[derive(Clone)]
pub struct ImportService {
    db: Db,
}

impl ImportService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub(super) fn db(&self) -> &Db {
        &self.db
    }

    pub async fn apply(&self, who: Option<&Principal>, req: ImportRequest) -> Result<ImportReport> {
        let who = audit::require(&self.db, who, Permission::WriteWorkflows)
            .await?
            .clone();
        if let Some(t) = &req.tag
            && (t.is_empty() || t.len() > 64)
        {
            return Err(Error::field("input.tag", "must be 1-64 characters"));
        }
        let checksum = hex::encode(Sha256::digest(req.content.as_bytes()));
        let (format, content, tag) = (req.format, req.content.clone(), req.tag.clone());
        let (planned, mut problems, mut skipped, task_count) =
            tokio::task::spawn_blocking(move || {
                let parsed = super::parse(format, &content);
                let n = parsed.tasks.len() + parsed.problems.len();
                let mut skipped: Vec<String> = parsed
                    .problems
                    .iter()
                    .filter_map(|p| p.legacy_id.clone())
                    .collect();
                let mut problems = parsed.problems;
                let planned = super::plan::plan(parsed.tasks, DEFAULT_IMAGE, tag.as_deref());
                problems.extend(planned.problems);
                skipped.extend(planned.skipped);
                (planned.workflows, problems, skipped, n)
            })
            .await
            .map_err(|e| Error::Internal(format!("import planning: {e}")))?;
        let mut planned = planned;
        // Planning only emits valid workflows; a failure here is a planning bug, reported
        // like any problem rather than written.
        planned.retain(|w| match validate_workflow(&w.input) {
            Ok(()) => true,
            Err(errs) => {
                for e in errs {
                    problems.push(Problem {
                        position: w.legacy_id.clone(),
                        reason: format!("{}: {}", e.field, e.message),
                        legacy_id: Some(w.legacy_id.clone()),
                    });
                }
                skipped.extend(w.step_legacy_ids.values().cloned());
                false
            }
        });
        skipped.sort();
        skipped.dedup();
        if !problems.is_empty() && !req.skip_invalid && !req.dry_run {
            return Err(Error::Validation(
                problems
                    .iter()
                    .map(|p| FieldError::new(format!("input.content:{}", p.position), &p.reason))
                    .collect(),
            ));
        }
        let db = self.db.clone();
        let dry_run = req.dry_run;
        let tag = req.tag.clone();
        db.run(move |conn| {
            conn.transaction::<_, Error, _>(|conn| {
                let ids: Vec<String> = planned.iter().map(|w| w.legacy_id.clone()).collect();
                let existing = repo::imports::workflows_by_legacy_id(conn, &ids)?;
                let mut report = ImportReport {
                    dry_run,
                    problems: problems.clone(),
                    skipped: skipped.clone(),
                    ..Default::default()
                };
                let mut decisions = Vec::with_capacity(planned.len());
                for w in &planned {
                    let found = existing
                        .iter()
                        .find(|e| e.legacy_id.as_deref() == Some(&w.legacy_id));
                    let d = match found {
                        None => {
                            if let Some(other) = repo::workflows::find_by_name(conn, &w.input.name)?
                            {
                                return Err(Error::field(
                                    "input.content",
                                    format!(
                                        "workflow name `{}` (legacy id {}) is taken by workflow {}",
                                        w.input.name, w.legacy_id, other.id
                                    ),
                                ));
                            }
                            report.created.push(w.legacy_id.clone());
                            Decision::Create
                        }
                        Some(e)
                            if e.import_checksum.as_deref() == Some(&w.checksum)
                                && e.archived_at.is_none() =>
                        {
                            report.unchanged.push(w.legacy_id.clone());
                            Decision::Unchanged
                        }
                        Some(e) => {
                            report.updated.push(w.legacy_id.clone());
                            Decision::Update(Box::new(e.clone()))
                        }
                    };
                    decisions.push(d);
                }
                if dry_run || (report.created.is_empty() && report.updated.is_empty()) {
                    return Ok(report);
                }
                let batch = BatchRow {
                    id: Uuid::now_v7(),
                    created_at: Utc::now(),
                    actor_id: Some(who.user_id),
                    format: format.into(),
                    checksum: checksum.clone(),
                    tag: tag.clone(),
                    task_count: task_count as i32,
                    workflow_count: planned.len() as i32,
                    created_count: report.created.len() as i32,
                    updated_count: report.updated.len() as i32,
                    unchanged_count: report.unchanged.len() as i32,
                    status: BatchStatus::Applied,
                    problems: serde_json::to_value(&problems).map_err(Error::internal)?,
                    skipped: skipped.clone(),
                    rolled_back_at: None,
                };
                repo::imports::insert_batch(conn, &batch)?;
                // One clock reading for the whole batch (schedules start from it).
                let now = repo::schedules::db_now(conn)?;
                for (w, d) in planned.iter().zip(&decisions) {
                    write(conn, &who, batch.id, now, w, d)?;
                }
                let entry =
                    AuditEntry::by(&who, Action::ImportApply, format!("import:{}", batch.id))
                        .detail(serde_json::json!({
                            "checksum": checksum, "created": report.created.len(),
                            "updated": report.updated.len(), "unchanged": report.unchanged.len(),
                            "skipped": skipped.len(),
                        }));
                audit::append(conn, entry)?;
                report.batch = Some(batch.into());
                Ok(report)
            })
        })
        .await
    }

    /// Batches, newest first.
    pub async fn batches(
        &self,
        who: Option<&Principal>,
        before: Option<(DateTime<Utc>, Uuid)>,
        limit: i64,
    ) -> Result<Vec<Batch>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let rows = self
            .db
            .run(move |c| repo::imports::list_batches(c, before, limit))
            .await?;
        Ok(rows.into_iter().map(Batch::from).collect())
    }
}

/// Writes one planned workflow as decided, recording what the batch did to it.
fn write(
    conn: &mut diesel::PgConnection,
    who: &Principal,
    batch_id: Uuid,
    now: DateTime<Utc>,
    w: &PlannedWorkflow,
    d: &Decision,
) -> Result<()> {
    let spec = WorkflowSpec {
        steps: w.input.steps.clone(),
    };
    let desc = w.input.description.as_deref().unwrap_or("");
    let meta = serde_json::json!({
        "stepLegacyIds": w.step_legacy_ids, "taskChecksums": w.task_checksums, "tags": w.tags,
    });
    let (row, action, previous) = match d {
        Decision::Unchanged => return Ok(()),
        Decision::Create => {
            let mut row = repo::workflows::insert(conn, &w.input.name, desc, &spec, who.user_id)?;
            if let Some(s) = schedule::stored(w.input.schedule.as_ref(), None, now) {
                row = repo::workflows::set_schedule(conn, row.id, Some(&s))?;
            }
            (row, ImportAction::Created, None)
        }
        Decision::Update(old) => {
            let next = old.current_version + 1;
            repo::workflows::insert_version(conn, old.id, next, &spec, who.user_id)?;
            // A schedule a phase already enabled stays enabled.
            let mut input = w.input.schedule.clone();
            if let (Some(i), Some(o)) = (input.as_mut(), old.schedule()) {
                i.enabled = Some(o.enabled);
            }
            let old_schedule = old.schedule();
            let new = schedule::stored(input.as_ref(), old_schedule.as_ref(), now);
            if new != old_schedule {
                repo::workflows::set_schedule(conn, old.id, new.as_ref())?;
            }
            let row = repo::workflows::set_current(conn, old.id, &w.input.name, desc, next)?;
            // Importing the tasks again brings back a workflow a rollback archived.
            let row = match row.archived_at {
                Some(_) => repo::imports::unarchive(conn, old.id)?,
                None => row,
            };
            (row, ImportAction::Updated, Some(previous_state(old)))
        }
    };
    repo::imports::set_import_state(conn, row.id, &w.legacy_id, &w.checksum, &meta)?;
    repo::imports::insert_batch_workflow(
        conn,
        &BatchWorkflowRow {
            batch_id,
            workflow_id: row.id,
            legacy_id: w.legacy_id.clone(),
            action,
            version: row.current_version,
            previous,
            tags: w.tags.iter().cloned().collect(),
            has_schedule: w.input.schedule.is_some(),
            enabled_at: None,
        },
    )
}

/// The columns an update changes, as they were: what a rollback puts back.
fn previous_state(old: &WorkflowRow) -> serde_json::Value {
    serde_json::json!({
        "name": old.name, "description": old.description, "currentVersion": old.current_version,
        "updatedAt": old.updated_at, "archivedAt": old.archived_at,
        "scheduleCron": old.schedule_cron,
        "scheduleTimezone": old.schedule_timezone, "scheduleEnabled": old.schedule_enabled,
        "scheduleFiredThrough": old.schedule_fired_through, "importChecksum": old.import_checksum,
        "importMeta": old.import_meta,
    })
}
