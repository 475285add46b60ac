//! Postgres access: the r2d2 pool, the blocking-call bridge and embedded migrations.

pub mod prepared;
pub mod schema;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use diesel::PgConnection;
use diesel::connection::{Connection, InstrumentationEvent};
use diesel::r2d2::{ConnectionManager, CustomizeConnection, Pool, PooledConnection};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};

use crate::error::{Error, Result};

pub const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../migrations");

pub type PgPool = Pool<ConnectionManager<PgConnection>>;
pub type Conn = PooledConnection<ConnectionManager<PgConnection>>;

/// Cheap-to-clone handle to the database pool. diesel is blocking, so every call goes through
/// [`Db::run`], which moves it onto tokio's blocking pool.
#[derive(Clone)]
pub struct Db {
    pool: PgPool,
    queries: Arc<AtomicU64>,
    /// False after Postgres could not be reached, until a connection is had again: meanwhile
    /// callers wait [`UNREACHABLE_ACQUIRE`] for a connection instead of the full timeout, so
    /// requests answer `UNAVAILABLE` at once during an outage.
    reachable: Arc<AtomicBool>,
    /// One permit per pooled connection, taken before a call goes to the blocking pool: callers
    /// queue here in arrival order (tokio's semaphore is fair) instead of as blocked threads on
    /// r2d2's condition variable, where a thread arriving late can take a freed connection
    /// before one that has waited, and every waiter is a parked thread to switch to and from.
    slots: Arc<tokio::sync::Semaphore>,
}

/// How long a caller waits for a pooled connection while the database is known unreachable,
/// and how often a waiting caller looks whether it became so.
const UNREACHABLE_ACQUIRE: Duration = Duration::from_millis(250);
/// How long a caller waits for a connection from a busy pool while the database is fine.
const ACQUIRE_TIMEOUT: Duration = Duration::from_secs(5);

/// A pooled connection: waits up to [`ACQUIRE_TIMEOUT`] while the pool is merely busy, but gives
/// up within [`UNREACHABLE_ACQUIRE`] once the database is known unreachable (a failed connection
/// attempt says so at once, through [`MarkUnreachable`]), so requests answer `UNAVAILABLE`
/// quickly from the first moment of an outage.
fn acquire(pool: &PgPool, reachable: &AtomicBool) -> Result<Conn> {
    let deadline = std::time::Instant::now() + ACQUIRE_TIMEOUT;
    loop {
        match pool.get_timeout(UNREACHABLE_ACQUIRE) {
            Ok(conn) => {
                reachable.store(true, Ordering::Relaxed);
                return Ok(conn);
            }
            Err(e) => {
                if !reachable.load(Ordering::Relaxed) || std::time::Instant::now() >= deadline {
                    reachable.store(false, Ordering::Relaxed);
                    return Err(e.into());
                }
            }
        }
    }
}

/// Marks the database unreachable as soon as the pool fails to open a connection.
#[derive(Debug)]
struct MarkUnreachable(Arc<AtomicBool>);

impl diesel::r2d2::HandleError<diesel::r2d2::Error> for MarkUnreachable {
    fn handle_error(&self, error: diesel::r2d2::Error) {
        self.0.store(false, Ordering::Relaxed);
        tracing::warn!(error = %error, "database connection failed");
    }
}

/// Counts every statement a pooled connection starts, so the cost of a code path can be measured
/// (and exported) as a number of round trips rather than guessed.
#[derive(Debug)]
struct CountQueries(Arc<AtomicU64>);

impl CustomizeConnection<PgConnection, diesel::r2d2::Error> for CountQueries {
    fn on_acquire(&self, conn: &mut PgConnection) -> std::result::Result<(), diesel::r2d2::Error> {
        let counter = self.0.clone();
        conn.set_instrumentation(move |event: InstrumentationEvent<'_>| {
            if let InstrumentationEvent::StartQuery { .. } = event {
                counter.fetch_add(1, Ordering::Relaxed);
            }
        });
        Ok(())
    }
}

impl Db {
    /// Builds the pool lazily so a process can start (and report not-ready) while Postgres is down.
    pub fn new(url: &str, max_size: u32) -> Result<Self> {
        let manager = ConnectionManager::<PgConnection>::new(url);
        let queries = Arc::new(AtomicU64::new(0));
        let reachable = Arc::new(AtomicBool::new(true));
        let pool = Pool::builder()
            .max_size(max_size)
            .min_idle(Some(1))
            .connection_timeout(ACQUIRE_TIMEOUT)
            .test_on_check_out(false)
            .connection_customizer(Box::new(CountQueries(queries.clone())))
            .error_handler(Box::new(MarkUnreachable(reachable.clone())))
            .build_unchecked(manager);
        Ok(Self {
            pool,
            queries,
            reachable,
            slots: Arc::new(tokio::sync::Semaphore::new(max_size as usize)),
        })
    }

    /// How many SQL statements this pool's connections have started since it was built.
    pub fn queries_started(&self) -> u64 {
        self.queries.load(Ordering::Relaxed)
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Runs `f` with a pooled connection on the blocking thread pool.
    pub async fn run<T, F>(&self, f: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&mut PgConnection) -> Result<T> + Send + 'static,
    {
        let (pool, reachable) = (self.pool.clone(), self.reachable.clone());
        let permit = self.slot().await?;
        // The caller's span goes along, so work in the blocking call (e.g. enqueueing a job
        // with the trace context) sees it.
        let span = tracing::Span::current();
        tokio::task::spawn_blocking(move || {
            let _permit = permit;
            let _entered = span.enter();
            let mut conn = acquire(&pool, &reachable)?;
            let res = f(&mut conn);
            let unreachable = matches!(&res, Err(Error::Unavailable(m)) if m.starts_with(crate::error::DATABASE_UNREACHABLE));
            reachable.store(!unreachable, Ordering::Relaxed);
            res
        })
        .await
        .map_err(|e| Error::Internal(format!("blocking task: {e}")))?
    }

    /// A turn at a pooled connection, in arrival order: waits up to [`ACQUIRE_TIMEOUT`] while
    /// the pool is merely busy, and gives up within [`UNREACHABLE_ACQUIRE`] while the database
    /// is known unreachable, as [`acquire`] does for the connection itself.
    async fn slot(&self) -> Result<tokio::sync::OwnedSemaphorePermit> {
        if let Ok(p) = self.slots.clone().try_acquire_owned() {
            return Ok(p);
        }
        let deadline = tokio::time::Instant::now() + ACQUIRE_TIMEOUT;
        let mut wait = std::pin::pin!(self.slots.clone().acquire_owned());
        loop {
            let tick = tokio::time::sleep(UNREACHABLE_ACQUIRE);
            tokio::select! {
                p = &mut wait => {
                    return p.map_err(|_| Error::Internal("database pool closed".into()));
                }
                () = tick => {
                    if !self.reachable.load(Ordering::Relaxed)
                        || tokio::time::Instant::now() >= deadline
                    {
                        // As `acquire` would have said, had the call waited there.
                        self.reachable.store(false, Ordering::Relaxed);
                        return Err(Error::Unavailable(format!(
                            "{}: pool: timed out waiting for connection",
                            crate::error::DATABASE_UNREACHABLE
                        )));
                    }
                }
            }
        }
    }

    /// Applies pending migrations; safe to call from several processes at once (advisory lock).
    pub async fn migrate(&self) -> Result<Vec<String>> {
        self.run(|conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT pg_advisory_lock(7346501)").execute(conn)?;
            let applied = conn
                .run_pending_migrations(MIGRATIONS)
                .map(|v| v.iter().map(|m| m.to_string()).collect::<Vec<_>>())
                .map_err(|e| Error::Internal(format!("migrations: {e}")));
            diesel::sql_query("SELECT pg_advisory_unlock(7346501)").execute(conn)?;
            applied
        })
        .await
    }

    /// Waits (up to a minute) for Postgres to accept connections, then applies migrations.
    pub async fn migrate_with_retry(&self) -> Result<()> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
        loop {
            match self.migrate().await {
                Ok(applied) => {
                    for m in applied {
                        tracing::info!(migration = %m, "applied migration");
                    }
                    return Ok(());
                }
                Err(e @ (Error::Unavailable(_) | Error::Internal(_)))
                    if tokio::time::Instant::now() < deadline =>
                {
                    tracing::warn!(error = %e, "database not ready; retrying");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// `SELECT 1` round trip, used by readiness checks.
    pub async fn ping(&self) -> Result<()> {
        self.run(|conn| {
            use diesel::RunQueryDsl;
            diesel::sql_query("SELECT 1").execute(conn)?;
            Ok(())
        })
        .await
    }
}
