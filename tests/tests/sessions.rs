//! Sessions end to end against the real api: which access tokens are accepted, key rotation,
//! refresh-token rotation and re-use, the concurrent-refresh race, expiry, logout and disabling
//! users or revoking API tokens (sockets closed with 4401), and login throttling — each refusal with its audit row
//! where the action is audited.

use std::time::{Duration, Instant};

use anyhow::{Result, bail, ensure};
use serde_json::{Value, json};
use tms_tests::principals::api_token;
use tms_tests::sessions::{
    LOGOUT, add_user, audit_rows, claims, decode, hs256, kid_of, live_refresh_tokens, login, me,
    now, our_header, pair, refresh, rs256,
};
use tms_tests::ws::{GqlWs, PROGRESS_QUERY, WsEvent};
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, JWT_SECRET, TestEnv, chain, error_code};

const CLOSE_SESSION_ENDED: u16 = 4401;

fn opts(vars: &[(&str, &str)]) -> EnvOptions {
    EnvOptions {
        api_env: vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..EnvOptions::api_only()
    }
}

async fn admin_id(env: &TestEnv) -> Result<String> {
    let d = env.gql("{ me { id } }", json!({})).await?;
    Ok(d["me"]["id"].as_str().unwrap_or_default().to_string())
}

fn fixture(name: &str) -> String {
    format!("{}/fixtures/{name}", env!("CARGO_MANIFEST_DIR"))
}

#[tokio::test]
async fn only_our_current_access_tokens_are_accepted() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let id = admin_id(&env).await?;
    let body = claims(&id, ADMIN_EMAIL, 600);
    let header = our_header(JWT_SECRET);

    // The control: a token forged exactly as the api signs is accepted, so every refusal
    // below is about the one thing changed.
    let good = hs256(&header, &body, JWT_SECRET.as_bytes());
    assert_eq!(me(&env, &good).await?, Ok(ADMIN_EMAIL.to_string()));

    let (real_header, _) = decode(env.token.as_deref().unwrap_or_default())?;
    assert_eq!(real_header["typ"], "at+jwt", "{real_header}");
    assert_eq!(real_header["kid"], kid_of(JWT_SECRET), "{real_header}");

    let with = |k: &str, v: Value| {
        let mut b = body.clone();
        b[k] = v;
        b
    };
    let without = |k: &str| {
        let mut b = body.clone();
        b.as_object_mut().map(|m| m.remove(k));
        b
    };
    let key = JWT_SECRET.as_bytes();
    let pub_pem = std::fs::read(fixture("test-only-rsa-public.pem"))?;
    let attacker = b"attacker-secret-attacker-secret-attacker";
    let tampered = {
        let parts: Vec<&str> = good.split('.').collect();
        let forged = hs256(&header, &with("email", json!("evil@x")), b"unknown-key");
        let forged_body = forged.split('.').nth(1).unwrap_or_default().to_string();
        format!("{}.{forged_body}.{}", parts[0], parts[2])
    };
    let mut cases: Vec<(&str, String)> = vec![
        ("payload tampered, signature kept", tampered),
        (
            "typ JWT",
            hs256(
                &json!({"alg": "HS256", "typ": "JWT", "kid": kid_of(JWT_SECRET)}),
                &body,
                key,
            ),
        ),
        (
            "no typ",
            hs256(
                &json!({"alg": "HS256", "kid": kid_of(JWT_SECRET)}),
                &body,
                key,
            ),
        ),
        (
            "wrong aud",
            hs256(&header, &with("aud", json!("other")), key),
        ),
        (
            "wrong iss",
            hs256(&header, &with("iss", json!("other")), key),
        ),
        (
            "expired",
            hs256(&header, &with("exp", json!(now() - 60)), key),
        ),
        (
            "future nbf",
            hs256(&header, &with("nbf", json!(now() + 600)), key),
        ),
        ("no jti", hs256(&header, &without("jti"), key)),
        ("no iat", hs256(&header, &without("iat"), key)),
        ("no exp", hs256(&header, &without("exp"), key)),
        (
            "unknown kid",
            hs256(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": "0123456789abcdef"}),
                &body,
                key,
            ),
        ),
        (
            "alg none",
            format!(
                "{}.",
                hs256(
                    &json!({"alg": "none", "typ": "at+jwt", "kid": kid_of(JWT_SECRET)}),
                    &body,
                    key
                )
                .rsplit_once('.')
                .map(|(a, _)| a.to_string())
                .unwrap_or_default()
            ),
        ),
        (
            "RS256 signed with a private key, our kid",
            rs256(
                &json!({"alg": "RS256", "typ": "at+jwt", "kid": kid_of(JWT_SECRET)}),
                &body,
                &fixture("test-only-rsa-private.pem"),
            )?,
        ),
        (
            "HS256 keyed with an RSA public key",
            hs256(&header, &body, &pub_pem),
        ),
        (
            "jwk header carrying the attacker's key",
            hs256(
                &json!({"alg": "HS256", "typ": "at+jwt", "kid": kid_of(JWT_SECRET),
                        "jwk": {"kty": "oct", "k": "YXR0YWNrZXI"}}),
                &body,
                attacker,
            ),
        ),
    ];
    for h in ["jku", "x5u"] {
        let mut hd = header.clone();
        hd[h] = json!("http://127.0.0.1:9/keys");
        cases.push((h, hs256(&hd, &body, attacker)));
    }
    for (what, token) in &cases {
        assert_eq!(
            me(&env, token).await?,
            Err("UNAUTHENTICATED".to_string()),
            "{what} was accepted"
        );
    }
    // `jku`/`jwk`/`x5u` are ignored, not fatal: with our key the token stands on our key alone.
    let mut hd = header.clone();
    hd["jku"] = json!("http://127.0.0.1:9/keys");
    hd["x5u"] = json!("http://127.0.0.1:9/x5u");
    assert_eq!(
        me(&env, &hs256(&hd, &body, key)).await?,
        Ok(ADMIN_EMAIL.to_string())
    );
    Ok(())
}

#[tokio::test]
async fn rotated_keys_verify_old_tokens_and_sign_with_the_new_one() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let old = env.token.clone().unwrap_or_default();
    let new_secret = "rotated-secret-rotated-secret-rotated-01";
    env.set_api_env(vec![
        ("TMS_JWT_SECRET".into(), new_secret.into()),
        ("TMS_JWT_KEYS".into(), JWT_SECRET.into()),
    ]);
    env.restart_api().await?;
    assert_eq!(
        me(&env, &old).await?,
        Ok(ADMIN_EMAIL.to_string()),
        "a token of the previous key must verify until it expires"
    );
    let (fresh, _) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let (h, _) = decode(&fresh)?;
    assert_eq!(
        h["kid"],
        kid_of(new_secret),
        "new tokens carry the new kid: {h}"
    );
    assert_eq!(me(&env, &fresh).await?, Ok(ADMIN_EMAIL.to_string()));

    // The old key retired: its tokens stop, the new key's go on.
    env.set_api_env(vec![("TMS_JWT_SECRET".into(), new_secret.into())]);
    env.restart_api().await?;
    assert_eq!(me(&env, &old).await?, Err("UNAUTHENTICATED".to_string()));
    assert_eq!(me(&env, &fresh).await?, Ok(ADMIN_EMAIL.to_string()));
    Ok(())
}

#[tokio::test]
async fn refresh_rotates_and_reuse_revokes_the_whole_family() -> Result<()> {
    let env = TestEnv::start_with(opts(&[("TMS_REFRESH_REUSE_GRACE_SECONDS", "0")])).await?;
    let id = admin_id(&env).await?;
    let (a1, r1) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    ensure!(r1.len() >= 40, "refresh token too short: {r1}");
    let stored = tms_tests::psql(
        &env.database_url,
        &["-c", "SELECT token_hash FROM refresh_tokens"],
    )?;
    assert!(
        !stored.contains(&r1),
        "refresh tokens must be stored hashed"
    );

    let v = refresh(&env, &r1).await?;
    let (a2, r2) = pair(&v["data"]["refreshToken"]).ok_or_else(|| anyhow::anyhow!("{v}"))?;
    assert_ne!(r1, r2);
    assert_ne!(a1, a2);
    assert_eq!(me(&env, &a2).await?, Ok(ADMIN_EMAIL.to_string()));
    assert_eq!(
        live_refresh_tokens(&env, &id)?,
        1 + 1,
        "r2 and the harness's own session"
    );
    let ok_rows = audit_rows(&env, "auth.refresh")?;
    assert!(
        ok_rows.iter().any(|r| r.starts_with("success|session:")),
        "{ok_rows:?}"
    );

    // r1 again: re-use. Refused, the family revoked (r2 and its access token too), audited.
    let v = refresh(&env, &r1).await?;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    let message = v["errors"][0]["message"].clone();
    let reuse = audit_rows(&env, "auth.token_reuse")?;
    assert_eq!(reuse.len(), 1, "{reuse:?}");
    assert!(
        reuse[0].starts_with("failure|session:") && reuse[0].contains(&id),
        "{reuse:?}"
    );
    let v = refresh(&env, &r2).await?;
    assert_eq!(
        error_code(&v),
        "UNAUTHENTICATED",
        "the newest token must die too: {v}"
    );
    assert_eq!(
        v["errors"][0]["message"], message,
        "refusals must not say why"
    );
    assert_eq!(me(&env, &a2).await?, Err("UNAUTHENTICATED".to_string()));
    let failures = audit_rows(&env, "auth.refresh")?;
    assert!(
        failures
            .iter()
            .any(|r| r.starts_with("failure|") && r.contains("session_revoked")),
        "{failures:?}"
    );
    // Unknown tokens look the same.
    let v = refresh(&env, "tmsr_not-a-token").await?;
    assert_eq!(v["errors"][0]["message"], message, "{v}");
    Ok(())
}

#[tokio::test]
async fn concurrent_refreshes_with_one_token_yield_one_live_token() -> Result<()> {
    let env = TestEnv::start_with(opts(&[("TMS_REFRESH_REUSE_GRACE_SECONDS", "60")])).await?;
    let email = "racer@tms.test";
    let id = add_user(&env, email, "viewer")?;
    let (_, r) = login(&env, email, ADMIN_PASSWORD).await?;
    let calls = (0..8).map(|_| refresh(&env, &r));
    let results = futures::future::join_all(calls).await;
    let mut winners = Vec::new();
    for v in results {
        let v = v?;
        match pair(&v["data"]["refreshToken"]) {
            Some(p) => winners.push(p),
            None => assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}"),
        }
    }
    assert_eq!(
        winners.len(),
        1,
        "exactly one refresh may succeed: {winners:?}"
    );
    assert_eq!(live_refresh_tokens(&env, &id)?, 1);
    // The winner's token is the live one, and the losers did not revoke the family.
    let v = refresh(&env, &winners[0].1).await?;
    assert!(pair(&v["data"]["refreshToken"]).is_some(), "{v}");
    let refused = audit_rows(&env, "auth.refresh")?
        .into_iter()
        .filter(|r| r.contains("concurrent_rotation"))
        .count();
    assert_eq!(refused, 7);
    Ok(())
}

#[tokio::test]
async fn an_idle_refresh_token_expires() -> Result<()> {
    let env = TestEnv::start_with(opts(&[("TMS_REFRESH_IDLE_TTL_SECONDS", "2")])).await?;
    let (_, r) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let h = tms_tests::sessions::hash_hex(&r);
    // Waiting on the clock: poll until Postgres itself says the token is past its idle expiry.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let past = tms_tests::psql(
            &env.database_url,
            &[
                "-c",
                &format!(
                    "SELECT idle_expires_at < now() FROM refresh_tokens WHERE token_hash = '{h}'"
                ),
            ],
        )?;
        if past.trim() == "t" {
            break;
        }
        ensure!(Instant::now() < deadline, "token never expired: {past}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let v = refresh(&env, &r).await?;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    let rows = audit_rows(&env, "auth.refresh")?;
    assert!(
        rows.iter()
            .any(|r| r.starts_with("failure|") && r.contains("expired")),
        "{rows:?}"
    );
    Ok(())
}

/// A queued run (no worker) whose progress subscription stays open until something ends it.
async fn open_run(env: &TestEnv) -> Result<String> {
    let wf = env.create_workflow("held", chain(1, "true")).await?;
    env.trigger(&wf).await
}

async fn subscribed(env: &TestEnv, token: &str, run: &str) -> Result<GqlWs> {
    let mut ws = GqlWs::connect(env.api_port, token).await?;
    ws.subscribe("p", PROGRESS_QUERY, json!({"r": run})).await?;
    // The snapshot shows the subscription is live.
    match ws.next(Duration::from_secs(20)).await? {
        WsEvent::Next(d) if d["runProgress"]["kind"] == "SNAPSHOT" => Ok(ws),
        other => bail!("expected the run's snapshot, got {other:?}"),
    }
}

/// Waits for the server to close the socket; returns the close code.
async fn closed(ws: &mut GqlWs, within: Duration) -> Result<Option<u16>> {
    let deadline = Instant::now() + within;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            bail!("socket still open after {within:?}");
        }
        match ws.next(left).await {
            Ok(WsEvent::Closed(code, _)) => return Ok(code),
            Ok(_) => {}
            Err(e) => bail!("socket: {e}"),
        }
    }
}

#[tokio::test]
async fn logout_ends_the_session_and_closes_its_subscription() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let run = open_run(&env).await?;
    let (a, r) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let (other_a, _) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let mut ws = subscribed(&env, &a, &run).await?;
    let mut other = subscribed(&env, &other_a, &run).await?;

    let v = env.gql_raw(None, LOGOUT, json!({"r": r})).await?;
    assert_eq!(v["data"]["logout"], true, "{v}");
    assert_eq!(
        closed(&mut ws, Duration::from_secs(20)).await?,
        Some(CLOSE_SESSION_ENDED)
    );
    assert_eq!(me(&env, &a).await?, Err("UNAUTHENTICATED".to_string()));
    let v = refresh(&env, &r).await?;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    let rows = audit_rows(&env, "auth.logout")?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(rows[0].starts_with("success|session:"), "{rows:?}");
    // A second logout with the same token finds no live session.
    let v = env.gql_raw(None, LOGOUT, json!({"r": r})).await?;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    assert_eq!(audit_rows(&env, "auth.logout")?.len(), 1);

    // Another session of the same user is untouched: its socket still answers.
    other.barrier().await?;
    assert_eq!(me(&env, &other_a).await?, Ok(ADMIN_EMAIL.to_string()));
    Ok(())
}

#[tokio::test]
async fn revoking_an_api_token_closes_its_sockets_and_no_others() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let run = open_run(&env).await?;
    let (revoked_id, revoked) = api_token(&env, "to-revoke", "VIEWER").await?;
    let (_, kept) = api_token(&env, "kept", "VIEWER").await?;
    let (admin, _) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let mut ws = subscribed(&env, &revoked, &run).await?;
    let mut kept_ws = subscribed(&env, &kept, &run).await?;
    let mut admin_ws = subscribed(&env, &admin, &run).await?;

    let v = env
        .gql(
            "mutation($i:ID!){revokeApiToken(id:$i)}",
            json!({"i": revoked_id}),
        )
        .await?;
    assert_eq!(v["revokeApiToken"], true, "{v}");
    assert_eq!(
        closed(&mut ws, Duration::from_secs(20)).await?,
        Some(CLOSE_SESSION_ENDED)
    );
    // The creator's other token and own session are untouched: their sockets still answer.
    kept_ws.barrier().await?;
    admin_ws.barrier().await?;
    assert_eq!(
        me(&env, &revoked).await?,
        Err("UNAUTHENTICATED".to_string())
    );
    Ok(())
}

#[tokio::test]
async fn a_subscription_ends_when_its_access_token_expires() -> Result<()> {
    let mut env = TestEnv::start_with(opts(&[("TMS_ACCESS_TOKEN_TTL_SECONDS", "6")])).await?;
    // Every call with a fresh token: they live 6 s.
    env.login_admin().await?;
    let wf = env.create_workflow("held", chain(1, "true")).await?;
    env.login_admin().await?;
    let run = env.trigger(&wf).await?;
    let (a, _) = login(&env, ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    let (_, body) = decode(&a)?;
    let exp = body["exp"].as_i64().unwrap_or_default();
    let mut ws = subscribed(&env, &a, &run).await?;
    assert_eq!(
        closed(&mut ws, Duration::from_secs(30)).await?,
        Some(CLOSE_SESSION_ENDED)
    );
    assert!(
        now() >= exp - 1,
        "closed before the token expired ({} < {exp})",
        now()
    );
    Ok(())
}

#[tokio::test]
async fn disabling_a_user_refuses_their_tokens_and_closes_their_subscriptions() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let run = open_run(&env).await?;
    let email = "viewer@tms.test";
    let id = add_user(&env, email, "viewer")?;
    let (a, r) = login(&env, email, ADMIN_PASSWORD).await?;
    let mut ws = subscribed(&env, &a, &run).await?;

    const DISABLE: &str =
        "mutation($u:ID!,$d:Boolean!){setUserDisabled(userId:$u,disabled:$d){id email disabled}}";
    // Only admins may; the refusal is audited.
    let v = env
        .gql_raw(Some(&a), DISABLE, json!({"u": id, "d": true}))
        .await?;
    assert_eq!(error_code(&v), "FORBIDDEN", "{v}");
    assert!(!audit_rows(&env, "access.denied")?.is_empty());
    let admin = admin_id(&env).await?;
    let v = env
        .gql_raw(
            env.token.as_deref(),
            DISABLE,
            json!({"u": admin, "d": true}),
        )
        .await?;
    assert_eq!(
        error_code(&v),
        "VALIDATION",
        "an admin must not lock themselves out: {v}"
    );

    let d = env.gql(DISABLE, json!({"u": id, "d": true})).await?;
    assert_eq!(d["setUserDisabled"]["disabled"], true, "{d}");
    assert_eq!(
        closed(&mut ws, Duration::from_secs(20)).await?,
        Some(CLOSE_SESSION_ENDED)
    );
    assert_eq!(me(&env, &a).await?, Err("UNAUTHENTICATED".to_string()));
    assert_eq!(error_code(&refresh(&env, &r).await?), "UNAUTHENTICATED");
    assert_eq!(live_refresh_tokens(&env, &id)?, 0);
    let v = env
        .gql_raw(
            None,
            tms_tests::sessions::LOGIN,
            json!({"e": email, "p": ADMIN_PASSWORD}),
        )
        .await?;
    assert_eq!(error_code(&v), "UNAUTHENTICATED", "{v}");
    let rows = audit_rows(&env, "user.disable")?;
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert!(
        rows[0].starts_with(&format!("success|user:{id}|{admin}|")),
        "{rows:?}"
    );

    // Re-enabled, the account signs in again.
    env.gql(DISABLE, json!({"u": id, "d": false})).await?;
    login(&env, email, ADMIN_PASSWORD).await?;
    Ok(())
}

#[tokio::test]
async fn repeated_login_failures_are_rate_limited_per_account_and_address() -> Result<()> {
    let env = TestEnv::start_with(opts(&[("TMS_LOGIN_FAILURE_LIMIT", "3")])).await?;
    let attempt = |email: &'static str, pw: &'static str| {
        let env = &env;
        async move {
            env.gql_raw(
                None,
                tms_tests::sessions::LOGIN,
                json!({"e": email, "p": pw}),
            )
            .await
        }
    };
    // A success resets the account's count: 2 failures, success, 2 failures, success.
    for _ in 0..2 {
        for _ in 0..2 {
            assert_eq!(
                error_code(&attempt(ADMIN_EMAIL, "wrong").await?),
                "UNAUTHENTICATED"
            );
        }
        let v = attempt(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
        assert!(v["data"]["login"]["accessToken"].is_string(), "{v}");
    }
    // The third failure locks the account: even the right password is refused now.
    for _ in 0..3 {
        assert_eq!(
            error_code(&attempt(ADMIN_EMAIL, "wrong").await?),
            "UNAUTHENTICATED"
        );
    }
    let v = attempt(ADMIN_EMAIL, ADMIN_PASSWORD).await?;
    assert_eq!(error_code(&v), "RATE_LIMITED", "{v}");
    let retry = v["errors"][0]["extensions"]["retryAfterSeconds"]
        .as_u64()
        .unwrap_or(0);
    assert!((1..=900).contains(&retry), "retryAfterSeconds {retry}: {v}");
    let rows = audit_rows(&env, "auth.login")?;
    let limited: Vec<&String> = rows.iter().filter(|r| r.contains("rate_limited")).collect();
    assert_eq!(limited.len(), 1, "{rows:?}");
    assert!(
        limited[0].starts_with("failure|") && limited[0].contains(ADMIN_EMAIL),
        "{limited:?}"
    );

    // Per account: another account from the same address is still judged on its password.
    assert_eq!(
        error_code(&attempt("someone@tms.test", "wrong").await?),
        "UNAUTHENTICATED"
    );
    // Per address: 4 × 3 failures from one address lock it for every account. 8 failures so
    // far (refusals do not count); 4 more on distinct accounts, none reaching its own limit.
    for e in ["a@x.test", "b@x.test", "c@x.test", "d@x.test"] {
        assert_eq!(error_code(&attempt(e, "wrong").await?), "UNAUTHENTICATED");
    }
    let v = attempt("fresh@x.test", "wrong").await?;
    assert_eq!(error_code(&v), "RATE_LIMITED", "{v}");
    Ok(())
}
