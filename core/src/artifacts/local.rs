//! Plain-file access to a local blob store, so that a restore or a save is one blocking task
//! instead of a blocking-pool hop per file operation (seven per restored file through
//! `object_store`'s local store). Same layout and the same atomic writes (a staging name
//! `<blob>#<digits>`, then a rename) as `object_store::local`, whose listing skips blobs still
//! being written.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use object_store::local::LocalFileSystem;
use sha2::{Digest, Sha256};

use super::ArtifactError;
use super::manifest::{FileEntry, target};
use super::store::BlobStore;

#[derive(Clone)]
pub(super) struct Local(pub(super) Arc<LocalFileSystem>);

impl Local {
    fn blob(&self, sha256: &str) -> Result<PathBuf, ArtifactError> {
        Ok(self.0.path_to_filesystem(&BlobStore::key(sha256))?)
    }

    /// Writes blob `f.sha256` to `dest/f.path`, checking its hash on the way.
    pub(super) fn download(&self, f: &FileEntry, dest: &Path) -> Result<(), ArtifactError> {
        let to = target(dest, &f.path).ok_or_else(|| ArtifactError::Corrupt(f.path.clone()))?;
        let io = |e: std::io::Error| ArtifactError::Io(to.display().to_string(), e);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let from = self.blob(&f.sha256)?;
        let mut src = match File::open(&from) {
            Ok(s) => s,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(ArtifactError::Missing(f.path.clone(), f.sha256.clone()));
            }
            Err(e) => return Err(ArtifactError::Io(from.display().to_string(), e)),
        };
        let mut out = File::create(&to).map_err(io)?;
        let mut hasher = Sha256::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = src
                .read(&mut buf)
                .map_err(|e| ArtifactError::Io(from.display().to_string(), e))?;
            if n == 0 {
                break;
            }
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n]).map_err(io)?;
        }
        if hex::encode(hasher.finalize()) != f.sha256 {
            return Err(ArtifactError::Corrupt(f.path.clone()));
        }
        if f.executable {
            use std::os::unix::fs::PermissionsExt;
            out.set_permissions(std::fs::Permissions::from_mode(0o755))
                .map_err(io)?;
        }
        Ok(())
    }

    /// Stores the file at `path` as blob `sha256`, unless the store has it (the same name is
    /// the same content).
    pub(super) fn upload(&self, path: &Path, sha256: &str) -> Result<(), ArtifactError> {
        static STAGED: AtomicU64 = AtomicU64::new(0);
        let to = self.blob(sha256)?;
        if to.exists() {
            return Ok(());
        }
        let io = |e: std::io::Error| ArtifactError::Io(to.display().to_string(), e);
        if let Some(parent) = to.parent() {
            std::fs::create_dir_all(parent).map_err(io)?;
        }
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let staged = to.with_file_name(format!("{sha256}#{}{n}", std::process::id()));
        let written = std::fs::copy(path, &staged)
            .map_err(|e| ArtifactError::Io(path.display().to_string(), e))
            .and_then(|_| std::fs::rename(&staged, &to).map_err(io));
        if written.is_err() {
            let _ = std::fs::remove_file(&staged);
        }
        written
    }
}

/// `dest` emptied (created if missing).
pub(super) fn empty_dir(dest: &Path) -> Result<(), ArtifactError> {
    let io = |e: std::io::Error| ArtifactError::Io(dest.display().to_string(), e);
    match std::fs::remove_dir_all(dest) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(io(e)),
    }
    std::fs::create_dir_all(dest).map_err(io)
}

#[cfg(test)]
mod tests;
