//! How the local executor starts a step so that it dies with the worker, cheaply: through
//! the spawn helper (`spawn_helper`) when it runs, else as below.
//!
//! A step must not outlive a worker killed with SIGKILL: the kernel's parent-death signal
//! (`PR_SET_PDEATHSIG`) sees to that. Setting it from a `pre_exec` hook makes std `fork` the
//! whole worker for every step, and the copy-on-write faults and TLB shootdowns that follow in a
//! multi-threaded process were half of the worker's time at a few hundred steps a second
//! (docs/performance.md). So when util-linux's `setpriv` is there (it is on every Debian),
//! steps start as `setpriv --pdeathsig KILL -- <program> <args>`: with no hook, std uses
//! `posix_spawn` (no page-table copy) and `setpriv` sets the signal and execs the program in
//! place (same pid, same process group). Without `setpriv`, the hook is used as before.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::process::{ExitStatus, Stdio};
use std::sync::OnceLock;

use tokio::io::AsyncRead;
use tokio::process::Command;

use super::spawn_helper::{Helper, SpawnError, StepExit};

/// A started step: its pid (also its process group), its output, and a way to wait for it.
pub struct StepProcess {
    pub pid: Option<i32>,
    pub stdout: Pin<Box<dyn AsyncRead + Send>>,
    pub stderr: Pin<Box<dyn AsyncRead + Send>>,
    waiter: Waiter,
}

enum Waiter {
    Child(tokio::process::Child),
    Helper(StepExit),
}

impl StepProcess {
    pub async fn wait(&mut self) -> std::io::Result<ExitStatus> {
        match &mut self.waiter {
            Waiter::Child(c) => c.wait().await,
            Waiter::Helper(s) => s.wait().await,
        }
    }
}

static HELPER: OnceLock<Option<Helper>> = OnceLock::new();

/// Starts the spawn helper now rather than at the first step (blocks for its start).
pub fn start_helper() {
    let _ = helper();
}

/// Stops the spawn helper, if one was started, and waits (at most 2 s) until it has exited.
/// For the worker's graceful exit, once no step runs.
pub fn stop_helper() {
    if let Some(Some(h)) = HELPER.get()
        && !h.stop(std::time::Duration::from_secs(2))
    {
        tracing::warn!("the step spawn helper did not exit within 2s of its socket closing");
    }
}

/// The spawn helper, started on first use; `None` if it could not be.
fn helper() -> Option<&'static Helper> {
    HELPER
        .get_or_init(|| match Helper::start() {
            Ok(h) => Some(h),
            Err(e) => {
                tracing::warn!(error = %e, "the step spawn helper did not start; steps start without it");
                None
            }
        })
        .as_ref()
        .filter(|h| h.is_alive())
}

/// Starts `program` with `args` in `cwd` with exactly `env`, in a process group of its own,
/// stdin from `/dev/null`, stdout and stderr piped, killed when the worker dies. `path` is the
/// step's `PATH`, where a bare program name is looked up (as std would).
pub async fn start(
    program: &str,
    args: &[String],
    path: &str,
    cwd: &Path,
    env: &BTreeMap<OsString, OsString>,
) -> std::io::Result<StepProcess> {
    if let Some(h) = helper() {
        let resolved = resolve(program, path)?;
        let argv: Vec<OsString> = std::iter::once(program)
            .chain(args.iter().map(String::as_str))
            .map(OsString::from)
            .collect();
        match h.spawn(&resolved, &argv, env, cwd).await {
            Ok(s) => {
                return Ok(StepProcess {
                    pid: Some(s.pid),
                    stdout: Box::pin(s.stdout),
                    stderr: Box::pin(s.stderr),
                    waiter: Waiter::Helper(s.exit),
                });
            }
            Err(SpawnError::Step(e)) => return Err(e),
            Err(SpawnError::Helper(e)) => {
                tracing::warn!(error = %e, "the step spawn helper cannot start this step; starting it directly");
            }
        }
    }
    let mut cmd = command(program, args, path)?;
    cmd.current_dir(cwd)
        .env_clear()
        .envs(env)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn()?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    Ok(StepProcess {
        pid: child.id().map(|p| p as i32),
        stdout: Box::pin(stdout),
        stderr: Box::pin(stderr),
        waiter: Waiter::Child(child),
    })
}

/// A command that runs `program` with `args` and is killed when the worker dies. `path` is the
/// step's `PATH`, where a bare program name is looked up (as std would).
fn command(program: &str, args: &[String], path: &str) -> std::io::Result<Command> {
    match setpriv() {
        Some(setpriv) => {
            // Resolved here, so a missing program fails to start as it would without setpriv
            // (rather than as setpriv's exit status 127).
            let resolved = resolve(program, path)?;
            let mut cmd = Command::new(setpriv);
            cmd.args(["--pdeathsig", "KILL", "--"])
                .arg(resolved)
                .args(args);
            Ok(cmd)
        }
        None => {
            let mut cmd = Command::new(program);
            cmd.args(args);
            // SAFETY: prctl is async-signal-safe. If the worker dies (even by SIGKILL), the
            // kernel kills the step instead of leaving it running unsupervised.
            unsafe {
                cmd.pre_exec(|| {
                    libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                    Ok(())
                });
            }
            Ok(cmd)
        }
    }
}

/// `setpriv`, if it is installed and sets the parent-death signal (checked once).
fn setpriv() -> Option<&'static Path> {
    static FOUND: OnceLock<Option<PathBuf>> = OnceLock::new();
    FOUND
        .get_or_init(|| {
            let candidate = ["/usr/bin/setpriv", "/bin/setpriv"]
                .iter()
                .map(PathBuf::from)
                .find(|p| is_executable(p))?;
            let works = std::process::Command::new(&candidate)
                .args(["--pdeathsig", "KILL", "--", "/bin/true"])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .status()
                .is_ok_and(|s| s.success());
            if !works {
                tracing::warn!(setpriv = %candidate.display(), "setpriv cannot set the parent-death signal; steps start by fork");
            }
            works.then_some(candidate)
        })
        .as_deref()
}

/// `program` as an executable path: itself when it names a path, else the first match on `path`.
fn resolve(program: &str, path: &str) -> std::io::Result<PathBuf> {
    let not_found = || std::io::Error::from(std::io::ErrorKind::NotFound);
    if program.contains('/') {
        let p = PathBuf::from(program);
        // A relative path is the step's own, from its working directory (where setpriv starts
        // and resolves it), not from the worker's.
        return if p.is_relative() || p.exists() {
            Ok(p)
        } else {
            Err(not_found())
        };
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| is_executable(p))
        .ok_or_else(not_found)
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bare_names_are_found_on_the_steps_path_and_missing_ones_refused() {
        let found = resolve("sh", "/nonexistent:/usr/bin:/bin").unwrap();
        assert!(found.ends_with("sh") && found.is_absolute(), "{found:?}");
        let err = resolve("no-such-program-tms", "/usr/bin:/bin").unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
        assert!(resolve("/no/such/file", "/usr/bin").is_err());
        let relative = resolve("../in/dep/run.sh", "/usr/bin").unwrap();
        assert_eq!(
            relative,
            Path::new("../in/dep/run.sh"),
            "left for the step's cwd"
        );
    }

    #[tokio::test]
    async fn a_step_started_either_way_runs_with_its_arguments() {
        let mut cmd = command(
            "sh",
            &["-c".into(), "echo \"$0 $1\"".into(), "a".into(), "b".into()],
            "/usr/bin:/bin",
        )
        .unwrap();
        let out = cmd.output().await.unwrap();
        assert!(out.status.success());
        assert_eq!(String::from_utf8_lossy(&out.stdout), "a b\n");
    }
}
