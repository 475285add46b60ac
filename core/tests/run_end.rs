//! The last step's end and the run's end written together (`Execution::finish_last`), against
//! a real Postgres: both events numbered in order by one statement, under the lease, and
//! nothing written by a holder that lost it.

use tms_core::Error;
use tms_core::runs::{EventKind, EventStatus, RunStatus, TaskStatus};

mod common;

use common::{count, setup, task_end, task_event};

#[tokio::test]
async fn the_last_steps_end_and_the_runs_end_are_one_statement_in_order() {
    let s = setup().await;
    let exec = s.a_running("w1").await;
    let ok = task_end(TaskStatus::Succeeded, 0, "a\n", None);
    exec.finish_task("a", ok).await.expect("finish a");
    exec.start_attempt("b", 1).await.expect("start b");
    let failed = task_end(TaskStatus::Failed, 3, "boom\n", Some("exited with code 3"));
    exec.finish_last(
        "b",
        failed,
        RunStatus::Failed,
        Some("step `b` failed".into()),
    )
    .await
    .expect("finish b and the run");

    let b = s.task("b").await;
    assert_eq!(
        (
            b.status,
            b.exit_code,
            b.log_tail.as_str(),
            b.error.as_deref()
        ),
        (
            TaskStatus::Failed,
            Some(3),
            "boom\n",
            Some("exited with code 3")
        )
    );
    assert!(b.finished_at.is_some(), "b has no end time");
    // Gap-free and in order: b's end, then the run's.
    let events = s.events().await;
    assert_eq!(
        events[events.len() - 2..],
        [
            task_event(EventStatus::Failed, "b"),
            (EventKind::Run, Some(EventStatus::Failed), None),
        ]
    );
    let id = s.run_id;
    let ended = count(
        &s.url,
        &format!(
            "SELECT count(*) AS n FROM runs WHERE id = '{id}' AND status = 'failed' \
             AND error = 'step `b` failed' AND finished_at IS NOT NULL \
             AND lease_owner IS NULL AND last_seq = {}",
            events.len()
        ),
    );
    assert_eq!(
        ended, 1,
        "the run did not end as written, or its sequence is off"
    );
    let transactions = s.event_transactions_after(events.len() - 2);
    assert_eq!(transactions, 1, "the two ends were written apart");

    // The run has ended and its lease with it: nothing more is written.
    let late = exec.note("b", "too late".into()).await;
    assert!(matches!(late, Err(Error::Conflict(_))), "{late:?}");
    assert_eq!(s.events().await.len(), events.len());
}

#[tokio::test]
async fn a_holder_that_lost_the_lease_ends_neither_the_step_nor_the_run() {
    let s = setup().await;
    let exec = s.a_running("w1").await;
    let before = s.events().await.len();
    s.give_lease_to("w2");
    let ok = task_end(TaskStatus::Succeeded, 0, "a\n", None);
    let res = exec.finish_last("a", ok, RunStatus::Succeeded, None).await;
    assert!(matches!(res, Err(Error::Conflict(_))), "{res:?}");
    let a = s.task("a").await;
    assert_eq!((a.status, a.finished_at), (TaskStatus::Running, None));
    assert_eq!(s.events().await.len(), before);
    let id = s.run_id;
    let running = count(
        &s.url,
        &format!("SELECT count(*) AS n FROM runs WHERE id = '{id}' AND status = 'running'"),
    );
    assert_eq!(running, 1, "the run ended without its lease");
}
