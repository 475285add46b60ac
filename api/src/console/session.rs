//! The console's session endpoints. The browser never holds a refresh token in script: it
//! lives in an HttpOnly, SameSite=Strict cookie (`Secure` and `__Host-` on https) that only
//! these endpoints read; the access token they return stays in the page's memory.
//!
//! - `POST /ui/session` `{email, password}`: the same sign-in as the `login` mutation (same
//!   audit, same rate limiting), sets the cookie, answers `{accessToken, expiresIn}`.
//! - `POST /ui/session/sso` `{code}`: redeems an SSO one-time code (`/auth/callback` redirects
//!   to `TMS_OIDC_POST_LOGIN_URL`, e.g. `https://tms.example.com/ui/login`, with it).
//! - `POST /ui/session/refresh`: rotates the cookie's refresh token, answers a new access token.
//! - `POST /ui/session/logout`: ends the session and clears the cookie.
//!
//! Refusals (wrong password, `RATE_LIMITED`, no session) answer HTTP 200 with GraphQL-style
//! `{"errors": [{"message", "extensions": {"code"}}]}`, as `POST /graphql` does: they are
//! ordinary outcomes for a signed-out page, not transport failures (a browser logs every 4xx
//! of a script's request as an error). A failed CSRF check is a 403, an outage a 5xx.
//!
//! Cross-site request forgery: every one requires the `X-TMS-Console: 1` header (which a
//! cross-origin page can only send after a CORS preflight this api never grants) and, when the
//! browser sends an `Origin`, that it is this api's own.

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::json;
use tms_core::Error;
use tms_core::auth::service::TokenPair;

use crate::console::{CSP, secure};
use crate::http::{AppState, request_meta};

/// The header every session request must carry.
pub const CSRF_HEADER: &str = "x-tms-console";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/ui/session", web::post().to(login))
        .route("/ui/session/sso", web::post().to(sso))
        .route("/ui/session/refresh", web::post().to(refresh))
        .route("/ui/session/logout", web::post().to(logout));
}

/// The cookie's name: `__Host-` prefixed on https (browsers then insist on `Secure`, `Path=/`
/// and no `Domain`, so no sibling subdomain can plant one).
pub fn cookie_name(secure: bool) -> &'static str {
    if secure {
        "__Host-tms_console"
    } else {
        "tms_console"
    }
}

fn is_https(req: &HttpRequest) -> bool {
    req.connection_info().scheme() == "https"
}

/// The refresh cookie: HttpOnly, SameSite=Strict, whole site, `Secure` on https.
pub fn session_cookie(secure: bool, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(cookie_name(secure), value)
        .http_only(true)
        .same_site(SameSite::Strict)
        .path("/")
        .secure(secure)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// Whether a request may touch the session: it carries the console's header and, when a
/// browser says where it comes from, comes from this api's own origin.
pub fn csrf_ok(req: &HttpRequest) -> bool {
    let marked = req
        .headers()
        .get(CSRF_HEADER)
        .is_some_and(|v| v.as_bytes() == b"1");
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .map(|v| v.to_str().unwrap_or("\u{0}"));
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok());
    marked && crate::origin::upgrade_allowed(origin, host, &[])
}

/// `{"errors":[{"message","extensions":{"code"}}]}`, as GraphQL errors look.
fn error_response(e: &Error) -> HttpResponse {
    let code = e.code().as_str();
    let status = match code {
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        "INTERNAL" => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::OK,
    };
    if matches!(e, Error::Internal(_) | Error::Unavailable(_)) {
        tracing::error!(code, error = %e, "console session request failed");
    }
    let mut ext = json!({ "code": code });
    let mut b = secure(HttpResponse::build(status), CSP);
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Error::RateLimited {
        retry_after_seconds,
    } = e
    {
        ext["retryAfterSeconds"] = json!(retry_after_seconds);
        b.insert_header((header::RETRY_AFTER, retry_after_seconds.to_string()));
    }
    b.json(json!({"errors": [{"message": e.public_message(), "extensions": ext}]}))
}

fn forbidden() -> HttpResponse {
    error_response(&Error::Forbidden(
        "console session requests need the X-TMS-Console header and this origin".into(),
    ))
}

/// The access token for the page, the refresh token into the cookie.
fn issued(state: &AppState, req: &HttpRequest, pair: TokenPair) -> HttpResponse {
    let mut b = secure(HttpResponse::Ok(), CSP);
    b.insert_header((header::CACHE_CONTROL, "no-store"));
    if let Some(refresh) = pair.refresh_token {
        let max_age = state
            .services
            .auth
            .session_config()
            .refresh_absolute_seconds;
        b.cookie(session_cookie(is_https(req), refresh, max_age));
    }
    b.json(json!({"accessToken": pair.access_token, "expiresIn": pair.expires_in}))
}

fn presented(req: &HttpRequest) -> Option<String> {
    req.cookie(cookie_name(is_https(req)))
        .map(|c| c.value().to_string())
        .filter(|v| !v.is_empty())
}

#[derive(Deserialize)]
struct Credentials {
    email: String,
    password: String,
}

async fn login(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !csrf_ok(&req) {
        return forbidden();
    }
    let Ok(c) = serde_json::from_slice::<Credentials>(&body) else {
        return error_response(&Error::field("body", "expected JSON {email, password}"));
    };
    let meta = request_meta(&req);
    match state
        .services
        .auth
        .login(&c.email, &c.password, &meta)
        .await
    {
        Ok(pair) => issued(&state, &req, pair),
        Err(e) => error_response(&e),
    }
}

#[derive(Deserialize)]
struct Handoff {
    code: String,
}

async fn sso(state: web::Data<AppState>, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if !csrf_ok(&req) {
        return forbidden();
    }
    let Some(sso) = state.sso.as_ref() else {
        return error_response(&Error::NotFound("single sign-on configuration"));
    };
    let Ok(Handoff { code }) = serde_json::from_slice::<Handoff>(&body) else {
        return error_response(&Error::field("code", "expected JSON {\"code\": \"…\"}"));
    };
    match sso.exchange(&code, &request_meta(&req)).await {
        Ok(pair) => issued(&state, &req, pair),
        Err(e) => error_response(&e),
    }
}

/// A failed refresh leaves the cookie alone: another tab may just have rotated it, and
/// clearing it here would end that tab's fresh session too.
async fn refresh(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !csrf_ok(&req) {
        return forbidden();
    }
    let Some(token) = presented(&req) else {
        return error_response(&Error::Unauthenticated("no console session"));
    };
    match state
        .services
        .auth
        .refresh(&token, &request_meta(&req))
        .await
    {
        Ok(pair) => issued(&state, &req, pair),
        Err(e) => error_response(&e),
    }
}

/// Ends the session (its access tokens and subscriptions too) and clears the cookie; a cookie
/// of no live session is cleared all the same.
async fn logout(state: web::Data<AppState>, req: HttpRequest) -> HttpResponse {
    if !csrf_ok(&req) {
        return forbidden();
    }
    let https = is_https(&req);
    if let Some(token) = presented(&req) {
        match state
            .services
            .auth
            .logout(&token, &request_meta(&req))
            .await
        {
            Ok(_) | Err(Error::Unauthenticated(_)) => {}
            Err(e) => return error_response(&e),
        }
    }
    secure(HttpResponse::Ok(), CSP)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .cookie(session_cookie(https, String::new(), 0))
        .json(json!({"ok": true}))
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::TestRequest;

    #[test]
    fn the_cookie_is_http_only_strict_and_host_prefixed_on_https() {
        let c = session_cookie(true, "v".into(), 600).to_string();
        assert!(c.starts_with("__Host-tms_console=v"), "{c}");
        for attr in [
            "HttpOnly",
            "SameSite=Strict",
            "Secure",
            "Path=/",
            "Max-Age=600",
        ] {
            assert!(c.contains(attr), "{attr} missing: {c}");
        }
        let c = session_cookie(false, "v".into(), 600).to_string();
        assert!(
            c.starts_with("tms_console=v") && !c.contains("Secure"),
            "{c}"
        );
        assert!(
            c.contains("SameSite=Strict") && c.contains("HttpOnly"),
            "{c}"
        );
    }

    #[test]
    fn session_requests_need_the_header_and_this_origin() {
        let req = |hdrs: &[(&str, &str)]| {
            let mut r = TestRequest::post().insert_header(("host", "127.0.0.1:8080"));
            for h in hdrs {
                r = r.insert_header(*h);
            }
            r.to_http_request()
        };
        assert!(csrf_ok(&req(&[("x-tms-console", "1")])));
        assert!(csrf_ok(&req(&[
            ("x-tms-console", "1"),
            ("origin", "http://127.0.0.1:8080")
        ])));
        assert!(!csrf_ok(&req(&[("origin", "http://127.0.0.1:8080")])));
        assert!(!csrf_ok(&req(&[
            ("x-tms-console", "1"),
            ("origin", "http://evil.test")
        ])));
        assert!(!csrf_ok(&req(&[
            ("x-tms-console", "1"),
            ("origin", "null")
        ])));
    }
}
