//! The spawn helper's own loop: a small single-threaded process (this binary, started with
//! [`ARG`]) that forks the worker's steps. See `spawn_helper` for why it exists.
//!
//! Protocol, on a `SOCK_SEQPACKET` socket at fd 3: each message is one step, NUL-separated
//! fields `program, cwd, argc, argv..., env...` with three descriptors attached: the step's
//! stdout and stderr (write ends) and a status pipe. On the status pipe the helper writes
//! `P<pid>` once the step's program was executed, or `E<errno>` if it could not be, then
//! `X<wait status>` when the step exits. The helper first says `R` on the socket (the worker
//! knows then that it runs this protocol), and nothing else. The helper exits when the worker closes the socket;
//! the kernel kills its steps then (each has the helper as parent and `PR_SET_PDEATHSIG`).

use std::collections::HashMap;
use std::ffi::CString;
use std::os::fd::RawFd;

/// The argument that makes `tms-worker` run as the spawn helper.
pub const ARG: &str = "__tms-spawn-helper";
/// The socket to the worker.
pub const SOCKET_FD: RawFd = 3;
/// The largest step message (arguments and environment).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Runs the helper until the worker goes away.
pub fn main() -> ! {
    // SAFETY: plain libc calls on this single-threaded process's own descriptors and memory.
    unsafe {
        // The thread name `top` and `perf` show (it would be `exe`, from `/proc/self/exe`).
        libc::prctl(libc::PR_SET_NAME, c"tms-spawner".as_ptr());
        let mut chld: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut chld);
        libc::sigaddset(&mut chld, libc::SIGCHLD);
        libc::sigprocmask(libc::SIG_BLOCK, &chld, std::ptr::null_mut());
        let sfd = libc::signalfd(-1, &chld, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if sfd < 0 || libc::write(SOCKET_FD, b"R".as_ptr().cast(), 1) != 1 {
            libc::_exit(1);
        }
        let mut steps: HashMap<i32, RawFd> = HashMap::new();
        let mut buf = vec![0u8; MAX_MESSAGE];
        loop {
            let mut fds = [
                libc::pollfd {
                    fd: SOCKET_FD,
                    events: libc::POLLIN,
                    revents: 0,
                },
                libc::pollfd {
                    fd: sfd,
                    events: libc::POLLIN,
                    revents: 0,
                },
            ];
            if libc::poll(fds.as_mut_ptr(), 2, -1) < 0 {
                continue; // EINTR
            }
            if fds[1].revents != 0 {
                let mut info: libc::signalfd_siginfo = std::mem::zeroed();
                let size = std::mem::size_of::<libc::signalfd_siginfo>();
                while libc::read(sfd, (&raw mut info).cast(), size) == size as isize {}
                reap(&mut steps);
            }
            if fds[0].revents != 0 {
                match receive(&mut buf) {
                    Some((len, passed)) => spawn(&buf[..len], passed, &mut steps),
                    // `exit`, not `_exit`: an instrumented build writes its coverage profile.
                    None => std::process::exit(0),
                }
            }
        }
    }
}

/// One message and its three descriptors; `None` once the worker closed the socket.
unsafe fn receive(buf: &mut [u8]) -> Option<(usize, [RawFd; 3])> {
    // SAFETY: the caller's buffer and a control buffer sized for three descriptors.
    unsafe {
        let mut iov = libc::iovec {
            iov_base: buf.as_mut_ptr().cast(),
            iov_len: buf.len(),
        };
        let space = libc::CMSG_SPACE(3 * std::mem::size_of::<RawFd>() as u32) as usize;
        let mut control = vec![0u8; space];
        let mut msg: libc::msghdr = std::mem::zeroed();
        msg.msg_iov = &mut iov;
        msg.msg_iovlen = 1;
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        let n = libc::recvmsg(SOCKET_FD, &mut msg, libc::MSG_CMSG_CLOEXEC);
        if n == 0 {
            return None;
        }
        if n < 0 {
            let e = *libc::__errno_location();
            return if e == libc::EINTR || e == libc::EAGAIN {
                Some((0, [-1; 3]))
            } else {
                None
            };
        }
        let mut passed = [-1; 3];
        let cmsg = libc::CMSG_FIRSTHDR(&msg);
        if !cmsg.is_null() && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
            let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
            let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                / std::mem::size_of::<RawFd>();
            for (i, slot) in passed.iter_mut().enumerate().take(count.min(3)) {
                *slot = *data.add(i);
            }
        }
        Some((n as usize, passed))
    }
}

/// Writes a one-letter message with a number on a step's status pipe.
fn report(fd: RawFd, tag: u8, value: i32) {
    let mut m = [0u8; 5];
    m[0] = tag;
    m[1..].copy_from_slice(&value.to_ne_bytes());
    // SAFETY: writing a local buffer to a descriptor this process owns.
    unsafe {
        libc::write(fd, m.as_ptr().cast(), m.len());
    }
}

/// Reports and forgets every step that has exited.
fn reap(steps: &mut HashMap<i32, RawFd>) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid on this process's own children.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        if let Some(fd) = steps.remove(&pid) {
            report(fd, b'X', status);
            // SAFETY: the status pipe is this process's and is not used again.
            unsafe { libc::close(fd) };
        }
    }
}

fn close_all(fds: &[RawFd]) {
    for &fd in fds.iter().filter(|fd| **fd >= 0) {
        // SAFETY: descriptors received for this step and not used again.
        unsafe { libc::close(fd) };
    }
}

/// Forks and executes one step.
fn spawn(msg: &[u8], [out, err, status]: [RawFd; 3], steps: &mut HashMap<i32, RawFd>) {
    if out < 0 || err < 0 || status < 0 {
        close_all(&[out, err, status]);
        return;
    }
    let Some(step) = Parsed::of(msg) else {
        report(status, b'E', libc::EINVAL);
        close_all(&[out, err, status]);
        return;
    };
    let argv: Vec<*const libc::c_char> = step
        .argv
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let envp: Vec<*const libc::c_char> = step
        .env
        .iter()
        .map(|a| a.as_ptr())
        .chain([std::ptr::null()])
        .collect();
    let dev_null = c"/dev/null";
    let mut pipe = [-1; 2];
    // SAFETY: a fork of this single-threaded process; the child uses only async-signal-safe
    // calls on memory prepared before the fork, then executes the step or exits.
    unsafe {
        if libc::pipe2(pipe.as_mut_ptr(), libc::O_CLOEXEC) < 0 {
            report(status, b'E', *libc::__errno_location());
            close_all(&[out, err, status]);
            return;
        }
        let me = libc::getpid();
        let pid = libc::fork();
        if pid == 0 {
            let mut none: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut none);
            libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
            libc::signal(libc::SIGPIPE, libc::SIG_DFL);
            libc::setpgid(0, 0);
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
            if libc::getppid() != me {
                libc::_exit(137);
            }
            let null = libc::open(dev_null.as_ptr(), libc::O_RDONLY | libc::O_CLOEXEC);
            if null < 0
                || libc::dup2(null, 0) < 0
                || libc::dup2(out, 1) < 0
                || libc::dup2(err, 2) < 0
                || libc::chdir(step.cwd.as_ptr()) < 0
            {
                child_failed(pipe[1]);
            }
            libc::execve(step.program.as_ptr(), argv.as_ptr(), envp.as_ptr());
            child_failed(pipe[1]);
        }
        libc::close(pipe[1]);
        close_all(&[out, err]);
        if pid < 0 {
            report(status, b'E', *libc::__errno_location());
            close_all(&[pipe[0], status]);
            return;
        }
        // Closed by the exec (close-on-exec), or carrying the errno that stopped it.
        let mut errno = [0u8; 4];
        let n = libc::read(pipe[0], errno.as_mut_ptr().cast(), 4);
        libc::close(pipe[0]);
        if n == 4 {
            libc::waitpid(pid, std::ptr::null_mut(), 0);
            report(status, b'E', i32::from_ne_bytes(errno));
            libc::close(status);
            return;
        }
        report(status, b'P', pid);
        steps.insert(pid, status);
    }
}

/// In the forked child: reports errno to the helper and exits.
unsafe fn child_failed(pipe: RawFd) -> ! {
    // SAFETY: async-signal-safe calls only.
    unsafe {
        let errno = (*libc::__errno_location()).to_ne_bytes();
        libc::write(pipe, errno.as_ptr().cast(), 4);
        libc::_exit(127)
    }
}

/// A step message, ready for `execve`.
struct Parsed {
    program: CString,
    cwd: CString,
    argv: Vec<CString>,
    env: Vec<CString>,
}

impl Parsed {
    fn of(msg: &[u8]) -> Option<Self> {
        let mut fields = msg.split(|b| *b == 0);
        let mut next = || fields.next().and_then(|f| CString::new(f).ok());
        let program = next()?;
        let cwd = next()?;
        let argc: usize = next()?.to_str().ok()?.parse().ok()?;
        let argv = (0..argc).map(|_| next()).collect::<Option<Vec<_>>>()?;
        let mut env = Vec::new();
        while let Some(kv) = next() {
            if !kv.as_bytes().is_empty() {
                env.push(kv);
            }
        }
        Some(Self {
            program,
            cwd,
            argv,
            env,
        })
    }
}

/// A step message: the inverse of [`Parsed::of`]. `None` when a field holds a NUL byte.
pub fn encode(program: &[u8], cwd: &[u8], argv: &[&[u8]], env: &[Vec<u8>]) -> Option<Vec<u8>> {
    let argc = argv.len().to_string();
    let fields = [program, cwd, argc.as_bytes()]
        .into_iter()
        .chain(argv.iter().copied())
        .chain(env.iter().map(Vec::as_slice));
    let mut msg = Vec::new();
    for f in fields {
        if f.contains(&0) {
            return None;
        }
        msg.extend_from_slice(f);
        msg.push(0);
    }
    Some(msg)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_message_parses_back_into_what_was_encoded() {
        let env = vec![b"A=1".to_vec(), b"B=two words".to_vec()];
        let msg = encode(b"/bin/sh", b"/tmp", &[b"sh", b"-c", b"echo $A"], &env).unwrap();
        let p = Parsed::of(&msg).unwrap();
        assert_eq!(p.program.as_bytes(), b"/bin/sh");
        assert_eq!(p.cwd.as_bytes(), b"/tmp");
        let argv: Vec<&[u8]> = p.argv.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(argv, [&b"sh"[..], b"-c", b"echo $A"]);
        let env: Vec<&[u8]> = p.env.iter().map(|a| a.as_bytes()).collect();
        assert_eq!(env, [&b"A=1"[..], b"B=two words"]);
        assert!(encode(b"/bin/sh", b"/tmp", &[b"a\0b"], &[]).is_none());
        assert!(
            Parsed::of(b"/bin/sh\0/tmp\0x\0").is_none(),
            "argc must be a number"
        );
    }
}
