//! Server-sent-events framing: turns an upstream `text/event-stream` body into
//! complete events, as `Bytes` slices of the body wherever possible.
//!
//! This module owns the SSE wire format as the WHATWG HTML Standard defines it
//! (§9.2.6 "Interpreting an event stream"): line splitting on CRLF, LF or a
//! lone CR, the one leading BOM, `field:value` parsing, joining `data` lines
//! and dispatching on a blank line. It works on bytes, never on decoded text:
//! the gateway forwards payloads as they came, so invalid UTF-8 is passed
//! through untouched instead of being replaced with U+FFFD as a browser would.
//!
//! It must not touch IO or JSON. The connection driver pushes body pieces in
//! (already de-chunked, cut at arbitrary points) and pulls events out; the
//! gateway re-frames each event and rewrites the `model` field itself.
//!
//! # Zero-copy invariant
//!
//! Every byte of input is scanned for a line end once. A line that lies
//! inside one pushed piece is handed out as a slice of that piece, and so are
//! the field values cut from it; an event with a single `data` line taken
//! from such a line therefore carries a `data` that points into the piece.
//! Bytes are copied only when they must be joined: a line split across
//! pieces (its head is kept as a slice until the rest arrives, then copied
//! once into a `BytesMut`), or an event with several `data` lines.

pub mod encode;

use std::collections::VecDeque;
use std::mem;

use bytes::{Buf, Bytes, BytesMut};
use memchr::{memchr, memchr2};

/// The UTF-8 byte order mark that may open a stream (WHATWG §9.2.6: "One
/// leading U+FEFF BYTE ORDER MARK character must be ignored if any are
/// present").
const BOM: &[u8; 3] = b"\xEF\xBB\xBF";

/// One dispatched event. Only the fields a gateway re-emits are kept.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// The data field: lines of all `data:` fields joined by '\n' (spec).
    /// Zero-copy slice of the input when the event has a single data line
    /// that lies within one input piece (the common case); copied only when
    /// it must be joined or was split across pieces.
    pub data: Bytes,
    /// The `event:` field value if any (None when absent). A present but
    /// empty `event:` gives `Some` of an empty value; as in the spec, the
    /// last `event:` line of the event wins.
    pub event: Option<Bytes>,
    /// The `id:` field value if any: the last `id:` line of this event. A
    /// value containing NUL is ignored, as the spec ignores it. Unlike a
    /// browser's "last event ID buffer" it does not carry over to later
    /// events: a proxy re-emits each event as it came.
    pub id: Option<Bytes>,
    /// Whether `data` holds a line feed, which it does exactly when it was
    /// joined from several `data` lines (a single line holds no CR or LF).
    /// Known from the decoding, so a writer need not look for one.
    pub multiline: bool,
}

impl Event {
    /// Whether this is OpenAI's end-of-stream sentinel, `data: [DONE]`.
    /// The comparison is exact: the sentinel is a fixed string, not JSON.
    pub fn is_done(&self) -> bool {
        self.data.as_ref() == b"[DONE]"
    }
}

/// The start of a line whose end has not arrived yet.
#[derive(Debug, Default)]
enum Partial {
    #[default]
    Empty,
    /// Still a slice of the one piece it came from: if the next piece opens
    /// with the line end, the line is handed out without a copy.
    Slice(Bytes),
    /// Spans pieces, so it had to be joined.
    Owned(BytesMut),
}

impl Partial {
    fn len(&self) -> usize {
        match self {
            Partial::Empty => 0,
            Partial::Slice(b) => b.len(),
            Partial::Owned(m) => m.len(),
        }
    }

    /// Keeps `more`, which holds no line end, as the continuation.
    fn append(&mut self, more: Bytes) {
        *self = match mem::take(self) {
            Partial::Empty => Partial::Slice(more),
            Partial::Slice(head) => Partial::Owned(concat(&head, &more)),
            Partial::Owned(mut m) => {
                m.extend_from_slice(&more);
                Partial::Owned(m)
            }
        };
    }

    /// The whole line, given the part of it that came with its line end.
    fn complete(&mut self, tail: Bytes) -> Bytes {
        match mem::take(self) {
            Partial::Empty => tail,
            Partial::Slice(head) if tail.is_empty() => head,
            Partial::Slice(head) => concat(&head, &tail).freeze(),
            Partial::Owned(mut m) => {
                m.extend_from_slice(&tail);
                m.freeze()
            }
        }
    }
}

/// Joins two slices with a single, exactly sized allocation.
fn concat(a: &[u8], b: &[u8]) -> BytesMut {
    let mut m = BytesMut::with_capacity(a.len() + b.len());
    m.extend_from_slice(a);
    m.extend_from_slice(b);
    m
}

/// The data buffer of the event being assembled.
#[derive(Debug, Default)]
enum Data {
    /// No `data` line yet: a blank line now dispatches nothing (WHATWG: "If
    /// the data buffer is an empty string, ... return").
    #[default]
    Absent,
    /// Exactly one `data` line, kept as the slice it arrived as.
    One(Bytes),
    /// Several lines, joined with '\n'.
    Joined(BytesMut),
}

/// The fields of the event being assembled.
#[derive(Debug, Default)]
struct Building {
    data: Data,
    event: Option<Bytes>,
    id: Option<Bytes>,
    /// Any field line seen, so that a block without `data` can be counted
    /// as skipped while runs of blank lines are not.
    any_field: bool,
}

impl Building {
    fn len(&self) -> usize {
        let data = match &self.data {
            Data::Absent => 0,
            Data::One(b) => b.len(),
            Data::Joined(m) => m.len(),
        };
        data + self.event.as_ref().map_or(0, Bytes::len) + self.id.as_ref().map_or(0, Bytes::len)
    }

    /// WHATWG: append the value and a LF to the data buffer, and strip the
    /// final LF at dispatch; joining with '\n' is the same thing.
    fn push_data(&mut self, value: Bytes) {
        self.data = match mem::take(&mut self.data) {
            Data::Absent => Data::One(value),
            Data::One(first) => {
                let mut m = BytesMut::with_capacity(first.len() + 1 + value.len());
                m.extend_from_slice(&first);
                m.extend_from_slice(b"\n");
                m.extend_from_slice(&value);
                Data::Joined(m)
            }
            Data::Joined(mut m) => {
                m.extend_from_slice(b"\n");
                m.extend_from_slice(&value);
                Data::Joined(m)
            }
        };
    }
}

/// Incremental, sans-IO decoder of one event stream.
///
/// Push body pieces with [`push`](Self::push), drain complete events with
/// [`next_event`](Self::next_event) until it returns `None`, and at the end
/// of the body call [`finish`](Self::finish) once.
#[derive(Debug)]
pub struct SseDecoder {
    /// The piece being scanned; lines are cut off its front with
    /// `split_to`, so what is handed out stays a slice of the piece.
    cur: Bytes,
    /// Pieces pushed but not reached yet, oldest first. Never holds an empty
    /// piece.
    queue: VecDeque<Bytes>,
    /// Total length of `queue`, for `pending_len` without a walk.
    queued_len: usize,
    /// The head of a line whose end is in a later piece. It has been
    /// scanned already; only the next piece is searched for the line end.
    partial: Partial,
    /// The last line ended with a CR that was the last byte of its piece. A
    /// LF opening the next piece is the second half of that CRLF, not a
    /// blank line (WHATWG: "end-of-line = ( cr lf / cr / lf )").
    last_was_cr: bool,
    /// At the start of the stream: how many bytes of a BOM have been matched
    /// (a BOM may itself be split across pieces). `None` once past it.
    bom_matched: Option<usize>,
    building: Building,
    comments_seen: u64,
}

impl Default for SseDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl SseDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        SseDecoder {
            cur: Bytes::new(),
            queue: VecDeque::new(),
            queued_len: 0,
            partial: Partial::Empty,
            last_was_cr: false,
            bom_matched: Some(0),
            building: Building::default(),
            comments_seen: 0,
        }
    }

    /// Feed the next piece of the body. Must not copy `piece` when it
    /// contains whole events; only an incomplete tail is kept (kept as a
    /// Bytes slice if possible, copied into a pending BytesMut only when
    /// joining is needed).
    ///
    /// Scanning is deferred to [`next_event`](Self::next_event), so a push
    /// is O(1) and never copies.
    pub fn push(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        self.queued_len += piece.len();
        self.queue.push_back(piece);
    }

    /// The next complete event, if one is complete. Comments (lines starting
    /// with ':') and blank events (no data field) are skipped, but count in
    /// [`comments_seen`](Self::comments_seen). `retry:` and unknown fields
    /// are ignored.
    pub fn next_event(&mut self) -> Option<Event> {
        while let Some(line) = self.next_line() {
            if let Some(event) = self.process_line(line) {
                return Some(event);
            }
        }
        None
    }

    /// End of the body. Dispatches the event being assembled if it has at
    /// least one complete `data` line, even though its terminating blank
    /// line never came: many upstreams close right after their last event.
    ///
    /// A final line with no line end at all is discarded, as the spec
    /// discards it: on a close-delimited body it cannot be told apart from a
    /// connection cut mid-line, and forwarding half a JSON chunk to a client
    /// is worse than dropping it (the gateway can still emit its own
    /// `[DONE]`). A final line that ends in CR, LF or CRLF is complete.
    ///
    /// Call it once `next_event` has returned `None`; the decoder is then
    /// empty and ready for a new stream (`comments_seen` is kept). If
    /// complete events are still queued because `next_event` was not
    /// drained, they come out first, one per call, so
    /// `while let Some(e) = dec.finish()` never loses an event.
    pub fn finish(&mut self) -> Option<Event> {
        if let Some(event) = self.next_event() {
            return Some(event);
        }
        // All input is scanned: what is left is an unterminated line, which
        // is dropped (see above), and the event being assembled.
        let event = self.dispatch();
        let comments_seen = self.comments_seen;
        *self = Self::new();
        self.comments_seen = comments_seen;
        event
    }

    /// Bytes currently held while waiting for the rest of an event (for a
    /// memory cap by the caller).
    ///
    /// Counts the pushed bytes not scanned yet, the head of an unterminated
    /// line and the fields of the event being assembled. These are logical
    /// lengths: a kept slice also keeps its whole piece alive, so a caller
    /// capping memory should push pieces of bounded size.
    pub fn pending_len(&self) -> usize {
        self.cur.len() + self.queued_len + self.partial.len() + self.building.len()
    }

    /// Comment lines seen, plus blocks that ended without a `data` field
    /// (such as a lone `event: ping`), over the life of the decoder. Both
    /// are what upstreams send as keep-alives; neither is an event.
    pub fn comments_seen(&self) -> u64 {
        self.comments_seen
    }

    /// The next complete line, without its line end, or `None` when the
    /// input ends before one. Scans each byte once: an unterminated tail is
    /// moved to `partial` and only later pieces are searched.
    fn next_line(&mut self) -> Option<Bytes> {
        loop {
            if self.cur.is_empty() {
                self.cur = self.queue.pop_front()?;
                self.queued_len -= self.cur.len();
                if self.last_was_cr {
                    self.last_was_cr = false;
                    // The LF half of a CRLF split across pieces.
                    if self.cur.first() == Some(&b'\n') {
                        self.cur.advance(1);
                    }
                }
            }
            if let Some(matched) = self.bom_matched {
                self.skip_bom(matched);
            }
            if self.cur.is_empty() {
                continue;
            }
            let Some(end) = memchr2(b'\n', b'\r', &self.cur) else {
                let rest = mem::take(&mut self.cur);
                self.partial.append(rest);
                continue;
            };
            // `end` indexes a byte memchr2 found, so `cur` is not empty
            // after the split and `cur[0]` is that CR or LF.
            let tail = self.cur.split_to(end);
            let was_cr = self.cur[0] == b'\r';
            self.cur.advance(1);
            if was_cr {
                match self.cur.first() {
                    Some(b'\n') => self.cur.advance(1),
                    Some(_) => {}
                    None => self.last_was_cr = true,
                }
            }
            return Some(self.partial.complete(tail));
        }
    }

    /// Drops a leading BOM from the stream, matching across pieces; on a
    /// mismatch the bytes held back as a possible BOM become ordinary input.
    fn skip_bom(&mut self, matched: usize) {
        let want = &BOM[matched..];
        let n = want.len().min(self.cur.len());
        if self.cur[..n] == want[..n] {
            self.cur.advance(n);
            let matched = matched + n;
            self.bom_matched = (matched < BOM.len()).then_some(matched);
        } else {
            self.bom_matched = None;
            // No byte of input was consumed before the BOM, so `partial` is
            // empty, and a BOM prefix holds no line end.
            if matched > 0 {
                self.partial = Partial::Slice(Bytes::from_static(&BOM[..matched]));
            }
        }
    }

    /// Applies one line (WHATWG §9.2.6 "process the field"), returning the
    /// event a blank line dispatches.
    fn process_line(&mut self, line: Bytes) -> Option<Event> {
        if line.is_empty() {
            return self.dispatch();
        }
        if line[0] == b':' {
            self.comments_seen += 1;
            return None;
        }
        // "Collect the characters on the line before the first colon ...
        // If value starts with a U+0020 SPACE character, remove it."
        // No colon: the whole line is the field name, the value is empty.
        let (name_len, value_at) = match memchr(b':', &line) {
            Some(colon) => (colon, colon + 1),
            None => (line.len(), line.len()),
        };
        self.building.any_field = true;
        let field = match &line[..name_len] {
            b"data" => Field::Data,
            b"event" => Field::Event,
            b"id" => Field::Id,
            // `retry` sets the browser's reconnection time, which concerns
            // the gateway's client, not the gateway; other names are ignored
            // by the spec.
            _ => return None,
        };
        // The line becomes its value in place: advancing a `Bytes` moves
        // its start, where a slice would take (and drop) a reference.
        let mut value = line;
        value.advance(value_at);
        if value.first() == Some(&b' ') {
            value.advance(1);
        }
        match field {
            Field::Data => self.building.push_data(value),
            Field::Event => self.building.event = Some(value),
            // "If the field value does not contain U+0000 NULL, then set the
            // last event ID buffer to the field value. Otherwise, ignore."
            Field::Id if memchr(0, &value).is_none() => self.building.id = Some(value),
            Field::Id => {}
        }
        None
    }

    /// Ends the event being assembled; it is an event only if a `data` line
    /// was seen.
    fn dispatch(&mut self) -> Option<Event> {
        let building = mem::take(&mut self.building);
        let (data, multiline) = match building.data {
            Data::Absent => {
                if building.any_field {
                    self.comments_seen += 1;
                }
                return None;
            }
            Data::One(data) => (data, false),
            Data::Joined(data) => (data.freeze(), true),
        };
        Some(Event {
            data,
            event: building.event,
            id: building.id,
            multiline,
        })
    }
}

/// Fuzzing entry point: the first byte picks a piece size (1..=256), the
/// rest is the stream. Decoding it in those pieces must give the same events
/// as decoding it whole, as the plain [`reference`] reading gives, and must
/// leave the decoder empty.
#[doc(hidden)]
pub fn fuzz_sse(data: &[u8]) {
    let Some((&size, stream)) = data.split_first() else {
        return;
    };
    let size = usize::from(size) + 1;
    let whole = decode_pieces(std::iter::once(stream));
    let split = decode_pieces(stream.chunks(size));
    assert_eq!(whole, split, "events depend on where the input was split");
    assert_eq!(
        whole.0,
        reference(stream),
        "events differ from the reference reading"
    );
}

/// A straightforward reading of WHATWG §9.2.6 over the whole input, as
/// an oracle for the property test and the fuzz target: lines split on
/// CRLF, LF or CR, `data` lines joined with LF. Same EOF choice as
/// `finish`.
#[doc(hidden)]
pub fn reference(input: &[u8]) -> Vec<Event> {
    let input = input.strip_prefix(BOM).unwrap_or(input);
    let mut lines = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i < input.len() {
        match input[i] {
            b'\n' => {
                lines.push(&input[start..i]);
                start = i + 1;
            }
            b'\r' => {
                lines.push(&input[start..i]);
                if input.get(i + 1) == Some(&b'\n') {
                    i += 1;
                }
                start = i + 1;
            }
            _ => {}
        }
        i += 1;
    }
    // `lines` holds only terminated lines; the rest is dropped.
    lines.push(b""); // EOF dispatches like a blank line (lenient finish)
    let mut events = Vec::new();
    let (mut data, mut event, mut id): (Option<Vec<u8>>, _, _) = (None, None, None);
    for line in lines {
        if line.is_empty() {
            if let Some(d) = data.take() {
                events.push(Event {
                    multiline: d.contains(&b'\n'),
                    data: d.into(),
                    event: event.take(),
                    id: id.take(),
                });
            }
            event = None;
            id = None;
            continue;
        }
        if line[0] == b':' {
            continue;
        }
        let (name, value) = match line.iter().position(|&b| b == b':') {
            Some(c) => {
                let v = &line[c + 1..];
                (&line[..c], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &b""[..]),
        };
        match name {
            b"data" => match &mut data {
                Some(d) => {
                    d.push(b'\n');
                    d.extend_from_slice(value);
                }
                None => data = Some(value.to_vec()),
            },
            b"event" => event = Some(Bytes::copy_from_slice(value)),
            b"id" if !value.contains(&0) => id = Some(Bytes::copy_from_slice(value)),
            _ => {}
        }
    }
    events
}

/// Decodes a stream given as pieces the way a connection driver does:
/// drain after every push, then finish. Returns the events and the number
/// of comments seen.
fn decode_pieces<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> (Vec<Event>, u64) {
    let mut dec = SseDecoder::new();
    let mut events = Vec::new();
    for piece in pieces {
        dec.push(Bytes::copy_from_slice(piece));
        events.extend(std::iter::from_fn(|| dec.next_event()));
    }
    events.extend(std::iter::from_fn(|| dec.finish()));
    assert_eq!(dec.pending_len(), 0, "finish left bytes behind");
    (events, dec.comments_seen())
}

/// The fields of an event the decoder keeps (WHATWG HTML §9.2.6).
enum Field {
    Data,
    Event,
    Id,
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn ev(data: &str) -> Event {
        Event {
            data: Bytes::copy_from_slice(data.as_bytes()),
            event: None,
            id: None,
            multiline: data.contains('\n'),
        }
    }

    fn with(mut e: Event, event: Option<&str>, id: Option<&str>) -> Event {
        e.event = event.map(|s| Bytes::copy_from_slice(s.as_bytes()));
        e.id = id.map(|s| Bytes::copy_from_slice(s.as_bytes()));
        e
    }

    /// Decodes `input` whole, at every two-way split point and byte by
    /// byte, asserting the same events and comment count each time.
    fn check(input: &[u8], expected: &[Event], comments: u64) {
        let whole = decode_pieces([input]);
        assert_eq!(whole.0, expected, "whole input");
        assert_eq!(whole.1, comments, "comments_seen, whole input");
        for at in 0..=input.len() {
            let (a, b) = input.split_at(at);
            assert_eq!(decode_pieces([a, b]), whole, "split at {at}");
        }
        assert_eq!(decode_pieces(input.chunks(1)), whole, "byte by byte");
    }

    fn chunk(content: &str) -> String {
        format!(
            r#"{{"id":"chatcmpl-1","object":"chat.completion.chunk","created":1,"model":"gpt-4o","choices":[{{"index":0,"delta":{{"content":"{content}"}},"finish_reason":null}}]}}"#
        )
    }

    #[test]
    fn openai_chat_completion_chunk_stream() {
        let words = ["Hel", "lo", ",", " world"];
        let mut input = String::new();
        let mut expected = Vec::new();
        for w in words {
            input.push_str(&format!("data: {}\n\n", chunk(w)));
            expected.push(ev(&chunk(w)));
        }
        input.push_str("data: [DONE]\n\n");
        expected.push(ev("[DONE]"));
        check(input.as_bytes(), &expected, 0);
        let (events, _) = decode_pieces([input.as_bytes()]);
        assert!(events.last().is_some_and(Event::is_done));
        assert!(events[..4].iter().all(|e| !e.is_done()));
    }

    #[test]
    fn lf_crlf_and_cr_line_ends() {
        let expected = [ev("a"), ev("b\nc")];
        check(b"data: a\n\ndata: b\ndata: c\n\n", &expected, 0);
        check(b"data: a\r\n\r\ndata: b\r\ndata: c\r\n\r\n", &expected, 0);
        check(b"data: a\r\rdata: b\rdata: c\r\r", &expected, 0);
        check(b"data: a\r\n\rdata: b\ndata: c\r\r\n", &expected, 0);
    }

    #[test]
    fn cr_ending_one_piece_and_lf_opening_the_next_is_one_line_end() {
        // Counted twice, the LF would be a blank line and split the event.
        let (events, _) = decode_pieces([&b"data: a\r"[..], b"\ndata: b\r", b"\n\r", b"\n"]);
        assert_eq!(events, [ev("a\nb")]);

        let mut dec = SseDecoder::new();
        dec.push(Bytes::from_static(b"data: a\r"));
        assert_eq!(dec.next_event(), None);
        dec.push(Bytes::from_static(b"\n"));
        assert_eq!(dec.next_event(), None, "the LF completed the CRLF");
        dec.push(Bytes::from_static(b"\r\n"));
        assert_eq!(dec.next_event(), Some(ev("a")));
    }

    #[test]
    fn comments_are_skipped_and_counted() {
        let input = b": keep-alive\n\n:\n\ndata: x\n: inside\ndata: y\n\n:\n";
        check(input, &[ev("x\ny")], 4);
    }

    #[test]
    fn blank_events_without_data_are_skipped_and_counted() {
        check(
            b"event: ping\n\n\n\nid: 7\nretry: 10\n\ndata: x\n\n",
            &[ev("x")],
            2,
        );
    }

    #[test]
    fn event_and_id_fields() {
        let input =
            b"event: delta\nid: 1\ndata: a\n\nid: 2\nevent: x\nevent: done\ndata: b\n\ndata: c\n\n";
        let expected = [
            with(ev("a"), Some("delta"), Some("1")),
            with(ev("b"), Some("done"), Some("2")),
            ev("c"),
        ];
        check(input, &expected, 0);
    }

    #[test]
    fn id_with_nul_is_ignored() {
        check(
            b"id: 1\nid: a\0b\ndata: x\n\n",
            &[with(ev("x"), None, Some("1"))],
            0,
        );
    }

    #[test]
    fn one_optional_space_after_the_colon() {
        let expected = [ev("a"), ev("b"), ev(" c"), ev("d: e")];
        check(
            b"data: a\n\ndata:b\n\ndata:  c\n\ndata: d: e\n\n",
            &expected,
            0,
        );
    }

    #[test]
    fn field_name_alone_has_an_empty_value() {
        let expected = [ev(""), ev("\n"), ev("a\n")];
        check(b"data\n\ndata\ndata:\n\ndata: a\ndata\n\n", &expected, 0);
    }

    #[test]
    fn unknown_fields_and_retry_are_ignored() {
        let input = b"retry: 3000\nfoo: bar\nDATA: no\ndata : no\ndata: yes\n\n";
        check(input, &[ev("yes")], 0);
    }

    #[test]
    fn leading_bom_is_skipped_once() {
        check(b"\xEF\xBB\xBFdata: a\n\n", &[ev("a")], 0);
        // A second BOM is content: the line's field name is "\u{FEFF}data".
        check(
            b"\xEF\xBB\xBF\xEF\xBB\xBFdata: a\n\ndata: b\n\n",
            &[ev("b")],
            1,
        );
        // A BOM later in the stream is content too.
        check(b"data: \xEF\xBB\xBF\n\n", &[ev("\u{FEFF}")], 0);
    }

    #[test]
    fn bom_prefix_that_is_not_a_bom_is_kept() {
        let expected = vec![Event {
            data: Bytes::from_static(b"\xEF\xBB"),
            event: None,
            id: None,
            multiline: false,
        }];
        // "\xEF\xBBdata" is an unknown field name: a block without data.
        check(b"\xEF\xBBdata: x\n\ndata: \xEF\xBB\n\n", &expected, 1);
        let (events, _) = decode_pieces([&b"\xEF"[..], b"\n\ndata: x\n\n"]);
        assert_eq!(events, [ev("x")]);
    }

    #[test]
    fn done_sentinel() {
        check(b"data: [DONE]\n\n", &[ev("[DONE]")], 0);
        assert!(ev("[DONE]").is_done());
        assert!(!ev("[DONE] ").is_done());
        assert!(!ev("").is_done());
    }

    #[test]
    fn finish_with_a_trailing_blank_line() {
        check(b"data: a\n\ndata: b\n\n", &[ev("a"), ev("b")], 0);
    }

    #[test]
    fn finish_without_a_trailing_blank_line() {
        check(b"data: a\n\ndata: b\n", &[ev("a"), ev("b")], 0);
        check(b"data: a\n\ndata: b\r", &[ev("a"), ev("b")], 0);
        check(
            b"data: a\n\nevent: e\ndata: b\ndata: c\r\n",
            &[ev("a"), with(ev("b\nc"), Some("e"), None)],
            0,
        );
    }

    #[test]
    fn finish_drops_an_unterminated_final_line() {
        check(b"data: a\n\ndata: {\"choices\":[{\"del", &[ev("a")], 0);
        check(b"data: a\ndata: b", &[ev("a")], 0);
        check(b"data: [DONE]", &[], 0);
        check(b"", &[], 0);
    }

    #[test]
    fn finish_empties_the_decoder_and_resets_the_stream() {
        let mut dec = SseDecoder::new();
        dec.push(Bytes::from_static(b"data: a\ndata: partial"));
        assert_eq!(dec.next_event(), None);
        assert_eq!(dec.pending_len(), "a".len() + "data: partial".len());
        assert_eq!(dec.finish(), Some(ev("a")));
        assert_eq!(dec.pending_len(), 0);
        assert_eq!(dec.finish(), None);
        // A new stream may open with its own BOM.
        dec.push(Bytes::from_static(b"\xEF\xBB\xBFdata: b\n\n"));
        assert_eq!(dec.next_event(), Some(ev("b")));
    }

    #[test]
    fn finish_without_draining_loses_nothing() {
        let mut dec = SseDecoder::new();
        dec.push(Bytes::from_static(b"data: a\n\ndata: b\n\ndata: c\n"));
        let events: Vec<_> = std::iter::from_fn(|| dec.finish()).collect();
        assert_eq!(events, [ev("a"), ev("b"), ev("c")]);
        assert_eq!(dec.pending_len(), 0);
    }

    #[test]
    fn pending_len_tracks_what_is_held() {
        let mut dec = SseDecoder::new();
        dec.push(Bytes::from_static(b"data: a\n\ndata: b"));
        assert_eq!(dec.pending_len(), 16);
        assert_eq!(dec.next_event(), Some(ev("a")));
        assert_eq!(dec.pending_len(), "data: b".len());
        dec.push(Bytes::from_static(b"cd\n"));
        assert_eq!(dec.next_event(), None);
        assert_eq!(dec.pending_len(), "bcd".len());
        dec.push(Bytes::from_static(b"\n"));
        assert_eq!(dec.next_event(), Some(ev("bcd")));
        assert_eq!(dec.pending_len(), 0);
    }

    fn points_into(inner: &Bytes, outer: &Bytes) -> bool {
        let outer = outer.as_ptr_range();
        let inner = inner.as_ptr_range();
        outer.start <= inner.start && inner.end <= outer.end
    }

    #[test]
    fn whole_events_in_a_piece_are_not_copied() {
        let mut input = String::new();
        for w in ["a", "b", "c"] {
            input.push_str(&format!("event: e\nid: {w}\ndata: {}\n\n", chunk(w)));
        }
        let piece = Bytes::from(input);
        let mut dec = SseDecoder::new();
        dec.push(piece.clone());
        let mut n = 0;
        while let Some(e) = dec.next_event() {
            assert!(points_into(&e.data, &piece), "data copied");
            assert!(points_into(e.event.as_ref().unwrap(), &piece));
            assert!(points_into(e.id.as_ref().unwrap(), &piece));
            n += 1;
        }
        assert_eq!(n, 3);
    }

    #[test]
    fn one_event_per_piece_is_not_copied() {
        let mut dec = SseDecoder::new();
        for w in ["a", "b", "c"] {
            let piece = Bytes::from(format!("data: {}\r\n\r\n", chunk(w)));
            dec.push(piece.clone());
            let e = dec.next_event().expect("a whole event was pushed");
            assert!(points_into(&e.data, &piece), "data copied");
            assert_eq!(dec.next_event(), None);
            assert_eq!(dec.pending_len(), 0);
        }
    }

    #[test]
    fn line_whose_end_opens_the_next_piece_is_not_copied() {
        let first = Bytes::from_static(b"data: {\"a\":1}");
        let mut dec = SseDecoder::new();
        dec.push(first.clone());
        assert_eq!(dec.next_event(), None);
        dec.push(Bytes::from_static(b"\n\n"));
        let e = dec.next_event().expect("event complete");
        assert!(points_into(&e.data, &first), "data copied");
    }

    #[test]
    fn fuzz_entry_point_accepts_seeds() {
        fuzz_sse(b"");
        fuzz_sse(b"\x00");
        fuzz_sse(b"\x02data: a\r\n\r\ndata: b\r");
        fuzz_sse(b"\xff\xEF\xBB\xBFdata\n\n");
    }

    /// The committed fuzz seeds (and any crash added there) stay regression
    /// tests even where cargo-fuzz is not installed.
    #[test]
    fn fuzz_corpus_replays() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus/sse");
        let mut seen = 0;
        for entry in std::fs::read_dir(&dir).expect("fuzz/corpus/sse is committed") {
            let path = entry.expect("readable corpus dir").path();
            fuzz_sse(&std::fs::read(&path).expect("readable seed"));
            seen += 1;
        }
        assert!(seen > 0, "no seeds in {}", dir.display());
    }

    /// Stream-ish bytes: mostly field syntax and line ends, so that the
    /// generator hits CR/LF splits and field names often.
    fn sse_bytes() -> impl Strategy<Value = Vec<u8>> {
        let token = prop_oneof![
            Just(b"data:".to_vec()),
            Just(b"data: ".to_vec()),
            Just(b"data".to_vec()),
            Just(b"event: e".to_vec()),
            Just(b"id: 1".to_vec()),
            Just(b":".to_vec()),
            Just(b"\r".to_vec()),
            Just(b"\n".to_vec()),
            Just(b"\r\n".to_vec()),
            Just(BOM.to_vec()),
            Just(b"\0".to_vec()),
            proptest::collection::vec(any::<u8>(), 0..8),
        ];
        proptest::collection::vec(token, 0..40).prop_map(|t| t.concat())
    }

    /// Cuts `input` at the given points (taken modulo its length).
    fn cut(input: &[u8], mut points: Vec<usize>) -> Vec<&[u8]> {
        points.iter_mut().for_each(|p| *p %= input.len() + 1);
        points.sort_unstable();
        let mut pieces = Vec::new();
        let mut start = 0;
        for p in points {
            pieces.push(&input[start..p]);
            start = p;
        }
        pieces.push(&input[start..]);
        pieces
    }

    proptest! {
        #[test]
        fn any_split_of_any_bytes_matches_the_whole(
            input in prop_oneof![sse_bytes(), proptest::collection::vec(any::<u8>(), 0..200)],
            points in proptest::collection::vec(any::<usize>(), 0..12),
        ) {
            let whole = decode_pieces([&input[..]]);
            prop_assert_eq!(&whole.0, &reference(&input));
            let split = decode_pieces(cut(&input, points));
            prop_assert_eq!(split, whole);
        }
    }
}
