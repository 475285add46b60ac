//! Identical `runEvents` subscriptions share one execution (`ws::shared`): the first runs on its
//! own, the second starts the shared execution and later ones join it; each gets every event,
//! each counts as an open subscription, other roles or arguments do not share, and the shared
//! execution ends once nobody listens. Real services, Postgres and Redis.

mod common;

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::{Data, Executor, Request, Response, Variables};
use futures::stream::BoxStream;
use futures::{FutureExt, StreamExt};
use serde_json::json;
use tms_api::context::RequestAuth;
use tms_api::ws::WsTrace;
use tms_api::ws::shared::{Registry, SharingExecutor};
use tms_core::runs::{EventKind, EventStatus, RunEvent};

const QUERY: &str = "subscription($w: ID) { runEvents(workflowId: $w) { seq message } }";

fn request(workflow: Option<uuid::Uuid>) -> Request {
    let vars = match workflow {
        Some(w) => json!({ "w": w }),
        None => json!({}),
    };
    Request::new(QUERY).variables(Variables::from_json(vars))
}

fn event(seq: i64, workflow_id: uuid::Uuid) -> RunEvent {
    RunEvent {
        run_id: uuid::Uuid::now_v7(),
        workflow_id,
        seq,
        kind: EventKind::Run,
        status: Some(EventStatus::Running),
        step: None,
        percent: 0.0,
        eta_seconds: None,
        step_percent: None,
        message: Some(format!("event {seq}")),
        at: chrono::Utc::now(),
    }
}

async fn next_seq(s: &mut BoxStream<'static, Response>) -> i64 {
    let r = tokio::time::timeout(Duration::from_secs(10), s.next())
        .await
        .expect("an event within 10 s")
        .expect("the subscription is open");
    assert!(r.errors.is_empty(), "errors: {:?}", r.errors);
    let data = r.data.into_json().expect("json");
    data["runEvents"]["seq"].as_i64().expect("seq")
}

/// The open-subscriptions gauge is one per process: the tests of this file take turns.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn open_subscriptions() -> i64 {
    tms_core::metrics::events::SUBSCRIPTIONS_OPEN.get()
}

struct Setup {
    executor: SharingExecutor,
    registry: Arc<Registry>,
    data: Arc<Data>,
    bus: tms_core::bus::EventBus,
    stop: tokio_util::sync::CancellationToken,
}

/// The real services with a signed-in admin, and an executor sharing through `registry`.
async fn setup(registry: Registry) -> Setup {
    let db = common::fresh_db("tms_ss", 4).await;
    let common::Stack {
        services,
        bus,
        token,
        stop,
    } = common::stack(&db, "admin@shared.test", "admin-password-for-tests").await;
    let auth = RequestAuth::from_header(&services.auth, Some(&format!("Bearer {token}"))).await;
    assert!(auth.principal.is_some(), "signed in");
    let mut data = Data::default();
    data.insert(WsTrace::default());
    data.insert(tms_api::graphql::loaders::for_connection(&services, &auth));
    data.insert(auth);
    let registry = Arc::new(registry);
    let schema = tms_api::graphql::build_ws(services.clone(), false);
    Setup {
        executor: SharingExecutor::new(schema, registry.clone()),
        registry,
        data: Arc::new(data),
        bus,
        stop,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn identical_subscriptions_share_one_execution_and_each_gets_every_event() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Setup {
        executor,
        registry,
        data,
        bus,
        stop,
    } = setup(Registry::default()).await;
    let before = open_subscriptions();

    let wf = uuid::Uuid::now_v7();
    let mut first = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    // The first runs alone: its execution starts when it is first polled.
    assert!(
        first.next().now_or_never().is_none(),
        "nothing to answer yet"
    );
    assert_eq!(
        registry.shared_executions(),
        0,
        "one subscriber shares nothing"
    );
    let mut second = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    let mut third = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    let mut other = executor.execute_stream(request(None), Some(data.clone()));
    assert!(
        other.next().now_or_never().is_none(),
        "nothing to answer yet"
    );
    assert_eq!(
        registry.shared_executions(),
        1,
        "the second and third subscriptions share one execution; other arguments do not"
    );
    assert_eq!(
        open_subscriptions() - before,
        4,
        "every subscriber counts as an open subscription, the shared execution does not"
    );

    bus.publish(&[event(1, wf)]).await;
    for s in [&mut first, &mut second, &mut third, &mut other] {
        assert_eq!(next_seq(s).await, 1);
    }
    bus.publish(&[event(2, uuid::Uuid::now_v7()), event(3, wf)])
        .await;
    for s in [&mut first, &mut second, &mut third] {
        assert_eq!(
            next_seq(s).await,
            3,
            "the workflow filter holds when shared"
        );
    }
    assert_eq!(next_seq(&mut other).await, 2);
    assert_eq!(next_seq(&mut other).await, 3);

    // The subscribers of the shared execution leave: the next event finds nobody and ends it.
    drop(second);
    drop(third);
    assert_eq!(open_subscriptions() - before, 2);
    bus.publish(&[event(4, wf)]).await;
    assert_eq!(
        next_seq(&mut first).await,
        4,
        "the first, alone, carries on"
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while registry.shared_executions() > 0 {
        assert!(
            Instant::now() < deadline,
            "the shared execution outlived its subscribers"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // A new pair shares again.
    let mut again = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    assert_eq!(registry.shared_executions(), 1);
    bus.publish(&[event(5, wf)]).await;
    assert_eq!(next_seq(&mut first).await, 5);
    assert_eq!(next_seq(&mut again).await, 5);
    stop.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shared_subscriber_that_falls_behind_is_told_it_is_too_slow_and_the_others_go_on() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let Setup {
        executor,
        registry,
        data,
        bus,
        stop,
    } = setup(Registry::with_buffer(4)).await;
    let wf = uuid::Uuid::now_v7();
    let mut first = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    assert!(
        first.next().now_or_never().is_none(),
        "nothing to answer yet"
    );
    let mut reading = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    let mut stalled = executor.execute_stream(request(Some(wf)), Some(data.clone()));
    assert_eq!(registry.shared_executions(), 1);
    // Ten events, read as they come by `reading`, never by `stalled` (4 responses kept).
    for seq in 1..=10 {
        bus.publish(&[event(seq, wf)]).await;
        assert_eq!(next_seq(&mut reading).await, seq);
        assert_eq!(next_seq(&mut first).await, seq);
    }
    let verdict = tokio::time::timeout(Duration::from_secs(10), stalled.next())
        .await
        .expect("an answer within 10 s")
        .expect("an answer");
    let errors = serde_json::to_value(&verdict.errors).expect("json");
    assert_eq!(errors[0]["extensions"]["code"], "SLOW_CONSUMER", "{errors}");
    assert_eq!(errors[0]["path"], json!(["runEvents"]), "{errors}");
    assert!(
        tokio::time::timeout(Duration::from_secs(10), stalled.next())
            .await
            .expect("the end within 10 s")
            .is_none(),
        "the slow subscriber's stream ends"
    );
    bus.publish(&[event(11, wf)]).await;
    assert_eq!(next_seq(&mut reading).await, 11, "the others go on");
    stop.cancel();
}
