//! `tms login --sso` end to end (RFC 8252 native-app sign-in): the real `tms` binary, the real
//! api and the real OpenID Connect provider, the test playing the browser. The CLI saves a 0600
//! session later commands use; the api refuses non-loopback redirects, a wrong or missing PKCE
//! verifier (and the code is spent), and the CLI refuses a callback whose state is not its own,
//! a provider refusal, and gives up after --timeout.

#[path = "cli_sso/harness.rs"]
mod harness;

use std::os::unix::fs::PermissionsExt;

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};
use tms_tests::idp::Browser;
use tms_tests::sso::{query_param, start, with_param};
use tms_tests::{EnvOptions, TestEnv, error_code};

use harness::{CliLogin, browse_until, s256, tms};

#[tokio::test]
async fn tms_login_sso_signs_in_through_the_browser() -> Result<()> {
    let s = start().await?;

    let cli = CliLogin::start(&s, &[]).await?;
    let redirect = cli.redirect_uri()?;
    ensure!(
        redirect.starts_with("http://127.0.0.1:") && redirect.ends_with("/callback"),
        "{redirect}"
    );
    for p in ["code_challenge", "state"] {
        ensure!(query_param(&cli.url, p).is_some(), "{p} in {}", cli.url);
    }
    ensure!(
        query_param(&cli.url, "code_challenge_method").as_deref() == Some("S256"),
        "{}",
        cli.url
    );
    let mut browser = Browser::new();
    let back = browse_until(&mut browser, &s, &cli.url, "alice", &redirect).await?;
    ensure!(
        query_param(&back, "state") == query_param(&cli.url, "state"),
        "the client's state comes back: {back}"
    );
    let page = browser.get(&back).await?;
    ensure!(page.status() == 200, "CLI page: {}", page.status());
    let html = page.text().await?;
    ensure!(html.contains("close this window"), "{html}");
    ensure!(html.contains("alice@example.com"), "{html}");
    ensure!(!html.contains("eyJ"), "a token in the page: {html}");

    let home = cli.home.clone();
    let out = cli.finish().await?;
    ensure!(out.code == Some(0), "{out}");
    ensure!(
        out.stdout.contains("as alice@example.com (single sign-on)"),
        "{out}"
    );
    let file = home.join(".config/tms/token");
    let mode = std::fs::metadata(&file)?.permissions().mode() & 0o777;
    ensure!(mode == 0o600, "token file mode {mode:o}");
    let saved: Value = serde_json::from_slice(&std::fs::read(&file)?)?;
    ensure!(saved["email"] == "alice@example.com", "{saved}");
    ensure!(saved["refreshToken"].is_string(), "refresh token saved");
    let me = s
        .me(saved["accessToken"].as_str().context("accessToken")?)
        .await?;
    ensure!(
        me["email"] == "alice@example.com",
        "session is alice's: {me}"
    );

    // The audit row of this login, like a browser SSO login's, says it was a native app.
    let (outcome, detail, actor) = s.last_login_audit()?;
    ensure!(outcome == "success", "{outcome} {detail}");
    ensure!(
        detail["method"] == "sso" && detail["nativeApp"] == true,
        "{detail}"
    );
    ensure!(actor == me["id"].as_str().unwrap_or_default(), "{actor}");

    // A later command uses the saved session.
    let w = tms(&home, &s.base, &["workflows"]).output().await?;
    ensure!(
        w.status.code() == Some(0),
        "tms workflows: {:?} {}",
        w.status.code(),
        String::from_utf8_lossy(&w.stderr)
    );
    Ok(())
}

#[tokio::test]
async fn native_redirects_must_be_loopback_ip_literals() -> Result<()> {
    let s = start().await?;
    let challenge = s256(&"v".repeat(43));
    let login = |redirect: &str| {
        let mut u = reqwest::Url::parse(&format!("{}/auth/login", s.base)).expect("url");
        u.query_pairs_mut()
            .append_pair("redirect_uri", redirect)
            .append_pair("code_challenge", &challenge)
            .append_pair("code_challenge_method", "S256")
            .append_pair("state", "st");
        u.to_string()
    };
    for (redirect, says) in [
        ("http://localhost:5000/callback", "localhost"),
        ("http://tms.example.com:5000/callback", "loopback"),
        ("https://127.0.0.1:5000/callback", "http://127.0.0.1"),
        ("http://192.168.1.2:5000/callback", "loopback"),
    ] {
        let r = s.http.get(login(redirect)).send().await?;
        let status = r.status();
        let v: Value = r.json().await?;
        ensure!(status == 400, "{redirect}: {status} {v}");
        ensure!(error_code(&v) == "VALIDATION", "{redirect}: {v}");
        ensure!(
            v["errors"][0]["extensions"]["field"] == "redirect_uri",
            "{redirect}: {v}"
        );
        let msg = v["errors"][0]["message"].as_str().unwrap_or_default();
        ensure!(msg.contains(says), "{redirect}: {msg}");
    }
    // PKCE is required with a redirect, S256 only.
    let plain = with_param(
        &login("http://127.0.0.1:5000/cb"),
        "code_challenge_method",
        Some("plain"),
    );
    let r = s.http.get(plain).send().await?;
    let v: Value = r.json().await?;
    ensure!(
        v["errors"][0]["extensions"]["field"] == "code_challenge_method",
        "{v}"
    );
    // The same parameters with 127.0.0.1 and [::1] start a login.
    for ok in ["http://127.0.0.1:5000/cb", "http://[::1]:5000/cb"] {
        let r = s.http.get(login(ok)).send().await?;
        ensure!(r.status() == 302, "{ok}: {}", r.status());
    }
    Ok(())
}

#[tokio::test]
async fn native_codes_need_their_verifier_and_are_spent_by_a_wrong_one() -> Result<()> {
    let s = start().await?;
    // No listener is needed: the test stops at the redirect to it.
    let redirect = "http://127.0.0.1:9/cb";
    let native_code = |verifier: String| {
        let s = &s;
        async move {
            let mut u = reqwest::Url::parse(&format!("{}/auth/login", s.base))?;
            u.query_pairs_mut()
                .append_pair("redirect_uri", redirect)
                .append_pair("code_challenge", &s256(&verifier))
                .append_pair("code_challenge_method", "S256")
                .append_pair("state", "client-state");
            let back = browse_until(&mut Browser::new(), s, u.as_str(), "linda", redirect).await?;
            ensure!(
                query_param(&back, "state").as_deref() == Some("client-state"),
                "{back}"
            );
            query_param(&back, "code").context("code")
        }
    };
    let exchange = |body: Value| {
        let (http, url) = (s.http.clone(), format!("{}/auth/exchange", s.base));
        async move {
            let r = http.post(url).json(&body).send().await?;
            Ok::<_, anyhow::Error>((r.status().as_u16(), r.json::<Value>().await?))
        }
    };
    let verifier = "a".repeat(20) + &"b".repeat(30);

    let code = native_code(verifier.clone()).await?;
    let wrong = "c".repeat(50);
    let r = exchange(json!({"code": code, "code_verifier": wrong})).await?;
    let d = s.assert_refused("wrong verifier", r, "pkce_mismatch")?;
    ensure!(
        !d.to_string().contains(&wrong),
        "verifier in the audit: {d}"
    );
    let r = exchange(json!({"code": code, "code_verifier": verifier})).await?;
    s.assert_refused("the right verifier after a wrong one", r, "handoff_invalid")?;

    let code = native_code(verifier.clone()).await?;
    let r = exchange(json!({"code": code})).await?;
    s.assert_refused("no verifier", r, "pkce_mismatch")?;

    let code = native_code(verifier.clone()).await?;
    let (st, v) = exchange(json!({"code": code, "code_verifier": verifier})).await?;
    ensure!(st == 200 && v["accessToken"].is_string(), "{st} {v}");
    ensure!(
        s.me(v["accessToken"].as_str().unwrap_or_default()).await?["email"] == "linda@tms.test"
    );
    let r = exchange(json!({"code": code, "code_verifier": verifier})).await?;
    s.assert_refused("second use", r, "handoff_invalid")?;
    Ok(())
}

#[tokio::test]
async fn tms_login_sso_refuses_a_foreign_state_a_refusal_and_waits_no_longer_than_told()
-> Result<()> {
    let s = start().await?;

    // A callback whose state is not the CLI's (e.g. another login's): refused, nothing saved.
    let cli = CliLogin::start(&s, &[]).await?;
    let redirect = cli.redirect_uri()?;
    let mut browser = Browser::new();
    let back = browse_until(&mut browser, &s, &cli.url, "alice", &redirect).await?;
    let forged = with_param(&back, "state", Some("not-this-login"));
    let page = browser.get(&forged).await?;
    ensure!(page.status() == 400, "CLI page: {}", page.status());
    ensure!(page.text().await?.contains("Sign-in failed"));
    let home = cli.home.clone();
    let out = cli.finish().await?;
    ensure!(out.code == Some(4), "{out}");
    ensure!(out.stderr.contains("state mismatch"), "{out}");
    ensure!(
        !home.join(".config/tms/token").exists(),
        "a session was saved"
    );

    // The provider refuses: the api sends the CLI `access_denied` with its state.
    let cli = CliLogin::start(&s, &[]).await?;
    let redirect = cli.redirect_uri()?;
    let mut browser = Browser::new();
    let back = browse_until(&mut browser, &s, &cli.url, "deny", &redirect).await?;
    ensure!(
        query_param(&back, "error").as_deref() == Some("access_denied"),
        "{back}"
    );
    browser.get(&back).await?;
    let out = cli.finish().await?;
    ensure!(out.code == Some(4), "{out}");
    ensure!(out.stderr.contains("single sign-on refused"), "{out}");

    // Nobody comes back: --timeout ends the wait.
    let cli = CliLogin::start(&s, &["--timeout", "1"]).await?;
    let out = cli.finish().await?;
    ensure!(out.code == Some(7), "{out}");
    ensure!(out.stderr.contains("no sign-in within 1 s"), "{out}");
    Ok(())
}

#[tokio::test]
async fn tms_login_sso_says_when_the_api_has_no_single_sign_on() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let home = env.work_dir.join("home-no-sso");
    std::fs::create_dir_all(&home)?;
    let base = format!("http://127.0.0.1:{}", env.api_port);
    let out = tms(&home, &base, &["login", "--sso", "--no-browser"])
        .output()
        .await?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(out.status.code() == Some(6), "{:?} {stderr}", out.status);
    ensure!(
        stderr.contains("single sign-on is not configured"),
        "{stderr}"
    );
    ensure!(
        !stderr.contains("/auth/login?"),
        "no URL is offered when the api cannot sign in: {stderr}"
    );
    Ok(())
}
