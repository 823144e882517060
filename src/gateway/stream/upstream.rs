//! An upstream's event stream, re-framed for the client event by event
//! (docs/architecture.md, "One streamed request, file by file"): each SSE event is decoded,
//! its `model` set to the client's name (or the chat chunk translated into
//! the endpoint's events), and handed to the connection driver the moment
//! it is complete. Two clocks run while it waits (keep-alives to the client,
//! the upstream's idle timeout); after `[DONE]` it reads the upstream body to
//! its end so that the connection is pooled.

use bytes::Bytes;
use std::task::Poll;
use std::time::{Duration, Instant};

use crate::api::ApiError;
use crate::config::Limits;
use crate::gateway::json;
use crate::sse::encode::{
    self, error_event, event_fields, reprefix_lines, Splice, StreamItem, KEEP_ALIVE,
};
use crate::sse::{Event, SseDecoder};
use crate::translate::anthropic_upstream::FromMessages;
use crate::translate::{chat as translate, EventTranslator};
use crate::upstream::{UpstreamError, UpstreamResponse};

/// How a chat provider's answers are turned into another endpoint's.
pub enum Translation {
    /// Into `text_completion` objects for the client's model name.
    Completions(String),
    /// Into another dialect's event sequence (the Responses API, the
    /// Anthropic Messages API).
    Events(Box<dyn EventTranslator>),
    /// A native Anthropic provider's Messages events into chat chunks,
    /// and those on into Responses events where the client asked for them
    /// (`anthropic_upstream::FromMessages`). A whole answer is turned into
    /// a chat completion first (`answer_for` in `proxy/mod.rs`).
    FromMessages(Box<FromMessages>),
}

impl Translation {
    /// The event translator, for the translations that make events.
    fn events(&mut self) -> Option<&mut dyn EventTranslator> {
        match self {
            Translation::Events(t) => Some(&mut **t),
            Translation::FromMessages(t) => Some(&mut **t),
            Translation::Completions(_) => None,
        }
    }
}

/// How long a finished stream waits for the end of its upstream body
/// ([`UpstreamStream::settle`]) before closing the connection instead of
/// pooling it. The client is not kept waiting: it has its whole answer.
pub const SETTLE_WAIT: Duration = Duration::from_millis(500);
/// The most a finished stream reads after `[DONE]` to reach the end of the
/// upstream body; past it the connection is closed, not pooled.
pub const SETTLE_MAX_BYTES: usize = 64 * 1024;

/// A streamed upstream answer, re-framed event by event: the upstream's
/// body read as it comes, fed to a [`Reframer`].
///
/// Two clocks run while it waits: the keep-alive interval counts from the
/// last byte the *client* got (an upstream that only sends `: ping`
/// comments must not leave the client in silence), the idle timeout from
/// the last byte the *upstream* sent.
pub struct UpstreamStream {
    response: UpstreamResponse,
    reframer: Reframer,
    keep_alive: Duration,
    idle_timeout: Duration,
    /// When the upstream last sent a byte.
    heard: Instant,
    /// When the client was last handed something (the driver writes what
    /// it is handed at once).
    spoke: Instant,
    /// An item was handed out since `spoke` was set.
    spoke_since: bool,
}

/// The re-framing itself, sans-IO (docs/architecture.md, step 9): upstream
/// body pieces in, the client's stream items out. Each SSE event is
/// decoded once, its `model` found and the client's name spliced in (or
/// the chat chunk translated into the endpoint's events), `[DONE]` and
/// faults turned into the stream's end; no socket, no clock. `benches/sse.rs`
/// measures this very type.
pub struct Reframer {
    decoder: SseDecoder,
    /// The client's model name as a JSON literal, spliced into every chunk.
    client_model: Bytes,
    /// For a `completions: "chat"` or `responses: "chat"` provider (or the
    /// Anthropic Messages API): how each chat chunk is turned into the
    /// endpoint's events.
    translate: Option<Translation>,
    /// Events made and not yet handed out (a chat chunk can make several
    /// Responses events).
    pending: std::collections::VecDeque<StreamItem>,
    /// The dialect of a stream passed on as it is.
    native: Native,
    /// A terminal event went by (Responses: `response.completed`, …;
    /// Messages: `message_stop`).
    terminal: bool,
    /// The upstream's answer is complete without `[DONE]` (an Anthropic
    /// stream's `message_stop`): the stream ends there, and whatever the
    /// upstream sends after it is not read.
    complete: bool,
    /// Token counts from the upstream's `usage`, when it sent one.
    usage: (u64, u64),
    /// Finds each event's `model` (SSE events of one stream share a shape).
    inspector: json::EventInspector,
    /// `maxEventBytes`: the most one event may grow to before the stream
    /// is failed.
    max_event_bytes: usize,
    /// Events with data handed out.
    events: u64,
    /// Why the request counts as failed although the stream itself ended
    /// well: the upstream sent an error object inside it.
    fault: Option<&'static str>,
    upstream_ended: bool,
    done: bool,
    failed: bool,
    ended: bool,
}

/// The dialect of an upstream stream passed on as it is (no translation):
/// what ends it and what in it says the request failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Native {
    /// Chat and text completions: `data:` chunks, then `data: [DONE]`.
    Chat,
    /// The Responses API: typed events that end with a terminal one
    /// (`response.completed`, `.incomplete`, `.failed`); `error` and
    /// `response.failed` fail the request.
    Responses,
    /// Anthropic's Messages API: typed events from `message_start` (whose
    /// `message` carries the model and the input tokens) to
    /// `message_stop`, no `[DONE]`; an `error` event fails the request,
    /// and a stream cut before `message_stop` ends with one.
    Messages,
}

/// What the [`Reframer`] has for the client next.
pub enum Reframed {
    /// An item to write.
    Item(StreamItem),
    /// Nothing until more of the upstream's body is pushed.
    NeedMore,
    /// The stream is over.
    End,
}

impl Reframer {
    /// A re-framer splicing `client_model` (a JSON literal) into every
    /// event of a `native` stream, or translating its events with
    /// `translate`.
    pub fn new(
        max_event_bytes: usize,
        client_model: Bytes,
        translate: Option<Translation>,
        native: Native,
    ) -> Reframer {
        Reframer {
            decoder: SseDecoder::new(),
            client_model,
            translate,
            pending: std::collections::VecDeque::new(),
            native,
            terminal: false,
            complete: false,
            usage: (0, 0),
            inspector: json::EventInspector::default(),
            max_event_bytes,
            events: 0,
            fault: None,
            upstream_ended: false,
            done: false,
            failed: false,
            ended: false,
        }
    }

    /// The next piece of the upstream's body.
    pub fn push(&mut self, piece: Bytes) {
        self.decoder.push(piece);
    }

    /// The next item from what was pushed.
    pub fn next_item(&mut self) -> Reframed {
        loop {
            if let Some(item) = self.pending.pop_front() {
                return Reframed::Item(item);
            }
            if self.ended {
                return Reframed::End;
            }
            if self.complete {
                return Reframed::Item(self.finish_done());
            }
            let event = match self.decoder.next_event() {
                Some(ev) => Some(ev),
                // The last event, without its blank line (see `upstream_done`).
                None if self.upstream_ended => self.decoder.finish().filter(|ev| {
                    ev.is_done()
                        || serde_json::from_slice::<serde::de::IgnoredAny>(&ev.data).is_ok()
                }),
                None => None,
            };
            if let Some(ev) = event {
                if ev.is_done() {
                    return Reframed::Item(self.finish_done());
                }
                match self.rewrite(ev) {
                    Some(item) => {
                        self.events += 1;
                        return Reframed::Item(item);
                    }
                    None => continue,
                }
            }
            if self.upstream_ended {
                // docs/wire.md §4: `[DONE]` even when the upstream forgot it.
                return Reframed::Item(self.finish_done());
            }
            if self.decoder.pending_len() > self.max_event_bytes {
                return Reframed::Item(self.fail(ApiError::Upstream(format!(
                    "a streamed event exceeded maxEventBytes ({} bytes)",
                    self.max_event_bytes
                ))));
            }
            return Reframed::NeedMore;
        }
    }

    /// An upstream whose body ended: the last line is ended here, so that
    /// the decoder hands out a last event the upstream did not end (kept
    /// only when it is `[DONE]` or complete JSON: a whole chunk whose
    /// newline was forgotten is kept, half a chunk cut by a closed
    /// connection is not).
    pub fn upstream_done(&mut self) {
        self.upstream_ended = true;
        self.decoder.push(Bytes::from_static(b"\n"));
    }

    /// True once nothing more will come: `[DONE]` or an error was handed out.
    pub fn is_ended(&self) -> bool {
        self.ended && self.pending.is_empty()
    }

    /// One event for the client: `model` set to the client's name, its
    /// `event:` and `id:` fields kept, and a payload of several lines
    /// written as several `data:` lines again (WHATWG §9.2.6 joins them
    /// with LF; written behind one `data: ` the later lines would be lost).
    ///
    /// A chat chunk for a Responses API client becomes its events, queued
    /// in `pending` (then `None` is returned when it made none).
    fn rewrite(&mut self, ev: Event) -> Option<StreamItem> {
        if matches!(
            self.translate,
            Some(Translation::Events(_) | Translation::FromMessages(_))
        ) {
            let info = json::inspect_answer(&ev.data).unwrap_or_default();
            self.note(&info);
            let t = self.translate.as_mut().and_then(Translation::events)?;
            for (name, data) in t.chunk(&ev.data) {
                let fields = event_fields(Some(name.as_bytes()), None);
                self.pending.push_back(StreamItem::event(fields, data));
            }
            if t.ended() {
                // Its error event is the last: the upstream is read no
                // further, and the connection is closed after it.
                self.ended = true;
                self.failed = true;
            } else if t.complete() {
                self.complete = true;
            }
            return self.pending.pop_front();
        }
        let multiline = ev.multiline;
        let data = match &self.translate {
            Some(Translation::Completions(name)) => {
                translate::chat_to_completion(&ev.data, name).unwrap_or(ev.data)
            }
            _ => ev.data,
        };
        // An event that is not a JSON object is no event of any OpenAI
        // stream: it is left out rather than handed to a client's parser.
        let info = self.inspector.inspect(&data)?;
        self.note(&info);
        if self.native == Native::Messages {
            self.note_message_event(&data);
        }
        if self.native == Native::Responses {
            if let Some(name) = ev.event.as_deref() {
                let terminal = matches!(
                    name,
                    b"response.completed" | b"response.incomplete" | b"response.failed"
                );
                if terminal {
                    // Its usage is inside its `response`, where the walk
                    // for a top-level `usage` does not look.
                    if let Some(usage) = json::terminal_usage(&data) {
                        self.usage = usage;
                    }
                }
                self.terminal |= terminal;
                if matches!(name, b"error" | b"response.failed") {
                    self.fault = Some("upstream_stream_error");
                }
            }
        }
        let splice = match info.model_span {
            // A translated chunk already names the client's model.
            Some(span) if self.translate.is_none() => Some(Splice {
                span,
                with: self.client_model.clone(),
            }),
            _ => None,
        };
        let fields = event_fields(ev.event.as_deref(), ev.id.as_deref());
        // A payload of several lines is written as several `data:` lines.
        // One that came as a single line holds no line feed, and neither
        // does the client's model (a JSON string literal), so only a joined
        // or a translated payload is looked through for one.
        if multiline || self.translate.is_some() {
            let payload = encode::payload(&data, splice.as_ref());
            if payload.iter().any(|p| memchr::memchr(b'\n', p).is_some()) {
                return Some(StreamItem::event(fields, reprefix_lines(&payload)));
            }
        }
        Some(StreamItem::Data {
            fields,
            data,
            splice,
        })
    }

    /// A native Messages event: `message_start` holds the input tokens
    /// (inside its `message`), `message_delta` the output tokens so far,
    /// `message_stop` ends the answer, `error` fails it and is the last. Told by the
    /// `type` member every Messages event opens with.
    fn note_message_event(&mut self, data: &[u8]) {
        let kind = json::event_type(data);
        match kind.as_deref() {
            Some("message_start") => {
                if let Some((input, output)) = json::message_start_usage(data) {
                    self.usage = (input, output);
                }
            }
            Some("message_stop") => {
                self.terminal = true;
                self.complete = true;
            }
            Some("error") => {
                // Passed on, and the last event: an Anthropic stream ends
                // at its error (no second one when the upstream closes).
                self.fault = Some("upstream_stream_error");
                self.ended = true;
                self.failed = true;
            }
            _ => {}
        }
    }

    /// Keep an event's token counts, and whether it carried an error.
    fn note(&mut self, info: &json::AnswerInfo) {
        if self.native == Native::Messages {
            // `message_delta`'s `usage` has the output tokens, and the
            // input tokens only in newer API versions.
            if let Some(output) = info.completion_tokens {
                self.usage.1 = output;
            }
            if let Some(input) = info.prompt_tokens.filter(|n| *n > 0) {
                self.usage.0 = input;
            }
            self.fault = self.fault.or(info.error.then_some("upstream_stream_error"));
            return;
        }
        if info.prompt_tokens.is_some() || info.completion_tokens.is_some() {
            self.usage = (
                info.prompt_tokens.unwrap_or(0),
                info.completion_tokens.unwrap_or(0),
            );
        }
        if info.error {
            // Passed on as the upstream sent it; the request failed.
            self.fault = Some("upstream_stream_error");
        }
    }

    /// Prompt and completion tokens from the upstream's `usage`, as far
    /// as it sent one.
    pub fn usage(&self) -> (u64, u64) {
        match &self.translate {
            Some(Translation::FromMessages(t)) => t.usage().unwrap_or(self.usage),
            _ => self.usage,
        }
    }

    fn finish_done(&mut self) -> StreamItem {
        self.ended = true;
        if self.events == 0 {
            // `[DONE]` alone is no answer: say so rather than end an empty
            // "successful" stream.
            return self.fail(ApiError::Upstream(
                "the upstream's stream ended without a single event".into(),
            ));
        }
        if self.native == Native::Responses && !self.terminal {
            return self.fail(ApiError::Upstream(
                "the upstream's Responses stream ended before response.completed".into(),
            ));
        }
        if self.native == Native::Messages {
            if !self.terminal {
                return self.fail(ApiError::Upstream(
                    "the upstream's Messages stream ended before message_stop".into(),
                ));
            }
            // Anthropic's streams end at `message_stop`: no `[DONE]`.
            self.done = true;
            return StreamItem::Raw(Bytes::new());
        }
        if let Some(t) = self.translate.as_mut().and_then(Translation::events) {
            // The items closed and `response.completed` (or `.failed`),
            // then `[DONE]` (Anthropic: the blocks closed, `message_delta`
            // and `message_stop`); or, when the chat events made no
            // answer, the error event.
            let closing = match t.finish() {
                Ok(closing) => closing,
                Err(e) => return self.fail(e),
            };
            if t.failed() {
                self.fault = Some("upstream_stream_error");
            }
            for (name, data) in closing {
                let fields = event_fields(Some(name.as_bytes()), None);
                self.pending.push_back(StreamItem::event(fields, data));
            }
            self.done = true;
            if t.ends_with_done() {
                self.pending.push_back(StreamItem::done());
            }
            return self
                .pending
                .pop_front()
                .unwrap_or_else(|| StreamItem::Raw(Bytes::new()));
        }
        self.done = true;
        StreamItem::done()
    }

    /// End the stream on `err`: an error event, or for a Responses client
    /// the translation's `error` and `response.failed` (with what came).
    pub fn fail(&mut self, err: ApiError) -> StreamItem {
        self.failed = true;
        self.ended = true;
        if let Some(t) = self.translate.as_mut().and_then(Translation::events) {
            for (name, data) in t.abort(&err.to_string()) {
                let fields = event_fields(Some(name.as_bytes()), None);
                self.pending.push_back(StreamItem::event(fields, data));
            }
            // A dialect's stream that already ended with its error event
            // gets nothing more (an OpenAI error event would be foreign
            // to it); an empty item writes no bytes.
            return self
                .pending
                .pop_front()
                .unwrap_or_else(|| StreamItem::Raw(Bytes::new()));
        }
        if self.native == Native::Messages {
            // An Anthropic client's parser knows Anthropic's error event.
            let data = crate::translate::anthropic::error_body(err.status(), &err.body());
            let data = Bytes::copy_from_slice(data.trim_ascii_end());
            return StreamItem::event(event_fields(Some(b"error"), None), data);
        }
        StreamItem::Raw(error_event(&err))
    }

    /// Ended with `[DONE]`.
    pub fn completed(&self) -> bool {
        self.done
    }

    /// Ended with an error event (the connection is then closed).
    pub fn failed(&self) -> bool {
        self.failed
    }

    /// Why a stream that ended with `[DONE]` still counts as failed.
    pub fn fault(&self) -> Option<&'static str> {
        self.fault
    }
}

impl UpstreamStream {
    pub fn new(
        limits: &Limits,
        response: UpstreamResponse,
        client_model: Bytes,
        translate: Option<Translation>,
        native: Native,
        first: Option<Bytes>,
    ) -> UpstreamStream {
        let now = Instant::now();
        let mut reframer = Reframer::new(limits.max_event_bytes, client_model, translate, native);
        reframer.push(first.unwrap_or_default());
        UpstreamStream {
            response,
            reframer,
            keep_alive: limits.sse_keepalive_interval,
            idle_timeout: limits.stream_idle_timeout,
            heard: now,
            spoke: now,
            spoke_since: false,
        }
    }

    /// Cancel-safe: the only await is `UpstreamResponse::data`, itself
    /// cancel-safe, and all state changes happen after it returns.
    pub async fn next(&mut self) -> Option<StreamItem> {
        loop {
            if let Some(item) = self.next_ready() {
                return Some(item);
            }
            if self.reframer.ended {
                return None;
            }
            // One clock read per wait, not per event: the driver calls
            // this right after writing everything it was handed.
            let now = Instant::now();
            if self.spoke_since {
                self.spoke = now;
                self.spoke_since = false;
            }
            // An upstream whose comments are always ready would never let
            // the wait below time out: the client's interval is checked
            // here too.
            if !self.keep_alive.is_zero() && now >= self.spoke + self.keep_alive {
                self.spoke_since = true;
                return Some(StreamItem::Raw(Bytes::from_static(KEEP_ALIVE)));
            }
            let idle_at = self.heard + self.idle_timeout;
            // A keep-alive interval of 0 turns the comments off: then only
            // the idle timeout bounds the wait.
            let wake = match self.keep_alive.is_zero() {
                true => idle_at,
                false => idle_at.min(self.spoke + self.keep_alive),
            };
            match tokio::time::timeout_at(wake.into(), self.response.data()).await {
                Ok(Ok(Some(piece))) => {
                    self.heard = Instant::now();
                    self.reframer.push(piece);
                }
                Ok(Ok(None)) => self.reframer.upstream_done(),
                Ok(Err(e)) => return Some(self.reframer.fail(stream_error(e))),
                Err(_) if Instant::now() >= idle_at => {
                    let silent = self.heard.elapsed().as_secs();
                    return Some(self.reframer.fail(ApiError::Upstream(format!(
                        "the upstream sent nothing for {silent} s"
                    ))));
                }
                Err(_) => {
                    self.spoke_since = true;
                    return Some(StreamItem::Raw(Bytes::from_static(KEEP_ALIVE)));
                }
            }
        }
    }

    /// The next item from what has already arrived, without waiting: lets
    /// the writer send every event that is here in one write, and never
    /// hold one back for the next.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        let item = self.ready_item();
        self.spoke_since |= item.is_some();
        item
    }

    fn ready_item(&mut self) -> Option<StreamItem> {
        loop {
            match self.reframer.next_item() {
                Reframed::Item(item) => return Some(item),
                Reframed::End => return None,
                Reframed::NeedMore => match self.response.try_data() {
                    Poll::Ready(Ok(Some(piece))) => {
                        self.heard = Instant::now();
                        self.reframer.push(piece);
                    }
                    Poll::Ready(Ok(None)) => self.reframer.upstream_done(),
                    Poll::Ready(Err(e)) => return Some(self.reframer.fail(stream_error(e))),
                    Poll::Pending => return None,
                },
            }
        }
    }

    /// After a stream handed out `[DONE]` and was written whole: reads the
    /// upstream's body to its end, so that its connection goes back to the
    /// pool. A chunked stream's last chunk (`0\r\n\r\n`) follows `[DONE]`,
    /// often in the same read; without it the connection cannot be reused
    /// and every stream would pay a new connect (and TLS handshake). The
    /// client already has its whole answer; an upstream that sends more
    /// than [`SETTLE_MAX_BYTES`] after `[DONE]`, or takes longer than
    /// [`SETTLE_WAIT`] to end its body, has its connection closed instead.
    pub async fn settle(&mut self) {
        if !self.reframer.done || self.reframer.failed {
            return;
        }
        let mut left = SETTLE_MAX_BYTES;
        let read_to_end = async {
            while let Ok(Some(piece)) = self.response.data().await {
                // Events after `[DONE]` are no part of the answer (docs/wire.md §4).
                match left.checked_sub(piece.len()) {
                    Some(l) => left = l,
                    None => return,
                }
            }
        };
        let _ = tokio::time::timeout(SETTLE_WAIT, read_to_end).await;
    }

    /// True once nothing more will come: `[DONE]` or an error was handed out.
    pub fn is_ended(&self) -> bool {
        self.reframer.is_ended()
    }

    /// Prompt and completion tokens from the upstream's `usage`, as far
    /// as it sent one.
    pub fn usage(&self) -> (u64, u64) {
        self.reframer.usage()
    }

    /// Ended with `[DONE]`.
    pub fn completed(&self) -> bool {
        self.reframer.completed()
    }

    /// Ended with an error event (the connection is then closed).
    pub fn failed(&self) -> bool {
        self.reframer.failed()
    }

    /// Why a stream that ended with `[DONE]` still counts as failed.
    pub fn fault(&self) -> Option<&'static str> {
        self.reframer.fault()
    }
}

fn stream_error(e: UpstreamError) -> ApiError {
    ApiError::Upstream(format!("the stream broke off: {e}"))
}
