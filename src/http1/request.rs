//! Request heads: the request line and header section (RFC 9112 §2–§5) and
//! the body framing they declare (RFC 9112 §6).
//!
//! Owns [`parse_request`] and [`RequestHead`]. Parsing is a pure function of
//! the read buffer: the head is split off the front as one frozen `Bytes`,
//! and the body bytes are left for [`BodyDecoder`](super::BodyDecoder). It
//! must not read sockets, route, or look at the body.

use bytes::{Bytes, BytesMut};

use super::fields::{self, Fields, Span};
use super::{BodyFraming, HttpError, Limits};

/// Size of the stack array handed to httparse. `Limits::max_headers` above
/// this is clamped: the SPEC default (100) is the most a client gets.
const HEADER_ARRAY_LEN: usize = 100;

/// The request method (RFC 9110 §9). Methods are case-sensitive, so `get`
/// is [`Method::Other`]; its text is in [`RequestHead::method_bytes`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    Get,
    Head,
    Post,
    Put,
    Delete,
    Patch,
    Options,
    Other,
}

impl Method {
    /// The method's name (`OTHER` for one this server does not know).
    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Head => "HEAD",
            Method::Post => "POST",
            Method::Put => "PUT",
            Method::Delete => "DELETE",
            Method::Patch => "PATCH",
            Method::Options => "OPTIONS",
            Method::Other => "OTHER",
        }
    }

    fn from_bytes(m: &[u8]) -> Method {
        match m {
            b"GET" => Method::Get,
            b"HEAD" => Method::Head,
            b"POST" => Method::Post,
            b"PUT" => Method::Put,
            b"DELETE" => Method::Delete,
            b"PATCH" => Method::Patch,
            b"OPTIONS" => Method::Options,
            _ => Method::Other,
        }
    }
}

/// The protocol version of a message; httparse accepts only these two.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Version {
    Http10,
    Http11,
}

impl Version {
    pub(crate) fn from_minor(minor: Option<u8>) -> Result<Version, HttpError> {
        match minor {
            Some(0) => Ok(Version::Http10),
            Some(1) => Ok(Version::Http11),
            _ => Err(HttpError::Malformed("invalid HTTP version")),
        }
    }
}

/// A parsed request head. The whole head is one frozen `Bytes`; every
/// accessor returns a slice of it, never a copy.
#[derive(Clone, Debug)]
pub struct RequestHead {
    bytes: Bytes,
    method: Method,
    method_span: Span,
    version: Version,
    target: Span,
    /// The origin-form part of `target` (path and query): the target
    /// itself, or what follows the authority of an absolute-form target.
    origin: Span,
    fields: Fields,
    framing: BodyFraming,
}

impl RequestHead {
    pub fn method(&self) -> Method {
        self.method
    }

    /// The method as sent, for [`Method::Other`].
    pub fn method_bytes(&self) -> &[u8] {
        self.method_span.get(&self.bytes)
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The raw request-target (RFC 9112 §3.2), usually origin-form `/p?q`.
    pub fn target(&self) -> &[u8] {
        self.target.get(&self.bytes)
    }

    /// The path of the target: before the first `?`, and for an
    /// absolute-form target (`http://host/p?q`, RFC 9112 §3.2.2) after its
    /// authority, which is otherwise ignored: the gateway serves its own
    /// routes and never proxies to the host named there. An empty path is
    /// `/` (RFC 9110 §4.2.3).
    pub fn path(&self) -> &[u8] {
        let t = self.origin.get(&self.bytes);
        let path = match memchr::memchr(b'?', t) {
            Some(q) => t.get(..q).unwrap_or(t),
            None => t,
        };
        match path.is_empty() {
            true => b"/",
            false => path,
        }
    }

    /// The target after the first `?`, without it.
    pub fn query(&self) -> Option<&[u8]> {
        let t = self.origin.get(&self.bytes);
        memchr::memchr(b'?', t).and_then(|q| t.get(q + 1..))
    }

    /// The first field called `name` (ASCII case-insensitive); httparse has
    /// already trimmed the surrounding whitespace of the value.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.fields
            .first(&self.bytes, name)
            .map(|v| v.get(&self.bytes))
    }

    /// Every field as `(name, value)`, in wire order.
    pub fn headers(&self) -> impl Iterator<Item = (&[u8], &[u8])> {
        self.fields.iter(&self.bytes)
    }

    /// The first field called `name` as a zero-copy slice of the head.
    pub fn header_bytes(&self, name: &str) -> Option<Bytes> {
        self.fields
            .first(&self.bytes, name)
            .map(|v| self.bytes.slice(v.range()))
    }

    /// How the body is delimited, validated at parse time (RFC 9112 §6).
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the connection may carry another request after this one
    /// (RFC 9112 §9.3). HTTP/1.0 keep-alive is an old extension we do not
    /// offer, so a 1.0 client always gets its connection closed.
    pub fn keep_alive(&self) -> bool {
        match self.version {
            Version::Http10 => false,
            Version::Http11 => !self.fields.has_token(&self.bytes, "connection", "close"),
        }
    }

    /// `Expect: 100-continue` (RFC 9110 §10.1.1, compared case-insensitively).
    pub fn expect_continue(&self) -> bool {
        self.fields.has_token(&self.bytes, "expect", "100-continue")
    }

    /// The whole head as received, leading empty lines included.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Parses one request head from the front of `buf`.
///
/// `Ok(None)` means the head is not complete yet: read more into `buf` and
/// call again. On success the head bytes are split off the front of `buf`
/// (`split_to` + `freeze`, no copy) and the body bytes stay in `buf`.
///
/// A caller should never let `buf` grow past `limits.max_head_bytes` plus one
/// read before calling this again: a partial head longer than the limit is
/// answered with [`HttpError::HeadTooLarge`] (or [`HttpError::UriTooLong`]
/// when the request-target alone is over its limit).
pub fn parse_request(
    buf: &mut BytesMut,
    limits: &Limits,
) -> Result<Option<RequestHead>, HttpError> {
    let mut storage = [httparse::EMPTY_HEADER; HEADER_ARRAY_LEN];
    let slots = limits.max_headers.min(HEADER_ARRAY_LEN);
    let mut req = httparse::Request::new(&mut storage[..slots]);
    // httparse skips empty lines before the request line (RFC 9112 §2.2),
    // rejects whitespace before a colon (§5.1) and obs-fold (§5.2).
    let head_len = match req.parse(buf)? {
        httparse::Status::Partial => {
            check_partial(buf, limits)?;
            return Ok(None);
        }
        httparse::Status::Complete(n) => n,
    };
    let (Some(method), Some(target)) = (req.method, req.path) else {
        return Err(HttpError::Malformed("incomplete request line"));
    };
    // The more specific answer first: a long target is 414 even when the head
    // as a whole is also over its limit.
    if target.len() > limits.max_uri_bytes {
        return Err(HttpError::UriTooLong);
    }
    if head_len > limits.max_head_bytes || u32::try_from(head_len).is_err() {
        return Err(HttpError::HeadTooLarge);
    }
    let version = Version::from_minor(req.version)?;
    let base = buf.get(..head_len).unwrap_or_default();
    let method_span = Span::of(base, method.as_bytes())?;
    let target = Span::of(base, target.as_bytes())?;
    let fields = Fields::record(base, req.headers)?;
    let method = Method::from_bytes(method_span.get(base));

    // RFC 9112 §3.2: an HTTP/1.1 request with no Host field, more than one,
    // or one whose value is not a valid `uri-host [":" port]` must get 400
    // (HTTP/1.0 predates the field, so there it may be absent).
    let host = {
        let mut hosts = fields.spans_of(base, "host");
        (hosts.next(), hosts.next())
    };
    match host {
        (_, Some(_)) => return Err(HttpError::Malformed("more than one host header")),
        (None, None) if version == Version::Http11 => {
            return Err(HttpError::Malformed("missing host header"))
        }
        (Some(host), None) if !is_authority(host.get(base)) => {
            return Err(HttpError::Malformed("invalid host header"))
        }
        _ => {}
    }
    let origin = origin_form(target, base)?;
    let framing = request_framing(version, &fields, base, limits)?;

    // Every check passed on the head in place (a refused head stays in
    // `buf`, where the connection can still read which route it meant);
    // the offsets are recorded, and httparse's borrow of `buf` has ended.
    let bytes = buf.split_to(head_len).freeze();
    Ok(Some(RequestHead {
        bytes,
        method,
        method_span,
        version,
        target,
        origin,
        fields,
        framing,
    }))
}

/// The origin-form part of `target`: the target itself, or for the
/// absolute-form (RFC 9112 §3.2.2, which a server MUST accept) what follows
/// the authority of an `http` or `https` URI. An absolute-form authority
/// must be a valid, non-empty host (RFC 9110 §4.2.1) without userinfo
/// (§4.2.4), else 400.
fn origin_form(target: Span, head: &[u8]) -> Result<Span, HttpError> {
    let t = target.get(head);
    let scheme = match t.iter().position(|&b| b == b':') {
        Some(n)
            if t[..n].eq_ignore_ascii_case(b"http") || t[..n].eq_ignore_ascii_case(b"https") =>
        {
            n
        }
        _ => return Ok(target),
    };
    let Some(rest) = t.get(scheme + 1..).and_then(|r| r.strip_prefix(b"//")) else {
        return Err(HttpError::Malformed("invalid absolute-form request target"));
    };
    let authority_len = rest
        .iter()
        .position(|&b| b == b'/' || b == b'?')
        .unwrap_or(rest.len());
    let authority = &rest[..authority_len];
    if authority.is_empty() || !is_authority(authority) {
        return Err(HttpError::Malformed("invalid host in the request target"));
    }
    Span::of(head, &rest[authority_len..]).map(|s| match s.range().is_empty() {
        // An empty path leaves an empty span, read as `/` by `path()`.
        true => Span::default(),
        false => s,
    })
}

/// Whether `v` is `uri-host [ ":" port ]` (RFC 9110 §7.2, RFC 3986 §3.2.2):
/// an IP-literal in brackets, or a reg-name / IPv4 address of unreserved,
/// percent-encoded and sub-delim characters; then optional port digits.
/// Empty is valid: a target without authority is sent with an empty Host.
fn is_authority(v: &[u8]) -> bool {
    let (host, port) = match v.first() {
        Some(b'[') => match memchr::memchr(b']', v) {
            Some(end) => {
                let inner = &v[1..end];
                let ok = !inner.is_empty()
                    && inner
                        .iter()
                        .all(|&b| b.is_ascii_alphanumeric() || b".:-_~!$&'()*+,;=".contains(&b));
                if !ok {
                    return false;
                }
                (&v[..0], &v[end + 1..])
            }
            None => return false,
        },
        _ => match memchr::memrchr(b':', v) {
            Some(colon) => (&v[..colon], &v[colon..]),
            None => (v, &v[v.len()..]),
        },
    };
    let port_ok = match port.split_first() {
        None => true,
        Some((b':', digits)) => digits.iter().all(u8::is_ascii_digit),
        Some(_) => false,
    };
    let mut i = 0;
    while i < host.len() {
        match host[i] {
            b'%' => {
                let hex = host.get(i + 1..i + 3);
                if !hex.is_some_and(|h| h.iter().all(u8::is_ascii_hexdigit)) {
                    return false;
                }
                i += 3;
            }
            b if b.is_ascii_alphanumeric() || b"-._~!$&'()*+,;=".contains(&b) => i += 1,
            _ => return false,
        }
    }
    port_ok
}

/// Limits on a head that is not complete yet. The request-target is looked
/// at first so that a long URI is answered 414 before the head reaches its
/// own limit, as soon as the target alone is too long.
fn check_partial(buf: &[u8], limits: &Limits) -> Result<(), HttpError> {
    // Skip the empty lines httparse skips (RFC 9112 §2.2).
    let start = buf
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(buf.len());
    let line = buf.get(start..).unwrap_or_default();
    let line = match memchr::memchr(b'\n', line) {
        Some(end) => line.get(..end).unwrap_or_default(),
        None => line,
    };
    // request-line = method SP request-target SP HTTP-version (RFC 9112 §3)
    if let Some(sp) = memchr::memchr(b' ', line) {
        let rest = line.get(sp + 1..).unwrap_or_default();
        let target_len = memchr::memchr2(b' ', b'\r', rest).unwrap_or(rest.len());
        if target_len > limits.max_uri_bytes {
            return Err(HttpError::UriTooLong);
        }
    }
    if buf.len() > limits.max_head_bytes {
        return Err(HttpError::HeadTooLarge);
    }
    Ok(())
}

/// RFC 9112 §6.3, the rules that apply to a request.
fn request_framing(
    version: Version,
    fields: &Fields,
    head: &[u8],
    limits: &Limits,
) -> Result<BodyFraming, HttpError> {
    if fields.first(head, "transfer-encoding").is_some() {
        // RFC 9112 §6.1: a Transfer-Encoding in an HTTP/1.0 message means the
        // framing is faulty (a 1.0 hop in between would not have decoded it).
        if version == Version::Http10 {
            return Err(HttpError::Malformed(
                "transfer-encoding in an HTTP/1.0 request",
            ));
        }
        // RFC 9112 §6.1 and §6.3 rule 3: a server MAY let Transfer-Encoding
        // win, but the pair is the classic request smuggling vector (CL.TE /
        // TE.CL), so a gateway rejects it outright and closes.
        if fields.first(head, "content-length").is_some() {
            return Err(HttpError::Malformed(
                "content-length and transfer-encoding both present",
            ));
        }
        fields::check_transfer_encoding(fields, head)?;
        return Ok(BodyFraming::Chunked);
    }
    match fields::content_length(fields, head)? {
        // Rejected before a single body byte is read (docs/wire.md §6).
        Some(n) if n > limits.max_body_bytes => Err(HttpError::BodyTooLarge),
        Some(n) => Ok(BodyFraming::Length(n)),
        // RFC 9112 §6.3 rule 7: no Content-Length or Transfer-Encoding in a
        // request means a body of length zero.
        None => Ok(BodyFraming::Empty),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_util::schedules;
    use crate::http1::{BodyDecoder, Frame};

    /// Everything a test compares about one parsed request.
    #[derive(Debug, PartialEq)]
    struct Msg {
        method: Method,
        version: Version,
        target: Vec<u8>,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        framing: BodyFraming,
        keep_alive: bool,
        body: Vec<u8>,
    }

    /// A connection driver in miniature: heads, then bodies, pipelined.
    struct Driver {
        buf: BytesMut,
        limits: Limits,
        current: Option<(RequestHead, BodyDecoder, Vec<u8>)>,
        done: Vec<Msg>,
    }

    impl Driver {
        fn new(limits: Limits) -> Self {
            Driver {
                buf: BytesMut::new(),
                limits,
                current: None,
                done: Vec::new(),
            }
        }

        fn feed(&mut self, bytes: &[u8]) -> Result<(), HttpError> {
            self.buf.extend_from_slice(bytes);
            loop {
                if let Some((_, decoder, body)) = &mut self.current {
                    match decoder.decode(&mut self.buf)? {
                        Some(Frame::Data(d)) => body.extend_from_slice(&d),
                        Some(Frame::End) => {
                            let Some((head, _, body)) = self.current.take() else {
                                unreachable!()
                            };
                            self.done.push(Msg {
                                method: head.method(),
                                version: head.version(),
                                target: head.target().to_vec(),
                                headers: head
                                    .headers()
                                    .map(|(n, v)| (n.to_vec(), v.to_vec()))
                                    .collect(),
                                framing: head.framing(),
                                keep_alive: head.keep_alive(),
                                body,
                            });
                        }
                        None => return Ok(()),
                    }
                } else {
                    match parse_request(&mut self.buf, &self.limits)? {
                        Some(head) => {
                            let decoder = BodyDecoder::new(head.framing(), &self.limits);
                            self.current = Some((head, decoder, Vec::new()));
                        }
                        None => return Ok(()),
                    }
                }
            }
        }
    }

    /// Parses `input` whole, at every two-way split and byte by byte, checks
    /// that all agree, and that no message completes before its last byte.
    fn parse_all_ways(input: &[u8], limits: &Limits) -> Result<Vec<Msg>, HttpError> {
        let mut first: Option<Result<Vec<Msg>, HttpError>> = None;
        for schedule in schedules(input) {
            let mut d = Driver::new(limits.clone());
            let mut result = Ok(());
            for piece in &schedule {
                result = d.feed(piece);
                if result.is_err() {
                    break;
                }
            }
            let got = result.map(|()| std::mem::take(&mut d.done));
            match &first {
                None => first = Some(got),
                Some(expected) => assert_eq!(
                    &got,
                    expected,
                    "split {:?}",
                    schedule.iter().map(|p| p.len()).collect::<Vec<_>>()
                ),
            }
        }
        first.expect("at least one schedule")
    }

    fn one(input: &[u8]) -> Msg {
        let mut msgs = parse_all_ways(input, &Limits::default()).expect("valid request");
        assert_eq!(msgs.len(), 1);
        // Byte by byte, nothing completes before the final byte.
        let mut d = Driver::new(Limits::default());
        for &b in &input[..input.len() - 1] {
            d.feed(&[b]).unwrap();
        }
        assert!(d.done.is_empty());
        msgs.remove(0)
    }

    fn err(input: &[u8]) -> HttpError {
        err_with(input, &Limits::default())
    }

    fn err_with(input: &[u8], limits: &Limits) -> HttpError {
        parse_all_ways(input, limits).expect_err("must be rejected")
    }

    #[test]
    fn get() {
        let m = one(b"GET /v1/models?api_key=k&x=1 HTTP/1.1\r\nHost: a\r\nAccept: */*\r\n\r\n");
        assert_eq!(m.method, Method::Get);
        assert_eq!(m.version, Version::Http11);
        assert_eq!(m.target, b"/v1/models?api_key=k&x=1");
        assert_eq!(m.framing, BodyFraming::Empty);
        assert!(m.keep_alive);
        assert_eq!(m.headers.len(), 2);
        assert!(m.body.is_empty());
    }

    #[test]
    fn accessors() {
        let mut buf = BytesMut::from(
            &b"PATCH /a/b?c=d?e HTTP/1.1\r\nHOST:  h \r\nX-Api-Key: k1\r\nx-api-key: k2\r\nExpect: 100-Continue\r\nConnection: keep-alive, Close\r\n\r\nbody"[..],
        );
        let head = parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(&buf[..], b"body");
        assert_eq!(head.method(), Method::Patch);
        assert_eq!(head.method_bytes(), b"PATCH");
        assert_eq!(head.path(), b"/a/b");
        assert_eq!(head.query(), Some(&b"c=d?e"[..]));
        assert_eq!(head.header("host"), Some(&b"h"[..]));
        assert_eq!(head.header("X-API-KEY"), Some(&b"k1"[..]));
        assert_eq!(head.header_bytes("x-api-key").as_deref(), Some(&b"k1"[..]));
        assert_eq!(head.header("missing"), None);
        assert!(head.expect_continue());
        assert!(!head.keep_alive());
        let names: Vec<&[u8]> = head.headers().map(|(n, _)| n).collect();
        assert_eq!(
            names,
            [
                &b"HOST"[..],
                b"X-Api-Key",
                b"x-api-key",
                b"Expect",
                b"Connection"
            ]
        );

        let mut buf = BytesMut::from(&b"FOO / HTTP/1.1\r\nHost: h\r\n\r\n"[..]);
        let head = parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        assert_eq!(head.method(), Method::Other);
        assert_eq!(head.method_bytes(), b"FOO");
        assert_eq!(head.query(), None);
        assert!(!head.expect_continue());
    }

    #[test]
    fn header_bytes_is_zero_copy() {
        let mut buf =
            BytesMut::from(&b"GET / HTTP/1.1\r\nHost: h\r\nAuthorization: Bearer sk\r\n\r\n"[..]);
        let head = parse_request(&mut buf, &Limits::default())
            .unwrap()
            .unwrap();
        let v = head.header_bytes("authorization").unwrap();
        let whole = head.as_bytes();
        let offset = v.as_ptr() as usize - whole.as_ptr() as usize;
        assert_eq!(&whole[offset..offset + v.len()], b"Bearer sk");
    }

    #[test]
    fn post_with_content_length() {
        let m = one(b"POST /v1/chat/completions HTTP/1.1\r\nHost: a\r\nContent-Length: 11\r\n\r\n{\"a\":\"bcd\"}");
        assert_eq!(m.method, Method::Post);
        assert_eq!(m.framing, BodyFraming::Length(11));
        assert_eq!(m.body, b"{\"a\":\"bcd\"}");
    }

    #[test]
    fn post_chunked() {
        let m = one(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=\"a b\"\r\n world\r\n0\r\nX-T: 1\r\n\r\n");
        assert_eq!(m.framing, BodyFraming::Chunked);
        assert_eq!(m.body, b"hello world");
    }

    #[test]
    fn transfer_encoding_is_case_insensitive_and_ows_tolerant() {
        let m =
            one(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: , Chunked \r\n\r\n0\r\n\r\n");
        assert_eq!(m.framing, BodyFraming::Chunked);
    }

    #[test]
    fn pipelined_requests() {
        let input = b"POST /a HTTP/1.1\r\nHost: h\r\nContent-Length: 3\r\n\r\nabcGET /b HTTP/1.1\r\nHost: h\r\n\r\nPOST /c HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n";
        let msgs = parse_all_ways(input, &Limits::default()).unwrap();
        let targets: Vec<&[u8]> = msgs.iter().map(|m| &m.target[..]).collect();
        assert_eq!(targets, [&b"/a"[..], b"/b", b"/c"]);
        assert_eq!(msgs[0].body, b"abc");
        assert_eq!(msgs[2].body, b"z");
    }

    #[test]
    fn http10() {
        let m = one(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n");
        assert_eq!(m.version, Version::Http10);
        assert!(!m.keep_alive);
        let m = one(b"POST / HTTP/1.0\r\nContent-Length: 2\r\n\r\nok");
        assert_eq!(m.body, b"ok");
    }

    #[test]
    fn leading_empty_lines_are_skipped() {
        let m = one(b"\r\n\r\n\nGET /x HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(m.target, b"/x");
    }

    #[test]
    fn bare_lf_line_endings_in_the_head_are_accepted() {
        // RFC 9112 §2.2: a recipient MAY recognize a single LF as a line end.
        let m = one(b"GET / HTTP/1.1\nHost: a\n\n");
        assert_eq!(m.headers, [(b"Host".to_vec(), b"a".to_vec())]);
    }

    #[test]
    fn te_and_cl_both_present_is_400() {
        let e = err(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        );
        assert_eq!(
            e,
            HttpError::Malformed("content-length and transfer-encoding both present")
        );
        assert_eq!(e.status(), 400);
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n");
        assert_eq!(e.status(), 400);
    }

    #[test]
    fn te_on_http10_is_400() {
        let e = err(b"POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n");
        assert_eq!(
            e,
            HttpError::Malformed("transfer-encoding in an HTTP/1.0 request")
        );
    }

    #[test]
    fn te_not_ending_in_chunked_is_400() {
        for te in [
            "gzip",
            "chunked, gzip",
            "",
            "chunked;q=1",
            "chunked chunked",
        ] {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: {te}\r\n\r\n");
            let e = err(input.as_bytes());
            assert_eq!(e.status(), 400, "{te:?}");
        }
        // Two fields are one list (RFC 9110 §5.3): final coding is gzip.
        let e = err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
        );
        assert_eq!(
            e,
            HttpError::Malformed("transfer-encoding does not end in chunked")
        );
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked, chunked\r\n\r\n");
        assert_eq!(e, HttpError::Malformed("chunked applied more than once"));
    }

    #[test]
    fn other_codings_before_chunked_are_501() {
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip, chunked\r\n\r\n");
        assert_eq!(e, HttpError::UnsupportedTransferCoding);
        assert_eq!(e.status(), 501);
        let e = err(
            b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n",
        );
        assert_eq!(e.status(), 501);
    }

    #[test]
    fn duplicate_or_bad_content_length_is_400() {
        for head in [
            "Content-Length: 5\r\nContent-Length: 5\r\n",
            "Content-Length: 5\r\nContent-Length: 6\r\n",
            "Content-Length: 5, 5\r\n",
            "Content-Length: \r\n",
            "Content-Length: +5\r\n",
            "Content-Length: -1\r\n",
            "Content-Length: 0x10\r\n",
            "Content-Length: 5 5\r\n",
            "Content-Length: 99999999999999999999999\r\n",
        ] {
            let input = format!("POST / HTTP/1.1\r\nHost: h\r\n{head}\r\nhello");
            let e = err(input.as_bytes());
            assert!(matches!(e, HttpError::Malformed(_)), "{head:?}: {e:?}");
            assert_eq!(e.status(), 400);
        }
    }

    #[test]
    fn content_length_over_limit_is_413() {
        let limits = Limits {
            max_body_bytes: 10,
            ..Limits::default()
        };
        let e = err_with(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 11\r\n\r\n",
            &limits,
        );
        assert_eq!(e, HttpError::BodyTooLarge);
        assert_eq!(e.status(), 413);
        let m = parse_all_ways(
            b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n\r\n0123456789",
            &limits,
        )
        .unwrap();
        assert_eq!(m[0].body.len(), 10);
        // Only the limit matters, not the size of the number.
        let e = err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 18446744073709551615\r\n\r\n");
        assert_eq!(e, HttpError::BodyTooLarge);
    }

    #[test]
    fn too_many_headers_is_431() {
        let limits = Limits {
            max_headers: 3,
            ..Limits::default()
        };
        let ok = parse_all_ways(
            b"GET / HTTP/1.1\r\nHost: h\r\nB: 2\r\nC: 3\r\n\r\n",
            &limits,
        )
        .unwrap();
        assert_eq!(ok[0].headers.len(), 3);
        let e = err_with(
            b"GET / HTTP/1.1\r\nHost: h\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n",
            &limits,
        );
        assert_eq!(e, HttpError::TooManyHeaders);
        assert_eq!(e.status(), 431);

        // The default: 100 pass (Host and 99 more), 101 do not.
        let mut input = b"GET / HTTP/1.1\r\nHost: h\r\n".to_vec();
        for i in 1..100 {
            input.extend_from_slice(format!("H{i}: v\r\n").as_bytes());
        }
        let mut buf = BytesMut::from(&input[..]);
        buf.extend_from_slice(b"\r\n");
        assert!(parse_request(&mut buf, &Limits::default())
            .unwrap()
            .is_some());
        input.extend_from_slice(b"H100: v\r\n\r\n");
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            parse_request(&mut buf, &Limits::default()).unwrap_err(),
            HttpError::TooManyHeaders
        );
        // A limit above the array size is clamped, not a panic.
        let limits = Limits {
            max_headers: 10_000,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&input[..]);
        assert_eq!(
            parse_request(&mut buf, &limits).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }

    #[test]
    fn head_over_limit_is_431() {
        let limits = Limits {
            max_head_bytes: 64,
            ..Limits::default()
        };
        let input = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX-Big: {}\r\n\r\n",
            "a".repeat(60)
        );
        let e = err_with(input.as_bytes(), &limits);
        assert_eq!(e, HttpError::HeadTooLarge);
        assert_eq!(e.status(), 431);
        // Exactly at the limit is fine.
        let input = format!(
            "GET / HTTP/1.1\r\nHost: h\r\nX: {}\r\n\r\n",
            "a".repeat(64 - 32)
        );
        assert_eq!(input.len(), 64);
        assert!(parse_all_ways(input.as_bytes(), &limits).is_ok());
        // Endless empty lines are bounded by the same limit.
        let e = err_with(&[b'\n'; 100], &limits);
        assert_eq!(e, HttpError::HeadTooLarge);
    }

    #[test]
    fn uri_over_limit_is_414() {
        let limits = Limits {
            max_uri_bytes: 16,
            max_head_bytes: 200,
            ..Limits::default()
        };
        let ok = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(15));
        assert!(parse_all_ways(ok.as_bytes(), &limits).is_ok());
        let long = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(16));
        let e = err_with(long.as_bytes(), &limits);
        assert_eq!(e, HttpError::UriTooLong);
        assert_eq!(e.status(), 414);
        // A target still arriving is answered as soon as it is too long,
        // before the head limit is reached.
        let mut buf = BytesMut::from(format!("GET /{}", "a".repeat(16)).as_bytes());
        assert_eq!(
            parse_request(&mut buf, &limits).unwrap_err(),
            HttpError::UriTooLong
        );
        // A target longer than the whole head limit is still 414.
        let huge = format!("GET /{} HTTP/1.1\r\nHost: h\r\n\r\n", "a".repeat(300));
        assert_eq!(err_with(huge.as_bytes(), &limits), HttpError::UriTooLong);
    }

    #[test]
    fn bad_bytes_are_400() {
        for input in [
            &b"GET / HTTP/1.1\r\nHost: h\r\nBad Name: x\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: h\r\nName : x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\x00b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\rb\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: h\r\nX: a\r\n folded\r\n\r\n",
            b"GET / HTTP/2.0\r\n\r\n",
            b"GET /\x7f HTTP/1.1\r\nHost: h\r\n\r\n",
            b"G(T / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"\r\rGET / HTTP/1.1\r\nHost: h\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n",
        ] {
            let e = err(input);
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(e.status(), 400);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(input in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            crate::http1::fuzz_parse_request(&input);
        }

        #[test]
        fn request_like_bytes_never_panic(
            prefix in proptest::sample::select(vec![
                "GET / HTTP/1.1\r\nHost: h\r\n",
                "POST /v1/chat/completions HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n",
                "POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 10\r\n",
                "\r\nPUT /x?y HTTP/1.0\r\nHost: h\r\n",
            ]),
            tail in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..256),
        ) {
            let mut input = prefix.as_bytes().to_vec();
            input.extend_from_slice(&tail);
            crate::http1::fuzz_parse_request(&input);
        }

        #[test]
        fn generated_requests_parse_at_any_split(
            target in "/[a-zA-Z0-9/_.-]{0,40}(\\?[a-z0-9=&]{0,20})?",
            headers in proptest::collection::vec(("X-[A-Za-z0-9-]{1,16}", "([!-~]([ -~]{0,28}[!-~])?)?"), 0..12),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..128),
            cut in proptest::prelude::any::<usize>(),
        ) {
            let mut input = format!("POST {target} HTTP/1.1\r\n").into_bytes();
            for (n, v) in &headers {
                input.extend_from_slice(format!("{n}: {v}\r\n").as_bytes());
            }
            input.extend_from_slice(format!("Host: h\r\nContent-Length: {}\r\n\r\n", body.len()).as_bytes());
            input.extend_from_slice(&body);
            let cut = cut % (input.len() + 1);
            let mut d = Driver::new(Limits::default());
            d.feed(&input[..cut]).unwrap();
            d.feed(&input[cut..]).unwrap();
            proptest::prop_assert_eq!(d.done.len(), 1);
            let m = &d.done[0];
            proptest::prop_assert_eq!(&m.target, target.as_bytes());
            proptest::prop_assert_eq!(&m.body, &body);
            let got: Vec<(Vec<u8>, Vec<u8>)> = m.headers[..headers.len()].to_vec();
            let want: Vec<(Vec<u8>, Vec<u8>)> = headers.iter().map(|(n, v)| (n.clone().into_bytes(), v.clone().into_bytes())).collect();
            proptest::prop_assert_eq!(got, want);
            proptest::prop_assert!(d.buf.is_empty());
        }
    }

    #[test]
    fn host_is_required_once_and_valid_on_http_1_1() {
        // RFC 9112 §3.2: missing (on 1.1), repeated or invalid is 400.
        for input in [
            &b"GET / HTTP/1.1\r\n\r\n"[..],
            b"GET / HTTP/1.1\r\nHost: evil.example/../admin\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a@b\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a:80x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: ::1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: [::1]x\r\n\r\n",
            b"GET / HTTP/1.1\r\nHost: a%zz\r\n\r\n",
        ] {
            let e = err(input);
            assert_eq!(e.status(), 400, "{:?}", String::from_utf8_lossy(input));
        }
        for host in [
            "",
            "gw",
            "gw:8080",
            "127.0.0.1:1",
            "[::1]",
            "[::1]:8080",
            "a-b.c_d~e",
            "x%41y",
            "a.example.",
        ] {
            let input = format!("GET / HTTP/1.1\r\nHost: {host}\r\n\r\n");
            assert_eq!(one(input.as_bytes()).target, b"/", "{host:?}");
        }
        // HTTP/1.0 predates Host.
        assert_eq!(one(b"GET /health HTTP/1.0\r\n\r\n").target, b"/health");
    }

    #[test]
    fn absolute_form_targets_are_served_as_their_path() {
        // RFC 9112 §3.2.2: a server MUST accept the absolute-form; the
        // authority in it names no other host to go to.
        let head = |input: &[u8]| {
            let mut buf = BytesMut::from(input);
            parse_request(&mut buf, &Limits::default())
                .unwrap()
                .unwrap()
        };
        let h = head(b"POST http://gw/v1/chat/completions?x=1 HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(h.path(), b"/v1/chat/completions");
        assert_eq!(h.query(), Some(&b"x=1"[..]));
        assert_eq!(h.target(), b"http://gw/v1/chat/completions?x=1");
        let h = head(b"GET HTTPS://other.example:443 HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!(h.path(), b"/");
        let h = head(b"GET http://[::1]:8080?a HTTP/1.1\r\nHost: gw\r\n\r\n");
        assert_eq!((h.path(), h.query()), (&b"/"[..], Some(&b"a"[..])));
        for input in [
            &b"GET http:///x HTTP/1.1\r\nHost: gw\r\n\r\n"[..],
            b"GET http://user@gw/x HTTP/1.1\r\nHost: gw\r\n\r\n",
            b"GET http:/x HTTP/1.1\r\nHost: gw\r\n\r\n",
            b"GET http://gw/x HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(
                err(input).status(),
                400,
                "{:?}",
                String::from_utf8_lossy(input)
            );
        }
        // Other schemes and forms stay as they are (and route nowhere).
        assert_eq!(
            head(b"GET ftp://gw/x HTTP/1.1\r\nHost: gw\r\n\r\n").path(),
            b"ftp://gw/x"
        );
    }

    #[test]
    fn a_rejected_request_leaves_the_parser_usable() {
        // The connection is closed after an error, but the parser keeps no
        // state: the next connection's request parses normally.
        let _ = err(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n");
        let m = one(b"GET /health HTTP/1.1\r\nHost: h\r\n\r\n");
        assert_eq!(m.target, b"/health");
    }
}
