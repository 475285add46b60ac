//! Native-app sign-in (RFC 8252, OAuth 2.0 for Native Apps): the loopback `redirect_uri`, the
//! client's PKCE S256 challenge and `state` a login may carry, their checks, and the URLs the
//! callback sends the browser back to the app with.

use base64::Engine as _;
use sha2::{Digest, Sha256};

use crate::auth::oidc::url::{Host, Url};
use crate::error::{Error, FieldError, Result};

/// Longest `redirect_uri` and `state` accepted (both come back in a URL).
const MAX_URI: usize = 2048;
const MAX_STATE: usize = 512;

/// The optional native-app parameters of `GET /auth/login`.
#[derive(Debug, Default, Clone, serde::Deserialize)]
pub struct LoginParams {
    pub redirect_uri: Option<String>,
    pub code_challenge: Option<String>,
    pub code_challenge_method: Option<String>,
    pub state: Option<String>,
}

/// A validated native-app login: where the one-time code goes, the S256 challenge its exchange
/// must answer, and the client's `state`, returned verbatim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NativeRedirect {
    pub redirect_uri: Url,
    pub code_challenge: String,
    pub state: String,
}

/// RFC 6749 §4.1.2.1 error codes the callback may send the app.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NativeError {
    AccessDenied,
    TemporarilyUnavailable,
    ServerError,
}

impl NativeError {
    pub fn of(e: &Error) -> Self {
        match e {
            Error::Unauthenticated(_) | Error::Forbidden(_) => NativeError::AccessDenied,
            Error::Unavailable(_) => NativeError::TemporarilyUnavailable,
            _ => NativeError::ServerError,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            NativeError::AccessDenied => "access_denied",
            NativeError::TemporarilyUnavailable => "temporarily_unavailable",
            NativeError::ServerError => "server_error",
        }
    }
}

impl NativeRedirect {
    /// `None` for a browser login (no native parameter at all); every problem is a
    /// `VALIDATION` error naming the parameter.
    pub fn from_params(p: &LoginParams) -> Result<Option<Self>> {
        let Some(uri) = p.redirect_uri.as_deref() else {
            if p.code_challenge.is_some() || p.code_challenge_method.is_some() || p.state.is_some()
            {
                return Err(Error::field(
                    "redirect_uri",
                    "required with code_challenge and state (native-app sign-in)",
                ));
            }
            return Ok(None);
        };
        let mut problems = Vec::new();
        let redirect_uri = match parse_loopback_redirect(uri) {
            Ok(u) => Some(u),
            Err(m) => {
                problems.push(FieldError::new("redirect_uri", m));
                None
            }
        };
        match p.code_challenge_method.as_deref() {
            Some("S256") => {}
            Some(_) => problems.push(FieldError::new(
                "code_challenge_method",
                "only S256 is supported",
            )),
            None => problems.push(FieldError::new("code_challenge_method", "required: S256")),
        }
        let challenge = p.code_challenge.clone().unwrap_or_default();
        if !is_s256_value(&challenge) {
            problems.push(FieldError::new(
                "code_challenge",
                "required: BASE64URL(SHA-256(code_verifier)), 43 characters",
            ));
        }
        let state = p.state.clone().unwrap_or_default();
        if state.is_empty()
            || state.len() > MAX_STATE
            || !state.bytes().all(|b| (0x20..=0x7e).contains(&b))
        {
            problems.push(FieldError::new(
                "state",
                format!("required: 1 to {MAX_STATE} printable ASCII characters"),
            ));
        }
        match redirect_uri {
            Some(redirect_uri) if problems.is_empty() => Ok(Some(NativeRedirect {
                redirect_uri,
                code_challenge: challenge,
                state,
            })),
            _ => Err(Error::Validation(problems)),
        }
    }

    /// The redirect handing the app its one-time code.
    pub fn success_url(&self, code: &str) -> String {
        let mut u = self.redirect_uri.clone();
        u.query_pairs_mut()
            .append_pair("code", code)
            .append_pair("state", &self.state);
        u.to_string()
    }

    /// The redirect telling the app its sign-in was refused (a fixed description, no detail).
    pub fn error_url(&self, error: NativeError, description: &str) -> String {
        let mut u = self.redirect_uri.clone();
        u.query_pairs_mut()
            .append_pair("error", error.as_str())
            .append_pair("error_description", description)
            .append_pair("state", &self.state);
        u.to_string()
    }
}

/// RFC 8252 §7.3 and §8.3: `http://127.0.0.1:<port>/<path>` or `http://[::1]:<port>/<path>`,
/// any port; never `localhost` (a name may resolve elsewhere or to a non-loopback interface),
/// no user info, query or fragment.
pub fn parse_loopback_redirect(value: &str) -> std::result::Result<Url, String> {
    if value.len() > MAX_URI {
        return Err(format!("longer than {MAX_URI} characters"));
    }
    let url = Url::parse(value).map_err(|e| format!("not a URL: {e}"))?;
    if url.scheme() != "http" {
        return Err("must be http://127.0.0.1:<port>/… or http://[::1]:<port>/… (RFC 8252)".into());
    }
    match url.host() {
        Some(Host::Ipv4(ip)) if ip == std::net::Ipv4Addr::LOCALHOST => {}
        Some(Host::Ipv6(ip)) if ip == std::net::Ipv6Addr::LOCALHOST => {}
        Some(Host::Domain(d)) if d.eq_ignore_ascii_case("localhost") => {
            return Err(
                "use the loopback IP literal 127.0.0.1 or [::1], not localhost (RFC 8252 §8.3)"
                    .into(),
            );
        }
        _ => {
            return Err(
                "must be a loopback address: http://127.0.0.1:<port>/… or http://[::1]:<port>/…"
                    .into(),
            );
        }
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not have user info".into());
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query or #fragment".into());
    }
    Ok(url)
}

/// BASE64URL(SHA-256(verifier)), unpadded (RFC 7636 §4.2).
pub fn s256(verifier: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(verifier.as_bytes()))
}

/// Whether `verifier` is a well-formed RFC 7636 verifier whose S256 is `challenge`.
pub fn verifier_matches(verifier: &str, challenge: &str) -> bool {
    let well_formed = (43..=128).contains(&verifier.len())
        && verifier
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b));
    // Both sides are public-length hashes; XOR-folding keeps the comparison's time flat anyway.
    let (a, b) = (s256(verifier), challenge);
    well_formed
        && a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn is_s256_value(s: &str) -> bool {
    s.len() == 43
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params(uri: &str) -> LoginParams {
        LoginParams {
            redirect_uri: Some(uri.into()),
            code_challenge: Some(s256(&"v".repeat(43))),
            code_challenge_method: Some("S256".into()),
            state: Some("st-1".into()),
        }
    }

    fn field_of(e: Error) -> Vec<String> {
        match e {
            Error::Validation(v) => v.into_iter().map(|f| f.field).collect(),
            other => panic!("not a validation error: {other}"),
        }
    }

    #[test]
    fn loopback_ip_literals_with_any_port_are_accepted() {
        for uri in [
            "http://127.0.0.1:49152/callback",
            "http://[::1]:1/",
            "http://127.0.0.1:8080/a/b",
        ] {
            let n = NativeRedirect::from_params(&params(uri)).unwrap().unwrap();
            assert_eq!(n.state, "st-1");
        }
    }

    #[test]
    fn other_redirects_are_refused_naming_redirect_uri() {
        for (uri, says) in [
            ("http://localhost:5000/cb", "not localhost"),
            ("http://LOCALHOST:5000/cb", "not localhost"),
            ("https://127.0.0.1:5000/cb", "must be http"),
            ("http://127.0.0.2:5000/cb", "loopback"),
            ("http://evil.example:5000/cb", "loopback"),
            ("http://10.0.0.1:5000/cb", "loopback"),
            ("http://127.0.0.1:5000/cb?x=1", "query"),
            ("http://127.0.0.1:5000/cb#f", "fragment"),
            ("http://u:p@127.0.0.1:5000/cb", "user info"),
            ("tms://cb", "must be http"),
            ("not a url", "not a URL"),
        ] {
            let e = NativeRedirect::from_params(&params(uri)).unwrap_err();
            let text = e.to_string();
            assert!(text.starts_with("redirect_uri: "), "{uri}: {text}");
            assert!(text.contains(says), "{uri}: {text}");
        }
    }

    #[test]
    fn pkce_and_state_are_required_with_a_redirect() {
        let mut p = params("http://127.0.0.1:1/cb");
        p.code_challenge = None;
        p.code_challenge_method = Some("plain".into());
        p.state = Some(String::new());
        let fields = field_of(NativeRedirect::from_params(&p).unwrap_err());
        assert_eq!(fields, ["code_challenge_method", "code_challenge", "state"]);
        let mut p = params("http://127.0.0.1:1/cb");
        p.code_challenge_method = None;
        assert_eq!(
            field_of(NativeRedirect::from_params(&p).unwrap_err()),
            ["code_challenge_method"]
        );
    }

    #[test]
    fn browser_logins_carry_no_native_parameter() {
        assert_eq!(
            NativeRedirect::from_params(&LoginParams::default()).unwrap(),
            None
        );
        let p = LoginParams {
            state: Some("s".into()),
            ..LoginParams::default()
        };
        assert_eq!(
            field_of(NativeRedirect::from_params(&p).unwrap_err()),
            ["redirect_uri"]
        );
    }

    #[test]
    fn verifier_must_hash_to_the_challenge() {
        // RFC 7636 appendix B.
        let verifier = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
        let challenge = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";
        assert_eq!(s256(verifier), challenge);
        assert!(verifier_matches(verifier, challenge));
        assert!(!verifier_matches(
            "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXX",
            challenge
        ));
        assert!(!verifier_matches("short", &s256("short")));
        assert!(!verifier_matches(
            &"a b".repeat(20),
            &s256(&"a b".repeat(20))
        ));
    }

    #[test]
    fn callback_urls_carry_code_or_error_and_the_state() {
        let mut p = params("http://127.0.0.1:7/cb");
        p.state = Some("a&b=c".into());
        let n = NativeRedirect::from_params(&p).unwrap().unwrap();
        assert_eq!(
            n.success_url("xyz"),
            "http://127.0.0.1:7/cb?code=xyz&state=a%26b%3Dc"
        );
        assert_eq!(
            n.error_url(NativeError::AccessDenied, "single sign-on failed"),
            "http://127.0.0.1:7/cb?error=access_denied&error_description=single+sign-on+failed&state=a%26b%3Dc"
        );
    }
}
