//! The one error type of the HTTP/1.1 layer.
//!
//! Owns the mapping from "what went wrong on the wire" to the status code the
//! connection driver answers with (docs/wire.md §4, §6). It must not know about
//! OpenAI error bodies or sockets: the gateway turns a variant into a body,
//! the driver decides to close.

use std::fmt;

/// A protocol error found while parsing a head or decoding a body.
///
/// Every variant knows its answer ([`HttpError::status`]); after any of them
/// the connection must not be reused, because the parser can no longer tell
/// where the next message starts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum HttpError {
    /// The start line and header section (a request's, or an upstream
    /// response's) exceed `Limits::max_head_bytes`.
    HeadTooLarge,
    /// More header fields than `Limits::max_headers`.
    TooManyHeaders,
    /// The request-target exceeds `Limits::max_uri_bytes`.
    UriTooLong,
    /// The body (declared or decoded so far) exceeds `Limits::max_body_bytes`.
    BodyTooLarge,
    /// A transfer coding other than `chunked` was applied (RFC 9112 §6.1).
    UnsupportedTransferCoding,
    /// The message is not valid HTTP/1.1; the text says what was wrong.
    Malformed(&'static str),
    /// The peer closed the connection before a length- or chunk-framed body
    /// was complete.
    UnexpectedEof,
}

impl HttpError {
    /// The status code a server answers with. For a response from upstream
    /// the caller maps every variant to 502 instead.
    pub fn status(&self) -> u16 {
        match self {
            HttpError::HeadTooLarge | HttpError::TooManyHeaders => 431,
            HttpError::UriTooLong => 414,
            HttpError::BodyTooLarge => 413,
            HttpError::UnsupportedTransferCoding => 501,
            HttpError::Malformed(_) | HttpError::UnexpectedEof => 400,
        }
    }

    /// A human-readable message, safe to put in an error body (it never
    /// contains bytes from the input).
    pub fn reason(&self) -> &'static str {
        match self {
            HttpError::HeadTooLarge => "header section too large",
            HttpError::TooManyHeaders => "too many header fields",
            HttpError::UriTooLong => "request-target too long",
            HttpError::BodyTooLarge => "message body too large",
            HttpError::UnsupportedTransferCoding => "unsupported transfer coding",
            HttpError::Malformed(what) => what,
            HttpError::UnexpectedEof => "connection closed before the message body was complete",
        }
    }
}

impl fmt::Display for HttpError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.reason())
    }
}

impl std::error::Error for HttpError {}

impl From<httparse::Error> for HttpError {
    fn from(e: httparse::Error) -> Self {
        match e {
            httparse::Error::TooManyHeaders => HttpError::TooManyHeaders,
            httparse::Error::HeaderName => HttpError::Malformed("invalid header name"),
            httparse::Error::HeaderValue => HttpError::Malformed("invalid header value"),
            httparse::Error::NewLine => HttpError::Malformed("invalid line ending"),
            httparse::Error::Status => HttpError::Malformed("invalid status line"),
            httparse::Error::Token => HttpError::Malformed("invalid token in start line"),
            httparse::Error::Version => HttpError::Malformed("invalid HTTP version"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_variant_maps_to_its_status() {
        let cases = [
            (HttpError::HeadTooLarge, 431),
            (HttpError::TooManyHeaders, 431),
            (HttpError::UriTooLong, 414),
            (HttpError::BodyTooLarge, 413),
            (HttpError::UnsupportedTransferCoding, 501),
            (HttpError::Malformed("x"), 400),
            (HttpError::UnexpectedEof, 400),
        ];
        for (err, status) in cases {
            assert_eq!(err.status(), status, "{err:?}");
            assert!(!err.to_string().is_empty());
        }
        assert_eq!(HttpError::Malformed("bad chunk").reason(), "bad chunk");
    }

    #[test]
    fn httparse_errors_map_to_400_or_431() {
        assert_eq!(
            HttpError::from(httparse::Error::TooManyHeaders),
            HttpError::TooManyHeaders
        );
        assert_eq!(HttpError::from(httparse::Error::HeaderName).status(), 400);
    }
}
