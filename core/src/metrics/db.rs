//! The Postgres connection pool's state, read from r2d2 at each scrape.

use std::sync::LazyLock;

use prometheus::{IntGaugeVec, Opts};

use crate::db::Db;
use crate::metrics::register;

pub static DB_POOL: LazyLock<IntGaugeVec> = LazyLock::new(|| {
    register(
        IntGaugeVec::new(
            Opts::new(
                "tms_db_pool_connections",
                "Postgres pool connections by state: idle, in_use, max (the pool's size).",
            ),
            &["state"],
        )
        .expect("valid metric"),
    )
});

/// Reads the pool's current state into the gauge.
pub fn refresh(db: &Db) {
    let state = db.pool().state();
    let idle = i64::from(state.idle_connections);
    let open = i64::from(state.connections);
    DB_POOL.with_label_values(&["idle"]).set(idle);
    DB_POOL.with_label_values(&["in_use"]).set(open - idle);
    DB_POOL
        .with_label_values(&["max"])
        .set(i64::from(db.pool().max_size()));
}

pub(crate) fn init() {
    for s in ["idle", "in_use", "max"] {
        DB_POOL.with_label_values(&[s]);
    }
}
