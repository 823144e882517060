//! The request head sent upstream, sans-IO.
//!
//! Owns what goes on the wire before the body: the request line, `Host`,
//! the fields the gateway sets, and which of the client's fields are
//! forwarded. It writes into a `BytesMut` and must not touch sockets, decide
//! routing, or read bodies (they are written after the head, untouched).

use bytes::{BufMut, Bytes, BytesMut};

use crate::http1::encode::write_decimal;
use crate::http1::RequestHead;

/// Client fields never forwarded, compared case-insensitively.
///
/// - Set by us for the upstream hop: `Host`, `Authorization` (the account's
///   key), `Content-Length`, `Content-Type`, `Accept-Encoding` (we ask for
///   `identity`: the gateway rewrites bodies and must see them plain).
/// - Client credentials (docs/wire.md §3: never forwarded): `X-API-Key`, `Cookie`.
/// - Hop-by-hop fields, which describe one connection and must not be
///   forwarded by an intermediary (RFC 9110 §7.6.1): `Connection`,
///   `Keep-Alive`, `Proxy-Connection`, `TE`, `Transfer-Encoding`, `Upgrade`,
///   `Trailer`, `Proxy-Authorization`, `Proxy-Authenticate`.
/// - `Expect`: the gateway already read the whole body, so `100-continue`
///   has nothing left to negotiate (RFC 9110 §10.1.1).
const NOT_FORWARDED: &[&str] = &[
    "host",
    "authorization",
    "x-api-key",
    "cookie",
    "content-length",
    "content-type",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "proxy-authenticate",
    "accept-encoding",
    "expect",
    // Whose account is charged is the account's choice, not the client's:
    // a client's organization or project, sent with the account's key,
    // gets it refused (401 `mismatched_organization`) or billed elsewhere.
    "openai-organization",
    "openai-project",
];

/// Where requests of one upstream go: the `Host` value and the path prefix.
#[derive(Clone, Debug)]
pub(crate) struct Target {
    /// `host[:port]` as it appears in `Host` (RFC 9110 §7.2).
    authority: Bytes,
    /// The base URL's path without a trailing `/` (may be empty).
    base_path: Bytes,
}

impl Target {
    pub(crate) fn new(tls: bool, host: &str, port: u16, base_path: &str) -> Result<Target, String> {
        if !is_valid_target(base_path.as_bytes()) {
            return Err(format!("invalid base path {base_path:?}"));
        }
        let base_path = base_path.trim_end_matches('/');
        if !base_path.is_empty() && !base_path.starts_with('/') {
            return Err(format!("base path {base_path:?} must start with '/'"));
        }
        Ok(Target {
            authority: Bytes::from(authority(tls, host, port)),
            base_path: Bytes::copy_from_slice(base_path.as_bytes()),
        })
    }
}

/// What the head of one request carries besides the target.
pub(crate) struct HeadFields<'a> {
    pub(crate) method: &'a str,
    pub(crate) path: &'a str,
    pub(crate) authorization: Option<&'a [u8]>,
    /// Whole header lines, each ending in CRLF.
    pub(crate) account_fields: &'a [u8],
    pub(crate) content_type: Option<&'a [u8]>,
    pub(crate) forward: Option<&'a RequestHead>,
    /// `Some(n)`: send `Content-Length: n`.
    pub(crate) content_length: Option<u64>,
}

/// The `Host` value: the port is omitted when it is the scheme's default
/// (RFC 9110 §7.2, §4.2), an IPv6 literal is bracketed (RFC 3986 §3.2.2).
pub(crate) fn authority(tls: bool, host: &str, port: u16) -> String {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    let default_port = if tls { 443 } else { 80 };
    if port == default_port {
        host
    } else {
        format!("{host}:{port}")
    }
}

/// Whether `path` can go into a request-target as is: visible ASCII only,
/// so nothing can end the request line early or smuggle a field
/// (RFC 9112 §3.2; RFC 3986 §3.3 allows no spaces or controls).
pub(crate) fn is_valid_target(path: &[u8]) -> bool {
    path.iter().all(|b| b.is_ascii_graphic())
}

/// Writes the request head into `dst`:
///
/// ```text
/// {METHOD} {base_path}{path} HTTP/1.1
/// Host, Authorization, Content-Type, Content-Length, Accept-Encoding,
/// then the client's end-to-end fields, then the empty line.
/// ```
///
/// HTTP/1.1 connections are persistent by default (RFC 9112 §9.3), so no
/// `Connection: keep-alive` is sent.
pub(crate) fn encode_head(dst: &mut BytesMut, target: &Target, f: &HeadFields<'_>) {
    dst.put_slice(f.method.as_bytes());
    dst.put_u8(b' ');
    dst.put_slice(&target.base_path);
    if target.base_path.is_empty() && f.path.is_empty() {
        dst.put_u8(b'/');
    }
    dst.put_slice(f.path.as_bytes());
    dst.put_slice(b" HTTP/1.1\r\nHost: ");
    dst.put_slice(&target.authority);
    dst.put_slice(b"\r\n");
    if let Some(auth) = f.authorization {
        put_field(dst, b"Authorization", auth);
    }
    dst.put_slice(f.account_fields);
    if let Some(ct) = f.content_type {
        put_field(dst, b"Content-Type", ct);
    }
    if let Some(n) = f.content_length {
        dst.put_slice(b"Content-Length: ");
        write_decimal(dst, n);
        dst.put_slice(b"\r\n");
    }
    put_field(dst, b"Accept-Encoding", b"identity");
    if let Some(client) = f.forward {
        for (name, value) in client.headers() {
            if is_forwarded(client, name) {
                put_field(dst, name, value);
            }
        }
    }
    dst.put_slice(b"\r\n");
}

fn put_field(dst: &mut BytesMut, name: &[u8], value: &[u8]) {
    dst.reserve(name.len() + value.len() + 4);
    dst.put_slice(name);
    dst.put_slice(b": ");
    dst.put_slice(value);
    dst.put_slice(b"\r\n");
}

/// Whether the client's field `name` goes upstream: not one of
/// [`NOT_FORWARDED`], and not named by the client's `Connection` field —
/// "a proxy or gateway MUST parse a received Connection header field before
/// a message is forwarded and, for each connection-option in this field,
/// remove any header or trailer field(s) from the message with the same name
/// as the connection-option" (RFC 9110 §7.6.1).
fn is_forwarded(client: &RequestHead, name: &[u8]) -> bool {
    if NOT_FORWARDED
        .iter()
        .any(|n| name.eq_ignore_ascii_case(n.as_bytes()))
    {
        return false;
    }
    !client
        .headers()
        .filter(|(n, _)| n.eq_ignore_ascii_case(b"connection"))
        .flat_map(|(_, value)| value.split(|b| *b == b','))
        .any(|option| trim_ows(option).eq_ignore_ascii_case(name))
}

/// Strips optional whitespace (RFC 9110 §5.6.3) around a list element.
fn trim_ows(mut s: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = s {
        s = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = s {
        s = rest;
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::{parse_request, Limits};

    fn client(raw: &[u8]) -> RequestHead {
        let mut buf = BytesMut::from(raw);
        parse_request(&mut buf, &Limits::default())
            .expect("valid request")
            .expect("complete head")
    }

    fn head(target: &Target, f: &HeadFields<'_>) -> String {
        let mut dst = BytesMut::new();
        encode_head(&mut dst, target, f);
        String::from_utf8(dst.to_vec()).expect("ascii head")
    }

    fn fields<'a>(path: &'a str, forward: Option<&'a RequestHead>) -> HeadFields<'a> {
        HeadFields {
            method: "POST",
            path,
            authorization: None,
            account_fields: b"",
            content_type: None,
            forward,
            content_length: None,
        }
    }

    #[test]
    fn authority_omits_default_port_and_brackets_ipv6() {
        assert_eq!(authority(true, "api.example.com", 443), "api.example.com");
        assert_eq!(authority(false, "api.example.com", 80), "api.example.com");
        assert_eq!(
            authority(false, "api.example.com", 443),
            "api.example.com:443"
        );
        assert_eq!(authority(true, "localhost", 8443), "localhost:8443");
        assert_eq!(authority(false, "::1", 8080), "[::1]:8080");
        assert_eq!(authority(true, "[2001:db8::1]", 443), "[2001:db8::1]");
    }

    #[test]
    fn base_path_is_normalised_and_validated() {
        let t = Target::new(true, "h", 443, "/v1/").expect("valid");
        assert!(head(&t, &fields("/models", None)).starts_with("POST /v1/models HTTP/1.1\r\n"));
        let t = Target::new(false, "h", 80, "").expect("valid");
        assert!(head(&t, &fields("", None)).starts_with("POST / HTTP/1.1\r\nHost: h\r\n"));
        assert!(Target::new(false, "h", 80, "v1").is_err());
        assert!(Target::new(false, "h", 80, "/v1 x").is_err());
        assert!(Target::new(false, "h", 80, "/v1\r\nX: y").is_err());
        assert!(!is_valid_target(b"/a b"));
        assert!(is_valid_target(b"/chat/completions?x=1"));
    }

    #[test]
    fn fields_set_by_the_gateway_come_first_in_order() {
        let t = Target::new(false, "127.0.0.1", 9000, "/v1").expect("valid");
        let f = HeadFields {
            authorization: Some(b"Bearer sk-up"),
            content_type: Some(b"application/json"),
            content_length: Some(12),
            ..fields("/chat/completions", None)
        };
        assert_eq!(
            head(&t, &f),
            "POST /v1/chat/completions HTTP/1.1\r\n\
             Host: 127.0.0.1:9000\r\n\
             Authorization: Bearer sk-up\r\n\
             Content-Type: application/json\r\n\
             Content-Length: 12\r\n\
             Accept-Encoding: identity\r\n\r\n"
        );
    }

    #[test]
    fn hop_by_hop_credentials_and_connection_options_are_dropped() {
        let c = client(
            b"POST /v1/chat/completions HTTP/1.1\r\n\
              Host: gateway\r\nAuthorization: Bearer sk-client\r\nX-API-Key: sk-client\r\n\
              Cookie: a=b\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\
              TE: trailers\r\nTrailer: X-T\r\nUpgrade: h2c\r\n\
              Connection: keep-alive, X-Secret\r\nconnection: Upgrade ,\tx-other\r\n\
              Keep-Alive: timeout=5\r\nProxy-Connection: keep-alive\r\n\
              Proxy-Authorization: Basic x\r\nProxy-Authenticate: Basic\r\n\
              Accept-Encoding: gzip\r\nExpect: 100-continue\r\n\
              X-Secret: 1\r\nX-Other: 2\r\nUser-Agent: OpenAI/Python 1.0\r\n\
              OpenAI-Organization: org-1\r\nOpenAI-Project: proj-1\r\n\
              x-stainless-lang: python\r\n\r\n",
        );
        let t = Target::new(true, "api.example.com", 443, "/v1").expect("valid");
        assert_eq!(
            head(&t, &fields("/chat/completions", Some(&c))),
            "POST /v1/chat/completions HTTP/1.1\r\n\
             Host: api.example.com\r\n\
             Accept-Encoding: identity\r\n\
             User-Agent: OpenAI/Python 1.0\r\n\
             x-stainless-lang: python\r\n\r\n"
        );
    }
}
