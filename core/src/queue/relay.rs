//! Outbox relay and reconciler: moves committed job rows from Postgres to the Redis queue, and
//! re-enqueues unfinished runs that nobody holds a lease on.

use std::sync::Arc;
use std::time::Duration;

use apalis::prelude::TaskSink;
use redis::AsyncCommands;
use redis::aio::ConnectionManager;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::db::Db;
use crate::error::{Error, Result};
use crate::queue::{RunJob, RunStorage, storage, wake_channel};
use crate::repo;

/// A run whose lease expired is enqueued again unless it was enqueued this recently.
pub const RESEND_AFTER_SECONDS: i64 = 15;
/// A never-leased run is presumed lost from Redis when not enqueued for this long. Queued runs
/// legitimately wait in Redis while workers are busy, so this is deliberately long.
pub const LOST_AFTER_SECONDS: i64 = 300;
/// How often the reconciler looks.
pub const RECONCILE_EVERY: Duration = Duration::from_secs(5);

#[derive(Clone)]
pub struct Relay {
    db: Db,
    conn: ConnectionManager,
    queue: String,
    notify: Arc<Notify>,
}

impl Relay {
    pub fn new(db: Db, conn: ConnectionManager, queue: &str) -> Self {
        Self {
            db,
            conn,
            queue: queue.to_string(),
            notify: Arc::new(Notify::new()),
        }
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

    /// Runs until `stop` fires: relays on every poke and at least every 500 ms; reconciles every 5 s.
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
            if last_reconcile.elapsed() > RECONCILE_EVERY {
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
                    for row in &rows {
                        let job: RunJob = match serde_json::from_value(row.payload.clone()) {
                            Ok(job) => job,
                            Err(e) => {
                                // One bad row must not stop the relay; the reconciler re-enqueues
                                // its run later from the run itself.
                                tracing::error!(outbox_id = row.id, error = %e, "unreadable outbox row set aside");
                                repo::outbox::set_aside(conn, row.id, &format!("unreadable payload: {e}"))?;
                                continue;
                            }
                        };
                        // Blocking on the runtime is fine here: this closure runs on the blocking pool.
                        match handle.block_on(tokio::time::timeout(
                            Duration::from_secs(5),
                            storage.push(job),
                        )) {
                            Ok(Ok(())) => sent.push(row.id),
                            Ok(Err(e)) => {
                                if sent.is_empty() {
                                    return Err(Error::Unavailable(format!("queue push: {e}")));
                                }
                                break;
                            }
                            Err(_) => {
                                if sent.is_empty() {
                                    return Err(Error::Unavailable("queue push timed out".into()));
                                }
                                break;
                            }
                        }
                    }
                    repo::outbox::mark_sent(conn, &sent)?;
                    Ok(sent.len())
                })
            })
            .await?;
        if pushed > 0 {
            let mut conn = self.conn.clone();
            let _: std::result::Result<(), _> =
                conn.publish(wake_channel(&self.queue), pushed).await;
        }
        Ok(pushed)
    }

    /// Writes a fresh outbox row for every unfinished run that has neither a live lease nor a
    /// recent enqueue (its job was lost with Redis, or its worker died).
    pub async fn reconcile(&self) -> Result<usize> {
        let n = self
            .db
            .run(|conn| {
                use diesel::Connection;
                conn.transaction::<usize, Error, _>(|conn| {
                    let ids = repo::leases::orphaned(
                        conn,
                        RESEND_AFTER_SECONDS,
                        LOST_AFTER_SECONDS,
                        100,
                    )?;
                    for id in &ids {
                        crate::queue::enqueue(conn, *id)?;
                    }
                    Ok(ids.len())
                })
            })
            .await?;
        if n > 0 {
            tracing::info!(count = n, "re-enqueued unleased runs");
            self.poke();
        }
        Ok(n)
    }
}
