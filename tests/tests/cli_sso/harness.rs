//! What `cli_sso.rs` drives: the `tms` binary in a HOME of its own, a running
//! `tms login --sso --no-browser` and the URL it printed, and a browser walking redirects.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, bail, ensure};
use base64::Engine as _;
use sha2::{Digest, Sha256};
use tms_tests::bin_dir;
use tms_tests::idp::{Browser, location};
use tms_tests::sso::Sso;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::{Child, ChildStderr, Command};

/// A running `tms login --sso --no-browser` and the sign-in URL it printed.
pub struct CliLogin {
    child: Child,
    pub url: String,
    stderr: String,
    /// The rest of stderr (with whatever was read past the URL).
    rest: BufReader<ChildStderr>,
    pub home: PathBuf,
}

/// What `tms` printed and how it exited.
pub struct Out {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl std::fmt::Display for Out {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "exit {:?}\n--- stdout\n{}--- stderr\n{}",
            self.code, self.stdout, self.stderr
        )
    }
}

pub fn tms(home: &Path, base: &str, args: &[&str]) -> Command {
    let mut cmd = Command::new(bin_dir().join("tms"));
    cmd.args(args)
        .env_clear()
        .envs(tms_tests::coverage_env())
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("TMS_URL", base)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    cmd
}

pub fn new_home(s: &Sso) -> Result<PathBuf> {
    let home = s
        .env
        .work_dir
        .join(format!("home-{}", uuid::Uuid::new_v4().simple()));
    std::fs::create_dir_all(&home)?;
    Ok(home)
}

impl CliLogin {
    /// Starts the CLI and reads its stderr until the sign-in URL appears.
    pub async fn start(s: &Sso, extra: &[&str]) -> Result<Self> {
        let home = new_home(s)?;
        let mut args = vec!["login", "--sso", "--no-browser"];
        args.extend_from_slice(extra);
        let mut child = tms(&home, &s.base, &args)
            .spawn()
            .context("spawning tms (cargo build --workspace --bins)")?;
        let mut lines = BufReader::new(child.stderr.take().context("stderr")?).lines();
        let mut stderr = String::new();
        let found = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await? {
                stderr.push_str(&line);
                stderr.push('\n');
                let t = line.trim();
                if t.starts_with("http://") && t.contains("/auth/login?") {
                    return Ok::<_, anyhow::Error>(Some(t.to_string()));
                }
            }
            Ok(None)
        })
        .await;
        let url = match found {
            Ok(Ok(Some(url))) => url,
            other => {
                let _ = child.start_kill();
                bail!("no sign-in URL from tms ({other:?}); stderr so far:\n{stderr}");
            }
        };
        // The rest of stderr is read by `finish`, after the exit (a pipe's buffer holds it).
        Ok(CliLogin {
            child,
            url,
            stderr,
            rest: lines.into_inner(),
            home,
        })
    }

    /// The loopback redirect the CLI asked the api for.
    pub fn redirect_uri(&self) -> Result<String> {
        let u = reqwest::Url::parse(&self.url)?;
        u.query_pairs()
            .find(|(k, _)| k == "redirect_uri")
            .map(|(_, v)| v.into_owned())
            .context("redirect_uri in the sign-in URL")
    }

    /// Waits (at most a minute) for the CLI to exit.
    pub async fn finish(mut self) -> Result<Out> {
        let status = tokio::time::timeout(Duration::from_secs(60), self.child.wait())
            .await
            .context("tms did not exit within 60 s")??;
        let mut stdout = String::new();
        if let Some(mut o) = self.child.stdout.take() {
            o.read_to_string(&mut stdout).await?;
        }
        let mut rest = String::new();
        self.rest.read_to_string(&mut rest).await?;
        let out = Out {
            code: status.code(),
            stdout,
            stderr: self.stderr + &rest,
        };
        println!("$ tms login --sso --no-browser\n{out}");
        Ok(out)
    }
}

/// Plays the browser from `start`: follows every redirect (signing in at the provider as
/// `who`) until one points under `stop`, and returns that URL without following it.
pub async fn browse_until(
    b: &mut Browser,
    s: &Sso,
    start: &str,
    who: &str,
    stop: &str,
) -> Result<String> {
    let mut url = start.to_string();
    for _ in 0..15 {
        let resp = b.get(&url).await?;
        let status = resp.status();
        ensure!(
            status.is_redirection(),
            "{status} at {url}: {}",
            resp.text().await.unwrap_or_default()
        );
        let next = location(&resp)?;
        let mut next = if next.starts_with('/') {
            let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
            format!("{origin}{next}")
        } else {
            next
        };
        if next.starts_with(stop) {
            return Ok(next);
        }
        if next.starts_with(&format!("{}/auth?", s.idp.issuer)) && !next.contains("login_hint=") {
            next = format!("{next}&login_hint={who}");
        }
        url = next;
    }
    bail!(
        "no redirect to {stop} after 15 hops; api log:\n{}",
        s.api_log()
    )
}

pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}
