//! The HTTP transport between the worker and a Dagger engine session.
//!
//! The SDK's own client (`DefaultGraphQLClient`) is not used because its failure reporting is too
//! coarse for the executor and one of its answers crashes the SDK: a `{"data": null}` without
//! `errors` is passed on as `Ok(None)`, which `Selection::execute` unwraps (a panic). This client
//! implements the SDK's `GraphQLClient` trait so every SDK call goes through it, and sorts each
//! answer into an [`EngineError`] whose kind the executor maps:
//!
//! - transport-level ([`EngineError::is_transport`]): the engine could not be asked or did not
//!   answer properly (connection refused or dropped, HTTP 5xx, 401, a body that is not GraphQL
//!   JSON, `data: null` without errors). Handed to the SDK as `GraphQLError::HttpError`; the
//!   executor treats these as transient: the session may be gone.
//! - [`EngineError::Graphql`]: the engine answered with GraphQL `errors` (the SDK's
//!   `GraphQLError::DomainError`); the `EXEC_ERROR` extension is decoded leniently (engines have
//!   sent `stdout`/`stderr` or `combinedOutput`).
//!
//! Nothing here logs or returns the document or the request body: documents carry secret
//! plaintext (`setSecret`).

use std::time::Duration;

use async_trait::async_trait;
use dagger_sdk::core::gql_client::{GraphQLErrorMessage, GraphQlExtension};
use dagger_sdk::core::graphql_client::{GraphQLClient, GraphQLError};
use serde_json::{Value, json};
use tracing::Instrument;

/// Why one request to the engine did not produce `data`. Transport failures keep reqwest's
/// error as their source ("connection refused", "connection closed before message completed").
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("cannot build the engine HTTP client")]
    Client(#[source] reqwest::Error),
    #[error("cannot connect to the engine")]
    Connect(#[source] reqwest::Error),
    #[error("the engine did not answer in time")]
    Timeout(#[source] reqwest::Error),
    #[error("the connection to the engine failed")]
    Connection(#[source] reqwest::Error),
    #[error("the engine rejected the session token (HTTP {0})")]
    Rejected(u16),
    #[error("the engine answered HTTP {0}")]
    Server(u16),
    #[error("the engine answered HTTP {status} with a body that is not GraphQL JSON")]
    Decode {
        status: u16,
        #[source]
        source: serde_json::Error,
    },
    #[error("the engine answered HTTP {0} without GraphQL errors")]
    Status(u16),
    #[error("the engine answered without data (`{{\"data\": null}}` and no errors)")]
    NoData,
    /// The engine answered with GraphQL errors; `message` is the first one's.
    #[error("{message}")]
    Graphql {
        message: String,
        fields: Vec<GraphQLErrorMessage>,
    },
}

impl EngineError {
    fn transport(e: reqwest::Error) -> Self {
        if e.is_connect() {
            Self::Connect(e)
        } else if e.is_timeout() {
            Self::Timeout(e)
        } else {
            Self::Connection(e)
        }
    }
}

/// The SDK's error for an answer: GraphQL errors stay domain errors, anything else is an HTTP
/// error carrying the whole cause chain (the SDK only keeps a string).
impl From<EngineError> for GraphQLError {
    fn from(e: EngineError) -> Self {
        match e {
            EngineError::Graphql { message, fields } => {
                GraphQLError::DomainError { message, fields }
            }
            other => GraphQLError::HttpError(tms_core::error::report(&other)),
        }
    }
}

/// How long establishing a TCP connection to the engine may take. Requests themselves have no
/// deadline: an exec lasts as long as the step, and the runner's timeout drops the future.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EngineClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl EngineClient {
    pub fn new(port: u16, token: &str) -> Result<Self, EngineError> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A dead engine host must not leave a request waiting forever on a silent socket.
            .tcp_keepalive(Duration::from_secs(30))
            // The session endpoint is loopback; a proxy from the environment must not intercept it.
            .no_proxy()
            .build()
            .map_err(EngineError::Client)?;
        Ok(Self {
            http,
            url: format!("http://127.0.0.1:{port}/query"),
            token: token.to_string(),
        })
    }

    /// Sends one document and returns its `data`, or the error sorted as described above.
    pub async fn post(&self, document: &str) -> Result<Value, EngineError> {
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.token, None::<&str>)
            .json(&json!({"query": document, "variables": null}))
            .send()
            .await
            .map_err(EngineError::transport)?;
        let status = resp.status();
        let body = resp.bytes().await.map_err(EngineError::transport)?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(EngineError::Rejected(status.as_u16()));
        }
        if status.is_server_error() {
            return Err(EngineError::Server(status.as_u16()));
        }
        let json =
            serde_json::from_slice::<Value>(&body).map_err(|source| EngineError::Decode {
                status: status.as_u16(),
                source,
            })?;
        if let Some(errors) = json.get("errors").and_then(Value::as_array)
            && !errors.is_empty()
        {
            let fields: Vec<GraphQLErrorMessage> = errors.iter().map(error_message).collect();
            return Err(EngineError::Graphql {
                message: fields[0].message.clone(),
                fields,
            });
        }
        if !status.is_success() {
            return Err(EngineError::Status(status.as_u16()));
        }
        match json.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(EngineError::NoData),
        }
    }
}

#[async_trait]
impl GraphQLClient for EngineClient {
    async fn query(&self, query: &str) -> Result<Option<Value>, GraphQLError> {
        // One span per engine round trip, under the step attempt's `executor.run`.
        let span = tracing::info_span!("dagger.query", otel.name = "dagger.query");
        // Never `Ok(None)`: the SDK unwraps it.
        self.post(query)
            .instrument(span)
            .await
            .map(Some)
            .map_err(GraphQLError::from)
    }
}

/// One GraphQL error, decoded without failing on shapes the SDK's strict types reject.
fn error_message(v: &Value) -> GraphQLErrorMessage {
    let message = v
        .get("message")
        .and_then(Value::as_str)
        .unwrap_or("engine error without a message")
        .to_string();
    let ext = v.get("extensions");
    let extensions = match ext.and_then(|e| e.get("_type")).and_then(Value::as_str) {
        Some("EXEC_ERROR") => {
            let ext = ext.expect("checked above");
            let text = |k: &str| ext.get(k).and_then(Value::as_str).map(str::to_string);
            let (stdout, stderr) = match (text("stdout"), text("stderr")) {
                (None, None) => (text("combinedOutput").unwrap_or_default(), String::new()),
                (out, err) => (out.unwrap_or_default(), err.unwrap_or_default()),
            };
            Some(GraphQlExtension::ExecError {
                cmd: ext
                    .get("cmd")
                    .and_then(Value::as_array)
                    .map(|a| {
                        a.iter()
                            .filter_map(|s| s.as_str().map(str::to_string))
                            .collect()
                    })
                    .unwrap_or_default(),
                exit_code: ext
                    .get("exitCode")
                    .and_then(Value::as_i64)
                    .and_then(|c| i32::try_from(c).ok())
                    .unwrap_or(-1),
                stdout,
                stderr,
            })
        }
        Some(_) => Some(GraphQlExtension::Other),
        None => None,
    };
    GraphQLErrorMessage {
        message,
        locations: None,
        extensions,
        path: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exec_errors_are_decoded_in_both_engine_shapes() {
        let old = error_message(&json!({"message": "exit 3", "extensions": {
            "_type": "EXEC_ERROR", "cmd": ["sh"], "exitCode": 3, "stdout": "o", "stderr": "e"}}));
        assert!(matches!(
            old.extensions,
            Some(GraphQlExtension::ExecError { exit_code: 3, ref stdout, ref stderr, .. })
                if stdout == "o" && stderr == "e"
        ));
        let new = error_message(&json!({"message": "exit 4", "extensions": {
            "_type": "EXEC_ERROR", "exitCode": 4, "combinedOutput": "both"}}));
        assert!(matches!(
            new.extensions,
            Some(GraphQlExtension::ExecError { exit_code: 4, ref stdout, ref stderr, ref cmd })
                if stdout == "both" && stderr.is_empty() && cmd.is_empty()
        ));
        let other = error_message(&json!({"message": "boom", "extensions": {"_type": "X"}}));
        assert!(matches!(other.extensions, Some(GraphQlExtension::Other)));
        assert_eq!(other.message, "boom");
    }
}
