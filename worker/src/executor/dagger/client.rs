//! The HTTP transport between the worker and a Dagger engine session.
//!
//! The SDK's own client (`DefaultGraphQLClient`) is not used because its failure reporting is too
//! coarse for the executor and one of its answers crashes the SDK: a `{"data": null}` without
//! `errors` is passed on as `Ok(None)`, which `Selection::execute` unwraps (a panic). This client
//! implements the SDK's `GraphQLClient` trait so every SDK call goes through it, and sorts each
//! answer into exactly two kinds the executor maps differently:
//!
//! - `GraphQLError::HttpError`: the engine could not be asked or did not answer properly
//!   (connection refused or dropped, HTTP 5xx, 401, a body that is not GraphQL JSON, `data: null`
//!   without errors). The executor treats these as transient: the session may be gone.
//! - `GraphQLError::DomainError`: the engine answered with GraphQL `errors`; the `EXEC_ERROR`
//!   extension is decoded leniently (engines have sent `stdout`/`stderr` or `combinedOutput`).
//!
//! Nothing here logs or returns the document or the request body: documents carry secret
//! plaintext (`setSecret`).

use std::time::Duration;

use async_trait::async_trait;
use dagger_sdk::core::gql_client::{GraphQLErrorMessage, GraphQlExtension};
use dagger_sdk::core::graphql_client::{GraphQLClient, GraphQLError};
use serde_json::{Value, json};

/// How long establishing a TCP connection to the engine may take. Requests themselves have no
/// deadline: an exec lasts as long as the step, and the runner's timeout drops the future.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub struct EngineClient {
    http: reqwest::Client,
    url: String,
    token: String,
}

impl EngineClient {
    pub fn new(port: u16, token: &str) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A dead engine host must not leave a request waiting forever on a silent socket.
            .tcp_keepalive(Duration::from_secs(30))
            // The session endpoint is loopback; a proxy from the environment must not intercept it.
            .no_proxy()
            .build()
            .map_err(|e| format!("cannot build the engine HTTP client: {e}"))?;
        Ok(Self {
            http,
            url: format!("http://127.0.0.1:{port}/query"),
            token: token.to_string(),
        })
    }

    /// Sends one document and returns its `data`, or the error sorted as described above.
    pub async fn post(&self, document: &str) -> Result<Value, GraphQLError> {
        let resp = self
            .http
            .post(&self.url)
            .basic_auth(&self.token, None::<&str>)
            .json(&json!({"query": document, "variables": null}))
            .send()
            .await
            .map_err(|e| GraphQLError::HttpError(describe(&e)))?;
        let status = resp.status();
        let body = resp
            .bytes()
            .await
            .map_err(|e| GraphQLError::HttpError(describe(&e)))?;
        if status == reqwest::StatusCode::UNAUTHORIZED || status == reqwest::StatusCode::FORBIDDEN {
            return Err(GraphQLError::HttpError(format!(
                "the engine rejected the session token (HTTP {})",
                status.as_u16()
            )));
        }
        if status.is_server_error() {
            return Err(GraphQLError::HttpError(format!(
                "the engine answered HTTP {}",
                status.as_u16()
            )));
        }
        let Ok(json) = serde_json::from_slice::<Value>(&body) else {
            return Err(GraphQLError::HttpError(format!(
                "the engine answered HTTP {} with a body that is not GraphQL JSON",
                status.as_u16()
            )));
        };
        if let Some(errors) = json.get("errors").and_then(Value::as_array)
            && !errors.is_empty()
        {
            let fields: Vec<GraphQLErrorMessage> = errors.iter().map(error_message).collect();
            return Err(GraphQLError::DomainError {
                message: fields[0].message.clone(),
                fields,
            });
        }
        if !status.is_success() {
            return Err(GraphQLError::HttpError(format!(
                "the engine answered HTTP {} without GraphQL errors",
                status.as_u16()
            )));
        }
        match json.get("data") {
            Some(data) if !data.is_null() => Ok(data.clone()),
            _ => Err(GraphQLError::HttpError(
                "the engine answered without data (`{\"data\": null}` and no errors)".into(),
            )),
        }
    }
}

#[async_trait]
impl GraphQLClient for EngineClient {
    async fn query(&self, query: &str) -> Result<Option<Value>, GraphQLError> {
        // Never `Ok(None)`: the SDK unwraps it.
        self.post(query).await.map(Some)
    }
}

/// A transport error with its causes ("connection refused", "connection closed before message
/// completed"), which reqwest's own `Display` leaves out.
fn describe(e: &reqwest::Error) -> String {
    let what = if e.is_connect() {
        "cannot connect to the engine"
    } else if e.is_timeout() {
        "the engine did not answer in time"
    } else {
        "the connection to the engine failed"
    };
    let mut causes = Vec::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        causes.push(s.to_string());
        source = s.source();
    }
    if causes.is_empty() {
        format!("{what}: {e}")
    } else {
        format!("{what}: {}", causes.join(": "))
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
