//! A loopback TCP proxy a test controls, to make a server (Postgres) hang or vanish for the
//! processes behind it while the real server keeps running for everyone else.

use std::time::Duration;

use anyhow::Result;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Bytes flow both ways.
    Pass,
    /// Connections are accepted and kept open, but nothing is forwarded: a hung server.
    Hang,
    /// Every connection is closed and new ones are dropped at once: a stopped server.
    Refuse,
}

pub struct Proxy {
    pub port: u16,
    mode: watch::Sender<Mode>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    /// Forwards a free loopback port to `127.0.0.1:upstream_port`.
    pub async fn start(upstream_port: u16) -> Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let (tx, rx) = watch::channel(Mode::Pass);
        let task = tokio::spawn(async move {
            while let Ok((down, _)) = listener.accept().await {
                if *rx.borrow() == Mode::Refuse {
                    continue;
                }
                let rx = rx.clone();
                tokio::spawn(async move {
                    let _ = connect(down, upstream_port, rx).await;
                });
            }
        });
        Ok(Proxy {
            port,
            mode: tx,
            task,
        })
    }

    pub fn set(&self, mode: Mode) {
        let _ = self.mode.send(mode);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn connect(
    down: TcpStream,
    upstream_port: u16,
    mut mode: watch::Receiver<Mode>,
) -> Result<()> {
    // A new connection to a hung server waits like the rest.
    if !wait_pass(&mut mode).await {
        return Ok(());
    }
    let up = TcpStream::connect(("127.0.0.1", upstream_port)).await?;
    let (dr, dw) = down.into_split();
    let (ur, uw) = up.into_split();
    let a = tokio::spawn(pump(dr, uw, mode.clone()));
    let b = tokio::spawn(pump(ur, dw, mode));
    let _ = tokio::join!(a, b);
    Ok(())
}

/// Waits while hung; false when the connection must be dropped.
async fn wait_pass(mode: &mut watch::Receiver<Mode>) -> bool {
    loop {
        let m = *mode.borrow_and_update();
        match m {
            Mode::Pass => return true,
            Mode::Refuse => return false,
            Mode::Hang => {
                if mode.changed().await.is_err() {
                    return false;
                }
            }
        }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut mode: watch::Receiver<Mode>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let mut refuse = mode.clone();
        let n = tokio::select! {
            r = from.read(&mut buf) => match r {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            },
            _ = refuse.wait_for(|m| *m == Mode::Refuse) => return,
        };
        if !wait_pass(&mut mode).await {
            return;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

/// How long a test waits for a state to be reported.
pub const REPORT_DEADLINE: Duration = Duration::from_secs(15);
