//! Creating, versioning, archiving and reading workflows.

use diesel::Connection;
use uuid::Uuid;

use crate::auth::{Permission, Principal, rbac};
use crate::db::Db;
use crate::error::{Error, Result};
use crate::repo;
use crate::repo::workflows::{VersionRow, WorkflowRow};
use crate::workflows::validate::validate_workflow;
use crate::workflows::{WorkflowInput, WorkflowSpec};

#[derive(Clone)]
pub struct WorkflowService {
    db: Db,
}

fn name_taken(name: &str) -> Error {
    Error::Validation(vec![crate::FieldError::new(
        "input.name",
        format!("a workflow named `{name}` already exists"),
    )])
}

impl WorkflowService {
    pub fn new(db: Db) -> Self {
        Self { db }
    }

    pub async fn create(
        &self,
        who: Option<&Principal>,
        input: WorkflowInput,
    ) -> Result<WorkflowRow> {
        let who = rbac::require(who, Permission::WriteWorkflows)?.user_id;
        validate_workflow(&input).map_err(Error::Validation)?;
        self.db
            .run(move |conn| {
                let spec = WorkflowSpec { steps: input.steps };
                let desc = input.description.as_deref().unwrap_or("");
                conn.transaction::<_, Error, _>(|conn| {
                    repo::workflows::insert(conn, &input.name, desc, &spec, who)
                })
                .map_err(|e| match e {
                    Error::Duplicate(_) => name_taken(&input.name),
                    other => other,
                })
            })
            .await
    }

    /// Stores `input` as the next version; runs already started keep the version they pinned.
    pub async fn update(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        input: WorkflowInput,
    ) -> Result<WorkflowRow> {
        let who = rbac::require(who, Permission::WriteWorkflows)?.user_id;
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
                        who,
                    )?;
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
    }

    pub async fn archive(&self, who: Option<&Principal>, id: Uuid) -> Result<WorkflowRow> {
        rbac::require(who, Permission::WriteWorkflows)?;
        self.db
            .run(move |conn| {
                let wf = repo::workflows::find(conn, id)?.ok_or(Error::NotFound("workflow"))?;
                if wf.archived_at.is_some() {
                    return Ok(wf);
                }
                repo::workflows::archive(conn, id)
            })
            .await
    }

    pub async fn get(&self, who: Option<&Principal>, id: Uuid) -> Result<Option<WorkflowRow>> {
        rbac::require(who, Permission::ReadWorkflows)?;
        self.db.run(move |c| repo::workflows::find(c, id)).await
    }

    pub async fn list(
        &self,
        who: Option<&Principal>,
        after: Option<String>,
        limit: i64,
        include_archived: bool,
    ) -> Result<Vec<WorkflowRow>> {
        rbac::require(who, Permission::ReadWorkflows)?;
        self.db
            .run(move |c| repo::workflows::list(c, after.as_deref(), limit, include_archived))
            .await
    }

    pub async fn version(
        &self,
        who: Option<&Principal>,
        id: Uuid,
        version: i32,
    ) -> Result<Option<VersionRow>> {
        rbac::require(who, Permission::ReadWorkflows)?;
        self.db
            .run(move |c| repo::workflows::version(c, id, version))
            .await
    }

    pub async fn versions(&self, who: Option<&Principal>, id: Uuid) -> Result<Vec<VersionRow>> {
        rbac::require(who, Permission::ReadWorkflows)?;
        self.db.run(move |c| repo::workflows::versions(c, id)).await
    }
}
