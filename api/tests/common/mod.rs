//! What the api's in-process tests share: the settings `scripts/test` exports and a fresh,
//! migrated database on its Postgres.

use diesel::{Connection, PgConnection, RunQueryDsl};
use tms_core::db::Db;

pub fn env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run through `scripts/test`, which starts Postgres and Redis")
    })
}

/// A new database named `{prefix}_<random>` on the test cluster, migrated, behind a pool of
/// `pool` connections.
pub async fn fresh_db(prefix: &str, pool: u32) -> Db {
    let admin = env("TMS_TEST_DATABASE_URL");
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    let mut conn = PgConnection::establish(&admin).expect("connect to the test cluster");
    diesel::sql_query(format!("CREATE DATABASE {name}"))
        .execute(&mut conn)
        .expect("create database");
    let base = admin.rsplit_once('/').expect("database url").0;
    let db = Db::new(&format!("{base}/{name}"), pool).expect("pool");
    db.migrate().await.expect("migrate");
    db
}

/// The real services on `db` with a bootstrap admin, as one api process builds them.
// Each test binary compiles this module and reads a different subset of the fields.
#[allow(dead_code)]
pub struct Stack {
    pub services: tms_api::state::Services,
    pub bus: tms_core::bus::EventBus,
    /// The admin's access token.
    pub token: String,
    /// Stops the event hub's Redis subscription.
    pub stop: tokio_util::sync::CancellationToken,
}

pub async fn stack(db: &Db, email: &str, password: &str) -> Stack {
    use tms_core::bus::{EventBus, EventHub, lazy_connection};
    let redis_url = env("TMS_TEST_REDIS_URL");
    let redis = lazy_connection(&redis_url).expect("redis");
    let stop = tokio_util::sync::CancellationToken::new();
    let hub = EventHub::start(&redis_url, 64, stop.clone()).expect("event hub");
    let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
    let bus = EventBus::new(redis.clone());
    let services = tms_api::state::Services::new(
        db,
        tms_core::auth::jwt::JwtKeys::new(b"api-tests-secret-api-tests-secret-32", 600)
            .expect("keys"),
        bus.clone(),
        tms_core::queue::relay::Relay::new(db.clone(), redis, &queue),
        hub,
    );
    assert!(
        tms_core::auth::service::bootstrap_admin(db, email, password)
            .await
            .expect("admin")
    );
    let token = services
        .auth
        .login(email, password, &Default::default())
        .await
        .expect("login")
        .access_token;
    Stack {
        services,
        bus,
        token,
        stop,
    }
}

/// A step running `true`, after `deps`.
#[allow(dead_code)]
pub fn step(name: &str, deps: &[&str]) -> tms_core::workflows::StepSpec {
    tms_core::workflows::StepSpec {
        name: name.into(),
        image: "alpine:3.20".into(),
        run: Some("true".into()),
        depends_on: deps.iter().map(|d| d.to_string()).collect(),
        ..Default::default()
    }
}
