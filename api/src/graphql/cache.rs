//! `explainCache`: why a step of a run hit or missed the step cache.

use async_graphql::{Context, ID, Result, SimpleObject};

use crate::context::caller;
use crate::error::GqlResult;
use crate::graphql::workflows::parse_id;
use crate::state::Services;

/// Why a step hit or missed the cache.
#[derive(SimpleObject)]
pub struct CacheExplanation {
    /// The step's name.
    pub step: String,
    /// The SHA-256 cache key the step was looked up under (null: never looked up).
    pub key: Option<String>,
    /// Whether the step was served from the cache.
    pub hit: bool,
    /// A sentence saying why.
    pub reason: String,
    /// Parts of the key that differ from the last cached success of the step in another run:
    /// `image`, `command`, `env`, `workdir`, `inputs` or `output:<dependency>`.
    pub changed: Vec<String>,
}

pub async fn explain(ctx: &Context<'_>, run_id: ID, step: String) -> Result<CacheExplanation> {
    let svc = ctx.data_unchecked::<Services>();
    let run_id = parse_id(&run_id, "runId")?;
    let e = svc
        .cache
        .explain(caller(ctx).gql()?, run_id, &step)
        .await
        .gql()?;
    Ok(CacheExplanation {
        step: e.step,
        key: e.key,
        hit: e.hit,
        reason: e.reason,
        changed: e.changed,
    })
}
