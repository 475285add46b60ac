//! After an import: enabling its schedules in phases, and rolling it back.

use chrono::Utc;
use diesel::Connection;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use super::service::{Batch, ImportService};
use super::stored::{BatchStatus, ImportAction};
use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal};
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::imports::BatchWorkflowRow;

/// What one phase did: the legacy ids of the workflows whose schedules it enabled.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Phase {
    pub batch_id: Uuid,
    pub enabled: Vec<String>,
}

/// Where a workflow falls in a batch's share order: stable, and independent of the order of
/// the source, so the same share always selects the same workflows.
fn share_rank(legacy_id: &str) -> String {
    hex::encode(Sha256::digest(legacy_id.as_bytes()))
}

/// The scheduled workflows of the batch a phase selects: all, those with `tag`, and of those
/// the first `share` in share order.
pub fn select<'a>(
    rows: &'a [BatchWorkflowRow],
    tag: Option<&str>,
    share: Option<f64>,
) -> Vec<&'a BatchWorkflowRow> {
    let mut chosen: Vec<&BatchWorkflowRow> = rows
        .iter()
        .filter(|r| r.has_schedule)
        .filter(|r| tag.is_none_or(|t| r.tags.iter().any(|x| x == t)))
        .collect();
    if let Some(share) = share {
        chosen.sort_by_key(|r| share_rank(&r.legacy_id));
        let n = (share * chosen.len() as f64).ceil() as usize;
        chosen.truncate(n.min(chosen.len()));
    }
    chosen
}

/// The batch, locked for the caller's transaction; `CONFLICT` with `rolled_back` when it was
/// rolled back.
fn applied_batch(
    conn: &mut diesel::PgConnection,
    batch_id: Uuid,
    rolled_back: &str,
) -> Result<repo::imports::BatchRow> {
    let batch = repo::imports::find_batch_for_update(conn, batch_id)?
        .ok_or(Error::NotFound("import batch"))?;
    if batch.status != BatchStatus::Applied {
        return Err(Error::Conflict(rolled_back.into()));
    }
    Ok(batch)
}

impl ImportService {
    /// Enables the schedules of a phase of `batch_id` (see [`select`]). Schedules already on
    /// stay on; running the same phase twice enables nothing new.
    pub async fn enable_phase(
        &self,
        who: Option<&Principal>,
        batch_id: Uuid,
        tag: Option<String>,
        share: Option<f64>,
    ) -> Result<Phase> {
        let who = audit::require(self.db(), who, Permission::WriteWorkflows)
            .await?
            .clone();
        if let Some(s) = share
            && !(s > 0.0 && s <= 1.0)
        {
            return Err(Error::field(
                "share",
                "must be greater than 0 and at most 1",
            ));
        }
        self.db()
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    applied_batch(conn, batch_id, "the batch was rolled back")?;
                    let rows = repo::imports::batch_workflows(conn, batch_id)?;
                    let now = repo::schedules::db_now(conn)?;
                    let mut enabled = Vec::new();
                    for r in select(&rows, tag.as_deref(), share) {
                        let Some(wf) = repo::workflows::find(conn, r.workflow_id)? else {
                            continue;
                        };
                        let Some(mut s) = wf.schedule() else { continue };
                        if s.enabled || wf.archived_at.is_some() {
                            continue;
                        }
                        // Ticks before now are not owed: the schedule starts from here.
                        s.enabled = true;
                        s.fired_through = now;
                        repo::workflows::set_schedule(conn, wf.id, Some(&s))?;
                        repo::imports::mark_enabled(conn, batch_id, wf.id, Utc::now())?;
                        enabled.push(r.legacy_id.clone());
                    }
                    let entry =
                        AuditEntry::by(&who, Action::ImportPhase, format!("import:{batch_id}"))
                            .detail(serde_json::json!({
                                "tag": tag, "share": share, "enabled": enabled.len(),
                            }));
                    audit::append(conn, entry)?;
                    Ok(Phase { batch_id, enabled })
                })
            })
            .await
    }

    /// Undoes `batch_id`: workflows it created are deleted (archived when they have runs),
    /// those it updated get their previous version and settings back. Refused when a later
    /// batch or an edit changed the same workflows, unless `force`.
    pub async fn rollback(
        &self,
        who: Option<&Principal>,
        batch_id: Uuid,
        force: bool,
    ) -> Result<Batch> {
        let who = audit::require(self.db(), who, Permission::WriteWorkflows)
            .await?
            .clone();
        self.db()
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let batch = applied_batch(conn, batch_id, "the batch was already rolled back")?;
                    let rows = repo::imports::batch_workflows(conn, batch_id)?;
                    let later = repo::imports::later_batches_touching(conn, &batch)?;
                    if !force && !later.is_empty() {
                        return Err(Error::Conflict(format!(
                            "later import batches changed the same workflows ({}); roll them back first or use force",
                            later.iter().map(Uuid::to_string).collect::<Vec<_>>().join(", ")
                        )));
                    }
                    let mut deleted = 0;
                    let mut archived = 0;
                    for r in &rows {
                        let Some(wf) = repo::workflows::find_for_update(conn, r.workflow_id)? else {
                            continue;
                        };
                        if !force && wf.current_version != r.version {
                            return Err(Error::Conflict(format!(
                                "workflow `{}` was edited after the import (version {} is current, the batch wrote {}); use force",
                                wf.name, wf.current_version, r.version
                            )));
                        }
                        let has_runs = repo::imports::has_runs(conn, wf.id)?;
                        match (r.action, &r.previous) {
                            (ImportAction::Created, _) if has_runs => {
                                repo::imports::archive_and_stop(conn, wf.id)?;
                                archived += 1;
                            }
                            (ImportAction::Created, _) => {
                                repo::imports::delete_workflow(conn, wf.id)?;
                                deleted += 1;
                            }
                            (ImportAction::Updated, Some(prev)) => {
                                repo::imports::restore_previous(conn, wf.id, prev)?;
                            }
                            (ImportAction::Updated, None) => {
                                return Err(Error::Internal(format!(
                                    "batch {batch_id} has no previous state for workflow {}",
                                    wf.id
                                )));
                            }
                        }
                    }
                    let row = repo::imports::mark_rolled_back(conn, batch_id)?;
                    let entry =
                        AuditEntry::by(&who, Action::ImportRollback, format!("import:{batch_id}"))
                            .detail(serde_json::json!({
                                "force": force, "deleted": deleted, "archived": archived,
                                "restored": rows.len() - deleted - archived,
                            }));
                    audit::append(conn, entry)?;
                    Ok(Batch::from(row))
                })
            })
            .await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(id: &str, tags: &[&str], scheduled: bool) -> BatchWorkflowRow {
        BatchWorkflowRow {
            batch_id: Uuid::nil(),
            workflow_id: Uuid::new_v4(),
            legacy_id: id.into(),
            action: ImportAction::Created,
            version: 1,
            previous: None,
            tags: tags.iter().map(|s| s.to_string()).collect(),
            has_schedule: scheduled,
            enabled_at: None,
        }
    }

    #[test]
    fn shares_are_stable_nested_and_respect_tags() {
        let rows: Vec<_> = (0..40)
            .map(|i| {
                row(
                    &format!("t{i}"),
                    if i % 2 == 0 { &["even"] } else { &[] },
                    i != 7,
                )
            })
            .collect();
        let ids =
            |v: Vec<&BatchWorkflowRow>| v.iter().map(|r| r.legacy_id.clone()).collect::<Vec<_>>();
        assert_eq!(
            select(&rows, None, None).len(),
            39,
            "unscheduled ones are never selected"
        );
        let quarter = ids(select(&rows, None, Some(0.25)));
        assert_eq!(quarter.len(), 10);
        assert_eq!(
            quarter,
            ids(select(&rows, None, Some(0.25))),
            "deterministic"
        );
        let half = ids(select(&rows, None, Some(0.5)));
        assert!(
            quarter.iter().all(|q| half.contains(q)),
            "a larger share contains the smaller"
        );
        let mut reversed = rows.clone();
        reversed.reverse();
        assert_eq!(
            quarter,
            ids(select(&reversed, None, Some(0.25))),
            "order of the source does not matter"
        );
        assert!(
            select(&rows, Some("even"), None)
                .iter()
                .all(|r| r.tags == ["even"])
        );
        assert_eq!(select(&rows, Some("even"), None).len(), 20);
    }
}
