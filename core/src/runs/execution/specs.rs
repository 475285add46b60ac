//! The workflow versions a worker runs, kept in memory: a version never changes once written,
//! so each delivery after the first of a version needs no read of it (and no JSON parse).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};

use diesel::PgConnection;
use uuid::Uuid;

use crate::error::{Error, Result};
use crate::repo;
use crate::workflows::WorkflowSpec;

/// Versions kept at most; past it the map starts afresh (a worker runs few versions at once,
/// and a miss costs one read).
const KEPT: usize = 1024;

type Specs = Mutex<HashMap<(Uuid, i32), Arc<WorkflowSpec>>>;

fn specs() -> &'static Specs {
    static SPECS: OnceLock<Specs> = OnceLock::new();
    SPECS.get_or_init(Specs::default)
}

/// Version `version` of workflow `workflow_id`, from memory or read once.
pub(super) fn version(
    conn: &mut PgConnection,
    workflow_id: Uuid,
    version: i32,
) -> Result<Arc<WorkflowSpec>> {
    let key = (workflow_id, version);
    if let Some(s) = lock().get(&key) {
        return Ok(s.clone());
    }
    let spec = Arc::new(
        repo::workflows::version(conn, workflow_id, version)?
            .ok_or(Error::NotFound("workflow version"))?
            .spec()?,
    );
    let mut map = lock();
    if map.len() >= KEPT {
        map.clear();
    }
    map.insert(key, spec.clone());
    Ok(spec)
}

fn lock() -> std::sync::MutexGuard<'static, HashMap<(Uuid, i32), Arc<WorkflowSpec>>> {
    // A panic while holding the lock leaves a map that is still whole.
    specs().lock().unwrap_or_else(|e| e.into_inner())
}
