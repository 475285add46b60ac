//! A delivery whose job names the run's workflow version (`RunJob.version`): a queued run of
//! a workflow without limits is claimed and started by one statement, with its tasks known
//! without a read; any other falls back to the general claim, which still decides.

mod common;

use common::{LEASE, Setup, count, setup, task_event};
use tms_core::queue::RunVersion;
use tms_core::runs::eta::Estimator;
use tms_core::runs::execution::{ClaimPolicy, Claimed, Execution};
use tms_core::runs::{EventKind, EventStatus, RunStatus, TaskStatus};

async fn claim_pinned(s: &Setup, owner: &str, version: i32, max_deliveries: i32) -> Claimed {
    let policy = ClaimPolicy {
        lease: LEASE,
        max_deliveries,
    };
    let pinned = RunVersion {
        workflow_id: s.workflow_id,
        version,
    };
    Execution::claim(
        s.db.clone(),
        s.bus.clone(),
        Estimator::new(),
        s.run_id,
        owner.into(),
        policy,
        Some(pinned),
    )
    .await
    .expect("claim")
}

#[tokio::test]
async fn a_pinned_queued_run_is_claimed_and_started_by_one_statement() {
    let s = setup().await;
    let Claimed::Run(exec, claim, resumed) = claim_pinned(&s, "w1", 1, 10).await else {
        panic!("the queued run was not claimed");
    };
    assert_eq!((claim.deliveries, claim.capped), (1, false));
    let resumed = resumed.expect("started with the claim");
    let tasks: Vec<_> = resumed
        .tasks
        .iter()
        .map(|t| {
            (
                t.node.name.as_str(),
                t.node.depends_on.clone(),
                t.node.status,
                t.attempt,
            )
        })
        .collect();
    assert_eq!(
        tasks,
        [
            ("a", vec![], TaskStatus::Pending, 0),
            ("b", vec!["a".to_string()], TaskStatus::Pending, 0),
        ]
    );
    assert_eq!(
        s.events().await,
        [
            (EventKind::Run, Some(EventStatus::Queued), None),
            (EventKind::Run, Some(EventStatus::Running), None),
        ]
    );
    let id = s.run_id;
    let started = count(
        &s.url,
        &format!(
            "SELECT count(*) AS n FROM runs WHERE id = '{id}' AND status = 'running' \
             AND started_at IS NOT NULL AND lease_owner = 'w1' AND deliveries = 1 AND last_seq = 2"
        ),
    );
    assert_eq!(started, 1, "the run was not claimed and started as written");
    let transactions = count(
        &s.url,
        &format!(
            "SELECT count(DISTINCT x) AS n FROM (SELECT xmin::text AS x FROM runs WHERE id = '{id}' \
             UNION ALL SELECT xmin::text FROM run_events WHERE run_id = '{id}' AND seq = 2) t"
        ),
    );
    assert_eq!(
        transactions, 1,
        "the claim and the start were written apart"
    );

    // The tasks the claim did not read are the ones the database holds: the next writes,
    // which go by them, apply.
    exec.start_attempt("a", 1).await.expect("start a");
    assert_eq!(s.task("a").await.status, TaskStatus::Running);
    assert_eq!(s.events().await[2], task_event(EventStatus::Running, "a"));
}

#[tokio::test]
async fn a_pin_that_does_not_match_falls_back_to_the_general_claim() {
    let s = setup().await;
    // A version the run is not pinned to (nor does it exist): claimed the general way.
    let Claimed::Run(_, claim, resumed) = claim_pinned(&s, "w1", 7, 10).await else {
        panic!("the queued run was not claimed");
    };
    assert_eq!((claim.deliveries, claim.status), (1, RunStatus::Queued));
    assert_eq!(resumed.expect("resumed").tasks.len(), 2);
    assert_eq!(s.events().await.len(), 2);

    // Delivered as often as allowed already: not started, dead-lettered by the general claim.
    let t = setup().await;
    t.sql(&format!(
        "UPDATE runs SET deliveries = 3 WHERE id = '{}'",
        t.run_id
    ));
    assert!(matches!(
        claim_pinned(&t, "w1", 1, 3).await,
        Claimed::DeadLettered
    ));
    let id = t.run_id;
    let failed = count(
        &t.url,
        &format!("SELECT count(*) AS n FROM runs WHERE id = '{id}' AND status = 'failed'"),
    );
    assert_eq!(failed, 1, "the run was not dead-lettered");
    assert!(
        !t.events()
            .await
            .contains(&(EventKind::Run, Some(EventStatus::Running), None)),
        "a run delivered too often was started"
    );
}
