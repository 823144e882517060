//! Streamed answers: the gateway's sources of server-sent events, which the
//! connection driver pulls from (as an [`EventSource`]) and writes out as
//! each one arrives.
//!
//! - [`upstream`]: an upstream's events, re-framed or translated;
//! - [`passthrough`]: an upstream's body passed on byte for byte (audio);
//! - [`pace`]: streams made ahead (the mock's, an answer turned into
//!   events), handed out at their pace.

pub mod pace;
pub mod passthrough;
pub mod upstream;

use crate::api::EventSource;
use crate::sse::encode::StreamItem;
use pace::PreparedStream;
use passthrough::ByteStream;
use upstream::UpstreamStream;

use super::mock::MockStream;

/// The source of a streamed answer: the mock's words, an upstream's
/// events re-framed, events made ahead, or an upstream's bytes (audio).
pub enum EventStream {
    /// The mock's chat or completions words.
    Mock(MockStream),
    /// An upstream's events, re-framed (or translated) one by one.
    Upstream(Box<UpstreamStream>),
    /// Events made from a whole answer, all ready at once.
    Prepared(PreparedStream),
    /// Not events: an upstream body passed on byte for byte (audio).
    Bytes(Box<ByteStream>),
}

impl EventSource for EventStream {
    /// The next item, or `None` at the end. Cancel-safe: the driver drops
    /// this future when the client sends bytes or the drain deadline
    /// comes, and calls it again.
    async fn next(&mut self) -> Option<StreamItem> {
        match self {
            EventStream::Mock(m) => m.next().await,
            EventStream::Upstream(u) => u.next().await,
            EventStream::Prepared(p) => p.next().await,
            EventStream::Bytes(b) => b.next().await,
        }
    }

    /// After the whole answer was written: lets an upstream stream read
    /// its body to the end so that its connection is pooled (see
    /// `UpstreamStream::settle`); bounded in time, nothing for the others.
    async fn settle(&mut self) {
        if let EventStream::Upstream(u) = self {
            u.settle().await;
        }
    }

    /// The next item if it is already here; never waits.
    fn next_ready(&mut self) -> Option<StreamItem> {
        match self {
            EventStream::Mock(m) => m.next_ready(),
            EventStream::Upstream(u) => u.next_ready(),
            EventStream::Prepared(p) => p.next_ready(),
            EventStream::Bytes(b) => b.next_ready(),
        }
    }

    /// True once the last item was handed out.
    fn is_ended(&self) -> bool {
        match self {
            EventStream::Mock(m) => m.completed() || m.was_cut(),
            EventStream::Upstream(u) => u.is_ended(),
            EventStream::Prepared(p) => p.completed() || p.was_cut(),
            EventStream::Bytes(b) => b.is_ended(),
        }
    }

    /// True once the stream ended with `[DONE]` (a success, docs/wire.md §3), or
    /// a byte stream with the end of its body.
    fn completed(&self) -> bool {
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
    fn aborted(&self) -> bool {
        match self {
            EventStream::Bytes(b) => b.failed(),
            EventStream::Mock(m) => m.was_cut(),
            EventStream::Prepared(p) => p.was_cut(),
            EventStream::Upstream(_) => false,
        }
    }

    /// Prompt and completion tokens, as far as known.
    fn usage(&self) -> (u64, u64) {
        match self {
            EventStream::Mock(m) => (m.source.prompt_tokens, m.source.completion_tokens),
            EventStream::Upstream(u) => u.usage(),
            EventStream::Prepared(_) | EventStream::Bytes(_) => (0, 0),
        }
    }

    /// True when an error event was sent: the connection must be closed.
    fn failed(&self) -> bool {
        match self {
            EventStream::Mock(_) | EventStream::Prepared(_) => false,
            EventStream::Upstream(u) => u.failed(),
            EventStream::Bytes(b) => b.failed(),
        }
    }

    /// Why the request failed, for the statistics and the request log:
    /// the stream broke off (`stream_error`), or it ended well but carried
    /// an upstream's error object. `None` for a real answer.
    fn fault(&self) -> Option<&'static str> {
        match self {
            EventStream::Mock(m) => m.was_cut().then_some("mock_cut_stream"),
            EventStream::Prepared(p) => p.was_cut().then_some("mock_cut_stream"),
            EventStream::Bytes(b) => b.failed().then_some("stream_error"),
            EventStream::Upstream(u) if u.failed() => Some("stream_error"),
            EventStream::Upstream(u) => u.fault(),
        }
    }

    fn is_bytes(&self) -> bool {
        matches!(self, EventStream::Bytes(_))
    }
}
