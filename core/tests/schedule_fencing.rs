//! The scheduler's lease against the real Postgres `scripts/test` provides: a former leader
//! (stale epoch) writes nothing, the current one fires the latest due tick once with the
//! missed ones counted, a live lease is not taken, and a second run for a tick is refused by
//! the unique constraint without an error.

use tms_core::db::Db;
use tms_core::repo;
use tms_core::repo::runs::NewRun;
use tms_core::runs::RunTrigger;
use tms_core::runs::scheduled::FireOutcome;
use tms_core::workflows::service::WorkflowService;
use tms_core::workflows::{ScheduleInput, WorkflowInput};
use uuid::Uuid;

mod common;

#[tokio::test]
async fn only_the_current_epoch_fires_and_a_tick_fires_once() {
    let common::Base { db, runs, who, .. } = common::base("tms_fence").await;
    let wf = WorkflowService::new(db.clone())
        .create(
            Some(&who),
            WorkflowInput {
                schedule: Some(ScheduleInput {
                    cron: "*/2 * * * * *".into(),
                    timezone: None,
                    enabled: None,
                }),
                ..common::workflow("fenced", vec![common::step("a", &[])])
            },
        )
        .await
        .expect("workflow");
    // Ten seconds' worth of ticks are due.
    let id = wf.id;
    db.run(move |c| {
        let now = repo::schedules::db_now(c)?;
        repo::schedules::advance(c, id, now - chrono::Duration::seconds(10))
    })
    .await
    .expect("rewind");

    let lease = |holder: &'static str| {
        let db = db.clone();
        async move {
            db.run(move |c| repo::schedules::acquire_lease(c, holder, 30.0))
                .await
                .expect("lease")
        }
    };
    let old = lease("a").await.expect("a free lease is taken");
    assert_eq!(lease("b").await, None, "a live lease was taken over");
    assert_eq!(lease("a").await, Some(old), "renewal keeps the epoch");
    db.run(|c| repo::schedules::release_lease(c, "a"))
        .await
        .expect("release");
    let new = lease("b").await.expect("a released lease is taken");
    assert!(new > old, "epoch {new} after {old}");

    let stale = runs.fire_scheduled(id, "a", old).await.expect("fire");
    assert!(matches!(stale, FireOutcome::Fenced), "{stale:?}");
    let count = |db: Db| async move {
        db.run(move |c| repo::runs::list(c, None, 100, Some(id), None))
            .await
            .expect("runs")
    };
    assert!(
        count(db.clone()).await.is_empty(),
        "the fenced leader wrote"
    );

    let fired = runs.fire_scheduled(id, "b", new).await.expect("fire");
    let FireOutcome::Fired { run, tick, missed } = fired else {
        panic!("expected a fire, got {fired:?}");
    };
    assert!(missed >= 4, "missed {missed}");
    assert_eq!(run.trigger, RunTrigger::Schedule);
    assert_eq!(run.scheduled_for, Some(tick));
    assert_eq!(run.triggered_by, None);
    let again = runs.fire_scheduled(id, "b", new).await.expect("fire");
    assert!(
        matches!(again, FireOutcome::NotDue | FireOutcome::Fired { .. }),
        "{again:?}"
    );
    if let FireOutcome::Fired { tick: t2, .. } = again {
        assert!(t2 > tick, "tick {t2} fired again after {tick}");
    }

    // The constraint: a second run for a fired tick is not inserted (and is no error).
    let inputs = serde_json::json!({});
    let dup = db
        .run(move |c| {
            repo::runs::insert(
                c,
                &NewRun {
                    id: Uuid::now_v7(),
                    workflow_id: id,
                    version: 1,
                    inputs: &inputs,
                    idempotency_key: None,
                    no_cache: false,
                    triggered_by: None,
                    trigger: RunTrigger::Schedule,
                    scheduled_for: Some(tick),
                },
            )
        })
        .await
        .expect("insert");
    assert!(dup.is_none(), "a tick got a second run");
}
