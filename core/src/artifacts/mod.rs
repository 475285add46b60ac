//! Durable step outputs: a step's `/out` becomes a manifest (in Postgres) of content-addressed
//! blobs (in the artifact store), so dependents, retries and runs resumed on another worker
//! read it wherever it was produced.

mod local;
pub mod manifest;
pub mod store;
pub mod sweep;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::db::Db;
use crate::repo;
pub use manifest::{EMPTY_MANIFEST, FileEntry, Manifest};
pub use store::BlobStore;

/// Why storing or restoring outputs failed. Shown to users as the step's error, so no variant
/// carries credentials (the store's description never holds them).
#[derive(Debug, thiserror::Error)]
pub enum ArtifactError {
    #[error("the artifact store is misconfigured: {0}")]
    Config(String),
    #[error("the step's outputs exceed the {what} limit of {limit} bytes (set by {setting})")]
    TooLarge {
        what: &'static str,
        limit: u64,
        setting: &'static str,
    },
    #[error(
        "/out holds `{0}`, which is neither a regular file nor a directory (symlinks and special files are not stored)"
    )]
    Unsupported(String),
    #[error("{0}: {1}")]
    Io(String, #[source] std::io::Error),
    #[error("artifact store: {0}")]
    Store(#[from] object_store::Error),
    #[error("stored output `{0}` (blob {1}) is missing from the artifact store")]
    Missing(String, String),
    #[error("stored output `{0}` does not match its manifest")]
    Corrupt(String),
    #[error("output manifest {0} is not registered (expired with its run?)")]
    UnknownManifest(String),
    #[error(transparent)]
    Db(#[from] crate::Error),
}

/// Size limits on what steps may store.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub max_step_bytes: u64,
    pub max_run_bytes: u64,
}

/// What a stored `/out` became.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub manifest: String,
    pub bytes: u64,
}

/// Manifests kept in memory at most; past it the map starts afresh.
const MANIFESTS_KEPT: usize = 1024;

type Files = Arc<Vec<FileEntry>>;

#[derive(Clone)]
pub struct Artifacts {
    db: Db,
    blobs: BlobStore,
    limits: Limits,
    /// Files of manifests restored before: a manifest is named by the hash of its files, so
    /// what a name lists never changes.
    manifests: Arc<Mutex<HashMap<String, Files>>>,
}

impl Artifacts {
    pub fn new(db: Db, blobs: BlobStore, limits: Limits) -> Self {
        Self {
            db,
            blobs,
            limits,
            manifests: Arc::default(),
        }
    }

    pub fn blobs(&self) -> &BlobStore {
        &self.blobs
    }

    /// Stores `dir` (a step's `/out`; missing means empty). `run_bytes` is what the run has
    /// stored already, for the per-run limit. Blobs already present are not written again.
    pub async fn save(&self, dir: &Path, run_bytes: u64) -> Result<Saved, ArtifactError> {
        let (d, max) = (dir.to_path_buf(), self.limits.max_step_bytes);
        let m = tokio::task::spawn_blocking(move || Manifest::scan(&d, max))
            .await
            .map_err(|e| crate::Error::Internal(format!("scan task: {e}")))??;
        let bytes = m.total_bytes();
        if run_bytes + bytes > self.limits.max_run_bytes {
            return Err(ArtifactError::TooLarge {
                what: "run",
                limit: self.limits.max_run_bytes,
                setting: "TMS_ARTIFACT_MAX_RUN_BYTES",
            });
        }
        if m.is_empty() {
            return Ok(Saved {
                manifest: EMPTY_MANIFEST.into(),
                bytes: 0,
            });
        }
        let hash = m.hash();
        let files = serde_json::to_value(&m.files).expect("a manifest serializes");
        let (h, count) = (hash.clone(), m.files.len() as i32);
        self.db
            .run(move |c| repo::artifacts::register_manifest(c, &h, &files, count, bytes as i64))
            .await?;
        let m: Files = Arc::new(m.files);
        if let Some(local) = self.blobs.local().cloned() {
            let (d, files) = (dir.to_path_buf(), m.clone());
            blocking(move || {
                for f in files.iter() {
                    let path = manifest::target(&d, &f.path)
                        .ok_or_else(|| ArtifactError::Corrupt(f.path.clone()))?;
                    local.upload(&path, &f.sha256)?;
                }
                Ok(())
            })
            .await?;
            self.remember(&hash, m);
            return Ok(Saved {
                manifest: hash,
                bytes,
            });
        }
        let mut done = std::collections::HashSet::new();
        for f in m.iter() {
            if !done.insert(f.sha256.as_str()) || self.blobs.exists(&f.sha256).await? {
                continue;
            }
            let path = manifest::target(dir, &f.path)
                .ok_or_else(|| ArtifactError::Corrupt(f.path.clone()))?;
            self.blobs.upload(&path, &f.sha256).await?;
        }
        self.remember(&hash, m.clone());
        Ok(Saved {
            manifest: hash,
            bytes,
        })
    }

    /// Restores each `(manifest, dest)` as [`Self::restore`] does, in order; for a local store,
    /// with one trip to the blocking pool for all of them. The error says which failed.
    pub async fn restore_all(
        &self,
        items: &[(String, PathBuf)],
    ) -> Result<(), (usize, ArtifactError)> {
        let Some(local) = self.blobs.local().cloned() else {
            for (i, (hash, dest)) in items.iter().enumerate() {
                self.restore(hash, dest).await.map_err(|e| (i, e))?;
            }
            return Ok(());
        };
        let mut all = Vec::with_capacity(items.len());
        for (i, (hash, dest)) in items.iter().enumerate() {
            let files = match hash.as_str() {
                EMPTY_MANIFEST => Files::default(),
                _ => self.files_of(hash).await.map_err(|e| (i, e))?,
            };
            all.push((files, dest.clone()));
        }
        let restored = tokio::task::spawn_blocking(move || {
            for (i, (files, dest)) in all.iter().enumerate() {
                local::empty_dir(dest).map_err(|e| (i, e))?;
                for f in files.iter() {
                    local.download(f, dest).map_err(|e| (i, e))?;
                }
            }
            Ok(())
        })
        .await
        .map_err(|e| (0, crate::Error::Internal(format!("file task: {e}")).into()))?;
        match restored {
            Err((i, e @ ArtifactError::Missing(..))) => {
                Err((i, self.explain(&items[i].0, e).await))
            }
            other => other,
        }
    }

    /// Writes the files of manifest `hash` into `dest` (emptied first), verifying each.
    pub async fn restore(&self, hash: &str, dest: &Path) -> Result<(), ArtifactError> {
        match self.restore_once(hash, dest).await {
            Err(e @ ArtifactError::Missing(..)) => Err(self.explain(hash, e).await),
            other => other,
        }
    }

    /// A blob of manifest `hash` is missing: the manifest kept in memory may have been swept
    /// since (expired with its run), which is the error to give then; else `missing` stands.
    async fn explain(&self, hash: &str, missing: ArtifactError) -> ArtifactError {
        if let Ok(mut m) = self.manifests.lock() {
            m.remove(hash);
        }
        match self.files_of(hash).await {
            Err(e @ ArtifactError::UnknownManifest(_)) => e,
            _ => missing,
        }
    }

    async fn restore_once(&self, hash: &str, dest: &Path) -> Result<(), ArtifactError> {
        let files = match hash {
            EMPTY_MANIFEST => Files::default(),
            _ => self.files_of(hash).await?,
        };
        if let Some(local) = self.blobs.local().cloned() {
            let dest = dest.to_path_buf();
            return blocking(move || {
                local::empty_dir(&dest)?;
                files.iter().try_for_each(|f| local.download(f, &dest))
            })
            .await;
        }
        let io = |e: std::io::Error| ArtifactError::Io(dest.display().to_string(), e);
        if dest.exists() {
            tokio::fs::remove_dir_all(dest).await.map_err(io)?;
        }
        tokio::fs::create_dir_all(dest).await.map_err(io)?;
        for f in files.iter() {
            self.blobs.download(f, dest).await?;
        }
        Ok(())
    }

    /// The files manifest `hash` lists, from memory or read once. A plain read: the manifest
    /// of a dependency's output is referenced by that task, which keeps the sweep off it.
    async fn files_of(&self, hash: &str) -> Result<Files, ArtifactError> {
        let cached = self
            .manifests
            .lock()
            .ok()
            .and_then(|m| m.get(hash).cloned());
        if let Some(files) = cached {
            return Ok(files);
        }
        let h = hash.to_string();
        let files = self
            .db
            .run(move |c| repo::artifacts::manifest_files(c, &h))
            .await?
            .ok_or_else(|| ArtifactError::UnknownManifest(hash.into()))?;
        let files: Files = Arc::new(
            serde_json::from_value(files)
                .map_err(|_| ArtifactError::Corrupt(format!("manifest {hash}")))?,
        );
        self.remember(hash, files.clone());
        Ok(files)
    }

    /// Keeps what manifest `hash` lists (read, or just stored: a step's dependents usually
    /// restore it on the same worker, without reading it back).
    fn remember(&self, hash: &str, files: Files) {
        if let Ok(mut m) = self.manifests.lock() {
            if m.len() >= MANIFESTS_KEPT {
                m.clear();
            }
            m.insert(hash.to_string(), files);
        }
    }
}

/// Runs `f` (file operations) on the blocking pool.
async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ArtifactError> + Send + 'static,
) -> Result<T, ArtifactError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| crate::Error::Internal(format!("file task: {e}")))?
}

/// The default store location: `$TMS_DATA_DIR/artifacts`, else `<tmp>/tms-artifacts`.
pub fn default_location() -> PathBuf {
    match std::env::var_os("TMS_DATA_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("artifacts"),
        _ => std::env::temp_dir().join("tms-artifacts"),
    }
}
