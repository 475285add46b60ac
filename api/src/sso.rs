//! Single sign-on HTTP endpoints: `GET /auth/login` (to the provider), `GET /auth/callback`
//! (back from it) and `POST /auth/exchange` (one-time code → token pair, for browser logins and
//! native apps, which start with a loopback `redirect_uri` and redeem with their PKCE verifier).

use actix_web::cookie::{Cookie, SameSite, time::Duration as CookieDuration};
use actix_web::http::{StatusCode, header};
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;
use tms_core::Error;
use tms_core::auth::service::TokenPair;
use tms_core::auth::sso::{CallbackParams, LOGIN_TTL_SECONDS, SsoService};
use tms_core::auth::sso_native::{LoginParams, NativeError, NativeRedirect};

use crate::http::{AppState, request_meta};

pub fn routes(cfg: &mut web::ServiceConfig) {
    // `POST /auth/exchange` is registered by `http::routes`, behind CORS like `/graphql`: a
    // front end on a listed origin exchanges its code there (no cookie is involved).
    cfg.route("/auth/login", web::get().to(login))
        .route("/auth/callback", web::get().to(callback));
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

/// `{"errors":[{"message","extensions":{"code"}}]}` with the matching status (a validation error
/// also names its `field`); the cause of an internal failure goes to the log only.
pub(crate) fn error_response(e: &Error) -> HttpResponse {
    let code = e.code().as_str();
    // The one error table decides the status (429 for RATE_LIMITED, 409 for CONFLICT, ...).
    let status =
        StatusCode::from_u16(e.code().http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if matches!(e, Error::Internal(_) | Error::Unavailable(_)) {
        tracing::error!(code, error = %e, "http request failed");
    }
    let mut extensions = json!({"code": code});
    if let Error::Validation(fields) = e
        && let Some(first) = fields.first()
    {
        extensions["field"] = json!(first.field);
    }
    HttpResponse::build(status)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"errors": [{"message": e.public_message(), "extensions": extensions}]}))
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

fn redirect(to: String) -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, to))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        // The target's URL holds the one-time code: keep it out of Referer.
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .finish()
}

async fn login(state: web::Data<AppState>, http: HttpRequest) -> HttpResponse {
    let Some(sso) = state.sso.as_ref() else {
        return not_configured();
    };
    let native = web::Query::<LoginParams>::from_query(http.query_string())
        .map_err(|_| Error::field("redirect_uri", "malformed query string"))
        .and_then(|q| NativeRedirect::from_params(&q));
    let native = match native {
        Ok(n) => n,
        Err(e) => return error_response(&e),
    };
    match sso.begin(native.as_ref()).await {
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
    let (native, outcome) = sso.finish(params, binding, &meta).await;
    if let Some(native) = native {
        // A native app's login always ends at its loopback listener, never in JSON here.
        let mut resp = match outcome {
            Ok(user) => match sso
                .create_handoff(user.id, Some(native.code_challenge.clone()))
                .await
            {
                Ok(code) => redirect(native.success_url(&code)),
                Err(e) => native_refusal(&native, &e),
            },
            Err(e) => native_refusal(&native, &e),
        };
        let _ = resp.add_cookie(&clear);
        return resp;
    }
    let user = match outcome {
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
        Some(mut url) if !wants_json => match sso.create_handoff(user.id, None).await {
            Ok(code) => {
                url.query_pairs_mut().append_pair("code", &code);
                redirect(url.to_string())
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

/// RFC 6749 §4.1.2.1: the app learns of a refusal at its redirect, with its state; the reason
/// stays in the audit log (and the cause of an internal failure in the server log).
fn native_refusal(native: &NativeRedirect, e: &Error) -> HttpResponse {
    if matches!(e, Error::Internal(_) | Error::Unavailable(_)) {
        tracing::error!(code = e.code().as_str(), error = %e, "native SSO login failed");
    }
    redirect(native.error_url(NativeError::of(e), &e.public_message()))
}

#[derive(serde::Deserialize)]
struct ExchangeBody {
    code: String,
    /// RFC 7636: required for a native app's code, refused for a browser one.
    #[serde(default, alias = "codeVerifier")]
    code_verifier: Option<String>,
}

pub(crate) async fn exchange(
    state: web::Data<AppState>,
    http: HttpRequest,
    body: web::Bytes,
) -> HttpResponse {
    let Some(sso) = state.sso.as_ref() else {
        return not_configured();
    };
    let Ok(ExchangeBody {
        code,
        code_verifier,
    }) = serde_json::from_slice::<ExchangeBody>(&body)
    else {
        return error_response(&Error::field(
            "code",
            "expected JSON {\"code\": \"…\", \"code_verifier\": \"…\"}",
        ));
    };
    let meta = request_meta(&http);
    match sso
        .exchange_with_verifier(&code, code_verifier.as_deref(), &meta)
        .await
    {
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
