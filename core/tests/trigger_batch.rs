//! Triggers that arrive together are created together (`runs::trigger_batch`): fewer
//! transactions than runs, every run whole with its tasks, first event, outbox row and audit
//! record, the audit chain intact, and each trigger's refusal its own.

mod common;

use std::time::{Duration, Instant};

use common::{Base, base, step, workflow};
use diesel::{Connection, PgConnection, QueryableByName, RunQueryDsl};
use tms_core::audit::{Action, AuditEntry};
use tms_core::error::Error;
use tms_core::repo;
use tms_core::runs::service::TriggerRequest;
use tms_core::runs::{EventKind, EventStatus, Run};
use tms_core::workflows::service::WorkflowService;
use uuid::Uuid;

#[derive(QueryableByName)]
struct Count {
    #[diesel(sql_type = diesel::sql_types::BigInt)]
    n: i64,
}

fn count(conn: &mut PgConnection, sql: &str) -> i64 {
    diesel::sql_query(sql)
        .get_result::<Count>(conn)
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .n
}

/// Starts `triggers` (workflow, inputs, key) as the admin, each in its own task; they run once
/// the caller next awaits (the test runtime has one thread).
fn spawn_all(
    b: &Base,
    triggers: Vec<(Uuid, serde_json::Value, Option<&str>)>,
) -> Vec<tokio::task::JoinHandle<Result<Run, Error>>> {
    triggers
        .into_iter()
        .map(|(workflow_id, inputs, key)| {
            let (runs, who) = (b.runs.clone(), b.who.clone());
            let req = TriggerRequest {
                workflow_id,
                inputs: Some(inputs),
                idempotency_key: key.map(str::to_string),
                no_cache: false,
            };
            tokio::spawn(async move { runs.trigger(Some(&who), req).await })
        })
        .collect()
}

async fn outcomes(
    handles: Vec<tokio::task::JoinHandle<Result<Run, Error>>>,
) -> Vec<Result<Run, Error>> {
    let mut out = Vec::new();
    for h in handles {
        out.push(h.await.expect("trigger task"));
    }
    out
}

/// Checks that run `id` of the two-step workflow is whole: tasks `a`, `b` pending in order,
/// event 1 `queued`, its outbox row, one `run.trigger` audit record.
async fn assert_whole(b: &Base, id: Uuid) {
    let (tasks, events) =
        b.db.run(move |c| {
            Ok((
                repo::runs::tasks_of(c, id)?,
                repo::events::after(c, id, 0, 10)?,
            ))
        })
        .await
        .expect("read run");
    let names: Vec<_> = tasks.iter().map(|t| (t.name.as_str(), t.status)).collect();
    assert_eq!(
        names,
        [
            ("a", tms_core::runs::TaskStatus::Pending),
            ("b", tms_core::runs::TaskStatus::Pending)
        ],
        "run {id}'s tasks"
    );
    let evs: Vec<_> = events.iter().map(|e| (e.seq, e.kind, e.status)).collect();
    assert_eq!(
        evs,
        [(1, EventKind::Run, Some(EventStatus::Queued))],
        "run {id}'s events"
    );
    let mut conn = PgConnection::establish(&b.url).expect("connect");
    let outbox = format!(
        "SELECT count(*) AS n FROM job_outbox WHERE run_id = '{id}' AND payload->>'run_id' = '{id}'"
    );
    assert_eq!(count(&mut conn, &outbox), 1, "run {id}'s outbox row");
    let audit = format!(
        "SELECT count(*) AS n FROM audit_log WHERE resource = 'run:{id}' AND action = 'run.trigger'"
    );
    assert_eq!(count(&mut conn, &audit), 1, "run {id}'s audit record");
}

async fn assert_chain_intact(b: &Base) {
    let report =
        b.db.run(tms_core::audit::service::verify_chain)
            .await
            .expect("verify");
    assert!(
        report.ok,
        "audit chain broken at seq {:?} after {} rows",
        report.first_broken_seq, report.checked
    );
}

/// Waits until a statement of the test's database waits for a lock: the batch on the head.
async fn until_a_statement_waits_for_a_lock(b: &Base) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let waiting =
            b.db.run(|c| {
                Ok(count(
                    c,
                    "SELECT count(*) AS n FROM pg_stat_activity \
                     WHERE datname = current_database() AND wait_event_type = 'Lock'",
                ))
            })
            .await
            .expect("pg_stat_activity");
        if waiting > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "no trigger waited for the audit chain's head within 10 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn triggers_arriving_together_share_a_transaction_and_each_gets_its_own_answer() {
    let b = base("tms_trig").await;
    let wf = b
        .create_workflow(workflow("pair", vec![step("a", &[]), step("b", &["a"])]))
        .await;
    let old = b
        .create_workflow(workflow("old", vec![step("a", &[])]))
        .await;
    WorkflowService::new(b.db.clone())
        .archive(Some(&b.who), old)
        .await
        .expect("archive");
    let one = serde_json::json!({ "x": 1 });
    let prior = spawn_all(&b, vec![(wf, one.clone(), Some("k"))]);
    let prior = outcomes(prior).await.remove(0).expect("prior trigger").id;

    // Another audited change holds the chain's head while the triggers arrive: the batch must
    // wait for it and continue the chain from the head it committed.
    let mut holder = PgConnection::establish(&b.url).expect("connect");
    diesel::sql_query("BEGIN")
        .execute(&mut holder)
        .expect("begin");
    tms_core::audit::append(
        &mut holder,
        AuditEntry::by(&b.who, Action::RunCancel, "run:held"),
    )
    .expect("append while holding the head");

    let mut triggers: Vec<_> = (0..16).map(|_| (wf, serde_json::json!({}), None)).collect();
    triggers.push((Uuid::now_v7(), serde_json::json!({}), None));
    triggers.push((old, serde_json::json!({}), None));
    triggers.push((wf, serde_json::json!({ "x": 2 }), Some("k")));
    triggers.push((wf, one.clone(), Some("k")));
    let handles = spawn_all(&b, triggers);
    until_a_statement_waits_for_a_lock(&b).await;
    diesel::sql_query("COMMIT")
        .execute(&mut holder)
        .expect("commit");
    let mut results = outcomes(handles).await;

    let same_key = results.pop().expect("same key");
    assert_eq!(same_key.expect("same key, same inputs").id, prior);
    let other_inputs = results.pop().expect("other inputs");
    assert!(
        matches!(&other_inputs, Err(Error::Conflict(m)) if m.contains("different inputs")),
        "a key reused with other inputs: {other_inputs:?}"
    );
    let archived = results.pop().expect("archived");
    assert!(
        matches!(&archived, Err(Error::Conflict(m)) if m.contains("archived")),
        "an archived workflow: {archived:?}"
    );
    let unknown = results.pop().expect("unknown");
    assert!(
        matches!(unknown, Err(Error::NotFound("workflow"))),
        "an unknown workflow: {unknown:?}"
    );
    let ids: Vec<Uuid> = results
        .into_iter()
        .map(|r| r.expect("plain trigger").id)
        .collect();
    let distinct: std::collections::HashSet<_> = ids.iter().collect();
    assert_eq!(distinct.len(), 16, "16 distinct runs");
    for id in &ids {
        assert_whole(&b, *id).await;
    }
    let list = ids
        .iter()
        .map(|id| format!("'{id}'"))
        .collect::<Vec<_>>()
        .join(",");
    let mut conn = PgConnection::establish(&b.url).expect("connect");
    let transactions = count(
        &mut conn,
        &format!("SELECT count(DISTINCT xmin::text) AS n FROM runs WHERE id IN ({list})"),
    );
    assert!(
        transactions <= 2,
        "16 triggers arriving together were written by {transactions} transactions"
    );
    let held_seq = count(
        &mut conn,
        "SELECT max(seq) AS n FROM audit_log WHERE resource = 'run:held'",
    );
    let first_batch_seq = count(
        &mut conn,
        &format!(
            "SELECT min(seq) AS n FROM audit_log WHERE resource IN ({})",
            ids.iter()
                .map(|id| format!("'run:{id}'"))
                .collect::<Vec<_>>()
                .join(",")
        ),
    );
    assert!(
        held_seq < first_batch_seq,
        "the batch continued the chain after the held append ({held_seq} < {first_batch_seq})"
    );
    assert_chain_intact(&b).await;
}

#[tokio::test]
async fn a_batch_that_fails_in_the_database_is_retried_one_trigger_at_a_time() {
    let b = base("tms_trig").await;
    let wf = b
        .create_workflow(workflow("pair", vec![step("a", &[]), step("b", &["a"])]))
        .await;
    let one = serde_json::json!({ "x": 1 });
    let two = serde_json::json!({ "x": 2 });
    // Two new triggers with one key in one batch: the batch's statement fails on the key's
    // unique index, nothing of it is written, and each trigger runs alone in order.
    let triggers = vec![
        (wf, serde_json::json!({}), None),
        (wf, one.clone(), Some("dup")),
        (wf, one.clone(), Some("dup")),
        (wf, one.clone(), Some("dup2")),
        (wf, two.clone(), Some("dup2")),
        (wf, serde_json::json!({}), None),
    ];
    let mut results = outcomes(spawn_all(&b, triggers)).await.into_iter();
    let plain_1 = results.next().unwrap().expect("plain trigger").id;
    let dup_a = results.next().unwrap().expect("first with the key").id;
    let dup_b = results.next().unwrap().expect("same key, same inputs").id;
    assert_eq!(dup_a, dup_b, "the same key and inputs return the same run");
    let dup2 = results.next().unwrap().expect("first with dup2").id;
    let conflict = results.next().unwrap();
    assert!(
        matches!(&conflict, Err(Error::Conflict(m)) if m.contains("different inputs")),
        "dup2 with other inputs: {conflict:?}"
    );
    let plain_2 = results.next().unwrap().expect("plain trigger").id;
    for id in [plain_1, dup_a, dup2, plain_2] {
        assert_whole(&b, id).await;
    }
    let mut conn = PgConnection::establish(&b.url).expect("connect");
    assert_eq!(
        count(&mut conn, "SELECT count(*) AS n FROM runs"),
        4,
        "four runs, none left behind by the failed batch"
    );
    assert_chain_intact(&b).await;
}
