//! Recognises the documents the compiled read path answers: one query operation whose only
//! field is `Query.runs`, selecting plain fields of the page, its runs, their tasks and their
//! workflow. Anything else (fragments, directives, field arguments below `runs`, duplicate
//! response keys, a variable with a default, a field not listed here) is not recognised and
//! the request takes the general executor, which also validates it and reports its errors.

use async_graphql::parser::types::{
    BaseType, DocumentOperations, ExecutableDocument, OperationType, Selection, SelectionSet,
};
use async_graphql::{Name, Positioned, Value, Variables};
use tms_core::runs::RunStatus;

/// `Query.runs`'s arguments, as the resolver would see them.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Args {
    pub first: Option<i32>,
    pub after: Option<String>,
    pub workflow_id: Option<String>,
    pub status: Option<RunStatus>,
}

/// A recognised document: the response key of `runs`, its arguments and its selection. It
/// depends on the document alone, so it is kept by the document's text ([`super::Plans`]) and
/// resolved against each request's variables ([`Plan::args`]).
#[derive(Debug)]
pub struct Plan {
    pub key: Name,
    /// The literal arguments.
    literal: Args,
    /// The arguments given by variables: (argument, variable, whether the variable is nullable).
    variables: Vec<(&'static str, Name, bool)>,
    pub page: Vec<(Name, PageField)>,
}

#[derive(Debug)]
pub enum PageField {
    Typename,
    PageInfo(Vec<(Name, PageInfoField)>),
    Edges(Vec<(Name, EdgeField)>),
    Nodes(Vec<(Name, RunField)>),
}

#[derive(Debug, Clone, Copy)]
pub enum PageInfoField {
    Typename,
    HasPreviousPage,
    HasNextPage,
    StartCursor,
    EndCursor,
}

#[derive(Debug)]
pub enum EdgeField {
    Typename,
    Cursor,
    Node(Vec<(Name, RunField)>),
}

#[derive(Debug)]
pub enum RunField {
    Typename,
    Id,
    Status,
    Workflow(Vec<(Name, WorkflowField)>),
    Version,
    Trigger,
    ScheduledFor,
    Inputs,
    IdempotencyKey,
    NoCache,
    CreatedAt,
    StartedAt,
    FinishedAt,
    Error,
    DeadLetteredAt,
    Deliveries,
    LastSeq,
    Percent,
    EtaSeconds,
    CancelRequestedAt,
    Tasks(Vec<(Name, TaskField)>),
}

#[derive(Debug, Clone, Copy)]
pub enum TaskField {
    Typename,
    Name,
    Status,
    Attempt,
    DependsOn,
    StartedAt,
    FinishedAt,
    ExitCode,
    Cached,
    LogTail,
    ProgressPercent,
    Error,
}

#[derive(Debug, Clone, Copy)]
pub enum WorkflowField {
    Typename,
    Id,
    Name,
    Description,
    CurrentVersion,
    Archived,
    LegacyId,
    ArchivedAt,
    MaxConcurrentRuns,
    CreatedAt,
    UpdatedAt,
}

impl Plan {
    /// The selections on the page's runs (under `edges { node }` and `nodes`).
    pub fn run_selections(&self) -> impl Iterator<Item = &[(Name, RunField)]> {
        self.page.iter().flat_map(|(_, f)| match f {
            PageField::Nodes(run) => vec![run.as_slice()],
            PageField::Edges(edge) => edge
                .iter()
                .filter_map(|(_, e)| match e {
                    EdgeField::Node(run) => Some(run.as_slice()),
                    _ => None,
                })
                .collect(),
            _ => Vec::new(),
        })
    }

    /// Whether any run selection has a field matching `pred`.
    pub fn wants(&self, pred: impl Fn(&RunField) -> bool) -> bool {
        self.run_selections()
            .any(|sel| sel.iter().any(|(_, f)| pred(f)))
    }
}

/// The plan for `doc`, or `None` when the general executor must answer it.
pub fn of(doc: &ExecutableDocument, operation: Option<&str>) -> Option<Plan> {
    if !doc.fragments.is_empty() {
        return None;
    }
    let op = match (&doc.operations, operation) {
        (DocumentOperations::Single(op), None) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name)?,
        (DocumentOperations::Multiple(ops), None) if ops.len() == 1 => ops.values().next()?,
        _ => return None,
    };
    let op = &op.node;
    if op.ty != OperationType::Query || !op.directives.is_empty() {
        return None;
    }
    let [
        Positioned {
            node: Selection::Field(root),
            ..
        },
    ] = op.selection_set.node.items.as_slice()
    else {
        return None;
    };
    let root = &root.node;
    if root.name.node != "runs" || !root.directives.is_empty() {
        return None;
    }
    let defs = &op.variable_definitions;
    if (1..defs.len()).any(|i| defs[..i].iter().any(|d| d.node.name == defs[i].node.name)) {
        return None;
    }
    let mut used = vec![false; defs.len()];
    let mut literal = Args::default();
    let mut variables = Vec::new();
    let mut seen = Vec::new();
    for (name, value) in &root.arguments {
        let (name, ty) = match name.node.as_str() {
            "first" => ("first", "Int"),
            "after" => ("after", "String"),
            "workflowId" => ("workflowId", "ID"),
            "status" => ("status", "RunStatus"),
            _ => return None,
        };
        if seen.contains(&name) {
            return None;
        }
        seen.push(name);
        let mut vars = Vec::new();
        let value = value
            .node
            .clone()
            .into_const_with(|var| {
                vars.push(var);
                Ok::<_, ()>(Value::Null)
            })
            .ok()?;
        match (vars.as_slice(), value) {
            ([], value) => set(&mut literal, name, value)?,
            // The whole value is the variable (not a list holding it).
            ([var], Value::Null) => {
                let i = defs.iter().position(|d| d.node.name.node == *var)?;
                let def = &defs[i].node;
                let fits =
                    matches!(&def.var_type.node.base, BaseType::Named(n) if n.as_str() == ty);
                if !fits || def.default_value.is_some() || !def.directives.is_empty() {
                    return None;
                }
                used[i] = true;
                variables.push((name, var.clone(), def.var_type.node.nullable));
            }
            _ => return None,
        }
    }
    // Every variable must be used (an unused one is a validation error).
    if used.contains(&false) {
        return None;
    }
    Some(Plan {
        key: root.response_key().node.clone(),
        literal,
        variables,
        page: fields(&root.selection_set.node, page_field)?,
    })
}

impl Plan {
    /// The arguments with `vars`' values; `None` when a value does not fit its variable's type
    /// (the general executor then reports it).
    pub fn args(&self, vars: &Variables) -> Option<Args> {
        let mut args = self.literal.clone();
        for (arg, var, nullable) in &self.variables {
            let value = match vars.get(var).cloned().unwrap_or(Value::Null) {
                Value::Null if !nullable => return None,
                // Enum values arrive in JSON variables as strings.
                Value::String(s) if *arg == "status" => Value::Enum(Name::new(s)),
                Value::Enum(_) if *arg != "status" => return None,
                v => v,
            };
            set(&mut args, arg, value)?;
        }
        Some(args)
    }
}

/// Sets argument `name` of `args` to `value`; `None` when the value is not of its type.
fn set(args: &mut Args, name: &str, value: Value) -> Option<()> {
    match (name, value) {
        (_, Value::Null) => {}
        ("first", Value::Number(n)) => args.first = Some(i32::try_from(n.as_i64()?).ok()?),
        ("after", Value::String(s)) => args.after = Some(s),
        ("workflowId", Value::String(s)) => args.workflow_id = Some(s),
        ("status", Value::Enum(s)) => args.status = Some(status(&s)?),
        _ => return None,
    }
    Some(())
}

/// The status named `name` in the schema (`RunStatus`'s values).
fn status(name: &str) -> Option<RunStatus> {
    Some(match name {
        "QUEUED" => RunStatus::Queued,
        "RUNNING" => RunStatus::Running,
        "SUCCEEDED" => RunStatus::Succeeded,
        "FAILED" => RunStatus::Failed,
        "CANCELLED" => RunStatus::Cancelled,
        "TIMED_OUT" => RunStatus::TimedOut,
        _ => return None,
    })
}

/// The fields of `set`, each mapped by `field` (name, sub-selection) to what it selects. Fields
/// only: no fragments, directives or arguments, and every response key once.
fn fields<F>(
    set: &SelectionSet,
    field: impl Fn(&str, &SelectionSet) -> Option<F>,
) -> Option<Vec<(Name, F)>> {
    let mut out: Vec<(Name, F)> = Vec::with_capacity(set.items.len());
    for item in &set.items {
        let Selection::Field(f) = &item.node else {
            return None;
        };
        let f = &f.node;
        if !f.directives.is_empty() || !f.arguments.is_empty() {
            return None;
        }
        let key = &f.response_key().node;
        if out.iter().any(|(k, _)| k == key) {
            return None;
        }
        out.push((key.clone(), field(&f.name.node, &f.selection_set.node)?));
    }
    (!out.is_empty()).then_some(out)
}

/// A leaf: no selection of its own.
fn leaf<F>(set: &SelectionSet, f: F) -> Option<F> {
    set.items.is_empty().then_some(f)
}

fn page_field(name: &str, set: &SelectionSet) -> Option<PageField> {
    Some(match name {
        "__typename" => leaf(set, PageField::Typename)?,
        "pageInfo" => PageField::PageInfo(fields(set, page_info_field)?),
        "edges" => PageField::Edges(fields(set, edge_field)?),
        "nodes" => PageField::Nodes(fields(set, run_field)?),
        _ => return None,
    })
}

fn page_info_field(name: &str, set: &SelectionSet) -> Option<PageInfoField> {
    use PageInfoField::*;
    leaf(
        set,
        match name {
            "__typename" => Typename,
            "hasPreviousPage" => HasPreviousPage,
            "hasNextPage" => HasNextPage,
            "startCursor" => StartCursor,
            "endCursor" => EndCursor,
            _ => return None,
        },
    )
}

fn edge_field(name: &str, set: &SelectionSet) -> Option<EdgeField> {
    Some(match name {
        "__typename" => leaf(set, EdgeField::Typename)?,
        "cursor" => leaf(set, EdgeField::Cursor)?,
        "node" => EdgeField::Node(fields(set, run_field)?),
        _ => return None,
    })
}

fn run_field(name: &str, set: &SelectionSet) -> Option<RunField> {
    use RunField::*;
    let f = match name {
        "workflow" => return Some(Workflow(fields(set, workflow_field)?)),
        "tasks" => return Some(Tasks(fields(set, task_field)?)),
        "__typename" => Typename,
        "id" => Id,
        "status" => Status,
        "version" => Version,
        "trigger" => Trigger,
        "scheduledFor" => ScheduledFor,
        "inputs" => Inputs,
        "idempotencyKey" => IdempotencyKey,
        "noCache" => NoCache,
        "createdAt" => CreatedAt,
        "startedAt" => StartedAt,
        "finishedAt" => FinishedAt,
        "error" => Error,
        "deadLetteredAt" => DeadLetteredAt,
        "deliveries" => Deliveries,
        "lastSeq" => LastSeq,
        "percent" => Percent,
        "etaSeconds" => EtaSeconds,
        "cancelRequestedAt" => CancelRequestedAt,
        _ => return None,
    };
    leaf(set, f)
}

fn task_field(name: &str, set: &SelectionSet) -> Option<TaskField> {
    use TaskField::*;
    leaf(
        set,
        match name {
            "__typename" => Typename,
            "name" => Name,
            "status" => Status,
            "attempt" => Attempt,
            "dependsOn" => DependsOn,
            "startedAt" => StartedAt,
            "finishedAt" => FinishedAt,
            "exitCode" => ExitCode,
            "cached" => Cached,
            "logTail" => LogTail,
            "progressPercent" => ProgressPercent,
            "error" => Error,
            _ => return None,
        },
    )
}

fn workflow_field(name: &str, set: &SelectionSet) -> Option<WorkflowField> {
    use WorkflowField::*;
    leaf(
        set,
        match name {
            "__typename" => Typename,
            "id" => Id,
            "name" => Name,
            "description" => Description,
            "currentVersion" => CurrentVersion,
            "archived" => Archived,
            "legacyId" => LegacyId,
            "archivedAt" => ArchivedAt,
            "maxConcurrentRuns" => MaxConcurrentRuns,
            "createdAt" => CreatedAt,
            "updatedAt" => UpdatedAt,
            _ => return None,
        },
    )
}
