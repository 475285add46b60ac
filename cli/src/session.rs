//! The saved session: the token file under the user's config dir (`~/.config/tms/token`,
//! mode 0600) holding the access and refresh tokens, refreshed when the access token expired.

use std::io::Write;
use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::api::{Failure, post_public};

/// What `tms login` stores.
#[derive(Serialize, Deserialize, Debug, Clone)]
#[serde(rename_all = "camelCase")]
pub struct Saved {
    pub url: String,
    pub email: String,
    pub access_token: String,
    pub refresh_token: Option<String>,
    /// Unix seconds after which the access token is refused.
    pub expires_at: u64,
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `$XDG_CONFIG_HOME/tms/token` (or `~/.config/tms/token`).
pub fn token_path() -> Result<PathBuf, Failure> {
    dirs::config_dir()
        .map(|d| d.join("tms").join("token"))
        .ok_or_else(|| Failure::usage("no config directory: set HOME or XDG_CONFIG_HOME"))
}

impl Saved {
    /// A session from a `login`/`refreshToken` payload.
    pub fn from_payload(url: &str, email: &str, p: &Value) -> Result<Self, Failure> {
        let access = p["accessToken"]
            .as_str()
            .ok_or_else(|| Failure::other("INTERNAL", "the api answered no access token"))?;
        Ok(Saved {
            url: url.into(),
            email: email.into(),
            access_token: access.into(),
            refresh_token: p["refreshToken"].as_str().map(str::to_string),
            expires_at: now() + p["expiresIn"].as_u64().unwrap_or(0),
        })
    }

    /// Writes the file with mode 0600 (its directory 0700), replacing it atomically.
    pub fn store(&self) -> Result<PathBuf, Failure> {
        let path = token_path()?;
        let fail = |e: std::io::Error| Failure::other("WRITE", format!("{}: {e}", path.display()));
        let dir = path.parent().unwrap_or(&path);
        std::fs::create_dir_all(dir).map_err(fail)?;
        let tmp = path.with_extension("tmp");
        let mut opts = std::fs::OpenOptions::new();
        opts.write(true).create(true).truncate(true);
        #[cfg(unix)]
        {
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            opts.mode(0o600);
            std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).map_err(fail)?;
        }
        let mut f = opts.open(&tmp).map_err(fail)?;
        let body = serde_json::to_vec_pretty(self).unwrap_or_default();
        f.write_all(&body).map_err(fail)?;
        f.sync_all().map_err(fail)?;
        std::fs::rename(&tmp, &path).map_err(fail)?;
        Ok(path)
    }

    /// The saved session, if any.
    pub fn load() -> Result<Option<Self>, Failure> {
        let path = token_path()?;
        match std::fs::read(&path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map(Some).map_err(|e| {
                Failure::usage(format!(
                    "{} is not a token file ({e}); run `tms login` again",
                    path.display()
                ))
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(Failure::other("READ", format!("{}: {e}", path.display()))),
        }
    }

    pub fn remove() -> Result<bool, Failure> {
        let path = token_path()?;
        match std::fs::remove_file(&path) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(Failure::other("WRITE", format!("{}: {e}", path.display()))),
        }
    }

    /// A live access token: the saved one, or a refreshed one (saved again) when it expired
    /// or expires within 30 seconds.
    pub async fn access_token(
        mut self,
        http: &reqwest::Client,
        url: &str,
    ) -> Result<String, Failure> {
        if self.expires_at > now() + 30 {
            return Ok(self.access_token);
        }
        let Some(refresh) = self.refresh_token.clone() else {
            return Err(expired());
        };
        let data = post_public(
            http,
            url,
            "mutation($t: String!) { refreshToken(refreshToken: $t) \
             { accessToken refreshToken expiresIn } }",
            json!({"t": refresh}),
        )
        .await
        .map_err(|f| {
            if f.code == "UNAUTHENTICATED" {
                expired()
            } else {
                f
            }
        })?;
        self = Saved::from_payload(&self.url, &self.email, &data["refreshToken"])?;
        self.store()?;
        Ok(self.access_token)
    }
}

fn expired() -> Failure {
    Failure {
        exit: crate::api::exit::AUTH,
        ..Failure::other(
            "UNAUTHENTICATED",
            "the saved session has expired: run `tms login`",
        )
    }
}
