//! What a handler answers: a status, a few headers and a body that is either
//! whole (`Bytes`, or slices of one) or a stream of server-sent events. The
//! connection driver turns it into bytes on the wire.

use bytes::Bytes;

use super::error::ApiError;
use super::stream::EventStream;
use crate::stats::Tally;

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const EVENT_STREAM: &str = "text/event-stream";
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

pub enum Body {
    Empty,
    Full(Bytes),
    /// A JSON document with one field replaced: `prefix | value | suffix`.
    Spliced([Bytes; 3]),
    Stream(EventStream),
}

pub struct Response {
    pub status: u16,
    /// Empty when `headers` carries the `Content-Type` (an upstream's,
    /// passed on).
    pub content_type: &'static str,
    /// Headers beyond the ones every answer gets.
    pub headers: Vec<(&'static str, Bytes)>,
    pub body: Body,
    /// The statistics record of a `/v1/` request, closed when the answer is
    /// fully written (or dropped unfinished, which counts as a failure).
    pub tally: Option<Tally>,
    /// The error code of an error answer, for the request log.
    pub error: Option<&'static str>,
}

impl Response {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Response {
        Response {
            status,
            content_type: JSON,
            headers: Vec::new(),
            body: Body::Full(body.into()),
            tally: None,
            error: None,
        }
    }

    /// One of chat2api's own JSON documents as an answer, ended with a
    /// newline as command-line clients expect (upstream answers are passed
    /// on byte for byte instead).
    pub fn json_doc(status: u16, mut doc: String) -> Response {
        doc.push('\n');
        Response::json(status, doc)
    }

    /// A CORS preflight answer: any origin, the methods both listeners
    /// serve, and `allow_headers`.
    pub fn preflight(allow_headers: Bytes) -> Response {
        Response {
            status: 204,
            content_type: JSON,
            headers: vec![
                (
                    "Access-Control-Allow-Methods",
                    Bytes::from_static(b"GET, POST, OPTIONS"),
                ),
                ("Access-Control-Allow-Headers", allow_headers),
                ("Access-Control-Max-Age", Bytes::from_static(b"86400")),
            ],
            body: Body::Empty,
            tally: None,
            error: None,
        }
    }

    pub fn error(err: &ApiError) -> Response {
        let mut body = Vec::from(&err.body()[..]);
        body.push(b'\n');
        let mut r = Response::json(err.status(), body);
        r.error = Some(err.log_code());
        if matches!(err, ApiError::MethodNotAllowed) {
            r.headers
                .push(("Allow", Bytes::from_static(b"GET, POST, OPTIONS")));
        }
        if let Some(secs) = err.retry_after() {
            r.headers
                .push(("Retry-After", Bytes::from(secs.to_string())));
        }
        r
    }

    pub fn with_tally(mut self, mut tally: Option<Tally>) -> Response {
        if let (Some(t), Body::Stream(_)) = (tally.as_mut(), &self.body) {
            t.streamed();
        }
        self.tally = tally;
        self
    }

    /// Close the statistics record once the answer is written (`written`
    /// false: the client is gone).
    pub fn finish_tally(&mut self, written: bool) {
        if let Some(t) = self.tally.take() {
            if written {
                t.finish(self.status, self.is_success(), self.error);
            }
        }
    }

    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }
}
