//! Builds the answer of a recognised runs page from what was read, value by value as the
//! general executor would: the same scalar conversions (`InputType::to_value`, the schema's
//! enums), the same cursors, the selection's order and response keys.

use std::collections::HashMap;

use async_graphql::indexmap::IndexMap;
use async_graphql::{InputType, Name, Value};
use tms_core::runs::eta::Estimate;
use tms_core::runs::{Run, Task};
use tms_core::workflows::Workflow;
use uuid::Uuid;

use super::plan::{EdgeField, PageField, PageInfoField, RunField, TaskField, WorkflowField};
use crate::graphql::ids::encode_cursor;
use crate::graphql::runs::{RunStatus, RunTrigger, TaskStatus};

/// What a page's answer is made of.
pub struct PageData<'a> {
    pub runs: &'a [Run],
    pub has_previous: bool,
    pub has_next: bool,
    pub tasks: &'a HashMap<Uuid, Vec<Task>>,
    pub workflows: &'a HashMap<Uuid, Workflow>,
    pub estimates: &'a HashMap<Uuid, Estimate>,
}

/// `None` when something the selection needs is not there (a run's workflow): the general
/// executor then answers, with the error in place.
pub fn page(sel: &[(Name, PageField)], data: &PageData<'_>) -> Option<Value> {
    let cursors: Vec<String> = data
        .runs
        .iter()
        .map(|r| encode_cursor("run", &r.id.to_string()))
        .collect();
    object(sel, |f| {
        Some(match f {
            PageField::Typename => str("RunConnection"),
            PageField::PageInfo(sel) => object(sel, |f| {
                Some(match f {
                    PageInfoField::Typename => str("PageInfo"),
                    PageInfoField::HasPreviousPage => Value::Boolean(data.has_previous),
                    PageInfoField::HasNextPage => Value::Boolean(data.has_next),
                    PageInfoField::StartCursor => opt(cursors.first().map(|c| str(c))),
                    PageInfoField::EndCursor => opt(cursors.last().map(|c| str(c))),
                })
            })?,
            PageField::Edges(sel) => list(data.runs.iter().zip(&cursors), |(run, cursor)| {
                object(sel, |f| {
                    Some(match f {
                        EdgeField::Typename => str("RunEdge"),
                        EdgeField::Cursor => str(cursor),
                        EdgeField::Node(sel) => self::run(sel, run, data)?,
                    })
                })
            })?,
            PageField::Nodes(sel) => list(data.runs.iter(), |run| self::run(sel, run, data))?,
        })
    })
}

fn run(sel: &[(Name, RunField)], r: &Run, data: &PageData<'_>) -> Option<Value> {
    // A run the estimate read did not find has made no progress (as `Run.percent` says).
    let estimate = || {
        data.estimates.get(&r.id).copied().unwrap_or(Estimate {
            percent: 0.0,
            eta_seconds: None,
        })
    };
    object(sel, |f| {
        Some(match f {
            RunField::Typename => str("Run"),
            RunField::Id => Value::String(r.id.to_string()),
            RunField::Status => RunStatus::from(r.status).to_value(),
            RunField::Workflow(sel) => workflow(sel, data.workflows.get(&r.workflow_id)?),
            RunField::Version => r.version.to_value(),
            RunField::Trigger => RunTrigger::from(r.trigger).to_value(),
            RunField::ScheduledFor => r.scheduled_for.to_value(),
            RunField::Inputs => async_graphql::to_value(&r.inputs).ok().unwrap_or_default(),
            RunField::IdempotencyKey => r.idempotency_key.to_value(),
            RunField::NoCache => r.no_cache.to_value(),
            RunField::CreatedAt => r.created_at.to_value(),
            RunField::StartedAt => r.started_at.to_value(),
            RunField::FinishedAt => r.finished_at.to_value(),
            RunField::Error => r.error.to_value(),
            RunField::DeadLetteredAt => r.dead_lettered_at.to_value(),
            RunField::Deliveries => r.deliveries.to_value(),
            RunField::LastSeq => r.last_seq.to_value(),
            RunField::Percent => estimate().percent.to_value(),
            RunField::EtaSeconds => estimate().eta_seconds.to_value(),
            RunField::CancelRequestedAt => r.cancel_requested_at.to_value(),
            RunField::Tasks(sel) => {
                let tasks = data.tasks.get(&r.id).map(Vec::as_slice).unwrap_or_default();
                list(tasks.iter(), |t| Some(task(sel, t)))?
            }
        })
    })
}

fn task(sel: &[(Name, TaskField)], t: &Task) -> Value {
    let value = |f: &TaskField| match f {
        TaskField::Typename => str("Task"),
        TaskField::Name => str(&t.name),
        TaskField::Status => TaskStatus::from(t.status).to_value(),
        TaskField::Attempt => t.attempt.to_value(),
        TaskField::DependsOn => t.depends_on.to_value(),
        TaskField::StartedAt => t.started_at.to_value(),
        TaskField::FinishedAt => t.finished_at.to_value(),
        TaskField::ExitCode => t.exit_code.to_value(),
        TaskField::Cached => Value::Boolean(t.status == tms_core::runs::TaskStatus::Cached),
        TaskField::LogTail => str(&t.log_tail),
        TaskField::ProgressPercent => t.progress_percent.to_value(),
        TaskField::Error => t.error.to_value(),
    };
    Value::Object(sel.iter().map(|(k, f)| (k.clone(), value(f))).collect())
}

fn workflow(sel: &[(Name, WorkflowField)], w: &Workflow) -> Value {
    let value = |f: &WorkflowField| match f {
        WorkflowField::Typename => str("Workflow"),
        WorkflowField::Id => Value::String(w.id.to_string()),
        WorkflowField::Name => str(&w.name),
        WorkflowField::Description => str(&w.description),
        WorkflowField::CurrentVersion => w.current_version.to_value(),
        WorkflowField::Archived => Value::Boolean(w.archived_at.is_some()),
        WorkflowField::LegacyId => w.legacy_id.to_value(),
        WorkflowField::ArchivedAt => w.archived_at.to_value(),
        WorkflowField::MaxConcurrentRuns => w.max_concurrent_runs.map(|n| n as i32).to_value(),
        WorkflowField::CreatedAt => w.created_at.to_value(),
        WorkflowField::UpdatedAt => w.updated_at.to_value(),
    };
    Value::Object(sel.iter().map(|(k, f)| (k.clone(), value(f))).collect())
}

fn object<F>(sel: &[(Name, F)], mut value: impl FnMut(&F) -> Option<Value>) -> Option<Value> {
    let mut map = IndexMap::with_capacity(sel.len());
    for (key, f) in sel {
        map.insert(key.clone(), value(f)?);
    }
    Some(Value::Object(map))
}

fn list<T>(items: impl Iterator<Item = T>, value: impl FnMut(T) -> Option<Value>) -> Option<Value> {
    items
        .map(value)
        .collect::<Option<Vec<_>>>()
        .map(Value::List)
}

fn str(s: &str) -> Value {
    Value::String(s.to_string())
}

fn opt(v: Option<Value>) -> Value {
    v.unwrap_or(Value::Null)
}
