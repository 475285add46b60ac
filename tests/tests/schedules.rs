//! Cron schedules against the real binaries: every tick fires exactly once however many
//! processes run the scheduler, disabling stops it, a killed leader is replaced without doubling
//! a tick, fires missed while no scheduler ran are recorded once (not replayed), and invalid
//! schedules are refused with the field paths named. Times are read from Postgres' clock, the
//! one the scheduler uses.

use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use serde_json::{Value, json};
use tms_tests::{EnvOptions, TestEnv, error_code, psql};
use tokio::time::Instant;

const STEPS: &str = r#"[{"name":"a","image":"alpine:3.20","run":"true"}]"#;
const EVERY_2S: &str = "*/2 * * * * *";
/// The scheduler's lease (core `SchedulerConfig::default`): a dead leader's longest reign.
const LEASE_SECONDS: f64 = 3.0;

fn sql(env: &TestEnv, q: &str) -> Result<String> {
    Ok(psql(&env.database_url, &["-c", q])?.trim().to_string())
}

fn db_now(env: &TestEnv) -> Result<f64> {
    Ok(sql(env, "SELECT extract(epoch FROM clock_timestamp())")?.parse()?)
}

/// One scheduled run as stored: its id, tick and creation time (epoch seconds).
#[derive(Debug, Clone)]
struct Fire {
    run: String,
    tick: f64,
    created: f64,
}

fn fires(env: &TestEnv, wf: &str) -> Result<Vec<Fire>> {
    let text = sql(
        env,
        &format!(
            "SELECT id, extract(epoch FROM scheduled_for), extract(epoch FROM created_at), trigger \
             FROM runs WHERE workflow_id = '{wf}' ORDER BY scheduled_for, created_at"
        ),
    )?;
    let mut out = Vec::new();
    for line in text.lines().filter(|l| !l.is_empty()) {
        let p: Vec<&str> = line.split('|').collect();
        ensure!(
            p.len() == 4 && p[3] == "schedule" && !p[1].is_empty(),
            "a run of a scheduled workflow that is not a scheduled run: {line}"
        );
        out.push(Fire {
            run: p[0].to_string(),
            tick: p[1].parse()?,
            created: p[2].parse()?,
        });
    }
    Ok(out)
}

/// Polls `probe` every 100 ms until it yields a value or `timeout` passes.
async fn wait_for<T>(
    what: &str,
    timeout: Duration,
    mut probe: impl FnMut() -> Result<Option<T>>,
) -> Result<T> {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = probe()? {
            return Ok(v);
        }
        if Instant::now() > deadline {
            bail!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Waits until Postgres' clock reaches `t` (epoch seconds).
async fn wait_db_time(env: &TestEnv, t: f64) -> Result<()> {
    let wait = Duration::from_secs_f64((t - db_now(env)?).max(0.0) + 10.0);
    wait_for(&format!("db clock at {t}"), wait, || {
        Ok((db_now(env)? >= t).then_some(()))
    })
    .await
}

async fn create_scheduled(env: &TestEnv, name: &str, cron: &str) -> Result<(String, f64)> {
    let steps: Value = serde_json::from_str(STEPS)?;
    let d = env
        .gql(
            "mutation($i:WorkflowInput!){createWorkflow(input:$i){id schedule{cron timezone enabled nextFireAt}}}",
            json!({"i": {"name": name, "steps": steps, "schedule": {"cron": cron}}}),
        )
        .await?;
    let wf = &d["createWorkflow"];
    ensure!(
        wf["schedule"]["cron"] == cron
            && wf["schedule"]["timezone"] == "UTC"
            && wf["schedule"]["enabled"] == true
            && wf["schedule"]["nextFireAt"].is_string(),
        "schedule as created: {wf}"
    );
    let id = wf["id"].as_str().context("workflow id")?.to_string();
    let since: f64 = sql(
        env,
        &format!(
            "SELECT extract(epoch FROM schedule_fired_through) FROM workflows WHERE id = '{id}'"
        ),
    )?
    .parse()?;
    Ok((id, since))
}

/// The ticks of a two-second schedule in `(after, through]`.
fn ticks(after: f64, through: f64) -> Vec<i64> {
    let first = (after.floor() as i64 / 2 + 1) * 2;
    (first..)
        .step_by(2)
        .take_while(|t| (*t as f64) <= through)
        .collect()
}

fn tick_secs(fires: &[Fire]) -> Result<Vec<i64>> {
    fires
        .iter()
        .map(|f| {
            ensure!(f.tick.fract() == 0.0, "tick not on a whole second: {f:?}");
            Ok(f.tick as i64)
        })
        .collect()
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

async fn set_enabled(env: &TestEnv, wf: &str, enabled: bool) -> Result<Value> {
    env.gql_raw(
        env.token.as_deref(),
        "mutation($w:ID!,$e:Boolean!){setScheduleEnabled(workflowId:$w,enabled:$e){id schedule{enabled nextFireAt}}}",
        json!({"w": wf, "e": enabled}),
    )
    .await
}

#[tokio::test]
async fn every_tick_fires_once_across_three_schedulers_until_disabled() -> Result<()> {
    // The api, a worker and a second api: three scheduler loops on one database.
    let mut env = TestEnv::start().await?;
    env.start_extra_api().await?;
    let (wf, since) = create_scheduled(&env, "every-2s", EVERY_2S).await?;

    wait_db_time(&env, since + 10.0).await?;
    let before = db_now(&env)?;
    let resp = set_enabled(&env, &wf, false).await?;
    let after = db_now(&env)?;
    ensure!(
        resp["data"]["setScheduleEnabled"]["schedule"]
            == json!({"enabled": false, "nextFireAt": null}),
        "disable: {resp}"
    );
    // A poll (250 ms) and more than a tick after the disable committed.
    wait_db_time(&env, after + 3.0).await?;

    let got = fires(&env, &wf)?;
    let secs = tick_secs(&got)?;
    let last = *secs.last().context("no run was fired")?;
    // Every tick due a second before the disable must have fired; none after it may.
    let must = *ticks(since, before - 1.0)
        .last()
        .context("window too short")?;
    ensure!(
        last >= must && (last as f64) <= after,
        "last tick {last}: expected at least {must} (disable sent at {before}) and none after \
         {after}: {got:?}"
    );
    let want = ticks(since, last as f64);
    ensure!(
        secs == want,
        "ticks fired {secs:?}, expected each tick after {since} through {last} exactly once: {want:?}"
    );
    ensure!(
        want.len() >= 5,
        "10 s of a 2 s schedule fired {}",
        want.len()
    );

    // The same runs through the API, all SCHEDULE with their tick.
    let d = env
        .gql(
            "query($w:ID!){workflow(id:$w){runs(first:100){edges{node{trigger scheduledFor}}}}}",
            json!({"w": wf}),
        )
        .await?;
    let nodes = d["workflow"]["runs"]["edges"].as_array().context("runs")?;
    ensure!(nodes.len() == got.len(), "API runs {d} vs stored {got:?}");
    ensure!(
        nodes
            .iter()
            .all(|e| e["node"]["trigger"] == "SCHEDULE" && e["node"]["scheduledFor"].is_string()),
        "{d}"
    );

    let mut late: Vec<f64> = got.iter().map(|f| f.created - f.tick).collect();
    late.sort_by(f64::total_cmp);
    eprintln!(
        "fire lateness over {} ticks: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        late.len(),
        percentile(&late, 0.5) * 1e3,
        percentile(&late, 0.99) * 1e3,
        late[late.len() - 1] * 1e3
    );
    ensure!(late[0] >= 0.0, "a run was created before its tick: {got:?}");
    Ok(())
}

#[tokio::test]
async fn a_killed_leader_is_replaced_and_no_tick_is_doubled() -> Result<()> {
    let mut env = TestEnv::start_with(EnvOptions::api_only()).await?;
    env.start_extra_api().await?;
    env.start_extra_api().await?;
    let (wf, since) = create_scheduled(&env, "leader", EVERY_2S).await?;
    wait_for("two fires", Duration::from_secs(20), || {
        Ok((fires(&env, &wf)?.len() >= 2).then_some(()))
    })
    .await?;

    let lease = sql(&env, "SELECT holder || '|' || epoch FROM scheduler_lease")?;
    let (holder, epoch) = lease.split_once('|').context("lease row")?;
    let pid: u32 = holder.split(':').nth(1).context("holder")?.parse()?;
    let leader = env
        .api
        .iter_mut()
        .chain(env.extra_apis.iter_mut())
        .find(|p| p.pid() == pid)
        .with_context(|| format!("the leader {holder} is not a process this test started"))?;
    leader.kill9();
    let killed_at = db_now(&env)?;

    // Another process takes the lease over (new holder, higher epoch) and fires on.
    let later = wait_for(
        "three fires after the kill",
        Duration::from_secs(30),
        || {
            let f = fires(&env, &wf)?;
            Ok((f.iter().filter(|f| f.tick > killed_at).count() >= 3).then_some(f))
        },
    )
    .await?;
    let now_lease = sql(&env, "SELECT holder || '|' || epoch FROM scheduler_lease")?;
    let (new_holder, new_epoch) = now_lease.split_once('|').context("lease row")?;
    ensure!(
        new_holder != holder && new_epoch.parse::<i64>()? > epoch.parse::<i64>()?,
        "lease before the kill {lease}, after {now_lease}"
    );

    let secs = tick_secs(&later)?;
    let mut distinct = secs.clone();
    distinct.dedup();
    ensure!(distinct == secs, "a tick fired twice: {later:?}");
    ensure!(
        secs.iter().all(|t| t % 2 == 0 && (*t as f64) > since),
        "off-schedule ticks: {secs:?}"
    );
    // Before the kill and after the takeover every tick fired; the gap in between is at most
    // the lease plus a tick, and is recorded as missed in the first run after it.
    let gaps: Vec<i64> = secs.windows(2).map(|w| w[1] - w[0]).collect();
    let big: Vec<i64> = gaps.iter().copied().filter(|g| *g > 2).collect();
    let resumed = later
        .iter()
        .find(|f| f.tick > killed_at)
        .map(|f| f.created - killed_at)
        .unwrap_or_default();
    eprintln!("leader killed; first fire by its successor {resumed:.2} s later; gaps {gaps:?}");
    ensure!(
        big.len() <= 1 && big.iter().all(|g| (*g as f64) <= LEASE_SECONDS + 4.0),
        "gaps between fires {gaps:?} (ticks {secs:?})"
    );
    Ok(())
}

#[tokio::test]
async fn fires_missed_while_no_scheduler_ran_are_recorded_once() -> Result<()> {
    let off = vec![("TMS_SCHEDULER_ENABLED".to_string(), "false".to_string())];
    let mut env = TestEnv::start_with(EnvOptions {
        api_env: off,
        start_worker: false,
        ..Default::default()
    })
    .await?;
    let (wf, since) = create_scheduled(&env, "missed", EVERY_2S).await?;
    wait_db_time(&env, since + 7.0).await?;
    let none = fires(&env, &wf)?;
    ensure!(none.is_empty(), "fired with every scheduler off: {none:?}");

    env.set_api_env(vec![(
        "TMS_SCHEDULER_ENABLED".to_string(),
        "true".to_string(),
    )]);
    env.start_extra_api().await?;
    let first = wait_for("the first fire", Duration::from_secs(20), || {
        Ok(fires(&env, &wf)?.into_iter().next())
    })
    .await?;
    // It is the latest tick due when it fired, not the oldest missed one.
    ensure!(
        first.created - first.tick < 2.0 && first.tick - since >= 5.0,
        "first fire {first:?} (schedule set at {since})"
    );
    let missed: i64 = sql(
        &env,
        &format!(
            "SELECT detail->>'missedTicks' FROM audit_log WHERE action = 'run.trigger' AND resource = 'run:{}'",
            first.run
        ),
    )?
    .parse()
    .context("audit row of the first fire")?;
    let skipped = ticks(since, first.tick).len() as i64 - 1;
    ensure!(
        missed == skipped && missed >= 3,
        "missedTicks {missed}, ticks passed over {skipped}"
    );
    let message = sql(
        &env,
        &format!(
            "SELECT message FROM run_events WHERE run_id = '{}' ORDER BY seq LIMIT 1",
            first.run
        ),
    )?;
    ensure!(
        message.contains(&format!("({skipped} earlier ticks missed)")),
        "first event: {message}"
    );
    // No burst: the next fires are the regular ticks after the first.
    let next = wait_for("two more fires", Duration::from_secs(20), || {
        let f = fires(&env, &wf)?;
        Ok((f.len() >= 3).then_some(f))
    })
    .await?;
    let secs = tick_secs(&next)?;
    let want = ticks(first.tick - 2.0, secs[secs.len() - 1] as f64);
    ensure!(
        secs == want,
        "after catching up: {secs:?}, expected {want:?}"
    );
    Ok(())
}

#[tokio::test]
async fn invalid_schedules_are_refused_and_schedules_can_be_edited() -> Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let steps: Value = serde_json::from_str(STEPS)?;
    let bad_step = json!([{"name":"BAD","image":"alpine:3.20","run":"true"}]);
    let create = "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}";
    let resp = env
        .gql_raw(
            env.token.as_deref(),
            create,
            json!({"i": {"name": "bad", "steps": bad_step,
                   "schedule": {"cron": "61 * * * *", "timezone": "Mars/Olympus"}}}),
        )
        .await?;
    ensure!(error_code(&resp) == "VALIDATION", "{resp}");
    let mut fields: Vec<String> = resp["errors"][0]["extensions"]["details"]
        .as_array()
        .context("details")?
        .iter()
        .filter_map(|d| d["field"].as_str().map(String::from))
        .collect();
    fields.sort();
    ensure!(
        fields
            == [
                "input.schedule.cron",
                "input.schedule.timezone",
                "input.steps[0].name"
            ],
        "every problem named together: {resp}"
    );
    for (cron, why) in [
        ("0 9 * * 1-5", "day names"),
        ("* * * *", "five fields"),
        ("0 0 0 1 1 * 2030", "five fields"),
    ] {
        let resp = env
            .gql_raw(
                env.token.as_deref(),
                create,
                json!({"i": {"name": "bad", "steps": steps, "schedule": {"cron": cron}}}),
            )
            .await?;
        let ext = &resp["errors"][0]["extensions"];
        ensure!(
            ext["code"] == "VALIDATION"
                && ext["field"] == "input.schedule.cron"
                && ext["reason"].as_str().unwrap_or_default().contains(why),
            "cron {cron:?}: {resp}"
        );
    }
    let count = sql(&env, "SELECT count(*) FROM workflows")?;
    ensure!(count == "0", "refused inputs wrote {count} workflows");

    // Without a schedule: setScheduleEnabled is a VALIDATION error; unknown ids NOT_FOUND.
    let plain = env.create_workflow("plain", steps.clone()).await?;
    let resp = set_enabled(&env, &plain, true).await?;
    ensure!(
        error_code(&resp) == "VALIDATION"
            && resp["errors"][0]["extensions"]["field"] == "workflowId",
        "{resp}"
    );
    let resp = set_enabled(&env, &uuid::Uuid::new_v4().to_string(), true).await?;
    ensure!(error_code(&resp) == "NOT_FOUND", "{resp}");

    // Adding a schedule in an edit, in a time zone, disabled; then enabling it; then removing it.
    let update = "mutation($w:ID!,$i:WorkflowInput!){updateWorkflow(id:$w,input:$i){schedule{cron timezone enabled nextFireAt}}}";
    let d = env
        .gql(
            update,
            json!({"w": plain, "i": {"name": "plain", "steps": steps,
                   "schedule": {"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin", "enabled": false}}}),
        )
        .await?;
    ensure!(
        d["updateWorkflow"]["schedule"]
            == json!({"cron": "0 9 * * MON-FRI", "timezone": "Europe/Berlin",
                      "enabled": false, "nextFireAt": null}),
        "{d}"
    );
    let resp = set_enabled(&env, &plain, true).await?;
    let next = resp["data"]["setScheduleEnabled"]["schedule"]["nextFireAt"]
        .as_str()
        .with_context(|| format!("enabled: {resp}"))?;
    let next: chrono::DateTime<chrono::Utc> = next.parse()?;
    let local = next.with_timezone(&chrono_tz::Europe::Berlin);
    ensure!(
        local.format("%H:%M:%S").to_string() == "09:00:00"
            && !matches!(
                chrono::Datelike::weekday(&local),
                chrono::Weekday::Sat | chrono::Weekday::Sun
            ),
        "next fire {next} is not 09:00 on a weekday in Berlin"
    );
    let audit = sql(
        &env,
        &format!(
            "SELECT detail::text FROM audit_log WHERE action = 'workflow.update' AND resource = 'workflow:{plain}' ORDER BY seq DESC LIMIT 1"
        ),
    )?;
    ensure!(
        audit.contains(r#""schedule_enabled": true"#),
        "audit: {audit}"
    );
    let d = env
        .gql(
            update,
            json!({"w": plain, "i": {"name": "plain", "steps": steps}}),
        )
        .await?;
    ensure!(d["updateWorkflow"]["schedule"].is_null(), "{d}");
    Ok(())
}
