//! GraphQL types and root fields of imports from legacy schedulers.

use async_graphql::connection::{Connection, Edge};
use async_graphql::{Context, Enum, ID, InputObject, Result, SimpleObject};
use chrono::{DateTime, Utc};
use tms_core::imports::service::{Batch, ImportRequest};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::ids::{decode_cursor, encode_cursor, page_size, uuid};
use crate::state::Services;

/// Source formats of an import.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::imports::ImportFormat")]
pub enum ImportFormat {
    /// The JSON export format (`docs/import.schema.json`).
    Json,
    /// A crontab file.
    Crontab,
}

/// Whether a batch is in force.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::imports::stored::BatchStatus")]
pub enum ImportBatchStatus {
    /// Its workflows are as the import left them (or edited since).
    Applied,
    /// Undone by `rollbackImport`.
    RolledBack,
}

/// An import request.
#[derive(InputObject)]
pub struct ImportInput {
    /// The source's format.
    pub format: ImportFormat,
    /// The source itself (at most 16 MiB).
    pub content: String,
    /// Report what would be done and write nothing.
    pub dry_run: Option<bool>,
    /// Import the valid records and list the invalid ones instead of refusing everything.
    pub skip_invalid: Option<bool>,
    /// A tag added to every imported workflow, usable to enable a phase.
    pub tag: Option<String>,
}

/// One problem found in the source.
#[derive(SimpleObject)]
pub struct ImportProblem {
    /// JSON path, `line:column`, or `file:line`.
    pub position: String,
    /// Why the record is refused.
    pub reason: String,
    /// The legacy id of the task at fault, when known.
    pub legacy_id: Option<String>,
}

impl From<tms_core::imports::Problem> for ImportProblem {
    fn from(p: tms_core::imports::Problem) -> Self {
        ImportProblem {
            position: p.position,
            reason: p.reason,
            legacy_id: p.legacy_id,
        }
    }
}

/// Sizes of a batch.
#[derive(SimpleObject)]
pub struct ImportCounts {
    /// Tasks in the source.
    pub tasks: i32,
    /// Workflows planned from them.
    pub workflows: i32,
}

/// One applied import.
#[derive(SimpleObject)]
pub struct ImportBatch {
    /// Stable id (a UUID), for `verifyImport`, `enableImportPhase` and `rollbackImport`.
    pub id: ID,
    /// When it was applied.
    pub created_at: DateTime<Utc>,
    /// Who applied it (a user id); null when that account is gone.
    pub actor: Option<ID>,
    /// The source's format.
    pub format: ImportFormat,
    /// SHA-256 of the source.
    pub checksum: String,
    /// The tag given with the import; null when none was.
    pub tag: Option<String>,
    /// How many tasks and workflows it held.
    pub counts: ImportCounts,
    /// Whether it is still in force.
    pub status: ImportBatchStatus,
    /// Records left out with `skipInvalid`.
    pub problems: Vec<ImportProblem>,
    /// Legacy ids of the tasks left out.
    pub skipped: Vec<String>,
}

impl From<Batch> for ImportBatch {
    fn from(b: Batch) -> Self {
        ImportBatch {
            id: ID(b.id.to_string()),
            created_at: b.created_at,
            actor: b.actor_id.map(|a| ID(a.to_string())),
            format: tms_core::imports::ImportFormat::from(b.format).into(),
            checksum: b.checksum,
            tag: b.tag,
            counts: ImportCounts {
                tasks: b.tasks,
                workflows: b.workflows,
            },
            status: b.status.into(),
            problems: b.problems.into_iter().map(Into::into).collect(),
            skipped: b.skipped,
        }
    }
}

/// What an import did, or would do in a dry run. The lists hold workflows' legacy ids.
#[derive(SimpleObject)]
pub struct ImportReport {
    /// Whether this was a dry run (nothing written).
    pub dry_run: bool,
    /// The batch written; null for a dry run or when nothing changed.
    pub batch: Option<ImportBatch>,
    /// Workflows created (or that would be).
    pub created: Vec<String>,
    /// Workflows given a new version (or that would be).
    pub updated: Vec<String>,
    /// Workflows the source leaves as they are.
    pub unchanged: Vec<String>,
    /// Problems found in the source (with `skipInvalid`, those records were left out).
    pub problems: Vec<ImportProblem>,
    /// Legacy ids of the tasks left out.
    pub skipped: Vec<String>,
}

pub type ImportBatchConnection = Connection<String, ImportBatch>;

/// `Mutation.importTasks`.
pub async fn import_tasks(ctx: &Context<'_>, input: ImportInput) -> Result<ImportReport> {
    let svc = ctx.data_unchecked::<Services>();
    let req = ImportRequest {
        format: input.format.into(),
        content: input.content,
        dry_run: input.dry_run.unwrap_or(false),
        skip_invalid: input.skip_invalid.unwrap_or(false),
        tag: input.tag,
    };
    let r = svc.imports.apply(caller(ctx).gql()?, req).await.gql()?;
    Ok(ImportReport {
        dry_run: r.dry_run,
        batch: r.batch.map(Into::into),
        created: r.created,
        updated: r.updated,
        unchanged: r.unchanged,
        problems: r.problems.into_iter().map(Into::into).collect(),
        skipped: r.skipped,
    })
}

/// `Query.importBatches`: newest first.
pub async fn import_batches(
    ctx: &Context<'_>,
    first: Option<i32>,
    after: Option<String>,
) -> Result<ImportBatchConnection> {
    let svc = ctx.data_unchecked::<Services>();
    let limit = page_size(first).gql()?;
    let before = after
        .map(|c| {
            let raw = decode_cursor("import", &c)?;
            let (at, id) = raw
                .split_once('|')
                .ok_or_else(|| tms_core::Error::field("after", "is not a cursor"))?;
            let at = DateTime::parse_from_rfc3339(at)
                .map_err(|_| tms_core::Error::field("after", "is not a cursor"))?;
            Ok::<_, tms_core::Error>((at.with_timezone(&Utc), uuid(&ID(id.into()), "after")?))
        })
        .transpose()
        .gql()?;
    let mut rows = svc
        .imports
        .batches(caller(ctx).gql()?, before, limit + 1)
        .await
        .gql()?;
    let has_next = rows.len() as i64 > limit;
    rows.truncate(limit as usize);
    let mut conn = Connection::new(before.is_some(), has_next);
    conn.edges.extend(rows.into_iter().map(|b| {
        let cursor = format!("{}|{}", b.created_at.to_rfc3339(), b.id);
        Edge::new(encode_cursor("import", &cursor), ImportBatch::from(b))
    }));
    Ok(conn)
}

/// What one phase enabled.
#[derive(SimpleObject)]
pub struct ImportPhase {
    /// The batch the phase belongs to.
    pub batch_id: ID,
    /// Legacy ids of the workflows whose schedules this call enabled (already enabled ones are
    /// not repeated).
    pub enabled: Vec<String>,
}

/// How a task differs between a source and what is stored.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::imports::verify::DifferenceKind")]
pub enum ImportDifferenceKind {
    /// In the source, not stored.
    Missing,
    /// Stored by the batch, not in the source.
    Extra,
    /// Stored differently (edited after the import, or changed in the source).
    Changed,
}

/// One difference found by `verifyImport`.
#[derive(SimpleObject)]
pub struct ImportDifference {
    /// The legacy id of the task concerned.
    pub legacy_id: String,
    /// How it differs.
    pub kind: ImportDifferenceKind,
    /// A sentence naming what differs.
    pub detail: String,
}

/// The result of comparing a source with what is stored.
#[derive(SimpleObject)]
pub struct ImportVerification {
    /// True when nothing differs.
    pub ok: bool,
    /// Every difference, by legacy id.
    pub differences: Vec<ImportDifference>,
}

/// `Mutation.enableImportPhase`.
pub async fn enable_phase(
    ctx: &Context<'_>,
    batch_id: ID,
    tag: Option<String>,
    share: Option<f64>,
) -> Result<ImportPhase> {
    let svc = ctx.data_unchecked::<Services>();
    let id = uuid(&batch_id, "batchId").gql()?;
    let p = svc
        .imports
        .enable_phase(caller(ctx).gql()?, id, tag, share)
        .await
        .gql()?;
    Ok(ImportPhase {
        batch_id: ID(p.batch_id.to_string()),
        enabled: p.enabled,
    })
}

/// `Mutation.rollbackImport`.
pub async fn rollback(ctx: &Context<'_>, batch_id: ID, force: Option<bool>) -> Result<ImportBatch> {
    let svc = ctx.data_unchecked::<Services>();
    let id = uuid(&batch_id, "batchId").gql()?;
    let b = svc
        .imports
        .rollback(caller(ctx).gql()?, id, force.unwrap_or(false))
        .await
        .gql()?;
    Ok(b.into())
}

/// `Mutation.verifyImport`.
pub async fn verify(
    ctx: &Context<'_>,
    batch_id: ID,
    content: String,
) -> Result<ImportVerification> {
    let svc = ctx.data_unchecked::<Services>();
    let id = uuid(&batch_id, "batchId").gql()?;
    let v = svc
        .imports
        .verify(caller(ctx).gql()?, id, content)
        .await
        .gql()?;
    Ok(ImportVerification {
        ok: v.ok,
        differences: v
            .differences
            .into_iter()
            .map(|d| ImportDifference {
                legacy_id: d.legacy_id,
                kind: d.kind.into(),
                detail: d.detail,
            })
            .collect(),
    })
}
