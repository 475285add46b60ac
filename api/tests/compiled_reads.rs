//! The compiled read path (`graphql::compiled`) answers a runs page exactly as the general
//! executor does: for every document it takes, its answer is compared with the general
//! executor's on the same data; the documents it must leave to the general executor (and the
//! callers it must leave, whose denials the general executor reports) are checked to be left,
//! and to get through the HTTP pipeline the general executor's answer. Real services and
//! Postgres.

mod common;

use async_graphql::{Request, Variables};
use common::step;
use diesel::RunQueryDsl;
use serde_json::{Value, json};
use tms_api::context::RequestAuth;
use tms_api::graphql::compiled::Plans;
use tms_api::graphql::persisted::PersistedQueries;
use tms_api::graphql::pipeline::{self, PendingAuth};
use tms_api::graphql::{TmsSchema, compiled, loaders};
use tms_api::state::Services;
use tms_core::auth::Role;
use tms_core::runs::service::TriggerRequest;
use tms_core::workflows::WorkflowInput;

struct Env {
    db: tms_core::db::Db,
    services: Services,
    schema: TmsSchema,
    admin: String,
    monitor: String,
    /// The pipeline's learnt documents, shared by every request of the test, as in one process.
    plans: Plans,
    persisted: PersistedQueries,
    stop: tokio_util::sync::CancellationToken,
}

fn workflow(name: &str, description: Option<&str>, limit: Option<u32>) -> WorkflowInput {
    WorkflowInput {
        name: name.into(),
        description: description.map(Into::into),
        steps: vec![step("a", &[]), step("b", &["a"]), step("c", &["a"])],
        schedule: None,
        max_concurrent_runs: limit,
        rate_limit: None,
    }
}

/// Two workflows; 7 runs of the first in every state a page shows (succeeded, failed with an
/// error and a skipped task, cancelled, queued), with inputs and a key on some; one running run
/// of the second, half done (its workflow has no history, so its estimate does not depend on
/// the clock).
async fn env() -> Env {
    let db = common::fresh_db("tms_cr", 4).await;
    let common::Stack {
        services,
        token,
        stop,
        ..
    } = common::stack(&db, "admin@compiled.test", "admin-password-for-tests").await;
    let who = services.auth.authenticate(&token).await.expect("principal");
    let wfs = &services.workflows;
    let first = wfs
        .create(Some(&who), workflow("first", Some("the first"), Some(3)))
        .await
        .expect("workflow");
    let second = wfs
        .create(Some(&who), workflow("second", None, None))
        .await
        .expect("workflow");
    let mut ids = Vec::new();
    for (i, wf) in [first.id; 7].into_iter().chain([second.id]).enumerate() {
        let req = TriggerRequest {
            workflow_id: wf,
            inputs: (i % 2 == 0).then(|| json!({ "n": i, "label": "x\"y" })),
            idempotency_key: (i == 3).then(|| "key-3".to_string()),
            no_cache: i == 5,
        };
        let run = services.runs.trigger(Some(&who), req).await.expect("run");
        ids.push(run.id);
    }
    let states = [
        "UPDATE runs SET status = 'succeeded', started_at = created_at + interval '1 s', \
         finished_at = created_at + interval '3.25 s', deliveries = 1 WHERE id = '{0}'; \
         UPDATE tasks SET status = 'succeeded', attempt = 1, exit_code = 0, log_tail = 'ok\n', \
         started_at = now() - interval '2 s', finished_at = now() WHERE run_id = '{0}'",
        "UPDATE runs SET status = 'failed', error = 'step a failed', started_at = created_at, \
         finished_at = created_at + interval '1 s' WHERE id = '{0}'; \
         UPDATE tasks SET status = 'failed', attempt = 2, exit_code = 3, error = 'exit 3' \
         WHERE run_id = '{0}' AND name = 'a'; \
         UPDATE tasks SET status = 'skipped', error = 'a did not succeed' \
         WHERE run_id = '{0}' AND name <> 'a'",
        "UPDATE runs SET status = 'cancelled', cancel_requested_at = created_at, \
         finished_at = created_at WHERE id = '{0}'; \
         UPDATE tasks SET status = 'cancelled' WHERE run_id = '{0}'",
        "UPDATE runs SET status = 'succeeded', started_at = created_at, \
         finished_at = created_at WHERE id = '{0}'; \
         UPDATE tasks SET status = 'cached' WHERE run_id = '{0}'",
    ];
    let mut sql: Vec<String> = ids[..4]
        .iter()
        .zip(states)
        .map(|(id, s)| s.replace("{0}", &id.to_string()))
        .collect();
    sql.push(format!(
        "UPDATE runs SET status = 'running', started_at = now() WHERE id = '{0}'; \
         UPDATE tasks SET status = 'succeeded', attempt = 1, exit_code = 0 \
         WHERE run_id = '{0}' AND name = 'a'; \
         UPDATE tasks SET status = 'running', attempt = 1, progress_percent = 40.5 \
         WHERE run_id = '{0}' AND name = 'b'",
        ids[7]
    ));
    db.run(move |c| {
        for s in sql.iter().flat_map(|s| s.split("; ")) {
            diesel::sql_query(s).execute(c)?;
        }
        Ok(())
    })
    .await
    .expect("states");
    let monitor = services
        .api_tokens
        .create(Some(&who), "monitor", Role::Monitor, None)
        .await
        .expect("monitor token")
        .token;
    Env {
        db,
        schema: tms_api::graphql::build(services.clone(), false),
        services,
        admin: token,
        monitor,
        plans: Plans::default(),
        persisted: PersistedQueries::default(),
        stop,
    }
}

fn request(query: &str, vars: Value, operation: Option<&str>) -> Request {
    let mut req = Request::new(query).variables(Variables::from_json(vars));
    req.operation_name = operation.map(Into::into);
    req
}

impl Env {
    async fn auth(&self, token: &str) -> RequestAuth {
        RequestAuth::from_header(&self.services.auth, Some(&format!("Bearer {token}"))).await
    }

    /// The general executor's answer, as the pipeline runs it.
    async fn general(&self, token: &str, query: &str, vars: Value, op: Option<&str>) -> Value {
        let auth = self.auth(token).await;
        let req = request(query, vars, op)
            .data(loaders::for_request(&self.services, &auth))
            .data(auth);
        serde_json::to_value(self.schema.execute(req).await).expect("json")
    }

    /// The compiled path's answer, or `None` when it leaves the document.
    async fn compiled(
        &self,
        token: &str,
        query: &str,
        vars: Value,
        op: Option<&str>,
    ) -> Option<Value> {
        let auth = self.auth(token).await;
        let mut req = request(query, vars.clone(), op);
        let doc = req.parsed_query().expect("parses").clone();
        let vars = Variables::from_json(vars);
        compiled::execute(&self.services, &doc, op, &vars, &auth)
            .await
            .map(|r| serde_json::to_value(r).expect("json"))
    }

    /// The HTTP pipeline's answer (limits, token, then one path or the other), with the
    /// documents this test's requests taught it (`fresh`: none).
    async fn pipeline_with(&self, fresh: bool, token: &str, req: Request) -> Value {
        let pending = PendingAuth {
            header: Some(format!("Bearer {token}")),
            ..Default::default()
        };
        let (plans, persisted) = (Plans::default(), PersistedQueries::default());
        let (plans, persisted) = if fresh {
            (&plans, &persisted)
        } else {
            (&self.plans, &self.persisted)
        };
        let resp = pipeline::execute(
            &self.schema,
            &self.services,
            persisted,
            plans,
            req,
            &pending,
        );
        serde_json::to_value(resp.await).expect("json")
    }

    async fn pipeline(&self, token: &str, query: &str, vars: Value, op: Option<&str>) -> Value {
        self.pipeline_with(false, token, request(query, vars, op))
            .await
    }
}

const RUN_FIELDS: &str = "__typename id status version trigger scheduledFor inputs \
    idempotencyKey noCache createdAt startedAt finishedAt error deadLetteredAt deliveries \
    lastSeq percent etaSeconds cancelRequestedAt";
const TASK_FIELDS: &str = "__typename name status attempt dependsOn startedAt finishedAt \
    exitCode cached logTail progressPercent error";
const WORKFLOW_FIELDS: &str = "__typename id name description currentVersion archived \
    legacyId archivedAt maxConcurrentRuns createdAt updatedAt";

/// Documents the compiled path answers, with their variables and operation name.
fn compiled_documents(cursor: &str) -> Vec<(String, Value, Option<&'static str>)> {
    let every = format!(
        "{{ runs {{ __typename pageInfo {{ __typename hasPreviousPage hasNextPage startCursor \
         endCursor }} edges {{ __typename cursor node {{ {RUN_FIELDS} workflow {{ \
         {WORKFLOW_FIELDS} }} tasks {{ {TASK_FIELDS} }} }} }} nodes {{ id }} }} }}"
    );
    vec![
        // The benchmark's shapes.
        (
            "{ runs(first: 20) { edges { node { id status createdAt finishedAt percent \
             etaSeconds workflow { name } tasks { name status attempt exitCode } } } } }"
                .into(),
            json!({}),
            None,
        ),
        (
            "{ runs(first: 20) { edges { node { id status createdAt percent } } } }".into(),
            json!({}),
            None,
        ),
        (every, json!({}), None),
        // Aliases, a named operation among others, variables of every argument.
        (
            "query Page($n: Int!, $s: RunStatus, $w: ID) { page: runs(first: $n, status: $s, \
             workflowId: $w) { info: pageInfo { more: hasNextPage end: endCursor } list: nodes \
             { key: id state: status steps: tasks { step: name } wf: workflow { title: name } } \
             } } query Other { runs { nodes { id } } }"
                .into(),
            json!({ "n": 2, "s": "SUCCEEDED", "w": null }),
            Some("Page"),
        ),
        (
            "query($after: String, $first: Int) { runs(first: $first, after: $after) { \
             pageInfo { hasPreviousPage hasNextPage startCursor } edges { cursor node { id } } \
             } }"
            .into(),
            json!({ "after": cursor, "first": 3 }),
            None,
        ),
        (
            format!(
                "{{ runs(first: 2, after: \"{cursor}\", status: QUEUED) {{ nodes {{ id }} }} }}"
            ),
            json!({}),
            None,
        ),
    ]
}

/// Documents it leaves to the general executor: fragments, directives, fields it does not
/// build, arguments it cannot take as they are, invalid documents, other roots.
const GENERAL_DOCUMENTS: &[&str] = &[
    "{ runs { nodes { ...F } } } fragment F on Run { id }",
    "{ runs { nodes { ... on Run { id } } } }",
    "{ runs { nodes { id @include(if: true) } } }",
    "{ runs { nodes { tasks { log { text } } } } }",
    "{ runs { nodes { workflow { steps { name } } } } }",
    "{ runs { nodes { id id } } }",
    "{ runs { nodes { id nope } } }",
    "{ runs { nodes { workflow } } }",
    "{ runs { nodes { id { x } } } }",
    "{ runs(first: 0) { nodes { id } } }",
    "{ runs(first: 500) { nodes { id } } }",
    "{ runs(after: \"bm90LWEtY3Vyc29y\") { nodes { id } } }",
    "{ runs(status: \"QUEUED\") { nodes { id } } }",
    "{ runs(workflowId: \"not-a-uuid\") { nodes { id } } }",
    "{ runs(first: 1, first: 2) { nodes { id } } }",
    "query($n: Int) { runs { nodes { id } } }",
    "query($n: String) { runs(first: $n) { nodes { id } } }",
    "query($n: Int = 2) { runs(first: $n) { nodes { id } } }",
    "{ runs { nodes { id } } me { email } }",
    "{ workflows { nodes { name } } }",
    "mutation { logout(refreshToken: \"x\") }",
];

#[tokio::test]
async fn the_compiled_path_answers_as_the_general_executor_and_leaves_what_it_cannot() {
    let env = env().await;
    let admin = env.admin.as_str();
    let top = env
        .general(
            admin,
            "{ runs(first: 2) { edges { cursor } } }",
            json!({}),
            None,
        )
        .await;
    let cursor = top["data"]["runs"]["edges"][1]["cursor"]
        .as_str()
        .expect("cursor")
        .to_string();

    for (query, vars, op) in compiled_documents(&cursor) {
        let general = env.general(admin, &query, vars.clone(), op).await;
        assert!(
            general.get("errors").is_none(),
            "the general executor refused {query}: {general}"
        );
        let compiled = env.compiled(admin, &query, vars.clone(), op).await;
        let Some(compiled) = compiled else {
            panic!("the compiled path left {query}, which it should answer");
        };
        assert_eq!(compiled, general, "answers differ for {query}");
        let through = env.pipeline(admin, &query, vars.clone(), op).await;
        assert_eq!(
            through, general,
            "the pipeline's answer differs for {query}"
        );
        assert!(
            env.plans.get(&query, op).is_some(),
            "the pipeline did not learn {query}"
        );
        // Again: now from the learnt plan, without a parse.
        let again = env.pipeline(admin, &query, vars, op).await;
        assert_eq!(
            again, general,
            "the learnt plan's answer differs for {query}"
        );
    }

    // The page really holds what the comparison is about.
    let every = env
        .compiled(admin, &compiled_documents(&cursor)[2].0, json!({}), None)
        .await
        .expect("answered");
    let nodes: Vec<&Value> = every["data"]["runs"]["edges"]
        .as_array()
        .expect("edges")
        .iter()
        .map(|e| &e["node"])
        .collect();
    assert_eq!(nodes.len(), 8, "{every}");
    let running = nodes
        .iter()
        .find(|n| n["status"] == "RUNNING")
        .expect("the running run");
    assert!(
        running["percent"].as_f64().expect("percent") > 33.0,
        "a running run's estimate comes from its tasks: {running}"
    );
    let statuses: Vec<&Value> = nodes.iter().map(|n| &n["status"]).collect();
    for s in ["SUCCEEDED", "FAILED", "CANCELLED", "QUEUED"] {
        assert!(statuses.contains(&&json!(s)), "{s} missing: {statuses:?}");
    }
    assert!(
        nodes.iter().any(|n| n["inputs"]["label"] == "x\"y"),
        "inputs are an object: {every}"
    );

    for query in GENERAL_DOCUMENTS {
        assert!(
            env.compiled(admin, query, json!({}), None).await.is_none(),
            "the compiled path answered {query}, which it must leave"
        );
        let general = env.general(admin, query, json!({}), None).await;
        let through = env.pipeline(admin, query, json!({}), None).await;
        if through.get("errors").is_none() {
            assert_eq!(
                through, general,
                "the pipeline's answer differs for {query}"
            );
        }
    }

    // A learnt document whose variables it cannot take answers as the general path does
    // (the page-size limit, a bad page size, a value of the wrong type, an unknown status).
    let sized = "query($n: Int, $s: RunStatus) { runs(first: $n, status: $s) { nodes { id } } }";
    for vars in [
        json!({ "n": 2, "s": "FAILED" }),
        json!({ "n": 500 }),
        json!({ "n": 0 }),
        json!({ "n": "3" }),
        json!({ "n": 2, "s": "BOGUS" }),
    ] {
        let learnt = env.pipeline(admin, sized, vars.clone(), None).await;
        let fresh = env
            .pipeline_with(true, admin, request(sized, vars.clone(), None))
            .await;
        assert_eq!(learnt, fresh, "answers differ for {vars}");
    }
    assert!(env.plans.get(sized, None).is_some());
    let limited = env.pipeline(admin, sized, json!({ "n": 500 }), None).await;
    assert_eq!(
        limited["errors"][0]["extensions"]["code"], "QUERY_LIMIT",
        "{limited}"
    );

    // A persisted query of a learnt document still registers: its hash alone then answers.
    let page = "{ runs(first: 2) { nodes { id } } }";
    env.pipeline(admin, page, json!({}), None).await;
    assert!(env.plans.get(page, None).is_some());
    let hash = {
        use sha2::Digest;
        hex::encode(sha2::Sha256::digest(page.as_bytes()))
    };
    let apq = |query: &str| {
        let mut req = Request::new(query);
        req.extensions.insert(
            "persistedQuery".into(),
            async_graphql::Value::from_json(json!({ "version": 1, "sha256Hash": hash }))
                .expect("extension"),
        );
        req
    };
    let registered = env.pipeline_with(false, admin, apq(page)).await;
    let by_hash = env.pipeline_with(false, admin, apq("")).await;
    assert!(by_hash.get("errors").is_none(), "{by_hash}");
    assert_eq!(by_hash, registered);

    // A caller who may not read runs is left to the general executor, which refuses it.
    let page = "{ runs { nodes { id } } }";
    let monitor = env.monitor.as_str();
    assert!(env.compiled(monitor, page, json!({}), None).await.is_none());
    let refused = env.pipeline(monitor, page, json!({}), None).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert!(
        env.compiled("not-a-token", page, json!({}), None)
            .await
            .is_none()
    );
    let refused = env.pipeline("not-a-token", page, json!({}), None).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "{refused}"
    );
    env.stop.cancel();
}

/// A user holding `role`, signed in: their access and refresh tokens.
async fn user(env: &Env, email: &str, role: Role) -> (String, String) {
    let password = "password-of-a-test-user";
    let hash = tms_core::auth::password::hash(password).expect("hash");
    let mail = email.to_string();
    env.db
        .run(move |c| {
            let u = tms_core::repo::users::insert(c, &mail, "A user", Some(&hash))?;
            tms_core::repo::users::grant_role(c, u.id, role, None)
        })
        .await
        .expect("user");
    let pair = env
        .services
        .auth
        .login(email, password, &Default::default())
        .await
        .expect("login");
    (
        pair.access_token,
        pair.refresh_token.expect("refresh token"),
    )
}

/// How many `access.denied` entries the audit log holds.
async fn denials(env: &Env) -> i64 {
    #[derive(diesel::QueryableByName)]
    struct N {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    env.db
        .run(|c| {
            Ok(diesel::sql_query(
                "SELECT count(*) AS n FROM audit_log WHERE action = 'access.denied'",
            )
            .get_result::<N>(c)?
            .n)
        })
        .await
        .expect("count")
}

/// A learnt page checks a user's access token in its own hop (`answer_in_session`): a session
/// that stands is answered as the general executor answers it; a user who may not read runs,
/// a session logged out and a disabled user are left to the general executor, which refuses
/// them (and records the denial) exactly as it would have without the learnt page.
#[tokio::test]
async fn a_learnt_page_checks_the_session_in_its_own_hop() {
    let env = env().await;
    let page = "{ runs(first: 4) { nodes { id status workflow { name } tasks { name status } } } }";
    let first = env.pipeline(&env.admin, page, json!({}), None).await;
    assert!(first.get("errors").is_none(), "{first}");
    assert!(env.plans.get(page, None).is_some(), "the page is learnt");

    let (viewer, viewer_refresh) = user(&env, "viewer@compiled.test", Role::Viewer).await;
    let learnt = env.pipeline(&viewer, page, json!({}), None).await;
    assert_eq!(learnt, env.general(&viewer, page, json!({}), None).await);
    assert_eq!(learnt, first, "a viewer sees the page as the admin does");

    let (auditor, _) = user(&env, "auditor@compiled.test", Role::Auditor).await;
    let before = denials(&env).await;
    let refused = env.pipeline(&auditor, page, json!({}), None).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "FORBIDDEN",
        "{refused}"
    );
    assert_eq!(
        denials(&env).await,
        before + 1,
        "the denial is recorded once"
    );

    env.services
        .auth
        .logout(&viewer_refresh, &Default::default())
        .await
        .expect("logout");
    let refused = env.pipeline(&viewer, page, json!({}), None).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "a logged-out session's token is refused at once: {refused}"
    );

    let (other, _) = user(&env, "other@compiled.test", Role::Viewer).await;
    let answered = env.pipeline(&other, page, json!({}), None).await;
    assert!(answered.get("errors").is_none(), "{answered}");
    let admin = env
        .services
        .auth
        .authenticate(&env.admin)
        .await
        .expect("admin");
    let other_id = env
        .services
        .auth
        .authenticate(&other)
        .await
        .expect("other")
        .user_id;
    env.services
        .auth
        .set_user_disabled(Some(&admin), other_id, true)
        .await
        .expect("disable");
    let refused = env.pipeline(&other, page, json!({}), None).await;
    assert_eq!(
        refused["errors"][0]["extensions"]["code"], "UNAUTHENTICATED",
        "a disabled user's token is refused at once: {refused}"
    );
    env.stop.cancel();
}
