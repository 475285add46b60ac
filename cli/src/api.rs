//! The HTTP GraphQL client every command shares, and the mapping of api errors to the exit
//! codes scripts rely on.

use std::fmt;

use serde_json::{Value, json};

/// Exit codes of `tms import …` (documented in `--help` and docs/migration.md).
pub mod exit {
    /// Success (`verify`: no differences).
    pub const OK: i32 = 0;
    /// `verify` found differences.
    pub const DIFFERENCES: i32 = 1;
    /// Usage error (clap's own code; also a missing token).
    pub const USAGE: i32 = 2;
    /// The source or another input was refused (`VALIDATION`, `BAD_USER_INPUT`).
    pub const REFUSED: i32 = 3;
    /// Not signed in or not allowed (`UNAUTHENTICATED`, `FORBIDDEN`).
    pub const AUTH: i32 = 4;
    /// Refused because of the current state (`CONFLICT`, e.g. a rollback).
    pub const CONFLICT: i32 = 5;
    /// No such batch (`NOT_FOUND`).
    pub const NOT_FOUND: i32 = 6;
    /// The api is unreachable, or any other error.
    pub const OTHER: i32 = 7;

    /// The exit code for an error's `extensions.code`.
    pub fn for_code(code: &str) -> i32 {
        match code {
            "VALIDATION" | "BAD_USER_INPUT" => REFUSED,
            "UNAUTHENTICATED" | "FORBIDDEN" => AUTH,
            "CONFLICT" => CONFLICT,
            "NOT_FOUND" => NOT_FOUND,
            _ => OTHER,
        }
    }
}

/// A failed request: the api's first error (code, message, validation details) or a transport
/// failure, with the exit code it maps to.
#[derive(Debug)]
pub struct Failure {
    /// `extensions.code`; `UNREACHABLE` or `HTTP_<status>` when the api did not answer GraphQL.
    pub code: String,
    pub message: String,
    /// `extensions.field`: the input field at fault, e.g. `input.steps[1].dependsOn`.
    pub field: Option<String>,
    /// `extensions.details` of a `VALIDATION` error: `(field, message)` pairs.
    pub details: Vec<(String, String)>,
    /// The whole response, when there was one (printed by `--output json`).
    pub response: Option<Box<Value>>,
    pub exit: i32,
}

impl Failure {
    pub fn other(code: &str, message: impl Into<String>) -> Self {
        Failure {
            code: code.into(),
            message: message.into(),
            field: None,
            details: Vec::new(),
            response: None,
            exit: exit::OTHER,
        }
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Failure {
            exit: exit::USAGE,
            ..Failure::other("USAGE", message)
        }
    }

    /// The failure of a response carrying `errors`.
    pub fn from_response(resp: Value) -> Self {
        let e = &resp["errors"][0];
        let code = e["extensions"]["code"]
            .as_str()
            .unwrap_or("INTERNAL")
            .to_string();
        let details = e["extensions"]["details"]
            .as_array()
            .map(|ds| {
                ds.iter()
                    .map(|d| {
                        (
                            d["field"].as_str().unwrap_or_default().to_string(),
                            d["message"].as_str().unwrap_or_default().to_string(),
                        )
                    })
                    .collect()
            })
            .unwrap_or_default();
        Failure {
            exit: exit::for_code(&code),
            message: e["message"].as_str().unwrap_or("request failed").into(),
            field: e["extensions"]["field"].as_str().map(str::to_string),
            code,
            details,
            response: Some(Box::new(resp)),
        }
    }
}

impl fmt::Display for Failure {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.message)?;
        match &self.field {
            Some(field) => write!(f, " (field {field})"),
            None => Ok(()),
        }
    }
}

impl std::error::Error for Failure {}

pub struct Api {
    pub http: reqwest::Client,
    pub url: String,
    pub token: String,
}

impl Api {
    /// Posts a GraphQL request; `data` on success, the first error otherwise.
    pub async fn gql(&self, query: &str, variables: Value) -> Result<Value, Failure> {
        let resp = post(&self.http, &self.url, Some(&self.token), query, variables).await?;
        if resp.get("errors").is_some() {
            return Err(Failure::from_response(resp));
        }
        Ok(resp["data"].clone())
    }

    /// A step's stored log from `offset` (`GET /runs/{id}/steps/{name}/log`), of the latest
    /// attempt; the offset is a byte offset the previous answer ended at.
    pub async fn step_log(&self, run: &str, step: &str, offset: usize) -> Result<StepLog, Failure> {
        let url = format!("{}/runs/{run}/steps/{step}/log?offset={offset}", self.url);
        let resp = self
            .http
            .get(&url)
            .bearer_auth(&self.token)
            .send()
            .await
            .map_err(|e| {
                Failure::other(
                    "UNREACHABLE",
                    format!("cannot reach the TMS api at {}: {e}", self.url),
                )
            })?;
        let status = resp.status();
        let header = |name: &str| {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let (attempt, complete) = (header("x-tms-log-attempt"), header("x-tms-log-complete"));
        let body = resp
            .text()
            .await
            .map_err(|e| Failure::other("UNREACHABLE", format!("reading the api's answer: {e}")))?;
        if !status.is_success() {
            return Err(match serde_json::from_str::<Value>(&body) {
                Ok(v) if v.get("errors").is_some() => Failure::from_response(v),
                _ => Failure::other(
                    &format!("HTTP_{}", status.as_u16()),
                    format!("the api answered HTTP {status}"),
                ),
            });
        }
        Ok(StepLog {
            attempt: attempt.and_then(|a| a.parse().ok()).unwrap_or(0),
            complete: complete.as_deref() == Some("true"),
            text: body,
        })
    }
}

/// What `Api::step_log` read.
pub struct StepLog {
    pub attempt: i32,
    /// From the requested offset to the end of what is stored.
    pub text: String,
    pub complete: bool,
}

async fn post(
    http: &reqwest::Client,
    url: &str,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> Result<Value, Failure> {
    let mut req = http
        .post(format!("{url}/graphql"))
        .json(&json!({"query": query, "variables": variables}));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    let resp = req.send().await.map_err(|e| {
        Failure::other(
            "UNREACHABLE",
            format!("cannot reach the TMS api at {url}: {e}"),
        )
    })?;
    let status = resp.status();
    let body = resp
        .text()
        .await
        .map_err(|e| Failure::other("UNREACHABLE", format!("reading the api's answer: {e}")))?;
    match serde_json::from_str::<Value>(&body) {
        Ok(v) if v.get("data").is_some() || v.get("errors").is_some() => Ok(v),
        _ => {
            let short: String = body.chars().take(200).collect();
            Err(Failure::other(
                &format!("HTTP_{}", status.as_u16()),
                format!("the api answered HTTP {status}: {short}"),
            ))
        }
    }
}

/// Posts a request without a token (login, refresh); `data` on success.
pub async fn post_public(
    http: &reqwest::Client,
    url: &str,
    query: &str,
    variables: Value,
) -> Result<Value, Failure> {
    let resp = post(http, url, None, query, variables).await?;
    if resp.get("errors").is_some() {
        return Err(Failure::from_response(resp));
    }
    Ok(resp["data"].clone())
}

/// Exchanges an email and password for an access token.
pub async fn login(
    http: &reqwest::Client,
    url: &str,
    email: &str,
    password: &str,
) -> Result<String, Failure> {
    let resp = post(
        http,
        url,
        None,
        "mutation($e: String!, $p: String!) { login(email: $e, password: $p) { accessToken } }",
        json!({"e": email, "p": password}),
    )
    .await?;
    if resp.get("errors").is_some() {
        return Err(Failure::from_response(resp));
    }
    resp["data"]["login"]["accessToken"]
        .as_str()
        .map(str::to_string)
        .ok_or_else(|| Failure::other("INTERNAL", "login answered no access token"))
}
