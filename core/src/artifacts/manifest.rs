//! A step's `/out` as a manifest: every regular file with its SHA-256, size and executable bit,
//! sorted by path; the manifest's own hash (SHA-256 of its canonical JSON) names it.

use std::io::Read;
use std::path::{Component, Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::ArtifactError;

/// The hash of a manifest with no files (`sha256("[]")`): a step that wrote nothing. Its row is
/// created by the migration, so such a step costs no registration, upload or restore.
pub const EMPTY_MANIFEST: &str = "4f53cda18c2baa0c0354bb5f9a3ecbe5ed12ab4d8e11ba873c2f11161202b945";

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileEntry {
    /// Relative path with `/` separators, no `.` or `..` parts.
    pub path: String,
    pub sha256: String,
    pub size: u64,
    pub executable: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Manifest {
    pub files: Vec<FileEntry>,
}

impl Manifest {
    /// SHA-256 (hex) of the canonical JSON: files sorted by path, fields in declaration order.
    pub fn hash(&self) -> String {
        let json = serde_json::to_vec(&self.files).expect("a manifest serializes");
        hex::encode(Sha256::digest(&json))
    }

    pub fn total_bytes(&self) -> u64 {
        self.files.iter().map(|f| f.size).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
    }

    /// Reads `dir` (which may be missing: no outputs), hashing every file. Symlinks and other
    /// special files are refused by name, and the total may not exceed `max_bytes`.
    pub fn scan(dir: &Path, max_bytes: u64) -> Result<Manifest, ArtifactError> {
        let mut files = Vec::new();
        if dir.exists() {
            let mut total = 0u64;
            walk(dir, dir, max_bytes, &mut total, &mut files)?;
        }
        files.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(Manifest { files })
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    max_bytes: u64,
    total: &mut u64,
    out: &mut Vec<FileEntry>,
) -> Result<(), ArtifactError> {
    let io = |p: &Path, e: std::io::Error| ArtifactError::Io(p.display().to_string(), e);
    for entry in std::fs::read_dir(dir).map_err(|e| io(dir, e))? {
        let entry = entry.map_err(|e| io(dir, e))?;
        let path = entry.path();
        let meta = std::fs::symlink_metadata(&path).map_err(|e| io(&path, e))?;
        let rel = relative(root, &path);
        if meta.is_dir() {
            walk(root, &path, max_bytes, total, out)?;
        } else if meta.is_file() {
            *total += meta.len();
            if *total > max_bytes {
                return Err(ArtifactError::TooLarge {
                    what: "step",
                    limit: max_bytes,
                    setting: "TMS_ARTIFACT_MAX_STEP_BYTES",
                });
            }
            use std::os::unix::fs::PermissionsExt;
            out.push(FileEntry {
                sha256: hash_file(&path).map_err(|e| io(&path, e))?,
                size: meta.len(),
                executable: meta.permissions().mode() & 0o111 != 0,
                path: rel,
            });
        } else {
            return Err(ArtifactError::Unsupported(rel));
        }
    }
    Ok(())
}

fn relative(root: &Path, path: &Path) -> String {
    let rel = path.strip_prefix(root).unwrap_or(path);
    rel.components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join("/")
}

/// SHA-256 (hex) of a file, streamed.
pub fn hash_file(path: &Path) -> std::io::Result<String> {
    let mut f = std::fs::File::open(path)?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex::encode(h.finalize()))
}

/// Where a manifest path lands under `dest`; `None` for a path that would escape it (a
/// manifest is trusted only as far as its paths are plain relative ones).
pub fn target(dest: &Path, rel: &str) -> Option<PathBuf> {
    let p = Path::new(rel);
    if rel.is_empty() || !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dest.join(p))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_empty_manifest_has_the_published_hash() {
        assert_eq!(Manifest::default().hash(), EMPTY_MANIFEST);
    }

    #[test]
    fn scan_is_sorted_and_content_addressed() {
        let d = std::env::temp_dir().join(format!("tms-manifest-{}", uuid::Uuid::new_v4()));
        std::fs::create_dir_all(d.join("sub")).unwrap();
        std::fs::write(d.join("b.txt"), "hello").unwrap();
        std::fs::write(d.join("sub/a.txt"), "x").unwrap();
        let m = Manifest::scan(&d, 1 << 20).unwrap();
        let paths: Vec<_> = m.files.iter().map(|f| f.path.as_str()).collect();
        assert_eq!(paths, ["b.txt", "sub/a.txt"]);
        assert_eq!(
            m.files[0].sha256,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        assert_eq!(m.total_bytes(), 6);
        let again = Manifest::scan(&d, 1 << 20).unwrap();
        assert_eq!(m.hash(), again.hash());
        let err = Manifest::scan(&d, 5).unwrap_err().to_string();
        assert!(err.contains("TMS_ARTIFACT_MAX_STEP_BYTES"), "{err}");
        std::os::unix::fs::symlink("/etc/passwd", d.join("link")).unwrap();
        let err = Manifest::scan(&d, 1 << 20).unwrap_err().to_string();
        assert!(err.contains("`link`"), "{err}");
        std::fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn targets_never_escape() {
        let d = Path::new("/x");
        assert_eq!(target(d, "a/b"), Some(PathBuf::from("/x/a/b")));
        assert_eq!(target(d, "../etc/passwd"), None);
        assert_eq!(target(d, "/etc/passwd"), None);
        assert_eq!(target(d, ""), None);
    }
}
