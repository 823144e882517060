//! Upstream base URLs (`providers[].baseUrl`).
//!
//! Parsed once at load into the pieces the upstream client needs: whether to
//! speak TLS, the host to connect to and to name in SNI, the port, and the path
//! prefix that `/chat/completions` and `/completions` are appended to. Only the
//! subset of RFC 3986 that makes sense for an API base is accepted: no
//! credentials, query or fragment, so nothing in the URL can leak into logs or
//! silently change the request.

use std::fmt;
use std::net::Ipv6Addr;

/// A parsed `http://` or `https://` base URL.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct BaseUrl {
    /// `https` (true) or `http` (false).
    pub tls: bool,
    /// Host name (lowercased) or IP literal; IPv6 without brackets, so it can be
    /// handed to the resolver and to SNI as is.
    pub host: String,
    /// Explicit port, or 443 / 80 by scheme.
    pub port: u16,
    /// Path prefix without trailing slash: `""` or e.g. `"/v1"`.
    pub path: String,
}

impl BaseUrl {
    /// Parse `http[s]://host[:port][/path]`. The error says what is wrong
    /// without repeating the input (it may be a secret-bearing URL).
    pub fn parse(s: &str) -> Result<BaseUrl, String> {
        let (scheme, rest) = s
            .split_once("://")
            .ok_or("must start with http:// or https://")?;
        let tls = if scheme.eq_ignore_ascii_case("https") {
            true
        } else if scheme.eq_ignore_ascii_case("http") {
            false
        } else {
            return Err(format!(
                "scheme `{scheme}` is not supported; use http or https"
            ));
        };
        if rest.contains(['?', '#']) {
            return Err("a base URL cannot have a query or fragment".to_owned());
        }
        if let Some(bad) = rest.chars().find(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("contains the character {bad:?}"));
        }
        let (authority, path) = match rest.find('/') {
            Some(slash) => rest.split_at(slash),
            None => (rest, ""),
        };
        if authority.contains('@') {
            return Err(
                "credentials in the URL are not supported; put the key in accounts[].apiKey"
                    .to_owned(),
            );
        }
        let (host, port) = split_host_port(authority)?;
        let port = match port {
            None => default_port(tls),
            Some(p) => parse_port(p)?,
        };
        Ok(BaseUrl {
            tls,
            host,
            port,
            path: path.trim_end_matches('/').to_owned(),
        })
    }

    /// The `Host` header value: the host, bracketed when IPv6, with `:port`
    /// only when it is not the scheme's default (RFC 9110 §7.2).
    pub fn authority(&self) -> String {
        let host = bracket_ipv6(&self.host);
        if self.port == default_port(self.tls) {
            host
        } else {
            format!("{host}:{}", self.port)
        }
    }

    /// `"https"` or `"http"`.
    pub fn scheme(&self) -> &'static str {
        if self.tls {
            "https"
        } else {
            "http"
        }
    }
}

impl fmt::Display for BaseUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}{}", self.scheme(), self.authority(), self.path)
    }
}

fn default_port(tls: bool) -> u16 {
    if tls {
        443
    } else {
        80
    }
}

/// `host` as it appears in a URL or socket address: IPv6 literals in brackets.
pub(crate) fn bracket_ipv6(host: &str) -> String {
    if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    }
}

fn parse_port(p: &str) -> Result<u16, String> {
    // `u16::from_str` accepts a leading `+`; a URL port is digits only.
    if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) {
        return Err("the port must be a number".to_owned());
    }
    match p.parse::<u16>() {
        Ok(0) | Err(_) => Err(format!("port {p} is out of range 1-65535")),
        Ok(port) => Ok(port),
    }
}

/// Split `host[:port]` / `[v6][:port]` and validate the host.
fn split_host_port(authority: &str) -> Result<(String, Option<&str>), String> {
    if let Some(bracketed) = authority.strip_prefix('[') {
        let (literal, after) = bracketed
            .split_once(']')
            .ok_or("unclosed `[` in the host")?;
        literal
            .parse::<Ipv6Addr>()
            .map_err(|_| format!("`[{literal}]` is not an IPv6 address"))?;
        let port = match after {
            "" => None,
            _ => Some(
                after
                    .strip_prefix(':')
                    .ok_or("junk after the IPv6 address")?,
            ),
        };
        return Ok((literal.to_ascii_lowercase(), port));
    }
    let (host, port) = match authority.split_once(':') {
        Some((host, port)) => (host, Some(port)),
        None => (authority, None),
    };
    check_hostname(host)?;
    Ok((host.to_ascii_lowercase(), port))
}

/// A DNS name or IPv4 literal: letters, digits, `-`, `.`, `_`. Anything else
/// (an unbracketed IPv6 literal, `%`-escapes, stray punctuation) is a typo.
pub(crate) fn check_hostname(host: &str) -> Result<(), String> {
    if host.is_empty() {
        return Err("the host is empty".to_owned());
    }
    if let Some(bad) = host
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '.' | '_')))
    {
        return Err(format!("the host contains {bad:?}"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(tls: bool, host: &str, port: u16, path: &str) -> BaseUrl {
        BaseUrl {
            tls,
            host: host.to_owned(),
            port,
            path: path.to_owned(),
        }
    }

    #[test]
    fn default_ports_by_scheme() {
        assert_eq!(
            BaseUrl::parse("https://api.deepseek.com/v1"),
            Ok(url(true, "api.deepseek.com", 443, "/v1"))
        );
        assert_eq!(
            BaseUrl::parse("http://localhost"),
            Ok(url(false, "localhost", 80, ""))
        );
        assert_eq!(
            BaseUrl::parse("HTTPS://API.Example.COM"),
            Ok(url(true, "api.example.com", 443, ""))
        );
    }

    #[test]
    fn explicit_port_and_authority() {
        let u = BaseUrl::parse("http://127.0.0.1:11434/v1").expect("valid");
        assert_eq!(u, url(false, "127.0.0.1", 11434, "/v1"));
        assert_eq!(u.authority(), "127.0.0.1:11434");
        assert_eq!(u.to_string(), "http://127.0.0.1:11434/v1");
        // A default port written out is still omitted from Host.
        let u = BaseUrl::parse("https://h:443").expect("valid");
        assert_eq!(u.authority(), "h");
        let u = BaseUrl::parse("http://h:443").expect("valid");
        assert_eq!(u.authority(), "h:443");
    }

    #[test]
    fn trailing_slashes_are_dropped() {
        assert_eq!(BaseUrl::parse("https://h/v1/").expect("valid").path, "/v1");
        assert_eq!(BaseUrl::parse("https://h/").expect("valid").path, "");
        assert_eq!(
            BaseUrl::parse("https://h/openai/v1//").expect("valid").path,
            "/openai/v1"
        );
    }

    #[test]
    fn ipv6_literals() {
        let u = BaseUrl::parse("http://[::1]:8080/v1").expect("valid");
        assert_eq!(u, url(false, "::1", 8080, "/v1"));
        assert_eq!(u.authority(), "[::1]:8080");
        let u = BaseUrl::parse("https://[2001:DB8::1]").expect("valid");
        assert_eq!(u.host, "2001:db8::1");
        assert_eq!(u.authority(), "[2001:db8::1]");
    }

    #[test]
    fn garbage_is_rejected() {
        for bad in [
            "",
            "api.openai.com/v1",
            "ftp://h/",
            "https://",
            "https:///v1",
            "https://h:/v1",
            "https://h:0",
            "https://h:65536",
            "https://h:+80",
            "https://h:8x",
            "https://[::1/v1",
            "https://[nope]/v1",
            "https://[::1]x",
            "https://::1/v1",
            "https://user:pw@h/v1",
            "https://h/v1?x=1",
            "https://h/v1#top",
            "https://h /v1",
            "https://h/v 1",
            "https://h%41/",
        ] {
            assert!(BaseUrl::parse(bad).is_err(), "{bad:?} should be rejected");
        }
    }

    #[test]
    fn errors_do_not_echo_credentials() {
        let err = BaseUrl::parse("https://user:sekrit@h/").expect_err("credentials");
        assert!(!err.contains("sekrit"), "{err}");
    }
}
