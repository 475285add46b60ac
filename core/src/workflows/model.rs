//! Workflows and their versions as the services hand them out: decoupled from the table rows,
//! with a version's spec already parsed.

use chrono::{DateTime, Utc};
use uuid::Uuid;

use crate::error::Error;
use crate::repo::workflows::{VersionRow, WorkflowRow};
use crate::schedules::Schedule;
use crate::workflows::WorkflowSpec;

#[derive(Debug, Clone, PartialEq)]
pub struct Workflow {
    pub id: Uuid,
    pub name: String,
    pub description: String,
    /// The version new runs start with.
    pub current_version: i32,
    pub archived_at: Option<DateTime<Utc>>,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
    pub updated_at: DateTime<Utc>,
    pub schedule: Option<Schedule>,
    /// The legacy id of the task group an import made this workflow from.
    pub legacy_id: Option<String>,
    pub max_concurrent_runs: Option<u32>,
    pub rate_limit: Option<crate::workflows::RateLimit>,
}

impl From<WorkflowRow> for Workflow {
    fn from(row: WorkflowRow) -> Self {
        Workflow {
            schedule: row.schedule(),
            id: row.id,
            name: row.name,
            description: row.description,
            current_version: row.current_version,
            archived_at: row.archived_at,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            legacy_id: row.legacy_id,
            max_concurrent_runs: row.max_concurrent_runs.map(|n| n as u32),
            rate_limit: row
                .rate_limit_runs
                .zip(row.rate_limit_seconds)
                .map(|(runs, secs)| crate::workflows::RateLimit {
                    runs: runs as u32,
                    per_seconds: secs as u32,
                }),
        }
    }
}

/// One immutable version of a workflow.
#[derive(Debug, Clone, PartialEq)]
pub struct WorkflowVersion {
    pub workflow_id: Uuid,
    pub version: i32,
    pub spec: WorkflowSpec,
    pub created_by: Option<Uuid>,
    pub created_at: DateTime<Utc>,
}

impl TryFrom<VersionRow> for WorkflowVersion {
    type Error = Error;

    /// Fails (as an internal error) only when the stored spec no longer parses.
    fn try_from(row: VersionRow) -> Result<Self, Error> {
        Ok(WorkflowVersion {
            spec: row.spec()?,
            workflow_id: row.workflow_id,
            version: row.version,
            created_by: row.created_by,
            created_at: row.created_at,
        })
    }
}
