//! Expiry of stored outputs: what finished runs older than the retention and expired cache
//! entries referenced is forgotten, then blobs no remaining manifest lists are deleted. Runs
//! under the exclusive sweep lock, so a manifest being registered (shared lock) is either seen
//! as live or registered after the deletions, and never loses a blob it counts on.

use std::time::Duration;

use diesel::prelude::*;
use diesel::sql_types::BigInt;

use super::{ArtifactError, BlobStore};
use crate::db::Db;
use crate::repo::artifacts::{self, Expired, SWEEP_LOCK};

#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SweepReport {
    pub expired: Expired,
    pub blobs_deleted: usize,
    pub blobs_kept: usize,
}

/// `retention`: outputs of runs finished longer ago are dropped. `grace`: manifests and blobs
/// younger than this are kept even when nothing references them yet (a step being stored).
pub async fn sweep(
    db: &Db,
    blobs: &BlobStore,
    retention: Duration,
    grace: Duration,
) -> Result<SweepReport, ArtifactError> {
    // Listing happens before the lock: a blob stored after it is simply not a candidate, and
    // steps finishing meanwhile are not held up by a long listing of a large bucket.
    let listed = blobs.list().await?;
    let blobs = blobs.clone();
    let handle = tokio::runtime::Handle::current();
    let now = chrono::Utc::now();
    let runs_before = now - chrono::Duration::from_std(retention).unwrap_or(chrono::Duration::MAX);
    let unused_before = now - chrono::Duration::from_std(grace).unwrap_or(chrono::Duration::MAX);
    let report = db
        .run(move |conn| {
            conn.transaction(|conn| {
                diesel::sql_query("SELECT pg_advisory_xact_lock($1)")
                    .bind::<BigInt, _>(SWEEP_LOCK)
                    .execute(conn)?;
                let expired = artifacts::expire(conn, runs_before, unused_before)?;
                let live = artifacts::live_blobs(conn)?;
                // Still inside the lock: the deletions finish before any new registration, so
                // a step reusing a listed blob either made it live above or checks for it after.
                let deleted = handle.block_on(async {
                    let mut report = SweepReport {
                        expired,
                        ..Default::default()
                    };
                    for (sha, modified) in listed {
                        if live.contains(&sha) || modified >= unused_before {
                            report.blobs_kept += 1;
                        } else {
                            blobs.delete(&sha).await?;
                            report.blobs_deleted += 1;
                        }
                    }
                    Ok::<_, ArtifactError>(report)
                });
                Ok(deleted)
            })
        })
        .await??;
    Ok(report)
}
