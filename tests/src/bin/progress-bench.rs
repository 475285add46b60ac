//! Subscription fan-out benchmark, mirroring shared/peer-bench/graphql-ws: 1,000 WebSocket
//! subscribers on one api instance (`runEvents`), events published on the Redis bus as a
//! worker does, 5 warm-up then 50 measured events 200 ms apart. Prints publish → receive
//! latencies and the delivery rate. Then a burst phase measures the sustained events/s one api
//! instance delivers to all subscribers.
//!
//! SUBS is a comma-separated list of subscriber counts (`scripts/bench fanout` runs
//! `1000,10000`), each measured on a fresh api whose memory (VmRSS once every subscription is
//! registered, VmRSS and VmHWM at the end) is read from /proc. Figures go to the `fanout` JSON.
//!
//! Run with `scripts/bench fanout` (starts Postgres and Redis, builds in release mode).

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::json;
use tms_tests::bench::{Report, raise_fd_limit, rss_mib};
use tms_tests::ws::{GqlWs, WsEvent};
use tms_tests::{EnvOptions, TestEnv};

fn event(n: u64, workflow: &str) -> String {
    json!({
        "run_id": uuid::Uuid::new_v4(), "seq": n as i64, "kind": "run", "status": "running",
        "step": null, "percent": 0.0, "eta_seconds": null, "message": format!("{}", now_micros()),
        "at": "2026-01-01T00:00:00Z", "workflow_id": workflow, "step_percent": null
    })
    .to_string()
}

fn now_micros() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros()
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    raise_fd_limit();
    let list: String = tms_tests::env_or("SUBS", "1000".to_string());
    let measured: u64 = tms_tests::env_or("EVENTS", 50);
    let mut report = Report::new("fanout");
    report.setting("events", measured);
    let mut result = Ok(());
    for subs in list
        .split(',')
        .filter_map(|s| s.trim().parse::<usize>().ok())
    {
        if let Err(e) = fanout(subs, measured, &mut report).await {
            eprintln!("fan-out to {subs} subscribers failed: {e:#}");
            result = Err(e);
        }
    }
    report.write()?;
    result
}

async fn fanout(subs: usize, measured: u64, report: &mut Report) -> anyhow::Result<()> {
    let env = TestEnv::start_with(EnvOptions::api_only()).await?;
    let api_pid = env.api.as_ref().map(|p| p.pid()).unwrap_or(0);
    let (idle_rss, _) = rss_mib(api_pid)?;
    let token = env.token.clone().unwrap();
    let wf = uuid::Uuid::new_v4().to_string();

    let t0 = Instant::now();
    let mut sockets = Vec::with_capacity(subs);
    for chunk in 0..subs.div_ceil(100) {
        let batch: Vec<_> = (0..100.min(subs - chunk * 100))
            .map(|_| GqlWs::connect(env.api_port, &token))
            .collect();
        for ws in futures::future::join_all(batch).await {
            let mut ws = ws?;
            // Registered before anything is published.
            ws.subscribe_registered(
                "e",
                "subscription($w: ID) { runEvents(workflowId: $w) { seq message } }",
                json!({"w": wf}),
            )
            .await?;
            sockets.push(ws);
        }
    }
    let opened = t0.elapsed();
    let (subscribed_rss, _) = rss_mib(api_pid)?;

    // Each reader keeps its own deliveries, (event number, latency in ms), until the end: one
    // lock shared by 10,000 readers made the client, which shares the api's two cores, pay for
    // contention on every delivery. Progress is a counter.
    let delivered = Arc::new(AtomicUsize::new(0));
    let mut readers = Vec::new();
    for mut ws in sockets {
        let delivered = delivered.clone();
        readers.push(tokio::spawn(async move {
            let mut mine = Vec::<(u64, f64)>::with_capacity(128);
            let mut dropped = false;
            loop {
                match ws.next(Duration::from_secs(30)).await {
                    Ok(WsEvent::Next(d)) => {
                        let e = &d["runEvents"];
                        let sent: u128 = e["message"]
                            .as_str()
                            .and_then(|m| m.parse().ok())
                            .unwrap_or(0);
                        let lat = (now_micros().saturating_sub(sent)) as f64 / 1000.0;
                        mine.push((e["seq"].as_u64().unwrap_or(0), lat));
                        delivered.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(WsEvent::Error(e)) => {
                        dropped = e[0]["extensions"]["code"] == "SLOW_CONSUMER";
                        break;
                    }
                    Ok(WsEvent::Closed(code, _)) => {
                        dropped = code == Some(4008);
                        break;
                    }
                    _ => break,
                }
            }
            (mine, dropped)
        }));
    }

    let client = redis::Client::open(env.redis_url.as_str())?;
    let mut conn = client.get_multiplexed_async_connection().await?;
    for n in 0..5 {
        redis::cmd("PUBLISH")
            .arg(tms_tests::EVENTS_CHANNEL)
            .arg(event(n, &wf))
            .query_async::<()>(&mut conn)
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let first_measured = 1000;
    for n in 0..measured {
        redis::cmd("PUBLISH")
            .arg(tms_tests::EVENTS_CHANNEL)
            .arg(event(first_measured + n, &wf))
            .query_async::<()>(&mut conn)
            .await?;
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    tokio::time::sleep(Duration::from_secs(1)).await;

    // Burst: BURST events published back to back (within the hub's buffer), timed from the
    // first publish to the last delivery: the sustained rate one api instance fans out at.
    let burst: u64 = tms_tests::env_or("BURST", (500_000 / subs as u64).clamp(1, 500));
    let burst_start_n = 100_000u64;
    let before = delivered.load(Ordering::Relaxed);
    let burst_t0 = Instant::now();
    for n in burst_start_n..burst_start_n + burst {
        redis::cmd("PUBLISH")
            .arg(tms_tests::EVENTS_CHANNEL)
            .arg(event(n, &wf))
            .query_async::<()>(&mut conn)
            .await?;
    }
    let published_in = burst_t0.elapsed();
    let expected = before + (burst as usize) * subs;
    let deadline = Instant::now() + Duration::from_secs(120);
    let mut last_change = (0usize, Instant::now());
    loop {
        let now = delivered.load(Ordering::Relaxed);
        if now >= expected
            || Instant::now() > deadline
            || (now == last_change.0 && last_change.1.elapsed() > Duration::from_secs(3))
        {
            break;
        }
        if now != last_change.0 {
            last_change = (now, Instant::now());
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let burst_elapsed = burst_t0.elapsed();
    let burst_delivered = delivered.load(Ordering::Relaxed) - before;

    let (end_rss, peak_rss) = rss_mib(api_pid)?;
    // The api's end closes every socket, and each reader hands in what it received.
    drop(env);
    let mut all = Vec::with_capacity(subs * 110);
    let mut dropped = 0;
    for r in readers {
        let (mine, was_dropped) = r.await.unwrap_or_default();
        all.extend(mine);
        dropped += usize::from(was_dropped);
    }
    let mut per_delivery: Vec<f64> = all
        .iter()
        .filter(|(n, _)| (first_measured..first_measured + measured).contains(n))
        .map(|d| d.1)
        .collect();
    per_delivery.sort_by(f64::total_cmp);
    let mut all_received: Vec<f64> = (first_measured..first_measured + measured)
        .map(|n| {
            all.iter()
                .filter(|d| d.0 == n)
                .map(|d| d.1)
                .fold(0.0, f64::max)
        })
        .collect();
    all_received.sort_by(f64::total_cmp);
    let complete = (first_measured..first_measured + measured)
        .filter(|n| all.iter().filter(|d| d.0 == *n).count() == subs)
        .count();

    let p = format!("fanout_{subs}");
    report.figure(
        &format!("{p}_subscribe_ms"),
        opened.as_secs_f64() * 1000.0,
        "ms",
        &format!("open + register {subs} subscriptions, 100 at a time"),
    );
    report.latency(&format!("{p}_all_received"), &all_received);
    report.figure(
        &format!("{p}_events_complete"),
        complete as f64,
        "events",
        &format!("of {measured} measured events (200 ms apart) reached all {subs} subscribers"),
    );
    report.latency(&format!("{p}_per_delivery"), &per_delivery);
    report.figure(
        &format!("{p}_burst_events_per_s"),
        burst_delivered as f64 / burst_elapsed.as_secs_f64() / subs as f64,
        "events/s",
        &format!(
            "burst of {burst} events published in {:.0} ms; {burst_delivered} of {} deliveries in {:.2} s; subscribers dropped as slow: {dropped}",
            published_in.as_secs_f64() * 1000.0,
            burst as usize * subs,
            burst_elapsed.as_secs_f64(),
        ),
    );
    report.figure(
        &format!("{p}_api_rss_idle_mib"),
        idle_rss,
        "MiB",
        "before any subscriber",
    );
    report.figure(
        &format!("{p}_api_rss_subscribed_mib"),
        subscribed_rss,
        "MiB",
        "VmRSS with every subscription registered",
    );
    report.figure(
        &format!("{p}_api_rss_end_mib"),
        end_rss,
        "MiB",
        "VmRSS after the burst",
    );
    report.figure(
        &format!("{p}_api_hwm_mib"),
        peak_rss,
        "MiB",
        "VmHWM: peak RSS of the api",
    );
    anyhow::ensure!(
        complete as u64 == measured,
        "only {complete} of {measured} events reached every subscriber"
    );
    Ok(())
}
