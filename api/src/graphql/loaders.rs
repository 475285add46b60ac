//! Per-request batch loading for the fields a list page asks of every item (`Run.workflow`,
//! `Run.tasks`, `Run.percent`/`etaSeconds`, `Workflow.steps`): whatever the page size, each costs
//! one service call, which authorises once and runs a fixed number of statements.
//!
//! The loader is built per request from the caller's [`RequestAuth`], so authorization and
//! caching never outlive the request. Loaders call services, never repositories.

use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Arc;

use async_graphql::dataloader::{DataLoader, HashMapCache, Loader};
use async_graphql::{Context, Error, Lookahead, Result};
use tms_core::runs::Task;
use tms_core::runs::eta::Estimate;
use tms_core::runs::reads::{PageExtras, PageWants};

use tms_core::workflows::{Workflow, WorkflowVersion};
use uuid::Uuid;

use crate::context::RequestAuth;
use crate::error::GqlResult;
use crate::state::Services;

/// A workflow by id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct WorkflowId(pub Uuid);

/// One version of a workflow: (workflow id, version).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct VersionKey(pub Uuid, pub i32);

/// The tasks of a run, by run id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct TasksOf(pub Uuid);

/// The estimate of a run, by run id.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct EstimateOf(pub Uuid);

/// Batches reads through the services on behalf of one caller.
pub struct ReadLoader {
    services: Services,
    auth: RequestAuth,
}

/// What resolvers find in the request data.
pub struct Loaders {
    batch: DataLoader<ReadLoader, HashMapCache>,
    /// Results are kept for the whole request, so loading a page's keys up front saves queries.
    cached: bool,
}

fn loader(services: &Services, auth: &RequestAuth) -> DataLoader<ReadLoader, HashMapCache> {
    DataLoader::with_cache(
        ReadLoader {
            services: services.clone(),
            auth: auth.clone(),
        },
        tokio::spawn,
        HashMapCache::default(),
    )
}

/// The loaders of one HTTP request: results are cached for the request's lifetime.
pub fn for_request(services: &Services, auth: &RequestAuth) -> Loaders {
    Loaders {
        batch: loader(services, auth),
        cached: true,
    }
}

/// The loaders of one WebSocket connection: it may live for hours, so they batch but never
/// cache, and every operation reads fresh data.
pub fn for_connection(services: &Services, auth: &RequestAuth) -> Loaders {
    let batch = loader(services, auth);
    batch.enable_all_cache(false);
    Loaders {
        batch,
        cached: false,
    }
}

/// The request's loaders; every transport puts them into the request data.
pub fn loaders<'a>(ctx: &'a Context<'_>) -> Result<&'a Loaders> {
    ctx.data::<Loaders>()
}

impl Loaders {
    /// The value of `key`, batched with the other keys of its kind asked for meanwhile.
    pub async fn load_one<K>(&self, key: K) -> Result<Option<<ReadLoader as Loader<K>>::Value>>
    where
        K: Send + Sync + Hash + Eq + Clone + 'static,
        ReadLoader: Loader<K, Error = Error>,
    {
        self.batch.load_one(key).await
    }

    /// What `node` (the selection on each run of a page) asks of the runs that `RunService::page`
    /// can read with the page itself. Nothing when results are not cached (they would be read
    /// for nothing).
    pub fn page_wants(&self, node: &Lookahead<'_>) -> PageWants {
        if !self.cached {
            return PageWants::default();
        }
        PageWants {
            tasks: node.field("tasks").exists(),
            workflows: node.field("workflow").exists(),
            // The tasks are fed to the request's loaders, where any field may read them.
            brief_tasks: false,
        }
    }

    /// Feeds `extras` (what `RunService::page` read with `runs`, if it could) to the loaders,
    /// then loads, in one batch per loader, what else `node` (the selection on each run of a
    /// page) asks of `runs`. The items' own loads then come from the cache: without this, how
    /// many batches a page takes would depend on how the executor interleaves the items'
    /// resolvers (it yields every 32 items, and a batch closes 1 ms after its first key).
    /// Failures are left for the fields themselves to report, in place.
    pub async fn prime_runs(
        &self,
        node: &Lookahead<'_>,
        runs: &[tms_core::runs::Run],
        extras: Option<PageExtras>,
    ) {
        if !self.cached || runs.is_empty() {
            return;
        }
        let ids = || runs.iter().map(|r| r.id);
        let workflow = node.field("workflow");
        let want_tasks = node.field("tasks").exists();
        let want_workflows = workflow.exists();
        // Read with the page when the caller may read them (the common case); otherwise each
        // through its own loader below, which reports a denial in place.
        let fed = match extras {
            Some(mut found) => {
                if want_tasks {
                    self.batch
                        .feed_many(ids().map(|id| {
                            let tasks = found.tasks.remove(&id).unwrap_or_default();
                            (
                                TasksOf(id),
                                Arc::new(tasks.into_iter().map(Arc::new).collect()),
                            )
                        }))
                        .await;
                }
                // Workflows not found are left out: the field then reports NOT_FOUND itself.
                self.batch
                    .feed_many(
                        found
                            .workflows
                            .into_iter()
                            .map(|(id, w)| (WorkflowId(id), w)),
                    )
                    .await;
                true
            }
            None => false,
        };
        let estimates = async {
            if node.field("percent").exists() || node.field("etaSeconds").exists() {
                // Failures are left for the fields, which load (and report) on their own.
                let ReadLoader { services, auth } = self.batch.loader();
                if let Ok(who) = auth.caller()
                    && let Ok(found) = services.runs.estimates_of_runs(who, runs).await
                {
                    let found = found.into_iter().map(|(id, e)| (EstimateOf(id), e));
                    self.batch.feed_many(found).await;
                }
            }
        };
        let tasks = async {
            if want_tasks && !fed {
                self.batch.load_many(ids().map(TasksOf)).await?;
            }
            Ok::<_, Error>(())
        };
        let workflows = async {
            if want_workflows {
                let keys = runs.iter().map(|r| WorkflowId(r.workflow_id));
                // Served from the cache when fed above.
                let found = self.batch.load_many(keys).await?;
                if workflow.field("steps").exists() {
                    let current = found.values().map(|w| VersionKey(w.id, w.current_version));
                    self.batch.load_many(current).await?;
                }
            }
            Ok(())
        };
        let _ = futures::join!(estimates, async { futures::try_join!(tasks, workflows) });
    }

    /// As [`Loaders::prime_runs`], for a page of workflows: their current versions' steps.
    pub async fn prime_workflows(&self, node: &Lookahead<'_>, workflows: &[Workflow]) {
        if self.cached && !workflows.is_empty() && node.field("steps").exists() {
            let current = workflows
                .iter()
                .map(|w| VersionKey(w.id, w.current_version));
            let _ = self.batch.load_many(current).await;
        }
    }
}

impl Loader<WorkflowId> for ReadLoader {
    type Value = Workflow;
    type Error = Error;

    async fn load(&self, keys: &[WorkflowId]) -> Result<HashMap<WorkflowId, Workflow>> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let who = self.auth.caller().gql()?;
        let found = self.services.workflows.get_many(who, &ids).await.gql()?;
        Ok(found
            .into_iter()
            .map(|(id, w)| (WorkflowId(id), w))
            .collect())
    }
}

impl Loader<VersionKey> for ReadLoader {
    type Value = Arc<WorkflowVersion>;
    type Error = Error;

    async fn load(&self, keys: &[VersionKey]) -> Result<HashMap<VersionKey, Self::Value>> {
        let pairs: Vec<(Uuid, i32)> = keys.iter().map(|k| (k.0, k.1)).collect();
        let who = self.auth.caller().gql()?;
        let found = self.services.workflows.versions_many(who, &pairs).await;
        Ok(found
            .gql()?
            .into_iter()
            .map(|((id, v), version)| (VersionKey(id, v), Arc::new(version)))
            .collect())
    }
}

// Each task in its own `Arc`, so a resolver hands them out without copying their strings.
impl Loader<TasksOf> for ReadLoader {
    type Value = Arc<Vec<Arc<Task>>>;
    type Error = Error;

    async fn load(&self, keys: &[TasksOf]) -> Result<HashMap<TasksOf, Self::Value>> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let who = self.auth.caller().gql()?;
        let found = self.services.runs.tasks_many(who, &ids).await.gql()?;
        Ok(found
            .into_iter()
            .map(|(id, tasks)| {
                (
                    TasksOf(id),
                    Arc::new(tasks.into_iter().map(Arc::new).collect()),
                )
            })
            .collect())
    }
}

impl Loader<EstimateOf> for ReadLoader {
    type Value = Estimate;
    type Error = Error;

    async fn load(&self, keys: &[EstimateOf]) -> Result<HashMap<EstimateOf, Estimate>> {
        let ids: Vec<Uuid> = keys.iter().map(|k| k.0).collect();
        let who = self.auth.caller().gql()?;
        let found = self.services.runs.estimates(who, &ids).await.gql()?;
        Ok(found
            .into_iter()
            .map(|(id, e)| (EstimateOf(id), e))
            .collect())
    }
}
