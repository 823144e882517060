//! Turning a [`Response`] into bytes on the wire: the head is rendered into a
//! small reused buffer and written together with the body slices in one
//! vectored write; stream events go out as HTTP/1.1 chunks whose size line is
//! a stack buffer beside the payload, never copied into it.

use bytes::{BufMut, Bytes, BytesMut};
use std::io::{self, IoSlice};
use tokio::io::AsyncWrite;

use crate::api::{Body, Response};
use crate::http1::encode::{reason_phrase, write_decimal, ChunkSize, CHUNK_END, LAST_CHUNK};
use crate::sse::encode::StreamItem;

pub use crate::vectored::write_all as write_all_vectored;

/// How the body of an answer is framed on this connection.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Framing {
    Length(u64),
    /// HTTP/1.1 streams.
    Chunked,
    /// HTTP/1.0 streams: the end of the body is the end of the connection.
    Close,
}

/// Render the status line and headers of `resp` into `dst`.
pub fn encode_head<S>(dst: &mut BytesMut, resp: &Response<S>, framing: Framing, close: bool) {
    dst.put_slice(b"HTTP/1.1 ");
    write_decimal(dst, resp.status as u64);
    dst.put_u8(b' ');
    dst.put_slice(reason_phrase(resp.status).as_bytes());
    dst.put_slice(b"\r\n");
    if !matches!(resp.body, Body::Empty) && !resp.content_type.is_empty() {
        dst.put_slice(b"Content-Type: ");
        dst.put_slice(resp.content_type.as_bytes());
        dst.put_slice(b"\r\n");
    }
    match framing {
        // RFC 9110 §8.6: no Content-Length in a 204.
        Framing::Length(_) if resp.status == 204 => {}
        Framing::Length(n) => {
            dst.put_slice(b"Content-Length: ");
            write_decimal(dst, n);
            dst.put_slice(b"\r\n");
        }
        Framing::Chunked => dst.put_slice(b"Transfer-Encoding: chunked\r\n"),
        Framing::Close => {}
    }
    // Browser code may read the request id and when to retry (Fetch
    // standard, CORS-safelisted response headers exclude both).
    dst.put_slice(
        b"Access-Control-Allow-Origin: *\r\nAccess-Control-Expose-Headers: x-request-id, Retry-After, retry-after-ms, x-ratelimit-remaining-requests, x-ratelimit-remaining-tokens\r\n",
    );
    for (name, value) in &resp.headers {
        dst.put_slice(name.as_bytes());
        dst.put_slice(b": ");
        dst.put_slice(value);
        dst.put_slice(b"\r\n");
    }
    if close {
        dst.put_slice(b"Connection: close\r\n");
    }
    dst.put_slice(b"\r\n");
}

/// The whole-body slices of a non-streamed answer.
pub fn body_parts<S>(body: &Body<S>) -> &[Bytes] {
    match body {
        Body::Full(b) => std::slice::from_ref(b),
        Body::Spliced(parts) => parts,
        Body::Empty | Body::Stream(_) => &[],
    }
}

/// The most stream items gathered into one write: with up to 6 slices
/// each, within the kernel's 1024-slice limit for one `writev` (a longer
/// list would be cut by `write_vectored` and cost a second call).
pub const MAX_BATCH: usize = 128;

/// Write a piece of a stream in one vectored write: `head` (empty once the
/// head is out), the `items` and, with `end`, the stream's last chunk. For
/// HTTP/1.1 clients the items of one write form a single chunk (RFC 9112
/// §7.1): chunk boundaries carry no meaning, and one size line per batch
/// keeps the slices, and the client's parsing, per event down to the
/// payload's own.
pub async fn write_items<W: AsyncWrite + Unpin>(
    w: &mut W,
    head: &[u8],
    items: &[StreamItem],
    framing: Framing,
    end: bool,
) -> io::Result<()> {
    const DATA: &[u8] = b"data: ";
    const END: &[u8] = b"\n\n";
    // The end of one event and the start of the next in one slice: every
    // slice costs the kernel a copy of its own (about 20 ns on loopback,
    // BENCHMARKS.md round four), and a 66-event read is 330 slices without it.
    const END_DATA: &[u8] = b"\n\ndata: ";
    // The chunk's size line goes before the items and is known after them:
    // its slot is kept and filled once the items are laid out.
    let size: ChunkSize;
    let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(4 + items.len() * 6);
    if !head.is_empty() {
        slices.push(IoSlice::new(head));
    }
    let size_slot = slices.len();
    slices.push(IoSlice::new(&[]));
    // Whether the last item was an event whose `\n\n` is still to come.
    let mut open = false;
    for item in items {
        match item {
            StreamItem::Data { fields, .. } => {
                if open && fields.is_empty() {
                    slices.push(IoSlice::new(END_DATA));
                } else {
                    if open {
                        slices.push(IoSlice::new(END));
                    }
                    if !fields.is_empty() {
                        slices.push(IoSlice::new(fields));
                    }
                    slices.push(IoSlice::new(DATA));
                }
                slices.extend(
                    item.payload()
                        .into_iter()
                        .filter(|p| !p.is_empty())
                        .map(IoSlice::new),
                );
                open = true;
            }
            StreamItem::Raw(r) => {
                if open {
                    slices.push(IoSlice::new(END));
                    open = false;
                }
                slices.push(IoSlice::new(r));
            }
        }
    }
    if open {
        slices.push(IoSlice::new(END));
    }
    let len: usize = slices[size_slot + 1..].iter().map(|s| s.len()).sum();
    // No bytes, no chunk: an empty one would be the body's last chunk
    // (RFC 9112 §7.1); the size slot then stays empty.
    if framing == Framing::Chunked && len > 0 {
        size = ChunkSize::new(len);
        slices[size_slot] = IoSlice::new(size.as_bytes());
        slices.push(IoSlice::new(CHUNK_END));
    }
    if end && framing == Framing::Chunked {
        slices.push(IoSlice::new(LAST_CHUNK));
    }
    write_all_vectored(w, &mut slices).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::sse::encode::Splice;

    fn event(fields: &'static [u8], data: &'static [u8]) -> StreamItem {
        StreamItem::event(Bytes::from_static(fields), Bytes::from_static(data))
    }

    /// Events, field lines, a spliced model and pre-framed items in one
    /// write: each event ends in exactly one blank line however its
    /// neighbours are framed, and the batch is one chunk.
    #[tokio::test]
    async fn a_batch_of_events_is_framed_exactly() {
        let items = [
            event(b"", br#"{"a":1}"#),
            StreamItem::Data {
                fields: Bytes::new(),
                data: Bytes::from_static(br#"{"model":"up","x":2}"#),
                splice: Some(Splice {
                    span: 9..13,
                    with: Bytes::from_static(br#""m""#),
                }),
            },
            event(b"event: x\n", b"b"),
            StreamItem::Raw(Bytes::from_static(b": keep-alive\n")),
            event(b"", b"c"),
            StreamItem::done(),
            event(b"", b"late"),
        ];
        let body = concat!(
            "data: {\"a\":1}\n\n",
            "data: {\"model\":\"m\",\"x\":2}\n\n",
            "event: x\ndata: b\n\n",
            ": keep-alive\n",
            "data: c\n\n",
            "data: [DONE]\n\n",
            "data: late\n\n",
        );
        let mut out = Vec::new();
        write_items(&mut out, b"HEAD\r\n\r\n", &items, Framing::Chunked, true)
            .await
            .unwrap();
        let expected = format!("HEAD\r\n\r\n{:X}\r\n{body}\r\n0\r\n\r\n", body.len());
        assert_eq!(String::from_utf8(out).unwrap(), expected);

        let mut out = Vec::new();
        write_items(&mut out, b"", &items, Framing::Close, true)
            .await
            .unwrap();
        assert_eq!(String::from_utf8(out).unwrap(), body);
    }
}
