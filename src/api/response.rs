//! What a service answers: a status, a few headers and a body that is either
//! whole (`Bytes`, or slices of one) or a stream of server-sent events. The
//! connection driver (`server/conn.rs`) turns it into bytes on the wire.
//!
//! A stream is any [`EventSource`]: the driver pulls items from it and
//! writes each as it comes, and never needs to know what makes them (the
//! gateway's upstream re-framer, its mock, or nothing at all for a service
//! that never streams, [`NoStream`]).

use bytes::Bytes;
use std::future::Future;

use crate::api::ApiError;
use crate::sse::encode::StreamItem;
use crate::stats::Tally;

/// A streamed answer the connection driver pulls from.
///
/// The driver calls [`next_ready`](Self::next_ready) until it has nothing,
/// writes what it got in one write, then awaits [`next`](Self::next) while
/// watching the client and the drain deadline; it stops after an item
/// that leaves [`is_ended`](Self::is_ended) true.
pub trait EventSource: Send {
    /// The next item, or `None` at the end. Must be cancel-safe: the
    /// driver drops this future when the client sends bytes or the drain
    /// deadline comes, and calls it again.
    fn next(&mut self) -> impl Future<Output = Option<StreamItem>> + Send;
    /// The next item if it is already here; never waits.
    fn next_ready(&mut self) -> Option<StreamItem>;
    /// True once the last item was handed out.
    fn is_ended(&self) -> bool;
    /// True once the stream ended as a success: with `[DONE]`, or a byte
    /// stream with the end of its body.
    fn completed(&self) -> bool;
    /// True when the body broke off where no error event can say so: the
    /// answer must end without its last chunk, so that the client sees it
    /// cut, and the connection be closed.
    fn aborted(&self) -> bool;
    /// True when an error event was sent: the connection must be closed.
    fn failed(&self) -> bool;
    /// Why the request counts as failed although the stream may have ended
    /// well (the log's error code); `None` for a real answer.
    fn fault(&self) -> Option<&'static str>;
    /// Prompt and completion tokens, as far as known.
    fn usage(&self) -> (u64, u64);
    /// Not events but raw body bytes (audio): its first bytes are the
    /// first token.
    fn is_bytes(&self) -> bool;
    /// Called once the whole answer is written: lets the source finish
    /// what it holds (an upstream connection to return to its pool).
    fn settle(&mut self) -> impl Future<Output = ()> + Send {
        async {}
    }
}

/// The stream of a service that never streams: it has no value.
pub enum NoStream {}

impl EventSource for NoStream {
    async fn next(&mut self) -> Option<StreamItem> {
        match *self {}
    }
    fn next_ready(&mut self) -> Option<StreamItem> {
        match *self {}
    }
    fn is_ended(&self) -> bool {
        match *self {}
    }
    fn completed(&self) -> bool {
        match *self {}
    }
    fn aborted(&self) -> bool {
        match *self {}
    }
    fn failed(&self) -> bool {
        match *self {}
    }
    fn fault(&self) -> Option<&'static str> {
        match *self {}
    }
    fn usage(&self) -> (u64, u64) {
        match *self {}
    }
    fn is_bytes(&self) -> bool {
        match *self {}
    }
}

pub const JSON: &str = "application/json";
pub const HTML: &str = "text/html; charset=utf-8";
pub const EVENT_STREAM: &str = "text/event-stream";
pub const PROMETHEUS: &str = "text/plain; version=0.0.4";

/// An answer's body.
pub enum Body<S> {
    Empty,
    Full(Bytes),
    /// A JSON document with one field replaced: `prefix | value | suffix`.
    Spliced([Bytes; 3]),
    Stream(S),
}

/// An answer: its status, headers and body, and the statistics record it
/// closes once written. `S` is the service's [`EventSource`].
pub struct Response<S> {
    pub status: u16,
    /// Empty when `headers` carries the `Content-Type` (an upstream's,
    /// passed on).
    pub content_type: &'static str,
    /// Headers beyond the ones every answer gets.
    pub headers: Vec<(&'static str, Bytes)>,
    pub body: Body<S>,
    /// The statistics record of a `/v1/` request, closed when the answer is
    /// fully written (or dropped unfinished, which counts as a failure).
    pub tally: Option<Tally>,
    /// The error code of an error answer, for the request log.
    pub error: Option<&'static str>,
}

impl<S> Response<S> {
    pub fn json(status: u16, body: impl Into<Bytes>) -> Response<S> {
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
    pub fn json_doc(status: u16, mut doc: String) -> Response<S> {
        doc.push('\n');
        Response::json(status, doc)
    }

    /// A CORS preflight answer: any origin, the methods both listeners
    /// serve, and `allow_headers`.
    pub fn preflight(allow_headers: Bytes) -> Response<S> {
        Response {
            status: 204,
            content_type: JSON,
            headers: vec![
                (
                    "Access-Control-Allow-Methods",
                    Bytes::from_static(b"GET, POST, DELETE, OPTIONS"),
                ),
                ("Access-Control-Allow-Headers", allow_headers),
                ("Access-Control-Max-Age", Bytes::from_static(b"86400")),
            ],
            body: Body::Empty,
            tally: None,
            error: None,
        }
    }

    pub fn error(err: &ApiError) -> Response<S> {
        let mut body = Vec::from(&err.body()[..]);
        body.push(b'\n');
        let mut r = Response::json(err.status(), body);
        r.error = Some(err.log_code());
        if let ApiError::MethodNotAllowed(allow) = err {
            r.headers
                .push(("Allow", Bytes::from_static(allow.as_bytes())));
        }
        if let Some(secs) = err.retry_after() {
            r.headers
                .push(("Retry-After", Bytes::from(secs.to_string())));
        }
        // The official SDKs read the exact wait from `retry-after-ms`.
        if let ApiError::KeyRateLimited { retry_after_ms, .. } = err {
            r.headers
                .push(("retry-after-ms", Bytes::from(retry_after_ms.to_string())));
        }
        r
    }

    pub fn with_tally(mut self, mut tally: Option<Tally>) -> Response<S> {
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
