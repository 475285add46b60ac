//! The web console: its HTTP surface (headers, caching, the cookie session and its CSRF
//! rules, login audit and throttling shared with the `login` mutation), and the whole console
//! in a real headless browser (`tests/browser/console_test.py`, selenium + Debian's chromium).

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tms_tests::console::{
    client, cookie_value, fixtures_steps, header, serve_signals, session, session_cookie,
};
use tms_tests::sessions::{add_user, audit_rows};
use tms_tests::{ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, TestEnv};

const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

#[tokio::test]
async fn console_pages_assets_and_headers() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let http = client()?;
    let base = format!("http://127.0.0.1:{}", env.api_port);

    let root = http.get(format!("{base}/")).send().await?;
    assert_eq!(root.status().as_u16(), 302);
    assert_eq!(header(root.headers(), "location"), "/ui/");

    // Every app route is the same page, never cached, with the strict policy.
    let mut asset_urls = Vec::new();
    for path in ["/ui/", "/ui/login", "/ui/runs/some-id", "/ui/workflows"] {
        let r = http.get(format!("{base}{path}")).send().await?;
        assert_eq!(r.status().as_u16(), 200, "{path}");
        let h = r.headers().clone();
        assert_eq!(header(&h, "content-security-policy"), CSP, "{path}");
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        assert_eq!(header(&h, "referrer-policy"), "no-referrer");
        assert_eq!(header(&h, "cache-control"), "no-cache");
        let html = r.text().await?;
        assert!(
            !html.contains("<style") && !html.contains("style="),
            "{html}"
        );
        asset_urls = html
            .split('"')
            .filter(|p| p.starts_with("/ui/assets/"))
            .map(str::to_string)
            .collect();
    }
    ensure!(
        asset_urls.len() >= 2,
        "index names its assets: {asset_urls:?}"
    );
    for url in &asset_urls {
        let r = http.get(format!("{base}{url}")).send().await?;
        assert_eq!(r.status().as_u16(), 200, "{url}");
        let h = r.headers().clone();
        assert_eq!(
            header(&h, "cache-control"),
            "public, max-age=31536000, immutable"
        );
        assert_eq!(header(&h, "x-content-type-options"), "nosniff");
        let etag = header(&h, "etag").to_string();
        let again = http
            .get(format!("{base}{url}"))
            .header("if-none-match", &etag)
            .send()
            .await?;
        assert_eq!(again.status().as_u16(), 304, "{url}");
    }
    // Another build's URL is not cached as that build's; unknown files are 404.
    let stale = http
        .get(format!("{base}/ui/assets/0000000000000000/app.js"))
        .send()
        .await?;
    assert_eq!(header(stale.headers(), "cache-control"), "no-cache");
    let missing = http
        .get(format!("{base}/ui/assets/x/nope.js"))
        .send()
        .await?;
    assert_eq!(missing.status().as_u16(), 404);

    let cfg: Value = http
        .get(format!("{base}/ui/config.json"))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(cfg["sso"], false, "{cfg}");

    // GraphiQL: embedded assets only, same headers.
    let g = http.get(format!("{base}/graphql")).send().await?;
    assert_eq!(g.status().as_u16(), 200);
    let csp = header(g.headers(), "content-security-policy").to_string();
    assert!(
        csp.contains("script-src 'self';") && !csp.contains("unsafe"),
        "{csp}"
    );
    let page = g.text().await?;
    assert!(
        page.contains("vendor/graphiql.min.js") && !page.contains("unpkg"),
        "{page}"
    );

    // Console requests are counted under their route templates, not their paths.
    let metrics = http
        .get(format!("{base}/metrics"))
        .send()
        .await?
        .text()
        .await?;
    for route in ["/ui/{tail:.*}", "/ui/assets/{build}/{path:.*}"] {
        assert!(
            metrics.contains(&format!("route=\"{route}\"")),
            "{route} not in /metrics"
        );
    }

    let total: usize = tms_api::console::Assets::iter()
        .filter(|n| !n.starts_with("vendor/") && !n.starts_with("graphiql"))
        .filter_map(|n| tms_api::console::Assets::get(&n).map(|f| f.data.len()))
        .sum();
    println!("FIGURE console_asset_bytes {total}");
    Ok(())
}

#[tokio::test]
async fn graphiql_and_its_assets_are_off_in_production() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions {
        api_env: vec![("TMS_PRODUCTION".into(), "1".into())],
        ..EnvOptions::api_only()
    })
    .await?;
    let http = client()?;
    let base = format!("http://127.0.0.1:{}", env.api_port);
    let g = http.get(format!("{base}/graphql")).send().await?;
    assert_eq!(g.status().as_u16(), 404);
    let build = http
        .get(format!("{base}/ui/config.json"))
        .send()
        .await?
        .json::<Value>()
        .await?["build"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let vendor = format!("{base}/ui/assets/{build}/vendor/graphiql.min.js");
    assert_eq!(http.get(vendor).send().await?.status().as_u16(), 404);
    let app = format!("{base}/ui/assets/{build}/app.js");
    assert_eq!(http.get(app).send().await?.status().as_u16(), 200);
    Ok(())
}

#[tokio::test]
async fn the_login_page_learns_whether_sso_is_configured() -> Result<()> {
    // A provider that is down at start-up only delays discovery; the button is shown anyway.
    let port = tms_tests::free_port();
    let dead = tms_tests::free_port();
    let env = TestEnv::start_with(EnvOptions {
        api_port: Some(port),
        api_env: vec![
            ("TMS_OIDC_ISSUER".into(), format!("http://127.0.0.1:{dead}")),
            ("TMS_OIDC_CLIENT_ID".into(), "tms".into()),
            (
                "TMS_OIDC_REDIRECT_URL".into(),
                format!("http://127.0.0.1:{port}/auth/callback"),
            ),
        ],
        ..EnvOptions::api_only()
    })
    .await?;
    let cfg: Value = client()?
        .get(format!("http://127.0.0.1:{}/ui/config.json", env.api_port))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(cfg["sso"], true, "{cfg}");
    Ok(())
}

#[tokio::test]
async fn the_cookie_session_signs_in_rotates_and_signs_out_like_the_mutations() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions {
        api_env: vec![("TMS_LOGIN_FAILURE_LIMIT".into(), "2".into())],
        ..EnvOptions::api_only()
    })
    .await?;
    let creds = json!({"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD});
    let own = format!("http://127.0.0.1:{}", env.api_port);

    // CSRF: without the header, or from another origin, nothing happens.
    for (marked, origin) in [
        (false, Some(own.as_str())),
        (true, Some("http://evil.test")),
    ] {
        let (status, h, body) = session(&env, "", creds.clone(), None, origin, marked).await?;
        assert_eq!(status, 403, "{body}");
        assert_eq!(body["errors"][0]["extensions"]["code"], "FORBIDDEN");
        assert!(session_cookie(&h).is_none());
    }

    let (status, h, body) = session(&env, "", creds.clone(), None, Some(&own), true).await?;
    assert_eq!(status, 200, "{body}");
    let token = body["accessToken"]
        .as_str()
        .context("accessToken")?
        .to_string();
    assert!(body.get("refreshToken").is_none(), "{body}");
    let set = session_cookie(&h).context("a session cookie")?;
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age="] {
        assert!(set.contains(attr), "{attr}: {set}");
    }
    assert!(!set.contains("Secure"), "plain http: {set}");
    assert_eq!(header(&h, "cache-control"), "no-store");
    let me = env
        .gql_raw(Some(&token), "{ me { email } }", json!({}))
        .await?;
    assert_eq!(me["data"]["me"]["email"], ADMIN_EMAIL, "{me}");
    let first = cookie_value(&set);

    // Refresh rotates the cookie; the old one is then refused.
    let (_, h, body) = session(&env, "/refresh", json!({}), Some(&first), None, true).await?;
    let second = cookie_value(&session_cookie(&h).context("rotated cookie")?);
    assert!(body["accessToken"].is_string() && second != first, "{body}");
    let (status, _, body) = session(&env, "/refresh", json!({}), None, None, true).await?;
    assert_eq!(
        (status, &body["errors"][0]["extensions"]["code"]),
        (200, &json!("UNAUTHENTICATED"))
    );

    // Logout ends the session (its access tokens too) and clears the cookie.
    let (status, h, _) = session(&env, "/logout", json!({}), Some(&second), None, true).await?;
    assert_eq!(status, 200);
    let cleared = session_cookie(&h).context("cleared cookie")?;
    assert!(cleared.contains("Max-Age=0"), "{cleared}");
    let after = env
        .gql_raw(Some(&token), "{ me { email } }", json!({}))
        .await?;
    assert_eq!(after["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
    let (_, _, body) = session(&env, "/refresh", json!({}), Some(&second), None, true).await?;
    assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");

    // The same audit rows and throttling as the `login` mutation.
    let bad = json!({"email": ADMIN_EMAIL, "password": "wrong-password-here"});
    for _ in 0..2 {
        let (_, h, body) = session(&env, "", bad.clone(), None, None, true).await?;
        assert_eq!(body["errors"][0]["extensions"]["code"], "UNAUTHENTICATED");
        assert!(session_cookie(&h).is_none());
    }
    let (_, h, body) = session(&env, "", creds.clone(), None, None, true).await?;
    assert_eq!(
        body["errors"][0]["extensions"]["code"], "RATE_LIMITED",
        "{body}"
    );
    assert!(body["errors"][0]["extensions"]["retryAfterSeconds"].is_u64());
    assert!(!header(&h, "retry-after").is_empty());
    let rows = audit_rows(&env, "auth.login")?;
    let failures = rows.iter().filter(|r| r.starts_with("failure")).count();
    let successes = rows.iter().filter(|r| r.starts_with("success")).count();
    // The harness's own login, the console's, two bad passwords and the throttled attempt.
    assert_eq!((successes, failures), (2, 3), "{rows:#?}");
    assert_eq!(audit_rows(&env, "auth.refresh")?.len(), 2);
    assert_eq!(audit_rows(&env, "auth.logout")?.len(), 1);
    Ok(())
}

#[tokio::test]
async fn the_console_in_a_real_browser() -> Result<()> {
    let python = std::env::var("TMS_TEST_BROWSER_PYTHON")
        .context("TMS_TEST_BROWSER_PYTHON is unset: run the tests with scripts/test")?;
    let axe = std::env::var("TMS_TEST_AXE_JS")
        .context("TMS_TEST_AXE_JS is unset: run the tests with scripts/test")?;
    // Access tokens that expire within the test: the page must renew them from its cookie
    // (and its subscription must survive the 4401 close of an expired token).
    let mut env = TestEnv::start_with(EnvOptions {
        api_env: vec![("TMS_ACCESS_TOKEN_TTL_SECONDS".into(), "8".into())],
        ..EnvOptions::default()
    })
    .await?;
    let marker = env.work_dir.join("flaky-marker");
    let signals = env.work_dir.join("signals");
    std::fs::create_dir_all(&signals)?;
    let mut fixtures = serde_json::Map::new();
    for (name, steps) in fixtures_steps(&marker) {
        let wf = env
            .create_workflow(&format!("console-{name}"), steps)
            .await?;
        fixtures.insert(name.to_string(), json!(wf));
    }
    let ticker_wf = fixtures["ticker"].as_str().unwrap_or_default().to_string();
    env.login_admin().await?;
    let ticker = env.trigger(&ticker_wf).await?;
    fixtures.insert("ticker".into(), json!(ticker));
    let scheduled = env
        .gql(
            "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}",
            json!({"i": {"name": "console-scheduled",
                "steps": [{"name": "a", "image": "alpine", "run": "true"}],
                "schedule": {"cron": "0 0 1 1 *", "enabled": false}}}),
        )
        .await?;
    fixtures.insert(
        "scheduled".into(),
        scheduled["createWorkflow"]["id"].clone(),
    );
    let viewer = "viewer@tms.test";
    add_user(&env, viewer, "viewer")?;
    fixtures.insert("viewer".into(), json!(viewer));

    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/browser/console_test.py");
    let child = tokio::process::Command::new(&python)
        .arg(script)
        .env(
            "TMS_CONSOLE_URL",
            format!("http://127.0.0.1:{}", env.api_port),
        )
        .env("TMS_CONSOLE_EMAIL", ADMIN_EMAIL)
        .env("TMS_CONSOLE_PASSWORD", ADMIN_PASSWORD)
        .env("TMS_CONSOLE_FIXTURES", Value::Object(fixtures).to_string())
        .env("TMS_TEST_AXE_JS", axe)
        .env("TMS_CONSOLE_SIGNALS", &signals)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {python} {script}"))?;
    let out = tokio::time::timeout(
        Duration::from_secs(170),
        serve_signals(&mut env, &signals, child),
    )
    .await
    .context("the browser test took longer than 170 s")??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    if env.login_admin().await.is_ok() {
        let _ = env
            .gql(
                "mutation($id:ID!){cancelRun(id:$id){id}}",
                json!({"id": ticker}),
            )
            .await;
    }
    if !out.status.success() {
        let api_log = env.api.as_ref().map(|p| p.log_text()).unwrap_or_default();
        let tail: String = api_log
            .lines()
            .rev()
            .take(40)
            .collect::<Vec<_>>()
            .join("\n");
        bail!(
            "browser test failed ({}):\n{stderr}\napi log (newest first):\n{tail}",
            out.status
        );
    }
    ensure!(
        stdout.contains("CONSOLE BROWSER TEST PASSED"),
        "{stdout}\n{stderr}"
    );
    Ok(())
}
