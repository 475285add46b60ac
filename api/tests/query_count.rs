//! A page of runs with its nested fields costs a fixed number of SQL statements, whatever its
//! size: counted on the real schema, real services and the Postgres `scripts/test` provides.

mod common;

use async_graphql::{Request, Variables};
use common::step;
use serde_json::{Value, json};
use tms_api::context::RequestAuth;
use tms_api::graphql::loaders;
use tms_api::state::Services;
use tms_core::db::Db;
use tms_core::runs::service::TriggerRequest;
use tms_core::workflows::WorkflowInput;
use tokio_util::sync::CancellationToken;

const EMAIL: &str = "admin@query-count.test";
const PASSWORD: &str = "admin-password-for-tests";

/// The statements `runs(first: 100)` with nested fields costs: authenticating the caller (1: the
/// user, its session and its roles), the page (1), workflows (1), their versions (1), tasks (1),
/// estimates (runs and tasks: 2).
/// The learnt step durations the estimates use are cached for 5 s per workflow, so reading them
/// (1 statement for the one workflow) only counts when the cache is cold.
const EXPECTED_STATEMENTS: u64 = 7;

const PAGE: &str = "{ runs(first: 100) { edges { node { id status \
    workflow { name steps { name } } tasks { name status } percent etaSeconds } } } }";

struct Deployment {
    db: Db,
    services: Services,
    schema: tms_api::graphql::TmsSchema,
    token: String,
    stop: CancellationToken,
}

/// The real services on a fresh database, with one workflow of three steps and `runs` queued
/// runs of it (no worker: every run stays queued with pending tasks).
async fn deployment(runs: usize) -> Deployment {
    let db = common::fresh_db("tms_qc", 4).await;
    let common::Stack {
        services,
        token,
        stop,
        ..
    } = common::stack(&db, EMAIL, PASSWORD).await;
    let who = services.auth.authenticate(&token).await.expect("principal");
    let wf = services
        .workflows
        .create(
            Some(&who),
            WorkflowInput {
                name: format!("wf-{runs}"),
                description: None,
                steps: vec![step("a", &[]), step("b", &["a"]), step("c", &["a"])],
                schedule: None,
                max_concurrent_runs: None,
                rate_limit: None,
            },
        )
        .await
        .expect("workflow");
    for _ in 0..runs {
        let req = TriggerRequest {
            workflow_id: wf.id,
            inputs: None,
            idempotency_key: None,
            no_cache: false,
        };
        services
            .runs
            .trigger(Some(&who), req)
            .await
            .expect("trigger");
    }
    let schema = tms_api::graphql::build(services.clone(), false);
    Deployment {
        db,
        services,
        schema,
        token,
        stop,
    }
}

impl Deployment {
    /// Executes `query` as the http transport does (authenticate, then execute with per-request
    /// loaders); returns the response data and the statements it cost.
    async fn execute(&self, query: &str) -> (Value, u64) {
        let before = self.db.queries_started();
        let header = format!("Bearer {}", self.token);
        let auth = RequestAuth::from_header(&self.services.auth, Some(&header)).await;
        let loaders = loaders::for_request(&self.services, &auth);
        let req = Request::new(query)
            .variables(Variables::default())
            .data(auth)
            .data(loaders);
        let resp = self.schema.execute(req).await;
        let cost = self.db.queries_started() - before;
        assert!(resp.errors.is_empty(), "errors: {:?}", resp.errors);
        (resp.data.into_json().expect("json"), cost)
    }
}

/// Checks every run on the page is whole: its workflow with steps, its tasks in order, and
/// the estimate of a run nothing has started.
fn assert_page(data: &Value, runs: usize) {
    let edges = data["runs"]["edges"].as_array().expect("edges");
    assert_eq!(edges.len(), runs);
    let mut ids = std::collections::HashSet::new();
    for e in edges {
        let run = &e["node"];
        assert!(ids.insert(run["id"].as_str().expect("id").to_string()));
        assert_eq!(run["status"], "QUEUED");
        assert_eq!(run["workflow"]["name"], format!("wf-{runs}"));
        assert_eq!(
            run["workflow"]["steps"],
            json!([{"name": "a"}, {"name": "b"}, {"name": "c"}])
        );
        assert_eq!(
            run["tasks"],
            json!([
                {"name": "a", "status": "PENDING"},
                {"name": "b", "status": "PENDING"},
                {"name": "c", "status": "PENDING"},
            ])
        );
        assert_eq!(run["percent"], json!(0.0));
        assert_eq!(run["etaSeconds"], Value::Null);
    }
}

#[tokio::test]
async fn a_runs_page_costs_the_same_statements_for_5_and_100_runs() {
    let mut costs = Vec::new();
    for runs in [5, 100] {
        let env = deployment(runs).await;
        // The first page may also read the learnt durations (cold cache); the second one, right
        // after, finds them cached, so its count is exact.
        let (data, cold) = env.execute(PAGE).await;
        assert_page(&data, runs);
        assert!(
            cold <= EXPECTED_STATEMENTS + 1,
            "{cold} statements (cold) for {runs} runs"
        );
        let (data, warm) = env.execute(PAGE).await;
        assert_page(&data, runs);
        println!(
            "runs(first: 100) with nested fields, {runs} runs: {cold} statements cold, {warm} warm"
        );
        costs.push(warm);
        env.stop.cancel();
    }
    assert_eq!(
        costs, [EXPECTED_STATEMENTS; 2],
        "the cost must not grow with the page"
    );
}
