//! A turn's writes together (`Execution::record` of a `Batch`), against a real Postgres: a
//! step's end and the start of the step it unblocked are one statement, numbered in order,
//! under the lease; nothing is written by a holder that lost it, or when a task is missing; a
//! wide batch is written in slices, in order.

use tms_core::Error;
use tms_core::runs::execution::{Batch, TaskEnd};
use tms_core::runs::{EventKind, EventStatus, TaskStatus};

mod common;

use common::{base, count, setup, step, task_end, task_event, workflow};

fn succeeded() -> TaskEnd {
    task_end(TaskStatus::Succeeded, 0, "a\n", None)
}

#[tokio::test]
async fn an_end_and_the_start_it_unblocked_are_one_statement_in_order() {
    let s = setup().await;
    let exec = s.a_running("w1").await;
    let before = s.events().await.len();

    let mut batch = Batch::default();
    batch.end("a", succeeded());
    batch.start("b", 1);
    exec.record(batch).await.expect("record");

    let (a, b) = (s.task("a").await, s.task("b").await);
    assert_eq!(
        (a.status, a.exit_code, a.log_tail.as_str()),
        (TaskStatus::Succeeded, Some(0), "a\n")
    );
    assert!(a.finished_at.is_some(), "a has no end time");
    assert_eq!((b.status, b.attempt), (TaskStatus::Running, 1));
    assert!(b.started_at.is_some(), "b has no start time");
    let events = s.events().await;
    assert_eq!(events.len(), before + 2, "{events:?}");
    assert_eq!(
        events[before..],
        [
            task_event(EventStatus::Succeeded, "a"),
            (
                EventKind::Task,
                Some(EventStatus::Running),
                Some("b".into())
            ),
        ]
    );
    let id = s.run_id;
    let seq = count(
        &s.url,
        &format!(
            "SELECT count(*) AS n FROM runs WHERE id = '{id}' AND last_seq = {}",
            events.len()
        ),
    );
    assert_eq!(seq, 1, "the run's sequence does not match its events");
    let transactions = s.event_transactions_after(before);
    assert_eq!(transactions, 1, "the end and the start were written apart");
    // Each event is estimated with the changes before it applied: a's success (half the run
    // done) is in both, so b's start is not estimated lower than a's end.
    let estimated = count(
        &s.url,
        &format!(
            "SELECT count(*) AS n FROM run_events e JOIN run_events b \
             ON b.run_id = e.run_id AND b.seq = e.seq + 1 \
             WHERE e.run_id = '{id}' AND e.seq = {before} + 1 \
             AND e.percent >= 50 AND b.percent >= e.percent"
        ),
    );
    assert_eq!(estimated, 1, "b's start was estimated without a's end");
}

#[tokio::test]
async fn a_holder_that_lost_the_lease_writes_nothing_of_its_batch() {
    let s = setup().await;
    let exec = s.a_running("w1").await;
    let before = s.events().await.len();
    s.give_lease_to("w2");
    let mut batch = Batch::default();
    batch.end("a", succeeded());
    batch.start("b", 1);
    let res = exec.record(batch).await;
    assert!(matches!(res, Err(Error::Conflict(_))), "{res:?}");
    let (a, b) = (s.task("a").await, s.task("b").await);
    assert_eq!(
        (a.status, b.status),
        (TaskStatus::Running, TaskStatus::Pending)
    );
    assert_eq!(s.events().await.len(), before);
}

#[tokio::test]
async fn a_batch_naming_a_missing_task_writes_nothing() {
    let s = setup().await;
    // Held: the statement below writes under this holder's lease.
    let _held = s.a_running("w1").await;
    let before = s.events().await.len();
    // Straight to the statement: the execution falls back to one write per change for a task
    // it does not know, so only the statement can be given one.
    let id = s.run_id;
    let end = tms_core::repo::runs::TaskChange::finished(TaskStatus::Succeeded, None);
    let start = tms_core::repo::runs::TaskChange::attempt_started(1);
    let ev = tms_core::runs::events::task_changed("a", TaskStatus::Succeeded, None);
    let ev2 = tms_core::runs::events::task_changed("nope", TaskStatus::Running, None);
    let res =
        s.db.run(move |conn| {
            let fence = tms_core::repo::task_transition::Fence {
                run_id: id,
                owner: "w1",
                epoch: 1,
            };
            let items = [
                tms_core::repo::task_transitions::Item {
                    step: "a",
                    change: &end,
                    ev: &ev,
                },
                tms_core::repo::task_transitions::Item {
                    step: "nope",
                    change: &start,
                    ev: &ev2,
                },
            ];
            tms_core::repo::task_transitions::apply_many(conn, &fence, &items)
        })
        .await;
    assert!(
        res.is_err(),
        "a batch with a missing task was written: {res:?}"
    );
    assert_eq!(s.task("a").await.status, TaskStatus::Running);
    assert_eq!(s.events().await.len(), before);
    let seq = count(
        &s.url,
        &format!("SELECT count(*) AS n FROM runs WHERE id = '{id}' AND last_seq = {before}"),
    );
    assert_eq!(seq, 1, "a number was spent on the failed batch");
}

#[tokio::test]
async fn a_wide_batch_is_written_in_slices_in_order() {
    let b = base("tms_exec").await;
    let names: Vec<String> = (0..70).map(|i| format!("s{i:02}")).collect();
    let steps = names.iter().map(|n| step(n, &[])).collect();
    let workflow_id = b.create_workflow(workflow("wide", steps)).await;
    let run_id = b.trigger(workflow_id).await;
    let s = b.into_setup(workflow_id, run_id);
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    let before = s.events().await.len();
    let mut batch = Batch::default();
    for n in &names {
        batch.start(n, 1);
    }
    exec.record(batch).await.expect("record");

    // `events()` checks the numbers run without a gap; the starts are in the batch's order.
    let events = s.events().await;
    let started: Vec<String> = events[before..]
        .iter()
        .map(|(_, status, step)| {
            assert_eq!(*status, Some(EventStatus::Running));
            step.clone().unwrap_or_default()
        })
        .collect();
    assert_eq!(started, names);
    let id = s.run_id;
    let running = count(
        &s.url,
        &format!("SELECT count(*) AS n FROM tasks WHERE run_id = '{id}' AND status = 'running'"),
    );
    assert_eq!(running, 70);
    // Slices of at most 32: three transactions.
    let transactions = s.event_transactions_after(before);
    assert_eq!(transactions, 3);
}
