//! Streamed answers: a source of server-sent events the connection driver
//! pulls from and writes out as each one arrives.

use bytes::Bytes;

use std::collections::VecDeque;
use std::time::Duration;

use super::mock::{random, Fate, MockStream};
use super::proxy::{ByteStream, UpstreamStream};
use crate::config::MockProfile;

/// `data: [DONE]\n\n`, the end of every successful stream (SPEC §4).
pub const DONE: &[u8] = b"data: [DONE]\n\n";
/// Sent while an upstream is silent so that intermediaries keep the stream:
/// one comment line, written only between whole events, with **no** blank
/// line after it. A blank line dispatches an event (WHATWG HTML §9.2.6), and
/// decoders that keep the last event id across events (the official Python
/// SDK's) dispatch an empty-data event on it once the stream carried an
/// `id:` field, which the SDK then fails to read as JSON. A lone comment
/// line dispatches nothing in any conforming parser.
pub const KEEP_ALIVE: &[u8] = b": keep-alive\n";

/// One piece of a streamed answer, as the connection driver writes it.
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

impl EventStream {
    /// The next item, or `None` at the end. Cancel-safe: the driver drops
    /// this future when the client sends bytes or the drain deadline
    /// comes, and calls it again.
    pub async fn next(&mut self) -> Option<StreamItem> {
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
    pub async fn settle(&mut self) {
        if let EventStream::Upstream(u) = self {
            u.settle().await;
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
            EventStream::Mock(m) => (m.source.prompt_tokens, m.source.completion_tokens),
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

/// The pace of a mock stream: the wait before each event and where a
/// stream is cut. Cancel-safe: the time an event is due is fixed when it is
/// first waited for, so a wait dropped and begun again ends at the same
/// instant.
pub struct Pacer {
    first_token: Duration,
    delay: Duration,
    jitter: Duration,
    /// Events handed out so far.
    sent: usize,
    /// Content events (words) handed out so far.
    words: usize,
    /// Stop after this many events, with no `[DONE]`.
    cut_after: Option<usize>,
    due: Option<tokio::time::Instant>,
    /// A `: keep-alive` comment after this much silence (0 = none), as
    /// for upstream streams (`sseKeepaliveInterval`).
    keep_alive: Duration,
    /// When the client was last handed something.
    spoke: Option<tokio::time::Instant>,
}

impl Pacer {
    /// A pace from `profile`; `events` is the stream's length, which a cut
    /// stream stops at half of.
    pub fn new(profile: &MockProfile, fate: Fate, events: usize) -> Pacer {
        Pacer {
            first_token: profile.first_token,
            delay: profile.token_delay,
            jitter: profile.token_jitter,
            sent: 0,
            words: 0,
            cut_after: (fate == Fate::CutStream).then_some(events / 2),
            due: None,
            keep_alive: Duration::ZERO,
            spoke: None,
        }
    }

    /// The same, with a keep-alive comment after `every` of silence.
    pub fn keep_alive(mut self, every: Duration) -> Pacer {
        self.keep_alive = every;
        self
    }

    /// No waits, no cut.
    pub fn instant() -> Pacer {
        Pacer::new(&MockProfile::default(), Fate::Answer, 0)
    }

    /// The wait before the next event: the time to first token before the
    /// first (a chat stream's role chunk, Responses' `response.created`),
    /// with the first word right behind it; the token delay ± jitter
    /// before each later word. Events without a word (the finish and usage
    /// chunks, item events, `[DONE]`) follow at once.
    fn wait(&self, content: bool) -> Duration {
        if self.sent == 0 {
            return self.first_token;
        }
        if !content || self.words == 0 || self.delay.is_zero() {
            return Duration::ZERO;
        }
        if self.jitter.is_zero() {
            return self.delay;
        }
        let jitter = self.jitter.as_secs_f64() * (2.0 * random() - 1.0);
        Duration::from_secs_f64((self.delay.as_secs_f64() + jitter).max(0.0))
    }

    /// Whether the stream is cut here.
    pub fn cut(&self) -> bool {
        self.cut_after.is_some_and(|n| self.sent >= n)
    }

    /// Whether the next event (`content`: a word) may go now, without
    /// waiting.
    pub fn ready(&self, content: bool) -> bool {
        match self.due {
            Some(due) => due <= tokio::time::Instant::now(),
            None => self.wait(content).is_zero(),
        }
    }

    /// Wait until the next event (`content`: a word) is due (`true`), or
    /// until a keep-alive comment is (`false`), whichever comes first.
    pub async fn wait_turn(&mut self, content: bool) -> bool {
        let wait = self.wait(content);
        if wait.is_zero() && self.due.is_none() {
            return true;
        }
        let now = tokio::time::Instant::now();
        let due = *self.due.get_or_insert(now + wait);
        let spoke = *self.spoke.get_or_insert(now);
        if !self.keep_alive.is_zero() && spoke + self.keep_alive < due {
            tokio::time::sleep_until(spoke + self.keep_alive).await;
            // From now: a write that took long does not make a burst.
            self.spoke = Some(tokio::time::Instant::now());
            return false;
        }
        tokio::time::sleep_until(due).await;
        true
    }

    /// An event (`content`: a word) went out.
    pub fn sent(&mut self, content: bool) {
        self.sent += 1;
        self.words += usize::from(content);
        self.due = None;
        if !self.keep_alive.is_zero() {
            self.spoke = Some(tokio::time::Instant::now());
        }
    }
}

/// Where a [`Paced`] stream takes its events from.
pub trait EventSource {
    /// The next event's field lines (`event: …\n`, or none) and data;
    /// `None` at the end.
    fn next_event(&mut self) -> Option<(Bytes, Bytes)>;
    /// Whether the next event carries content (a word), which the pace
    /// waits for; the others follow at once.
    fn next_is_content(&self) -> bool;
}

/// One event made ahead: its field lines, its data, and whether it carries
/// content (a word).
pub struct MadeEvent {
    pub fields: Bytes,
    pub data: Bytes,
    pub content: bool,
}

/// A stream of events made here, handed out at its [`Pacer`]'s pace, then
/// `[DONE]`; or cut on purpose.
pub struct Paced<S> {
    /// Where the events come from.
    pub source: S,
    pacer: Pacer,
    done: bool,
    /// Cut halfway on purpose (the mock's `failures.cutStream`).
    cut: bool,
}

impl<S: EventSource> Paced<S> {
    /// `source`'s events at `pacer`'s pace.
    pub fn new(source: S, pacer: Pacer) -> Paced<S> {
        Paced {
            source,
            pacer,
            done: false,
            cut: false,
        }
    }

    /// Cancel-safe: the only await is the pacer's, and an event is taken
    /// from the source only after it.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if self.done || self.cut {
            return None;
        }
        if !self.pacer.wait_turn(self.source.next_is_content()).await {
            return Some(StreamItem::Raw(Bytes::from_static(KEEP_ALIVE)));
        }
        self.pop()
    }

    /// The next event if it is due now.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        if self.done || self.cut || !self.pacer.ready(self.source.next_is_content()) {
            return None;
        }
        self.pop()
    }

    fn pop(&mut self) -> Option<StreamItem> {
        if self.pacer.cut() {
            self.cut = true;
            return None;
        }
        self.pacer.sent(self.source.next_is_content());
        Some(match self.source.next_event() {
            Some((fields, data)) => StreamItem::event(fields, data),
            None => {
                self.done = true;
                StreamItem::done()
            }
        })
    }

    /// Ended with `[DONE]`.
    pub fn completed(&self) -> bool {
        self.done
    }

    /// Cut halfway on purpose: no `[DONE]`, the connection closed.
    pub fn was_cut(&self) -> bool {
        self.cut
    }
}

impl EventSource for VecDeque<MadeEvent> {
    fn next_event(&mut self) -> Option<(Bytes, Bytes)> {
        self.pop_front().map(|e| (e.fields, e.data))
    }

    fn next_is_content(&self) -> bool {
        self.front().is_some_and(|e| e.content)
    }
}

/// A stream made ahead: the events of a whole answer (an upstream that
/// answered a stream request with one object), or the mock's Responses API
/// and transcript events; then `[DONE]`.
pub type PreparedStream = Paced<VecDeque<MadeEvent>>;

impl PreparedStream {
    /// `events` (field lines and data each), all ready at once.
    pub fn ready(events: Vec<(Bytes, Bytes)>) -> PreparedStream {
        let events = events.into_iter().map(|(fields, data)| MadeEvent {
            fields,
            data,
            content: false,
        });
        Paced::new(events.collect(), Pacer::instant())
    }
}
