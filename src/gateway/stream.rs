//! Streamed answers: a source of server-sent events the connection driver
//! pulls from and writes out as each one arrives.

use bytes::Bytes;

use super::mock::MockStream;
use super::proxy::{ByteStream, PreparedStream, UpstreamStream};

/// `data: [DONE]\n\n`, the end of every successful stream (SPEC §4).
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// Sent while an upstream is silent so that intermediaries keep the stream.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n\n";

pub enum StreamItem {
    /// One event: `fields` (its `event:`/`id:` lines, usually empty) and its
    /// payload as slices; written as `fields` + `data: ` + slices + `\n\n`.
    Data { fields: Bytes, data: [Bytes; 3] },
    /// Pre-framed bytes: `[DONE]`, a keep-alive comment, an error event.
    Raw(Bytes),
}

impl StreamItem {
    /// One event of a whole payload (no slices to splice), with its field
    /// lines (`event: …\n`, usually none).
    pub fn event(fields: Bytes, data: Bytes) -> StreamItem {
        StreamItem::Data {
            fields,
            data: [data, Bytes::new(), Bytes::new()],
        }
    }

    /// `data: [DONE]`.
    pub fn done() -> StreamItem {
        StreamItem::Raw(Bytes::from_static(DONE))
    }
}

pub enum EventStream {
    Mock(MockStream),
    Upstream(Box<UpstreamStream>),
    /// Events made from a whole answer, all ready at once.
    Prepared(PreparedStream),
    /// Not events: an upstream body passed on byte for byte (audio).
    Bytes(Box<ByteStream>),
}

impl EventStream {
    /// The next item, or `None` at the end. Cancel-safe: the driver may drop
    /// this future to write a keep-alive comment and call it again.
    pub async fn next(&mut self) -> Option<StreamItem> {
        match self {
            EventStream::Mock(m) => m.next().await,
            EventStream::Upstream(u) => u.next().await,
            EventStream::Prepared(p) => p.next().await,
            EventStream::Bytes(b) => b.next().await,
        }
    }

    /// The next item if it is already here; never waits.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        match self {
            EventStream::Mock(m) => m.next_ready(),
            EventStream::Upstream(u) => u.next_ready(),
            EventStream::Prepared(p) => p.next_ready(),
            EventStream::Bytes(b) => b.next_ready(),
        }
    }

    /// True once the last item was handed out.
    pub fn is_ended(&self) -> bool {
        match self {
            EventStream::Mock(m) => m.completed() || m.was_cut(),
            EventStream::Upstream(u) => u.is_ended(),
            EventStream::Prepared(p) => p.completed() || p.was_cut(),
            EventStream::Bytes(b) => b.is_ended(),
        }
    }

    /// True once the stream ended with `[DONE]` (a success, SPEC §3), or
    /// a byte stream with the end of its body.
    pub fn completed(&self) -> bool {
        match self {
            EventStream::Mock(m) => m.completed(),
            EventStream::Upstream(u) => u.completed(),
            EventStream::Prepared(p) => p.completed(),
            EventStream::Bytes(b) => b.completed(),
        }
    }

    /// True when the body broke off where no error event can say so (a
    /// byte stream), or the mock cut its stream on purpose: the answer must
    /// end without its last chunk, so that the client sees it cut, and the
    /// connection be closed.
    pub fn aborted(&self) -> bool {
        match self {
            EventStream::Bytes(b) => b.failed(),
            EventStream::Mock(m) => m.was_cut(),
            EventStream::Prepared(p) => p.was_cut(),
            EventStream::Upstream(_) => false,
        }
    }

    /// Prompt and completion tokens, as far as known.
    pub fn usage(&self) -> (u64, u64) {
        match self {
            EventStream::Mock(m) => (m.prompt_tokens, m.completion_tokens),
            EventStream::Upstream(u) => u.usage(),
            EventStream::Prepared(_) | EventStream::Bytes(_) => (0, 0),
        }
    }

    /// True when an error event was sent: the connection must be closed.
    pub fn failed(&self) -> bool {
        match self {
            EventStream::Mock(_) | EventStream::Prepared(_) => false,
            EventStream::Upstream(u) => u.failed(),
            EventStream::Bytes(b) => b.failed(),
        }
    }

    /// Why the request failed, for the statistics and the request log:
    /// the stream broke off (`stream_error`), or it ended well but carried
    /// an upstream's error object. `None` for a real answer.
    pub fn fault(&self) -> Option<&'static str> {
        match self {
            EventStream::Mock(m) => m.was_cut().then_some("mock_cut_stream"),
            EventStream::Prepared(p) => p.was_cut().then_some("mock_cut_stream"),
            EventStream::Bytes(b) => b.failed().then_some("stream_error"),
            EventStream::Upstream(u) if u.failed() => Some("stream_error"),
            EventStream::Upstream(u) => u.fault(),
        }
    }
}

/// An error event: `data: {"error":{...}}\n\n`.
pub fn error_event(err: &super::error::ApiError) -> Bytes {
    let body = err.body();
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}
