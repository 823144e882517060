//! Server-sent events as chat2api writes them (WHATWG HTML §9.2.6), the
//! counterpart of the decoder in [`super`]: an event's `event:`/`id:` field
//! lines and its `data:` payload (as slices, so a rewritten `model` costs no
//! copy), multi-line payloads, keep-alives, error events and `[DONE]`.
//! The connection driver frames each [`StreamItem`] as it writes it.

use std::ops::Range;

use bytes::Bytes;

use crate::api::ApiError;

/// `data: [DONE]\n\n`, the end of every successful stream (docs/wire.md §4, "Streams").
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
    /// payload, `data` with `splice` written in place of a part of it;
    /// written as `fields` + `data: ` + [`payload`](Self::payload) + `\n\n`.
    Data {
        fields: Bytes,
        data: Bytes,
        splice: Option<Splice>,
    },
    /// Pre-framed bytes: `[DONE]`, a keep-alive comment, an error event.
    Raw(Bytes),
}

/// `data` with `splice` in place, in three pieces (empty ones included). A
/// span outside `data` (never made by the re-framer) splices nothing.
pub fn payload<'a>(data: &'a [u8], splice: Option<&'a Splice>) -> [&'a [u8]; 3] {
    let Some(Splice { span, with }) = splice else {
        return [data, &[], &[]];
    };
    match (data.get(..span.start), data.get(span.end..)) {
        (Some(prefix), Some(suffix)) if span.start <= span.end => [prefix, with, suffix],
        _ => [data, &[], &[]],
    }
}

/// Bytes written in place of `data[span]` (the client's model name in place
/// of the upstream's). The payload is cut into its three pieces only as I/O
/// slices, so an event holds one reference to the buffer it was read into
/// (each reference taken and dropped is an atomic operation).
pub struct Splice {
    /// Within the event's `data`.
    pub span: Range<usize>,
    pub with: Bytes,
}

impl StreamItem {
    /// One event of a whole payload (nothing spliced), with its field
    /// lines (`event: …\n`, usually none).
    pub fn event(fields: Bytes, data: Bytes) -> StreamItem {
        StreamItem::Data {
            fields,
            data,
            splice: None,
        }
    }

    /// An event's payload as written ([`payload`]); a raw item's bytes.
    pub fn payload(&self) -> [&[u8]; 3] {
        match self {
            StreamItem::Data { data, splice, .. } => payload(data, splice.as_ref()),
            StreamItem::Raw(raw) => [raw, &[], &[]],
        }
    }

    /// `data: [DONE]`.
    pub fn done() -> StreamItem {
        StreamItem::Raw(Bytes::from_static(DONE))
    }
}

/// An error event: `data: {"error":{...}}\n\n` (docs/wire.md §4, "Streams").
pub fn error_event(err: &ApiError) -> Bytes {
    let body = err.body();
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(b"data: ");
    out.extend_from_slice(&body);
    out.extend_from_slice(b"\n\n");
    Bytes::from(out)
}

/// The `event:` and `id:` lines of an event, rendered once (empty when it
/// has neither, as chat chunks do; an empty event name is none: a chat
/// chunk made by a translator has no name).
pub fn event_fields(event: Option<&[u8]>, id: Option<&[u8]>) -> Bytes {
    let event = event.filter(|e| !e.is_empty());
    if event.is_none() && id.is_none() {
        return Bytes::new();
    }
    let mut out = Vec::new();
    for (name, value) in [(&b"event: "[..], event), (b"id: ", id)] {
        if let Some(value) = value {
            out.extend_from_slice(name);
            out.extend_from_slice(value);
            out.push(b'\n');
        }
    }
    Bytes::from(out)
}

/// The payload `parts` with `data: ` after every LF, so that the `data: `
/// the writer puts in front and the `\n\n` it puts after frame one event
/// of several `data:` lines.
pub fn reprefix_lines(parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let mut out = Vec::with_capacity(len + 64);
    for part in parts {
        for (i, line) in part.split(|b| *b == b'\n').enumerate() {
            if i > 0 {
                out.extend_from_slice(b"\ndata: ");
            }
            out.extend_from_slice(line);
        }
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_splice_replaces_its_span_and_one_outside_the_data_does_nothing() {
        let with = Bytes::from_static(b"\"m\"");
        let splice = |span| Splice {
            span,
            with: with.clone(),
        };
        let data = br#"{"model":"up","x":1}"#;
        assert_eq!(
            payload(data, Some(&splice(9..13))).concat(),
            br#"{"model":"m","x":1}"#
        );
        assert_eq!(payload(data, Some(&splice(9..99))).concat(), data);
        #[allow(clippy::reversed_empty_ranges)]
        let reversed = splice(13..9);
        assert_eq!(payload(data, Some(&reversed)).concat(), data);
    }

    #[test]
    fn an_empty_event_name_writes_no_event_line() {
        assert!(event_fields(Some(b""), None).is_empty());
        assert_eq!(&event_fields(Some(b""), Some(b"7"))[..], b"id: 7\n");
        assert_eq!(&event_fields(Some(b"ping"), None)[..], b"event: ping\n");
    }
}
