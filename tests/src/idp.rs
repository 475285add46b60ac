//! The test identity provider (`tests/idp/server.js`, npm `oidc-provider`) and a hand-driven
//! "browser" for the SSO flow: every redirect is followed by the test itself.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail, ensure};
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};
use serde_json::Value;

use crate::{Proc, free_port};

pub const CLIENT_ID: &str = "tms";
pub const CLIENT_SECRET: &str = "tms-test-client-secret-0123456789";

/// A running `oidc-provider` on loopback; killed (by PID) when dropped.
pub struct Idp {
    pub port: u16,
    pub issuer: String,
    dir: PathBuf,
    proc: Proc,
}

impl Idp {
    /// Starts the provider on a free port with one confidential client whose redirect URI is
    /// `redirect_uri` and the given users (`{"login": {"email", "email_verified", "groups"}}`).
    /// Fails (never skips) when Node or the npm packages are missing.
    pub async fn start(redirect_uri: &str, users: &Value) -> Result<Self> {
        let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("idp");
        ensure!(
            root.join("node_modules/oidc-provider").is_dir(),
            "the test IdP's npm packages are missing: run `npm ci` in {} (scripts/test does)",
            root.display()
        );
        let port = free_port();
        let dir = std::env::temp_dir().join(format!("tms-idp-{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir)?;
        let log = dir.join("idp.log");
        let f = std::fs::File::create(&log)?;
        let issuer = format!("http://127.0.0.1:{port}");
        std::fs::write(dir.join("users.json"), users.to_string())?;
        let child = Command::new("node")
            .arg(root.join("server.js"))
            .arg(port.to_string())
            .current_dir(&root)
            .env("IDP_ISSUER", &issuer)
            .env("IDP_CLIENT_ID", CLIENT_ID)
            .env("IDP_CLIENT_SECRET", CLIENT_SECRET)
            .env("IDP_REDIRECT_URI", redirect_uri)
            .env("IDP_USERS_FILE", dir.join("users.json"))
            .env("IDP_TAMPER_FILE", dir.join("tamper"))
            .stdin(Stdio::null())
            .stdout(f.try_clone()?)
            .stderr(f)
            .spawn()
            .context("starting the test IdP with `node` (scripts/test installs Node)")?;
        let mut idp = Idp {
            port,
            issuer,
            dir,
            proc: Proc {
                name: "idp",
                child,
                log,
                killed: false,
            },
        };
        idp.wait_ready().await?;
        Ok(idp)
    }

    /// Polls discovery until it answers, failing early if the process died.
    async fn wait_ready(&mut self) -> Result<()> {
        let url = format!("{}/.well-known/openid-configuration", self.issuer);
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(status) = self.proc.child.try_wait()? {
                bail!("test IdP exited ({status}): {}", self.proc.log_text());
            }
            if let Ok(r) = reqwest::get(&url).await
                && r.status().is_success()
            {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!("test IdP not ready after 30 s: {}", self.proc.log_text());
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Replaces the users (read by the provider at every sign-in).
    pub fn set_users(&self, users: &Value) -> Result<()> {
        Ok(std::fs::write(
            self.dir.join("users.json"),
            users.to_string(),
        )?)
    }

    /// Makes the token endpoint's `id_token` tampered as `mode` says (`""` = genuine).
    pub fn set_tamper(&self, mode: &str) -> Result<()> {
        Ok(std::fs::write(self.dir.join("tamper"), mode)?)
    }

    pub fn log_text(&self) -> String {
        self.proc.log_text()
    }

    /// The api settings that enable SSO against this provider.
    pub fn api_env(&self, api_port: u16, group_roles: &str) -> Vec<(String, String)> {
        [
            ("TMS_OIDC_ISSUER", self.issuer.clone()),
            ("TMS_OIDC_CLIENT_ID", CLIENT_ID.to_string()),
            ("TMS_OIDC_CLIENT_SECRET", CLIENT_SECRET.to_string()),
            ("TMS_OIDC_REDIRECT_URL", redirect_url(api_port)),
            ("TMS_OIDC_GROUP_ROLES", group_roles.to_string()),
            (
                "TMS_OIDC_POST_LOGIN_URL",
                format!("http://127.0.0.1:{api_port}/console/"),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }
}

impl Drop for Idp {
    fn drop(&mut self) {
        let _ = self.proc.child.kill();
        let _ = self.proc.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

pub fn redirect_url(api_port: u16) -> String {
    format!("http://127.0.0.1:{api_port}/auth/callback")
}

/// A login started at `/auth/login` and walked through the provider: the callback URL the
/// provider redirected to, and the api's login cookie (`name=value`).
#[derive(Debug, Clone)]
pub struct Login {
    pub authorize_url: String,
    pub callback_url: String,
    pub cookie: Option<String>,
}

/// A cookie jar for one host (cookies ignore ports, as in a browser) and a client that never
/// follows redirects.
pub struct Browser {
    pub http: reqwest::Client,
    jar: BTreeMap<String, String>,
}

impl Default for Browser {
    fn default() -> Self {
        Self::new()
    }
}

impl Browser {
    pub fn new() -> Self {
        Browser {
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .timeout(Duration::from_secs(30))
                .build()
                .expect("http client"),
            jar: BTreeMap::new(),
        }
    }

    fn remember(&mut self, resp: &reqwest::Response) {
        for v in resp.headers().get_all(SET_COOKIE) {
            let Ok(v) = v.to_str() else { continue };
            let first = v.split(';').next().unwrap_or_default();
            if let Some((k, val)) = first.split_once('=') {
                let gone = val.is_empty() || v.to_ascii_lowercase().contains("max-age=0");
                if gone {
                    self.jar.remove(k.trim());
                } else {
                    self.jar.insert(k.trim().to_string(), val.to_string());
                }
            }
        }
    }

    pub fn cookie(&self, name: &str) -> Option<String> {
        self.jar.get(name).map(|v| format!("{name}={v}"))
    }

    /// GET with the jar's cookies; remembers what the answer sets.
    pub async fn get(&mut self, url: &str) -> Result<reqwest::Response> {
        let mut req = self.http.get(url);
        if !self.jar.is_empty() {
            let c: Vec<String> = self.jar.iter().map(|(k, v)| format!("{k}={v}")).collect();
            req = req.header(COOKIE, c.join("; "));
        }
        let resp = req.send().await.with_context(|| format!("GET {url}"))?;
        self.remember(&resp);
        Ok(resp)
    }

    /// `/auth/login` on the api, then the provider's pages as `login_hint` until the provider
    /// redirects to `redirect_prefix` (not followed: the test calls the callback itself).
    pub async fn login(
        &mut self,
        api_base: &str,
        login_hint: &str,
        redirect_prefix: &str,
    ) -> Result<Login> {
        let resp = self.get(&format!("{api_base}/auth/login")).await?;
        ensure!(
            resp.status() == reqwest::StatusCode::FOUND,
            "/auth/login answered {}: {}",
            resp.status(),
            resp.text().await.unwrap_or_default()
        );
        let authorize = location(&resp)?;
        let cookie = self.cookie("tms_sso");
        let mut url = format!("{authorize}&login_hint={login_hint}");
        for _ in 0..10 {
            let resp = self.get(&url).await?;
            let status = resp.status();
            ensure!(
                status.is_redirection(),
                "provider answered {status} at {url}: {}",
                resp.text().await.unwrap_or_default()
            );
            let next = location(&resp)?;
            let next = if next.starts_with('/') {
                let origin = url.split('/').take(3).collect::<Vec<_>>().join("/");
                format!("{origin}{next}")
            } else {
                next
            };
            if next.starts_with(redirect_prefix) {
                return Ok(Login {
                    authorize_url: authorize,
                    callback_url: next,
                    cookie,
                });
            }
            url = next;
        }
        bail!("no redirect to {redirect_prefix} after 10 hops")
    }
}

pub fn location(resp: &reqwest::Response) -> Result<String> {
    Ok(resp
        .headers()
        .get(LOCATION)
        .context("redirect without Location")?
        .to_str()?
        .to_string())
}

/// Calls the api's callback as a browser would, with the login cookie when given.
pub async fn callback(
    http: &reqwest::Client,
    url: &str,
    cookie: Option<&str>,
    json: bool,
) -> Result<(reqwest::StatusCode, reqwest::header::HeaderMap, String)> {
    let mut req = http.get(url);
    if let Some(c) = cookie {
        req = req.header(COOKIE, c);
    }
    if json {
        req = req.header(reqwest::header::ACCEPT, "application/json");
    }
    let resp = req.send().await?;
    let (status, headers) = (resp.status(), resp.headers().clone());
    Ok((status, headers, resp.text().await?))
}
