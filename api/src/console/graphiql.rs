//! GraphiQL at `GET /graphql`, from vendored copies of GraphiQL, React and ReactDOM embedded
//! in the binary (`api/ui/vendor/`, fetched by `scripts/lib/vendor-graphiql.sh`): no CDN, so
//! it works air-gapped and puts no third-party script in a page that holds tokens.
//! `TMS_PRODUCTION` turns it off (404), as it turns off introspection.
//!
//! Its Content-Security-Policy is the console's plus `font-src data:`: GraphiQL's stylesheet
//! carries its fonts as `data:` URLs. Scripts and styles still come from this origin only.

use std::sync::OnceLock;

use actix_web::http::header;
use actix_web::{HttpResponse, web};

use crate::console::{Assets, build_id, secure};
use crate::http::AppState;

pub const CSP: &str = "default-src 'self'; connect-src 'self'; img-src 'self' data:; \
font-src 'self' data:; style-src 'self'; script-src 'self'; frame-ancestors 'none'; \
base-uri 'none'; form-action 'self'";

fn page() -> &'static str {
    static HTML: OnceLock<String> = OnceLock::new();
    HTML.get_or_init(|| {
        let raw = Assets::get("graphiql.html")
            .map(|f| String::from_utf8_lossy(&f.data).into_owned())
            .unwrap_or_default();
        raw.replace("__BUILD__", build_id())
    })
}

pub async fn graphiql(state: web::Data<AppState>) -> HttpResponse {
    if state.production {
        return HttpResponse::NotFound().finish();
    }
    secure(HttpResponse::Ok(), CSP)
        .content_type("text/html; charset=utf-8")
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(page())
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    #[test]
    fn the_page_loads_only_embedded_files() {
        let prefix = format!("/ui/assets/{}/", build_id());
        let mut named = 0;
        for part in page().split('"').filter(|p| p.contains("/ui/assets/")) {
            let path = part
                .strip_prefix(&prefix)
                .unwrap_or_else(|| panic!("{part}"));
            assert!(Assets::get(path).is_some(), "{path} is not embedded");
            named += 1;
        }
        assert!(named >= 5, "{}", page());
        assert!(!page().contains("https://") && !page().contains("//unpkg"));
    }

    /// The vendored files are exactly what `scripts/lib/vendor-graphiql.sh` fetched from the
    /// pinned package versions (it writes `vendor/SHA256SUMS` from the verified tarballs).
    #[test]
    fn vendored_files_match_their_pinned_checksums() {
        let sums = Assets::get("vendor/SHA256SUMS").expect("vendor/SHA256SUMS is embedded");
        let sums = String::from_utf8_lossy(&sums.data).into_owned();
        let mut checked = 0;
        for line in sums.lines().filter(|l| !l.trim().is_empty()) {
            let (want, name) = line.split_once("  ").expect("`<sha256>  <file>` lines");
            let file = Assets::get(&format!("vendor/{name}"))
                .unwrap_or_else(|| panic!("vendor/{name} is listed but not embedded"));
            assert_eq!(
                hex::encode(Sha256::digest(&file.data)),
                want,
                "vendor/{name}"
            );
            checked += 1;
        }
        let listed = Assets::iter()
            .filter(|n| n.starts_with("vendor/") && *n != "vendor/SHA256SUMS")
            .count();
        assert_eq!(
            checked, listed,
            "every vendored file is listed in SHA256SUMS"
        );
        assert!(checked >= 7);
    }
}
