//! API tokens and user/role management end to end: a token acts with exactly its one role and
//! is refused from the very next request once revoked, expired, or its creator disabled or
//! demoted; `lastUsedAt` is written at most once a minute; the secret is shown once and
//! appears in no audit row or log line; role changes are audited and the last admin stays one.

use anyhow::{Result, anyhow};
use serde_json::{Value, json};
use tms_tests::principals::{api_token, code, local_user, rows};
use tms_tests::{ADMIN_EMAIL, EnvOptions, TestEnv, psql};

const ME: &str = "{me{id email}}";
const TOKENS: &str = "{apiTokens{id name role createdAt expiresAt lastUsedAt}}";

async fn listed(env: &TestEnv, id: &str) -> Result<Option<Value>> {
    let d = env.gql(TOKENS, json!({})).await?;
    Ok(d["apiTokens"]
        .as_array()
        .ok_or_else(|| anyhow!("{d}"))?
        .iter()
        .find(|t| t["id"] == id)
        .cloned())
}

fn sql(env: &TestEnv, s: &str) -> Result<()> {
    psql(&env.database_url, &["-c", s]).map(|_| ())
}

#[tokio::test]
async fn api_token_lifecycle_revocation_expiry_and_no_secret_anywhere() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let created = env
        .gql(
            "mutation{createApiToken(name:\"poller\",role:MONITOR,expiresInDays:7){
               token apiToken{id name role createdAt expiresAt lastUsedAt}}}",
            json!({}),
        )
        .await?;
    let p = &created["createApiToken"];
    let secret = p["token"].as_str().unwrap_or_default().to_string();
    let id = p["apiToken"]["id"].as_str().unwrap_or_default().to_string();
    assert!(secret.starts_with("tms_") && secret.len() >= 4 + 43, "{p}");
    assert_eq!(p["apiToken"]["role"], "MONITOR");
    assert_eq!(p["apiToken"]["lastUsedAt"], Value::Null);
    assert!(p["apiToken"]["expiresAt"].is_string(), "{p}");
    // Stored only as its SHA-256.
    let stored = rows(
        &env,
        &format!("SELECT token_hash FROM api_tokens WHERE id = '{id}'"),
    )?;
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].len(), 64);
    assert!(!stored[0].contains(&secret[4..]), "{stored:?}");

    // It acts as its creator with exactly its role, and audits as the token.
    let me = env.gql_raw(Some(&secret), ME, json!({})).await?;
    assert_eq!(me["data"]["me"]["email"], ADMIN_EMAIL, "{me}");
    let refused = env.gql_raw(Some(&secret), TOKENS, json!({})).await?;
    assert_eq!(code(&refused).as_deref(), Some("FORBIDDEN"), "{refused}");
    let denied = rows(
        &env,
        &format!(
            "SELECT actor_email || ' ' || outcome FROM audit_log
             WHERE action = 'access.denied' AND api_token_id = '{id}'"
        ),
    )?;
    assert_eq!(denied, [format!("{ADMIN_EMAIL} denied")]);

    // lastUsedAt: written on first use, then not again within a minute, then again after.
    let first = listed(&env, &id)
        .await?
        .ok_or_else(|| anyhow!("not listed"))?;
    let used = first["lastUsedAt"].as_str().map(str::to_string);
    assert!(used.is_some(), "{first}");
    sql(
        &env,
        &format!(
            "UPDATE api_tokens SET last_used_at = now() - interval '30 seconds' WHERE id = '{id}'"
        ),
    )?;
    let before = rows(
        &env,
        &format!("SELECT last_used_at FROM api_tokens WHERE id = '{id}'"),
    )?;
    env.gql_raw(Some(&secret), ME, json!({})).await?;
    let after = rows(
        &env,
        &format!("SELECT last_used_at FROM api_tokens WHERE id = '{id}'"),
    )?;
    assert_eq!(before, after, "written again within a minute");
    sql(
        &env,
        &format!(
            "UPDATE api_tokens SET last_used_at = now() - interval '2 minutes' WHERE id = '{id}'"
        ),
    )?;
    let stale = rows(
        &env,
        &format!("SELECT last_used_at FROM api_tokens WHERE id = '{id}'"),
    )?;
    env.gql_raw(Some(&secret), ME, json!({})).await?;
    let fresh = rows(
        &env,
        &format!("SELECT last_used_at FROM api_tokens WHERE id = '{id}'"),
    )?;
    assert_ne!(stale, fresh, "not refreshed after a minute");

    // Revoked: refused on the very next request, gone from the list, audited once.
    let r = env
        .gql("mutation($i:ID!){revokeApiToken(id:$i)}", json!({"i": id}))
        .await?;
    assert_eq!(r["revokeApiToken"], true);
    let after_revoke = env.gql_raw(Some(&secret), ME, json!({})).await?;
    assert_eq!(
        code(&after_revoke).as_deref(),
        Some("UNAUTHENTICATED"),
        "{after_revoke}"
    );
    assert!(listed(&env, &id).await?.is_none());
    let again = env
        .gql("mutation($i:ID!){revokeApiToken(id:$i)}", json!({"i": id}))
        .await?;
    assert_eq!(again["revokeApiToken"], false);
    let unknown = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($i:ID!){revokeApiToken(id:$i)}",
            json!({"i": uuid::Uuid::new_v4().to_string()}),
        )
        .await?;
    assert_eq!(code(&unknown).as_deref(), Some("NOT_FOUND"), "{unknown}");

    // Expired: refused.
    let (exp_id, exp_secret) = api_token(&env, "short-lived", "VIEWER").await?;
    assert!(code(&env.gql_raw(Some(&exp_secret), ME, json!({})).await?).is_none());
    sql(
        &env,
        &format!(
            "UPDATE api_tokens SET expires_at = now() - interval '1 second' WHERE id = '{exp_id}'"
        ),
    )?;
    let expired = env.gql_raw(Some(&exp_secret), ME, json!({})).await?;
    assert_eq!(
        code(&expired).as_deref(),
        Some("UNAUTHENTICATED"),
        "{expired}"
    );

    // A guessed token with the right prefix is refused like any bad token.
    let forged = env
        .gql_raw(
            Some("tms_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA"),
            ME,
            json!({}),
        )
        .await?;
    assert_eq!(
        code(&forged).as_deref(),
        Some("UNAUTHENTICATED"),
        "{forged}"
    );

    // Audited create/revoke, and the secrets appear in no audit row and no log line.
    let actions = rows(
        &env,
        &format!(
            "SELECT action || ' ' || coalesce(actor_email, '') FROM audit_log WHERE resource = 'api_token:{id}' ORDER BY seq"
        ),
    )?;
    assert_eq!(
        actions,
        [
            format!("api_token.create {ADMIN_EMAIL}"),
            format!("api_token.revoke {ADMIN_EMAIL}")
        ]
    );
    let all = rows(&env, "SELECT a::text FROM audit_log a")?.join("\n");
    let log = env.api.as_ref().map(|p| p.log_text()).unwrap_or_default();
    for s in [&secret, &exp_secret] {
        assert!(!all.contains(&s[4..]), "secret in the audit log");
        assert!(!log.contains(&s[4..]), "secret in the api log");
    }
    Ok(())
}

#[tokio::test]
async fn api_token_validation_and_creator_state() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let make =
        "mutation($n:String!,$d:Int){createApiToken(name:$n,role:VIEWER,expiresInDays:$d){token}}";
    for (name, days, field) in [
        ("", Some(1), "name"),
        (&"x".repeat(101) as &str, None, "name"),
        ("ok", Some(0), "expiresInDays"),
        ("ok", Some(3651), "expiresInDays"),
    ] {
        let r = env
            .gql_raw(env.token.as_deref(), make, json!({"n": name, "d": days}))
            .await?;
        assert_eq!(code(&r).as_deref(), Some("VALIDATION"), "{r}");
        assert_eq!(r["errors"][0]["extensions"]["field"], field, "{r}");
    }

    // Tokens made by a second admin stop when that admin is demoted or disabled.
    let (admin2, jwt2) = local_user(&env, "admin2@tms.test", &["ADMIN"]).await?;
    let mut secrets = Vec::new();
    for n in ["by-admin2-a", "by-admin2-b"] {
        let r = env
            .gql_raw(
                Some(&jwt2),
                "mutation($n:String!){createApiToken(name:$n,role:VIEWER){token}}",
                json!({"n": n}),
            )
            .await?;
        secrets.push(
            r["data"]["createApiToken"]["token"]
                .as_str()
                .ok_or_else(|| anyhow!("{r}"))?
                .to_string(),
        );
    }
    assert!(code(&env.gql_raw(Some(&secrets[0]), ME, json!({})).await?).is_none());
    env.gql(
        "mutation($u:ID!){revokeRole(userId:$u,role:ADMIN){id}}",
        json!({"u": admin2}),
    )
    .await?;
    let demoted = env.gql_raw(Some(&secrets[0]), ME, json!({})).await?;
    assert_eq!(
        code(&demoted).as_deref(),
        Some("UNAUTHENTICATED"),
        "{demoted}"
    );
    env.gql(
        "mutation($u:ID!){assignRole(userId:$u,role:ADMIN){id}}",
        json!({"u": admin2}),
    )
    .await?;
    assert!(code(&env.gql_raw(Some(&secrets[1]), ME, json!({})).await?).is_none());
    sql(
        &env,
        &format!("UPDATE users SET disabled = true WHERE id = '{admin2}'"),
    )?;
    let disabled = env.gql_raw(Some(&secrets[1]), ME, json!({})).await?;
    assert_eq!(
        code(&disabled).as_deref(),
        Some("UNAUTHENTICATED"),
        "{disabled}"
    );
    Ok(())
}

#[tokio::test]
async fn users_and_roles_are_managed_by_admins_and_audited() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let admin_id = env.gql("{me{id}}", json!({})).await?["me"]["id"]
        .as_str()
        .unwrap_or_default()
        .to_string();

    // The last enabled admin keeps the role.
    let last = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($u:ID!){revokeRole(userId:$u,role:ADMIN){id}}",
            json!({"u": admin_id}),
        )
        .await?;
    assert_eq!(code(&last).as_deref(), Some("CONFLICT"), "{last}");
    let unknown = env
        .gql_raw(
            env.token.as_deref(),
            "mutation($u:ID!){assignRole(userId:$u,role:VIEWER){id}}",
            json!({"u": uuid::Uuid::new_v4().to_string()}),
        )
        .await?;
    assert_eq!(code(&unknown).as_deref(), Some("NOT_FOUND"), "{unknown}");

    let (uid, _) = local_user(&env, "ops@tms.test", &["OPERATOR", "VIEWER"]).await?;
    let r = env
        .gql(
            "mutation($u:ID!){revokeRole(userId:$u,role:VIEWER){id name displayName disabled roles}}",
            json!({"u": uid}),
        )
        .await?;
    assert_eq!(r["revokeRole"]["roles"], json!(["OPERATOR"]), "{r}");
    assert_eq!(r["revokeRole"]["disabled"], false);
    assert_eq!(r["revokeRole"]["name"], r["revokeRole"]["displayName"]);
    let audit = rows(
        &env,
        &format!(
            "SELECT action || ' ' || (detail->>'role') || ' ' || actor_email FROM audit_log
             WHERE resource = 'user:{uid}' ORDER BY seq"
        ),
    )?;
    assert_eq!(
        audit,
        [
            format!("role.assign operator {ADMIN_EMAIL}"),
            format!("role.assign viewer {ADMIN_EMAIL}"),
            format!("role.revoke viewer {ADMIN_EMAIL}"),
        ]
    );

    // Relay pagination over every user, two at a time.
    let (admin2, admin2_jwt) = local_user(&env, "admin2@tms.test", &["ADMIN"]).await?;
    let mut seen = Vec::new();
    let mut after: Option<String> = None;
    loop {
        let d = env
            .gql(
                "query($a:String){users(first:2,after:$a){edges{cursor node{id email}}
                   pageInfo{hasNextPage endCursor}}}",
                json!({"a": after}),
            )
            .await?;
        let page = &d["users"];
        for e in page["edges"].as_array().ok_or_else(|| anyhow!("{d}"))? {
            seen.push(e["node"]["id"].as_str().unwrap_or_default().to_string());
        }
        if page["pageInfo"]["hasNextPage"] != true {
            break;
        }
        after = page["pageInfo"]["endCursor"].as_str().map(str::to_string);
    }
    let mut all = rows(&env, "SELECT id::text FROM users ORDER BY id")?;
    all.sort();
    let mut sorted = seen.clone();
    sorted.sort();
    assert_eq!(sorted, all, "pages: {seen:?}");
    assert_eq!(seen.len(), 3);

    // With a second enabled admin, the first may step down, and then manages nothing.
    env.gql(
        "mutation($u:ID!){revokeRole(userId:$u,role:ADMIN){id}}",
        json!({"u": admin_id}),
    )
    .await?;
    let gone = env
        .gql_raw(env.token.as_deref(), "{users{edges{cursor}}}", json!({}))
        .await?;
    assert_eq!(code(&gone).as_deref(), Some("FORBIDDEN"), "{gone}");
    let back = env
        .gql_raw(
            Some(&admin2_jwt),
            "mutation($u:ID!){assignRole(userId:$u,role:ADMIN){id roles}}",
            json!({"u": admin_id}),
        )
        .await?;
    assert_eq!(
        back["data"]["assignRole"]["roles"],
        json!(["ADMIN"]),
        "{back}"
    );
    assert!(!admin2.is_empty());
    Ok(())
}
