//! Distributed tracing end to end: with `OTEL_EXPORTER_OTLP_ENDPOINT` set, a `triggerRun`
//! request carrying a W3C `traceparent` yields one trace, received over OTLP/HTTP on loopback
//! and decoded with the OpenTelemetry protobuf definitions: the caller's span → the api's
//! request span → the worker's run span → one span per step → its attempt → the executor call;
//! and a subscription's span is a child of the `traceparent` sent in `connection_init`.

use std::time::{Duration, Instant};

use anyhow::{Result, anyhow, ensure};
use serde_json::json;
use tms_tests::otlp::{Receiver, Span};
use tms_tests::{EnvOptions, TestEnv, chain};

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
const CALLER_SPAN: &str = "00f067aa0ba902b7";
const WS_TRACE_ID: &str = "0af7651916cd43dd8448eb211c80319c";

fn one<'a>(spans: &'a [Span], what: &str, f: impl Fn(&Span) -> bool) -> Result<&'a Span> {
    let found: Vec<&Span> = spans.iter().filter(|s| f(s)).collect();
    match found.as_slice() {
        [s] => Ok(s),
        _ => Err(anyhow!(
            "expected one {what}, found {}: {spans:#?}",
            found.len()
        )),
    }
}

#[tokio::test]
async fn one_trace_spans_the_request_the_run_and_every_step() -> Result<()> {
    let otlp = Receiver::start().await?;
    let otel = vec![
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), otlp.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "200".to_string()),
    ];
    let env = TestEnv::start_with(EnvOptions {
        api_env: otel.clone(),
        worker_env: otel,
        ..Default::default()
    })
    .await?;
    let wf = env.create_workflow("traced", chain(2, "true")).await?;

    let resp: serde_json::Value = reqwest::Client::new()
        .post(env.api_url())
        .bearer_auth(env.token.as_deref().unwrap_or_default())
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"query": "mutation($w:ID!){triggerRun(workflowId:$w){id}}", "variables": {"w": wf}}))
        .send()
        .await?
        .json()
        .await?;
    let run_id = resp["data"]["triggerRun"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("{resp}"))?
        .to_string();
    let run = env.wait_run(&run_id, Duration::from_secs(60)).await?;
    ensure!(run["status"] == "SUCCEEDED", "{run}");

    // Exports are batched: wait until every expected span has arrived.
    let deadline = Instant::now() + Duration::from_secs(30);
    let spans = loop {
        let spans: Vec<Span> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == TRACE_ID)
            .collect();
        let executors = spans.iter().filter(|s| s.name == "executor.run").count();
        // Spans are exported as they end: the run's after its steps', the request's first.
        let has = |n: &str| spans.iter().any(|s| s.name == n);
        if executors >= 2 && has("POST /graphql") && has("run.execute") && has("step s1") {
            break spans;
        }
        ensure!(
            Instant::now() < deadline,
            "trace incomplete after 30s: {spans:#?}\nall spans: {:#?}",
            otlp.spans()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    };

    let request = one(&spans, "request span", |s| s.name == "POST /graphql")?;
    ensure!(request.service == "tms-api", "{request:?}");
    ensure!(
        request.parent_span_id == CALLER_SPAN,
        "request not a child of the caller: {request:?}"
    );
    ensure!(
        request.attr("graphql.operation") == Some("mutation triggerRun"),
        "{request:?}"
    );

    let run_span = one(&spans, "run span", |s| s.name == "run.execute")?;
    ensure!(run_span.service == "tms-worker", "{run_span:?}");
    ensure!(
        run_span.parent_span_id == request.span_id,
        "run not a child of the request: {run_span:?}"
    );
    ensure!(
        run_span.attr("run_id") == Some(run_id.as_str()),
        "{run_span:?}"
    );

    for step in ["s0", "s1"] {
        let s = one(&spans, "step span", |s| s.name == format!("step {step}"))?;
        ensure!(
            s.parent_span_id == run_span.span_id,
            "step {step} not under the run: {s:?}"
        );
        let attempt = one(&spans, "attempt span", |a| {
            a.name == "step.attempt" && a.parent_span_id == s.span_id
        })?;
        let exec = one(&spans, "executor span", |e| {
            e.name == "executor.run" && e.parent_span_id == attempt.span_id
        })?;
        ensure!(exec.attr("executor") == Some("local"), "{exec:?}");
    }

    // A subscription honours the `traceparent` sent in `connection_init`.
    let mut ws = tms_cli::ws::GqlWs::from_socket(tms_tests::ws::open(env.api_port).await?);
    let token = env.token.clone().unwrap_or_default();
    ws.send(json!({"type": "connection_init", "payload": {
        "Authorization": format!("Bearer {token}"),
        "traceparent": format!("00-{WS_TRACE_ID}-{CALLER_SPAN}-01"),
    }}))
    .await?;
    let ack = ws.recv_raw(Duration::from_secs(10)).await?;
    ensure!(
        matches!(&ack, Ok(v) if v["type"] == "connection_ack"),
        "{ack:?}"
    );
    ws.subscribe(
        "1",
        "subscription($r:ID!){runProgress(runId:$r){seq kind}}",
        json!({"r": run_id}),
    )
    .await?;
    let first = ws.recv_raw(Duration::from_secs(10)).await?;
    ensure!(matches!(&first, Ok(v) if v["type"] == "next"), "{first:?}");
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let sub: Vec<Span> = otlp
            .spans()
            .into_iter()
            .filter(|s| s.trace_id == WS_TRACE_ID)
            .collect();
        if let Some(s) = sub.first() {
            ensure!(
                s.name == "subscription runProgress" && s.parent_span_id == CALLER_SPAN,
                "{s:?}"
            );
            break;
        }
        ensure!(
            Instant::now() < deadline,
            "no subscription span: {:#?}",
            otlp.spans()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }

    // Log lines within the run carry its trace id.
    let log = env.workers[0].log_text();
    ensure!(
        log.contains(&format!("trace_id={TRACE_ID}")),
        "worker log lacks the trace id:\n{log}"
    );
    Ok(())
}

#[tokio::test]
async fn without_otel_variables_no_context_travels_and_traceparent_is_harmless() -> Result<()> {
    let env = TestEnv::start().await?;
    let wf = env.create_workflow("untraced", chain(1, "true")).await?;
    let resp: serde_json::Value = reqwest::Client::new()
        .post(env.api_url())
        .bearer_auth(env.token.as_deref().unwrap_or_default())
        .header("traceparent", format!("00-{TRACE_ID}-{CALLER_SPAN}-01"))
        .json(&json!({"query": "mutation($w:ID!){triggerRun(workflowId:$w){id}}", "variables": {"w": wf}}))
        .send()
        .await?
        .json()
        .await?;
    let run_id = resp["data"]["triggerRun"]["id"]
        .as_str()
        .ok_or_else(|| anyhow!("{resp}"))?;
    let run = env.wait_run(run_id, Duration::from_secs(60)).await?;
    ensure!(run["status"] == "SUCCEEDED", "{run}");
    // The job carried no trace context: nothing was injected.
    let payload = tms_tests::psql(
        &env.database_url,
        &["-c", "SELECT payload::text FROM job_outbox"],
    )?;
    ensure!(
        payload.contains("\"trace\":{}") || payload.contains("\"trace\": {}"),
        "{payload}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_dagger_query_is_a_span_under_its_executor_call() -> Result<()> {
    let otlp = Receiver::start().await?;
    let engine = tms_tests::dagger_engine::FakeEngine::start().await?;
    engine.on_exec(|_| tms_tests::dagger_engine::ExecOutput::ok("hi"));
    let mut worker_env = vec![
        ("TMS_EXECUTOR".to_string(), "dagger".to_string()),
        ("OTEL_EXPORTER_OTLP_ENDPOINT".to_string(), otlp.endpoint()),
        ("OTEL_BSP_SCHEDULE_DELAY".to_string(), "200".to_string()),
    ];
    worker_env.extend(engine.session_env());
    let env = TestEnv::start_with(EnvOptions::worker_env(worker_env)).await?;
    let wf = env
        .create_workflow(
            "traced-dagger",
            json!([{"name": "a", "image": "alpine:3.20", "run": "echo hi"}]),
        )
        .await?;
    let run_id = env.trigger(&wf).await?;
    let run = env.wait_run(&run_id, Duration::from_secs(60)).await?;
    ensure!(run["status"] == "SUCCEEDED", "{run}");

    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let spans = otlp.spans();
        let exec = spans
            .iter()
            .find(|s| s.name == "executor.run" && s.attr("executor") == Some("dagger"));
        if let Some(exec) = exec {
            let queries: Vec<&Span> = spans
                .iter()
                .filter(|s| s.name == "dagger.query" && s.parent_span_id == exec.span_id)
                .collect();
            if !queries.is_empty() {
                ensure!(
                    queries.iter().all(|q| q.trace_id == exec.trace_id),
                    "{queries:?}"
                );
                break;
            }
        }
        ensure!(
            Instant::now() < deadline,
            "no dagger.query under executor.run: {spans:#?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    Ok(())
}
