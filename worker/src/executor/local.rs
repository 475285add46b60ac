//! The local executor: runs each step as a host process group in its own directory.
//!
//! It ignores the step's image (there is no container runtime), so it is for development,
//! tests and trusted single-host set-ups. Steps get a clean environment: nothing of the worker's
//! own environment (database URLs, keys) leaks into them.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use tms_core::runs::progress::{ProgressLine, parse_line};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::sync::mpsc::UnboundedSender;

use crate::executor::{ExecError, Executor, ReadyError, StepOutcome, StepRequest, Tail};

pub mod helper_side;
mod spawn_helper;
mod spawner;
pub use spawner::{start_helper, stop_helper};

pub const TAIL_LINES: usize = 200;
pub const TAIL_BYTES: usize = 16 * 1024;

pub struct LocalExecutor;

/// Kills the step's whole process group when dropped: on timeout, cancellation, or after the main
/// process exits (so stray background children do not outlive their step).
struct GroupGuard(Option<i32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0.take()
            && pgid > 1
        {
            // SAFETY: kill(2) with a negative pid signals the process group we created for the step.
            unsafe {
                libc::kill(-pgid, libc::SIGKILL);
            }
        }
    }
}

/// Makes `p` an empty directory, emptying it rather than re-creating it when it exists (see
/// `crate::workdirs` for why inodes are worth keeping).
fn reset_dir(p: &Path) -> std::io::Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => crate::workdirs::empty_dir(p),
        Ok(_) => {
            std::fs::remove_file(p)?;
            std::fs::create_dir_all(p)
        }
        Err(_) => std::fs::create_dir_all(p),
    }
}

#[async_trait]
impl Executor for LocalExecutor {
    fn name(&self) -> &'static str {
        "local"
    }

    async fn ready(&self) -> Result<(), ReadyError> {
        Ok(())
    }

    async fn run(
        &self,
        req: StepRequest,
        progress: UnboundedSender<ProgressLine>,
    ) -> Result<StepOutcome, ExecError> {
        let io = |what: &str, e: std::io::Error| ExecError::Step(format!("{what}: {e}"));
        let out_dir = req.step_dir.join("out");
        let in_dir = req.step_dir.join("in");
        let work_dir = req.step_dir.join("work");
        reset_dir(&out_dir).map_err(|e| io("preparing /out", e))?;
        reset_dir(&in_dir).map_err(|e| io("preparing /in", e))?;
        std::fs::create_dir_all(&work_dir).map_err(|e| io("preparing workdir", e))?;
        for (dep, dir) in &req.inputs {
            if !dir.is_dir() {
                return Err(ExecError::Step(format!(
                    "the output of step `{dep}` was not restored into {}",
                    dir.display()
                )));
            }
            // The restored copy is private to this step, so a link is enough.
            std::os::unix::fs::symlink(dir, in_dir.join(dep))
                .map_err(|e| io("linking inputs", e))?;
        }

        let argv = req.step.argv();
        let Some((program, args)) = argv.split_first() else {
            return Err(ExecError::Step("step has nothing to execute".into()));
        };
        // Said once per process, not per step: at hundreds of steps a second the same warning
        // would be most of the worker's log (and a measurable share of its time).
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| {
            tracing::warn!(
                run_id = %req.run_id, step = %req.step.name, image = %req.step.image,
                "local executor ignores the image and runs every step on the host"
            );
        });
        let mut masks = req.masks.clone();
        masks.extend(req.secrets.values().cloned());
        let path = std::env::var("PATH").unwrap_or_else(|_| "/usr/local/bin:/usr/bin:/bin".into());
        // Later entries win: a step's own variables over the defaults, TMS_* over both.
        let mut env: BTreeMap<OsString, OsString> = BTreeMap::new();
        let mut set = |k: &str, v: &OsStr| {
            env.insert(k.into(), v.to_owned());
        };
        set("PATH", path.as_ref());
        set("HOME", work_dir.as_os_str());
        set("LANG", "C.UTF-8".as_ref());
        for (k, v) in req.step.env.iter().chain(&req.secrets) {
            set(k, v.as_ref());
        }
        set("TMS_OUT", out_dir.as_os_str());
        set("TMS_IN", in_dir.as_os_str());
        set("TMS_INPUTS", req.run_inputs.as_os_str());
        for (k, v) in &req.input_vars {
            set(k, v.as_ref());
        }
        set("TMS_RUN_ID", req.run_id.to_string().as_ref());
        set("TMS_STEP", req.step.name.as_ref());
        set("TMS_ATTEMPT", req.attempt.to_string().as_ref());
        let mut child = spawner::start(program, args, &path, &work_dir, &env)
            .await
            .map_err(|e| ExecError::Step(format!("cannot start `{program}`: {e}")))?;
        let guard = GroupGuard(child.pid);

        let stdout = std::mem::replace(&mut child.stdout, Box::pin(tokio::io::empty()));
        let stderr = std::mem::replace(&mut child.stderr, Box::pin(tokio::io::empty()));
        let tail = Arc::new(Mutex::new(
            Tail::new(TAIL_LINES, TAIL_BYTES, &masks).with_sink(req.log.clone()),
        ));
        let out_pump = tokio::spawn(pump(stdout, tail.clone(), Some(progress)));
        let err_pump = tokio::spawn(pump(stderr, tail.clone(), None));
        let status = child.wait().await;
        // The step is over when its main process exits: end whatever it left running, which
        // also closes the pipes so the pumps finish.
        drop(guard);
        let (out_abort, err_abort) = (out_pump.abort_handle(), err_pump.abort_handle());
        let _ = tokio::time::timeout(Duration::from_secs(2), async {
            let _ = out_pump.await;
            let _ = err_pump.await;
        })
        .await;
        // A process that escaped the group may hold a pipe open: stop reading it, so the step's
        // log (whose sink the pumps hold) ends with the step.
        out_abort.abort();
        err_abort.abort();
        let status = status.map_err(|e| io("waiting for the step", e))?;
        let exit_code = status.code().or_else(|| {
            use std::os::unix::process::ExitStatusExt;
            status.signal().map(|s| 128 + s)
        });
        let log_tail = tail.lock().map(|t| t.text()).unwrap_or_default();
        Ok(StepOutcome {
            exit_code,
            log_tail,
        })
    }
}

/// Copies a child's output into the tail, forwarding `::progress` lines when asked to. Output
/// need not be UTF-8: invalid bytes are replaced, and reading never stops early (a closed pipe
/// would kill the step with SIGPIPE).
async fn pump<R: tokio::io::AsyncRead + Unpin>(
    stream: R,
    tail: Arc<Mutex<Tail>>,
    progress: Option<UnboundedSender<ProgressLine>>,
) {
    let mut reader = BufReader::new(stream);
    let mut buf = Vec::with_capacity(1024);
    loop {
        buf.clear();
        // At most 64 KiB per line: a step printing without newlines cannot grow memory.
        match (&mut reader)
            .take(64 * 1024)
            .read_until(b'\n', &mut buf)
            .await
        {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        let line = String::from_utf8_lossy(&buf);
        let line = line.trim_end_matches(['\n', '\r']);
        if let Some(p) = parse_line(line)
            && let Some(tx) = &progress
        {
            let _ = tx.send(p);
        }
        if let Ok(mut t) = tail.lock() {
            t.push(line);
        }
    }
}
