//! Streams made ahead, and their pace: the mock's answers (a time to first
//! token, a delay between words, a cut on purpose) and the events chat2api
//! makes from a whole answer, handed out as they fall due.

use bytes::Bytes;
use std::collections::VecDeque;
use std::time::Duration;

use crate::config::MockProfile;
use crate::sse::encode::{StreamItem, KEEP_ALIVE};

/// A random number in `0.0..1.0` from a per-thread xorshift generator
/// (seeded from the clock and the thread): for jitter and failure shares,
/// where no shared state may be touched per request.
pub fn random() -> f64 {
    use std::cell::Cell;
    thread_local! {
        static STATE: Cell<u64> = Cell::new({
            let t = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            let thread = &t as *const u64 as u64;
            (t ^ thread.rotate_left(32)) | 1
        });
    }
    STATE.with(|s| {
        // xorshift64* (Vigna, "An experimental exploration of Marsaglia's
        // xorshift generators, scrambled", 2016).
        let mut x = s.get();
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        s.set(x);
        (x.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
    })
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
    pub fn new(profile: &MockProfile, cut: bool, events: usize) -> Pacer {
        Pacer {
            first_token: profile.first_token,
            delay: profile.token_delay,
            jitter: profile.token_jitter,
            sent: 0,
            words: 0,
            cut_after: cut.then_some(events / 2),
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
        Pacer::new(&MockProfile::default(), false, 0)
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
pub trait PacedSource {
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
/// `[DONE]` (unless [`without_done`](Paced::without_done)); or cut on
/// purpose.
pub struct Paced<S> {
    /// Where the events come from.
    pub source: S,
    pacer: Pacer,
    done: bool,
    /// End with `data: [DONE]` (OpenAI's dialects); Anthropic's streams
    /// end with their last event.
    end_with_done: bool,
    /// Cut halfway on purpose (the mock's `failures.cutStream`).
    cut: bool,
}

impl<S: PacedSource> Paced<S> {
    /// `source`'s events at `pacer`'s pace.
    pub fn new(source: S, pacer: Pacer) -> Paced<S> {
        Paced {
            source,
            pacer,
            done: false,
            end_with_done: true,
            cut: false,
        }
    }

    /// The same stream, ending with its last event instead of `[DONE]`.
    pub fn without_done(mut self) -> Paced<S> {
        self.end_with_done = false;
        self
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
                if !self.end_with_done {
                    return None;
                }
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

impl PacedSource for VecDeque<MadeEvent> {
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
