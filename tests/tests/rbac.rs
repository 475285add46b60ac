//! The role × operation matrix against the real api: every root Query and Mutation field (and
//! the `runProgress` and `runEvents` subscriptions over a real WebSocket), called as each of the
//! six roles (as an API token and as a local account) and without a token, must be allowed or
//! refused exactly as the permission rules table (`tms_api::graphql::permissions`) and `Permission::roles()` say.
//! Every refusal leaves an `access.denied` row.

use std::collections::BTreeSet;
use std::time::Duration;

use anyhow::{Result, anyhow, bail};
use serde_json::{Value, json};
use tms_api::graphql::permissions::root_allows;
use tms_core::auth::Role;
use tms_tests::principals::{api_token, code, local_user, role_name, rows};
use tms_tests::sessions;
use tms_tests::ws::{GqlWs, PROGRESS_QUERY, WsEvent};
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, TestEnv};

const STEPS: &str = r#"[{"name":"a","image":"alpine:3.20","run":"true"}]"#;

/// What the matrix calls: one document per root field, with variables that make an allowed
/// call harmless (unknown ids where the call would destroy something the matrix still uses).
struct Fixture {
    workflow: String,
    workflow_name: String,
    run: String,
    user: String,
}

/// Root fields whose argument is itself the credential (a refresh token): each call gets a
/// fresh one, so the matrix sees the rule's answer rather than a spent token's.
const SELF_AUTHENTICATING: &[&str] = &["Mutation.refreshToken", "Mutation.logout"];

fn operation(field: &str, f: &Fixture, caller: &str, refresh: &str) -> Option<(String, Value)> {
    let steps: Value = serde_json::from_str(STEPS).expect("steps");
    let unknown = uuid::Uuid::new_v4().to_string();
    let (q, v) = match field {
        "Query.me" => ("{me{id email roles}}", json!({})),
        "Query.users" => ("{users(first:5){edges{node{id roles}}}}", json!({})),
        "Query.apiTokens" => ("{apiTokens{id name}}", json!({})),
        "Query.workflow" => (
            "query($i:ID!){workflow(id:$i){id}}",
            json!({"i": f.workflow}),
        ),
        "Query.workflows" => ("{workflows(first:5){edges{node{id}}}}", json!({})),
        "Query.run" => ("query($i:ID!){run(id:$i){id}}", json!({"i": f.run})),
        "Query.runs" => ("{runs(first:5){edges{node{id}}}}", json!({})),
        "Query.importBatches" => ("{importBatches(first:1){edges{node{id}}}}", json!({})),
        "Mutation.importTasks" => (
            "mutation($c:String!){importTasks(input:{format:JSON,content:$c,dryRun:true}){dryRun}}",
            json!({"c": r#"{"tasks":[{"id":"rbac-1","command":"true"}]}"#}),
        ),
        "Mutation.verifyImport" => (
            "mutation($b:ID!){verifyImport(batchId:$b,content:\"{}\"){ok}}",
            json!({"b": unknown}),
        ),
        "Mutation.enableImportPhase" => (
            "mutation($b:ID!){enableImportPhase(batchId:$b){enabled}}",
            json!({"b": unknown}),
        ),
        "Mutation.rollbackImport" => (
            "mutation($b:ID!){rollbackImport(batchId:$b){id}}",
            json!({"b": unknown}),
        ),
        "Query.explainCache" => (
            "query($i:ID!){explainCache(runId:$i,step:\"a\"){hit reason}}",
            json!({"i": f.run}),
        ),
        "Query.systemHealth" => ("{systemHealth{status}}", json!({})),
        "Query.queueStats" => ("{queueStats{pending}}", json!({})),
        "Query.workers" => ("{workers{name}}", json!({})),
        "Query.runStats" => ("{runStats(windowSeconds:3600){total}}", json!({})),
        "Query.auditLog" => ("{auditLog(first:1){edges{node{seq}}}}", json!({})),
        "Query.verifyAuditChain" => ("{verifyAuditChain{ok}}", json!({})),
        "Mutation.login" => (
            "mutation($e:String!,$p:String!){login(email:$e,password:$p){expiresIn}}",
            json!({"e": ADMIN_EMAIL, "p": ADMIN_PASSWORD}),
        ),
        "Mutation.createWorkflow" => (
            "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}",
            json!({"i": {"name": format!("rbac-{caller}"), "steps": steps}}),
        ),
        "Mutation.updateWorkflow" => (
            "mutation($i:ID!,$in:WorkflowInput!){updateWorkflow(id:$i,input:$in){id}}",
            json!({"i": f.workflow, "in": {"name": f.workflow_name, "steps": steps}}),
        ),
        "Mutation.archiveWorkflow" => (
            "mutation($i:ID!){archiveWorkflow(id:$i){id}}",
            json!({"i": unknown}),
        ),
        "Mutation.setScheduleEnabled" => (
            "mutation($i:ID!){setScheduleEnabled(workflowId:$i,enabled:false){id}}",
            json!({"i": unknown}),
        ),
        "Mutation.triggerRun" => (
            "mutation($w:ID!){triggerRun(workflowId:$w){id}}",
            json!({"w": f.workflow}),
        ),
        "Mutation.cancelRun" => (
            "mutation($i:ID!){cancelRun(id:$i){id}}",
            json!({"i": f.run}),
        ),
        "Mutation.retryRun" => (
            "mutation($i:ID!){retryRun(id:$i){id}}",
            json!({"i": unknown}),
        ),
        "Mutation.assignRole" => (
            "mutation($u:ID!){assignRole(userId:$u,role:VIEWER){id}}",
            json!({"u": f.user}),
        ),
        "Mutation.revokeRole" => (
            "mutation($u:ID!){revokeRole(userId:$u,role:AUDITOR){id}}",
            json!({"u": f.user}),
        ),
        "Mutation.createApiToken" => (
            "mutation{createApiToken(name:\"matrix\",role:VIEWER){apiToken{id}}}",
            json!({}),
        ),
        "Mutation.refreshToken" => (
            "mutation($r:String!){refreshToken(refreshToken:$r){expiresIn}}",
            json!({"r": refresh}),
        ),
        "Mutation.logout" => (
            "mutation($r:String!){logout(refreshToken:$r)}",
            json!({"r": refresh}),
        ),
        "Mutation.setUserDisabled" => (
            "mutation($u:ID!){setUserDisabled(userId:$u,disabled:false){id}}",
            json!({"u": f.user}),
        ),
        "Mutation.revokeApiToken" => (
            "mutation($i:ID!){revokeApiToken(id:$i)}",
            json!({"i": unknown}),
        ),
        _ => return None,
    };
    Some((q.to_string(), v))
}

/// Calls every root field as `token` and returns how many were refused; fails on any outcome
/// the rules table does not predict for `role`.
async fn check_caller(
    env: &TestEnv,
    f: &Fixture,
    roots: &BTreeSet<String>,
    label: &str,
    token: Option<&str>,
    role: Option<Role>,
) -> Result<usize> {
    let mut denied = 0;
    let mut wrong = Vec::new();
    for field in roots.iter().filter(|r| !r.starts_with("Subscription.")) {
        let refresh = if SELF_AUTHENTICATING.contains(&field.as_str()) {
            sessions::login(env, ADMIN_EMAIL, ADMIN_PASSWORD).await?.1
        } else {
            String::new()
        };
        let (q, v) = operation(field, f, label, &refresh)
            .ok_or_else(|| anyhow!("no matrix operation for {field}: add one"))?;
        let allowed = root_allows(field, role).ok_or_else(|| anyhow!("no root rule: {field}"))?;
        let resp = env.gql_raw(token, &q, v).await?;
        let got = code(&resp);
        let refused = matches!(got.as_deref(), Some("FORBIDDEN" | "UNAUTHENTICATED"));
        let want = match (allowed, token) {
            (true, _) => None,
            (false, None) => Some("UNAUTHENTICATED"),
            (false, Some(_)) => Some("FORBIDDEN"),
        };
        let ok = match want {
            None => !refused,
            Some(w) => got.as_deref() == Some(w) && resp["data"].is_null(),
        };
        if !ok {
            wrong.push(format!("{label} {field}: expected {want:?}, got {resp}"));
        }
        if refused && token.is_some() {
            denied += 1;
        }
    }
    if !wrong.is_empty() {
        bail!("matrix mismatches:\n  {}", wrong.join("\n  "));
    }
    Ok(denied)
}

/// `runProgress` over a WebSocket: the first message is the snapshot when allowed, a FORBIDDEN
/// error when not.
async fn check_subscription(env: &TestEnv, f: &Fixture, token: &str, role: Role) -> Result<bool> {
    let allowed = root_allows("Subscription.runProgress", Some(role)).expect("rule");
    let mut ws = GqlWs::connect(env.api_port, token).await?;
    ws.subscribe("p", PROGRESS_QUERY, json!({"r": f.run}))
        .await?;
    let first = ws.next(Duration::from_secs(30)).await?;
    ws.close().await;
    match (&first, allowed) {
        (WsEvent::Next(d), true) if d["runProgress"]["kind"] == "SNAPSHOT" => Ok(false),
        (WsEvent::Error(e), false) if e[0]["extensions"]["code"] == "FORBIDDEN" => Ok(true),
        _ => bail!("runProgress as {role:?}: allowed={allowed}, got {first:?}"),
    }
}

/// `runEvents` over a WebSocket. An allowed subscription sends nothing until a run changes, so
/// a probe follows it on the same socket (a `runProgress` of an unknown run): once the probe
/// has completed, a refusal of `runEvents` would have been sent. Returns the refusals seen
/// (the probe is refused too when `runEvents` is).
async fn check_run_events(env: &TestEnv, token: &str, role: Role) -> Result<usize> {
    let allowed = root_allows("Subscription.runEvents", Some(role)).expect("rule");
    let mut ws = GqlWs::connect(env.api_port, token).await?;
    ws.subscribe("e", "subscription{runEvents{seq runId}}", json!({}))
        .await?;
    let probe = json!({"r": uuid::Uuid::new_v4().to_string()});
    ws.subscribe("b", PROGRESS_QUERY, probe).await?;
    let (mut events_code, mut probe_code, mut probe_done) = (None, None, false);
    for _ in 0..6 {
        let v = ws
            .recv_raw(Duration::from_secs(30))
            .await?
            .map_err(|c| anyhow!("socket closed: {c:?}"))?;
        let first_code = v["payload"]["errors"][0]["extensions"]["code"]
            .as_str()
            .or(v["payload"][0]["extensions"]["code"].as_str())
            .map(str::to_string);
        match (v["id"].as_str(), v["type"].as_str()) {
            (Some("e"), Some("next" | "error")) => events_code = first_code.or(Some("data".into())),
            (Some("b"), Some("next" | "error")) => probe_code = first_code,
            (Some("b"), Some("complete")) => probe_done = true,
            _ => {}
        }
        if probe_done && (allowed || events_code.is_some()) {
            break;
        }
    }
    ws.close().await;
    let want_events = (!allowed).then(|| "FORBIDDEN".to_string());
    let want_probe = if allowed { "NOT_FOUND" } else { "FORBIDDEN" };
    anyhow::ensure!(
        probe_done && events_code == want_events && probe_code.as_deref() == Some(want_probe),
        "runEvents as {role:?}: allowed={allowed}, runEvents {events_code:?}, probe {probe_code:?}"
    );
    Ok(if allowed { 0 } else { 2 })
}

async fn fixture(env: &TestEnv) -> Result<Fixture> {
    let steps: Value = serde_json::from_str(STEPS)?;
    let workflow = env.create_workflow("rbac-base", steps).await?;
    let run = env.trigger(&workflow).await?;
    let (user, _) = local_user(env, "target@tms.test", &[]).await?;
    Ok(Fixture {
        workflow,
        workflow_name: "rbac-base".into(),
        run,
        user,
    })
}

#[tokio::test]
async fn rbac_every_role_against_every_operation() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let f = fixture(&env).await?;
    let walk =
        tms_api::graphql::schema_walk::walk(&tms_api::graphql::sdl()).map_err(|e| anyhow!(e))?;
    let roots = walk.roots.clone();
    let subscriptions: Vec<&String> = roots
        .iter()
        .filter(|r| r.starts_with("Subscription."))
        .collect();
    assert_eq!(
        subscriptions,
        ["Subscription.runEvents", "Subscription.runProgress"],
        "a new subscription needs a check here"
    );

    // Without a token: only the public fields answer; the socket is refused at init.
    check_caller(&env, &f, &roots, "anonymous", None, None).await?;
    assert!(GqlWs::connect(env.api_port, "").await.is_err());

    for role in Role::ALL {
        let name = role_name(role);
        let (token_id, secret) =
            api_token(&env, &format!("matrix-{}", role.as_str()), &name).await?;
        let mut denied =
            check_caller(&env, &f, &roots, role.as_str(), Some(&secret), Some(role)).await?;
        if check_subscription(&env, &f, &secret, role).await? {
            denied += 1;
        }
        denied += check_run_events(&env, &secret, role).await?;
        // One access.denied row per refusal, carrying the token and its creating admin.
        let logged = rows(
            &env,
            &format!(
                "SELECT actor_email FROM audit_log WHERE action = 'access.denied'
                 AND api_token_id = '{token_id}'"
            ),
        )?;
        assert_eq!(logged.len(), denied, "{role:?}: {logged:?}");
        assert!(logged.iter().all(|e| e == ADMIN_EMAIL), "{logged:?}");

        // The same role held by a local account (signed in with a password): same answers.
        let email = format!("{}-user@tms.test", role.as_str());
        let (_, jwt) = local_user(&env, &email, &[&name]).await?;
        check_caller(
            &env,
            &f,
            &roots,
            &format!("user-{}", role.as_str()),
            Some(&jwt),
            Some(role),
        )
        .await?;
    }
    Ok(())
}

/// Written by hand, independent of the rules table: one thing each role can and one it cannot.
#[tokio::test]
async fn rbac_spot_checks_by_hand() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let f = fixture(&env).await?;
    let cases: [(&str, &str, &str); 12] = [
        ("ADMIN", "{users(first:1){edges{cursor}}}", "ok"),
        ("ADMIN", "{verifyAuditChain{ok}}", "ok"),
        ("MAINTAINER", "{workflows(first:1){edges{cursor}}}", "ok"),
        (
            "MAINTAINER",
            "{auditLog(first:1){edges{cursor}}}",
            "FORBIDDEN",
        ),
        ("OPERATOR", "{runs(first:1){edges{cursor}}}", "ok"),
        ("OPERATOR", "{apiTokens{id}}", "FORBIDDEN"),
        ("VIEWER", "{runs(first:1){edges{cursor}}}", "ok"),
        (
            "VIEWER",
            "mutation{createApiToken(name:\"x\",role:ADMIN){token}}",
            "FORBIDDEN",
        ),
        ("AUDITOR", "{auditLog(first:1){edges{cursor}}}", "ok"),
        (
            "AUDITOR",
            "{workflows(first:1){edges{cursor}}}",
            "FORBIDDEN",
        ),
        ("MONITOR", "{me{id}}", "ok"),
        ("MONITOR", "{runs(first:1){edges{cursor}}}", "FORBIDDEN"),
    ];
    for (role, q, want) in cases {
        let (_, secret) = api_token(&env, &format!("spot-{role}"), role).await?;
        let resp = env.gql_raw(Some(&secret), q, json!({})).await?;
        let got = code(&resp).unwrap_or_else(|| "ok".into());
        assert_eq!(got, want, "{role} {q}: {resp}");
    }
    // A viewer token cannot cancel, but a maintainer's cannot either: only operators (and admins).
    let (_, maint) = api_token(&env, "spot-maint-cancel", "MAINTAINER").await?;
    let resp = env
        .gql_raw(
            Some(&maint),
            "mutation($i:ID!){cancelRun(id:$i){id}}",
            json!({"i": f.run}),
        )
        .await?;
    assert_eq!(code(&resp).as_deref(), Some("FORBIDDEN"), "{resp}");
    Ok(())
}
