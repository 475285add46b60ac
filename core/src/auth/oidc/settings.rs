//! `TMS_OIDC_*` settings and their parsers (URLs, the group → role map).

use openidconnect::url::{self, Url};

use crate::auth::Role;

/// `TMS_OIDC_*`, validated.
#[derive(Debug, Clone)]
pub struct OidcSettings {
    /// Exactly as configured: discovery compares it with the provider's `issuer` verbatim.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Option<String>,
    pub redirect_url: Url,
    /// IdP group → TMS role, in configuration order.
    pub group_roles: Vec<(String, Role)>,
    pub post_login_url: Option<Url>,
}

impl OidcSettings {
    /// Whether the browser-facing side is https (cookie gets `Secure` and the `__Host-` prefix).
    pub fn secure_cookies(&self) -> bool {
        self.redirect_url.scheme() == "https"
    }
}

/// Parses a provider or TMS URL: https, or http only on a loopback host (tests, local set-ups).
pub fn parse_url(value: &str) -> std::result::Result<Url, String> {
    let url = Url::parse(value.trim()).map_err(|e| format!("not a URL: {e}"))?;
    if url.fragment().is_some() {
        return Err("must not have a #fragment".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if is_loopback(&url) => Ok(url),
        "http" => Err("must use https (plain http is allowed only on loopback)".into()),
        other => Err(format!("unsupported scheme `{other}`")),
    }
}

/// Parses `TMS_OIDC_ISSUER` as [`parse_url`] does, keeping the text verbatim (an issuer is
/// compared as a string: `https://idp` and `https://idp/` are different issuers).
pub fn parse_issuer(value: &str) -> std::result::Result<String, String> {
    parse_url(value)?;
    Ok(value.trim().to_string())
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    }
}

/// Parses `TMS_OIDC_GROUP_ROLES`: `group=role` pairs separated by commas, e.g.
/// `ops=operator,devs=maintainer`. A group may grant several roles (repeat it).
pub fn parse_group_roles(value: &str) -> std::result::Result<Vec<(String, Role)>, String> {
    let mut out = Vec::new();
    for pair in value.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (group, role) = pair
            .split_once('=')
            .ok_or_else(|| format!("`{pair}`: expected group=role"))?;
        let (group, role) = (group.trim(), role.trim());
        if group.is_empty() {
            return Err(format!("`{pair}`: empty group name"));
        }
        let role: Role = role.parse().map_err(|e| format!("`{pair}`: {e}"))?;
        if out.iter().any(|(g, r)| g == group && *r == role) {
            return Err(format!("`{pair}` is listed twice"));
        }
        out.push((group.to_string(), role));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_need_https_except_on_loopback() {
        assert!(parse_url("https://idp.example.com/realms/x").is_ok());
        assert!(parse_url("http://127.0.0.1:8080/cb").is_ok());
        assert!(parse_url("http://localhost:1/").is_ok());
        assert!(parse_url("http://[::1]:1/").is_ok());
        let e = parse_url("http://idp.example.com").unwrap_err();
        assert!(e.contains("https"), "{e}");
        assert!(parse_url("ftp://x").is_err());
        assert!(parse_url("not a url").is_err());
        assert!(parse_url("https://x/#frag").is_err());
    }

    #[test]
    fn group_roles_parse_and_name_bad_pairs() {
        assert_eq!(
            parse_group_roles("ops=operator, devs=maintainer").unwrap(),
            vec![
                ("ops".to_string(), Role::Operator),
                ("devs".to_string(), Role::Maintainer)
            ]
        );
        assert_eq!(parse_group_roles("").unwrap(), vec![]);
        assert!(parse_group_roles("ops").unwrap_err().contains("group=role"));
        assert!(
            parse_group_roles("ops=root")
                .unwrap_err()
                .contains("unknown role")
        );
        assert!(parse_group_roles("=admin").is_err());
    }
}
