//! The outbox relay against a real Postgres and Redis: a row it relays is marked sent and its
//! job is on the queue, marked as waiting; a push that fails leaves the row unsent.

use redis::AsyncCommands;
use tms_core::Error;
use tms_core::bus::lazy_connection;
use tms_core::queue::relay::Relay;
use tms_core::queue::{pending_key, storage};
use uuid::Uuid;

mod common;

use common::{base, count, env, step, workflow};

fn unsent(url: &str, run_id: Uuid) -> i64 {
    count(
        url,
        &format!(
            "SELECT count(*) AS n FROM job_outbox WHERE run_id = '{run_id}' AND sent_at IS NULL"
        ),
    )
}

#[tokio::test]
async fn a_relayed_row_is_marked_sent_and_its_job_waits_on_the_queue() {
    let b = base("tms_relay").await;
    let wf = b
        .create_workflow(workflow("one", vec![step("a", &[])]))
        .await;
    let run_id = b.trigger(wf).await;
    assert_eq!(unsent(&b.url, run_id), 1, "the trigger wrote no outbox row");

    let redis = lazy_connection(&env("TMS_TEST_REDIS_URL")).expect("redis");
    let queue = format!("q-{}", Uuid::new_v4().simple());
    let relay = Relay::new(b.db.clone(), redis.clone(), &queue);
    let jobs = storage(redis.clone(), &queue);
    // Other tests' rows share nothing with this database: everything unsent here is this run's.
    let n = relay.relay_once(&jobs).await.expect("relay");
    assert_eq!(n, 1);
    assert_eq!(unsent(&b.url, run_id), 0, "the row is still unsent");
    let mut conn = redis.clone();
    let waiting: bool = conn
        .sismember(pending_key(&queue), run_id.to_string())
        .await
        .expect("sismember");
    assert!(waiting, "the run is not marked as waiting on the queue");
    let data = tms_core::queue::storage_config(&queue).job_data_hash();
    let queued: i64 = conn.hlen(data).await.expect("hlen");
    assert_eq!(queued, 1, "the job is not on the queue");
    assert_eq!(relay.relay_once(&jobs).await.expect("relay again"), 0);
}

#[tokio::test]
async fn a_push_that_fails_gives_the_row_back() {
    let b = base("tms_relay").await;
    let wf = b
        .create_workflow(workflow("one", vec![step("a", &[])]))
        .await;
    let run_id = b.trigger(wf).await;
    // A port nothing listens on (loopback): every Redis call fails.
    let dead = lazy_connection("redis://127.0.0.1:1").expect("client");
    let relay = Relay::new(b.db.clone(), dead.clone(), "q-dead");
    let res = relay.relay_once(&storage(dead, "q-dead")).await;
    assert!(matches!(res, Err(Error::Unavailable(_))), "{res:?}");
    assert_eq!(unsent(&b.url, run_id), 1, "the row was not given back");
}
