//! The blob store behind step outputs, through `object_store`: a local directory or any
//! S3-compatible bucket. Blobs are named by their SHA-256, so writing one twice is harmless and
//! concurrent writers of the same content cannot corrupt it (each put is atomic).

use std::path::Path;
use std::sync::Arc;

use futures::StreamExt as _;
use object_store::ObjectStore;
use object_store::path::Path as Key;
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt as _;

use super::ArtifactError;
use super::local::Local;
use super::manifest::{FileEntry, target};

#[derive(Clone)]
pub struct BlobStore {
    inner: Arc<dyn ObjectStore>,
    describe: String,
    /// The same store as plain files, when it is a local directory.
    local: Option<Local>,
}

impl std::fmt::Debug for BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe)
    }
}

impl BlobStore {
    /// `location` is a directory path (created if missing) or a URL: `file:///…`, or
    /// `s3://bucket[/prefix]` with credentials, region and endpoint from the standard `AWS_*`
    /// variables (`AWS_ENDPOINT` and `AWS_ALLOW_HTTP` for MinIO and other S3-compatible stores).
    pub fn open(location: &str) -> Result<Self, ArtifactError> {
        let cfg = |m: String| ArtifactError::Config(m);
        if let Some(rest) = location.strip_prefix("s3://") {
            let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(cfg(format!("TMS_ARTIFACTS `{location}` names no bucket")));
            }
            let s3 = object_store::aws::AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .build()
                .map_err(|e| cfg(format!("TMS_ARTIFACTS `{location}`: {e}")))?;
            let inner: Arc<dyn ObjectStore> = match prefix.trim_matches('/') {
                "" => Arc::new(s3),
                p => Arc::new(object_store::prefix::PrefixStore::new(s3, p)),
            };
            return Ok(Self {
                inner,
                describe: format!("s3://{bucket}/{prefix}"),
                local: None,
            });
        }
        let dir = match location.strip_prefix("file://") {
            Some(p) => p,
            None if location.contains("://") => {
                return Err(cfg(format!(
                    "TMS_ARTIFACTS `{location}`: only a directory, file:// or s3:// is supported"
                )));
            }
            None => location,
        };
        std::fs::create_dir_all(dir)
            .map_err(|e| cfg(format!("TMS_ARTIFACTS `{dir}` cannot be created: {e}")))?;
        let local = Arc::new(
            object_store::local::LocalFileSystem::new_with_prefix(dir)
                .map_err(|e| cfg(format!("TMS_ARTIFACTS `{dir}`: {e}")))?,
        );
        Ok(Self {
            inner: local.clone(),
            describe: format!("file://{dir}"),
            local: Some(Local(local)),
        })
    }

    pub(super) fn local(&self) -> Option<&Local> {
        self.local.as_ref()
    }

    pub fn describe(&self) -> &str {
        &self.describe
    }

    pub fn key(sha256: &str) -> Key {
        Key::from(format!("blobs/{}/{sha256}", &sha256[..2]))
    }

    pub async fn exists(&self, sha256: &str) -> Result<bool, ArtifactError> {
        match self.inner.head(&Self::key(sha256)).await {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(e.into()),
        }
    }

    /// Stores the file at `path` as blob `sha256`, streamed (multipart for large files).
    pub async fn upload(&self, path: &Path, sha256: &str) -> Result<(), ArtifactError> {
        let mut file = tokio::fs::File::open(path)
            .await
            .map_err(|e| ArtifactError::Io(path.display().to_string(), e))?;
        let mut w = object_store::buffered::BufWriter::new(self.inner.clone(), Self::key(sha256));
        let copied = tokio::io::copy(&mut file, &mut w).await;
        match copied {
            Ok(_) => w
                .shutdown()
                .await
                .map_err(|e| ArtifactError::Io(format!("blob {sha256}"), e)),
            Err(e) => {
                let _ = w.abort().await;
                Err(ArtifactError::Io(path.display().to_string(), e))
            }
        }
    }

    /// Writes blob `f.sha256` to `dest/f.path`, checking its hash on the way.
    pub async fn download(&self, f: &FileEntry, dest: &Path) -> Result<(), ArtifactError> {
        let to = target(dest, &f.path).ok_or_else(|| ArtifactError::Corrupt(f.path.clone()))?;
        let io = |e: std::io::Error| ArtifactError::Io(to.display().to_string(), e);
        if let Some(parent) = to.parent() {
            tokio::fs::create_dir_all(parent).await.map_err(io)?;
        }
        let got = match self.inner.get(&Self::key(&f.sha256)).await {
            Ok(g) => g,
            Err(object_store::Error::NotFound { .. }) => {
                return Err(ArtifactError::Missing(f.path.clone(), f.sha256.clone()));
            }
            Err(e) => return Err(e.into()),
        };
        let mut out = tokio::fs::File::create(&to).await.map_err(io)?;
        let mut hasher = Sha256::new();
        let mut stream = got.into_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk?;
            hasher.update(&chunk);
            out.write_all(&chunk).await.map_err(io)?;
        }
        out.flush().await.map_err(io)?;
        if hex::encode(hasher.finalize()) != f.sha256 {
            return Err(ArtifactError::Corrupt(f.path.clone()));
        }
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            let perms = std::fs::Permissions::from_mode(0o755);
            tokio::fs::set_permissions(&to, perms).await.map_err(io)?;
        }
        Ok(())
    }

    /// Every blob as (sha256, last modified).
    pub async fn list(
        &self,
    ) -> Result<Vec<(String, chrono::DateTime<chrono::Utc>)>, ArtifactError> {
        let mut all = Vec::new();
        let mut s = self.inner.list(Some(&Key::from("blobs")));
        while let Some(meta) = s.next().await {
            let meta = meta?;
            if let Some(name) = meta.location.filename() {
                all.push((name.to_string(), meta.last_modified));
            }
        }
        Ok(all)
    }

    pub async fn delete(&self, sha256: &str) -> Result<(), ArtifactError> {
        match self.inner.delete(&Self::key(sha256)).await {
            Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}
