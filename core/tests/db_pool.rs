//! The pool's queue (`Db::run`): callers waiting for a connection get one in the order they
//! asked, and one that waits past the pool's timeout while every connection stays busy is
//! answered `UNAVAILABLE` rather than left waiting. Real Postgres.

use std::sync::{Arc, Mutex};

use diesel::RunQueryDsl;
use tms_core::Error;
use tms_core::db::Db;

mod common;

use common::env;

/// Takes the pool's one connection and keeps it until `release` is sent; resolves `held` once
/// it has it.
fn hold(
    db: &Db,
) -> (
    tokio::task::JoinHandle<tms_core::Result<()>>,
    tokio::sync::oneshot::Receiver<()>,
    std::sync::mpsc::Sender<()>,
) {
    let (held_tx, held_rx) = tokio::sync::oneshot::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let db = db.clone();
    let holder = tokio::spawn(async move {
        db.run(move |c| {
            diesel::sql_query("SELECT 1").execute(c)?;
            let _ = held_tx.send(());
            let _ = release_rx.recv();
            Ok(())
        })
        .await
    });
    (holder, held_rx, release_tx)
}

#[tokio::test]
async fn callers_waiting_for_a_connection_get_it_in_the_order_they_asked() {
    let db = Db::new(&env("TMS_TEST_DATABASE_URL"), 1).expect("pool");
    let (holder, held, release) = hold(&db);
    held.await.expect("the holder has the connection");
    let order = Arc::new(Mutex::new(Vec::new()));
    let mut waiting = Vec::new();
    for i in 0..8 {
        let (db, order) = (db.clone(), order.clone());
        let mut call = Box::pin(async move {
            db.run(move |c| {
                diesel::sql_query("SELECT 1").execute(c)?;
                order.lock().expect("order").push(i);
                Ok(())
            })
            .await
        });
        // Polled once, the call takes its place in the queue.
        assert!(futures::poll!(&mut call).is_pending(), "call {i} waits");
        waiting.push(call);
    }
    release.send(()).expect("release");
    holder.await.expect("holder").expect("holder's call");
    for result in futures::future::join_all(waiting).await {
        result.expect("call");
    }
    assert_eq!(
        *order.lock().expect("order"),
        (0..8).collect::<Vec<_>>(),
        "connections were handed out out of the order they were asked for"
    );
}

#[tokio::test]
async fn a_caller_of_a_pool_busy_past_its_timeout_is_told_unavailable() {
    let db = Db::new(&env("TMS_TEST_DATABASE_URL"), 1).expect("pool");
    let (holder, held, release) = hold(&db);
    held.await.expect("the holder has the connection");
    let started = std::time::Instant::now();
    let refused = db
        .run(|c| Ok(diesel::sql_query("SELECT 1").execute(c)?))
        .await;
    let waited = started.elapsed();
    assert!(
        matches!(&refused, Err(Error::Unavailable(_))),
        "a call that found no connection: {refused:?}"
    );
    assert!(
        waited >= std::time::Duration::from_secs(5) && waited < std::time::Duration::from_secs(8),
        "it waited the pool's timeout (5 s), not {waited:?}"
    );
    release.send(()).expect("release");
    holder.await.expect("holder").expect("holder's call");
    db.run(|c| Ok(diesel::sql_query("SELECT 1").execute(c)?))
        .await
        .expect("the pool serves again once the connection is back");
}
