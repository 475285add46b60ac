//! TMS API: the GraphQL transport over the shared services.

pub mod config;
pub mod console;
pub mod context;
pub mod error;
pub mod graphql;
pub mod http;
pub mod metrics;
pub mod origin;
pub mod reference;
pub mod server;
pub mod sso;
pub mod state;
pub mod step_logs;
pub mod ws;

use std::time::Duration;

use anyhow::Context as _;
use tms_core::auth::jwt::JwtKeys;
use tms_core::auth::keys::{KeyRing, secrets_from};
use tms_core::auth::revocations::RevocationHub;
use tms_core::auth::service::bootstrap_admin;
use tms_core::auth::sessions::SessionConfig;
use tms_core::auth::throttle::ThrottleConfig;
use tms_core::bus::{EventBus, EventHub, lazy_connection};
use tms_core::db::Db;
use tms_core::queue::relay::Relay;
use tms_core::schedules::Scheduler;
use tokio_util::sync::CancellationToken;

use crate::config::ApiConfig;
use crate::http::AppState;
use crate::state::Services;

/// Events buffered per process for subscribers; one that falls this far behind is dropped.
pub const EVENT_BUFFER: usize = 8192;

/// Waits for Postgres and applies migrations; a fresh cluster may still be starting.
pub async fn migrate_with_retry(db: &Db) -> anyhow::Result<()> {
    db.migrate_with_retry()
        .await
        .map_err(|e| anyhow::anyhow!("migrations failed: {e:?}"))
}

fn jwt_keys(cfg: &ApiConfig) -> anyhow::Result<JwtKeys> {
    let mut secrets = secrets_from(cfg.jwt_secret.as_deref(), cfg.jwt_keys.as_deref())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    if secrets.is_empty() {
        if cfg.common.production {
            anyhow::bail!("TMS_JWT_SECRET (or TMS_JWT_KEYS) is required when TMS_PRODUCTION is on");
        }
        tracing::warn!(
            "TMS_JWT_SECRET not set: using a random per-process key (tokens end with the process)"
        );
        let mut b = vec![0u8; 48];
        for chunk in b.chunks_mut(16) {
            chunk.copy_from_slice(&uuid::Uuid::new_v4().into_bytes()[..chunk.len()]);
        }
        secrets.push(b);
    }
    let ring = KeyRing::new(&secrets).map_err(|e| anyhow::anyhow!("{e}"))?;
    tracing::info!(signing_kid = %ring.signing().kid, keys = ring.kids().len(), "access-token keys loaded");
    Ok(JwtKeys::from_ring(ring, cfg.access_token_ttl_seconds))
}

fn session_config(cfg: &ApiConfig) -> SessionConfig {
    SessionConfig {
        refresh_idle_seconds: cfg.refresh_idle_ttl_seconds,
        refresh_absolute_seconds: cfg.refresh_absolute_ttl_seconds,
        reuse_grace_seconds: cfg.refresh_reuse_grace_seconds,
        throttle: ThrottleConfig::with_account_limit(cfg.login_failure_limit),
    }
}

/// Starts the API and serves until SIGINT/SIGTERM.
pub async fn serve(cfg: ApiConfig) -> anyhow::Result<()> {
    let keys = jwt_keys(&cfg)?;
    let oidc = cfg.oidc.settings().map_err(|e| anyhow::anyhow!(e))?;
    tms_core::metrics::init();
    let db = Db::new(&cfg.common.database_url, cfg.common.db_pool_size)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    migrate_with_retry(&db).await?;

    match (&cfg.bootstrap_admin_email, &cfg.bootstrap_admin_password) {
        (Some(email), Some(pw)) => {
            if bootstrap_admin(&db, email, pw)
                .await
                .map_err(|e| anyhow::anyhow!("bootstrap admin: {e}"))?
            {
                tracing::info!(email = %email, "created bootstrap admin");
            }
        }
        (None, None) => {}
        _ => anyhow::bail!(
            "set both TMS_BOOTSTRAP_ADMIN_EMAIL and TMS_BOOTSTRAP_ADMIN_PASSWORD, or neither"
        ),
    }

    let redis = lazy_connection(&cfg.common.redis_url).map_err(|e| anyhow::anyhow!("{e}"))?;
    let bus = EventBus::new(redis.clone());
    let relay =
        Relay::new(db.clone(), redis, &cfg.common.queue).with_reconcile(cfg.common.reconcile());
    let stop = CancellationToken::new();
    let relay_task = tokio::spawn(relay.clone().run(stop.clone()));

    let hub = EventHub::start(&cfg.common.redis_url, EVENT_BUFFER, stop.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let revocations = RevocationHub::start(&cfg.common.redis_url, stop.clone())
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let mut services = Services::new(&db, keys, bus.clone(), relay, hub);
    services.auth = services
        .auth
        .clone()
        .with_sessions(session_config(&cfg))
        .with_bus(bus.clone());
    let sso = match oidc {
        Some(settings) => {
            let sso =
                tms_core::auth::sso::SsoService::new(db.clone(), settings, services.auth.clone())
                    .map_err(|e| anyhow::anyhow!("{e}"))?;
            // Discovery is retried on first use; a provider that is down at start-up only warns.
            match sso.discover().await {
                Ok(()) => tracing::info!("single sign-on enabled"),
                Err(e) => {
                    tracing::warn!(error = %e, "single sign-on enabled; provider not reachable yet")
                }
            }
            Some(sso)
        }
        None => None,
    };
    // Every api runs the schedule loop; only the lease holder fires (see docs/schedules.md).
    let scheduler_task = cfg.common.scheduler().map(|sc| {
        let scheduler = Scheduler::new(db.clone(), services.runs.clone(), sc, "api");
        tokio::spawn(scheduler.run(stop.clone()))
    });
    let state = AppState {
        schema: graphql::build(services.clone(), cfg.common.production),
        ws_schema: graphql::build_ws(services.clone(), cfg.common.production),
        services,
        db,
        bus,
        production: cfg.common.production,
        allowed_origins: std::sync::Arc::new(cfg.allowed_origins.clone()),
        persisted: Default::default(),
        plans: Default::default(),
        revocations,
        sso,
        shutting_down: CancellationToken::new(),
        ws_connections: tokio_util::task::TaskTracker::new(),
        shared_subscriptions: Default::default(),
    };
    let shutting_down = state.shutting_down.clone();
    let ws_connections = state.ws_connections.clone();
    let grace = cfg.common.shutdown_grace_seconds;
    let running = server::bind(state, cfg.listen, grace)
        .with_context(|| format!("cannot listen on {}", cfg.listen))?;
    tracing::info!(addr = %cfg.listen, "tms-api listening");
    let handle = running.handle();
    tokio::spawn(async move {
        wait_for_signal().await;
        tracing::info!("shutdown requested: draining requests, closing WebSockets with 1001");
        shutting_down.cancel();
        // WebSockets are not in the server's connection count: their close frames are awaited
        // here, before the server stops the threads their tasks run on.
        ws_connections.close();
        let _ = tokio::time::timeout(Duration::from_secs(grace), ws_connections.wait()).await;
        handle.stop(true).await;
    });
    running.await?;
    stop.cancel();
    let _ = relay_task.await;
    if let Some(t) = scheduler_task {
        let _ = t.await;
    }
    Ok(())
}

/// Resolves on SIGINT or SIGTERM.
async fn wait_for_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(t) => t,
        Err(e) => {
            tracing::warn!(error = %e, "SIGTERM not watched; stop with SIGINT");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
