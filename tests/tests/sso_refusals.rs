//! SSO refusals, each asserted with its `auth.login` audit row: missing, forged, foreign,
//! replayed and expired state; replayed code; RFC 9207 `iss`; provider errors; and ID tokens
//! rewritten by a hook on the real provider's token endpoint (aud, iss, nonce, exp, alg none,
//! HS/RS confusion, unknown kid).

use anyhow::{Context, Result, anyhow, ensure};
use tms_tests::idp::Login;
use tms_tests::psql;
use tms_tests::sso::{query_param, start, with_param};

#[tokio::test]
async fn sso_refuses_bad_state_iss_code_and_provider_errors() -> Result<()> {
    let s = start().await?;

    let l = s.walk("alice").await?;
    let r = s.callback(&l, false).await?;
    s.assert_refused("missing cookie", r, "cookie_missing")?;

    let forged = Login {
        callback_url: with_param(&l.callback_url, "state", Some("forged-state-forged-state")),
        ..l.clone()
    };
    let r = s.callback(&forged, true).await?;
    s.assert_refused("forged state", r, "state_unknown")?;

    // Another browser's cookie with this login's state: a login CSRF attempt.
    let other = s.walk("alice").await?;
    let swapped = Login {
        cookie: other.cookie.clone(),
        ..l.clone()
    };
    let r = s.callback(&swapped, true).await?;
    s.assert_refused("cookie of another login", r, "state_mismatch")?;

    // The genuine pair works once; the second use of the state is a replay.
    let (st, v) = s.callback(&l, true).await?;
    ensure!(st == 200, "genuine callback: {st} {v}");
    let r = s.callback(&l, true).await?;
    s.assert_refused("replayed state", r, "state_replayed")?;

    // A used code, presented again with a fresh, valid login: the provider refuses it.
    let used_code = query_param(&l.callback_url, "code").context("code")?;
    let fresh = s.walk("alice").await?;
    let replay = Login {
        callback_url: with_param(&fresh.callback_url, "code", Some(&used_code)),
        ..fresh
    };
    let r = s.callback(&replay, true).await?;
    let d = s.assert_refused("replayed code", r, "code_rejected")?;
    ensure!(d["idpError"] == "invalid_grant", "{d}");
    ensure!(
        !d.to_string().contains(&used_code),
        "code in audit detail: {d}"
    );

    // RFC 9207: a different `iss`, or none although the provider promises it.
    let l = s.walk("alice").await?;
    let wrong = Login {
        callback_url: with_param(
            &l.callback_url,
            "iss",
            Some("http%3A%2F%2F127.0.0.1%3A9%2Fevil"),
        ),
        ..l
    };
    let r = s.callback(&wrong, true).await?;
    s.assert_refused("wrong iss", r, "iss_mismatch")?;
    let l = s.walk("alice").await?;
    let missing = Login {
        callback_url: with_param(&l.callback_url, "iss", None),
        ..l
    };
    let r = s.callback(&missing, true).await?;
    s.assert_refused("missing iss", r, "iss_missing")?;

    // The user refuses at the provider: error=access_denied comes back with the state.
    let l = s.walk("deny").await?;
    ensure!(
        l.callback_url.contains("error=access_denied"),
        "{}",
        l.callback_url
    );
    let r = s.callback(&l, true).await?;
    let d = s.assert_refused("access_denied", r, "idp_error")?;
    ensure!(d["idpError"] == "access_denied", "{d}");

    // A login finished after its expiry.
    let l = s.walk("alice").await?;
    psql(
        &s.env.database_url,
        &[
            "-c",
            "UPDATE sso_logins SET expires_at = now() - interval '1 second' WHERE consumed_at IS NULL",
        ],
    )?;
    let r = s.callback(&l, true).await?;
    s.assert_refused("expired login", r, "state_expired")?;

    // Without a state at all.
    let l = s.walk("alice").await?;
    let none = Login {
        callback_url: with_param(&l.callback_url, "state", None),
        ..l
    };
    let r = s.callback(&none, true).await?;
    s.assert_refused("no state", r, "state_missing")?;

    // Nothing secret in the api's log either.
    let log = s.api_log();
    ensure!(log.contains("SSO login refused"), "refusals are logged");
    ensure!(
        !log.contains(&used_code) && !log.contains("eyJ"),
        "secret in the api log:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn sso_refuses_tampered_id_tokens() -> Result<()> {
    let s = start().await?;
    let attacks = [
        ("aud", "aud"),
        ("iss", "iss"),
        ("nonce", "nonce"),
        ("expired", "exp"),
        ("none", "alg"),
        ("hs256", "alg"),
        ("kid", "kid"),
    ];
    for (mode, check) in attacks {
        s.idp.set_tamper(mode)?;
        let l = s.walk("alice").await?;
        let r = s.callback(&l, true).await?;
        let d = s
            .assert_refused(&format!("id_token {mode}"), r, "id_token_invalid")
            .map_err(|e| anyhow!("{e:#}\nIdP log: {}", s.idp.log_text()))?;
        ensure!(d["check"] == check, "{mode}: expected check {check}: {d}");
    }
    let log = s.api_log();
    ensure!(!log.contains("eyJ"), "a token in the api log:\n{log}");
    let users = psql(
        &s.env.database_url,
        &[
            "-c",
            "SELECT count(*) FROM users WHERE oidc_subject IS NOT NULL",
        ],
    )?;
    ensure!(
        users.trim() == "0",
        "no account came from a forged token: {users}"
    );

    // Controls: the tampering hook itself (re-signing unchanged claims) and no hook both pass,
    // so each refusal above is the verifier's doing.
    for mode in ["resign", ""] {
        s.idp.set_tamper(mode)?;
        let t = s.login("alice").await?;
        s.me(t["accessToken"].as_str().unwrap_or_default()).await?;
    }
    Ok(())
}
