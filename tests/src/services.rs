//! The Postgres and Redis the tests run against: the shared servers `scripts/test` starts (each
//! test gets its own database), `psql` against them, and a private Redis for tests that stop it.

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail, ensure};

use crate::{Proc, free_port, tempdir};

fn required_env(name: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| {
        panic!("{name} is not set: run the suite through `scripts/test`, which starts Postgres and Redis")
    })
}

/// The shared Redis `scripts/test` started.
pub fn redis_url() -> String {
    required_env("TMS_TEST_REDIS_URL")
}

/// A new, empty database named `{prefix}_<random>` on the shared Postgres; returns its URL.
pub fn create_database(prefix: &str) -> Result<String> {
    let name = format!("{prefix}_{}", uuid::Uuid::new_v4().simple());
    psql(&admin_url(), &["-c", &format!("CREATE DATABASE {name}")])
        .context("could not create a test database")?;
    database_url(&name)
}

/// The URL of database `name` on the shared Postgres (which need not exist).
pub fn database_url(name: &str) -> Result<String> {
    let admin_url = admin_url();
    let (base, _) = admin_url
        .rsplit_once('/')
        .ok_or_else(|| anyhow!("TMS_TEST_DATABASE_URL has no database part: {admin_url}"))?;
    Ok(format!("{base}/{name}"))
}

/// The loopback port in a database URL of the shared Postgres (`…@127.0.0.1:<port>/…`).
pub fn database_port(url: &str) -> Result<u16> {
    url.split(['@', '/'])
        .find_map(|p| p.strip_prefix("127.0.0.1:").and_then(|x| x.parse().ok()))
        .ok_or_else(|| anyhow!("no loopback port in {url}"))
}

/// The maintenance database, for statements about other databases.
pub fn admin_url() -> String {
    required_env("TMS_TEST_DATABASE_URL")
}

/// Runs `psql` on `url` (stopping at the first error, unaligned tuples only) and returns its
/// output; fails with psql's stderr.
pub fn psql(url: &str, args: &[&str]) -> Result<String> {
    let out = Command::new("psql")
        .arg(url)
        .args(["-v", "ON_ERROR_STOP=1", "-At"])
        .args(args)
        .output()
        .context("running psql")?;
    ensure!(
        out.status.success(),
        "psql {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Ok(String::from_utf8(out.stdout)?)
}

/// A private Redis server for tests that stop and restart Redis.
pub struct PrivateRedis {
    pub port: u16,
    dir: tempdir::Dir,
    proc: Option<Proc>,
}

impl PrivateRedis {
    pub fn start() -> Result<Self> {
        let mut r = PrivateRedis {
            port: free_port(),
            dir: tempdir::Dir::new("tms-redis"),
            proc: None,
        };
        r.spawn()?;
        Ok(r)
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }

    pub fn spawn(&mut self) -> Result<()> {
        let server =
            std::env::var("TMS_TEST_REDIS_SERVER").unwrap_or_else(|_| "redis-server".into());
        let log = self.dir.path().join("redis.log");
        let child = Command::new(server)
            .args([
                "--port",
                &self.port.to_string(),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "yes",
            ])
            .arg("--logfile")
            .arg(&log)
            .arg("--dir")
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting redis-server")?;
        self.proc = Some(Proc {
            name: "redis",
            child,
            log,
            killed: false,
        });
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if std::net::TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        bail!("redis-server did not start on port {}", self.port)
    }

    pub fn stop(&mut self) {
        if let Some(mut p) = self.proc.take() {
            p.kill9();
        }
    }

    /// The running server's process (for SIGSTOP/SIGCONT), if any.
    pub fn process(&self) -> Option<&Proc> {
        self.proc.as_ref()
    }

    /// Deletes everything the server persisted (AOF, RDB), so the next `spawn` starts empty.
    /// Call it while the server is stopped.
    pub fn clear_data(&self) -> Result<()> {
        for entry in std::fs::read_dir(self.dir.path())? {
            let path = entry?.path();
            if path.file_name().is_some_and(|n| n == "redis.log") {
                continue;
            }
            if path.is_dir() {
                std::fs::remove_dir_all(&path)?;
            } else {
                std::fs::remove_file(&path)?;
            }
        }
        Ok(())
    }
}
