//! The faults the suite injects, one after another, into a live system, and how long it took
//! to recover from each.
//!
//! Recovery time of a fault: from the moment the fault ended (the test resumed the stopped
//! process, put Postgres back, the restarted Redis accepted connections, or the replacement
//! worker was ready) until the first step that *started after that moment* finished
//! successfully, read from `tasks.started_at` / `tasks.finished_at` in Postgres. It is the
//! time the system needed to do new work again, not the time to finish the work the fault
//! interrupted: that is the settling time, from the same moment until every run that was
//! queued or running then has ended. The next fault is injected once the system settled (or
//! `SETTLE_BOUND` passed).

use std::time::{Duration, Instant};

use anyhow::{Result, bail};
use chrono::{DateTime, SecondsFormat, Utc};

use super::{LEASE_SECONDS, SHUTDOWN_GRACE_SECONDS, rows, secs, shutdown_excerpt, sql};
use crate::proxy::Mode;
use crate::{PrivateRedis, TestEnv};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FaultKind {
    WorkerKill,
    WorkerStop,
    RedisPause,
    RedisRestart,
    RedisRestartEmpty,
    PostgresStop,
    WorkerTerm,
}

impl FaultKind {
    /// Every fault, in the order the suite injects them.
    pub const ALL: [FaultKind; 7] = [
        FaultKind::WorkerKill,
        FaultKind::WorkerStop,
        FaultKind::RedisPause,
        FaultKind::RedisRestart,
        FaultKind::RedisRestartEmpty,
        FaultKind::PostgresStop,
        FaultKind::WorkerTerm,
    ];

    pub fn name(self) -> &'static str {
        match self {
            FaultKind::WorkerKill => "worker SIGKILL",
            FaultKind::WorkerStop => "worker SIGSTOP past its lease",
            FaultKind::RedisPause => "redis paused 5s",
            FaultKind::RedisRestart => "redis restarted (AOF kept)",
            FaultKind::RedisRestartEmpty => "redis restarted empty",
            FaultKind::PostgresStop => "postgres stopped 10s",
            FaultKind::WorkerTerm => "worker SIGTERM mid-step",
        }
    }
}

#[derive(Debug, Clone)]
pub struct Fault {
    pub kind: FaultKind,
    /// The process the fault hit, e.g. `worker1 (chaos-w1, pid 1234)`.
    pub victim: String,
    pub started: DateTime<Utc>,
    pub ended: DateTime<Utc>,
    /// `None`: no step started after the fault finished within `SETTLE_BOUND`.
    pub recovery: Option<Duration>,
    /// Runs queued or running when the fault ended.
    pub open_at_end: usize,
    /// `None`: some of them were still open `SETTLE_BOUND` after the fault ended.
    pub settled: Option<Duration>,
}

/// How long after a fault ended the suite waits for its recovery and settling before moving on.
pub const SETTLE_BOUND: Duration = Duration::from_secs(20);
/// How long a worker may take to exit after SIGTERM before it counts as hung.
const TERM_BOUND: Duration = Duration::from_secs(SHUTDOWN_GRACE_SECONDS + 15);

/// The deployment the faults act on.
pub struct Chaos<'a> {
    pub env: &'a mut TestEnv,
    pub redis: &'a mut PrivateRedis,
    /// Settings for replacement workers (each also gets its own `TMS_WORKER_NAME`).
    pub settings: Vec<(String, String)>,
    pub faults: Vec<Fault>,
    /// Misbehaviour seen while injecting (e.g. a worker not exiting on SIGTERM), with evidence.
    pub failures: Vec<String>,
}

/// The `TMS_WORKER_NAME` of `env.workers[i]`, which is also its runs' `lease_owner`.
pub fn worker_name(i: usize) -> String {
    format!("chaos-w{i}")
}

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

impl Chaos<'_> {
    /// Starts one more worker with the suite's settings.
    pub async fn start_worker(&mut self) -> Result<()> {
        let mut vars = self.settings.clone();
        vars.push((
            "TMS_WORKER_NAME".into(),
            worker_name(self.env.workers.len()),
        ));
        self.env.start_worker(&vars).await?;
        Ok(())
    }

    /// Injects `kind`, ends it, and waits (bounded) for the system to do new work again.
    pub async fn inject(&mut self, kind: FaultKind) -> Result<()> {
        let started = Utc::now();
        let victim = match kind {
            FaultKind::WorkerKill => {
                let i = self.busy_worker().await?;
                self.env.workers[i].kill9();
                self.start_worker().await?;
                self.describe(i)
            }
            FaultKind::WorkerStop => {
                let i = self.busy_worker().await?;
                self.env.workers[i].signal(libc::SIGSTOP);
                // The fault itself: stopped for two seconds past its lease.
                tokio::time::sleep(Duration::from_secs(LEASE_SECONDS + 2)).await;
                self.env.workers[i].signal(libc::SIGCONT);
                self.describe(i)
            }
            FaultKind::RedisPause => {
                let p = self.redis_proc()?;
                p.signal(libc::SIGSTOP);
                tokio::time::sleep(Duration::from_secs(5)).await;
                p.signal(libc::SIGCONT);
                format!("redis-server pid {}", p.pid())
            }
            FaultKind::RedisRestart => {
                let pid = self.redis_proc()?.pid();
                self.redis.stop();
                self.redis.spawn()?;
                format!("redis-server pid {pid}")
            }
            FaultKind::RedisRestartEmpty => {
                // Jobs only wait in the queue when no worker takes them: the workers pause
                // (shorter than a lease) until runs are queued, so the wipe loses real jobs.
                let live: Vec<usize> = (0..self.env.workers.len())
                    .filter(|&i| !self.env.workers[i].killed)
                    .collect();
                for &i in &live {
                    self.env.workers[i].signal(libc::SIGSTOP);
                }
                let queued = self.wait_queued(2, Duration::from_secs(3)).await;
                let pid = self.redis_proc()?.pid();
                self.redis.stop();
                let wiped = self.redis.clear_data();
                let spawned = self.redis.spawn();
                for &i in &live {
                    self.env.workers[i].signal(libc::SIGCONT);
                }
                wiped?;
                spawned?;
                format!(
                    "redis-server pid {pid}, wiped with {} runs queued (workers paused meanwhile)",
                    queued?
                )
            }
            FaultKind::PostgresStop => {
                let Some(proxy) = self.env.pg_proxy.as_ref() else {
                    bail!("the environment was started without a Postgres proxy");
                };
                proxy.set(Mode::Refuse);
                tokio::time::sleep(Duration::from_secs(10)).await;
                proxy.set(Mode::Pass);
                "the Postgres proxy of every api and worker".to_string()
            }
            FaultKind::WorkerTerm => {
                let i = self.busy_worker().await?;
                self.terminate(i).await;
                self.start_worker().await?;
                self.describe(i)
            }
        };
        let ended = Utc::now();
        let deadline = Instant::now() + SETTLE_BOUND;
        let open = sql(
            &self.env.database_url,
            "SELECT id FROM runs WHERE status IN ('queued', 'running')",
        )
        .await?;
        let open: Vec<&str> = open.lines().filter(|l| !l.is_empty()).collect();
        let recovery = self.recovery_after(ended, deadline).await?;
        let settled = self.settled(ended, &open, deadline).await?;
        let fmt =
            |d: Option<Duration>| d.map_or(format!("not within {}", secs(SETTLE_BOUND)), secs);
        eprintln!(
            "chaos: injected {} on {victim}; recovered in {}, its {} open runs ended in {}",
            kind.name(),
            fmt(recovery),
            open.len(),
            fmt(settled)
        );
        self.faults.push(Fault {
            kind,
            victim,
            started,
            ended,
            recovery,
            open_at_end: open.len(),
            settled,
        });
        Ok(())
    }

    fn redis_proc(&self) -> Result<&crate::Proc> {
        match self.redis.process() {
            Some(p) => Ok(p),
            None => bail!("the private redis-server is not running"),
        }
    }

    fn describe(&self, i: usize) -> String {
        format!(
            "worker{i} ({}, pid {})",
            worker_name(i),
            self.env.workers[i].pid()
        )
    }

    /// SIGTERM to worker `i`; waits (bounded) for it to exit and records what it did.
    async fn terminate(&mut self, i: usize) {
        let w = &mut self.env.workers[i];
        // On purpose: the harness must not take its exit for a crash.
        w.killed = true;
        w.signal(libc::SIGTERM);
        let t0 = Instant::now();
        let status = loop {
            if let Ok(Some(status)) = w.child.try_wait() {
                break Some(status);
            }
            if t0.elapsed() > TERM_BOUND {
                break None;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        let tail = shutdown_excerpt(&w.log_text(), 8).join("\n    ");
        match status {
            Some(s) if s.success() => {
                eprintln!("chaos: worker{i} exited 0 {} after SIGTERM", secs(t0.elapsed()))
            }
            Some(s) => self.failures.push(format!(
                "worker{i} ({}) exited with {s} {} after SIGTERM (expected 0 after at most {SHUTDOWN_GRACE_SECONDS}s of grace); its log (shutdown lines, then its end):\n    {tail}",
                worker_name(i),
                secs(t0.elapsed())
            )),
            None => {
                w.kill9();
                self.failures.push(format!(
                    "worker{i} ({}) had not exited {} after SIGTERM (grace {SHUTDOWN_GRACE_SECONDS}s); killed. Its log (shutdown lines, then its end):\n    {tail}",
                    worker_name(i),
                    secs(TERM_BOUND)
                ));
            }
        }
    }

    /// A random live worker holding the lease of a run with a step running right now (so the
    /// fault hits mid-step); waits for one, bounded, then falls back to any live worker.
    async fn busy_worker(&mut self) -> Result<usize> {
        let deadline = Instant::now() + Duration::from_secs(20);
        let live: Vec<usize> = (0..self.env.workers.len())
            .filter(|&i| !self.env.workers[i].killed)
            .collect();
        if live.is_empty() {
            bail!("no live worker left to inject a fault into");
        }
        loop {
            let owners = sql(
                &self.env.database_url,
                "SELECT DISTINCT r.lease_owner FROM runs r JOIN tasks t ON t.run_id = r.id \
                 WHERE t.status = 'running' AND r.status = 'running' AND r.lease_owner IS NOT NULL",
            )
            .await?;
            let busy: Vec<usize> = live
                .iter()
                .copied()
                .filter(|&i| owners.lines().any(|o| o == worker_name(i)))
                .collect();
            if !busy.is_empty() {
                return Ok(busy[random(busy.len())]);
            }
            if Instant::now() > deadline {
                eprintln!("chaos: no worker was mid-step within 20s; picking any live one");
                return Ok(live[random(live.len())]);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (at most `bound`) until at least `n` runs are queued; returns how many are.
    async fn wait_queued(&self, n: i64, bound: Duration) -> Result<i64> {
        let deadline = Instant::now() + bound;
        loop {
            let q = sql(
                &self.env.database_url,
                "SELECT count(*) FROM runs WHERE status = 'queued'",
            )
            .await?;
            let queued: i64 = q.trim().parse().unwrap_or(0);
            if queued >= n || Instant::now() > deadline {
                return Ok(queued);
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Waits (until `deadline`) for every run in `open` to end; the time since `ended`.
    async fn settled(
        &self,
        ended: DateTime<Utc>,
        open: &[&str],
        deadline: Instant,
    ) -> Result<Option<Duration>> {
        if open.is_empty() {
            return Ok(Some(Duration::ZERO));
        }
        let q = format!(
            "SELECT count(*), extract(epoch FROM max(finished_at) - '{}'::timestamptz) FROM runs \
             WHERE id IN ('{}') AND status NOT IN ('queued', 'running')",
            ts(ended),
            open.join("','")
        );
        loop {
            let out = sql(&self.env.database_url, &q).await?;
            let row = rows(&out).into_iter().next().unwrap_or_default();
            let ended_count: usize = row.first().and_then(|s| s.parse().ok()).unwrap_or(0);
            if ended_count == open.len() {
                let s: f64 = row.get(1).and_then(|s| s.parse().ok()).unwrap_or(0.0);
                return Ok(Some(Duration::from_secs_f64(s.max(0.0))));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Waits (until `deadline`) for the first step started at or after `ended` to succeed.
    async fn recovery_after(
        &self,
        ended: DateTime<Utc>,
        deadline: Instant,
    ) -> Result<Option<Duration>> {
        let q = format!(
            "SELECT extract(epoch FROM min(finished_at) - '{}'::timestamptz) FROM tasks \
             WHERE status = 'succeeded' AND started_at >= '{}'::timestamptz",
            ts(ended),
            ts(ended)
        );
        loop {
            let out = sql(&self.env.database_url, &q).await?;
            if let Some(s) = rows(&out)
                .first()
                .and_then(|r| r.first())
                .and_then(|s| s.parse::<f64>().ok())
            {
                return Ok(Some(Duration::from_secs_f64(s.max(0.0))));
            }
            if Instant::now() > deadline {
                return Ok(None);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

/// A number in `0..n` (n > 0), good enough to pick a victim.
fn random(n: usize) -> usize {
    (uuid::Uuid::new_v4().as_u128() % n as u128) as usize
}
