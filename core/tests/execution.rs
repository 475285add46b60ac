//! The execution handle against the real Postgres and Redis `scripts/test` provides: every
//! transition writes under the lease with exactly one event, a lost lease writes nothing, a
//! resumed run re-queues interrupted attempts, and a stored state the code does not know is an
//! error rather than a guess.

use diesel::{Connection, PgConnection, RunQueryDsl};
use tms_core::Error;
use tms_core::repo;
use tms_core::runs::execution::{Claimed, TaskEnd};
use tms_core::runs::service::TriggerRequest;
use tms_core::runs::{EventKind, EventStatus, RunStatus, TaskStatus};
use uuid::Uuid;

mod common;

use common::{LEASE, setup, task_event};

#[tokio::test]
async fn each_transition_writes_under_the_lease_with_exactly_one_event() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("first claim");
    assert!(s.claim("w2").await.is_none(), "a live lease is exclusive");

    let resumed = exec.resume().await.expect("resume");
    assert_eq!(resumed.spec.steps.len(), 2);
    let names: Vec<_> = resumed.tasks.iter().map(|t| t.node.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert!(
        resumed
            .tasks
            .iter()
            .all(|t| t.node.status == TaskStatus::Pending)
    );

    exec.start_attempt("a", 1).await.expect("start a");
    exec.progress("a", 50.0, "50% half".into())
        .await
        .expect("progress");
    assert_eq!(s.task("a").await.progress_percent, Some(50.0));
    let ok = TaskEnd {
        status: TaskStatus::Succeeded,
        exit_code: Some(0),
        log_tail: "done\n".into(),
        error: None,
        output: None,
        cache: None,
    };
    exec.finish_task("a", ok).await.expect("finish a");
    exec.start_attempt("b", 1).await.expect("start b");
    exec.note("b", "executor unavailable".into())
        .await
        .expect("note");
    let failed = TaskEnd {
        status: TaskStatus::Failed,
        exit_code: Some(3),
        log_tail: "boom\n".into(),
        error: Some("exited with code 3".into()),
        output: None,
        cache: None,
    };
    exec.finish_task("b", failed).await.expect("finish b");
    exec.finish_run(RunStatus::Failed, Some("step `b` failed".into()))
        .await
        .expect("finish run");

    let a = s.task("a").await;
    assert_eq!(
        (a.status, a.attempt, a.log_tail.as_str()),
        (TaskStatus::Succeeded, 1, "done\n")
    );
    let b = s.task("b").await;
    assert_eq!((b.status, b.exit_code), (TaskStatus::Failed, Some(3)));
    assert_eq!(
        s.events().await,
        vec![
            (EventKind::Run, Some(EventStatus::Queued), None),
            (EventKind::Run, Some(EventStatus::Running), None),
            task_event(EventStatus::Running, "a"),
            (
                EventKind::Progress,
                Some(EventStatus::Running),
                Some("a".into())
            ),
            task_event(EventStatus::Succeeded, "a"),
            task_event(EventStatus::Running, "b"),
            task_event(EventStatus::Running, "b"),
            task_event(EventStatus::Failed, "b"),
            (EventKind::Run, Some(EventStatus::Failed), None),
        ]
    );

    // The run has ended and its lease with it: nothing more is written.
    let late = exec.note("b", "too late".into()).await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    assert_eq!(s.events().await.len(), 9);
}

#[tokio::test]
async fn a_lost_lease_refuses_the_write_and_writes_nothing() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    let before = s.events().await.len();
    s.sql(&format!(
        "UPDATE runs SET lease_owner = 'w2' WHERE id = '{}'",
        s.run_id
    ));
    let res = exec.start_attempt("a", 1).await;
    assert!(matches!(res, Err(Error::Conflict(_))), "{res:?}");
    let a = s.task("a").await;
    assert_eq!((a.status, a.attempt), (TaskStatus::Pending, 0));
    assert_eq!(s.events().await.len(), before);
    assert_eq!(
        exec.renew(LEASE).await.expect("renew"),
        None,
        "lease is gone"
    );
}

#[tokio::test]
async fn a_resumed_run_requeues_interrupted_attempts_and_keeps_their_count() {
    let s = setup().await;
    let first = s.claim("w1").await.expect("claim");
    first.resume().await.expect("resume");
    first.start_attempt("a", 1).await.expect("start a");
    // w1 dies: its lease runs out.
    s.sql(&format!(
        "UPDATE runs SET lease_expires_at = now() - interval '1 second' WHERE id = '{}'",
        s.run_id
    ));
    let second = s.claim("w2").await.expect("an expired lease can be taken");
    let resumed = second.resume().await.expect("resume");
    let a = resumed
        .tasks
        .iter()
        .find(|t| t.node.name == "a")
        .expect("a");
    assert_eq!((a.node.status, a.attempt), (TaskStatus::Pending, 1));
    let last = s.events().await.pop().expect("events");
    assert_eq!(last, task_event(EventStatus::Pending, "a"));
    // The worker that lost the run can no longer write to it.
    let stale = first.start_attempt("a", 2).await;
    assert!(matches!(stale, Err(Error::Conflict(_))), "{stale:?}");
}

#[tokio::test]
async fn an_unknown_stored_state_is_an_error_not_a_guess() {
    let s = setup().await;
    // A newer release added a state this code does not know.
    s.sql("ALTER TYPE run_status ADD VALUE 'paused'");
    s.sql(&format!(
        "UPDATE runs SET status = 'paused' WHERE id = '{}'",
        s.run_id
    ));
    let id = s.run_id;
    let read = s.db.run(move |c| repo::runs::find(c, id)).await;
    match read {
        Err(Error::Internal(detail)) => assert!(detail.contains("paused"), "{detail}"),
        other => panic!("expected an internal error naming the value, got {other:?}"),
    }
    // Nor can a value the database does not know be written.
    let mut conn = PgConnection::establish(&s.url).expect("connect");
    let bad = diesel::sql_query(format!(
        "UPDATE tasks SET status = 'done' WHERE run_id = '{id}'"
    ))
    .execute(&mut conn);
    assert!(bad.is_err(), "the database accepted an unknown task status");
}

#[tokio::test]
async fn a_later_claim_fences_off_an_earlier_holder_even_of_the_same_name() {
    let s = setup().await;
    let first = s.claim("w1").await.expect("first claim");
    // Paused past its lease (SIGSTOP), then delivered again to the same worker name.
    s.expire_lease(s.run_id);
    let second = s.claim("w1").await.expect("re-claim after expiry");
    let refused = first.start_attempt("a", 1).await;
    assert!(
        matches!(refused, Err(Error::Conflict(_))),
        "the fenced-off holder wrote: {refused:?}"
    );
    assert_eq!(
        first.renew(LEASE).await.expect("renew"),
        None,
        "fenced renewal"
    );
    second.resume().await.expect("the new holder writes");
    second
        .start_attempt("a", 1)
        .await
        .expect("the new holder writes");
}

#[tokio::test]
async fn a_run_delivered_too_often_is_dead_lettered_not_looped() {
    let s = setup().await;
    for n in 1..=2 {
        assert!(
            matches!(s.claim_run(s.run_id, "w", 2).await, Claimed::Run(..)),
            "delivery {n} is driven"
        );
        s.expire_lease(s.run_id);
    }
    assert!(matches!(
        s.claim_run(s.run_id, "w", 2).await,
        Claimed::DeadLettered
    ));
    let run =
        s.db.run({
            let id = s.run_id;
            move |c| repo::runs::find(c, id)
        })
        .await
        .expect("find")
        .expect("run");
    assert_eq!(run.status, RunStatus::Failed);
    assert!(run.dead_lettered_at.is_some(), "marked dead-lettered");
    assert!(
        run.error.as_deref().unwrap_or("").contains("dead-lettered"),
        "{:?}",
        run.error
    );
    let events = s.events().await;
    assert_eq!(
        events.last(),
        Some(&(EventKind::Run, Some(EventStatus::Failed), None)),
        "{events:?}"
    );
    assert!(matches!(s.claim_run(s.run_id, "w", 2).await, Claimed::Gone));
}

#[tokio::test]
async fn runs_over_max_concurrent_runs_wait_in_order_and_are_released_when_one_ends() {
    let s = setup().await;
    s.sql(&format!(
        "UPDATE workflows SET max_concurrent_runs = 1 WHERE id = '{}'",
        s.workflow_id
    ));
    let mut later = Vec::new();
    for _ in 0..2 {
        let req = TriggerRequest {
            workflow_id: s.workflow_id,
            inputs: None,
            idempotency_key: None,
            no_cache: false,
        };
        later.push(s.runs.trigger(Some(&s.who), req).await.expect("trigger").id);
    }
    // The newest run waits even though it was delivered first: an older one is ahead of it.
    assert!(matches!(
        s.claim_run(later[1], "w2", 10).await,
        Claimed::Waiting(_)
    ));
    let first = s.claim("w1").await.expect("the oldest run starts");
    first.resume().await.expect("resume");
    assert!(matches!(
        s.claim_run(later[0], "w2", 10).await,
        Claimed::Waiting(_)
    ));
    let unsent = |id: Uuid| {
        let db = s.db.clone();
        async move {
            db.run(move |c| {
                use diesel::prelude::*;
                use tms_core::db::schema::job_outbox as o;
                Ok(o::table
                    .filter(o::run_id.eq(id))
                    .filter(o::sent_at.is_null())
                    .count()
                    .get_result::<i64>(c)?)
            })
            .await
            .expect("outbox")
        }
    };
    // (No relay runs here: the triggers' own outbox rows stay unsent.)
    let before = (unsent(later[0]).await, unsent(later[1]).await);
    first
        .finish_run(RunStatus::Succeeded, None)
        .await
        .expect("finish");
    assert_eq!(
        unsent(later[0]).await,
        before.0 + 1,
        "the oldest waiting run is put back on the queue when a slot frees"
    );
    assert_eq!(
        unsent(later[1]).await,
        before.1,
        "only as many as slots are free"
    );
    assert!(matches!(
        s.claim_run(later[0], "w2", 10).await,
        Claimed::Run(..)
    ));
    assert!(matches!(
        s.claim_run(later[1], "w3", 10).await,
        Claimed::Waiting(_)
    ));
}

#[tokio::test]
async fn a_run_that_cannot_be_resumed_still_counts_its_deliveries() {
    let s = setup().await;
    // A stored spec this build cannot read: resuming fails inside the claim's transaction.
    s.sql(&format!(
        "UPDATE workflow_versions SET spec = '{{\"steps\": 7}}' WHERE workflow_id = '{}'",
        s.workflow_id
    ));
    for n in 1..=2 {
        match s.claim_run(s.run_id, "w", 2).await {
            Claimed::Run(exec, claim, resumed) => {
                assert!(resumed.is_none(), "delivery {n}: nothing resumed");
                assert_eq!(claim.deliveries, n, "delivery {n} is counted");
                let err = exec.resume().await.expect_err("resume still fails");
                assert!(matches!(err, tms_core::Error::Internal(_)), "{err:?}");
            }
            _ => panic!("delivery {n} is claimed"),
        }
        s.expire_lease(s.run_id);
    }
    assert!(
        matches!(s.claim_run(s.run_id, "w", 2).await, Claimed::DeadLettered),
        "a run that can never be resumed ends dead-lettered, not redelivered forever"
    );
}
