//! Verifying an import: a source compared with what is stored, task by task. Each task of the
//! source is planned as the import would plan it and compared with the step stored under its
//! legacy id in the workflow's current version, so an edit made after the import shows up.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::ImportFormat;
use super::service::{DEFAULT_IMAGE, ImportService};
use crate::audit;
use crate::auth::{Permission, Principal};
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::workflows::WorkflowRow;
use crate::workflows::StepSpec;

/// How a task differs between the source and what is stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DifferenceKind {
    /// In the source, not stored.
    Missing,
    /// Stored by the batch, not in the source.
    Extra,
    /// Stored differently.
    Changed,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Difference {
    pub legacy_id: String,
    pub kind: DifferenceKind,
    pub detail: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verification {
    pub ok: bool,
    pub differences: Vec<Difference>,
}

/// The fields of two steps that differ (dependencies compared by legacy id elsewhere).
fn step_diff(want: &StepSpec, have: &StepSpec) -> Vec<&'static str> {
    let mut d = Vec::new();
    if want.image != have.image {
        d.push("image");
    }
    if want.argv() != have.argv() {
        d.push("command");
    }
    if want.env != have.env {
        d.push("env");
    }
    if want.timeout_seconds != have.timeout_seconds {
        d.push("timeout_seconds");
    }
    if want.retries != have.retries {
        d.push("retries");
    }
    if want.depends_on != have.depends_on {
        d.push("depends_on");
    }
    d
}

/// Step name → legacy id, as the import stored it on the workflow.
fn step_legacy_ids(wf: &WorkflowRow) -> BTreeMap<String, String> {
    wf.import_meta
        .as_ref()
        .and_then(|m| serde_json::from_value(m["stepLegacyIds"].clone()).ok())
        .unwrap_or_default()
}

impl ImportService {
    /// Compares `content` (in the batch's format) with what is stored for it.
    pub async fn verify(
        &self,
        who: Option<&Principal>,
        batch_id: Uuid,
        content: String,
    ) -> Result<Verification> {
        // Maintainers and admins, like the other import operations (it is a mutation).
        audit::require(self.db(), who, Permission::WriteWorkflows).await?;
        let batch = self
            .db()
            .run(move |c| repo::imports::find_batch(c, batch_id))
            .await?
            .ok_or(Error::NotFound("import batch"))?;
        let format = ImportFormat::from(batch.format);
        let tag = batch.tag.clone();
        let planned = tokio::task::spawn_blocking(move || {
            let parsed = super::parse(format, &content);
            super::plan::plan(parsed.tasks, DEFAULT_IMAGE, tag.as_deref())
        })
        .await
        .map_err(|e| Error::Internal(format!("verify planning: {e}")))?;
        self.db()
            .run(move |conn| {
                let mut differences = Vec::new();
                let mut seen = BTreeSet::new();
                for w in &planned.workflows {
                    let stored = repo::imports::workflows_by_legacy_id(
                        conn,
                        std::slice::from_ref(&w.legacy_id),
                    )?;
                    let Some(wf) = stored.into_iter().next() else {
                        for id in w.step_legacy_ids.values() {
                            seen.insert(id.clone());
                            differences.push(Difference {
                                legacy_id: id.clone(),
                                kind: DifferenceKind::Missing,
                                detail: format!("no workflow holds the group of {}", w.legacy_id),
                            });
                        }
                        continue;
                    };
                    let spec = repo::workflows::version(conn, wf.id, wf.current_version)?
                        .ok_or(Error::NotFound("workflow version"))?
                        .spec()?;
                    let names = step_legacy_ids(&wf);
                    let by_legacy: BTreeMap<&String, &StepSpec> = names
                        .iter()
                        .filter_map(|(step, id)| {
                            Some((id, spec.steps.iter().find(|s| &s.name == step)?))
                        })
                        .collect();
                    for (step_name, id) in &w.step_legacy_ids {
                        seen.insert(id.clone());
                        let want = w.input.steps.iter().find(|s| &s.name == step_name);
                        match (want, by_legacy.get(id)) {
                            (Some(want), Some(have)) => {
                                let fields = step_diff(want, have);
                                if !fields.is_empty() {
                                    differences.push(Difference {
                                        legacy_id: id.clone(),
                                        kind: DifferenceKind::Changed,
                                        detail: format!(
                                            "differs in {} (workflow `{}`)",
                                            fields.join(", "),
                                            wf.name
                                        ),
                                    });
                                }
                            }
                            _ => differences.push(Difference {
                                legacy_id: id.clone(),
                                kind: DifferenceKind::Missing,
                                detail: format!("workflow `{}` has no step for it", wf.name),
                            }),
                        }
                    }
                    let want_cron = w.input.schedule.as_ref().map(|s| s.cron.clone());
                    if want_cron != wf.schedule_cron {
                        differences.push(Difference {
                            legacy_id: w.legacy_id.clone(),
                            kind: DifferenceKind::Changed,
                            detail: format!(
                                "schedule is {:?}, the source says {:?}",
                                wf.schedule_cron, want_cron
                            ),
                        });
                    }
                }
                // Tasks the batch stored that the source no longer has.
                for r in repo::imports::batch_workflows(conn, batch_id)? {
                    let Some(wf) = repo::workflows::find(conn, r.workflow_id)? else {
                        continue;
                    };
                    let names = step_legacy_ids(&wf);
                    for id in names.values().filter(|id| !seen.contains(*id)) {
                        differences.push(Difference {
                            legacy_id: id.clone(),
                            kind: DifferenceKind::Extra,
                            detail: format!("stored in workflow `{}`, not in the source", wf.name),
                        });
                    }
                }
                differences.sort_by(|a, b| a.legacy_id.cmp(&b.legacy_id));
                Ok(Verification {
                    ok: differences.is_empty(),
                    differences,
                })
            })
            .await
    }
}
