//! The worker's side of the spawn helper: a small process, started once, that forks steps.
//!
//! A step must die with the worker, even a SIGKILLed one: the kernel's parent-death signal
//! (`PR_SET_PDEATHSIG`) does that, but it can only be set in the step's own process between
//! fork and exec. From the worker, that means either forking the whole multi-threaded worker
//! per step (copy-on-write faults, TLB shootdowns) or executing `setpriv` before the step's
//! program (a second exec: `perf` put it at a quarter of the worker's CPU, more than `sh`
//! itself, at a few hundred steps a second; docs/performance.md). The helper is this binary,
//! single-threaded and small: forking it is cheap, and each step gets the signal in its own
//! process at no exec. The helper itself has the signal towards the worker, so a dead worker
//! takes the helper and with it every step. Protocol: `helper_side`.

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::Path;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;

use super::helper_side::{self, ARG, MAX_MESSAGE, SOCKET_FD};

/// The worker's end of the helper's socket.
pub struct Helper {
    socket: Mutex<OwnedFd>,
    /// Cleared when the helper exits or cannot be reached.
    alive: Arc<AtomicBool>,
    /// Set by the thread that reaps the helper once it has exited.
    exited: Arc<(Mutex<bool>, Condvar)>,
    /// Set by [`Helper::stop`]: the helper's exit is then expected, not an error.
    stopping: Arc<AtomicBool>,
    /// The helper's own pid.
    #[cfg_attr(not(test), allow(dead_code))]
    pid: i32,
}

/// Why the helper did not start a step.
#[derive(Debug)]
pub enum SpawnError {
    /// The helper cannot be used (it died, or the message cannot be sent): start it otherwise.
    Helper(io::Error),
    /// The step's program could not be executed (e.g. not found): the step's own failure.
    Step(io::Error),
}

/// A step started by the helper: its pid (and process group), output and exit.
pub struct Spawned {
    pub pid: i32,
    pub stdout: pipe::Receiver,
    pub stderr: pipe::Receiver,
    pub exit: StepExit,
}

/// How to learn a helper-started step's exit.
pub struct StepExit {
    status: pipe::Receiver,
}

fn pipe() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [-1; 2];
    // SAFETY: pipe2 fills two new descriptors, owned from here on.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: just created and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

impl Helper {
    /// Starts the helper (this executable, run with [`ARG`]).
    pub fn start() -> io::Result<Self> {
        Self::start_from(Path::new("/proc/self/exe"))
    }

    /// Starts the helper from the worker executable `exe`.
    fn start_from(exe: &Path) -> io::Result<Self> {
        let mut pair = [-1; 2];
        // SAFETY: socketpair fills two new descriptors, owned from here on.
        if unsafe {
            libc::socketpair(
                libc::AF_UNIX,
                libc::SOCK_SEQPACKET | libc::SOCK_CLOEXEC,
                0,
                pair.as_mut_ptr(),
            )
        } < 0
        {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: just created and owned by nobody else.
        let (ours, theirs) =
            unsafe { (OwnedFd::from_raw_fd(pair[0]), OwnedFd::from_raw_fd(pair[1])) };
        let (theirs_fd, parent) = (theirs.as_raw_fd(), std::process::id() as i32);
        let mut cmd = std::process::Command::new(exe);
        // Shown by `ps` as `tms-worker __tms-spawn-helper` rather than `/proc/self/exe …`.
        cmd.arg0("tms-worker")
            .arg(ARG)
            .env_clear()
            // Only a coverage build's profile settings (`scripts/coverage`); nothing else.
            .envs(
                std::env::vars_os()
                    .filter(|(k, _)| k.to_string_lossy().starts_with("LLVM_PROFILE")),
            )
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null());
        // SAFETY: async-signal-safe calls only, in the child between fork and exec. This one
        // fork of the worker happens once per process.
        unsafe {
            cmd.pre_exec(move || {
                // A process group of its own: a terminal's Ctrl-C (or any signal to the
                // worker's group) must not kill the helper, and with it every running step,
                // while the worker drains gracefully.
                libc::setpgid(0, 0);
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                if libc::getppid() != parent {
                    libc::_exit(137);
                }
                let ok = if theirs_fd == SOCKET_FD {
                    libc::fcntl(SOCKET_FD, libc::F_SETFD, 0)
                } else {
                    libc::dup2(theirs_fd, SOCKET_FD)
                };
                if ok < 0 {
                    return Err(io::Error::last_os_error());
                }
                Ok(())
            });
        }
        let mut child = cmd.spawn()?;
        drop(theirs);
        // The helper says it is ready (anything else at fd 3, e.g. a test harness that is not
        // this worker, says nothing and exits).
        let ready = await_ready(&ours);
        if let Err(e) = ready {
            let _ = child.kill();
            let _ = child.wait();
            return Err(e);
        }
        let alive = Arc::new(AtomicBool::new(true));
        let exited: Arc<(Mutex<bool>, Condvar)> = Arc::default();
        let stopping = Arc::new(AtomicBool::new(false));
        let (flag, done, expected) = (alive.clone(), exited.clone(), stopping.clone());
        let pid = child.id() as i32;
        // Reaps the helper; once it is gone the worker starts steps another way.
        std::thread::Builder::new()
            .name("spawn-helper".into())
            .spawn(move || {
                let status = child.wait();
                flag.store(false, Ordering::Relaxed);
                if expected.load(Ordering::Relaxed) {
                    tracing::debug!(?status, "the step spawn helper stopped");
                } else {
                    tracing::error!(
                        ?status,
                        "the step spawn helper exited; steps start without it"
                    );
                }
                let (m, cv) = &*done;
                *m.lock().unwrap_or_else(|e| e.into_inner()) = true;
                cv.notify_all();
            })?;
        Ok(Self {
            socket: Mutex::new(ours),
            alive,
            exited,
            stopping,
            pid,
        })
    }

    /// Closes the helper's socket, so that it exits on its own (a coverage build then writes
    /// its profile, which the parent-death signal at the worker's exit would not let it do),
    /// and waits up to `wait` for it to have exited. Steps still running die with it.
    pub fn stop(&self, wait: Duration) -> bool {
        self.stopping.store(true, Ordering::Relaxed);
        self.alive.store(false, Ordering::Relaxed);
        {
            let socket = self.socket.lock().unwrap_or_else(|e| e.into_inner());
            // SAFETY: shutdown of the worker's own socket, which stays open until dropped.
            unsafe { libc::shutdown(socket.as_raw_fd(), libc::SHUT_RDWR) };
        }
        let (m, cv) = &*self.exited;
        let guard = m.lock().unwrap_or_else(|e| e.into_inner());
        let (gone, _) = cv
            .wait_timeout_while(guard, wait, |gone| !*gone)
            .unwrap_or_else(|e| e.into_inner());
        *gone
    }

    /// Whether the helper can still start steps.
    pub fn is_alive(&self) -> bool {
        self.alive.load(Ordering::Relaxed)
    }

    /// Starts `program` (a path, relative ones from `cwd`) with `argv` (its `argv[0]` first) and
    /// exactly `env`, in `cwd`, in a process group of its own, stdin from `/dev/null`.
    pub async fn spawn(
        &self,
        program: &Path,
        argv: &[OsString],
        env: &BTreeMap<OsString, OsString>,
        cwd: &Path,
    ) -> Result<Spawned, SpawnError> {
        use SpawnError::Helper as H;
        let args: Vec<&[u8]> = argv.iter().map(|a| a.as_bytes()).collect();
        let env: Vec<Vec<u8>> = env
            .iter()
            .map(|(k, v)| [k.as_bytes(), b"=", v.as_bytes()].concat())
            .collect();
        let msg = helper_side::encode(
            program.as_os_str().as_bytes(),
            cwd.as_os_str().as_bytes(),
            &args,
            &env,
        )
        .filter(|m| m.len() <= MAX_MESSAGE)
        .ok_or_else(|| {
            H(io::Error::new(
                io::ErrorKind::InvalidInput,
                "arguments or environment too large for the helper, or holding a NUL byte",
            ))
        })?;
        let (out_r, out_w) = pipe().map_err(H)?;
        let (err_r, err_w) = pipe().map_err(H)?;
        let (status_r, status_w) = pipe().map_err(H)?;
        // Everything that can fail is done before the step can have started: a helper error
        // makes the caller start the step another way, so it must never have run.
        let stdout = pipe::Receiver::from_owned_fd(out_r).map_err(H)?;
        let stderr = pipe::Receiver::from_owned_fd(err_r).map_err(H)?;
        let mut status = pipe::Receiver::from_owned_fd(status_r).map_err(H)?;
        let fds = [out_w.as_raw_fd(), err_w.as_raw_fd(), status_w.as_raw_fd()];
        if let Err(e) = self.send(&msg, fds) {
            // Too large a message concerns this step only; anything else, the helper.
            if e.raw_os_error() != Some(libc::EMSGSIZE) {
                self.alive.store(false, Ordering::Relaxed);
            }
            return Err(H(e));
        }
        drop((out_w, err_w, status_w));
        // From here the step may have started: a failure is this attempt's, not retried here.
        let pid = match read_message(&mut status).await {
            Ok((b'P', pid)) => pid,
            Ok((b'E', errno)) => return Err(SpawnError::Step(io::Error::from_raw_os_error(errno))),
            Ok(_) => {
                return Err(SpawnError::Step(io::Error::other(
                    "the spawn helper answered nonsense",
                )));
            }
            Err(e) => {
                self.alive.store(false, Ordering::Relaxed);
                return Err(SpawnError::Step(io::Error::other(format!(
                    "the spawn helper died: {e}"
                ))));
            }
        };
        Ok(Spawned {
            pid,
            stdout,
            stderr,
            exit: StepExit { status },
        })
    }

    fn send(&self, msg: &[u8], fds: [RawFd; 3]) -> io::Result<()> {
        let socket = self
            .socket
            .lock()
            .map_err(|_| io::Error::other("spawn helper lock"))?;
        // SAFETY: a message and three descriptors on our socket; the buffers outlive the call.
        unsafe {
            let mut iov = libc::iovec {
                iov_base: msg.as_ptr() as *mut _,
                iov_len: msg.len(),
            };
            let size = 3 * std::mem::size_of::<RawFd>() as u32;
            let mut control = vec![0u8; libc::CMSG_SPACE(size) as usize];
            let mut hdr: libc::msghdr = std::mem::zeroed();
            hdr.msg_iov = &mut iov;
            hdr.msg_iovlen = 1;
            hdr.msg_control = control.as_mut_ptr().cast();
            hdr.msg_controllen = control.len() as _;
            let cmsg = libc::CMSG_FIRSTHDR(&hdr);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(size) as _;
            std::ptr::copy_nonoverlapping(fds.as_ptr(), libc::CMSG_DATA(cmsg).cast(), 3);
            if libc::sendmsg(socket.as_raw_fd(), &hdr, libc::MSG_NOSIGNAL) < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

/// Waits (up to 5 s) for the helper's `R` on `socket`.
fn await_ready(socket: &OwnedFd) -> io::Result<()> {
    let mut fds = libc::pollfd {
        fd: socket.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let mut byte = 0u8;
    // SAFETY: poll and recv on our own socket into a local byte.
    let got = unsafe {
        libc::poll(&mut fds, 1, 5000) == 1
            && libc::recv(
                socket.as_raw_fd(),
                (&raw mut byte).cast(),
                1,
                libc::MSG_DONTWAIT,
            ) == 1
    };
    if got && byte == b'R' {
        Ok(())
    } else {
        Err(io::Error::other(
            "the spawn helper did not say it was ready",
        ))
    }
}

/// One `<tag><i32>` message from a status pipe; an error at its end (the helper died).
async fn read_message(status: &mut pipe::Receiver) -> io::Result<(u8, i32)> {
    let mut m = [0u8; 5];
    status.read_exact(&mut m).await?;
    Ok((m[0], i32::from_ne_bytes([m[1], m[2], m[3], m[4]])))
}

impl StepExit {
    /// The step's exit. A helper that died took the step with it (SIGKILL).
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        match read_message(&mut self.status).await {
            Ok((b'X', status)) => Ok(ExitStatus::from_raw(status)),
            Ok(_) => Err(io::Error::other("the spawn helper answered nonsense")),
            Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                Ok(ExitStatus::from_raw(libc::SIGKILL))
            }
            Err(e) => Err(e),
        }
    }
}

#[cfg(test)]
mod tests;
