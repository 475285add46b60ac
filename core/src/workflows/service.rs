//! Creating, versioning, archiving and reading workflows.

use std::collections::HashMap;

use diesel::Connection;
use uuid::Uuid;

use crate::audit::{self, Action, AuditEntry};
use crate::auth::{Permission, Principal};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::workflows::schedule;
use crate::workflows::validate::validate_workflow;
use crate::workflows::{Workflow, WorkflowInput, WorkflowSpec, WorkflowVersion};

#[derive(Clone)]
pub struct WorkflowService {
    pub(super) db: Db,
}

fn name_taken(name: &str) -> Error {
    Error::Validation(vec![crate::FieldError::new(
        "input.name",
        format!("a workflow named `{name}` already exists"),
    )])
}

/// How the audit log names a workflow.
pub(super) fn resource(id: Uuid) -> String {
    format!("workflow:{id}")
}

impl WorkflowService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn create(&self, who: Option<&Principal>, input: WorkflowInput) -> Result<Workflow> {
        let who = audit::require(&self.db, who, Permission::WriteWorkflows)
            .await?
            .clone();
        validate_workflow(&input).map_err(Error::Validation)?;
        self.db
            .run(move |conn| {
                let spec = WorkflowSpec { steps: input.steps };
                let desc = input.description.as_deref().unwrap_or("");
                conn.transaction::<_, Error, _>(|conn| {
                    let mut wf =
                        repo::workflows::insert(conn, &input.name, desc, &spec, who.user_id)?;
                    let now = repo::schedules::db_now(conn)?;
                    if let Some(s) = schedule::stored(input.schedule.as_ref(), None, now) {
                        wf = repo::workflows::set_schedule(conn, wf.id, Some(&s))?;
                    }
                    if input.max_concurrent_runs.is_some() || input.rate_limit.is_some() {
                        wf = repo::workflows::set_limits(
                            conn,
                            wf.id,
                            input.max_concurrent_runs,
                            input.rate_limit,
                        )?;
                    }
                    let entry = AuditEntry::by(&who, Action::WorkflowCreate, resource(wf.id))
                        .detail(serde_json::json!({
                            "name": wf.name, "version": wf.current_version,
                            "schedule": schedule::detail(wf.schedule().as_ref()),
                        }));
                    audit::append(conn, entry)?;
                    Ok(wf)
                })
                .map_err(|e| match e {
                    Error::Duplicate(_) => name_taken(&input.name),
                    other => other,
                })
            })
            .await
            .map(Workflow::from)
    }

    /// Stores `input` as the next version; runs already started keep the version they pinned.
    pub async fn update(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        input: WorkflowInput,
    ) -> Result<Workflow> {
        let who = audit::require(&self.db, who, Permission::WriteWorkflows)
            .await?
            .clone();
        validate_workflow(&input).map_err(Error::Validation)?;
        self.db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let wf = repo::workflows::find_for_update(conn, id)?
                        .ok_or(Error::NotFound("workflow"))?;
                    wf.ensure_active()?;
                    if wf.name != input.name
                        && repo::workflows::find_by_name(conn, &input.name)?.is_some()
                    {
                        return Err(name_taken(&input.name));
                    }
                    let next = wf.current_version + 1;
                    repo::workflows::insert_version(
                        conn,
                        id,
                        next,
                        &WorkflowSpec {
                            steps: input.steps.clone(),
                        },
                        who.user_id,
                    )?;
                    let now = repo::schedules::db_now(conn)?;
                    let old = wf.schedule();
                    let new = schedule::stored(input.schedule.as_ref(), old.as_ref(), now);
                    if new != old {
                        repo::workflows::set_schedule(conn, id, new.as_ref())?;
                    }
                    // Like the schedule, limits left out of an edit are removed.
                    repo::workflows::set_limits(
                        conn,
                        id,
                        input.max_concurrent_runs,
                        input.rate_limit,
                    )?;
                    let entry = AuditEntry::by(&who, Action::WorkflowUpdate, resource(id)).detail(
                        serde_json::json!({
                            "name": input.name, "version": next,
                            "schedule": schedule::detail(new.as_ref()),
                        }),
                    );
                    audit::append(conn, entry)?;
                    repo::workflows::set_current(
                        conn,
                        id,
                        &input.name,
                        input.description.as_deref().unwrap_or(&wf.description),
                        next,
                    )
                })
            })
            .await
            .map_err(|e| match e {
                Error::Duplicate(_) => {
                    Error::Conflict("workflow was changed concurrently, retry".into())
                }
                other => other,
            })
            .map(Workflow::from)
    }

    pub async fn archive(&self, who: Option<&Principal>, id: Uuid) -> Result<Workflow> {
        let who = audit::require(&self.db, who, Permission::WriteWorkflows)
            .await?
            .clone();
        self.db
            .run(move |conn| {
                conn.transaction::<_, Error, _>(|conn| {
                    let wf = repo::workflows::find(conn, id)?.ok_or(Error::NotFound("workflow"))?;
                    if wf.archived_at.is_some() {
                        // Nothing changes, so nothing is recorded.
                        return Ok(wf);
                    }
                    let wf = repo::workflows::archive(conn, id)?;
                    let entry = AuditEntry::by(&who, Action::WorkflowArchive, resource(id))
                        .detail(serde_json::json!({ "name": wf.name }));
                    audit::append(conn, entry)?;
                    Ok(wf)
                })
            })
            .await
            .map(Workflow::from)
    }

    pub async fn get(&self, who: Option<&Principal>, id: Uuid) -> Result<Option<Workflow>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let row = self.db.run(move |c| repo::workflows::find(c, id)).await?;
        Ok(row.map(Workflow::from))
    }

    pub async fn list(
        &self,
        who: Option<&Principal>,
        after: Option<String>,
        limit: i64,
        include_archived: bool,
    ) -> Result<Vec<Workflow>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let rows = self
            .db
            .run(move |c| repo::workflows::list(c, after.as_deref(), limit, include_archived))
            .await?;
        Ok(rows.into_iter().map(Workflow::from).collect())
    }

    pub async fn version(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        version: i32,
    ) -> Result<Option<WorkflowVersion>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        self.db
            .run(move |c| repo::workflows::version(c, id, version))
            .await?
            .map(WorkflowVersion::try_from)
            .transpose()
    }

    pub async fn versions(
        &self,
        who: Option<&Principal>,
        id: Uuid,
    ) -> Result<Vec<WorkflowVersion>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let rows = self
            .db
            .run(move |c| repo::workflows::versions(c, id))
            .await?;
        rows.into_iter().map(WorkflowVersion::try_from).collect()
    }

    /// The workflows among `ids` that exist, by id: one authorization check and one query.
    pub async fn get_many(
        &self,
        who: Option<&Principal>,
        ids: &[Uuid],
    ) -> Result<HashMap<Uuid, Workflow>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let ids = ids.to_vec();
        let rows = self
            .db
            .run(move |c| repo::workflows::find_many(c, &ids))
            .await?;
        Ok(rows
            .into_iter()
            .map(|r| (r.id, Workflow::from(r)))
            .collect())
    }

    /// The versions among `keys` (workflow id, version) that exist: one check and one query.
    pub async fn versions_many(
        &self,
        who: Option<&Principal>,
        keys: &[(Uuid, i32)],
    ) -> Result<HashMap<(Uuid, i32), WorkflowVersion>> {
        audit::require(&self.db, who, Permission::ReadWorkflows).await?;
        let keys = keys.to_vec();
        let rows = self
            .db
            .run(move |c| repo::workflows::versions_many(c, &keys))
            .await?;
        rows.into_iter()
            .map(|r| {
                let v = WorkflowVersion::try_from(r)?;
                Ok(((v.workflow_id, v.version), v))
            })
            .collect()
    }
}
