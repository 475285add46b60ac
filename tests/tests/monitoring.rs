//! Monitoring end to end: clean `/metrics` on api and worker, a real Prometheus scraping them
//! while runs execute and evaluating every dashboard panel and alert rule, readiness that
//! follows Redis and a hung or stopped Postgres, and the monitoring queries with their roles.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};
use serde_json::{Value, json};
use tms_tests::prometheus::{self, Prometheus, expand_grafana, metric_names};
use tms_tests::proxy::{Mode, Proxy};
use tms_tests::{
    ADMIN_EMAIL, ADMIN_PASSWORD, EnvOptions, PrivateRedis, TestEnv, chain, error_code, psql,
};

fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn http() -> reqwest::Client {
    // A probe that hung would fail the request instead of the test waiting forever.
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .expect("client")
}

async fn get_text(url: &str) -> Result<(u16, String)> {
    let r = http()
        .get(url)
        .send()
        .await
        .with_context(|| format!("GET {url}"))?;
    Ok((r.status().as_u16(), r.text().await?))
}

/// Every PromQL expression of every dashboard panel, with where it comes from.
fn dashboard_exprs() -> Result<Vec<(String, String)>> {
    let dir = repo_root().join("dashboards/grafana");
    let mut out = Vec::new();
    for entry in std::fs::read_dir(&dir)? {
        let path = entry?.path();
        if path.extension().is_none_or(|e| e != "json") {
            continue;
        }
        let d: Value = serde_json::from_str(&std::fs::read_to_string(&path)?)?;
        ensure!(
            d["templating"]["list"]
                .as_array()
                .is_some_and(|l| l.iter().any(|v| v["type"] == "datasource")),
            "{} has no datasource variable",
            path.display()
        );
        for p in d["panels"].as_array().into_iter().flatten() {
            ensure!(
                p["datasource"]["uid"] == "${datasource}",
                "{}: panel {} not on the datasource variable",
                path.display(),
                p["title"]
            );
            for t in p["targets"].as_array().into_iter().flatten() {
                let expr = t["expr"]
                    .as_str()
                    .ok_or_else(|| anyhow!("target without expr: {t}"))?;
                out.push((
                    format!("{} / {}", path.display(), p["title"]),
                    expr.to_string(),
                ));
            }
        }
    }
    ensure!(
        out.len() >= 20,
        "too few panel queries found: {}",
        out.len()
    );
    Ok(out)
}

#[tokio::test]
async fn metrics_are_clean_and_every_dashboard_and_alert_query_names_scraped_series() -> Result<()>
{
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let worker_port = env.start_worker(&[]).await?;
    let ok = env.create_workflow("mon-ok", chain(2, "echo hi")).await?;
    let bad = env.create_workflow("mon-bad", chain(1, "exit 3")).await?;

    let prom = Prometheus::start(
        &[
            ("tms-api", format!("127.0.0.1:{}", env.api_port)),
            ("tms-worker", format!("127.0.0.1:{worker_port}")),
        ],
        &[&repo_root().join("dashboards/prometheus/tms.rules.yml")],
        "1s",
    )
    .await?;

    // Runs execute while Prometheus scrapes.
    let mut runs = Vec::new();
    for _ in 0..3 {
        runs.push(env.trigger(&ok).await?);
    }
    runs.push(env.trigger(&bad).await?);
    for r in &runs {
        env.wait_run(r, Duration::from_secs(60)).await?;
    }
    // Traffic of every kind the dashboards show: a refused and an unauthenticated operation.
    let refused = env.gql_raw(None, "{ me { id } }", json!({})).await?;
    ensure!(error_code(&refused) == "UNAUTHENTICATED", "{refused}");

    // Both expositions pass promtool and carry the run outcomes.
    let (_, api_text) = get_text(&format!("http://127.0.0.1:{}/metrics", env.api_port)).await?;
    let (_, worker_text) = get_text(&format!("http://127.0.0.1:{worker_port}/metrics")).await?;
    prometheus::check_metrics(&api_text).context("api /metrics")?;
    prometheus::check_metrics(&worker_text).context("worker /metrics")?;
    for needle in [
        "tms_runs_total{status=\"succeeded\"} 3",
        "tms_runs_total{status=\"failed\"} 1",
        "tms_steps_total{status=\"succeeded\"} 6",
        "tms_worker_slots{state=\"idle\"} 4",
        "process_resident_memory_bytes",
    ] {
        ensure!(
            worker_text.contains(needle),
            "worker /metrics lacks `{needle}`:\n{worker_text}"
        );
    }
    for needle in [
        "tms_graphql_operations_total{code=\"OK\",name=\"triggerRun\",type=\"mutation\"} 4",
        "tms_graphql_operations_total{code=\"UNAUTHENTICATED\",name=\"me\",type=\"query\"} 1",
        "tms_http_requests_total{method=\"POST\",route=\"/graphql\",status=\"200\"}",
        "tms_auth_events_total{action=\"auth.login\",outcome=\"success\"} 1",
        "tms_component_up{component=\"postgres\"} 1",
    ] {
        ensure!(
            api_text.contains(needle),
            "api /metrics lacks `{needle}`:\n{api_text}"
        );
    }
    ensure!(
        !api_text.contains(ADMIN_EMAIL),
        "an email leaked into a label"
    );

    // Scraped at least a few times after the runs ended, by both jobs.
    prom.wait_for(
        "count_over_time(tms_runs_total{job=\"tms-worker\",status=\"failed\"}[1m]) >= 3 and tms_runs_total{job=\"tms-worker\",status=\"failed\"} == 1",
        Duration::from_secs(30),
    )
    .await?;
    prom.wait_for("up{job=\"tms-api\"} == 1", Duration::from_secs(30))
        .await?;
    let names = prom.metric_names().await?;

    let mut problems = Vec::new();
    for (where_, expr) in dashboard_exprs()? {
        let expr = expand_grafana(&expr);
        if let Err(e) = prom.query(&expr).await {
            problems.push(format!("{where_}: `{expr}` does not evaluate: {e:#}"));
        }
        for n in metric_names(&expr) {
            if !names.contains(&n) {
                problems.push(format!("{where_}: `{n}` is not a scraped series"));
            }
        }
    }

    // The alert rules: loaded, evaluated by Prometheus without error, naming real series.
    let deadline = Instant::now() + Duration::from_secs(30);
    let rules = loop {
        let rules = prom.rules().await?;
        let pending: Vec<&Value> = rules.iter().filter(|r| r["health"] != "ok").collect();
        if !rules.is_empty() && pending.is_empty() {
            break rules;
        }
        if Instant::now() > deadline {
            bail!(
                "rules not all evaluated ok: {pending:?}\n{}",
                prom.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ensure!(
        rules.len() >= 11,
        "expected every alert rule loaded: {rules:?}"
    );
    for r in &rules {
        let expr = r["query"].as_str().unwrap_or_default();
        ensure!(
            r["annotations"]["runbook_url"]
                .as_str()
                .is_some_and(|u| u.starts_with("docs/monitoring.md#")),
            "rule without runbook: {r}"
        );
        for n in metric_names(expr) {
            if !names.contains(&n) {
                problems.push(format!("rule {}: `{n}` is not a scraped series", r["name"]));
            }
        }
    }
    ensure!(
        problems.is_empty(),
        "{}\nscraped names: {names:?}",
        problems.join("\n")
    );

    // The run counters Prometheus saw match what happened.
    let failed = prom
        .query("sum(tms_runs_total{job=\"tms-worker\",status=\"failed\"})")
        .await?;
    ensure!(failed["result"][0]["value"][1] == "1", "{failed}");
    Ok(())
}

/// Logs in a new user holding `role`, given the admin's password hash by psql.
async fn user_with_role(env: &TestEnv, email: &str, role: &str) -> Result<String> {
    psql(
        &env.database_url,
        &[
            "-c",
            &format!(
                "INSERT INTO users (id, email, display_name, password_hash, disabled, created_at)
                 SELECT gen_random_uuid(), '{email}', '{role}', password_hash, false, now()
                 FROM users WHERE email = '{ADMIN_EMAIL}';
                 INSERT INTO user_roles (user_id, role) SELECT id, '{role}' FROM users WHERE email = '{email}';"
            ),
        ],
    )?;
    let d = env
        .gql_raw(
            None,
            "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken}}",
            json!({"e": email, "p": ADMIN_PASSWORD}),
        )
        .await?;
    d["data"]["login"]["accessToken"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| anyhow!("login of {email} failed: {d}"))
}

const MONITORING: &str = "{ systemHealth { status components { name status latencyMs detail } }
  queueStats { pending running retrying dead oldestPendingAgeSeconds }
  workers { name version startedAt lastHeartbeatAt busySlots totalSlots stale }
  runStats(windowSeconds: 3600) { total succeeded failed cancelled timedOut running
    p50DurationSeconds p95DurationSeconds failureRate cacheHitRatio } }";

#[tokio::test]
async fn monitoring_queries_serve_monitors_and_refuse_viewers() -> Result<()> {
    let env = TestEnv::start().await?;
    let wf = env.create_workflow("mon-q", chain(2, "true")).await?;
    let bad = env.create_workflow("mon-q-bad", chain(1, "exit 1")).await?;
    let a = env.trigger(&wf).await?;
    let b = env.trigger(&bad).await?;
    env.wait_run(&a, Duration::from_secs(60)).await?;
    env.wait_run(&b, Duration::from_secs(60)).await?;

    let monitor = user_with_role(&env, "mon@tms.test", "monitor").await?;
    let viewer = user_with_role(&env, "view@tms.test", "viewer").await?;

    // The worker heartbeats within a few seconds of starting.
    let deadline = Instant::now() + Duration::from_secs(20);
    let d = loop {
        let d = env.gql_raw(Some(&monitor), MONITORING, json!({})).await?;
        if d["data"]["workers"]
            .as_array()
            .is_some_and(|w| !w.is_empty())
        {
            break d;
        }
        ensure!(Instant::now() < deadline, "no worker heartbeat: {d}");
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    ensure!(d["errors"].is_null(), "{d}");
    let data = &d["data"];
    ensure!(data["systemHealth"]["status"] == "OK", "{data}");
    let comps: Vec<&str> = data["systemHealth"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|c| c["name"].as_str())
        .collect();
    ensure!(comps == ["postgres", "redis", "workers"], "{comps:?}");
    let w = &data["workers"][0];
    ensure!(
        w["totalSlots"] == 4 && w["busySlots"] == 0 && w["stale"] == false,
        "{w}"
    );
    let s = &data["runStats"];
    ensure!(
        s["total"] == 2 && s["succeeded"] == 1 && s["failed"] == 1,
        "{s}"
    );
    ensure!(s["failureRate"] == 0.5 && s["running"] == 0, "{s}");
    ensure!(s["p50DurationSeconds"].is_number(), "{s}");
    let q = &data["queueStats"];
    ensure!(q["pending"] == 0 && q["dead"] == 0, "{q}");

    // Viewers are refused, per field, with FORBIDDEN.
    for field in [
        "systemHealth { status }",
        "queueStats { pending }",
        "workers { name }",
        "runStats(windowSeconds: 60) { total }",
    ] {
        let r = env
            .gql_raw(Some(&viewer), &format!("{{ {field} }}"), json!({}))
            .await?;
        ensure!(error_code(&r) == "FORBIDDEN", "{field}: {r}");
    }
    // The window is validated and the error names the field.
    for bad_window in [0, -5, 30 * 24 * 3600 + 1] {
        let r = env
            .gql_raw(
                Some(&monitor),
                "query($w:Int!){ runStats(windowSeconds: $w) { total } }",
                json!({"w": bad_window}),
            )
            .await?;
        ensure!(error_code(&r) == "VALIDATION", "{bad_window}: {r}");
        ensure!(r.to_string().contains("windowSeconds"), "{r}");
    }

    // runStats reads through the created_at index, not a scan of every run (the planner is
    // told to avoid sequential scans so the small test table does not hide the plan).
    let sql = "SET enable_seqscan = off; EXPLAIN WITH w AS (SELECT id, status FROM runs WHERE created_at >= now() - make_interval(secs => 3600)) SELECT count(*) FROM w";
    let plan = psql(&env.database_url, &["-c", sql])?;
    ensure!(
        plan.contains("runs_created_at"),
        "runStats' window does not use its index:\n{plan}"
    );
    Ok(())
}

async fn readyz(port: u16) -> Result<(u16, Value)> {
    let (status, body) = get_text(&format!("http://127.0.0.1:{port}/readyz")).await?;
    Ok((
        status,
        serde_json::from_str(&body).with_context(|| body.clone())?,
    ))
}

/// Polls `/readyz` until `component` has `want` status; every answer must come back within
/// the client's timeout (each probe is bounded by 2 s).
async fn await_component(port: u16, component: &str, want: &str) -> Result<Value> {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let (code, body) = readyz(port).await?;
        if body["components"][component]["status"] == want {
            let expect_code = if body["status"] == "ok" { 200 } else { 503 };
            ensure!(code == expect_code, "{code}: {body}");
            return Ok(body);
        }
        ensure!(
            Instant::now() < deadline,
            "{component} never {want}: {code} {body}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn health_of(env: &TestEnv, port: u16, component: &str) -> Result<String> {
    let d = env
        .gql_at(
            port,
            env.token.as_deref(),
            "{ systemHealth { status components { name status detail } } }",
            json!({}),
        )
        .await?;
    let c = d["data"]["systemHealth"]["components"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|c| c["name"] == component)
        .ok_or_else(|| anyhow!("no {component}: {d}"))?;
    Ok(c["status"].as_str().unwrap_or_default().to_string())
}

#[tokio::test]
async fn readiness_follows_redis_and_a_hung_or_stopped_postgres() -> Result<()> {
    let mut redis = PrivateRedis::start()?;
    let mut env = TestEnv::start_with(EnvOptions {
        redis_url: Some(redis.url()),
        ..EnvOptions::api_only()
    })
    .await?;
    // A second api reaches Postgres through a proxy this test controls.
    let pg_port: u16 = env
        .database_url
        .split(['@', '/'])
        .find_map(|p| p.strip_prefix("127.0.0.1:").and_then(|x| x.parse().ok()))
        .ok_or_else(|| anyhow!("no loopback port in {}", env.database_url))?;
    let proxy = Proxy::start(pg_port).await?;
    let direct_url = env.database_url.clone();
    env.database_url = direct_url.replace(
        &format!("127.0.0.1:{pg_port}"),
        &format!("127.0.0.1:{}", proxy.port),
    );
    let port = env.start_extra_api().await?;
    env.database_url = direct_url;

    let (code, body) = readyz(port).await?;
    ensure!(code == 200 && body["status"] == "ok", "{code} {body}");
    ensure!(
        body["components"]["postgres"]["latencyMs"].is_number(),
        "{body}"
    );

    // Redis stops: reported down (503, degraded), in /readyz and in systemHealth.
    redis.stop();
    let body = await_component(port, "redis", "down").await?;
    ensure!(
        body["status"] == "degraded" && body["components"]["postgres"]["status"] == "ok",
        "{body}"
    );
    ensure!(health_of(&env, port, "redis").await? == "DOWN");
    redis.spawn()?;
    await_component(port, "redis", "ok").await?;
    ensure!(health_of(&env, port, "redis").await? == "OK");

    // Postgres hangs: the probe gives up at its deadline and says so.
    proxy.set(Mode::Hang);
    let started = Instant::now();
    let body = await_component(port, "postgres", "down").await?;
    ensure!(
        body["components"]["postgres"]["detail"] == "no answer within 2s",
        "{body}"
    );
    let took = started.elapsed();
    proxy.set(Mode::Pass);
    await_component(port, "postgres", "ok").await?;
    ensure!(health_of(&env, port, "postgres").await? == "OK");
    eprintln!("hung postgres reported after {took:?}");

    // Postgres stops (connections refused): reported down, recovered when it returns.
    proxy.set(Mode::Refuse);
    let body = await_component(port, "postgres", "down").await?;
    ensure!(
        body["components"]["postgres"]["detail"] == "unreachable",
        "{body}"
    );
    // systemHealth authenticates its caller against Postgres: without it the answer is a
    // prompt UNAVAILABLE rather than a report.
    let d = env
        .gql_at(
            port,
            env.token.as_deref(),
            "{ systemHealth { status } }",
            json!({}),
        )
        .await?;
    ensure!(!d["errors"].is_null(), "{d}");
    proxy.set(Mode::Pass);
    await_component(port, "postgres", "ok").await?;
    ensure!(health_of(&env, port, "postgres").await? == "OK");
    Ok(())
}
