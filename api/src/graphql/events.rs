//! GraphQL types for run events and the subscription root.

use async_graphql::{Context, Enum, ID, Object, Result, Subscription};
use chrono::{DateTime, Utc};
use futures::{Stream, StreamExt};
use tracing::Instrument;

use crate::context::caller;
use crate::error::{GqlResult, to_gql};
use crate::graphql::workflows::parse_id;
use crate::state::Services;

/// What a run event reports.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::runs::EventKind")]
pub enum RunEventKind {
    /// The run's status changed.
    Run,
    /// A step's status changed (or a note about the step, e.g. a retry).
    Task,
    /// A step's own `::progress` line.
    Progress,
    /// The run's state when a subscription without `afterSeq` starts.
    Snapshot,
}

/// The status a run event reports: a `RunStatus` value on `RUN`/`SNAPSHOT` events, a
/// `TaskStatus` value on `TASK`/`PROGRESS` events.
#[derive(Enum, Copy, Clone, Eq, PartialEq, Debug)]
#[graphql(remote = "tms_core::runs::EventStatus")]
pub enum RunEventStatus {
    /// Run: waiting for a worker.
    Queued,
    /// Task: waiting for its dependencies or a slot.
    Pending,
    /// Run or task: executing.
    Running,
    /// Run or task: succeeded.
    Succeeded,
    /// Run or task: failed.
    Failed,
    /// Task: served from the cache.
    Cached,
    /// Task: not run because a dependency did not succeed.
    Skipped,
    /// Run or task: cancelled.
    Cancelled,
    /// Run: a step exceeded its timeout.
    TimedOut,
}

pub struct RunEvent(pub tms_core::runs::RunEvent);

/// One state change or progress report of a run. `seq` numbers a run's events 1, 2, 3… without
/// gaps; resume a subscription with the last `seq` seen as `afterSeq`.
#[Object]
impl RunEvent {
    /// The event's number within its run (1, 2, 3... without gaps).
    async fn seq(&self) -> i64 {
        self.0.seq
    }
    /// The run it belongs to.
    async fn run_id(&self) -> ID {
        ID(self.0.run_id.to_string())
    }
    /// The run's workflow.
    async fn workflow_id(&self) -> ID {
        ID(self.0.workflow_id.to_string())
    }
    /// What it reports.
    async fn kind(&self) -> RunEventKind {
        self.0.kind.into()
    }
    /// The new status: a run status on `RUN`/`SNAPSHOT` events, a task status otherwise; null
    /// on events that change no status (a progress line, a note).
    async fn status(&self) -> Option<RunEventStatus> {
        self.0.status.map(Into::into)
    }
    /// The step concerned, on `TASK` and `PROGRESS` events; null otherwise.
    async fn step(&self) -> Option<&str> {
        self.0.step.as_deref()
    }
    /// The run's percent done (0-100) as of this event.
    async fn percent(&self) -> f64 {
        self.0.percent
    }
    /// Estimated seconds until the run ends; null without history to estimate from.
    async fn eta_seconds(&self) -> Option<f64> {
        self.0.eta_seconds
    }
    /// The step's own percent (0-100), on `PROGRESS` events; null otherwise.
    async fn step_percent(&self) -> Option<f64> {
        self.0.step_percent
    }
    /// A short text: the `::progress` message, a retry note or an error; null when none.
    async fn message(&self) -> Option<&str> {
        self.0.message.as_deref()
    }
    /// When it happened.
    async fn at(&self) -> DateTime<Utc> {
        self.0.at
    }
}

pub struct SubscriptionRoot;

/// Live streams over the WebSocket at `/graphql`. Each field names the roles that may open it.
#[Subscription(name = "Subscription")]
impl SubscriptionRoot {
    /// A run's events after `afterSeq` (or, without it, a `snapshot` of the run first), then
    /// live events as they happen; completes after the event that ends the run.
    async fn run_progress(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "The run's id.")] run_id: ID,
        #[graphql(desc = "The last `seq` already received; resumes without a gap or a duplicate.")]
        after_seq: Option<i64>,
    ) -> Result<impl Stream<Item = Result<RunEvent>> + use<>> {
        let svc = ctx.data_unchecked::<Services>();
        let run_id = parse_id(&run_id, "runId")?;
        let stream = svc
            .progress
            .run_progress(caller(ctx).gql()?, run_id, after_seq)
            .instrument(subscribe_span(ctx, "subscription runProgress"))
            .await
            .gql()?;
        Ok(counted(stream))
    }

    /// Run status changes as they happen, of every run or of one workflow's runs.
    async fn run_events(
        &self,
        ctx: &Context<'_>,
        #[graphql(desc = "Only runs of this workflow; default: every run.")] workflow_id: Option<
            ID,
        >,
    ) -> Result<futures::stream::BoxStream<'static, Result<RunEvent>>> {
        let svc = ctx.data_unchecked::<Services>();
        let wf = workflow_id
            .map(|w| parse_id(&w, "workflowId"))
            .transpose()?;
        let stream = svc
            .progress
            .run_events(caller(ctx).gql()?, wf)
            .instrument(subscribe_span(ctx, "subscription runEvents"))
            .await
            .gql()?;
        // A shared execution (`ws::shared`) leaves counting and timing to its subscribers.
        match ctx.data_opt::<crate::ws::shared::Execution>() {
            Some(shared) => {
                let shared = shared.clone();
                Ok(stream
                    .map(move |r| {
                        if let Ok(ev) = &r {
                            shared.record(ev.at);
                        }
                        r.map(RunEvent).map_err(to_gql)
                    })
                    .boxed())
            }
            None => Ok(counted(stream).boxed()),
        }
    }
}

/// Counts the subscription as open while its stream lives and times each event's delivery.
fn counted<S>(stream: S) -> impl Stream<Item = Result<RunEvent>> + Send + use<S>
where
    S: Stream<Item = tms_core::Result<tms_core::runs::RunEvent>> + Send + 'static,
{
    let open = tms_core::metrics::events::OpenSubscription::open();
    stream.map(move |r| {
        let _counted = &open;
        if let Ok(ev) = &r {
            tms_core::metrics::events::delivered(ev.at);
        }
        r.map(RunEvent).map_err(to_gql)
    })
}

/// The span of a subscription's start, a child of the `traceparent` its connection sent.
fn subscribe_span(ctx: &Context<'_>, name: &'static str) -> tracing::Span {
    let span = tracing::info_span!(
        "graphql.subscribe",
        otel.name = name,
        trace_id = tracing::field::Empty
    );
    if !span.is_disabled()
        && let Some(t) = ctx.data_opt::<crate::ws::WsTrace>()
    {
        tms_core::telemetry::adopt(&span, &t.0);
    }
    span
}
