//! Response heads from upstream: the status line and header section
//! (RFC 9112 §4) and the body framing they imply (RFC 9112 §6.3).
//!
//! Owns [`parse_response`] and [`ResponseHead`], used by the upstream client.
//! Same storage as requests: one frozen `Bytes` per head, fields as offsets.
//! As a proxy we refuse any framing two parsers could read differently; the
//! caller answers 502 and closes the upstream connection. It must not read
//! sockets or decide retries.

use bytes::{Buf, Bytes, BytesMut};

use super::fields::{self, Fields, Span};
use super::{BodyFraming, HttpError, Limits, Version};

/// Size of the stack array handed to httparse (see `request.rs`).
const HEADER_ARRAY_LEN: usize = 100;

/// A parsed final response head.
#[derive(Clone, Debug)]
pub struct ResponseHead {
    bytes: Bytes,
    version: Version,
    status: u16,
    reason: Span,
    fields: Fields,
    framing: BodyFraming,
}

impl ResponseHead {
    pub fn status(&self) -> u16 {
        self.status
    }

    pub fn version(&self) -> Version {
        self.version
    }

    /// The reason phrase as sent (may be empty).
    pub fn reason(&self) -> &[u8] {
        self.reason.get(&self.bytes)
    }

    /// The first field called `name` (ASCII case-insensitive).
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

    /// How the body is delimited, validated at parse time.
    pub fn framing(&self) -> BodyFraming {
        self.framing
    }

    /// Whether the upstream connection may be reused after this response
    /// (RFC 9112 §9.3): not after a close-delimited body, not with
    /// `Connection: close`, and for HTTP/1.0 only with `Connection: keep-alive`.
    pub fn keep_alive(&self) -> bool {
        if self.framing == BodyFraming::CloseDelimited
            || self.fields.has_token(&self.bytes, "connection", "close")
        {
            return false;
        }
        match self.version {
            Version::Http11 => true,
            Version::Http10 => self
                .fields
                .has_token(&self.bytes, "connection", "keep-alive"),
        }
    }

    /// The whole head as received.
    pub fn as_bytes(&self) -> &Bytes {
        &self.bytes
    }
}

/// Parses the final response head from the front of `buf`.
///
/// Interim 1xx responses other than 101 (RFC 9110 §15.2) that are complete
/// in `buf` are consumed and skipped; a 101 is returned as the final head.
/// `Ok(None)` means read more. `head_request` says the request was HEAD, so
/// the response has no body whatever its headers say (RFC 9112 §6.3 rule 1).
///
/// `Limits::max_body_bytes` is not applied to Content-Length here; the
/// [`BodyDecoder`](super::BodyDecoder) built with the caller's limits does it.
pub fn parse_response(
    buf: &mut BytesMut,
    limits: &Limits,
    head_request: bool,
) -> Result<Option<ResponseHead>, HttpError> {
    let slots = limits.max_headers.min(HEADER_ARRAY_LEN);
    loop {
        let mut storage = [httparse::EMPTY_HEADER; HEADER_ARRAY_LEN];
        let mut res = httparse::Response::new(&mut storage[..slots]);
        let head_len = match res.parse(buf)? {
            httparse::Status::Partial => {
                if buf.len() > limits.max_head_bytes {
                    return Err(HttpError::HeadTooLarge);
                }
                return Ok(None);
            }
            httparse::Status::Complete(n) => n,
        };
        if head_len > limits.max_head_bytes || u32::try_from(head_len).is_err() {
            return Err(HttpError::HeadTooLarge);
        }
        let version = Version::from_minor(res.version)?;
        let status = res.code.unwrap_or(0);
        // RFC 9110 §15: status codes are 100..=599.
        if !(100..=599).contains(&status) {
            return Err(HttpError::Malformed("invalid status code"));
        }
        if (100..200).contains(&status) && status != 101 {
            // An interim response has no body (RFC 9112 §6.3 rule 1); the
            // final response follows on the same connection.
            buf.advance(head_len);
            continue;
        }
        let base = buf.get(..head_len).unwrap_or_default();
        let reason = Span::of(base, res.reason.unwrap_or_default().as_bytes())?;
        let fields = Fields::record(base, res.headers)?;

        // The offsets are recorded; httparse's borrow of `buf` ends here.
        let bytes = buf.split_to(head_len).freeze();
        let framing = response_framing(version, status, head_request, &fields, &bytes)?;
        return Ok(Some(ResponseHead {
            bytes,
            version,
            status,
            reason,
            fields,
            framing,
        }));
    }
}

/// RFC 9112 §6.3, the rules that apply to a response.
fn response_framing(
    version: Version,
    status: u16,
    head_request: bool,
    fields: &Fields,
    head: &[u8],
) -> Result<BodyFraming, HttpError> {
    // Rule 1: responses to HEAD, 1xx, 204 and 304 end at the head, whatever
    // Content-Length or Transfer-Encoding say.
    if head_request || (100..200).contains(&status) || status == 204 || status == 304 {
        return Ok(BodyFraming::Empty);
    }
    if fields.first(head, "transfer-encoding").is_some() {
        // RFC 9112 §6.1: Transfer-Encoding in an HTTP/1.0 message means
        // faulty framing.
        if version == Version::Http10 {
            return Err(HttpError::Malformed(
                "transfer-encoding in an HTTP/1.0 response",
            ));
        }
        // Rule 3: TE with CL "ought to be handled as an error" — response
        // splitting. We never pass such a response on, nor reuse the socket.
        if fields.first(head, "content-length").is_some() {
            return Err(HttpError::Malformed(
                "content-length and transfer-encoding both present",
            ));
        }
        // Rule 4 lets a client read a non-chunked TE until close; a proxy
        // that re-frames the body cannot trust that, so anything but
        // exactly `chunked` is refused (we never ask for other codings).
        fields::check_transfer_encoding(fields, head)?;
        return Ok(BodyFraming::Chunked);
    }
    match fields::content_length(fields, head)? {
        Some(n) => Ok(BodyFraming::Length(n)),
        // Rule 8: otherwise the body runs until the server closes.
        None => Ok(BodyFraming::CloseDelimited),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::test_util::schedules;
    use crate::http1::{BodyDecoder, Frame};

    #[derive(Debug, PartialEq)]
    struct Msg {
        status: u16,
        version: Version,
        framing: BodyFraming,
        keep_alive: bool,
        headers: Vec<(Vec<u8>, Vec<u8>)>,
        body: Vec<u8>,
    }

    /// Reads responses from `pieces` as the upstream client would: head,
    /// body, next head; at the end of input the peer closes.
    fn read(pieces: &[&[u8]], head_request: bool) -> Result<Vec<Msg>, HttpError> {
        let limits = Limits::default();
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut current: Option<(ResponseHead, BodyDecoder, Vec<u8>)> = None;
        for piece in pieces {
            buf.extend_from_slice(piece);
            loop {
                if let Some((_, dec, body)) = &mut current {
                    match dec.decode(&mut buf)? {
                        Some(Frame::Data(d)) => body.extend_from_slice(&d),
                        Some(Frame::End) => {
                            if let Some((h, _, body)) = current.take() {
                                out.push(msg(&h, body));
                            }
                        }
                        None => break,
                    }
                } else {
                    match parse_response(&mut buf, &limits, head_request)? {
                        Some(h) => {
                            let dec = BodyDecoder::new(h.framing(), &limits);
                            current = Some((h, dec, Vec::new()));
                        }
                        None => break,
                    }
                }
            }
        }
        if let Some((h, mut dec, body)) = current {
            dec.on_eof()?;
            out.push(msg(&h, body));
        }
        Ok(out)
    }

    fn msg(h: &ResponseHead, body: Vec<u8>) -> Msg {
        Msg {
            status: h.status(),
            version: h.version(),
            framing: h.framing(),
            keep_alive: h.keep_alive(),
            headers: h.headers().map(|(n, v)| (n.to_vec(), v.to_vec())).collect(),
            body,
        }
    }

    fn all_ways(input: &[u8], head_request: bool) -> Result<Vec<Msg>, HttpError> {
        let mut first = None;
        for schedule in schedules(input) {
            let got = read(&schedule, head_request);
            match &first {
                None => first = Some(got),
                Some(expected) => assert_eq!(&got, expected),
            }
        }
        first.expect("at least one schedule")
    }

    fn one(input: &[u8], head_request: bool) -> Msg {
        let mut msgs = all_ways(input, head_request).expect("valid response");
        assert_eq!(msgs.len(), 1);
        msgs.remove(0)
    }

    #[test]
    fn content_length_response() {
        let m = one(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 2\r\n\r\n{}",
            false,
        );
        assert_eq!(m.status, 200);
        assert_eq!(m.framing, BodyFraming::Length(2));
        assert!(m.keep_alive);
        assert_eq!(m.body, b"{}");
    }

    #[test]
    fn chunked_sse_response() {
        let m = one(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n6\r\ndata: \r\n3\r\n1\n\n\r\n0\r\n\r\n", false);
        assert_eq!(m.framing, BodyFraming::Chunked);
        assert_eq!(m.body, b"data: 1\n\n");
        assert!(m.keep_alive);
    }

    #[test]
    fn interim_responses_are_skipped() {
        let m = one(
            b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 201 Created\r\nContent-Length: 1\r\n\r\nx",
            false,
        );
        assert_eq!(m.status, 201);
        assert_eq!(m.body, b"x");
        assert_eq!(m.headers, [(b"Content-Length".to_vec(), b"1".to_vec())]);

        // A lone interim response is consumed and more is needed.
        let mut buf = BytesMut::from(&b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 2"[..]);
        assert_eq!(
            parse_response(&mut buf, &Limits::default(), false)
                .unwrap()
                .map(|h| h.status()),
            None
        );
        assert_eq!(&buf[..], b"HTTP/1.1 2");
    }

    #[test]
    fn switching_protocols_is_final() {
        let mut buf =
            BytesMut::from(&b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\nraw"[..]);
        let h = parse_response(&mut buf, &Limits::default(), false)
            .unwrap()
            .unwrap();
        assert_eq!(h.status(), 101);
        assert_eq!(h.reason(), b"Switching Protocols");
        assert_eq!(h.framing(), BodyFraming::Empty);
        assert_eq!(&buf[..], b"raw");
    }

    #[test]
    fn no_body_statuses_and_head() {
        let m = one(
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            false,
        );
        assert_eq!(m.framing, BodyFraming::Empty);
        let m = one(
            b"HTTP/1.1 304 Not Modified\r\nTransfer-Encoding: chunked\r\n\r\n",
            false,
        );
        assert_eq!(m.framing, BodyFraming::Empty);
        // The response to HEAD declares a length but carries no body: the
        // next response follows at once.
        let msgs = all_ways(
            b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n",
            true,
        )
        .unwrap();
        assert_eq!(msgs.len(), 2);
        assert!(msgs
            .iter()
            .all(|m| m.framing == BodyFraming::Empty && m.keep_alive));
    }

    #[test]
    fn close_delimited_response() {
        let m = one(
            b"HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\n\r\ndata: 1\n\ndata: 2\n\n",
            false,
        );
        assert_eq!(m.framing, BodyFraming::CloseDelimited);
        assert!(!m.keep_alive);
        assert_eq!(m.body, b"data: 1\n\ndata: 2\n\n");
    }

    #[test]
    fn keep_alive_rules() {
        let ka = |input: &[u8]| {
            let mut buf = BytesMut::from(input);
            parse_response(&mut buf, &Limits::default(), false)
                .unwrap()
                .unwrap()
                .keep_alive()
        };
        assert!(ka(b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(!ka(
            b"HTTP/1.1 200 OK\r\nConnection: Close\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n"));
        assert!(ka(
            b"HTTP/1.0 200 OK\r\nConnection: Keep-Alive\r\nContent-Length: 0\r\n\r\n"
        ));
        assert!(!ka(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\n\r\n"));
    }

    #[test]
    fn ambiguous_framing_is_rejected() {
        for input in [
            &b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n"[..],
            b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nContent-Length: 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 3, 3\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, identity\r\n\r\n",
            b"HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
            b"HTTP/1.1 600 Nope\r\n\r\n",
            b"HTTP/1.1 099 Low\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\n\r\n",
            b"HTTP/2 200 OK\r\n\r\n",
        ] {
            let e = all_ways(input, false).unwrap_err();
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(input)
            );
        }
        let e = all_ways(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
            false,
        )
        .unwrap_err();
        assert_eq!(e, HttpError::UnsupportedTransferCoding);
    }

    #[test]
    fn cut_short_body_is_unexpected_eof() {
        let e = all_ways(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nabc", false).unwrap_err();
        assert_eq!(e, HttpError::UnexpectedEof);
        let e = all_ways(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nab",
            false,
        )
        .unwrap_err();
        assert_eq!(e, HttpError::UnexpectedEof);
    }

    #[test]
    fn head_limits() {
        let limits = Limits {
            max_head_bytes: 40,
            max_headers: 2,
            ..Limits::default()
        };
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nX: 0123456789012345678901234"[..]);
        assert_eq!(
            parse_response(&mut buf, &limits, false).unwrap_err(),
            HttpError::HeadTooLarge
        );
        let mut buf = BytesMut::from(&b"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n"[..]);
        assert_eq!(
            parse_response(&mut buf, &limits, false).unwrap_err(),
            HttpError::TooManyHeaders
        );
    }
}
