//! Browser `Origin` checks for WebSocket upgrades: a page on another site must not open a
//! subscription with the user's credentials (cross-site WebSocket hijacking), so an upgrade
//! whose `Origin` is neither the api's own nor in `TMS_ALLOWED_ORIGINS` is refused. The same
//! list says which origins CORS lets call the API.

use std::fmt;

/// One allowed origin, normalised: lower-case scheme and host, port always explicit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    /// Parses `scheme://host[:port]` (http or https, nothing after the authority).
    pub fn parse(text: &str) -> Result<Self, String> {
        let bad = |why: &str| {
            format!("`{text}` is not an origin ({why}); expected e.g. https://tms.example.com")
        };
        let (scheme, rest) = text.split_once("://").ok_or_else(|| bad("no scheme"))?;
        let scheme = scheme.to_ascii_lowercase();
        let default_port = match scheme.as_str() {
            "http" => 80,
            "https" => 443,
            _ => return Err(bad("scheme must be http or https")),
        };
        if rest.is_empty() || rest.contains(['/', '?', '#', '@', ' ']) {
            return Err(bad("only scheme, host and port are allowed"));
        }
        let (host, port) = split_port(rest).ok_or_else(|| bad("bad port"))?;
        if host.is_empty() {
            return Err(bad("empty host"));
        }
        Ok(Self {
            scheme,
            host: host.to_ascii_lowercase(),
            port: port.unwrap_or(default_port),
        })
    }

    /// True when this origin names the host a request was sent to (its `Host` header).
    fn is_host(&self, host_header: &str) -> bool {
        let default_port = if self.scheme == "https" { 443 } else { 80 };
        match split_port(host_header) {
            Some((host, port)) => {
                host.eq_ignore_ascii_case(&self.host) && port.unwrap_or(default_port) == self.port
            }
            None => false,
        }
    }
}

/// `host[:port]`, keeping IPv6 literals (`[::1]:8080`) whole.
fn split_port(authority: &str) -> Option<(&str, Option<u16>)> {
    let colon = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => i,
        _ => return Some((authority, None)),
    };
    let port = authority[colon + 1..].parse().ok()?;
    Some((&authority[..colon], Some(port)))
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}:{}", self.scheme, self.host, self.port)
    }
}

/// Whether a browser `Origin` header names one of the `allowed` origins (CORS).
pub fn listed(origin: &str, allowed: &[Origin]) -> bool {
    Origin::parse(origin).is_ok_and(|o| allowed.contains(&o))
}

/// Whether a WebSocket upgrade may proceed. No `Origin` header means a non-browser client,
/// which cross-site hijacking cannot involve, so it is allowed.
pub fn upgrade_allowed(origin: Option<&str>, host: Option<&str>, allowed: &[Origin]) -> bool {
    let Some(origin) = origin else {
        return true;
    };
    let Ok(origin) = Origin::parse(origin) else {
        return false;
    };
    allowed.contains(&origin) || host.is_some_and(|h| origin.is_host(h))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_normalises_origins() {
        let o = Origin::parse("HTTPS://Console.Example.com").unwrap();
        assert_eq!(o.to_string(), "https://console.example.com:443");
        assert_eq!(Origin::parse("http://[::1]:3000").unwrap().port, 3000);
        for bad in [
            "console.example.com",
            "ftp://x",
            "https://x/path",
            "https://x:notaport",
            "https://",
        ] {
            assert!(Origin::parse(bad).is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn same_host_allowed_list_and_absent_origin_pass_others_do_not() {
        let allowed = vec![Origin::parse("https://console.example.com").unwrap()];
        let host = Some("127.0.0.1:8080");
        assert!(upgrade_allowed(None, host, &allowed));
        assert!(upgrade_allowed(
            Some("http://127.0.0.1:8080"),
            host,
            &allowed
        ));
        assert!(upgrade_allowed(
            Some("https://console.example.com:443"),
            host,
            &allowed
        ));
        assert!(!upgrade_allowed(Some("http://evil.test"), host, &allowed));
        assert!(!upgrade_allowed(
            Some("http://127.0.0.1:9999"),
            host,
            &allowed
        ));
        assert!(!upgrade_allowed(Some("null"), host, &allowed));
    }
}
