//! Continuous triggering: a pool of tasks, each triggering a run every `period` on the apis in
//! turn with its own idempotencyKey, timing every `triggerRun` round trip. It runs on its own
//! thread and runtime, so the test's blocking calls never inflate the measured times.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

/// What one `triggerRun` answered.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Answered with a run id: the run was accepted.
    Accepted(String),
    /// A GraphQL error with `extensions.code` UNAVAILABLE (allowed while Postgres is away).
    Unavailable(String),
    /// Anything else: another error code, a transport error, a timeout, an odd body.
    Failed(String),
}

#[derive(Debug, Clone)]
pub struct Trigger {
    pub key: String,
    pub api_port: u16,
    /// Since the load started.
    pub at: Duration,
    /// When it was sent, to read against the faults' times.
    pub wall: chrono::DateTime<chrono::Utc>,
    pub took: Duration,
    pub outcome: Outcome,
}

pub struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    thread: std::thread::JoinHandle<Vec<Trigger>>,
}

/// A trigger that has not answered after this long is recorded as failed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(5);

impl Load {
    /// Starts `pool` triggering tasks, staggered over the first `period`.
    pub fn start(
        api_ports: Vec<u16>,
        token: String,
        workflow_id: String,
        pool: usize,
        period: Duration,
    ) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let (stop2, accepted2) = (stop.clone(), accepted.clone());
        let thread = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .expect("load runtime");
            rt.block_on(async move {
                let records = Arc::new(Mutex::new(Vec::new()));
                let client = reqwest::Client::builder()
                    .timeout(CLIENT_TIMEOUT)
                    .build()
                    .expect("http client");
                let started = Instant::now();
                let tasks: Vec<_> = (0..pool)
                    .map(|i| {
                        let t = Triggerer {
                            index: i,
                            api_ports: api_ports.clone(),
                            token: token.clone(),
                            workflow_id: workflow_id.clone(),
                            client: client.clone(),
                            started,
                        };
                        let (stop, accepted, records) =
                            (stop2.clone(), accepted2.clone(), records.clone());
                        let first = tokio::time::Instant::now() + period * i as u32 / pool as u32;
                        tokio::spawn(async move {
                            let mut tick = tokio::time::interval_at(first, period);
                            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
                            let mut n = 0usize;
                            let mut retry_key: Option<String> = None;
                            while !stop.load(Ordering::SeqCst) {
                                tick.tick().await;
                                if stop.load(Ordering::SeqCst) {
                                    break;
                                }
                                // A trigger refused as UNAVAILABLE is retried with its key, as a
                                // client would: if the run was created after all, it comes back.
                                let key = retry_key.take().unwrap_or_else(|| {
                                    n += 1;
                                    format!("chaos-{i}-{n}")
                                });
                                let rec = t.trigger(&key, n).await;
                                match &rec.outcome {
                                    Outcome::Accepted(_) => {
                                        accepted.fetch_add(1, Ordering::SeqCst);
                                    }
                                    Outcome::Unavailable(_) => retry_key = Some(key),
                                    Outcome::Failed(_) => {}
                                }
                                records.lock().unwrap().push(rec);
                            }
                        })
                    })
                    .collect();
                for t in tasks {
                    let _ = t.await;
                }
                let mut v = records.lock().unwrap().clone();
                v.sort_by_key(|r| r.at);
                v
            })
        });
        Load {
            stop,
            accepted,
            thread,
        }
    }

    /// Triggers answered with a run id so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }

    /// Stops triggering (a trigger in flight completes) and returns every trigger's record.
    pub async fn stop(self) -> Vec<Trigger> {
        self.stop.store(true, Ordering::SeqCst);
        let thread = self.thread;
        tokio::task::spawn_blocking(move || thread.join().expect("load thread"))
            .await
            .expect("join load thread")
    }
}

struct Triggerer {
    index: usize,
    api_ports: Vec<u16>,
    token: String,
    workflow_id: String,
    client: reqwest::Client,
    started: Instant,
}

impl Triggerer {
    async fn trigger(&self, key: &str, n: usize) -> Trigger {
        let api_port = self.api_ports[(self.index + n) % self.api_ports.len()];
        let at = self.started.elapsed();
        let wall = chrono::Utc::now();
        let t0 = Instant::now();
        let resp = self
            .client
            .post(format!("http://127.0.0.1:{api_port}/graphql"))
            .bearer_auth(&self.token)
            .json(&json!({
                "query": "mutation($w:ID!,$k:String){triggerRun(workflowId:$w,idempotencyKey:$k){id}}",
                "variables": {"w": self.workflow_id, "k": key},
            }))
            .send()
            .await;
        let body = match resp {
            Ok(r) => {
                let status = r.status();
                r.json::<Value>()
                    .await
                    .map_err(|e| format!("HTTP {status}, body not JSON: {e}"))
            }
            Err(e) => Err(format!("transport error: {e}")),
        };
        let took = t0.elapsed();
        let outcome = match body {
            Err(e) => Outcome::Failed(e),
            Ok(v) => match v["data"]["triggerRun"]["id"].as_str() {
                Some(id) if v["errors"].is_null() => Outcome::Accepted(id.to_string()),
                _ if crate::error_code(&v) == "UNAVAILABLE" => {
                    Outcome::Unavailable(v["errors"][0]["message"].to_string())
                }
                _ => Outcome::Failed(v.to_string()),
            },
        };
        Trigger {
            key: key.to_string(),
            api_port,
            at,
            wall,
            took,
            outcome,
        }
    }
}
