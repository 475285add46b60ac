//! What a browser front end on another origin relies on, against the real api over HTTP: CORS
//! from `TMS_ALLOWED_ORIGINS` (preflights and actual requests, listed and unlisted origins) and
//! automatic persisted queries (Apollo's protocol) over POST and GET, with the limits, RBAC and
//! error codes still in force.

use anyhow::Result;
use reqwest::header::{self, HeaderMap};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tms_tests::principals::api_token;
use tms_tests::{EnvOptions, TestEnv, error_code};

const APP: &str = "http://app.example.test:3000";
const EVIL: &str = "http://evil.example.test";

async fn env() -> Result<TestEnv> {
    TestEnv::start_with(EnvOptions {
        api_env: vec![("TMS_ALLOWED_ORIGINS".into(), APP.into())],
        ..EnvOptions::api_only()
    })
    .await
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// Every `Access-Control-*` header of a response.
fn cors_headers(h: &HeaderMap) -> Vec<String> {
    h.keys()
        .map(|k| k.as_str().to_string())
        .filter(|k| k.starts_with("access-control-"))
        .collect()
}

async fn preflight(env: &TestEnv, path: &str, origin: &str) -> Result<reqwest::Response> {
    Ok(reqwest::Client::new()
        .request(
            Method::OPTIONS,
            format!("http://127.0.0.1:{}{path}", env.api_port),
        )
        .header(header::ORIGIN, origin)
        .header(header::ACCESS_CONTROL_REQUEST_METHOD, "POST")
        .header(
            header::ACCESS_CONTROL_REQUEST_HEADERS,
            "authorization,content-type",
        )
        .send()
        .await?)
}

#[tokio::test]
async fn a_listed_origin_gets_a_preflight_answer_and_an_unlisted_one_none() -> Result<()> {
    let env = env().await?;

    let ok = preflight(&env, "/graphql", APP).await?;
    assert!(ok.status().is_success(), "{}", ok.status());
    let h = ok.headers();
    assert_eq!(header(h, "access-control-allow-origin"), Some(APP));
    let methods = header(h, "access-control-allow-methods").unwrap_or_default();
    for m in ["GET", "POST", "OPTIONS"] {
        assert!(methods.contains(m), "{m} not allowed: {methods}");
    }
    let headers = header(h, "access-control-allow-headers")
        .unwrap_or_default()
        .to_ascii_lowercase();
    for name in ["authorization", "content-type"] {
        assert!(headers.contains(name), "{name} not allowed: {headers}");
    }
    assert_eq!(header(h, "access-control-max-age"), Some("3600"));
    // Bearer tokens, never cookies: credentials are not allowed.
    assert_eq!(header(h, "access-control-allow-credentials"), None);

    // The step-log download is part of the bearer-token API too.
    let log = preflight(
        &env,
        "/runs/00000000-0000-0000-0000-000000000000/steps/a/log",
        APP,
    )
    .await?;
    assert_eq!(
        header(log.headers(), "access-control-allow-origin"),
        Some(APP)
    );

    // So is the SSO code exchange a front end on another origin redeems its code at.
    let exchange = preflight(&env, "/auth/exchange", APP).await?;
    assert_eq!(
        header(exchange.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    let exchange_refused = preflight(&env, "/auth/exchange", EVIL).await?;
    assert!(cors_headers(exchange_refused.headers()).is_empty());

    let refused = preflight(&env, "/graphql", EVIL).await?;
    assert!(
        cors_headers(refused.headers()).is_empty(),
        "an unlisted origin got {:?}",
        cors_headers(refused.headers())
    );
    // A listed host on another port is another origin.
    let other_port = preflight(&env, "/graphql", "http://app.example.test:4000").await?;
    assert!(cors_headers(other_port.headers()).is_empty());
    Ok(())
}

#[tokio::test]
async fn an_actual_request_from_a_listed_origin_is_answered_with_cors_headers() -> Result<()> {
    let env = env().await?;
    let post = |origin: &'static str| {
        reqwest::Client::new()
            .post(env.api_url())
            .header(header::ORIGIN, origin)
            .bearer_auth(env.token.clone().unwrap_or_default())
            .json(&json!({"query": "{ me { email } }"}))
            .send()
    };

    let resp = post(APP).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    let h = resp.headers().clone();
    assert_eq!(header(&h, "access-control-allow-origin"), Some(APP));
    assert!(
        header(&h, "vary").is_some_and(|v| v.to_ascii_lowercase().contains("origin")),
        "no Vary: Origin in {h:?}"
    );
    assert_eq!(header(&h, "access-control-allow-credentials"), None);
    let body: Value = resp.json().await?;
    assert!(body["data"]["me"]["email"].is_string(), "{body}");

    // An unlisted origin is served (its browser will refuse to read the answer) but gets no
    // CORS header.
    let resp = post(EVIL).await?;
    assert_eq!(resp.status(), StatusCode::OK);
    assert!(
        cors_headers(resp.headers()).is_empty(),
        "{:?}",
        cors_headers(resp.headers())
    );

    // The step-log download: a listed origin may read its `X-TMS-Log-*` headers.
    let log = |origin: &'static str| {
        reqwest::Client::new()
            .get(format!(
                "http://127.0.0.1:{}/runs/00000000-0000-0000-0000-000000000000/steps/a/log",
                env.api_port
            ))
            .header(header::ORIGIN, origin)
            .bearer_auth(env.token.clone().unwrap_or_default())
            .send()
    };
    let resp = log(APP).await?;
    assert_eq!(resp.status(), StatusCode::NOT_FOUND);
    assert_eq!(
        header(resp.headers(), "access-control-allow-origin"),
        Some(APP)
    );
    let exposed = header(resp.headers(), "access-control-expose-headers").unwrap_or_default();
    assert!(exposed.contains("x-tms-log-next-offset"), "{exposed}");
    let resp = log(EVIL).await?;
    assert!(
        cors_headers(resp.headers()).is_empty(),
        "{:?}",
        cors_headers(resp.headers())
    );
    Ok(())
}

fn sha256(text: &str) -> String {
    hex::encode(Sha256::digest(text.as_bytes()))
}

fn apq(hash: &str) -> Value {
    json!({"persistedQuery": {"version": 1, "sha256Hash": hash}})
}

async fn post(env: &TestEnv, token: Option<&str>, body: Value) -> Result<Value> {
    let mut req = reqwest::Client::new().post(env.api_url()).json(&body);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    Ok(req.send().await?.json().await?)
}

async fn get(env: &TestEnv, token: Option<&str>, params: &[(&str, String)]) -> Result<Value> {
    let mut req = reqwest::Client::new().get(env.api_url()).query(params);
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await?;
    let status = resp.status();
    let text = resp.text().await?;
    serde_json::from_str(&text)
        .map_err(|e| anyhow::anyhow!("GET answered {status} with non-JSON ({e}): {text:.200}"))
}

#[tokio::test]
async fn persisted_queries_register_then_run_by_hash_over_post_and_get() -> Result<()> {
    let env = env().await?;
    let token = env.token.clone();
    let token = token.as_deref();
    let query = "query Me { me { email roles } }";
    let hash = sha256(query);

    // Unknown hash: the message and code Apollo clients key on.
    let miss = post(&env, token, json!({"extensions": apq(&hash)})).await?;
    assert_eq!(error_code(&miss), "PERSISTED_QUERY_NOT_FOUND", "{miss}");
    assert_eq!(miss["errors"][0]["message"], "PersistedQueryNotFound");
    assert!(miss.get("data").is_none_or(Value::is_null), "{miss}");

    // Hash and text register it, and run it.
    let first = post(
        &env,
        token,
        json!({"query": query, "extensions": apq(&hash)}),
    )
    .await?;
    assert!(first["data"]["me"]["email"].is_string(), "{first}");

    // Now the hash alone runs it, over POST and over GET.
    let by_hash = post(&env, token, json!({"extensions": apq(&hash)})).await?;
    assert_eq!(by_hash["data"], first["data"], "{by_hash}");
    let by_get = get(
        &env,
        token,
        &[
            ("extensions", apq(&hash).to_string()),
            ("operationName", "Me".into()),
        ],
    )
    .await?;
    assert_eq!(by_get["data"], first["data"], "{by_get}");

    // A plain GET query works too; a GET mutation does not.
    let plain = get(&env, token, &[("query", "{ me { email } }".into())]).await?;
    assert!(plain["data"]["me"]["email"].is_string(), "{plain}");
    let mutation =
        "mutation { archiveWorkflow(id: \"00000000-0000-0000-0000-000000000000\") { id } }";
    let refused = get(&env, token, &[("query", mutation.into())]).await?;
    assert_eq!(error_code(&refused), "GRAPHQL_VALIDATION", "{refused}");
    assert!(
        refused["errors"][0]["message"]
            .as_str()
            .is_some_and(|m| m.contains("POST")),
        "{refused}"
    );

    // A hash that is not the query's is refused, and registers nothing.
    let other = "{ me { id } }";
    let wrong = post(
        &env,
        token,
        json!({"query": other, "extensions": apq(&hash)}),
    )
    .await?;
    assert_eq!(error_code(&wrong), "VALIDATION", "{wrong}");
    assert_eq!(
        wrong["errors"][0]["extensions"]["field"],
        "extensions.persistedQuery.sha256Hash"
    );
    let still = post(&env, token, json!({"extensions": apq(&sha256(other))})).await?;
    assert_eq!(error_code(&still), "PERSISTED_QUERY_NOT_FOUND", "{still}");
    Ok(())
}

#[tokio::test]
async fn persisted_queries_keep_the_limits_and_the_roles() -> Result<()> {
    let env = env().await?;
    let token = env.token.clone();
    let token = token.as_deref();

    // Too deep to run: refused when registering, and so never stored.
    let mut deep = "id".to_string();
    for _ in 0..5 {
        deep = format!("runs(first: 1) {{ nodes {{ workflow {{ {deep} }} }} }}");
    }
    let deep = format!("{{ workflows(first: 1) {{ nodes {{ {deep} }} }} }}");
    let hash = sha256(&deep);
    let refused = post(
        &env,
        token,
        json!({"query": deep, "extensions": apq(&hash)}),
    )
    .await?;
    assert_eq!(error_code(&refused), "QUERY_LIMIT", "{refused}");
    assert_eq!(refused["errors"][0]["extensions"]["limit"], "depth");
    let miss = post(&env, token, json!({"extensions": apq(&hash)})).await?;
    assert_eq!(error_code(&miss), "PERSISTED_QUERY_NOT_FOUND", "{miss}");

    // A stored query is checked against this request's variables: `first` over the page limit.
    let paged = "query($n: Int) { workflows(first: $n) { nodes { id } } }";
    let hash = sha256(paged);
    let ok = post(
        &env,
        token,
        json!({"query": paged, "variables": {"n": 5}, "extensions": apq(&hash)}),
    )
    .await?;
    assert!(ok["data"]["workflows"]["nodes"].is_array(), "{ok}");
    let too_many = post(
        &env,
        token,
        json!({"variables": {"n": 1000}, "extensions": apq(&hash)}),
    )
    .await?;
    assert_eq!(error_code(&too_many), "QUERY_LIMIT", "{too_many}");

    // The hash is no credential: without a token, or with a role that may not read
    // workflows, the stored query is refused as the query itself would be.
    let anonymous = post(
        &env,
        None,
        json!({"variables": {"n": 5}, "extensions": apq(&hash)}),
    )
    .await?;
    assert_eq!(error_code(&anonymous), "UNAUTHENTICATED", "{anonymous}");
    let (_, auditor) = api_token(&env, "frontend-auditor", "AUDITOR").await?;
    let forbidden = post(
        &env,
        Some(&auditor),
        json!({"variables": {"n": 5}, "extensions": apq(&hash)}),
    )
    .await?;
    assert_eq!(error_code(&forbidden), "FORBIDDEN", "{forbidden}");
    Ok(())
}
