//! Finding a Dagger engine and opening a session with it.
//!
//! Where the engine is comes from the environment, in the SDK's order of preference, except that
//! the worker never downloads a CLI (the SDK would, and a network error there is fatal; an
//! air-gapped or locked-down host must not depend on it):
//!
//! 1. `DAGGER_SESSION_PORT` + `DAGGER_SESSION_TOKEN`: a session someone else owns, typically
//!    `dagger run tms-worker`. The worker only talks to it.
//! 2. `_EXPERIMENTAL_DAGGER_CLI_BIN`: a `dagger` binary the worker starts `dagger session` with.
//! 3. `dagger` on `PATH`: the same.
//!
//! For 2 and 3 the session lives as long as the `dagger session` child: it ends when the child's
//! stdin closes, which happens when the [`Session`] is dropped or the worker dies (even by
//! SIGKILL), so no session outlives its worker.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use dagger_sdk::core::cli_session::{CliSession, DaggerSessionProc};
use dagger_sdk::core::logger::Logger;
use dagger_sdk::{Query, Selection};

use super::client::{EngineClient, EngineError};

/// The environment names an engine in a way that cannot work.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("DAGGER_SESSION_PORT must be a TCP port number, not `{0}`")]
    BadPort(String),
    #[error("{set} is set but {missing} is not: set both (as `dagger run` does) or neither")]
    HalfSet {
        set: &'static str,
        missing: &'static str,
    },
    #[error("_EXPERIMENTAL_DAGGER_CLI_BIN points to {}, which is not an executable file", .0.display())]
    NotExecutable(PathBuf),
}

/// Why a session could not be opened (or used), with its cause.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// `dagger session` did not start; the SDK reports with `eyre`, kept here as text.
    #[error("`{} session` failed: {detail}", path.display())]
    Cli { path: PathBuf, detail: String },
    #[error("`dagger session` reported port {0}")]
    BadPort(u64),
    #[error(transparent)]
    Client(#[from] EngineError),
    #[error("the engine did not answer its version query")]
    Version(#[source] dagger_sdk::errors::DaggerError),
    #[error("no answer within {0}s")]
    Timeout(u64),
    /// Wraps any of the above with where the engine was looked for.
    #[error("{via} is not reachable")]
    Unreachable {
        via: String,
        #[source]
        cause: Box<SessionError>,
    },
    /// Reconnection is spaced out after a failure; `last` is that failure.
    #[error("next attempt to reach the engine in {wait_secs:.1}s")]
    Backoff {
        wait_secs: f64,
        #[source]
        last: Arc<SessionError>,
    },
    #[error("opening the session failed")]
    Task(#[source] tokio::task::JoinError),
    /// One failure handed to several callers.
    #[error(transparent)]
    Shared(Arc<SessionError>),
}

/// Where the engine is.
#[derive(Clone)]
pub enum EngineSource {
    /// An existing session (`dagger run`).
    Session { port: u16, token: String },
    /// A CLI to start `dagger session` with; `via` names where it was found.
    Cli { path: PathBuf, via: &'static str },
}

impl std::fmt::Debug for EngineSource {
    // Hand-written so the session token never reaches a log line through `{:?}`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.describe())
    }
}

impl EngineSource {
    /// Reads the process environment; `Err` for a half-set or malformed configuration.
    pub fn from_env() -> Result<Option<Self>, ConfigError> {
        Self::detect(|k| std::env::var_os(k))
    }

    pub fn detect(get: impl Fn(&str) -> Option<OsString>) -> Result<Option<Self>, ConfigError> {
        let text = |k: &str| get(k).map(|v| v.to_string_lossy().trim().to_string());
        match (text("DAGGER_SESSION_PORT"), text("DAGGER_SESSION_TOKEN")) {
            (Some(port), Some(token)) if !token.is_empty() => {
                let port = port
                    .parse::<u16>()
                    .ok()
                    .filter(|p| *p != 0)
                    .ok_or(ConfigError::BadPort(port))?;
                return Ok(Some(Self::Session { port, token }));
            }
            (Some(_), _) => {
                return Err(ConfigError::HalfSet {
                    set: "DAGGER_SESSION_PORT",
                    missing: "DAGGER_SESSION_TOKEN",
                });
            }
            (None, Some(_)) => {
                return Err(ConfigError::HalfSet {
                    set: "DAGGER_SESSION_TOKEN",
                    missing: "DAGGER_SESSION_PORT",
                });
            }
            (None, None) => {}
        }
        if let Some(bin) = get("_EXPERIMENTAL_DAGGER_CLI_BIN").filter(|b| !b.is_empty()) {
            let path = PathBuf::from(bin);
            if !is_executable(&path) {
                return Err(ConfigError::NotExecutable(path));
            }
            return Ok(Some(Self::Cli {
                path,
                via: "_EXPERIMENTAL_DAGGER_CLI_BIN",
            }));
        }
        if let Some(path) = get("PATH").and_then(|p| find_in_path(&p, "dagger")) {
            return Ok(Some(Self::Cli { path, via: "PATH" }));
        }
        Ok(None)
    }

    /// For messages and logs: never includes the token.
    pub fn describe(&self) -> String {
        match self {
            Self::Session { port, .. } => {
                format!("the session on 127.0.0.1:{port} (DAGGER_SESSION_PORT)")
            }
            Self::Cli { path, via } => {
                format!("`{} session` (found via {via})", path.display())
            }
        }
    }
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

fn find_in_path(path: &OsString, name: &str) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

/// The `dagger session` child's output, at debug level: it is the engine's own chatter (Dagger
/// scrubs secret values from it).
struct TracingLogger;

impl Logger for TracingLogger {
    fn stdout(&self, output: &str) -> eyre::Result<()> {
        tracing::debug!(target: "tms_worker::dagger::cli", "{output}");
        Ok(())
    }
    fn stderr(&self, output: &str) -> eyre::Result<()> {
        tracing::debug!(target: "tms_worker::dagger::cli", "{output}");
        Ok(())
    }
}

/// One engine session. Steps share it; it is replaced when it is lost.
pub struct Session {
    /// Distinguishes sessions so that a step failing on an old one does not drop a newer one.
    pub generation: u64,
    pub client: Arc<EngineClient>,
    /// The SDK's root object, wired to [`EngineClient`].
    pub query: Query,
}

impl Session {
    /// Opens a session and checks that the engine answers (`query{version}`).
    pub async fn open(
        source: &EngineSource,
        generation: u64,
    ) -> Result<(Self, String), SessionError> {
        let (client, proc): (EngineClient, Option<Arc<DaggerSessionProc>>) = match source {
            EngineSource::Session { port, token } => (EngineClient::new(*port, token)?, None),
            EngineSource::Cli { path, .. } => {
                let cfg = dagger_sdk::Config::builder()
                    .logger(Arc::new(TracingLogger))
                    .build();
                let (params, proc) =
                    CliSession::new()
                        .connect(&cfg, path)
                        .await
                        .map_err(|e| SessionError::Cli {
                            path: path.clone(),
                            detail: format!("{e:#}"),
                        })?;
                let port =
                    u16::try_from(params.port).map_err(|_| SessionError::BadPort(params.port))?;
                (
                    EngineClient::new(port, &params.session_token)?,
                    Some(Arc::new(proc)),
                )
            }
        };
        let client = Arc::new(client);
        let query = Query {
            proc,
            selection: Selection::default(),
            graphql_client: client.clone(),
        };
        let version = query.version().await.map_err(SessionError::Version)?;
        Ok((
            Self {
                generation,
                client,
                query,
            },
            version,
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn detect(vars: &[(&str, &str)]) -> Result<Option<EngineSource>, String> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        EngineSource::detect(|k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone()))
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_environment_decides_where_the_engine_is() {
        assert!(matches!(
            detect(&[
                ("DAGGER_SESSION_PORT", "4242"),
                ("DAGGER_SESSION_TOKEN", "t")
            ]),
            Ok(Some(EngineSource::Session { port: 4242, .. }))
        ));
        let half = detect(&[("DAGGER_SESSION_PORT", "4242")]).unwrap_err();
        assert!(half.contains("DAGGER_SESSION_TOKEN is not"), "{half}");
        let bad = detect(&[
            ("DAGGER_SESSION_PORT", "http"),
            ("DAGGER_SESSION_TOKEN", "t"),
        ])
        .unwrap_err();
        assert!(bad.contains("`http`"), "{bad}");
        let missing =
            detect(&[("_EXPERIMENTAL_DAGGER_CLI_BIN", "/nonexistent/dagger")]).unwrap_err();
        assert!(missing.contains("/nonexistent/dagger"), "{missing}");
        assert!(matches!(
            detect(&[("_EXPERIMENTAL_DAGGER_CLI_BIN", "/bin/sh")]),
            Ok(Some(EngineSource::Cli {
                via: "_EXPERIMENTAL_DAGGER_CLI_BIN",
                ..
            }))
        ));
        assert!(matches!(detect(&[("PATH", "/nonexistent")]), Ok(None)));

        let dir = std::env::temp_dir().join(format!("tms-dagger-path-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let bin = dir.join("dagger");
        std::fs::write(&bin, "#!/bin/sh\n").unwrap();
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&bin, std::fs::Permissions::from_mode(0o755)).unwrap();
        let found = detect(&[("PATH", &format!("/nonexistent:{}", dir.display()))]);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(
            matches!(found, Ok(Some(EngineSource::Cli { ref path, via: "PATH" })) if *path == bin)
        );
    }

    #[test]
    fn descriptions_never_carry_the_token() {
        let s = EngineSource::Session {
            port: 1,
            token: "sekrit-token".into(),
        };
        assert!(!s.describe().contains("sekrit"));
        assert!(!format!("{s:?}").contains("sekrit"));
    }
}
