//! `tms login --sso`: single sign-on in the browser for a native app (RFC 8252). A one-shot
//! listener on 127.0.0.1, PKCE S256 and a random `state`; the api's callback redirects the
//! browser there with a one-time code, which is exchanged with the verifier at `/auth/exchange`
//! and saved like a password login's session.

use std::time::Duration;

use base64::Engine as _;
use rand::RngCore;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::net::TcpListener;

use crate::api::{Api, Failure, exit};
use crate::loopback::{self, CALLBACK_PATH, Callback};
use crate::session::Saved;

/// How long `tms login --sso` waits for the browser unless `--timeout` says otherwise.
pub const DEFAULT_TIMEOUT_SECS: u64 = 300;

/// A login's secrets: the PKCE verifier and its S256 challenge, and the `state`.
struct Pkce {
    verifier: String,
    challenge: String,
    state: String,
}

fn random_b64(bytes: usize) -> String {
    let mut b = vec![0u8; bytes];
    rand::rng().fill_bytes(&mut b);
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
}

impl Pkce {
    fn new() -> Self {
        // 32 bytes → a 43-character verifier, the RFC 7636 minimum length and 256 bits.
        let verifier = random_b64(32);
        let challenge = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(Sha256::digest(verifier.as_bytes()));
        Pkce {
            verifier,
            challenge,
            state: random_b64(24),
        }
    }
}

fn failure(code: &str, exit: i32, message: impl Into<String>) -> Failure {
    Failure {
        exit,
        ..Failure::other(code, message)
    }
}

fn unreachable(url: &str, e: reqwest::Error) -> Failure {
    Failure::other(
        "UNREACHABLE",
        format!("cannot reach the TMS api at {url}: {e}"),
    )
}

/// An api error answer (`{"errors": […]}`) as a failure, else `HTTP_<status>`.
async fn answer_failure(resp: reqwest::Response) -> Failure {
    let status = resp.status();
    match resp.json::<Value>().await {
        Ok(v) if v.get("errors").is_some() => Failure::from_response(v),
        _ => Failure::other(
            &format!("HTTP_{}", status.as_u16()),
            format!("the api answered HTTP {status}"),
        ),
    }
}

/// Signs in through the browser and saves the session; the URL goes to stderr.
pub async fn login(url: &str, open_browser: bool, timeout: Duration) -> Result<(), Failure> {
    let pkce = Pkce::new();
    let listener = TcpListener::bind(("127.0.0.1", 0))
        .await
        .map_err(|e| Failure::other("LISTEN", format!("cannot listen on 127.0.0.1: {e}")))?;
    let port = listener
        .local_addr()
        .map_err(|e| Failure::other("LISTEN", e.to_string()))?
        .port();
    let redirect_uri = format!("http://127.0.0.1:{port}{CALLBACK_PATH}");
    let mut login_url = reqwest::Url::parse(&format!("{url}/auth/login"))
        .map_err(|e| Failure::usage(format!("--url {url}: {e}")))?;
    login_url
        .query_pairs_mut()
        .append_pair("redirect_uri", &redirect_uri)
        .append_pair("code_challenge", &pkce.challenge)
        .append_pair("code_challenge_method", "S256")
        .append_pair("state", &pkce.state);
    let login_url = login_url.to_string();

    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(Duration::from_secs(60))
        .build()
        .map_err(|e| Failure::other("INTERNAL", e.to_string()))?;
    preflight(&http, url, &login_url).await?;

    if open_browser {
        eprintln!(
            "Opening your browser to sign in. If it does not open, visit this URL in a browser \
             on this machine:\n\n  {login_url}\n"
        );
        if let Err(e) = webbrowser::open(&login_url) {
            eprintln!("(could not open a browser: {e}; use the URL above)");
        }
    } else {
        eprintln!("Visit this URL in a browser on this machine to sign in:\n\n  {login_url}\n");
    }
    eprintln!(
        "Waiting up to {} s for the sign-in to finish (Ctrl-C to give up)…",
        timeout.as_secs()
    );

    let deadline = tokio::time::Instant::now() + timeout;
    let callback = loopback::wait(&listener, deadline)
        .await
        .map_err(|e| Failure::other("LISTEN", format!("waiting for the browser: {e}")))?
        .ok_or_else(|| {
            failure(
                "TIMEOUT",
                exit::OTHER,
                format!(
                    "no sign-in within {} s: run `tms login --sso` again",
                    timeout.as_secs()
                ),
            )
        })?;
    // Exactly one callback: nothing else is accepted from here on.
    drop(listener);
    finish(&http, url, &pkce, callback).await
}

/// Checks `/auth/login` answers a redirect before the user is sent there: a bad `--url`, an api
/// without single sign-on or a refusal shows here, in the terminal, rather than in a browser.
/// The pending login it starts is never finished and expires.
async fn preflight(http: &reqwest::Client, url: &str, login_url: &str) -> Result<(), Failure> {
    let resp = http
        .get(login_url)
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if resp.status().is_redirection() {
        return Ok(());
    }
    let mut f = answer_failure(resp).await;
    if f.code == "NOT_FOUND" {
        f.message = format!("single sign-on is not configured on {url} (TMS_OIDC_ISSUER)");
    }
    Err(f)
}

/// Checks the callback, exchanges its code, saves the session, and tells the browser.
async fn finish(
    http: &reqwest::Client,
    url: &str,
    pkce: &Pkce,
    callback: Callback,
) -> Result<(), Failure> {
    let outcome = redeem(http, url, pkce, &callback).await;
    match &outcome {
        Ok((email, _)) => {
            let m = format!(
                "You are signed in to TMS as {email}. You can close this window and return to \
                 the terminal."
            );
            callback.answer(true, "Signed in", &m).await;
        }
        Err(f) => {
            let m = format!(
                "{}. You can close this window; the terminal says more.",
                f.message.trim_end_matches('.')
            );
            callback.answer(false, "Sign-in failed", &m).await;
        }
    }
    let (email, path) = outcome?;
    println!(
        "Logged in to {url} as {email} (single sign-on); session saved in {}",
        path.display()
    );
    Ok(())
}

async fn redeem(
    http: &reqwest::Client,
    url: &str,
    pkce: &Pkce,
    callback: &Callback,
) -> Result<(String, std::path::PathBuf), Failure> {
    let p = &callback.params;
    if p.get("state") != Some(&pkce.state) {
        return Err(failure(
            "STATE_MISMATCH",
            exit::AUTH,
            "the browser's answer does not belong to this login (state mismatch); nothing was \
             saved: run `tms login --sso` again",
        ));
    }
    if let Some(error) = p.get("error") {
        let (code, exit) = match error.as_str() {
            "access_denied" => ("UNAUTHENTICATED", exit::AUTH),
            "temporarily_unavailable" => ("UNAVAILABLE", exit::OTHER),
            _ => ("SSO_FAILED", exit::OTHER),
        };
        let why = p
            .get("error_description")
            .map(String::as_str)
            .unwrap_or(error.as_str());
        return Err(failure(
            code,
            exit,
            format!("single sign-on refused: {why}"),
        ));
    }
    let code = p.get("code").ok_or_else(|| {
        failure(
            "SSO_FAILED",
            exit::OTHER,
            "the browser came back without a code",
        )
    })?;
    let resp = http
        .post(format!("{url}/auth/exchange"))
        .json(&json!({"code": code, "code_verifier": pkce.verifier}))
        .send()
        .await
        .map_err(|e| unreachable(url, e))?;
    if !resp.status().is_success() {
        return Err(answer_failure(resp).await);
    }
    let tokens: Value = resp
        .json()
        .await
        .map_err(|e| Failure::other("UNREACHABLE", format!("reading the api's answer: {e}")))?;
    let access = tokens["accessToken"]
        .as_str()
        .ok_or_else(|| Failure::other("INTERNAL", "the api answered no access token"))?;
    let api = Api {
        http: http.clone(),
        url: url.to_string(),
        token: access.to_string(),
    };
    let me = api.gql("{ me { email } }", json!({})).await?;
    let email = me["me"]["email"].as_str().unwrap_or_default().to_string();
    let path = Saved::from_payload(url, &email, &tokens)?.store()?;
    Ok((email, path))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pkce_values_are_fresh_and_rfc7636_shaped() {
        let (a, b) = (Pkce::new(), Pkce::new());
        assert_ne!(a.verifier, b.verifier);
        assert_ne!(a.state, b.state);
        assert_eq!(a.verifier.len(), 43);
        assert_eq!(a.challenge.len(), 43);
        let digest = Sha256::digest(a.verifier.as_bytes());
        assert_eq!(
            base64::engine::general_purpose::URL_SAFE_NO_PAD
                .decode(&a.challenge)
                .unwrap(),
            digest[..].to_vec()
        );
    }
}
