//! End-to-end test harness: starts the real `tms-api` and `tms-worker` binaries against the
//! Postgres and Redis that `scripts/test` provides, each test with its own database and queue.

pub mod bench;
pub mod console;
pub mod dagger_engine;
pub mod docs;
pub mod idp;

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, anyhow, bail};
use serde_json::{Value, json};

pub mod chaos;
pub mod otlp;
pub mod principals;
pub mod prometheus;
pub mod proxy;
pub mod services;
pub mod sessions;
pub mod sso;
pub mod ws;

pub use services::{PrivateRedis, create_database, psql};

/// The Redis channel run events are published on (as in `tms_core::bus`).
pub const EVENTS_CHANNEL: &str = "tms:run-events";

pub const ADMIN_EMAIL: &str = "admin@tms.test";
/// The api's `TMS_JWT_SECRET` unless a test overrides it.
pub const JWT_SECRET: &str = "test-secret-test-secret-test-secret-0123";
pub const ADMIN_PASSWORD: &str = "admin-password-for-tests";

/// Directory holding the workspace's built binaries: `TMS_TEST_BIN_DIR`, else the profile
/// directory this executable was built into (`target/<profile>`).
pub fn bin_dir() -> PathBuf {
    if let Ok(dir) = std::env::var("TMS_TEST_BIN_DIR") {
        return PathBuf::from(dir);
    }
    let exe = std::env::current_exe().expect("current exe");
    let dir = exe.parent().expect("exe dir");
    // Test executables live in target/<profile>/deps, binaries in target/<profile>.
    if dir.ends_with("deps") {
        dir.parent().expect("profile dir").to_path_buf()
    } else {
        dir.to_path_buf()
    }
}

/// A loopback port nothing listens on, never the same twice in this process: tests of one
/// binary run in parallel, and two of them handed the same port would each start a server on
/// it, the loser's probes then answered by the winner's server (a test talking to another
/// test's api and database).
pub fn free_port() -> u16 {
    static HANDED_OUT: std::sync::Mutex<Vec<u16>> = std::sync::Mutex::new(Vec::new());
    let mut handed_out = HANDED_OUT.lock().unwrap_or_else(|e| e.into_inner());
    loop {
        let port = TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("free port");
        if !handed_out.contains(&port) {
            handed_out.push(port);
            return port;
        }
    }
}

/// The variables that tell an instrumented binary where to write its coverage profile
/// (`LLVM_PROFILE_FILE` and the other `LLVM_PROFILE*` ones, set by `scripts/coverage`). Every
/// spawn that clears the environment passes them on, so the profile lands where the report
/// reads it; empty in a plain test run.
pub fn coverage_env() -> Vec<(String, String)> {
    std::env::vars()
        .filter(|(k, _)| k.starts_with("LLVM_PROFILE"))
        .collect()
}

/// How long a graceful stop waits after SIGTERM before it sends SIGKILL: longer than a quiet
/// api or worker needs to exit, short enough that a stuck one costs a test little.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(10);

/// A process this test started; stopped gracefully (by PID) when dropped.
pub struct Proc {
    pub name: &'static str,
    pub child: Child,
    pub log: PathBuf,
    /// Killed on purpose by the test; not an unexpected exit.
    pub killed: bool,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL, for tests whose point is a crash (the process writes no coverage profile).
    pub fn kill9(&mut self) {
        self.killed = true;
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Asks the process to stop: SIGTERM, then SIGCONT so that one a test suspended
    /// (SIGSTOP) sees it. Does nothing once it has exited (the PID may not be ours then).
    pub fn request_stop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.signal(libc::SIGTERM);
            self.signal(libc::SIGCONT);
        }
    }

    /// Stops the process gracefully, so that it shuts down as in production and an
    /// instrumented binary writes its coverage profile: SIGTERM, a wait of at most `within`
    /// (polling), then SIGKILL. Returns the exit status when it exited by itself.
    pub fn stop(&mut self, within: Duration) -> Option<ExitStatus> {
        self.killed = true;
        self.request_stop();
        let deadline = Instant::now() + within;
        loop {
            match self.child.try_wait() {
                Ok(Some(status)) => return Some(status),
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(20))
                }
                _ => {
                    self.kill9();
                    return None;
                }
            }
        }
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `libc::SIGTERM`, `libc::SIGSTOP`) to the process; false when it
    /// could not be delivered.
    pub fn signal(&self, signal: i32) -> bool {
        // SAFETY: kill(2) on the PID of a child this Proc owns and has not reaped.
        unsafe { libc::kill(self.pid() as i32, signal) == 0 }
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop(STOP_TIMEOUT);
    }
}

mod tempdir {
    use std::path::{Path, PathBuf};

    /// A temporary directory removed on drop.
    pub struct Dir(PathBuf);

    impl Dir {
        pub fn new(prefix: &str) -> Self {
            let p =
                std::env::temp_dir().join(format!("{prefix}-{}", uuid::Uuid::new_v4().simple()));
            std::fs::create_dir_all(&p).expect("create temp dir");
            Dir(p)
        }
        pub fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for Dir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }
}

pub struct EnvOptions {
    pub redis_url: Option<String>,
    pub start_worker: bool,
    pub worker_env: Vec<(String, String)>,
    /// Settings for the api on top of the harness's (e.g. `TMS_PRODUCTION`).
    pub api_env: Vec<(String, String)>,
    /// The api's port, when a setting must name it before start (the SSO redirect URL);
    /// default: a free one.
    pub api_port: Option<u16>,
    /// The api and worker processes reach Postgres through a `Proxy` the test controls
    /// (`TestEnv::pg_proxy`), so it can cut them off without stopping the shared server.
    pub postgres_proxy: bool,
}

impl Default for EnvOptions {
    fn default() -> Self {
        Self {
            redis_url: None,
            start_worker: true,
            worker_env: Vec::new(),
            api_env: Vec::new(),
            api_port: None,
            postgres_proxy: false,
        }
    }
}

impl EnvOptions {
    /// The api alone, for tests that start their workers themselves or need none.
    pub fn api_only() -> Self {
        Self {
            start_worker: false,
            ..Default::default()
        }
    }

    /// The api and one worker with these settings on top of the harness's.
    pub fn worker_env(vars: Vec<(String, String)>) -> Self {
        Self {
            worker_env: vars,
            ..Default::default()
        }
    }
}

/// One isolated TMS deployment: fresh database, own queue name, api and worker processes.
pub struct TestEnv {
    pub database_url: String,
    pub redis_url: String,
    pub queue: String,
    pub api_port: u16,
    pub api: Option<Proc>,
    pub extra_apis: Vec<Proc>,
    pub workers: Vec<Proc>,
    pub work_dir: PathBuf,
    /// The artifact store every worker of this environment shares (`TMS_ARTIFACTS`).
    pub artifacts_dir: PathBuf,
    dir: tempdir::Dir,
    http: reqwest::Client,
    pub token: Option<String>,
    api_env: Vec<(String, String)>,
    /// With `EnvOptions::postgres_proxy`: the proxy between the processes and Postgres.
    pub pg_proxy: Option<proxy::Proxy>,
    /// With `pg_proxy`: the `DATABASE_URL` the processes get (the proxy's port in place of
    /// the server's); without, they get `database_url`.
    proxied_database_url: Option<String>,
}

impl TestEnv {
    pub async fn start() -> Result<Self> {
        Self::start_with(EnvOptions::default()).await
    }

    pub async fn start_with(opts: EnvOptions) -> Result<Self> {
        let redis_url = opts.redis_url.clone().unwrap_or_else(services::redis_url);
        let database_url = create_database("tms_t")?;
        let dir = tempdir::Dir::new("tms-e2e");
        let work_dir = dir.path().join("work");
        let artifacts_dir = dir.path().join("artifacts");
        let (pg_proxy, proxied_database_url) = if opts.postgres_proxy {
            let pg_port = services::database_port(&database_url)?;
            let proxy = proxy::Proxy::start(pg_port).await?;
            let url = database_url.replace(
                &format!("127.0.0.1:{pg_port}"),
                &format!("127.0.0.1:{}", proxy.port),
            );
            (Some(proxy), Some(url))
        } else {
            (None, None)
        };
        let mut env = TestEnv {
            pg_proxy,
            proxied_database_url,
            database_url,
            redis_url,
            queue: format!("q-{}", uuid::Uuid::new_v4().simple()),
            api_port: opts.api_port.unwrap_or_else(free_port),
            api: None,
            extra_apis: Vec::new(),
            workers: Vec::new(),
            work_dir,
            artifacts_dir,
            dir,
            http: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()?,
            token: None,
            api_env: opts.api_env.clone(),
        };
        env.start_api()?;
        env.wait_ready(&format!("http://127.0.0.1:{}/readyz", env.api_port), "api")
            .await?;
        if opts.start_worker {
            env.start_worker(&opts.worker_env).await?;
        }
        env.login_admin().await?;
        Ok(env)
    }

    fn base_command(&self, bin: &str) -> Command {
        let mut cmd = Command::new(bin_dir().join(bin));
        // Only what the binaries need: the test runner's own TMS_* variables stay out.
        cmd.env_clear()
            .env("PATH", std::env::var("PATH").unwrap_or_default())
            .env("RUST_LOG", "info")
            .env(
                "DATABASE_URL",
                self.proxied_database_url
                    .as_deref()
                    .unwrap_or(&self.database_url),
            )
            .env("REDIS_URL", &self.redis_url)
            .env("TMS_QUEUE", &self.queue)
            .env("TMS_DB_POOL_SIZE", "5")
            .envs(coverage_env())
            .stdin(Stdio::null());
        cmd
    }

    fn log_file(&self, name: &str) -> Result<(PathBuf, std::fs::File)> {
        let path = self.dir.path().join(format!("{name}.log"));
        let f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)?;
        Ok((path, f))
    }

    fn spawn_api(&self, port: u16, name: &str) -> Result<Proc> {
        let (log, f) = self.log_file(name)?;
        let child = self
            .base_command("tms-api")
            .env("TMS_LISTEN", format!("127.0.0.1:{port}"))
            .env("TMS_JWT_SECRET", JWT_SECRET)
            .env("TMS_BOOTSTRAP_ADMIN_EMAIL", ADMIN_EMAIL)
            .env("TMS_BOOTSTRAP_ADMIN_PASSWORD", ADMIN_PASSWORD)
            .envs(self.api_env.iter().map(|(k, v)| (k, v)))
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("spawning tms-api (did `cargo build --workspace --bins` run?)")?;
        Ok(Proc {
            name: "api",
            child,
            log,
            killed: false,
        })
    }

    /// Replaces the api's extra settings for the next (re)start, e.g. to rotate keys.
    pub fn set_api_env(&mut self, vars: Vec<(String, String)>) {
        self.api_env = vars;
    }

    pub fn start_api(&mut self) -> Result<()> {
        self.api = Some(self.spawn_api(self.api_port, "api")?);
        Ok(())
    }

    /// Kills the api with SIGKILL and starts it again on the same port.
    pub async fn restart_api(&mut self) -> Result<()> {
        if let Some(mut p) = self.api.take() {
            p.kill9();
        }
        self.start_api()?;
        self.wait_ready(&format!("http://127.0.0.1:{}/readyz", self.api_port), "api")
            .await
    }

    /// A second api process on the same database, Redis and queue; returns its port.
    pub async fn start_extra_api(&mut self) -> Result<u16> {
        let port = free_port();
        let n = self.extra_apis.len();
        let p = self.spawn_api(port, &format!("api-extra{n}"))?;
        self.extra_apis.push(p);
        self.wait_ready(&format!("http://127.0.0.1:{port}/readyz"), "extra api")
            .await?;
        Ok(port)
    }

    pub async fn start_worker(&mut self, extra: &[(String, String)]) -> Result<u16> {
        let port = free_port();
        let n = self.workers.len();
        let (log, f) = self.log_file(&format!("worker{n}"))?;
        let mut cmd = self.base_command("tms-worker");
        cmd.env("TMS_WORKER_LISTEN", format!("127.0.0.1:{port}"))
            .env("TMS_WORK_DIR", &self.work_dir)
            .env("TMS_ARTIFACTS", &self.artifacts_dir)
            .env("TMS_WORKER_CONCURRENCY", "4")
            .env("TMS_EXECUTOR", "local");
        for (k, v) in extra {
            cmd.env(k, v);
        }
        let child = cmd
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("spawning tms-worker")?;
        self.workers.push(Proc {
            name: "worker",
            child,
            log,
            killed: false,
        });
        self.wait_ready(&format!("http://127.0.0.1:{port}/readyz"), "worker")
            .await?;
        Ok(port)
    }

    /// Polls a readiness URL until it answers 200 (or the process died / 30 s passed).
    pub async fn wait_ready(&mut self, url: &str, what: &str) -> Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(r) = self.http.get(url).send().await
                && r.status().is_success()
            {
                return Ok(());
            }
            for p in self
                .api
                .iter_mut()
                .chain(self.workers.iter_mut())
                .filter(|p| !p.killed)
            {
                if let Ok(Some(status)) = p.child.try_wait() {
                    bail!(
                        "{} exited with {status} while waiting for {what}:\n{}",
                        p.name,
                        p.log_text()
                    );
                }
            }
            if Instant::now() > deadline {
                bail!("{what} not ready at {url} after 30s");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    pub fn api_url(&self) -> String {
        format!("http://127.0.0.1:{}/graphql", self.api_port)
    }

    /// Posts a GraphQL request with the current token (if any) and returns the whole response.
    pub async fn gql_raw(
        &self,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<Value> {
        self.gql_at(self.api_port, token, query, variables).await
    }

    /// As `gql_raw`, against the api listening on `port`.
    pub async fn gql_at(
        &self,
        port: u16,
        token: Option<&str>,
        query: &str,
        variables: Value,
    ) -> Result<Value> {
        let mut req = self
            .http
            .post(format!("http://127.0.0.1:{port}/graphql"))
            .json(&json!({"query": query, "variables": variables}));
        if let Some(t) = token {
            req = req.bearer_auth(t);
        }
        let resp = req.send().await?;
        Ok(resp.json().await?)
    }

    /// As the admin; fails the test on any GraphQL error.
    pub async fn gql(&self, query: &str, variables: Value) -> Result<Value> {
        let v = self
            .gql_raw(self.token.as_deref(), query, variables)
            .await?;
        if let Some(errs) = v.get("errors") {
            bail!("GraphQL errors: {errs}");
        }
        Ok(v["data"].clone())
    }

    pub async fn login_admin(&mut self) -> Result<()> {
        let v = self
            .gql_raw(
                None,
                "mutation($e:String!,$p:String!){login(email:$e,password:$p){accessToken expiresIn}}",
                json!({"e": ADMIN_EMAIL, "p": ADMIN_PASSWORD}),
            )
            .await?;
        let token = v["data"]["login"]["accessToken"]
            .as_str()
            .ok_or_else(|| anyhow!("login failed: {v}"))?;
        self.token = Some(token.to_string());
        Ok(())
    }

    pub async fn create_workflow(&self, name: &str, steps: Value) -> Result<String> {
        let d = self
            .gql(
                "mutation($i:WorkflowInput!){createWorkflow(input:$i){id}}",
                json!({"i": {"name": name, "steps": steps}}),
            )
            .await?;
        Ok(d["createWorkflow"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub async fn trigger(&self, workflow_id: &str) -> Result<String> {
        let d = self
            .gql(
                "mutation($w:ID!){triggerRun(workflowId:$w){id status}}",
                json!({"w": workflow_id}),
            )
            .await?;
        Ok(d["triggerRun"]["id"]
            .as_str()
            .unwrap_or_default()
            .to_string())
    }

    pub async fn run(&self, run_id: &str) -> Result<Value> {
        let d = self
            .gql(
                "query($id:ID!){run(id:$id){id status version error deliveries percent etaSeconds startedAt finishedAt createdAt
                   tasks{name status attempt exitCode cached logTail error startedAt finishedAt}}}",
                json!({"id": run_id}),
            )
            .await?;
        Ok(d["run"].clone())
    }

    /// Polls the run until it reaches a final status (or `timeout` passes) and returns it.
    pub async fn wait_run(&self, run_id: &str, timeout: Duration) -> Result<Value> {
        let deadline = Instant::now() + timeout;
        loop {
            let run = self.run(run_id).await?;
            let status = run["status"].as_str().unwrap_or_default();
            if !matches!(status, "QUEUED" | "RUNNING") {
                return Ok(run);
            }
            if Instant::now() > deadline {
                let logs: Vec<String> = self.workers.iter().map(|w| w.log_text()).collect();
                bail!(
                    "run {run_id} still {status} after {timeout:?}: {run}\nworker logs:\n{}",
                    logs.join("\n---\n")
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Run events straight from Postgres, in sequence order.
    pub fn events(&self, run_id: &str) -> Result<Vec<(i64, String, String, String)>> {
        let text = psql(
            &self.database_url,
            &[
                "-F",
                "|",
                "-c",
                &format!(
                    "SELECT seq, kind, coalesce(status::text,''), coalesce(step,'') FROM run_events WHERE run_id = '{run_id}' ORDER BY seq"
                ),
            ],
        )?;
        Ok(text
            .lines()
            .filter_map(|l| {
                let mut p = l.split('|');
                Some((
                    p.next()?.parse().ok()?,
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                    p.next()?.to_string(),
                ))
            })
            .collect())
    }
}

impl Drop for TestEnv {
    /// Asks every process to stop at once, so they shut down in parallel; each `Proc`'s own
    /// drop (after this) then waits, bounded, for its exit.
    fn drop(&mut self) {
        for p in self
            .api
            .iter_mut()
            .chain(self.extra_apis.iter_mut())
            .chain(self.workers.iter_mut())
        {
            p.request_stop();
        }
    }
}

/// Task `name` out of a run's `tasks` list.
pub fn task<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["tasks"]
        .as_array()
        .and_then(|ts| ts.iter().find(|t| t["name"] == name))
        .unwrap_or_else(|| panic!("no task {name} in {run}"))
}

/// The `extensions.code` of the first error of a response.
pub fn error_code(resp: &Value) -> String {
    resp["errors"][0]["extensions"]["code"]
        .as_str()
        .unwrap_or("<none>")
        .to_string()
}

/// Steps `s0 → s1 → … → s{n-1}` of a linear workflow, each running `run`.
pub fn chain(n: usize, run: &str) -> Value {
    Value::Array(
        (0..n)
            .map(|i| {
                let mut s = json!({"name": format!("s{i}"), "image": "alpine", "run": run});
                if i > 0 {
                    s["dependsOn"] = json!([format!("s{}", i - 1)]);
                }
                s
            })
            .collect(),
    )
}

/// A numeric setting of a benchmark from the environment, or `default`.
pub fn env_or<T: std::str::FromStr>(name: &str, default: T) -> T {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// A 4-step diamond a -> (b, c) -> d that passes a file along, as the benchmarks run it.
pub fn diamond() -> Value {
    json!([
        {"name": "a", "image": "alpine", "run": "echo a > $TMS_OUT/a"},
        {"name": "b", "image": "alpine", "dependsOn": ["a"], "run": "cat $TMS_IN/a/a"},
        {"name": "c", "image": "alpine", "dependsOn": ["a"], "run": "cat $TMS_IN/a/a"},
        {"name": "d", "image": "alpine", "dependsOn": ["b", "c"], "run": "true"}
    ])
}

/// Settings of the benchmarks' processes: `K=V` pairs separated by spaces in `var`.
fn bench_vars(var: &str) -> Vec<(String, String)> {
    std::env::var(var)
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// The pool size the benchmarks give each process: `BENCH_POOL_SIZE`, else the binaries'
/// own default (what `scripts/run` ships), not the tests' small pool.
fn bench_pool() -> Vec<(String, String)> {
    let pool = std::env::var("BENCH_POOL_SIZE").unwrap_or_else(|_| "10".into());
    vec![("TMS_DB_POOL_SIZE".into(), pool)]
}

/// The benchmarks' system: the api and one worker with 8 step slots.
/// `TMS_BENCH_API_ENV` and `TMS_BENCH_WORKER_ENV` (`K=V` pairs separated by spaces, e.g.
/// `OTEL_EXPORTER_OTLP_ENDPOINT=…`) are passed to the api and the worker, to measure a
/// setting's cost.
pub async fn bench_env() -> Result<TestEnv> {
    let mut worker_env = bench_pool();
    worker_env.push(("TMS_WORKER_CONCURRENCY".into(), "8".into()));
    worker_env.extend(bench_vars("TMS_BENCH_WORKER_ENV"));
    let mut api_env = bench_pool();
    api_env.extend(bench_vars("TMS_BENCH_API_ENV"));
    TestEnv::start_with(EnvOptions {
        api_env,
        ..EnvOptions::worker_env(worker_env)
    })
    .await
}

/// As [`bench_env`], without a worker.
pub async fn bench_env_api_only() -> Result<TestEnv> {
    let mut api_env = bench_pool();
    api_env.extend(bench_vars("TMS_BENCH_API_ENV"));
    TestEnv::start_with(EnvOptions {
        api_env,
        ..EnvOptions::api_only()
    })
    .await
}
