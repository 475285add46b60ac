//! The one-statement task transition (`repo::task_transition`) against the real Postgres: it
//! leaves a task exactly as diesel's changeset in a transaction would (and as the lease holder's
//! memory says), writes nothing for a fenced-off holder, and spends no event number on a task
//! that does not exist.

mod common;

use chrono::{DateTime, Utc};
use common::setup;
use tms_core::Error;
use tms_core::repo;
use tms_core::repo::events::NewEvent;
use tms_core::repo::runs::{TaskChange, TaskRow};
use tms_core::repo::task_transition::Fence;
use tms_core::runs::{EventKind, EventStatus, TaskStatus};
use uuid::Uuid;

/// Postgres keeps microseconds.
fn micros(t: Option<DateTime<Utc>>) -> Option<i64> {
    t.map(|t| t.timestamp_micros())
}

/// Every column a change can touch, timestamps as Postgres stores them.
fn state(t: &TaskRow) -> String {
    format!(
        "{:?} {} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?} {:?}",
        t.status,
        t.attempt,
        micros(t.started_at),
        micros(t.finished_at),
        t.exit_code,
        t.log_tail,
        t.error,
        t.progress_percent,
        micros(t.progress_at),
        t.output_manifest,
        t.output_bytes,
        t.cache_key,
        t.cache_parts,
    )
}

fn event(step: &str) -> NewEvent {
    NewEvent {
        step: Some(step.into()),
        ..NewEvent::new(EventKind::Task, Some(EventStatus::Running))
    }
}

async fn transition(
    s: &common::Setup,
    owner: &'static str,
    epoch: i32,
    step: &'static str,
    change: TaskChange,
) -> tms_core::Result<Option<repo::events::EventRow>> {
    let run_id = s.run_id;
    s.db.run(move |c| {
        let fence = Fence {
            run_id,
            owner,
            epoch,
        };
        repo::task_transition::apply(c, &fence, step, &change, &event(step))
    })
    .await
}

async fn changeset(s: &common::Setup, run_id: Uuid, step: &'static str, change: TaskChange) {
    s.db.run(move |c| repo::runs::update_task(c, run_id, step, &change))
        .await
        .expect("update_task");
}

#[tokio::test]
async fn the_statement_leaves_a_task_as_the_changeset_and_the_memory_do() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    // Task b is a's twin (both pending, never run): a changes by the statement, b by diesel's
    // changeset, and `memory` by `TaskChange::apply_to`.
    let mut memory = s.task("a").await;
    let events = s.events().await.len();
    assert_eq!(state(&memory), state(&s.task("b").await));
    let failed = TaskChange {
        exit_code: Some(Some(3)),
        log_tail: Some("boom\n".into()),
        output_bytes: Some(Some(12)),
        ..TaskChange::finished(TaskStatus::Failed, Some("exited with code 3".into()))
    };
    let cached = TaskChange {
        cache_key: Some(Some("k".repeat(64))),
        cache_parts: Some(Some(serde_json::json!({"image": "alpine"}))),
        // (output_manifest refers to a stored manifest: cleared here, set by the e2e tests)
        output_manifest: Some(None),
        ..TaskChange::to(TaskStatus::Cached)
    };
    let changes = [
        TaskChange::attempt_started(1),
        TaskChange::progress(40.0),
        failed,
        // A new attempt clears what the failed one left (exit code, error, progress) and keeps
        // its log tail.
        TaskChange::attempt_started(2),
        TaskChange::default(), // a note: the event alone
        cached,
        TaskChange::reset(),
    ];
    for (i, change) in changes.into_iter().enumerate() {
        let ev = transition(&s, "w1", 1, "a", change.clone())
            .await
            .expect("statement")
            .expect("the lease is held");
        assert_eq!(ev.step.as_deref(), Some("a"));
        // An empty changeset is refused by diesel; leaving the row alone is its equivalent.
        if i != 4 {
            changeset(&s, s.run_id, "b", change.clone()).await;
        }
        change.apply_to(&mut memory);
        let (a, b) = (s.task("a").await, s.task("b").await);
        assert_eq!(state(&a), state(&b), "change {i}: statement vs changeset");
        assert_eq!(state(&a), state(&memory), "change {i}: database vs memory");
    }
    let a = s.task("a").await;
    assert_eq!(
        (a.status, a.attempt, a.log_tail.as_str(), a.exit_code),
        (TaskStatus::Pending, 2, "boom\n", None)
    );
    // One event per change, numbered without a gap (`events` checks).
    assert_eq!(s.events().await.len(), events + 7);
}

#[tokio::test]
async fn a_fenced_off_holder_changes_nothing() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    let (before, events) = (state(&s.task("a").await), s.events().await.len());
    for (owner, epoch) in [("w2", 1), ("w1", 2)] {
        let res = transition(&s, owner, epoch, "a", TaskChange::attempt_started(1)).await;
        assert!(matches!(res, Ok(None)), "{owner}/{epoch}: {res:?}");
    }
    assert_eq!(state(&s.task("a").await), before);
    assert_eq!(s.events().await.len(), events);
}

#[tokio::test]
async fn a_missing_task_fails_and_spends_no_event_number() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    let events = s.events().await.len();
    let res = transition(&s, "w1", 1, "nope", TaskChange::attempt_started(1)).await;
    assert!(matches!(res, Err(Error::Internal(_))), "{res:?}");
    assert_eq!(s.events().await.len(), events);
    let ev = transition(&s, "w1", 1, "a", TaskChange::attempt_started(1))
        .await
        .expect("statement")
        .expect("lease held");
    assert_eq!(
        ev.seq,
        events as i64 + 1,
        "the next event takes the next number"
    );
    assert_eq!(s.events().await.len(), events + 1);
}

#[tokio::test]
async fn a_log_chunk_is_written_only_under_the_lease_and_once() {
    let s = setup().await;
    let exec = s.claim("w1").await.expect("claim");
    exec.resume().await.expect("resume");
    let run_id = s.run_id;
    let append = |owner: &'static str, epoch: i32, seq: i32, content: &'static str| {
        s.db.run(move |c| {
            let fence = Fence {
                run_id,
                owner,
                epoch,
            };
            repo::logs::append_fenced(c, &fence, "a", 1, seq, content)
        })
    };
    assert!(append("w1", 1, 0, "first\n").await.expect("append"));
    assert!(
        append("w1", 1, 0, "retried\n").await.expect("append"),
        "a chunk written twice (a retried write) is no error"
    );
    assert!(!append("w2", 1, 1, "intruder\n").await.expect("append"));
    assert!(!append("w1", 2, 1, "stale\n").await.expect("append"));
    let chunks =
        s.db.run(move |c| repo::logs::chunks(c, run_id, "a", 1))
            .await
            .expect("chunks");
    assert_eq!(
        chunks,
        ["first\n"],
        "the first write kept, nothing fenced-off written"
    );
}
