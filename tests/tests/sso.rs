//! Single sign-on end to end against a real OpenID Connect provider (npm `oidc-provider`) on
//! loopback: the happy path with group roles, linking rules, disabled users and the browser
//! hand-off (refusals are in `sso_refusals.rs`).

use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tms_tests::idp::{self, Browser};
use tms_tests::sso::{query_param, start, users};
use tms_tests::{ADMIN_EMAIL, EnvOptions, TestEnv, error_code, psql};

#[tokio::test]
async fn sso_signs_in_maps_groups_and_guards_accounts() -> Result<()> {
    let s = start().await?;

    // /auth/login: PKCE S256, state, nonce, and a browser-bound HttpOnly SameSite=Lax cookie.
    let resp = Browser::new()
        .get(&format!("{}/auth/login", s.base))
        .await?;
    ensure!(resp.status() == 302, "login: {}", resp.status());
    let cookie = resp.headers()["set-cookie"].to_str()?.to_string();
    ensure!(cookie.starts_with("tms_sso="), "{cookie}");
    for attr in ["HttpOnly", "SameSite=Lax", "Path=/", "Max-Age="] {
        ensure!(cookie.contains(attr), "cookie lacks {attr}: {cookie}");
    }
    ensure!(
        !cookie.contains("Secure"),
        "http set-up must not mark Secure: {cookie}"
    );
    let auth = idp::location(&resp)?;
    ensure!(
        auth.starts_with(&format!("{}/auth?", s.idp.issuer)),
        "{auth}"
    );
    for p in ["state", "nonce", "code_challenge"] {
        ensure!(
            query_param(&auth, p).is_some_and(|v| v.len() >= 22),
            "{p} in {auth}"
        );
    }
    ensure!(
        query_param(&auth, "code_challenge_method").as_deref() == Some("S256"),
        "{auth}"
    );
    ensure!(auth.contains("groups"), "groups scope requested: {auth}");

    // Happy path: a new user, created with the roles of its mapped groups.
    let t = s.login("alice").await?;
    ensure!(t["expiresIn"].as_i64().is_some_and(|e| e > 0), "{t}");
    ensure!(
        t.as_object()
            .is_some_and(|o| o.contains_key("refreshToken")),
        "{t}"
    );
    let me = s
        .me(t["accessToken"].as_str().context("accessToken")?)
        .await?;
    ensure!(me["email"] == "alice@example.com", "{me}");
    ensure!(
        me["roles"] == json!(["MAINTAINER", "OPERATOR"]),
        "roles from groups: {me}"
    );
    let (outcome, detail, actor) = s.last_login_audit()?;
    ensure!(
        outcome == "success" && detail["method"] == "sso" && detail["created"] == true,
        "{detail}"
    );
    ensure!(
        actor == me["id"].as_str().unwrap_or_default(),
        "audit actor {actor} vs {me}"
    );
    let linked = psql(
        &s.env.database_url,
        &[
            "-c",
            "SELECT oidc_issuer || ' ' || oidc_subject FROM users WHERE email = 'alice@example.com'",
        ],
    )?;
    ensure!(
        linked.trim() == format!("{} alice", s.idp.issuer),
        "identity: {linked}"
    );

    // A role granted by hand survives group changes; a group removed at the IdP takes its role.
    psql(
        &s.env.database_url,
        &[
            "-c",
            "INSERT INTO user_roles (user_id, role) SELECT id, 'viewer' FROM users WHERE email = 'alice@example.com'",
        ],
    )?;
    let mut u = users();
    u["alice"]["groups"] = json!(["ops"]);
    s.idp.set_users(&u)?;
    let t = s.login("alice").await?;
    let me2 = s.me(t["accessToken"].as_str().unwrap_or_default()).await?;
    ensure!(
        me2["id"] == me["id"],
        "same account on the second login: {me2}"
    );
    ensure!(
        me2["roles"] == json!(["OPERATOR", "VIEWER"]),
        "after devs removed: {me2}"
    );
    let (_, detail, _) = s.last_login_audit()?;
    ensure!(
        detail["rolesRemoved"] == json!(["maintainer"]) && detail["created"] == false,
        "{detail}"
    );
    let revoked = psql(
        &s.env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM audit_log WHERE action = 'role.revoke' AND detail->>'group' = 'devs'",
        ],
    )?;
    ensure!(revoked.trim() == "1", "role.revoke audited once: {revoked}");
    u["alice"]["groups"] = json!([]);
    s.idp.set_users(&u)?;
    s.login("alice").await?;
    ensure!(
        s.roles_sql("alice@example.com")? == "viewer",
        "only the manual role is left"
    );

    // An unverified email never links to an existing account (here the bootstrap admin).
    let l = s.walk("mallory").await?;
    let r = s.callback(&l, true).await?;
    s.assert_refused("unverified email", r, "email_unverified")?;
    let admin = psql(
        &s.env.database_url,
        &[
            "-c",
            &format!(
                "SELECT coalesce(oidc_subject, '<none>') FROM users WHERE email = '{ADMIN_EMAIL}'"
            ),
        ],
    )?;
    ensure!(
        admin.trim() == "<none>",
        "admin account was linked: {admin}"
    );
    ensure!(
        s.roles_sql(ADMIN_EMAIL)? == "admin",
        "admin's roles untouched"
    );

    // A verified email links to the existing local account.
    let local_id = psql(
        &s.env.database_url,
        &[
            "-c",
            "INSERT INTO users (id, email, display_name) VALUES (gen_random_uuid(), 'linda@tms.test', 'Linda') RETURNING id",
        ],
    )?;
    let t = s.login("linda").await?;
    let me = s.me(t["accessToken"].as_str().unwrap_or_default()).await?;
    ensure!(
        me["id"] == local_id.lines().next().unwrap_or_default(),
        "linked account: {me}"
    );
    ensure!(
        s.last_login_audit()?.1["linked"] == true,
        "audit says linked"
    );

    // A disabled user is refused, and the refusal names the account.
    s.login("dave").await?;
    psql(
        &s.env.database_url,
        &[
            "-c",
            "UPDATE users SET disabled = true WHERE email = 'dave@example.com'",
        ],
    )?;
    let l = s.walk("dave").await?;
    let r = s.callback(&l, true).await?;
    s.assert_refused("disabled user", r, "user_disabled")?;
    ensure!(
        !s.last_login_audit()?.2.is_empty(),
        "refusal of a known user names the actor"
    );

    // Browser mode: a redirect to the front end with a one-time code, exchanged once.
    let l = s.walk("linda").await?;
    let (status, headers, _) =
        idp::callback(&s.http, &l.callback_url, l.cookie.as_deref(), false).await?;
    ensure!(status == 302, "browser callback: {status}");
    let to = headers["location"].to_str()?.to_string();
    ensure!(
        to.starts_with(&format!("{}/console/?code=", s.base)),
        "{to}"
    );
    let code = query_param(&to, "code").context("code")?;
    let exchange = |code: String| {
        let http = s.http.clone();
        let url = format!("{}/auth/exchange", s.base);
        async move {
            let r = http.post(url).json(&json!({"code": code})).send().await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let (st, v) = exchange(code.clone()).await?;
    ensure!(
        st == 200 && v["accessToken"].is_string(),
        "exchange: {st} {v}"
    );
    s.me(v["accessToken"].as_str().unwrap_or_default()).await?;
    let r = exchange(code).await?;
    s.assert_refused("second exchange", r, "handoff_invalid")?;

    // Figures: login → callback → first authorized query, as a user would go through it.
    let mut times = Vec::new();
    for _ in 0..5 {
        let t0 = Instant::now();
        let t = s.login("linda").await?;
        s.me(t["accessToken"].as_str().unwrap_or_default()).await?;
        times.push(t0.elapsed());
    }
    times.sort();
    println!(
        "SSO round trip (login → IdP → callback → me), 5 runs: median {:?}, min {:?}, max {:?}",
        times[2], times[0], times[4]
    );
    Ok(())
}

#[tokio::test]
async fn sso_is_off_without_configuration() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let r = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(10))
        .build()?
        .get(format!("http://127.0.0.1:{}/auth/login", env.api_port))
        .send()
        .await?;
    ensure!(r.status() == 404, "{}", r.status());
    let v: Value = r.json().await?;
    ensure!(error_code(&v) == "NOT_FOUND", "{v}");
    Ok(())
}
