//! GraphQL limits against the real `tms-api`: each one refused with `QUERY_LIMIT` naming the
//! limit (over HTTP and on a subscription), production mode hiding the schema, and the
//! WebSocket upgrade's checks (`Origin` allow-list, path, subprotocol) and `connection_init`
//! deadline. That the refusals cost no
//! database statement is counted in-process in `api/tests/limits_cost.rs`.

use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{Result, bail};
use serde_json::{Value, json};
use tms_tests::ws::{GqlWs, WsEvent, open};
use tms_tests::{EnvOptions, TestEnv, bin_dir, error_code};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const T: Duration = Duration::from_secs(10);

fn deep(levels: usize) -> String {
    let mut q = "id".to_string();
    for _ in 0..levels {
        q = format!("runs {{ nodes {{ workflow {{ {q} }} }} }}");
    }
    format!("{{ {q} }}")
}

/// Each fragment spreads the previous one ten times: 3 × 10^levels fields of complexity.
fn complex(levels: usize) -> String {
    let mut doc = "fragment F0 on Run { id status version }\n".to_string();
    for i in 1..=levels {
        let spreads = format!("...F{} ", i - 1).repeat(10);
        doc.push_str(&format!("fragment F{i} on Run {{ {spreads}}}\n"));
    }
    format!("{{ runs {{ nodes {{ ...F{levels} }} }} }}\n{doc}")
}

fn aliased(n: usize, field: &str) -> String {
    (0..n).map(|i| format!("a{i}: {field} ")).collect()
}

fn assert_limit(resp: &Value, limit: &str, max: u64) {
    assert_eq!(error_code(resp), "QUERY_LIMIT", "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["limit"], limit, "{resp}");
    assert_eq!(resp["errors"][0]["extensions"]["max"], max, "{resp}");
}

#[tokio::test]
async fn limits_each_refused_with_query_limit_naming_it() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let token = env.token.as_deref();
    // Within the limits the same shapes are served: the refusals below are the limits'.
    let ok = env.gql_raw(token, &deep(3), json!({})).await?;
    assert!(ok.get("errors").is_none(), "{ok}");
    let ok = env.gql_raw(token, &complex(2), json!({})).await?;
    assert!(ok.get("errors").is_none(), "{ok}");

    let cases = [
        (deep(4), json!({}), "depth", 12),
        (complex(4), json!({}), "complexity", 2000),
        (
            "{ runs(first: 101) { nodes { id } } }".to_string(),
            json!({}),
            "pageSize",
            100,
        ),
        (
            "query($n: Int) { workflows(first: $n) { nodes { id } } }".to_string(),
            json!({"n": 101}),
            "pageSize",
            100,
        ),
        (
            format!("{{ {} }}", aliased(31, "me { id }")),
            json!({}),
            "aliases",
            30,
        ),
        (
            format!("{{ me {{ id }} {} }}", " ".repeat(32 * 1024)),
            json!({}),
            "documentBytes",
            32 * 1024,
        ),
    ];
    for (query, vars, limit, max) in cases {
        let resp = env.gql_raw(token, &query, vars).await?;
        assert_limit(&resp, limit, max);
    }
    let page = env
        .gql_raw(token, "{ runs(first: 101) { nodes { id } } }", json!({}))
        .await?;
    assert_eq!(page["errors"][0]["extensions"]["field"], "first", "{page}");

    let http = reqwest::Client::new();
    let batch = |n: usize| Value::Array(vec![json!({"query": "{ me { id } }"}); n]);
    let over: Value = http
        .post(env.api_url())
        .bearer_auth(token.unwrap_or_default())
        .json(&batch(11))
        .send()
        .await?
        .json()
        .await?;
    assert_limit(&over, "batch", 10);
    let within: Value = http
        .post(env.api_url())
        .bearer_auth(token.unwrap_or_default())
        .json(&batch(10))
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(within.as_array().map(Vec::len), Some(10), "{within}");
    Ok(())
}

#[tokio::test]
async fn limits_hold_for_subscriptions_too() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let mut ws = GqlWs::connect(env.api_port, env.token.as_deref().unwrap_or_default()).await?;
    let query = format!("subscription {{ runEvents {{ {} }} }}", aliased(31, "seq"));
    ws.subscribe("s1", &query, json!({})).await?;
    match ws.next(T).await? {
        WsEvent::Error(errors) => {
            assert_eq!(errors[0]["extensions"]["code"], "QUERY_LIMIT", "{errors}");
            assert_eq!(errors[0]["extensions"]["limit"], "aliases", "{errors}");
        }
        other => bail!("expected a QUERY_LIMIT error, got {other:?}"),
    }
    ws.close().await;
    Ok(())
}

#[tokio::test]
async fn limits_production_mode_hides_introspection_suggestions_and_graphiql() -> Result<()> {
    let production = |on: &str| EnvOptions {
        start_worker: false,
        api_env: vec![("TMS_PRODUCTION".into(), on.into())],
        ..Default::default()
    };
    let env = TestEnv::start_with(production("true")).await?;
    let token = env.token.as_deref();
    let intro = env
        .gql_raw(token, "{ __schema { types { name } } }", json!({}))
        .await?;
    // async-graphql answers disabled introspection with null rather than an error.
    assert!(intro["data"]["__schema"].is_null(), "{intro}");
    let one = env
        .gql_raw(
            token,
            r#"{ __type(name: "Run") { fields { name } } }"#,
            json!({}),
        )
        .await?;
    assert!(one["data"]["__type"].is_null(), "{one}");
    let typo = env
        .gql_raw(token, "{ workflowz { nodes { id } } }", json!({}))
        .await?;
    assert!(typo.get("errors").is_some(), "{typo}");
    assert!(!typo.to_string().contains("Did you mean"), "{typo}");
    let graphiql = reqwest::get(env.api_url()).await?;
    assert_eq!(graphiql.status(), 404);

    // The same requests outside production: what production mode hides is really there.
    let dev = TestEnv::start_with(production("false")).await?;
    let intro = dev
        .gql_raw(
            dev.token.as_deref(),
            "{ __schema { types { name } } }",
            json!({}),
        )
        .await?;
    assert!(intro["data"]["__schema"]["types"].is_array(), "{intro}");
    let typo = dev
        .gql_raw(
            dev.token.as_deref(),
            "{ workflowz { nodes { id } } }",
            json!({}),
        )
        .await?;
    assert!(typo.to_string().contains("Did you mean"), "{typo}");
    assert_eq!(reqwest::get(dev.api_url()).await?.status(), 200);
    Ok(())
}

/// Opens a WebSocket to the api with `origin` (if any); the HTTP status when refused.
async fn upgrade(port: u16, origin: Option<&str>) -> Result<Result<(), u16>> {
    let mut req = format!("ws://127.0.0.1:{port}/graphql").into_client_request()?;
    req.headers_mut().insert(
        "Sec-WebSocket-Protocol",
        HeaderValue::from_static("graphql-transport-ws"),
    );
    if let Some(o) = origin {
        req.headers_mut()
            .insert("Origin", HeaderValue::from_str(o)?);
    }
    match tokio_tungstenite::connect_async(req).await {
        Ok(_) => Ok(Ok(())),
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Ok(Err(resp.status().as_u16())),
        Err(e) => Err(e.into()),
    }
}

#[tokio::test]
async fn limits_websocket_upgrades_from_foreign_origins_are_refused() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions {
        start_worker: false,
        api_env: vec![(
            "TMS_ALLOWED_ORIGINS".into(),
            "https://console.example.test,http://localhost:3000".into(),
        )],
        ..Default::default()
    })
    .await?;
    let port = env.api_port;
    let own = format!("http://127.0.0.1:{port}");
    for allowed in [
        None,
        Some(own.as_str()),
        Some("https://console.example.test"),
        Some("http://localhost:3000"),
    ] {
        assert_eq!(upgrade(port, allowed).await?, Ok(()), "{allowed:?}");
    }
    for foreign in [
        "https://evil.example.test",
        "http://localhost:3001",
        "http://console.example.test",
        "null",
    ] {
        assert_eq!(upgrade(port, Some(foreign)).await?, Err(403), "{foreign}");
    }
    Ok(())
}

/// Writes `request` (and `then`, in the same write) on a new connection; returns the response
/// head and whatever arrived after it.
async fn raw_upgrade(port: u16, request: &str, then: &[u8]) -> Result<(String, Vec<u8>)> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
    tcp.write_all(&[request.as_bytes(), then].concat()).await?;
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = tokio::time::timeout(T, tcp.read(&mut buf)).await??;
        if n == 0 {
            bail!(
                "closed before a response: {}",
                String::from_utf8_lossy(&got)
            );
        }
        got.extend_from_slice(&buf[..n]);
    }
    let end = got.windows(4).position(|w| w == b"\r\n\r\n").unwrap() + 4;
    let mut rest = got.split_off(end);
    // A refusal closes the connection after its body: read it all.
    if !got.starts_with(b"HTTP/1.1 101") {
        tokio::time::timeout(T, tcp.read_to_end(&mut rest)).await??;
    }
    // For a WebSocket: read on until one whole unmasked server frame is in.
    if got.starts_with(b"HTTP/1.1 101") {
        while rest.len() < 2 || rest.len() < 2 + (rest[1] & 0x7f) as usize {
            let n = tokio::time::timeout(T, tcp.read(&mut buf)).await??;
            if n == 0 {
                break;
            }
            rest.extend_from_slice(&buf[..n]);
        }
    }
    Ok((String::from_utf8_lossy(&got).into_owned(), rest))
}

/// A client's masked text frame.
fn masked_text(text: &str) -> Vec<u8> {
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    let mut frame = vec![0x81u8];
    let len = text.len();
    if len < 126 {
        frame.push(0x80 | len as u8);
    } else {
        frame.push(0x80 | 126);
        frame.extend_from_slice(&(len as u16).to_be_bytes());
    }
    frame.extend_from_slice(&mask);
    frame.extend(text.bytes().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    frame
}

#[tokio::test]
async fn limits_websocket_upgrades_elsewhere_or_without_the_protocol_are_refused() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let port = env.api_port;
    let head = |path: &str, protocol: &str| {
        format!(
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: Upgrade\r\n\
             Upgrade: websocket\r\nSec-WebSocket-Version: 13\r\n\
             Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
        )
    };
    let protocol = "Sec-WebSocket-Protocol: graphql-transport-ws\r\n";

    let (resp, _) = raw_upgrade(port, &head("/healthz", protocol), b"").await?;
    assert!(resp.starts_with("HTTP/1.1 404"), "{resp}");
    let (resp, body) = raw_upgrade(port, &head("/graphql", ""), b"").await?;
    assert!(resp.starts_with("HTTP/1.1 400"), "{resp}");
    let body = String::from_utf8_lossy(&body);
    assert!(body.contains("graphql-transport-ws"), "{body}");

    // A client that sends `connection_init` in the same write as its upgrade request: the frame
    // the HTTP parser read past the request is handed to the socket, not lost.
    let token = env.token.clone().unwrap();
    let init =
        json!({"type": "connection_init", "payload": {"Authorization": format!("Bearer {token}")}});
    let (resp, frame) = raw_upgrade(
        port,
        &head("/graphql", protocol),
        &masked_text(&init.to_string()),
    )
    .await?;
    assert!(resp.starts_with("HTTP/1.1 101"), "{resp}");
    assert!(
        resp.to_ascii_lowercase()
            .contains("sec-websocket-protocol: graphql-transport-ws"),
        "{resp}"
    );
    assert_eq!(frame.first(), Some(&0x81), "a text frame: {frame:?}");
    let ack: Value = serde_json::from_slice(&frame[2..])?;
    assert_eq!(ack["type"], "connection_ack", "{ack}");
    Ok(())
}

#[tokio::test]
async fn limits_a_socket_without_connection_init_is_closed_with_4408() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let mut ws = GqlWs::from_socket(open(env.api_port).await?);
    // The api's deadline is 10 s; waiting longer than that must end in its close frame.
    match ws.recv_raw(Duration::from_secs(20)).await? {
        Err((code, _)) => assert_eq!(code, Some(4408)),
        Ok(msg) => bail!("expected close 4408, got {msg}"),
    }
    Ok(())
}

#[test]
fn limits_a_malformed_allowed_origin_stops_start_up_naming_it() -> Result<()> {
    let out = Command::new(bin_dir().join("tms-api"))
        .env_clear()
        .env("DATABASE_URL", "postgres://127.0.0.1:1/none")
        .env("REDIS_URL", "redis://127.0.0.1:1")
        .env(
            "TMS_ALLOWED_ORIGINS",
            "https://ok.example.test,console.example.test",
        )
        .envs(tms_tests::coverage_env())
        .stdin(Stdio::null())
        .output()?;
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("TMS_ALLOWED_ORIGINS") || stderr.contains("allowed-origins"),
        "{stderr}"
    );
    assert!(stderr.contains("console.example.test"), "{stderr}");
    Ok(())
}
