//! Runnable documentation: the ```sh blocks of README.md and docs/*.md, the live system and
//! scratch checkout they run against, and the pages' relative links and headings
//! (`tests/tests/docs.rs` states the conventions).

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};

use crate::{Proc, bin_dir, create_database, free_port, services, tempdir};

/// The bootstrap admin of the docs' system: the address `scripts/run` uses.
pub const DOCS_ADMIN_EMAIL: &str = "admin@localhost";
pub const DOCS_ADMIN_PASSWORD: &str = "docs-admin-password-0123";
const DOCS_JWT_SECRET: &str = "docs-test-secret-docs-test-secret-012345";
/// A secret the docs' worker holds, as `TMS_SECRET_DEMO_TOKEN=… scripts/run` would give it.
pub const DEMO_SECRET: (&str, &str) = ("TMS_SECRET_DEMO_TOKEN", "not-so-secret-demo-value");

/// One fenced ```sh block of a Markdown file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Block {
    /// 1-based line of the opening fence.
    pub line: usize,
    /// What follows `sh` on the fence, e.g. `norun (needs a Dagger engine)`.
    pub info: String,
    pub text: String,
}

impl Block {
    /// Marked as not runnable in a test (`sh norun …`).
    pub fn norun(&self) -> bool {
        self.info.split_whitespace().next() == Some("norun")
    }
}

/// The shell blocks of `markdown`: fences (possibly indented, as in a list item) whose info
/// string starts with `sh`. Other languages (`bash`, `shell`) are refused so that nothing
/// escapes the test by its spelling; `console` transcripts and `text` are not run.
pub fn sh_blocks(markdown: &str) -> Result<Vec<Block>> {
    /// An open fence: its line, backtick count, language, the rest of its info, indentation.
    struct Open {
        line: usize,
        ticks: usize,
        lang: String,
        info: String,
        indent: usize,
        body: Vec<String>,
    }
    let mut blocks = Vec::new();
    let mut open: Option<Open> = None;
    for (i, raw) in markdown.lines().enumerate() {
        let trimmed = raw.trim_start();
        let indent = raw.len() - trimmed.len();
        let ticks = trimmed.bytes().take_while(|&b| b == b'`').count();
        match &mut open {
            None => {
                // As in CommonMark: 3+ backticks, and an info string without backticks (so an
                // inline ```` ```sh ```` in prose is not a fence).
                let info = &trimmed[ticks..];
                if ticks < 3 || info.contains('`') {
                    continue;
                }
                let mut words = info.split_whitespace();
                let lang = words.next().unwrap_or_default().to_string();
                if matches!(lang.as_str(), "bash" | "shell" | "zsh") {
                    bail!("line {}: write ```sh, not ```{lang}", i + 1);
                }
                open = Some(Open {
                    line: i + 1,
                    ticks,
                    lang,
                    info: words.collect::<Vec<_>>().join(" "),
                    indent,
                    body: Vec::new(),
                });
            }
            Some(o) => {
                if ticks >= o.ticks && trimmed.trim_end().len() == ticks {
                    if o.lang == "sh" {
                        blocks.push(Block {
                            line: o.line,
                            info: std::mem::take(&mut o.info),
                            text: o.body.join("\n") + "\n",
                        });
                    }
                    open = None;
                } else {
                    // Lines of an indented fence lose up to the fence's indentation.
                    let strip = raw.len() - raw.trim_start().len();
                    o.body.push(raw[strip.min(o.indent)..].to_string());
                }
            }
        }
    }
    if let Some(o) = open {
        bail!("line {}: fence never closed", o.line);
    }
    Ok(blocks)
}

/// The documentation pages whose blocks run, in order: README.md, then docs/*.md by name
/// (docs/reference/ is generated and holds no shell).
pub fn pages(repo: &Path) -> Result<Vec<PathBuf>> {
    let mut docs: Vec<PathBuf> = std::fs::read_dir(repo.join("docs"))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    let mut all = vec![repo.join("README.md")];
    all.extend(docs);
    Ok(all)
}

/// The api and one worker the docs run against, on a fresh database.
pub struct DocsSystem {
    pub api: Proc,
    pub worker: Proc,
    pub api_port: u16,
    dir: tempdir::Dir,
}

impl DocsSystem {
    pub async fn start() -> Result<Self> {
        let dir = tempdir::Dir::new("tms-docs");
        let database_url = create_database("tms_docs")?;
        let queue = format!("q-{}", uuid::Uuid::new_v4().simple());
        let base = |bin: &str, log: &Path| -> Result<Command> {
            let f = std::fs::File::create(log)?;
            let mut cmd = Command::new(bin_dir().join(bin));
            cmd.env_clear()
                .envs(crate::coverage_env())
                .env("PATH", std::env::var("PATH").unwrap_or_default())
                .env("RUST_LOG", "info")
                .env("DATABASE_URL", &database_url)
                .env("REDIS_URL", services::redis_url())
                .env("TMS_QUEUE", &queue)
                .env("TMS_DB_POOL_SIZE", "5")
                .stdin(Stdio::null())
                .stdout(f.try_clone()?)
                .stderr(f);
            Ok(cmd)
        };
        let api_port = free_port();
        let api_log = dir.path().join("api.log");
        let child = base("tms-api", &api_log)?
            .env("TMS_LISTEN", format!("127.0.0.1:{api_port}"))
            .env("TMS_JWT_SECRET", DOCS_JWT_SECRET)
            .env("TMS_BOOTSTRAP_ADMIN_EMAIL", DOCS_ADMIN_EMAIL)
            .env("TMS_BOOTSTRAP_ADMIN_PASSWORD", DOCS_ADMIN_PASSWORD)
            .spawn()
            .context("spawning tms-api (did `cargo build --workspace --bins` run?)")?;
        let mut api = Proc {
            name: "api",
            child,
            log: api_log,
            killed: false,
        };
        wait_ready(&mut api, &format!("http://127.0.0.1:{api_port}/readyz")).await?;
        let worker_port = free_port();
        let worker_log = dir.path().join("worker.log");
        let child = base("tms-worker", &worker_log)?
            .env("TMS_WORKER_LISTEN", format!("127.0.0.1:{worker_port}"))
            .env("TMS_WORK_DIR", dir.path().join("work"))
            .env("TMS_ARTIFACTS", dir.path().join("artifacts"))
            .env("TMS_WORKER_CONCURRENCY", "4")
            .env("TMS_EXECUTOR", "local")
            .env(DEMO_SECRET.0, DEMO_SECRET.1)
            .spawn()
            .context("spawning tms-worker")?;
        let mut worker = Proc {
            name: "worker",
            child,
            log: worker_log,
            killed: false,
        };
        wait_ready(
            &mut worker,
            &format!("http://127.0.0.1:{worker_port}/readyz"),
        )
        .await?;
        Ok(DocsSystem {
            api,
            worker,
            api_port,
            dir,
        })
    }

    /// What `TMS_URL` is for the blocks: the api's base URL.
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.api_port)
    }

    /// The last `lines` lines of the api's and the worker's logs, for a failure report.
    pub fn log_tails(&self, lines: usize) -> String {
        [&self.api, &self.worker]
            .iter()
            .map(|p| {
                let text = p.log_text();
                let all: Vec<&str> = text.lines().collect();
                let from = all.len().saturating_sub(lines);
                format!("--- {} log (tail)\n{}\n", p.name, all[from..].join("\n"))
            })
            .collect()
    }

    /// A new scratch checkout: `examples/` copied from `repo`, `.tms/secrets.env` as
    /// `scripts/run` writes it, `target/release/tms` linked to the test-built CLI, and a
    /// `home/` for HOME (the token file of `tms login`).
    pub fn scratch(&self, repo: &Path, name: &str) -> Result<PathBuf> {
        let w = self.dir.path().join(name);
        std::fs::create_dir_all(w.join("examples"))?;
        for e in std::fs::read_dir(repo.join("examples"))? {
            let p = e?.path();
            if p.is_file() {
                std::fs::copy(
                    &p,
                    w.join("examples").join(p.file_name().unwrap_or_default()),
                )?;
            }
        }
        std::fs::create_dir_all(w.join(".tms"))?;
        std::fs::write(
            w.join(".tms/secrets.env"),
            format!(
                "TMS_JWT_SECRET={DOCS_JWT_SECRET}\nTMS_BOOTSTRAP_ADMIN_PASSWORD={DOCS_ADMIN_PASSWORD}\n"
            ),
        )?;
        std::fs::create_dir_all(w.join("target/release"))?;
        std::os::unix::fs::symlink(bin_dir().join("tms"), w.join("target/release/tms"))?;
        std::fs::create_dir_all(w.join("home/.config"))?;
        Ok(w)
    }
}

async fn wait_ready(p: &mut Proc, url: &str) -> Result<()> {
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Ok(r) = http.get(url).send().await
            && r.status().is_success()
        {
            return Ok(());
        }
        if let Ok(Some(status)) = p.child.try_wait() {
            bail!("{} exited with {status}:\n{}", p.name, p.log_text());
        }
        if Instant::now() > deadline {
            bail!(
                "{} not ready at {url} after 60 s:\n{}",
                p.name,
                p.log_text()
            );
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// How one page's blocks ran.
pub struct PageRun {
    /// Index (into the runnable blocks) of the block that failed, if one did.
    pub failed: Option<usize>,
    /// Exit status of the shell (`None`: killed at the time limit).
    pub status: Option<i32>,
    /// Each runnable block's combined stdout and stderr, in order (blocks after a failure have
    /// none).
    pub outputs: Vec<String>,
}

const MARK: &str = "@@tms-doc-block ";

/// Runs `blocks` one after the other in one `bash -euo pipefail` session in `dir` (so they
/// share variables and functions, as in one terminal), with `env`; stops at the first failure
/// or after `limit`.
pub async fn run_page(
    dir: &Path,
    env: &[(String, String)],
    blocks: &[&Block],
    limit: Duration,
) -> Result<PageRun> {
    let mut script = String::new();
    for (i, b) in blocks.iter().enumerate() {
        script.push_str(&format!("printf '\\n{MARK}{i}@@\\n'\n"));
        script.push_str(&b.text);
    }
    script.push_str(&format!("printf '\\n{MARK}end@@\\n'\n"));
    let script_path = dir.join(".doc-blocks.sh");
    std::fs::write(&script_path, script)?;
    let out_path = dir.join(".doc-blocks.out");
    let out = std::fs::File::create(&out_path)?;
    let mut cmd = tokio::process::Command::new("bash");
    cmd.args(["-euo", "pipefail"])
        .arg(&script_path)
        .current_dir(dir)
        .env_clear()
        // Under scripts/coverage the `tms` commands the blocks run write their profiles too.
        .envs(crate::coverage_env())
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .process_group(0)
        .kill_on_drop(true);
    let mut child = cmd.spawn().context("spawning bash")?;
    let pgid = child.id().unwrap_or_default() as i32;
    let status = match tokio::time::timeout(limit, child.wait()).await {
        Ok(s) => s?.code(),
        Err(_) => None,
    };
    // Whatever a block left behind in its process group goes too.
    // SAFETY: kill(2) on the process group of the shell this function started.
    unsafe {
        libc::kill(-pgid, libc::SIGKILL);
    }
    let _ = child.wait().await;
    let text = String::from_utf8_lossy(&std::fs::read(&out_path)?).into_owned();
    let mut outputs: Vec<String> = Vec::new();
    let mut finished = false;
    for chunk in text.split(MARK).skip(1) {
        let (tag, body) = chunk.split_once("@@\n").unwrap_or((chunk, ""));
        if tag == "end" {
            finished = true;
        } else {
            outputs.push(body.trim_end_matches('\n').to_string());
        }
    }
    let failed = if finished && status == Some(0) {
        None
    } else {
        Some(outputs.len().saturating_sub(1))
    };
    Ok(PageRun {
        failed,
        status,
        outputs,
    })
}

/// The relative links of `markdown` (`[text](target)`, outside fenced code) with their lines;
/// web and mail links are left out.
pub fn relative_links(markdown: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut fence: Option<usize> = None;
    for (i, line) in markdown.lines().enumerate() {
        let trimmed = line.trim_start();
        let ticks = trimmed.bytes().take_while(|&b| b == b'`').count();
        match fence {
            Some(n) if ticks >= n && trimmed.trim_end().len() == ticks => fence = None,
            Some(_) => {}
            None if ticks >= 3 && !trimmed[ticks..].contains('`') => fence = Some(ticks),
            None => {
                let mut rest = line;
                while let Some(at) = rest.find("](") {
                    rest = &rest[at + 2..];
                    let Some(end) = rest.find(')') else { break };
                    let target = &rest[..end];
                    if !target.contains("://") && !target.starts_with("mailto:") {
                        out.push((i + 1, target.to_string()));
                    }
                    rest = &rest[end..];
                }
            }
        }
    }
    out
}

/// The anchors GitHub gives the headings of `markdown`: lower case, spaces to `-`, other
/// punctuation dropped (a repeated heading's `-1` suffix is not modelled).
pub fn anchors(markdown: &str) -> Vec<String> {
    let mut fence = false;
    let mut out = Vec::new();
    for line in markdown.lines() {
        if line.trim_start().starts_with("```") {
            fence = !fence;
        }
        let Some(title) = line.strip_prefix('#') else {
            continue;
        };
        if fence {
            continue;
        }
        let title = title.trim_start_matches('#').trim();
        out.push(
            title
                .chars()
                .filter_map(|c| match c {
                    ' ' => Some('-'),
                    c if c.is_alphanumeric() || c == '-' || c == '_' => {
                        Some(c.to_lowercase().next().unwrap_or(c))
                    }
                    _ => None,
                })
                .collect(),
        );
    }
    out
}
