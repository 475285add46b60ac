//! The scheduler's lease against the real Postgres `scripts/test` provides: a former leader
//! (stale epoch) writes nothing, the current one fires the latest due tick once with the
//! missed ones counted, a live lease is not taken, and a second run for a tick is refused by
//! the unique constraint without an error.

use diesel::{Connection, PgConnection, RunQueryDsl};
use tms_core::auth::jwt::JwtKeys;
use tms_core::auth::service::{AuthService, bootstrap_admin};
use tms_core::bus::{EventBus, lazy_connection};
use tms_core::db::Db;
use tms_core::queue::relay::Relay;
use tms_core::repo;
use tms_core::repo::runs::NewRun;
use tms_core::runs::RunTrigger;
use tms_core::runs::eta::Estimator;
use tms_core::runs::scheduled::FireOutcome;
use tms_core::runs::service::RunService;
use tms_core::workflows::service::WorkflowService;
use tms_core::workflows::{ScheduleInput, StepSpec, WorkflowInput};
use uuid::Uuid;

fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through `scripts/test`, which starts Postgres and Redis")
    })
}

#[tokio::test]
async fn only_the_current_epoch_fires_and_a_tick_fires_once() {
    let admin = env("TMS_TEST_DATABASE_URL");
    let name = format!("tms_fence_{}", Uuid::new_v4().simple());
    let mut conn = PgConnection::establish(&admin).expect("connect to the test cluster");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create database");
    let url = format!("{}/{name}", admin.rsplit_once('/').expect("database url").0);
    let db = Db::new(&url, 4).expect("pool");
    db.migrate().await.expect("migrate");
    let redis = lazy_connection(&env("TMS_TEST_REDIS_URL")).expect("redis");
    let relay = Relay::new(
        db.clone(),
        redis.clone(),
        &format!("q-{}", Uuid::new_v4().simple()),
    );
    let runs = RunService::new(db.clone(), EventBus::new(redis), relay, Estimator::new());
    let auth = AuthService::new(
        db.clone(),
        JwtKeys::new(b"fencing-test-secret-fencing-test-secret", 600).expect("keys"),
    );
    bootstrap_admin(&db, "a@fence.test", "password-for-tests")
        .await
        .expect("admin");
    let token = auth
        .login("a@fence.test", "password-for-tests", &Default::default())
        .await
        .expect("login")
        .access_token;
    let who = auth.authenticate(&token).await.expect("principal");
    let wf = WorkflowService::new(db.clone())
        .create(
            Some(&who),
            WorkflowInput {
                name: "fenced".into(),
                description: None,
                steps: vec![StepSpec {
                    name: "a".into(),
                    image: "alpine:3.20".into(),
                    run: Some("true".into()),
                    ..Default::default()
                }],
                schedule: Some(ScheduleInput {
                    cron: "*/2 * * * * *".into(),
                    timezone: None,
                    enabled: None,
                }),
                max_concurrent_runs: None,
                rate_limit: None,
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
