//! The SSO test harness: an api configured for the test IdP, a walk through the provider as a
//! fresh browser, the callback, and the newest `auth.login` audit row.

use anyhow::{Context, Result, ensure};
use serde_json::{Value, json};

use crate::idp::{self, Browser, Idp, Login};
use crate::{ADMIN_EMAIL, EnvOptions, TestEnv, error_code, free_port, psql};

pub const GROUP_ROLES: &str = "ops=operator,devs=maintainer";

pub fn users() -> Value {
    json!({
        "alice": {"email": "alice@example.com", "email_verified": true, "name": "Alice",
                  "groups": ["ops", "devs", "unmapped"]},
        // Claims the bootstrap admin's address without the provider having verified it.
        "mallory": {"email": ADMIN_EMAIL, "email_verified": false, "name": "Mallory", "groups": ["ops"]},
        "linda": {"email": "linda@tms.test", "email_verified": true, "name": "Linda", "groups": ["devs"]},
        "dave": {"email": "dave@example.com", "email_verified": true, "name": "Dave", "groups": ["ops"]},
    })
}

/// An api with SSO against a running test IdP.
pub struct Sso {
    pub env: TestEnv,
    pub idp: Idp,
    /// `http://127.0.0.1:<api port>`
    pub base: String,
    /// Never follows redirects.
    pub http: reqwest::Client,
}

/// The test IdP with [`users`], then an api (no worker) configured for it.
pub async fn start() -> Result<Sso> {
    let api_port = free_port();
    let idp = Idp::start(&idp::redirect_url(api_port), &users()).await?;
    let env = TestEnv::start_with(EnvOptions {
        api_env: idp.api_env(api_port, GROUP_ROLES),
        api_port: Some(api_port),
        ..EnvOptions::api_only()
    })
    .await?;
    Ok(Sso {
        base: format!("http://127.0.0.1:{api_port}"),
        env,
        idp,
        http: Browser::new().http,
    })
}

impl Sso {
    /// A fresh browser signs in at the provider as `who`, up to (not including) the callback.
    pub async fn walk(&self, who: &str) -> Result<Login> {
        let prefix = idp::redirect_url(self.env.api_port);
        Browser::new()
            .login(&self.base, who, &prefix)
            .await
            .with_context(|| {
                format!(
                    "IdP log: {}\napi log: {}",
                    self.idp.log_text(),
                    self.api_log()
                )
            })
    }

    pub fn api_log(&self) -> String {
        self.env
            .api
            .as_ref()
            .map(|p| p.log_text())
            .unwrap_or_default()
    }

    pub async fn callback(&self, l: &Login, cookie: bool) -> Result<(u16, Value)> {
        let cookie = if cookie { l.cookie.as_deref() } else { None };
        let (status, _, body) = idp::callback(&self.http, &l.callback_url, cookie, true).await?;
        let v = serde_json::from_str(&body).unwrap_or(Value::String(body));
        Ok((status.as_u16(), v))
    }

    /// A full JSON login; the token pair.
    pub async fn login(&self, who: &str) -> Result<Value> {
        let l = self.walk(who).await?;
        let (status, v) = self.callback(&l, true).await?;
        ensure!(status == 200, "login as {who}: {status} {v}");
        Ok(v)
    }

    pub async fn me(&self, token: &str) -> Result<Value> {
        let v = self
            .env
            .gql_raw(Some(token), "{me{id email roles}}", json!({}))
            .await?;
        ensure!(v.get("errors").is_none(), "me: {v}");
        Ok(v["data"]["me"].clone())
    }

    /// The newest `auth.login` audit row: (outcome, detail, actor id).
    pub fn last_login_audit(&self) -> Result<(String, Value, String)> {
        let out = psql(
            &self.env.database_url,
            &[
                "-F",
                "\t",
                "-c",
                "SELECT outcome, detail, coalesce(actor_id::text, '') FROM audit_log
                 WHERE action = 'auth.login' ORDER BY seq DESC LIMIT 1",
            ],
        )?;
        let mut f = out.trim_end().split('\t');
        let outcome = f.next().unwrap_or_default().to_string();
        let detail = serde_json::from_str(f.next().unwrap_or("null"))?;
        Ok((outcome, detail, f.next().unwrap_or_default().to_string()))
    }

    /// Asserts a refused callback: 401 `UNAUTHENTICATED`, and its audit row says `reason`.
    pub fn assert_refused(
        &self,
        what: &str,
        (status, body): (u16, Value),
        reason: &str,
    ) -> Result<Value> {
        ensure!(status == 401, "{what}: expected 401, got {status} {body}");
        ensure!(error_code(&body) == "UNAUTHENTICATED", "{what}: {body}");
        let text = body.to_string();
        ensure!(
            !text.contains("eyJ"),
            "{what}: a token leaked into the error: {text}"
        );
        let (outcome, detail, _) = self.last_login_audit()?;
        ensure!(
            outcome == "failure",
            "{what}: audit outcome {outcome} {detail}"
        );
        ensure!(detail["method"] == "sso", "{what}: audit detail {detail}");
        ensure!(
            detail["reason"] == reason,
            "{what}: expected reason {reason}, audit says {detail}"
        );
        Ok(detail)
    }

    pub fn roles_sql(&self, email: &str) -> Result<String> {
        psql(
            &self.env.database_url,
            &[
                "-c",
                &format!(
                    "SELECT string_agg(r.role, ',' ORDER BY r.role) FROM user_roles r
                     JOIN users u ON u.id = r.user_id WHERE u.email = '{email}'"
                ),
            ],
        )
        .map(|s| s.trim().to_string())
    }
}

pub fn query_param(url: &str, name: &str) -> Option<String> {
    let q = url.split_once('?')?.1;
    q.split('&').find_map(|kv| {
        let (k, v) = kv.split_once('=')?;
        (k == name).then(|| v.to_string())
    })
}

pub fn with_param(url: &str, name: &str, value: Option<&str>) -> String {
    let (base, q) = url.split_once('?').unwrap_or((url, ""));
    let mut parts: Vec<String> = q
        .split('&')
        .filter(|kv| !kv.is_empty() && kv.split('=').next() != Some(name))
        .map(str::to_string)
        .collect();
    if let Some(v) = value {
        parts.push(format!("{name}={v}"));
    }
    format!("{base}?{}", parts.join("&"))
}
