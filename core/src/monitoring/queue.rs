//! Reads the run queue's depth from apalis-redis's own keys (its stats API is broken, see
//! STACK.md) and the oldest waiting run from Postgres: `{q}:active` is ready jobs,
//! `{q}:scheduled` jobs due later (retries and delayed pushes), `{q}:inflight:{worker}` jobs
//! a worker holds (workers listed in the `{q}:workers` ZSET), `{q}:dead` given-up jobs; dead-lettered runs come from Postgres.

use chrono::Utc;
use redis::aio::ConnectionManager;

use crate::db::Db;
use crate::error::Result;
use crate::monitoring::QueueStats;
use crate::queue::storage_config;
use crate::repo;

pub async fn read(conn: &mut ConnectionManager, queue: &str, db: &Db) -> Result<QueueStats> {
    let cfg = storage_config(queue);
    let now = Utc::now().timestamp();
    let (active, due, later, dead, workers): (i64, i64, i64, i64, Vec<String>) = redis::pipe()
        .cmd("LLEN")
        .arg(cfg.active_jobs_list())
        .cmd("ZCOUNT")
        .arg(cfg.scheduled_jobs_set())
        .arg("-inf")
        .arg(now)
        .cmd("ZCOUNT")
        .arg(cfg.scheduled_jobs_set())
        .arg(format!("({now}"))
        .arg("+inf")
        .cmd("SCARD")
        .arg(cfg.dead_jobs_set())
        .cmd("ZRANGE")
        .arg(cfg.workers_set())
        .arg(0)
        .arg(-1)
        .query_async(conn)
        .await?;
    let running = if workers.is_empty() {
        0
    } else {
        let mut p = redis::pipe();
        for w in &workers {
            p.cmd("SCARD")
                .arg(format!("{}:{w}", cfg.inflight_jobs_set()));
        }
        let counts: Vec<i64> = p.query_async(conn).await?;
        counts.into_iter().sum()
    };
    let (oldest, dead_runs) = db
        .run(|c| {
            Ok((
                repo::monitoring::oldest_queued(c)?,
                repo::monitoring::dead_lettered(c)?,
            ))
        })
        .await?;
    let age = oldest
        .map(|t| (Utc::now() - t).num_milliseconds().max(0) as f64 / 1000.0)
        .unwrap_or(0.0);
    Ok(QueueStats {
        pending: active + due,
        running,
        retrying: later,
        // Given-up jobs of the queue and dead-lettered runs alike.
        dead: dead + dead_runs,
        oldest_pending_age_seconds: age,
    })
}
