//! The audit log end to end: what is recorded (and with whom, from where), that Postgres itself
//! refuses to change it, that tampering is found, and who may read it.

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, TestEnv, chain, error_code, psql};

const UA: &str = "tms-audit-test/1.0";

const LOG: &str = "query($f:Int,$a:String,$act:String,$who:ID){auditLog(first:$f,after:$a,action:$act,actorId:$who){
  edges{cursor node{seq at actor{id email} apiTokenId action resource outcome ip userAgent detail hash}}
  pageInfo{hasNextPage endCursor}}}";

/// Posts with our own user agent, as a browser or a script would.
async fn gql_ua(env: &TestEnv, token: Option<&str>, query: &str, vars: Value) -> Result<Value> {
    let mut req = reqwest::Client::new()
        .post(env.api_url())
        .header(reqwest::header::USER_AGENT, UA)
        .json(&json!({"query": query, "variables": vars}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Ok(req.send().await?.json().await?)
}

/// The audit events (newest first) matching `vars`, as the admin.
async fn events(env: &TestEnv, vars: Value) -> Result<Vec<Value>> {
    let d = env.gql(LOG, vars).await?;
    Ok(d["auditLog"]["edges"]
        .as_array()
        .ok_or_else(|| anyhow!("no edges: {d}"))?
        .iter()
        .map(|e| e["node"].clone())
        .collect())
}

async fn login(env: &TestEnv, email: &str, password: &str) -> Result<Value> {
    gql_ua(
        env,
        None,
        "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken}}",
        json!({"e": email, "p": password}),
    )
    .await
}

/// A second account holding only `viewer`, with the admin's password (no user API exists yet).
async fn viewer_token(env: &TestEnv) -> Result<(String, String)> {
    let id = psql(
        &env.database_url,
        &[
            "-c",
            "INSERT INTO users (id, email, display_name, password_hash)
                 SELECT gen_random_uuid(), 'viewer@tms.test', 'Viewer', password_hash FROM users
                 WHERE email = 'admin@tms.test' RETURNING id",
        ],
    )?;
    let id = id.lines().next().unwrap_or_default().to_string();
    psql(
        &env.database_url,
        &[
            "-c",
            &format!("INSERT INTO user_roles (user_id, role) VALUES ('{id}', 'viewer')"),
        ],
    )?;
    let v = login(env, "viewer@tms.test", ADMIN_PASSWORD).await?;
    let token = v["data"]["login"]["accessToken"]
        .as_str()
        .ok_or_else(|| anyhow!("viewer login failed: {v}"))?;
    Ok((id, token.to_string()))
}

#[tokio::test]
async fn audit_login_success_and_failure_without_the_password() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let bad = login(&env, ADMIN_EMAIL, "wrong-password-secret").await?;
    assert_eq!(error_code(&bad), "UNAUTHENTICATED", "{bad}");

    let rows = events(&env, json!({"act": "auth.login"})).await?;
    assert_eq!(rows.len(), 2, "{rows:?}");
    let (failed, ok) = (&rows[0], &rows[1]);
    assert_eq!(failed["outcome"], "FAILURE");
    assert_eq!(failed["detail"]["email"], ADMIN_EMAIL);
    assert_eq!(failed["actor"], Value::Null);
    assert_eq!(failed["ip"], "127.0.0.1");
    assert_eq!(failed["userAgent"], UA);
    assert!(
        !failed.to_string().contains("wrong-password-secret"),
        "{failed}"
    );
    assert_eq!(ok["outcome"], "SUCCESS");
    assert_eq!(ok["actor"]["email"], ADMIN_EMAIL);
    assert!(ok["seq"].as_i64() < failed["seq"].as_i64());
    Ok(())
}

#[tokio::test]
async fn audit_changes_record_actor_ip_user_agent_and_rolled_back_changes_record_nothing()
-> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let token = env.token.clone();
    let created = gql_ua(
        &env,
        token.as_deref(),
        "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}",
        json!({"i": {"name": "audited", "steps": chain(1, "true")}}),
    )
    .await?;
    let wf = created["data"]["createWorkflow"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("{created}"))?
        .to_string();
    let trig = "mutation($w:ID!){triggerRun(workflowId:$w){id}}";
    let run = gql_ua(&env, token.as_deref(), trig, json!({"w": wf})).await?;
    let run_id = run["data"]["triggerRun"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("{run}"))?;

    let missing = json!({"w": uuid::Uuid::new_v4().to_string()});
    let resp = gql_ua(&env, token.as_deref(), trig, missing).await?;
    assert_eq!(error_code(&resp), "NOT_FOUND", "{resp}");

    let created = events(&env, json!({"act": "workflow.create"})).await?;
    assert_eq!(created.len(), 1, "{created:?}");
    assert_eq!(created[0]["resource"], format!("workflow:{wf}"));
    let triggered = events(&env, json!({"act": "run.trigger"})).await?;
    assert_eq!(
        triggered.len(),
        1,
        "the failed trigger left a row: {triggered:?}"
    );
    for row in [&created[0], &triggered[0]] {
        assert_eq!(row["actor"]["email"], ADMIN_EMAIL, "{row}");
        assert_eq!(row["outcome"], "SUCCESS", "{row}");
        assert_eq!(row["ip"], "127.0.0.1", "{row}");
        assert_eq!(row["userAgent"], UA, "{row}");
        assert_eq!(row["hash"].as_str().map(str::len), Some(64), "{row}");
    }
    assert_eq!(triggered[0]["resource"], format!("run:{run_id}"));
    assert_eq!(triggered[0]["detail"]["workflowId"], wf.as_str());
    Ok(())
}

#[tokio::test]
async fn audit_viewer_is_denied_and_the_denial_is_recorded() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let (viewer_id, token) = viewer_token(&env).await?;
    let write = gql_ua(
        &env,
        Some(&token),
        "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}",
        json!({"i": {"name": "nope", "steps": chain(1, "true")}}),
    )
    .await?;
    assert_eq!(error_code(&write), "FORBIDDEN", "{write}");
    let read = gql_ua(&env, Some(&token), LOG, json!({})).await?;
    assert_eq!(error_code(&read), "FORBIDDEN", "{read}");
    let verify = gql_ua(&env, Some(&token), "{verifyAuditChain{ok}}", json!({})).await?;
    assert_eq!(error_code(&verify), "FORBIDDEN", "{verify}");

    let denied = events(&env, json!({"act": "access.denied"})).await?;
    let resources: Vec<&str> = denied
        .iter()
        .filter_map(|r| r["resource"].as_str())
        .collect();
    assert_eq!(
        resources,
        ["read:audit", "read:audit", "write:workflows"],
        "{denied:?}"
    );
    for row in &denied {
        assert_eq!(row["outcome"], "DENIED", "{row}");
        assert_eq!(row["actor"]["id"], viewer_id.as_str(), "{row}");
        assert_eq!(row["actor"]["email"], "viewer@tms.test", "{row}");
        assert_eq!(row["ip"], "127.0.0.1", "{row}");
        assert_eq!(row["userAgent"], UA, "{row}");
    }
    assert!(
        events(&env, json!({"act": "workflow.create"}))
            .await?
            .is_empty()
    );
    Ok(())
}

#[tokio::test]
async fn audit_log_is_append_only_and_a_tampered_row_breaks_the_chain() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    for i in 0..3 {
        env.create_workflow(&format!("wf-{i}"), chain(1, "true"))
            .await?;
    }
    let db = &env.database_url;
    for sql in [
        "UPDATE audit_log SET resource = 'x'",
        "DELETE FROM audit_log",
        "TRUNCATE audit_log",
    ] {
        let err = psql(db, &["-c", sql]).expect_err(sql).to_string();
        assert!(err.contains("append-only"), "{sql}: {err}");
    }
    let count = psql(db, &["-c", "SELECT count(*) FROM audit_log"])?;
    assert_eq!(count.trim(), "4", "login and three creations");

    let report = "{verifyAuditChain{ok checked firstBrokenSeq}}";
    let ok = env.gql(report, json!({})).await?;
    assert_eq!(
        ok["verifyAuditChain"],
        json!({"ok": true, "checked": 4, "firstBrokenSeq": null})
    );

    psql(
        db,
        &[
            "-c",
            "ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only",
            "-c",
            "UPDATE audit_log SET detail = '{\"name\": \"forged\"}' WHERE seq = 3",
            "-c",
            "ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only",
        ],
    )?;
    let broken = env.gql(report, json!({})).await?;
    assert_eq!(
        broken["verifyAuditChain"],
        json!({"ok": false, "checked": 3, "firstBrokenSeq": 3})
    );
    Ok(())
}

/// Appenders take the chain head in one statement each (`repo::audit::append`): many audited
/// changes at once still make one gap-free chain, every row linked to the one before it.
#[tokio::test]
async fn concurrent_audited_changes_keep_one_unbroken_chain() -> Result<()> {
    let env = std::sync::Arc::new(TestEnv::start_with(EnvOptions::api_only()).await?);
    let wf = env.create_workflow("busy", chain(1, "true")).await?;
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let (env, wf) = (env.clone(), wf.clone());
        clients.spawn(async move {
            for _ in 0..10 {
                env.trigger(&wf).await?;
            }
            anyhow::Ok(())
        });
    }
    while let Some(done) = clients.join_next().await {
        done??;
    }
    let db = &env.database_url;
    let rows = psql(
        db,
        &["-c", "SELECT count(*) || ' ' || max(seq) FROM audit_log"],
    )?;
    assert_eq!(
        rows.trim(),
        "82 82",
        "login, creation and 80 triggers, seq gap-free"
    );
    let unlinked = psql(
        db,
        &[
            "-c",
            "SELECT count(*) FROM audit_log a JOIN audit_log b ON b.seq = a.seq + 1 \
             WHERE b.prev_hash <> a.hash",
        ],
    )?;
    assert_eq!(
        unlinked.trim(),
        "0",
        "rows whose prev_hash is not their predecessor's hash"
    );
    let report = env
        .gql("{verifyAuditChain{ok checked firstBrokenSeq}}", json!({}))
        .await?;
    assert_eq!(
        report["verifyAuditChain"],
        json!({"ok": true, "checked": 82, "firstBrokenSeq": null})
    );
    Ok(())
}

#[tokio::test]
async fn audit_log_pages_and_filters_by_action_and_actor() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    for i in 0..3 {
        env.create_workflow(&format!("wf-{i}"), chain(1, "true"))
            .await?;
    }
    let me = env.gql("{me{id}}", json!({})).await?["me"]["id"].clone();

    let first = env.gql(LOG, json!({"f": 3})).await?["auditLog"].clone();
    let seqs = |c: &Value| -> Vec<i64> {
        c["edges"]
            .as_array()
            .map(|es| {
                es.iter()
                    .filter_map(|e| e["node"]["seq"].as_i64())
                    .collect()
            })
            .unwrap_or_default()
    };
    assert_eq!(seqs(&first), [4, 3, 2]);
    assert_eq!(first["pageInfo"]["hasNextPage"], true);
    let rest = env
        .gql(LOG, json!({"f": 3, "a": first["pageInfo"]["endCursor"]}))
        .await?["auditLog"]
        .clone();
    assert_eq!(seqs(&rest), [1]);
    assert_eq!(rest["pageInfo"]["hasNextPage"], false);

    let created = events(&env, json!({"act": "workflow.create", "who": me})).await?;
    assert_eq!(created.len(), 3);
    let nobody = json!({"who": uuid::Uuid::new_v4().to_string()});
    assert!(events(&env, nobody).await?.is_empty());

    let tok = env.token.as_deref();
    let bad = env.gql_raw(tok, LOG, json!({"act": "auth.nope"})).await?;
    assert_eq!(bad["errors"][0]["extensions"]["field"], "action", "{bad}");
    let big = env.gql_raw(tok, LOG, json!({"f": 101})).await?;
    assert!(big["errors"][0]["message"].as_str().is_some(), "{big}");
    assert_eq!(big["data"], Value::Null, "{big}");
    Ok(())
}
