//! Shared subscription executions: identical `runEvents` subscriptions on this api (the same
//! document, operation, variables, caller and trace parent) run once, and every subscriber gets
//! that execution's responses.
//!
//! `runEvents` streams live events only, from the moment it starts, and what it answers depends
//! on nothing but its arguments and the caller's roles (its events have scalar fields only): a subscriber that joins a running
//! execution gets exactly what a fresh one would. Run alone, each subscription holds its own
//! parsed document, query environment and field stream (~8 KiB) and resolves and serialises
//! every event itself; joined, a subscriber holds a channel receiver, and an event is resolved
//! once for all of them. Everything else (other fields, a caller without `runs:read`, whose
//! refusal is audited per attempt, a document answered at once) runs on its own as before.
//!
//! The first of identical subscriptions runs on its own too: a shared execution costs a channel
//! of `BUFFER` slots (~40 KiB), which pays off from the second subscriber on. The second starts
//! the shared execution, which every later one joins.

use std::any::{Any, TypeId};
use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_graphql::parser::types::{DocumentOperations, OperationType, Selection};
use async_graphql::{Data, Executor, PathSegment, Pos, Request, Response};
use futures::stream::{self, BoxStream};
use futures::{FutureExt, StreamExt};
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use crate::context::RequestAuth;
use crate::graphql::TmsSchema;
use crate::ws::WsTrace;
use tms_core::auth::Permission;

/// Responses a subscriber may fall behind its shared execution before it is told it is too
/// slow. Alone, it may fall `EVENT_BUFFER` events behind the hub; `runEvents` answers run
/// status changes only, so this is over a thousand runs changing state between two reads.
pub const BUFFER: usize = 1024;

/// The running shared executions of this api, by what makes subscriptions identical.
pub struct Registry {
    running: Mutex<HashMap<String, Entry>>,
    next_id: AtomicU64,
    buffer: usize,
}

impl Default for Registry {
    fn default() -> Self {
        Self::with_buffer(BUFFER)
    }
}

/// The subscriptions of one key: those running on their own, and the shared execution.
#[derive(Default)]
struct Entry {
    alone: usize,
    shared: Option<(u64, broadcast::Sender<Arc<Delivery>>)>,
}

/// One response of a shared execution, with the time of the event it carries.
struct Delivery {
    response: Response,
    at: Option<chrono::DateTime<chrono::Utc>>,
}

/// Put in a shared execution's request data: its `runEvents` resolver leaves counting
/// subscribers and timing deliveries to the subscribers, and notes here when each event
/// happened.
#[derive(Clone, Default)]
pub struct Execution(Arc<Mutex<Option<chrono::DateTime<chrono::Utc>>>>);

impl Execution {
    pub fn record(&self, at: chrono::DateTime<chrono::Utc>) {
        if let Ok(mut slot) = self.0.lock() {
            *slot = Some(at);
        }
    }

    fn take(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        self.0.lock().ok().and_then(|mut slot| slot.take())
    }
}

/// The executor a connection's protocol machine runs subscriptions on: shareable ones join a
/// shared execution, the rest run on the schema.
#[derive(Clone)]
pub struct SharingExecutor {
    schema: TmsSchema,
    registry: Arc<Registry>,
}

impl SharingExecutor {
    pub fn new(schema: TmsSchema, registry: Arc<Registry>) -> Self {
        Self { schema, registry }
    }
}

impl Executor for SharingExecutor {
    fn execute(&self, request: Request) -> impl Future<Output = Response> + Send {
        let schema = self.schema.clone();
        async move { schema.execute(request).await }
    }

    /// `session_data` is what the connection's `connection_init` set: the caller
    /// (`RequestAuth`) and its `traceparent` (`WsTrace`).
    fn execute_stream(
        &self,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        match session_data.as_deref().and_then(|d| shareable(d, &request)) {
            Some(plan) => self.join(plan, request, session_data),
            None => Executor::execute_stream(&self.schema, request, session_data),
        }
    }
}

/// The value of type `T` in a connection's session data.
fn session<T: Any>(data: &Data) -> Option<&T> {
    data.get(&TypeId::of::<T>())?.downcast_ref()
}

/// What identifies a shareable subscription, and where its field is (for the errors a
/// subscriber gets on its own).
struct Plan {
    key: String,
    field: Field,
}

/// The subscribed field: where it is in the document and its response key.
struct Field {
    pos: Pos,
    name: String,
}

/// The plan of `request` if it subscribes to `runEvents` alone, for a caller who may read runs.
fn shareable(session_data: &Data, request: &Request) -> Option<Plan> {
    // Any other subscription (`runProgress`) is not parsed a second time.
    if !request.query.contains("runEvents") || !request.extensions.is_empty() {
        return None;
    }
    let who = session::<RequestAuth>(session_data)?.principal.as_ref()?;
    tms_core::auth::rbac::require(Some(who), Permission::ReadRuns).ok()?;
    let trace = session::<WsTrace>(session_data).map(|t| &t.0);
    let doc = async_graphql::parser::parse_query(&request.query).ok()?;
    let op = match (&doc.operations, &request.operation_name) {
        (DocumentOperations::Single(op), _) => op,
        (DocumentOperations::Multiple(ops), Some(name)) => ops.get(name.as_str())?,
        (DocumentOperations::Multiple(_), None) => return None,
    };
    if op.node.ty != OperationType::Subscription || !op.node.directives.is_empty() {
        return None;
    }
    let [item] = op.node.selection_set.node.items.as_slice() else {
        return None;
    };
    let Selection::Field(field) = &item.node else {
        return None;
    };
    if field.node.name.node != "runEvents" || !field.node.directives.is_empty() {
        return None;
    }
    // Who asks matters only through the roles: `RunEvent` has scalar fields alone, and the
    // permission is a role's.
    let mut roles = who.roles.clone();
    roles.sort();
    let key = serde_json::to_string(&(
        &roles,
        trace,
        &request.operation_name,
        &request.variables,
        &request.query,
    ))
    .ok()?;
    Some(Plan {
        key,
        field: Field {
            pos: field.pos,
            name: field.node.response_key().node.to_string(),
        },
    })
}

impl SharingExecutor {
    /// Subscribes to the running execution of `plan`, or starts it. An execution that answers
    /// at once (a refusal, an invalid document) is not shared: that answer is this caller's.
    fn join(
        &self,
        plan: Plan,
        request: Request,
        session_data: Option<Arc<Data>>,
    ) -> BoxStream<'static, Response> {
        let Ok(mut running) = self.registry.running.lock() else {
            return Executor::execute_stream(&self.schema, request, session_data);
        };
        let entry = running.entry(plan.key.clone()).or_default();
        if let Some((_, tx)) = &entry.shared {
            return subscriber(tx.subscribe(), plan.field);
        }
        if entry.alone == 0 {
            entry.alone += 1;
            let alone = Alone {
                registry: self.registry.clone(),
                key: plan.key,
            };
            let source = Executor::execute_stream(&self.schema, request, session_data);
            return source
                .map(move |r| {
                    let _counted = &alone;
                    r
                })
                .boxed();
        }
        let execution = Execution::default();
        let request = request.data(execution.clone());
        let mut source = Executor::execute_stream(&self.schema, request, session_data);
        match source.next().now_or_never() {
            Some(Some(first)) => return stream::once(async move { first }).chain(source).boxed(),
            Some(None) => return stream::empty().boxed(),
            None => {}
        }
        let (tx, rx) = broadcast::channel(self.registry.buffer);
        let id = self.registry.next_id.fetch_add(1, Ordering::Relaxed);
        entry.shared = Some((id, tx.clone()));
        drop(running);
        let registry = self.registry.clone();
        tokio::spawn(forward(source, tx, registry, plan.key, id, execution));
        subscriber(rx, plan.field)
    }
}

/// A subscription of a shareable key running on its own; its end is noted in the registry.
struct Alone {
    registry: Arc<Registry>,
    key: String,
}

impl Drop for Alone {
    fn drop(&mut self) {
        if let Ok(mut running) = self.registry.running.lock()
            && let Some(entry) = running.get_mut(&self.key)
        {
            entry.alone = entry.alone.saturating_sub(1);
            if entry.alone == 0 && entry.shared.is_none() {
                running.remove(&self.key);
            }
        }
    }
}

/// Hands every response of the execution to its subscribers; ends with the execution, or when
/// an event finds no subscriber left.
async fn forward(
    mut source: BoxStream<'static, Response>,
    tx: broadcast::Sender<Arc<Delivery>>,
    registry: Arc<Registry>,
    key: String,
    id: u64,
    execution: Execution,
) {
    while let Some(response) = source.next().await {
        let at = execution.take();
        if tx.send(Arc::new(Delivery { response, at })).is_err() && registry.retire(&key, id, true)
        {
            return;
        }
    }
    registry.retire(&key, id, false);
}

impl Registry {
    /// A registry whose shared executions keep `buffer` responses for their subscribers.
    pub fn with_buffer(buffer: usize) -> Self {
        Self {
            running: Mutex::default(),
            next_id: AtomicU64::new(0),
            buffer: buffer.max(1),
        }
    }

    /// How many shared executions are running.
    pub fn shared_executions(&self) -> usize {
        self.running
            .lock()
            .map(|r| r.values().filter(|e| e.shared.is_some()).count())
            .unwrap_or(0)
    }

    /// Ends shared execution `id` of `key` (with `if_unheard`, only when nobody subscribes to
    /// it: checked under the lock joiners take, so none joins an execution that is ending).
    fn retire(&self, key: &str, id: u64, if_unheard: bool) -> bool {
        let Ok(mut running) = self.running.lock() else {
            return true;
        };
        let Some(entry) = running.get_mut(key) else {
            return true;
        };
        match &entry.shared {
            Some((current, tx)) if *current == id => {
                if if_unheard && tx.receiver_count() > 0 {
                    return false;
                }
                entry.shared = None;
                if entry.alone == 0 {
                    running.remove(key);
                }
                true
            }
            _ => true,
        }
    }
}

/// One subscriber's responses: counted as an open subscription while it lives, each delivery
/// timed; one that falls the registry's buffer behind gets `SLOW_CONSUMER` and ends, as alone.
fn subscriber(
    rx: broadcast::Receiver<Arc<Delivery>>,
    field: Field,
) -> BoxStream<'static, Response> {
    let open = tms_core::metrics::events::OpenSubscription::open();
    let field = Arc::new(field);
    stream::unfold(Some((rx, open)), move |state| {
        let field = field.clone();
        async move {
            let (mut rx, open) = state?;
            match rx.recv().await {
                Ok(d) => {
                    if let Some(at) = d.at {
                        tms_core::metrics::events::delivered(at);
                    }
                    Some((copy(&d.response), Some((rx, open))))
                }
                Err(RecvError::Lagged(_)) => Some((slow_consumer(&field), None)),
                Err(RecvError::Closed) => None,
            }
        }
    })
    .boxed()
}

fn copy(r: &Response) -> Response {
    let mut out = Response::new(r.data.clone());
    out.errors = r.errors.clone();
    out.extensions = r.extensions.clone();
    out
}

/// The error the field's own stream answers when its subscriber falls behind.
fn slow_consumer(field: &Field) -> Response {
    let err = crate::error::to_gql(tms_core::Error::SlowConsumer)
        .into_server_error(field.pos)
        .with_path(vec![PathSegment::Field(field.name.clone())]);
    Response::from_errors(vec![err])
}
