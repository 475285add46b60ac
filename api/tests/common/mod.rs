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
