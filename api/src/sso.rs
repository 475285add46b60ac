//! Single sign-on HTTP endpoints: `GET /auth/login` (to the provider), `GET /auth/callback`
//! (back from it) and `POST /auth/exchange` (one-time code → token pair, for browser logins).

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tms_core::Error;
use tms_core::auth::service::TokenPair;
use tms_core::auth::sso::{CallbackParams, LOGIN_TTL_SECONDS, SsoService};

use crate::http::{AppState, request_meta};

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/auth/login", web::get().to(login))
        .route("/auth/callback", web::get().to(callback))
        .route("/auth/exchange", web::post().to(exchange));
}

/// The cookie binding a pending login to the browser that started it.
pub fn cookie_name(secure: bool) -> &'static str {
    if secure { "__Host-tms_sso" } else { "tms_sso" }
}

fn login_cookie(sso: &SsoService, value: String, max_age: i64) -> Cookie<'static> {
    cookie_for(sso.settings().secure_cookies(), value, max_age)
}

/// HttpOnly, SameSite=Lax, whole site; on https also `Secure` with the `__Host-` prefix (which
/// browsers only accept with `Secure`, `Path=/` and no `Domain`).
fn cookie_for(secure: bool, value: String, max_age: i64) -> Cookie<'static> {
    Cookie::build(cookie_name(secure), value)
        .http_only(true)
        .same_site(SameSite::Lax)
        .path("/")
        .secure(secure)
        .max_age(CookieDuration::seconds(max_age))
        .finish()
}

/// `{"errors":[{"message","extensions":{"code"}}]}` with the matching status; the cause of an
/// internal failure goes to the log only.
pub(crate) fn error_response(e: &Error) -> HttpResponse {
    let code = e.code().as_str();
    let status = match code {
        "UNAUTHENTICATED" => StatusCode::UNAUTHORIZED,
        "FORBIDDEN" => StatusCode::FORBIDDEN,
        "VALIDATION" => StatusCode::BAD_REQUEST,
        "NOT_FOUND" => StatusCode::NOT_FOUND,
        "UNAVAILABLE" => StatusCode::SERVICE_UNAVAILABLE,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    };
    if matches!(e, Error::Internal(_) | Error::Unavailable(_)) {
        tracing::error!(code, error = %e, "http request failed");
    }
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"errors": [{"message": e.public_message(), "extensions": {"code": code}}]}))
}

/// What every SSO endpoint answers when `TMS_OIDC_ISSUER` is not set.
fn not_configured() -> HttpResponse {
    error_response(&Error::NotFound("single sign-on configuration"))
}

fn token_json(t: &TokenPair) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({
            "accessToken": t.access_token,
            "refreshToken": t.refresh_token,
            "expiresIn": t.expires_in,
        }))
}

async fn login(state: web::Data<AppState>) -> HttpResponse {
    let Some(sso) = state.sso.as_ref() else {
        return not_configured();
    };
    match sso.begin().await {
        Ok(start) => HttpResponse::Found()
            .insert_header((header::LOCATION, start.redirect))
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .cookie(login_cookie(sso, start.binding, LOGIN_TTL_SECONDS))
            .finish(),
        Err(e) => error_response(&e),
    }
}

async fn callback(state: web::Data<AppState>, http: HttpRequest) -> HttpResponse {
    let Some(sso) = state.sso.as_ref() else {
        return not_configured();
    };
    let secure = sso.settings().secure_cookies();
    // A malformed query is treated as an empty one: refused (and audited) as missing state.
    let params = web::Query::<CallbackParams>::from_query(http.query_string())
        .map(|q| q.into_inner())
        .unwrap_or_default();
    let binding = http
        .cookie(cookie_name(secure))
        .map(|c| c.value().to_string());
    let meta = request_meta(&http);
    // The login cookie is spent whatever happens.
    let clear = login_cookie(sso, String::new(), 0);
    let user = match sso.finish(params, binding, &meta).await {
        Ok(u) => u,
        Err(e) => {
            let mut resp = error_response(&e);
            let _ = resp.add_cookie(&clear);
            return resp;
        }
    };
    let wants_json = http
        .headers()
        .get(header::ACCEPT)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|a| a.contains("application/json"));
    let post_login = sso.settings().post_login_url.clone();
    let mut resp = match post_login {
        Some(mut url) if !wants_json => match sso.create_handoff(user.id).await {
            Ok(code) => {
                url.query_pairs_mut().append_pair("code", &code);
                HttpResponse::Found()
                    .insert_header((header::LOCATION, url.to_string()))
                    .insert_header((header::CACHE_CONTROL, "no-store"))
                    // The landing page's URL holds the one-time code: keep it out of Referer.
                    .insert_header((header::REFERRER_POLICY, "no-referrer"))
                    .finish()
            }
            Err(e) => error_response(&e),
        },
        _ => match sso.tokens(&user, &meta).await {
            Ok(t) => token_json(&t),
            Err(e) => error_response(&e),
        },
    };
    let _ = resp.add_cookie(&clear);
    resp
}

#[derive(serde::Deserialize)]
struct ExchangeBody {
    code: String,
}

async fn exchange(state: web::Data<AppState>, http: HttpRequest, body: web::Bytes) -> HttpResponse {
    let Some(sso) = state.sso.as_ref() else {
        return not_configured();
    };
    let Ok(ExchangeBody { code }) = serde_json::from_slice::<ExchangeBody>(&body) else {
        return error_response(&Error::field("code", "expected JSON {\"code\": \"…\"}"));
    };
    match sso.exchange(&code, &request_meta(&http)).await {
        Ok(t) => token_json(&t),
        Err(e) => error_response(&e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn https_cookies_are_secure_and_host_prefixed() {
        let c = cookie_for(true, "v".into(), 600).to_string();
        assert!(c.starts_with("__Host-tms_sso=v"), "{c}");
        for attr in [
            "HttpOnly",
            "SameSite=Lax",
            "Secure",
            "Path=/",
            "Max-Age=600",
        ] {
            assert!(c.contains(attr), "{attr} missing: {c}");
        }
        assert!(!c.contains("Domain"), "{c}");
        let c = cookie_for(false, "v".into(), 600).to_string();
        assert!(c.starts_with("tms_sso=v") && !c.contains("Secure"), "{c}");
    }
}
