//! Small pure helpers of the OIDC client: per-login secrets derived from the cookie secret, the
//! JWS header fields looked at before verification, and stable words for the audit log.

use base64::Engine as _;
use openidconnect::{ClaimsVerificationError, SignatureVerificationError};
use sha2::{Digest, Sha256};

/// Derives a per-login secret (PKCE verifier, nonce) from the browser-bound secret, so neither
/// is stored anywhere: only the browser's cookie can reproduce them.
pub fn derive(binding: &str, label: &str) -> String {
    let digest = Sha256::digest(format!("tms-sso:{label}:{binding}").as_bytes());
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest)
}

/// The failed ID-token check, as a stable word for the audit log.
pub(super) fn check_of(e: &ClaimsVerificationError) -> &'static str {
    match e {
        ClaimsVerificationError::Expired(_) => "exp",
        ClaimsVerificationError::InvalidAudience(_) => "aud",
        ClaimsVerificationError::InvalidIssuer(_) => "iss",
        ClaimsVerificationError::InvalidNonce(_) => "nonce",
        ClaimsVerificationError::InvalidSubject(_) => "sub",
        ClaimsVerificationError::SignatureVerification(s) => match s {
            SignatureVerificationError::DisallowedAlg(_)
            | SignatureVerificationError::UnsupportedAlg(_)
            | SignatureVerificationError::NoSignature => "alg",
            SignatureVerificationError::NoMatchingKey
            | SignatureVerificationError::AmbiguousKeyId(_) => "kid",
            _ => "signature",
        },
        _ => "claims",
    }
}

/// `alg` and `kid` of a compact JWS header (only looked at, never trusted: the verifier decides).
pub(super) fn header_fields(jwt: &str) -> (Option<String>, Option<String>) {
    let header = jwt.split('.').next().unwrap_or_default();
    let v: serde_json::Value = base64::engine::general_purpose::URL_SAFE_NO_PAD
        .decode(header.trim_end_matches('='))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default();
    let field = |k: &str| v.get(k).and_then(|x| x.as_str()).map(str::to_string);
    (field("alg"), field("kid"))
}

/// An OAuth error code from the provider, kept only when it looks like one (it is written to
/// the audit log and must not carry arbitrary text).
pub fn oauth_code(raw: &str) -> String {
    if !raw.is_empty()
        && raw.len() <= 64
        && raw.bytes().all(|b| b.is_ascii_lowercase() || b == b'_')
    {
        raw.to_string()
    } else {
        "other".to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_secrets_differ_per_purpose_and_fit_pkce() {
        let b = "binding";
        assert_ne!(derive(b, "pkce"), derive(b, "nonce"));
        assert_eq!(derive(b, "pkce").len(), 43);
        assert_eq!(derive(b, "pkce"), derive(b, "pkce"));
    }

    #[test]
    fn kid_is_read_from_the_header_and_provider_codes_are_sanitised() {
        let h = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(r#"{"alg":"RS256","kid":"k1"}"#);
        let (alg, kid) = header_fields(&format!("{h}.e30.sig"));
        assert_eq!(
            (alg.as_deref(), kid.as_deref()),
            (Some("RS256"), Some("k1"))
        );
        assert_eq!(header_fields("garbage"), (None, None));
        assert_eq!(oauth_code("access_denied"), "access_denied");
        assert_eq!(oauth_code("<script>"), "other");
    }
}
