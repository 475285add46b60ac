//! Outbox relay and reconciler: moves committed job rows from Postgres to the Redis queue, and
//! re-enqueues unfinished runs that nobody holds a lease on.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::TaskSink;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use uuid::Uuid;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::{RunJob, RunStorage, pending_key, storage, wake_channel};
use crate::repo;

/// A job still marked as waiting on the queue this long after it was sent is re-sent anyway
/// (its mark outlived the job, e.g. a worker died between fetching and picking it up). Queued
/// runs legitimately wait while workers are busy, so this is deliberately long.
pub const STALE_MARK_SECONDS: f64 = 300.0;
/// How long one Redis call of the relay may take.
const REDIS_TIMEOUT: Duration = Duration::from_secs(2);

/// How quickly the reconciler notices lost jobs.
#[derive(Debug, Clone, Copy)]
pub struct Reconcile {
    /// How often it looks (`TMS_RECONCILE_SECONDS`).
    pub every: Duration,
    /// A run nobody drives whose job is not on the queue is re-enqueued once its job was sent
    /// this long ago (`TMS_LOST_JOB_SECONDS`): a fresh job may be between the queue and a
    /// worker's claim.
    pub lost_after: Duration,
}

impl Default for Reconcile {
    fn default() -> Self {
        Self {
            every: Duration::from_secs(2),
            lost_after: Duration::from_secs(5),
        }
    }
}

#[derive(Clone)]
pub struct Relay {
    db: Db,
    conn: ConnectionManager,
    queue: String,
    notify: Arc<Notify>,
    reconcile: Reconcile,
}

impl Relay {
    pub fn new(db: Db, conn: ConnectionManager, queue: &str) -> Self {
        Self {
            db,
            conn,
            queue: queue.to_string(),
            notify: Arc::new(Notify::new()),
            reconcile: Reconcile::default(),
        }
    }

    /// The reconciler's timing (defaults: look every 2 s, lost after 5 s).
    pub fn with_reconcile(mut self, reconcile: Reconcile) -> Self {
        self.reconcile = reconcile;
        self
    }

    /// The Redis connection the queue is reached through (monitoring reads its keys).
    pub fn connection(&self) -> ConnectionManager {
        self.conn.clone()
    }

    /// The queue's name.
    pub fn queue(&self) -> &str {
        &self.queue
    }

    /// Wakes the relay right away (called after a trigger commits).
    pub fn poke(&self) {
        self.notify.notify_one();
    }

    /// Runs until `stop` fires: relays on every poke and at least every 500 ms; reconciles as
    /// often as configured.
    pub async fn run(self, stop: CancellationToken) {
        let storage = storage(self.conn.clone(), &self.queue);
        let mut last_reconcile = tokio::time::Instant::now();
        let mut backoff = Duration::from_millis(500);
        loop {
            match self.relay_once(&storage).await {
                Ok(n) => {
                    if n > 0 {
                        tracing::debug!(count = n, "relayed jobs to the queue");
                    }
                    backoff = Duration::from_millis(500);
                }
                Err(e) => {
                    tracing::warn!(error = %e, "outbox relay failed; will retry");
                    backoff = (backoff * 2).min(Duration::from_secs(5));
                }
            }
            if last_reconcile.elapsed() >= self.reconcile.every {
                last_reconcile = tokio::time::Instant::now();
                if let Err(e) = self.reconcile().await {
                    tracing::warn!(error = %e, "reconciler failed");
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = self.notify.notified() => {}
                _ = tokio::time::sleep(backoff) => {}
            }
        }
    }

    /// Pushes every unsent outbox row, marking rows sent in the same transaction that locked them.
    /// A crash between push and commit re-sends the job: delivery is at least once, and the
    /// worker's run lease makes the duplicate harmless.
    pub async fn relay_once(&self, storage: &RunStorage) -> Result<usize> {
        let storage = storage.clone();
        let (redis_conn, queue) = (self.conn.clone(), self.queue.clone());
        let handle = tokio::runtime::Handle::current();
        let pushed = self
            .db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction::<usize, Error, _>(|conn| {
                    let rows = repo::outbox::lock_unsent(conn, 100)?;
                    if rows.is_empty() {
                        return Ok(0);
                    }
                    let mut sent = Vec::with_capacity(rows.len());
                    let mut storage = storage;
                    // Marked as waiting before the push: a mark without a job only delays the
                    // reconciler, a job without a mark would be re-sent needlessly.
                    let mut marks = redis::cmd("SADD");
                    marks.arg(pending_key(&queue));
                    for row in &rows {
                        marks.arg(row.run_id.to_string());
                    }
                    let mut redis_conn = redis_conn;
                    match handle.block_on(tokio::time::timeout(REDIS_TIMEOUT, marks.query_async::<()>(&mut redis_conn))) {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return Err(Error::Unavailable(format!("queue mark: {e}"))),
                        Err(_) => return Err(Error::Unavailable("queue mark timed out".into())),
                    }
                    let mut jobs = Vec::with_capacity(rows.len());
                    for row in &rows {
                        match serde_json::from_value::<RunJob>(row.payload.clone()) {
                            Ok(job) => {
                                jobs.push(job);
                                sent.push(row.id);
                            }
                            Err(e) => {
                                // One bad row must not stop the relay; the reconciler re-enqueues
                                // its run later from the run itself.
                                tracing::error!(outbox_id = row.id, error = %e, "unreadable outbox row set aside");
                                repo::outbox::set_aside(conn, row.id, &format!("unreadable payload: {e}"))?;
                            }
                        }
                    }
                    // One push for the whole batch: apalis's bulk push is one script call, all
                    // of its jobs queued or none (a backlog relayed after Redis was away took a
                    // round trip per job). Blocking on the runtime is fine here: this closure
                    // runs on the blocking pool.
                    if !jobs.is_empty() {
                        match handle.block_on(tokio::time::timeout(REDIS_TIMEOUT, storage.push_bulk(jobs))) {
                            Ok(Ok(())) => {}
                            Ok(Err(e)) => return Err(Error::Unavailable(format!("queue push: {e}"))),
                            Err(_) => return Err(Error::Unavailable("queue push timed out".into())),
                        }
                    }
                    // Workers are woken before the rows are marked and the mark committed: the
                    // jobs are on the queue already and the runs were committed by their
                    // triggers, so a worker needs nothing of this transaction, and pick-up no
                    // longer waits for its last two round trips. A wake-up is only a hint
                    // (workers also poll), so one that is lost costs nothing but latency.
                    if !sent.is_empty() {
                        let mut wake = redis_conn.clone();
                        let publish = wake.publish::<_, _, ()>(wake_channel(&queue), sent.len());
                        let _ = handle.block_on(tokio::time::timeout(REDIS_TIMEOUT, publish));
                    }
                    repo::outbox::mark_sent(conn, &sent)?;
                    Ok(sent.len())
                })
            })
            .await?;
        Ok(pushed)
    }

    /// Writes a fresh outbox row for every unfinished run that nobody drives and whose job is
    /// not on the queue: its worker died or handed it back, its job was lost with Redis, or
    /// Redis came back empty. Runs held back by their workflow's limits are left to wait.
    /// Nothing happens while Redis is unreachable (nothing could be delivered anyway).
    pub async fn reconcile(&self) -> Result<usize> {
        let quiet = self.reconcile.lost_after.as_secs_f64();
        let candidates = self
            .db
            .run(move |conn| repo::leases::unattended(conn, quiet, 500))
            .await?;
        if candidates.is_empty() {
            return Ok(0);
        }
        let mut ismember = redis::cmd("SMISMEMBER");
        ismember.arg(pending_key(&self.queue));
        for c in &candidates {
            ismember.arg(c.id.to_string());
        }
        let mut conn = self.conn.clone();
        let on_queue: Vec<bool> =
            match tokio::time::timeout(REDIS_TIMEOUT, ismember.query_async(&mut conn)).await {
                Ok(res) => res?,
                Err(_) => return Err(Error::Unavailable("redis: SMISMEMBER timed out".into())),
            };
        let lost: Vec<Uuid> = candidates
            .iter()
            .zip(on_queue)
            .filter(|(c, queued)| !queued || c.sent_ago > STALE_MARK_SECONDS)
            .map(|(c, _)| c.id)
            .collect();
        if lost.is_empty() {
            return Ok(0);
        }
        let n = lost.len();
        self.db
            .run(move |conn| {
                use diesel::Connection;
                conn.transaction::<(), Error, _>(|conn| {
                    for id in &lost {
                        crate::queue::enqueue(conn, *id)?;
                    }
                    Ok(())
                })
            })
            .await?;
        tracing::info!(
            count = n,
            "re-enqueued runs nobody drives whose job was not on the queue"
        );
        crate::metrics::queue::REENQUEUED.inc_by(n as u64);
        self.poke();
        Ok(n)
    }
}
