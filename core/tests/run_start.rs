//! The hot-path claim and start of a delivery (`repo::run_start`): the one-statement claim
//! takes only queued runs of workflows without limits, and the start is fenced by the lease.

mod common;

use common::{base, setup, step, workflow};
use tms_core::repo;
use tms_core::repo::task_transition::Fence;
use tms_core::runs::events::run_changed;
use tms_core::runs::execution::Claimed;
use tms_core::runs::{EventKind, EventStatus, RunStatus};
use uuid::Uuid;

async fn claim_unlimited(s: &common::Setup, run_id: Uuid, owner: &'static str) -> Option<i32> {
    s.db.run(move |c| repo::run_start::claim_unlimited(c, run_id, owner, 30))
        .await
        .expect("claim statement")
        .map(|r| {
            assert_eq!(r.lease_owner.as_deref(), Some(owner));
            r.deliveries
        })
}

async fn start(s: &common::Setup, owner: &'static str, epoch: i32) -> Option<i64> {
    let run_id = s.run_id;
    s.db.run(move |c| {
        let fence = Fence {
            run_id,
            owner,
            epoch,
        };
        repo::run_start::start(c, &fence, &run_changed(RunStatus::Running, None))
    })
    .await
    .expect("start statement")
    .map(|e| e.seq)
}

#[tokio::test]
async fn the_one_statement_claim_takes_queued_runs_of_workflows_without_limits_only() {
    let s = setup().await;
    assert_eq!(claim_unlimited(&s, s.run_id, "w1").await, Some(1));
    assert_eq!(
        claim_unlimited(&s, s.run_id, "w2").await,
        None,
        "another worker's live lease holds the run"
    );
    assert_eq!(start(&s, "w1", 1).await, Some(2));
    s.expire_lease(s.run_id);
    assert_eq!(
        claim_unlimited(&s, s.run_id, "w2").await,
        None,
        "a running run is resumed through the general claim"
    );
    match s.claim_run(s.run_id, "w2", 10).await {
        Claimed::Run(_, claim, resumed) => {
            assert_eq!((claim.deliveries, claim.status), (2, RunStatus::Running));
            assert!(resumed.is_some(), "resumed in the claim's transaction");
        }
        _ => panic!("the general claim did not take the expired run"),
    }

    // A workflow with a concurrency cap goes through the limits' decision, which claims it.
    let b = base("tms_start").await;
    let mut capped = workflow("capped", vec![step("a", &[])]);
    capped.max_concurrent_runs = Some(5);
    let wf = b.create_workflow(capped).await;
    let run = b.trigger(wf).await;
    let t = common::Setup {
        db: b.db,
        bus: b.bus,
        url: b.url,
        run_id: run,
        workflow_id: wf,
        runs: b.runs,
        who: b.who,
    };
    assert_eq!(claim_unlimited(&t, run, "w1").await, None);
    match t.claim_run(run, "w1", 10).await {
        Claimed::Run(_, claim, _) => assert!(claim.capped, "its end must wake waiting runs"),
        _ => panic!("the capped workflow's run was not admitted"),
    }
}

#[tokio::test]
async fn a_start_outside_the_lease_writes_nothing() {
    let s = setup().await;
    assert_eq!(claim_unlimited(&s, s.run_id, "w1").await, Some(1));
    for (owner, epoch) in [("w2", 1), ("w1", 2)] {
        assert_eq!(start(&s, owner, epoch).await, None, "{owner}/{epoch}");
    }
    assert_eq!(s.events().await.len(), 1, "only the queued event");
    assert_eq!(start(&s, "w1", 1).await, Some(2));
    assert_eq!(start(&s, "w1", 1).await, None, "a run starts once");
    let events = s.events().await;
    assert_eq!(
        events.last(),
        Some(&(EventKind::Run, Some(EventStatus::Running), None)),
        "{events:?}"
    );
}

#[tokio::test]
async fn a_delivery_of_a_queued_run_claims_and_starts_it() {
    let s = setup().await;
    match s.claim_run(s.run_id, "w1", 10).await {
        Claimed::Run(_, claim, resumed) => {
            assert_eq!(claim.status, RunStatus::Queued, "as claimed");
            assert!(!claim.capped);
            let resumed = resumed.expect("started with the claim");
            assert_eq!(resumed.tasks.len(), 2);
        }
        _ => panic!("the queued run was not claimed"),
    }
    let events = s.events().await;
    assert_eq!(events.len(), 2, "{events:?}");
    assert_eq!(
        events[1],
        (EventKind::Run, Some(EventStatus::Running), None)
    );
}
