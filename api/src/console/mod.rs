//! The web console at `/ui/`: embedded static assets (no CDN, no Node at run time), the
//! single-page app's routes, and the security headers every console page carries.
//!
//! Assets are served from `/ui/assets/<build>/<path>` where `<build>` is a digest of every
//! embedded file: a new build changes every asset URL, so assets may be cached for a year
//! (`immutable`), while `index.html` (which names the build) is `no-cache`. ES modules import
//! each other relatively, so they stay inside one build's folder.

pub mod graphiql;
pub mod session;

use std::borrow::Cow;
use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, web};
use rust_embed::RustEmbed;
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::http::AppState;

/// Everything under `api/ui/`, compiled into the binary (in debug builds too).
#[derive(RustEmbed)]
#[folder = "ui/"]
#[exclude = "*.map"]
pub struct Assets;

/// The console's Content-Security-Policy: nothing but this origin, no inline code or style.
pub const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
style-src 'self'; script-src 'self'; frame-ancestors 'none'; base-uri 'none'; \
form-action 'self'";

/// Where the vendored GraphiQL files live (served only where GraphiQL is: outside production).
pub const VENDOR_DIR: &str = "vendor/";

const IMMUTABLE: &str = "public, max-age=31536000, immutable";

pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(to_console))
        .route("/ui", web::get().to(to_console))
        .route("/ui/config.json", web::get().to(config))
        .configure(session::routes)
        .route("/ui/assets/{build}/{path:.*}", web::get().to(asset))
        .route("/ui/{tail:.*}", web::get().to(index));
}

/// The digest naming this build's assets: SHA-256 over every embedded file's path and content
/// hash, 16 hex digits.
pub fn build_id() -> &'static str {
    static ID: OnceLock<String> = OnceLock::new();
    ID.get_or_init(|| {
        let mut names: Vec<Cow<'static, str>> = Assets::iter().collect();
        names.sort();
        let mut h = Sha256::new();
        for name in names {
            if let Some(f) = Assets::get(&name) {
                h.update(name.as_bytes());
                h.update(f.metadata.sha256_hash());
            }
        }
        hex::encode(&h.finalize()[..8])
    })
}

/// Adds the headers every console (and GraphiQL) response carries.
pub fn secure(mut b: HttpResponseBuilder, csp: &str) -> HttpResponseBuilder {
    b.insert_header((header::CONTENT_SECURITY_POLICY, csp))
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((header::REFERRER_POLICY, "no-referrer"))
        .insert_header((header::X_FRAME_OPTIONS, "DENY"));
    b
}

/// The content type of an embedded file, by its extension.
pub fn content_type(path: &str) -> &'static str {
    let ext = path.rsplit_once('.').map(|(_, e)| e).unwrap_or("");
    match ext {
        "html" => "text/html; charset=utf-8",
        "js" | "mjs" => "text/javascript; charset=utf-8",
        "css" => "text/css; charset=utf-8",
        "svg" => "image/svg+xml",
        "json" => "application/json",
        "png" => "image/png",
        "ico" => "image/x-icon",
        "woff2" => "font/woff2",
        _ => "text/plain; charset=utf-8",
    }
}

async fn to_console() -> HttpResponse {
    HttpResponse::Found()
        .insert_header((header::LOCATION, "/ui/"))
        .finish()
}

/// What the console needs to know before sign-in: whether the SSO button is shown.
async fn config(state: web::Data<AppState>) -> HttpResponse {
    secure(HttpResponse::Ok(), CSP)
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .json(json!({"sso": state.sso.is_some(), "build": build_id()}))
}

/// `index.html` with the build's asset folder filled in, rendered once.
fn index_html() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        let raw = Assets::get("index.html")
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .unwrap_or_default();
        raw.replace("__BUILD__", build_id())
    })
}

/// Every app route (`/ui/login`, `/ui/runs/<id>`, …) is the same page; the app routes itself.
async fn index() -> HttpResponse {
    secure(HttpResponse::Ok(), CSP)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(index_html())
}

async fn asset(
    state: web::Data<AppState>,
    path: web::Path<(String, String)>,
    req: HttpRequest,
) -> HttpResponse {
    let (build, path) = path.into_inner();
    let hidden = path == "index.html" || (state.production && path.starts_with(VENDOR_DIR));
    let Some(file) = Assets::get(&path).filter(|_| !hidden) else {
        return secure(HttpResponse::NotFound(), CSP)
            .content_type("text/plain; charset=utf-8")
            .body("not found");
    };
    let etag = format!("\"{}\"", hex::encode(&file.metadata.sha256_hash()[..12]));
    // Another build's URL gets this build's file, but must not be cached as that build's.
    let cache = if build == build_id() {
        IMMUTABLE
    } else {
        "no-cache"
    };
    let fresh = req
        .headers()
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == etag);
    let mut resp = secure(
        if fresh {
            HttpResponse::NotModified()
        } else {
            HttpResponse::Ok()
        },
        CSP,
    );
    resp.insert_header((header::CACHE_CONTROL, cache))
        .insert_header((header::ETAG, etag));
    if fresh {
        return resp.finish();
    }
    resp.content_type(content_type(&path))
        .body(file.data.into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_index_names_this_build_and_every_asset_it_names_exists() {
        let html = index_html();
        assert!(!html.contains("__BUILD__"), "{html}");
        let prefix = format!("/ui/assets/{}/", build_id());
        let mut named = 0;
        for part in html
            .split(['"', '\''])
            .filter(|p| p.starts_with("/ui/assets/"))
        {
            let path = part
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{part}"));
            assert!(Assets::get(path).is_some(), "{path} is not embedded");
            named += 1;
        }
        assert!(named >= 2, "{html}");
        assert!(
            !html.contains("<style") && !html.contains(" style="),
            "{html}"
        );
    }

    #[test]
    fn modules_import_only_relative_embedded_files() {
        for name in Assets::iter().filter(|n| n.ends_with(".js") && !n.starts_with(VENDOR_DIR)) {
            let text = String::from_utf8_lossy(&Assets::get(&name).unwrap().data).into_owned();
            for line in text.lines().filter(|l| l.starts_with("import ")) {
                let spec = line.rsplit(['"', '\'']).nth(1).unwrap_or_default();
                assert!(
                    spec.starts_with("./") || spec.starts_with("../"),
                    "{name}: {line}"
                );
                let base = std::path::Path::new(name.as_ref()).parent().unwrap();
                let mut parts: Vec<String> = base
                    .components()
                    .map(|c| c.as_os_str().to_string_lossy().into_owned())
                    .collect();
                for seg in spec.split('/') {
                    match seg {
                        "." => {}
                        ".." => {
                            parts.pop();
                        }
                        s => parts.push(s.to_string()),
                    }
                }
                let target = parts.join("/");
                assert!(
                    Assets::get(&target).is_some(),
                    "{name} imports missing {target}"
                );
            }
        }
    }

    #[test]
    fn content_types_by_extension() {
        assert_eq!(content_type("app.js"), "text/javascript; charset=utf-8");
        assert_eq!(content_type("style.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("vendor/LICENSE"), "text/plain; charset=utf-8");
    }
}
