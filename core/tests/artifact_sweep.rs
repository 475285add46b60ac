//! The artifact sweep against the real Postgres `scripts/test` provides and a local blob store:
//! outputs of live runs and live cache entries survive (and restore byte for byte), outputs of
//! runs finished before the retention and of expired cache entries are forgotten, their blobs
//! deleted once the grace has passed, a blob shared with a live manifest is kept, and the empty
//! manifest's row is never swept.

use std::path::{Path, PathBuf};
use std::time::Duration;

use diesel::{Connection, PgConnection, RunQueryDsl};
use tms_core::artifacts::manifest::hash_file;
use tms_core::artifacts::sweep::{SweepReport, sweep};
use tms_core::artifacts::{ArtifactError, Artifacts, BlobStore, EMPTY_MANIFEST, Limits};
use tms_core::db::Db;
use tms_core::repo;
use tms_core::repo::artifacts::{Expired, NewCacheEntry};
use uuid::Uuid;

mod common;

const DAY: Duration = Duration::from_secs(86_400);

/// A directory removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(what: &str) -> Self {
        let p = std::env::temp_dir().join(format!("tms-{what}-{}", Uuid::new_v4().simple()));
        std::fs::create_dir_all(&p).expect("temp dir");
        TempDir(p)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `files` into a fresh directory under `root` (what a step's `/out` would hold).
fn out_dir(root: &Path, name: &str, files: &[(&str, &str)]) -> PathBuf {
    let d = root.join(name);
    std::fs::create_dir_all(&d).expect("out dir");
    for (path, content) in files {
        std::fs::write(d.join(path), content).expect("write output");
    }
    d
}

/// Every file under `<store>/blobs`, by name (its SHA-256).
fn blob_files(store: &Path) -> Vec<String> {
    fn walk(d: &Path, out: &mut Vec<String>) {
        for e in std::fs::read_dir(d).into_iter().flatten().flatten() {
            if e.path().is_dir() {
                walk(&e.path(), out);
            } else {
                out.push(e.file_name().to_string_lossy().into_owned());
            }
        }
    }
    let mut out = Vec::new();
    walk(&store.join("blobs"), &mut out);
    out.sort();
    out
}

fn sql(db_url: &str, q: &str) {
    let mut c = PgConnection::establish(db_url).expect("connect");
    diesel::sql_query(q)
        .execute(&mut c)
        .unwrap_or_else(|e| panic!("{q}: {e}"));
}

/// A fresh migrated database holding a workflow `a -> b` and two runs of it; returns the
/// database handle, its URL, the workflow and the runs `(live, old)`.
async fn setup() -> (Db, String, Uuid, Uuid, Uuid) {
    let b = common::base("tms_sweep").await;
    let steps = vec![common::step("a", &[]), common::step("b", &["a"])];
    let wf = b.create_workflow(common::workflow("outputs", steps)).await;
    let (live, old) = (b.trigger(wf).await, b.trigger(wf).await);
    (b.db, b.url, wf, live, old)
}

#[tokio::test]
async fn the_sweep_keeps_live_outputs_and_deletes_only_what_expired() {
    let (db, url, workflow_id, live_run, old_run) = setup().await;
    let store_dir = TempDir::new("sweep-store");
    let scratch = TempDir::new("sweep-outs");
    let blobs = BlobStore::open(store_dir.0.to_str().unwrap()).expect("open store");
    let limits = Limits {
        max_step_bytes: 1 << 20,
        max_run_bytes: 1 << 20,
    };
    let artifacts = Artifacts::new(db.clone(), blobs.clone(), limits);

    // (i) a live run's output, sharing `shared.txt` with (ii); (ii) an old run's outputs (one
    // step wrote nothing); (iii) a live and an expired cache entry.
    let shared = "the same bytes in a live and in an expired manifest\n";
    let live_files = [("live.txt", "only the live run\n"), ("shared.txt", shared)];
    let old_files = [("old.txt", "only the old run\n"), ("shared.txt", shared)];
    let live_dir = out_dir(&scratch.0, "live", &live_files);
    let old_dir = out_dir(&scratch.0, "old", &old_files);
    let hot_dir = out_dir(&scratch.0, "hot", &[("hot.txt", "a live cache entry\n")]);
    let cold_dir = out_dir(&scratch.0, "cold", &[("cold.txt", "an expired entry\n")]);
    let sha = |d: &Path, f: &str| hash_file(&d.join(f)).expect("hash");
    let (live_only, shared_sha, old_only) = (
        sha(&live_dir, "live.txt"),
        sha(&live_dir, "shared.txt"),
        sha(&old_dir, "old.txt"),
    );
    let (hot_sha, cold_sha) = (sha(&hot_dir, "hot.txt"), sha(&cold_dir, "cold.txt"));

    let live = artifacts.save(&live_dir, 0).await.expect("save live");
    let old = artifacts.save(&old_dir, 0).await.expect("save old");
    let empty = artifacts
        .save(&scratch.0.join("nothing"), 0)
        .await
        .expect("save empty");
    let hot = artifacts.save(&hot_dir, 0).await.expect("save hot");
    let cold = artifacts.save(&cold_dir, 0).await.expect("save cold");
    assert_eq!(empty.manifest, EMPTY_MANIFEST);
    assert_eq!(empty.bytes, 0);
    assert_eq!(live.bytes, (live_files[0].1.len() + shared.len()) as u64);
    let mut all = vec![
        live_only.clone(),
        shared_sha.clone(),
        old_only.clone(),
        hot_sha.clone(),
        cold_sha.clone(),
    ];
    all.sort();
    assert_eq!(
        blob_files(&store_dir.0),
        all,
        "one blob per distinct content"
    );

    sql(
        &url,
        &format!(
            "UPDATE tasks SET output_manifest = '{}' WHERE run_id = '{live_run}' AND name = 'a'",
            live.manifest
        ),
    );
    sql(
        &url,
        &format!(
            "UPDATE tasks SET output_manifest = CASE name WHEN 'a' THEN '{}' ELSE '{EMPTY_MANIFEST}' END \
             WHERE run_id = '{old_run}'",
            old.manifest
        ),
    );
    sql(
        &url,
        &format!(
            "UPDATE runs SET status = 'succeeded', started_at = now() - interval '60 days', \
             finished_at = now() - interval '60 days' WHERE id = '{old_run}'"
        ),
    );
    let parts = serde_json::json!({});
    for (key, manifest, ttl) in [("a", &hot.manifest, 3600), ("b", &cold.manifest, -60)] {
        let (key, manifest, parts) = (key.repeat(64), manifest.clone(), parts.clone());
        db.run(move |c| {
            repo::artifacts::store(
                c,
                &NewCacheEntry {
                    key: &key,
                    workflow_id,
                    step: "a",
                    manifest: &manifest,
                    parts: &parts,
                    source_run_id: live_run,
                    ttl_seconds: ttl,
                },
            )
        })
        .await
        .expect("cache entry");
    }

    let old_events = count_events(&db, old_run).await;
    assert!(old_events > 0, "a triggered run has events");
    // Within the grace: references are dropped, but manifests and blobs just used stay.
    let report = sweep(&db, &blobs, 30 * DAY, Duration::from_secs(3600))
        .await
        .expect("sweep within grace");
    let expected = SweepReport {
        expired: Expired {
            run_events: old_events,
            step_logs: 0,
            task_outputs: 2,
            cache_entries: 1,
            manifests: 0,
        },
        blobs_deleted: 0,
        blobs_kept: 5,
    };
    assert_eq!(report, expected);
    assert_eq!(blob_files(&store_dir.0), all);
    assert_eq!(
        count_events(&db, old_run).await,
        0,
        "the old run's events expired"
    );
    assert!(
        count_events(&db, live_run).await > 0,
        "a live run keeps its events"
    );

    // Past the grace: what only the old run and the expired entry referenced goes.
    let report = sweep(&db, &blobs, 30 * DAY, Duration::ZERO)
        .await
        .expect("sweep");
    let expected = SweepReport {
        expired: Expired {
            run_events: 0,
            step_logs: 0,
            task_outputs: 0,
            cache_entries: 0,
            manifests: 2,
        },
        blobs_deleted: 2,
        blobs_kept: 3,
    };
    assert_eq!(report, expected);
    let mut kept = vec![live_only.clone(), shared_sha.clone(), hot_sha.clone()];
    kept.sort();
    assert_eq!(
        blob_files(&store_dir.0),
        kept,
        "deleted: {old_only} {cold_sha}"
    );
    for (sha, present) in [(&shared_sha, true), (&old_only, false), (&cold_sha, false)] {
        assert_eq!(blobs.exists(sha).await.expect("head"), present, "{sha}");
    }

    // Live outputs restore byte for byte; forgotten ones are reported as such.
    let back = scratch.0.join("restored-live");
    artifacts
        .restore(&live.manifest, &back)
        .await
        .expect("restore live");
    for (f, content) in live_files {
        assert_eq!(std::fs::read_to_string(back.join(f)).unwrap(), content);
    }
    let back = scratch.0.join("restored-hot");
    artifacts
        .restore(&hot.manifest, &back)
        .await
        .expect("restore hot");
    assert_eq!(
        std::fs::read_to_string(back.join("hot.txt")).unwrap(),
        "a live cache entry\n"
    );
    for gone in [&old.manifest, &cold.manifest] {
        let err = artifacts
            .restore(gone, &scratch.0.join("restored-gone"))
            .await
            .expect_err("swept manifest restored");
        assert!(
            matches!(err, ArtifactError::UnknownManifest(ref h) if h == gone),
            "{err}"
        );
    }
    // Restored together (a step's dependencies): the failing one is named by its place.
    let (a, b) = (scratch.0.join("all-live"), scratch.0.join("all-gone"));
    let items = [
        (live.manifest.clone(), a.clone()),
        (old.manifest.clone(), b),
    ];
    let err = artifacts
        .restore_all(&items)
        .await
        .expect_err("a swept manifest restored with a live one");
    assert!(
        matches!(err, (1, ArtifactError::UnknownManifest(ref h)) if *h == old.manifest),
        "{err:?}"
    );
    artifacts
        .restore_all(&items[..1])
        .await
        .expect("restore the live one alone");
    for (f, content) in live_files {
        assert_eq!(std::fs::read_to_string(a.join(f)).unwrap(), content);
    }

    // The rows say the same: the live task keeps its output, the old run's tasks have none,
    // the live entry remains, and the empty manifest's row survives.
    let (live_tasks, old_tasks) = db
        .run(move |c| {
            Ok((
                repo::runs::tasks_of(c, live_run)?,
                repo::runs::tasks_of(c, old_run)?,
            ))
        })
        .await
        .expect("tasks");
    let outputs = |ts: &[repo::runs::TaskRow]| -> Vec<Option<String>> {
        ts.iter().map(|t| t.output_manifest.clone()).collect()
    };
    assert_eq!(outputs(&live_tasks), [Some(live.manifest.clone()), None]);
    assert_eq!(outputs(&old_tasks), [None, None]);
    let (hot_key, cold_key) = ("a".repeat(64), "b".repeat(64));
    let (hot_row, cold_row, empty_row) = db
        .run(move |c| {
            Ok((
                repo::artifacts::entry(c, &hot_key)?,
                repo::artifacts::entry(c, &cold_key)?,
                repo::artifacts::manifest_files(c, EMPTY_MANIFEST)?,
            ))
        })
        .await
        .expect("rows");
    assert_eq!(hot_row.map(|r| r.manifest), Some(hot.manifest.clone()));
    assert!(cold_row.is_none(), "the expired entry is deleted");
    assert_eq!(empty_row, Some(serde_json::json!([])));
    artifacts
        .restore(EMPTY_MANIFEST, &scratch.0.join("restored-empty"))
        .await
        .expect("the empty manifest restores");

    // A second sweep finds nothing more to do.
    let report = sweep(&db, &blobs, 30 * DAY, Duration::ZERO)
        .await
        .expect("sweep again");
    assert_eq!(
        report,
        SweepReport {
            blobs_kept: 3,
            ..Default::default()
        }
    );
}

async fn count_events(db: &Db, run: uuid::Uuid) -> usize {
    use diesel::prelude::*;
    use tms_core::db::schema::run_events;
    db.run(move |c| {
        Ok(run_events::table
            .filter(run_events::run_id.eq(run))
            .count()
            .get_result::<i64>(c)? as usize)
    })
    .await
    .expect("count events")
}
