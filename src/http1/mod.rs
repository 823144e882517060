//! The HTTP/1.1 protocol layer, sans-IO (RFC 9112).
//!
//! Owns the wire format: parsing request heads ([`request`]) and upstream
//! response heads ([`response`]), body framing and decoding ([`body`]), the
//! small pieces the writers need ([`encode`]), the limits of docs/wire.md §6
//! ([`Limits`]) and the one error type that maps a protocol fault to its
//! status code ([`HttpError`]). Everything here takes `&mut BytesMut` or
//! `&[u8]` and returns a value or "need more" (`Ok(None)`); it must not touch
//! sockets, timers, routing, authentication or payloads — the connection
//! driver reads and writes, the gateway decides what a request means.
//!
//! Nothing in this module panics on input: arithmetic on wire numbers is
//! checked, and every limit is checked before a buffer is allowed to grow.

pub mod body;
pub mod encode;
mod error;
mod fields;
pub mod request;
pub mod response;

pub use body::{BodyDecoder, BodyFraming, Frame};
pub use error::HttpError;
pub use request::{parse_request, Method, RequestHead, Version};
pub use response::{parse_response, ResponseHead};

use bytes::BytesMut;

/// Default for [`Limits::max_head_bytes`] (docs/wire.md §6: header section 64 KiB).
pub const DEFAULT_MAX_HEAD_BYTES: usize = 64 * 1024;
/// Default for [`Limits::max_headers`] (docs/wire.md §6: 100 headers).
pub const DEFAULT_MAX_HEADERS: usize = 100;
/// Default for [`Limits::max_uri_bytes`] (docs/wire.md §6: URI 8 KiB).
pub const DEFAULT_MAX_URI_BYTES: usize = 8 * 1024;
/// Default for [`Limits::max_body_bytes`] (docs/wire.md §6: body 50 MiB).
pub const DEFAULT_MAX_BODY_BYTES: u64 = 50 * 1024 * 1024;
/// Default for [`Limits::max_chunk_ext_bytes`]: a chunk-size line with its
/// extensions. Real clients send none; this only bounds a hostile one.
pub const DEFAULT_MAX_CHUNK_EXT_BYTES: usize = 4 * 1024;
/// Default for [`Limits::max_trailer_bytes`]: the whole trailer section.
pub const DEFAULT_MAX_TRAILER_BYTES: usize = 16 * 1024;

/// Protocol limits (docs/wire.md §6). `Default` gives the SPEC values.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// The whole head: request line (or status line) and header section,
    /// leading empty lines included. Over it: 431.
    pub max_head_bytes: usize,
    /// Header fields in one head; clamped to 100. Over it: 431.
    pub max_headers: usize,
    /// The request-target. Over it: 414.
    pub max_uri_bytes: usize,
    /// A message body, declared or decoded. Over it: 413.
    pub max_body_bytes: u64,
    /// One chunk-size line including its extensions, CRLF excluded.
    pub max_chunk_ext_bytes: usize,
    /// The trailer section of a chunked body, final CRLF included.
    pub max_trailer_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_head_bytes: DEFAULT_MAX_HEAD_BYTES,
            max_headers: DEFAULT_MAX_HEADERS,
            max_uri_bytes: DEFAULT_MAX_URI_BYTES,
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            max_chunk_ext_bytes: DEFAULT_MAX_CHUNK_EXT_BYTES,
            max_trailer_bytes: DEFAULT_MAX_TRAILER_BYTES,
        }
    }
}

/// Limits small enough that fuzzing reaches every cap quickly.
fn fuzz_limits() -> Limits {
    Limits {
        max_head_bytes: 4096,
        max_headers: 16,
        max_uri_bytes: 512,
        max_body_bytes: 4096,
        max_chunk_ext_bytes: 64,
        max_trailer_bytes: 256,
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/parse_request.rs`): parses
/// pipelined requests and their bodies from `data` until it runs out or
/// errs, touching every accessor. It must never panic.
#[doc(hidden)]
pub fn fuzz_parse_request(data: &[u8]) {
    let limits = fuzz_limits();
    let mut buf = BytesMut::from(data);
    while let Ok(Some(head)) = parse_request(&mut buf, &limits) {
        let _ = (
            head.method(),
            head.method_bytes(),
            head.version(),
            head.target(),
        );
        let _ = (
            head.path(),
            head.query(),
            head.keep_alive(),
            head.expect_continue(),
        );
        let _ = (head.header("host"), head.header_bytes("content-length"));
        let _ = head
            .headers()
            .map(|(n, v)| n.len() + v.len())
            .sum::<usize>();
        let mut decoder = BodyDecoder::new(head.framing(), &limits);
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Frame::Data(_))) => {}
                Ok(Some(Frame::End)) => break,
                Ok(None) => {
                    let _ = decoder.on_eof();
                    return;
                }
                Err(_) => return,
            }
        }
    }
}

/// Fuzz entry point (`fuzz/fuzz_targets/chunked_body.rs`): decodes `data` as
/// a chunked body whole and byte by byte, and asserts both give the same
/// body, the same leftover bytes and the same error.
#[doc(hidden)]
pub fn fuzz_chunked(data: &[u8]) {
    let limits = fuzz_limits();
    let whole = decode_pieces(BodyFraming::Chunked, &limits, std::iter::once(data));
    let bytewise = decode_pieces(BodyFraming::Chunked, &limits, data.chunks(1));
    assert_eq!(
        whole, bytewise,
        "chunked decoding depends on how the input was split"
    );
}

/// Feeds `pieces` to a decoder; returns the body and the bytes left after
/// `End`, or the first error (including `on_eof`'s). Asserts the decoder's
/// invariants on the way (no empty data frame, done at the end, the decoded
/// length counted right); the fuzz target and the unit tests share it.
fn decode_pieces<'a>(
    framing: BodyFraming,
    limits: &Limits,
    pieces: impl Iterator<Item = &'a [u8]>,
) -> Result<(Vec<u8>, Vec<u8>), HttpError> {
    let mut decoder = BodyDecoder::new(framing, limits);
    let mut buf = BytesMut::new();
    let mut body = Vec::new();
    let mut ended = false;
    for piece in pieces {
        buf.extend_from_slice(piece);
        while !ended {
            match decoder.decode(&mut buf)? {
                Some(Frame::Data(d)) => {
                    assert!(!d.is_empty(), "empty data frame");
                    body.extend_from_slice(&d);
                }
                Some(Frame::End) => ended = true,
                None => break,
            }
        }
    }
    if !ended {
        decoder.on_eof()?;
    }
    assert!(decoder.is_done());
    assert_eq!(decoder.decoded_len(), body.len() as u64);
    Ok((body, buf.to_vec()))
}

#[cfg(test)]
pub(crate) mod test_util {
    /// Ways to deliver `input`: whole, at every two-way split point, and one
    /// byte at a time.
    pub(crate) fn schedules(input: &[u8]) -> Vec<Vec<&[u8]>> {
        let mut out = vec![vec![input]];
        for i in 1..input.len() {
            out.push(vec![&input[..i], &input[i..]]);
        }
        if input.len() > 1 {
            out.push(input.chunks(1).collect());
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_limits_are_the_spec_values() {
        let l = Limits::default();
        assert_eq!(l.max_head_bytes, 65_536);
        assert_eq!(l.max_headers, 100);
        assert_eq!(l.max_uri_bytes, 8_192);
        assert_eq!(l.max_body_bytes, 52_428_800);
    }

    /// Every committed seed (and every crash kept there) replays as a test.
    #[test]
    fn fuzz_corpora_replay() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus");
        type Target = fn(&[u8]);
        let targets: [(&str, Target); 2] = [
            ("parse_request", fuzz_parse_request),
            ("chunked_body", fuzz_chunked),
        ];
        for (dir, run) in targets {
            let entries = std::fs::read_dir(root.join(dir)).expect("corpus directory");
            let mut seen = 0;
            for entry in entries {
                let data = std::fs::read(entry.expect("corpus entry").path()).expect("seed");
                run(&data);
                seen += 1;
            }
            assert!(seen > 0, "no seeds in {dir}");
        }
    }

    #[test]
    fn fuzz_entry_points_run_on_seeds() {
        fuzz_parse_request(b"POST / HTTP/1.1\r\nHost: h\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n");
        fuzz_parse_request(b"POST / HTTP/1.1\r\nHost: h\r\nContent-Length: 5\r\n\r\nab");
        fuzz_parse_request(b"");
        fuzz_chunked(b"5;x=\"y\"\r\nhello\r\n0\r\nT: v\r\n\r\nrest");
        fuzz_chunked(b"FFFFFFFFFFFFFFFFFF\r\n");
        fuzz_chunked(b"");
    }
}
