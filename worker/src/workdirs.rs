//! Run and step directories, reused instead of created and deleted for every run. Allocating
//! an inode is the expensive part of a short step on a busy filesystem: ext4 without a journal
//! (this project's machines) scans past every inode deleted in the last minutes on each
//! allocation, so at a few hundred steps a second `mkdir` cost more than the steps themselves
//! (see docs/performance.md). A succeeded run's directories are emptied and kept in a pool
//! under `<work root>/.pool/<pid>`; the next run renames them into place.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::outputs::RunData;

/// The subdirectories of a step directory that are kept (emptied) when it is pooled: the
/// executors' `out`, `in` and `work`, and the restored dependency outputs' `deps`.
const KEPT: [&str; 4] = ["out", "in", "work", "deps"];

/// The one file of a run directory that is kept (emptied): the run's inputs file, which every
/// run writes (`crate::outputs::RunData::prepare`).
const KEPT_FILE: &str = "_inputs.json";

/// The pools' directory under the work root. Not a run id, so the retention sweep passes it by.
const POOL: &str = ".pool";

pub struct WorkDirs {
    pool: PathBuf,
    runs: Mutex<Vec<PathBuf>>,
    steps: Mutex<Vec<PathBuf>>,
    next: AtomicU64,
    /// At most this many step directories (and a quarter as many run directories) are pooled.
    cap: usize,
}

impl WorkDirs {
    /// Starts with an empty pool of this process under `root`. Workers sharing a work root each
    /// keep their own (`.pool/<pid>`); pools of processes that are gone are removed (they may
    /// be half emptied).
    pub fn open(root: &Path, cap: usize) -> io::Result<Self> {
        let pools = root.join(POOL);
        std::fs::create_dir_all(&pools)?;
        for entry in std::fs::read_dir(&pools)? {
            let entry = entry?;
            let owner = entry.file_name().to_string_lossy().parse::<u32>().ok();
            let alive = owner.is_some_and(|pid| {
                pid != std::process::id() && Path::new(&format!("/proc/{pid}")).exists()
            });
            if !alive {
                remove_entry(&entry.path())?;
            }
        }
        let pool = pools.join(std::process::id().to_string());
        std::fs::create_dir_all(&pool)?;
        Ok(Self {
            pool,
            runs: Mutex::default(),
            steps: Mutex::default(),
            next: AtomicU64::new(0),
            cap,
        })
    }

    /// Makes `run_dir` exist, from the pool when it holds a directory.
    pub fn run_dir(&self, run_dir: &Path) -> io::Result<()> {
        self.take(&self.runs, run_dir)
    }

    /// Makes `step_dir` exist, from the pool when it holds one (with `out`, `in`, `work` and
    /// `deps` already there, empty).
    pub fn step_dir(&self, step_dir: &Path) -> io::Result<()> {
        self.take(&self.steps, step_dir)
    }

    fn take(&self, pool: &Mutex<Vec<PathBuf>>, dir: &Path) -> io::Result<()> {
        if dir.exists() {
            return Ok(());
        }
        let pooled = pool.lock().ok().and_then(|mut p| p.pop());
        if let Some(p) = pooled
            && std::fs::rename(&p, dir).is_ok()
        {
            return Ok(());
        }
        std::fs::create_dir_all(dir)
    }

    /// Empties a succeeded run's directory into the pool: each step directory keeps its
    /// [`KEPT`] subdirectories, emptied; everything else of the run is removed. What cannot be
    /// emptied (a step left a directory it may not write) is removed as a whole, or left for
    /// the retention sweep. Blocking: call from a blocking thread.
    pub fn recycle(&self, run_dir: &Path) {
        if let Err(e) = self.try_recycle(run_dir) {
            tracing::debug!(dir = %run_dir.display(), error = %e, "run directory not recycled; removing it");
            let _ = std::fs::remove_dir_all(run_dir);
        }
    }

    fn try_recycle(&self, run_dir: &Path) -> io::Result<()> {
        for entry in std::fs::read_dir(run_dir)? {
            let entry = entry?;
            let path = entry.path();
            let kind = entry.file_type()?;
            if kind.is_dir() && self.has_room(&self.steps, self.cap) {
                match empty_step_dir(&path) {
                    Ok(()) => self.put(&self.steps, &path, "s")?,
                    Err(_) => std::fs::remove_dir_all(&path)?,
                }
            } else if kind.is_file() && entry.file_name() == std::ffi::OsStr::new(KEPT_FILE) {
                // Emptied, not removed: the next run rewrites it in place (no new inode).
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(&path)?
                    .set_len(0)?;
            } else {
                remove_entry(&path)?;
            }
        }
        if self.has_room(&self.runs, self.cap / 4) {
            self.put(&self.runs, run_dir, "r")
        } else {
            std::fs::remove_dir(run_dir)
        }
    }

    fn has_room(&self, pool: &Mutex<Vec<PathBuf>>, cap: usize) -> bool {
        pool.lock().map(|p| p.len() < cap).unwrap_or(false)
    }

    fn put(&self, pool: &Mutex<Vec<PathBuf>>, dir: &Path, kind: &str) -> io::Result<()> {
        let n = self.next.fetch_add(1, Ordering::Relaxed);
        let to = self.pool.join(format!("{kind}{n}"));
        std::fs::rename(dir, &to)?;
        if let Ok(mut p) = pool.lock() {
            p.push(to);
        }
        Ok(())
    }
}

/// Runs `f` (file operations on the run directory `dir`, with the pool `dirs`) on the blocking
/// pool; its error says what failed.
pub async fn in_blocking<T: Send + 'static>(
    dirs: &std::sync::Arc<WorkDirs>,
    dir: &Path,
    f: impl FnOnce(&WorkDirs, &Path) -> Result<T, String> + Send + 'static,
) -> tms_core::Result<T> {
    let (dirs, path) = (dirs.clone(), dir.to_path_buf());
    tokio::task::spawn_blocking(move || f(&dirs, &path))
        .await
        .map_err(|e| tms_core::Error::Internal(format!("preparing a work directory: {e}")))?
        .map_err(tms_core::Error::Internal)
}

/// A turn's directories under `run_dir` in one trip to the blocking pool: on the run's first
/// turn (`run`: its workflow, inputs and `noCache`), the run's own directory and inputs file,
/// then the directory of each of `steps`. Nothing at all when there is nothing to make.
pub async fn prepare_turn(
    dirs: &std::sync::Arc<WorkDirs>,
    run_dir: &Path,
    run: Option<(uuid::Uuid, serde_json::Value, bool)>,
    steps: Vec<String>,
) -> tms_core::Result<Option<RunData>> {
    if run.is_none() && steps.is_empty() {
        return Ok(None);
    }
    in_blocking(dirs, run_dir, move |dirs, dir| {
        let run = match run {
            Some((workflow_id, inputs, no_cache)) => {
                dirs.run_dir(dir)
                    .map_err(|e| format!("preparing {}: {e}", dir.display()))?;
                Some(
                    RunData::prepare(dir, workflow_id, inputs, no_cache)
                        .map_err(|e| format!("writing the run's inputs file: {e}"))?,
                )
            }
            None => None,
        };
        steps.iter().try_for_each(|n| {
            let d = dir.join(n);
            dirs.step_dir(&d)
                .map_err(|e| format!("preparing {}: {e}", d.display()))
        })?;
        Ok(run)
    })
    .await
}

/// Keeps only the [`KEPT`] subdirectories of `step_dir`, each emptied.
fn empty_step_dir(step_dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(step_dir)? {
        let entry = entry?;
        let kept = entry.file_type()?.is_dir()
            && KEPT
                .iter()
                .any(|k| entry.file_name() == std::ffi::OsStr::new(k));
        if kept {
            empty_dir(&entry.path())?;
        } else {
            remove_entry(&entry.path())?;
        }
    }
    Ok(())
}

/// Removes everything inside `dir` (symlinks themselves, never what they point to).
pub fn empty_dir(dir: &Path) -> io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        remove_entry(&entry?.path())?;
    }
    Ok(())
}

/// Removes `path`: a directory with its contents, or a file or symlink.
fn remove_entry(path: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(path)?.is_dir() {
        std::fs::remove_dir_all(path)
    } else {
        std::fs::remove_file(path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tree(step: &Path) {
        for d in KEPT {
            std::fs::create_dir_all(step.join(d)).unwrap();
        }
        std::fs::write(step.join("out/result"), "secret output").unwrap();
        std::fs::create_dir_all(step.join("work/nested/deeper")).unwrap();
        std::fs::write(step.join("work/nested/deeper/f"), "x").unwrap();
        std::fs::create_dir_all(step.join("deps/a")).unwrap();
        std::fs::write(step.join("deps/a/file"), "dep").unwrap();
        std::os::unix::fs::symlink(step.join("deps/a"), step.join("in/a")).unwrap();
        std::fs::write(step.join("stray"), "x").unwrap();
    }

    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn a_recycled_run_comes_back_empty_with_its_step_layout() {
        let root = tempfile::tempdir().unwrap();
        let dirs = WorkDirs::open(root.path(), 8).unwrap();
        let run = root.path().join("run-1");
        dirs.run_dir(&run).unwrap();
        std::fs::write(run.join("_inputs.json"), "{}").unwrap();
        dirs.step_dir(&run.join("a")).unwrap();
        tree(&run.join("a"));
        dirs.recycle(&run);
        assert!(!run.exists(), "the run's directory left its place");
        // The dependency the symlink pointed to was removed with the step, not followed out.
        let next = root.path().join("run-2");
        dirs.run_dir(&next).unwrap();
        assert_eq!(entries(&next), [KEPT_FILE], "nothing else of run 1 is left");
        assert!(
            std::fs::read(next.join(KEPT_FILE)).unwrap().is_empty(),
            "its inputs are gone"
        );
        let step = next.join("b");
        dirs.step_dir(&step).unwrap();
        assert_eq!(entries(&step), ["deps", "in", "out", "work"]);
        for d in KEPT {
            assert_eq!(entries(&step.join(d)), Vec::<String>::new(), "{d} is empty");
        }
        // The pool is empty again: the next ones are created.
        let fresh = next.join("c");
        dirs.step_dir(&fresh).unwrap();
        assert_eq!(entries(&fresh), Vec::<String>::new());
    }

    #[test]
    fn the_pool_is_bounded_and_a_restart_starts_it_empty() {
        let root = tempfile::tempdir().unwrap();
        let dirs = WorkDirs::open(root.path(), 4).unwrap();
        let run = root.path().join("run");
        for s in 0..6 {
            dirs.step_dir(&run.join(format!("s{s}"))).unwrap();
        }
        dirs.recycle(&run);
        assert_eq!(dirs.steps.lock().unwrap().len(), 4);
        let mine = root.path().join(POOL).join(std::process::id().to_string());
        assert_eq!(entries(&mine).len(), 5, "4 steps and the run");
        // Another live worker's pool is left alone; a dead one's is removed.
        let other = root.path().join(POOL).join("1");
        let dead = root.path().join(POOL).join(u32::MAX.to_string());
        for p in [&other, &dead] {
            std::fs::create_dir_all(p.join("s0")).unwrap();
        }
        drop(dirs);
        let _again = WorkDirs::open(root.path(), 4).unwrap();
        assert!(entries(&mine).is_empty());
        assert!(other.join("s0").exists(), "pid 1 is alive");
        assert!(!dead.exists());
    }

    #[test]
    fn emptying_removes_symlinks_not_their_targets() {
        let root = tempfile::tempdir().unwrap();
        let target = root.path().join("elsewhere");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("keep"), "x").unwrap();
        let dir = root.path().join("in");
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink(&target, dir.join("link")).unwrap();
        empty_dir(&dir).unwrap();
        assert!(entries(&dir).is_empty());
        assert_eq!(entries(&target), ["keep"]);
    }
}
