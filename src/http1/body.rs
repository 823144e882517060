//! Body framing and the sans-IO body decoder (RFC 9112 §6 and §7).
//!
//! Owns [`BodyFraming`] (how a message delimits its body) and
//! [`BodyDecoder`], which turns the bytes after a head into [`Frame`]s:
//! zero-copy `Bytes` slices of the read buffer, then one `End`. It never
//! reads a socket and never consumes a byte past the end of its body, so
//! pipelined messages stay in the buffer for the next head parse. It must
//! not interpret the payload (JSON, SSE): that is the gateway's business.
//!
//! The chunked decoder is an explicit state machine in the manner of hyper's
//! `decode.rs`: control bytes (size lines, CRLFs, trailers) are stepped one
//! byte at a time, chunk data is handed out in bulk.

use bytes::{Buf, Bytes, BytesMut};

use super::{HttpError, Limits};

/// How a message body is delimited (RFC 9112 §6.3).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BodyFraming {
    /// No body at all (a request without Content-Length or Transfer-Encoding,
    /// or a response that cannot have one).
    Empty,
    /// Exactly this many bytes (`Content-Length`).
    Length(u64),
    /// `Transfer-Encoding: chunked`.
    Chunked,
    /// Everything until the peer closes (responses only).
    CloseDelimited,
}

/// One step of a decoded body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Frame {
    /// Body bytes, a slice split off the read buffer. Never empty.
    Data(Bytes),
    /// The body is complete; later calls keep returning `End`.
    End,
}

/// Where the chunked decoder is inside `chunked-body` (RFC 9112 §7.1):
///
/// ```text
/// chunked-body = *chunk last-chunk trailer-section CRLF
/// chunk        = chunk-size [ chunk-ext ] CRLF chunk-data CRLF
/// last-chunk   = 1*("0") [ chunk-ext ] CRLF
/// ```
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ChunkedState {
    /// At the start of a size line: one hex digit is required.
    SizeStart,
    /// Inside the hex digits of chunk-size.
    Size,
    /// Whitespace after the size (BWS before `;`, RFC 9112 §7.1.1).
    SizeWs,
    /// Inside chunk-ext, up to the CR.
    Extension,
    /// After the CR of a size line; only LF may follow.
    SizeLf,
    /// Inside chunk-data; `chunk_left` bytes to go.
    Data,
    /// After chunk-data; CR must follow.
    DataCr,
    /// After chunk-data's CR; LF must follow.
    DataLf,
    /// At the start of a trailer field line, or of the final CRLF.
    TrailerStart,
    /// Inside a trailer field name.
    TrailerName,
    /// Inside a trailer field value, up to the CR.
    TrailerValue,
    /// After a trailer line's CR.
    TrailerLf,
    /// After the final CR; LF ends the body.
    EndLf,
    /// The body is complete.
    Done,
}

#[derive(Clone, Debug)]
enum Kind {
    Length { remaining: u64 },
    Chunked(Chunked),
    CloseDelimited,
    Done,
}

#[derive(Clone, Debug)]
struct Chunked {
    state: ChunkedState,
    /// The size being parsed, then the data bytes left of the current chunk.
    chunk_left: u64,
    /// Bytes of the current size line so far (cap: `max_chunk_ext_bytes`).
    line_bytes: usize,
    /// Bytes of the trailer section so far (cap: `max_trailer_bytes`).
    trailer_bytes: usize,
}

/// Decodes one message body from a read buffer. See the module docs.
#[derive(Clone, Debug)]
pub struct BodyDecoder {
    kind: Kind,
    decoded: u64,
    max_body_bytes: u64,
    max_line_bytes: usize,
    max_trailer_bytes: usize,
}

const EXT_TOO_LONG: HttpError = HttpError::Malformed("chunk size line too long");
const TRAILERS_TOO_LONG: HttpError = HttpError::Malformed("chunk trailer section too large");

impl BodyDecoder {
    pub fn new(framing: BodyFraming, limits: &Limits) -> Self {
        let kind = match framing {
            BodyFraming::Empty | BodyFraming::Length(0) => Kind::Done,
            BodyFraming::Length(n) => Kind::Length { remaining: n },
            BodyFraming::Chunked => Kind::Chunked(Chunked {
                state: ChunkedState::SizeStart,
                chunk_left: 0,
                line_bytes: 0,
                trailer_bytes: 0,
            }),
            BodyFraming::CloseDelimited => Kind::CloseDelimited,
        };
        BodyDecoder {
            kind,
            decoded: 0,
            max_body_bytes: limits.max_body_bytes,
            max_line_bytes: limits.max_chunk_ext_bytes,
            max_trailer_bytes: limits.max_trailer_bytes,
        }
    }

    /// The next frame of the body, or `Ok(None)` when `buf` holds no more of
    /// it yet. Data frames are zero-copy `split_to(n).freeze()` slices of
    /// `buf`. After [`Frame::End`], bytes left in `buf` belong to the next
    /// message and are not touched.
    ///
    /// The body limit is checked before data is accepted: a Content-Length
    /// or chunk-size that would take the total over `max_body_bytes` fails
    /// with [`HttpError::BodyTooLarge`] before any byte of it is returned.
    pub fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, HttpError> {
        match &mut self.kind {
            Kind::Done => Ok(Some(Frame::End)),
            Kind::Length { remaining } => {
                let remaining_now = *remaining;
                if self.decoded.saturating_add(remaining_now) > self.max_body_bytes {
                    return Err(HttpError::BodyTooLarge);
                }
                if buf.is_empty() {
                    return Ok(None);
                }
                let n = take_len(remaining_now, buf.len());
                let left = remaining_now - n as u64; // n <= remaining_now by take_len
                if left == 0 {
                    self.kind = Kind::Done;
                } else {
                    *remaining = left;
                }
                Ok(Some(self.data(buf, n)))
            }
            Kind::CloseDelimited => {
                if buf.is_empty() {
                    return Ok(None);
                }
                let total = self.decoded.saturating_add(buf.len() as u64);
                if total > self.max_body_bytes {
                    return Err(HttpError::BodyTooLarge);
                }
                let n = buf.len();
                Ok(Some(self.data(buf, n)))
            }
            Kind::Chunked(_) => self.decode_chunked(buf),
        }
    }

    /// The peer closed the connection. A close-delimited body is complete
    /// (RFC 9112 §6.3 rule 8); any other body that is not finished was cut
    /// short (RFC 9112 §8). Call [`decode`](Self::decode) until it returns
    /// `Ok(None)` first, so no buffered data is left behind.
    pub fn on_eof(&mut self) -> Result<(), HttpError> {
        match self.kind {
            Kind::Done => Ok(()),
            Kind::CloseDelimited => {
                self.kind = Kind::Done;
                Ok(())
            }
            Kind::Length { .. } | Kind::Chunked(_) => Err(HttpError::UnexpectedEof),
        }
    }

    /// Whether the whole body has been decoded ([`Frame::End`] is next or was
    /// returned).
    pub fn is_done(&self) -> bool {
        matches!(self.kind, Kind::Done)
    }

    /// Body bytes handed out so far.
    pub fn decoded_len(&self) -> u64 {
        self.decoded
    }

    fn data(&mut self, buf: &mut BytesMut, n: usize) -> Frame {
        // `n` is at most `buf.len()`, which fits a u64 on every platform Rust
        // supports; the total stays under `max_body_bytes`, checked above.
        self.decoded = self.decoded.saturating_add(n as u64);
        Frame::Data(buf.split_to(n).freeze())
    }

    fn decode_chunked(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, HttpError> {
        let Kind::Chunked(c) = &mut self.kind else {
            return Ok(None);
        };
        // Step through control bytes until data, the end, or the buffer ends.
        let mut used = 0;
        let mut state = c.state;
        while state != ChunkedState::Data && state != ChunkedState::Done {
            let Some(&b) = buf.get(used) else { break };
            used += 1;
            state = c.step(
                state,
                b,
                self.decoded,
                self.max_body_bytes,
                self.max_line_bytes,
                self.max_trailer_bytes,
            )?;
        }
        c.state = state;
        buf.advance(used);
        match state {
            ChunkedState::Done => {
                self.kind = Kind::Done;
                Ok(Some(Frame::End))
            }
            ChunkedState::Data if !buf.is_empty() => {
                let n = take_len(c.chunk_left, buf.len());
                c.chunk_left -= n as u64; // n <= chunk_left by take_len
                if c.chunk_left == 0 {
                    c.state = ChunkedState::DataCr;
                }
                Ok(Some(self.data(buf, n)))
            }
            _ => Ok(None),
        }
    }
}

impl Chunked {
    /// One control byte. Line ends are strict CRLF: a bare LF or a CR not
    /// followed by LF is rejected, because a proxy that accepts a line end
    /// the next hop does not (or the reverse) can be made to disagree on
    /// where a chunk ends — the chunk-framing smuggling class. RFC 9112 §2.2
    /// allows a bare LF only as a recipient's choice; we do not take it.
    fn step(
        &mut self,
        state: ChunkedState,
        b: u8,
        decoded: u64,
        max_body: u64,
        max_line: usize,
        max_trailer: usize,
    ) -> Result<ChunkedState, HttpError> {
        use ChunkedState::*;
        match state {
            SizeStart | Size | SizeWs | Extension if b != b'\r' => {
                self.line_bytes = self.line_bytes.saturating_add(1);
                if self.line_bytes > max_line {
                    return Err(EXT_TOO_LONG);
                }
            }
            TrailerStart | TrailerName | TrailerValue | TrailerLf | EndLf => {
                self.trailer_bytes = self.trailer_bytes.saturating_add(1);
                if self.trailer_bytes > max_trailer {
                    return Err(TRAILERS_TOO_LONG);
                }
            }
            _ => {}
        }
        match (state, b) {
            (SizeStart | Size, _) if b.is_ascii_hexdigit() => {
                // chunk-size = 1*HEXDIG; checked so 17+ significant digits
                // are an error rather than a wrapped, smaller size.
                let digit = u64::from(hex_value(b));
                self.chunk_left = self
                    .chunk_left
                    .checked_mul(16)
                    .and_then(|n| n.checked_add(digit))
                    .ok_or(HttpError::Malformed("chunk size overflows"))?;
                Ok(Size)
            }
            (SizeStart, _) => Err(HttpError::Malformed("invalid chunk size")),
            (Size | SizeWs, b' ' | b'\t') => Ok(SizeWs),
            (Size | SizeWs, b';') => Ok(Extension),
            (Size | SizeWs | Extension, b'\r') => Ok(SizeLf),
            (Size | SizeWs, _) => Err(HttpError::Malformed("invalid chunk size")),
            // chunk-ext = *( BWS ";" BWS ext-name [ BWS "=" BWS ext-val ] ).
            // Extensions are ignored, so only the bytes that could end the
            // line or confuse another parser matter: CR/LF never appear in a
            // token or quoted-string, and no other control byte may either.
            (Extension, b'\t' | b' '..=b'~' | 0x80..=0xff) => Ok(Extension),
            (Extension, _) => Err(HttpError::Malformed("invalid byte in chunk extension")),
            (SizeLf, b'\n') => {
                self.line_bytes = 0;
                if self.chunk_left == 0 {
                    return Ok(TrailerStart);
                }
                // The limit is checked before the chunk's data is accepted.
                if decoded.saturating_add(self.chunk_left) > max_body {
                    return Err(HttpError::BodyTooLarge);
                }
                Ok(Data)
            }
            (SizeLf, _) => Err(HttpError::Malformed("chunk size line not ended by CRLF")),
            (DataCr, b'\r') => Ok(DataLf),
            (DataLf, b'\n') => Ok(SizeStart),
            (DataCr | DataLf, _) => Err(HttpError::Malformed("chunk data not followed by CRLF")),
            // trailer-section = *( field-line CRLF ), RFC 9112 §7.1.2. The
            // fields are read and discarded: the gateway forwards none.
            (TrailerStart, b'\r') => Ok(EndLf),
            (TrailerStart | TrailerName, _) if is_tchar(b) => Ok(TrailerName),
            (TrailerName, b':') => Ok(TrailerValue),
            (TrailerStart | TrailerName, _) => Err(HttpError::Malformed("invalid trailer field")),
            (TrailerValue, b'\r') => Ok(TrailerLf),
            (TrailerValue, b'\t' | b' '..=b'~' | 0x80..=0xff) => Ok(TrailerValue),
            (TrailerValue, _) => Err(HttpError::Malformed("invalid byte in trailer field")),
            (TrailerLf, b'\n') => Ok(TrailerStart),
            (TrailerLf, _) => Err(HttpError::Malformed("trailer field not ended by CRLF")),
            (EndLf, b'\n') => Ok(Done),
            (EndLf, _) => Err(HttpError::Malformed("chunked body not ended by CRLF")),
            (Data | Done, _) => Ok(state),
        }
    }
}

fn take_len(remaining: u64, available: usize) -> usize {
    match usize::try_from(remaining) {
        Ok(r) => r.min(available),
        Err(_) => available,
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        b'A'..=b'F' => b - b'A' + 10,
        _ => 0,
    }
}

/// tchar, RFC 9110 §5.6.2.
fn is_tchar(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::http1::encode::{ChunkSize, CHUNK_END, LAST_CHUNK};
    use crate::http1::test_util::schedules;
    use proptest::prelude::*;

    /// Body bytes and whatever was left after `End`, or the error.
    type Outcome = Result<(Vec<u8>, Vec<u8>), HttpError>;

    fn run(framing: BodyFraming, limits: &Limits, pieces: &[&[u8]]) -> Outcome {
        crate::http1::decode_pieces(framing, limits, pieces.iter().copied())
    }

    /// Decodes `input` whole, at every split and byte by byte; all must agree.
    fn decode_all_ways(framing: BodyFraming, limits: &Limits, input: &[u8]) -> Outcome {
        let mut first: Option<Outcome> = None;
        for schedule in schedules(input) {
            let got = run(framing, limits, &schedule);
            match &first {
                None => first = Some(got),
                Some(expected) => assert_eq!(&got, expected),
            }
        }
        first.expect("at least one schedule")
    }

    fn chunked(input: &[u8]) -> Outcome {
        decode_all_ways(BodyFraming::Chunked, &Limits::default(), input)
    }

    fn body_of(input: &[u8]) -> Vec<u8> {
        let (body, rest) = chunked(input).expect("valid chunked body");
        assert!(rest.is_empty());
        body
    }

    fn chunked_err(input: &[u8]) -> HttpError {
        chunked(input).expect_err("must be rejected")
    }

    #[test]
    fn chunked_basic() {
        assert_eq!(
            body_of(b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"),
            b"hello world"
        );
        assert_eq!(body_of(b"0\r\n\r\n"), b"");
    }

    #[test]
    fn chunked_uppercase_hex_and_leading_zeros() {
        let data = vec![b'x'; 0x1A];
        let mut input = b"1A\r\n".to_vec();
        input.extend_from_slice(&data);
        input.extend_from_slice(b"\r\n0000\r\n\r\n");
        assert_eq!(body_of(&input), data);
        assert_eq!(body_of(b"0001\r\na\r\n0\r\n\r\n"), b"a");
        assert_eq!(body_of(b"a\r\n0123456789\r\n0\r\n\r\n"), b"0123456789");
    }

    #[test]
    fn chunked_extensions_are_ignored() {
        assert_eq!(
            body_of(b"3;name=value;flag\r\nabc\r\n2 ; q=\"a;b \\\" c\"\r\nde\r\n0;last\r\n\r\n"),
            b"abcde"
        );
    }

    #[test]
    fn chunked_trailers_are_discarded() {
        assert_eq!(body_of(b"1\r\nz\r\n0\r\nX-Sum: 1\r\nOther:\r\n\r\n"), b"z");
    }

    #[test]
    fn chunked_leaves_the_next_message_in_the_buffer() {
        let (body, rest) =
            chunked(b"2\r\nhi\r\n0\r\n\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n").unwrap();
        assert_eq!(body, b"hi");
        assert_eq!(rest, b"GET / HTTP/1.1\r\nHost: h\r\n\r\n");
    }

    #[test]
    fn chunked_bad_sizes_are_400() {
        for input in [
            &b"\r\n"[..],
            b";ext\r\n\r\n",
            b"-1\r\n",
            b"+1\r\nx\r\n0\r\n\r\n",
            b"0x10\r\n",
            b"g\r\n",
            b" 1\r\nx\r\n0\r\n\r\n",
            b"1 2\r\nx\r\n0\r\n\r\n",
            b"FFFFFFFFFFFFFFFFF\r\n",
            b"10000000000000000\r\n",
        ] {
            let e = chunked_err(input);
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(input)
            );
            assert_eq!(e.status(), 400);
        }
        assert_eq!(
            chunked_err(b"FFFFFFFFFFFFFFFFF\r\n"),
            HttpError::Malformed("chunk size overflows")
        );
        // Sixteen digits fit a u64 and are then simply over the body limit.
        assert_eq!(
            chunked_err(b"FFFFFFFFFFFFFFFF\r\n"),
            HttpError::BodyTooLarge
        );
    }

    #[test]
    fn chunked_line_ends_are_strict_crlf() {
        for input in [
            &b"1\nx\r\n0\r\n\r\n"[..],
            b"1\rx\r\n0\r\n\r\n",
            b"1\r\nx\n0\r\n\r\n",
            b"1\r\nxy\r\n0\r\n\r\n",
            b"1\r\nx\r\r\n0\r\n\r\n",
            b"1\r\nx0\r\n\r\n",
            b"1\r\nx\r\n0\r\n\n",
            b"1\r\nx\r\n0\r\nA: b\n\r\n",
            b"1\r\nx\r\n0\r\n\r\r",
            b"1;a\nb\r\nx\r\n0\r\n\r\n",
            b"1;a\x00\r\nx\r\n0\r\n\r\n",
        ] {
            let e = chunked_err(input);
            assert!(
                matches!(e, HttpError::Malformed(_)),
                "{:?}: {e:?}",
                String::from_utf8_lossy(input)
            );
        }
        assert_eq!(
            chunked_err(b"1\r\nxy"),
            HttpError::Malformed("chunk data not followed by CRLF")
        );
    }

    #[test]
    fn chunked_bad_trailers_are_400() {
        for input in [
            &b"0\r\n folded: x\r\n\r\n"[..],
            b"0\r\n: x\r\n\r\n",
            b"0\r\nBad Name: x\r\n\r\n",
            b"0\r\nX: a\x01b\r\n\r\n",
        ] {
            assert!(matches!(chunked_err(input), HttpError::Malformed(_)));
        }
    }

    #[test]
    fn chunked_size_line_cap() {
        let limits = Limits {
            max_chunk_ext_bytes: 8,
            ..Limits::default()
        };
        let ok = decode_all_ways(BodyFraming::Chunked, &limits, b"1;abcdef\r\nx\r\n0\r\n\r\n");
        assert_eq!(ok.unwrap().0, b"x");
        let e = decode_all_ways(
            BodyFraming::Chunked,
            &limits,
            b"1;abcdefg\r\nx\r\n0\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e, EXT_TOO_LONG);
        // Leading zeros count too, so an endless size line is bounded.
        let e = decode_all_ways(BodyFraming::Chunked, &limits, &[b'0'; 64]).unwrap_err();
        assert_eq!(e, EXT_TOO_LONG);
        // The counter is per line.
        let ok = decode_all_ways(
            BodyFraming::Chunked,
            &limits,
            b"1;abcdef\r\nx\r\n1;abcdef\r\ny\r\n0;abcdef\r\n\r\n",
        );
        assert_eq!(ok.unwrap().0, b"xy");
    }

    #[test]
    fn chunked_trailer_cap() {
        let limits = Limits {
            max_trailer_bytes: 12,
            ..Limits::default()
        };
        // "A: 1234567\r\n" is 12 bytes, plus the final CRLF is 14.
        let e =
            decode_all_ways(BodyFraming::Chunked, &limits, b"0\r\nA: 1234567\r\n\r\n").unwrap_err();
        assert_eq!(e, TRAILERS_TOO_LONG);
        let ok = decode_all_ways(BodyFraming::Chunked, &limits, b"0\r\nA: 12345\r\n\r\n");
        assert_eq!(ok.unwrap().0, b"");
    }

    #[test]
    fn chunked_body_limit_is_checked_before_data() {
        let limits = Limits {
            max_body_bytes: 8,
            ..Limits::default()
        };
        let ok = decode_all_ways(
            BodyFraming::Chunked,
            &limits,
            b"4\r\nabcd\r\n4\r\nefgh\r\n0\r\n\r\n",
        );
        assert_eq!(ok.unwrap().0, b"abcdefgh");
        let e = decode_all_ways(
            BodyFraming::Chunked,
            &limits,
            b"4\r\nabcd\r\n5\r\nefghi\r\n0\r\n\r\n",
        )
        .unwrap_err();
        assert_eq!(e, HttpError::BodyTooLarge);
        assert_eq!(e.status(), 413);
        // No byte of the oversized chunk is handed out.
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, &limits);
        let mut buf = BytesMut::from(&b"4\r\nabcd\r\n5\r\nefghi"[..]);
        assert_eq!(
            dec.decode(&mut buf),
            Ok(Some(Frame::Data(Bytes::from_static(b"abcd"))))
        );
        assert_eq!(dec.decode(&mut buf), Err(HttpError::BodyTooLarge));
        assert_eq!(dec.decoded_len(), 4);
    }

    #[test]
    fn chunked_cut_short_is_unexpected_eof() {
        for input in [
            &b""[..],
            b"5\r\nhel",
            b"5\r\nhello\r\n",
            b"0\r\n",
            b"0\r\nA: b\r\n",
        ] {
            assert_eq!(chunked_err(input), HttpError::UnexpectedEof);
        }
    }

    #[test]
    fn chunked_data_frames_are_zero_copy() {
        let mut buf = BytesMut::from(&b"5\r\nhello\r\n0\r\n\r\n"[..]);
        let base = buf.as_ptr() as usize;
        let mut dec = BodyDecoder::new(BodyFraming::Chunked, &Limits::default());
        let Ok(Some(Frame::Data(d))) = dec.decode(&mut buf) else {
            panic!("data expected")
        };
        assert_eq!(d.as_ptr() as usize, base + 3);
        assert_eq!(dec.decode(&mut buf), Ok(Some(Frame::End)));
        assert_eq!(dec.decode(&mut buf), Ok(Some(Frame::End)));
    }

    #[test]
    fn length_body_and_pipelining() {
        let (body, rest) =
            decode_all_ways(BodyFraming::Length(5), &Limits::default(), b"helloGET").unwrap();
        assert_eq!(body, b"hello");
        assert_eq!(rest, b"GET");
        assert_eq!(
            decode_all_ways(BodyFraming::Length(5), &Limits::default(), b"hel"),
            Err(HttpError::UnexpectedEof)
        );
    }

    #[test]
    fn length_over_limit_fails_before_data() {
        let limits = Limits {
            max_body_bytes: 4,
            ..Limits::default()
        };
        let mut dec = BodyDecoder::new(BodyFraming::Length(5), &limits);
        let mut buf = BytesMut::from(&b"hello"[..]);
        assert_eq!(dec.decode(&mut buf), Err(HttpError::BodyTooLarge));
        assert_eq!(buf.len(), 5);
    }

    #[test]
    fn empty_and_zero_length_end_at_once() {
        for framing in [BodyFraming::Empty, BodyFraming::Length(0)] {
            let mut dec = BodyDecoder::new(framing, &Limits::default());
            assert!(dec.is_done());
            let mut buf = BytesMut::from(&b"next"[..]);
            assert_eq!(dec.decode(&mut buf), Ok(Some(Frame::End)));
            assert_eq!(&buf[..], b"next");
            assert_eq!(dec.on_eof(), Ok(()));
        }
    }

    #[test]
    fn close_delimited_ends_at_eof() {
        let (body, rest) = decode_all_ways(
            BodyFraming::CloseDelimited,
            &Limits::default(),
            b"all of it",
        )
        .unwrap();
        assert_eq!(body, b"all of it");
        assert!(rest.is_empty());
        let limits = Limits {
            max_body_bytes: 3,
            ..Limits::default()
        };
        assert_eq!(
            decode_all_ways(BodyFraming::CloseDelimited, &limits, b"abcd"),
            Err(HttpError::BodyTooLarge)
        );
    }

    fn encode_chunked(chunks: &[Vec<u8>]) -> Vec<u8> {
        let mut wire = Vec::new();
        for c in chunks.iter().filter(|c| !c.is_empty()) {
            wire.extend_from_slice(ChunkSize::new(c.len()).as_bytes());
            wire.extend_from_slice(c);
            wire.extend_from_slice(CHUNK_END);
        }
        wire.extend_from_slice(LAST_CHUNK);
        wire
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(
            input in proptest::collection::vec(any::<u8>(), 0..256),
            cut in any::<usize>(),
            framing in prop_oneof![
                Just(BodyFraming::Chunked),
                Just(BodyFraming::CloseDelimited),
                (0u64..300).prop_map(BodyFraming::Length),
            ],
        ) {
            let limits = Limits { max_body_bytes: 200, max_chunk_ext_bytes: 16, max_trailer_bytes: 32, ..Limits::default() };
            let cut = cut % (input.len() + 1);
            let _ = run(framing, &limits, &[&input[..cut], &input[cut..]]);
        }

        #[test]
        fn chunked_round_trips_split_anywhere(
            chunks in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..64), 0..8),
            next in proptest::collection::vec(any::<u8>(), 0..16),
            cuts in proptest::collection::vec(any::<usize>(), 0..6),
        ) {
            let mut wire = encode_chunked(&chunks);
            wire.extend_from_slice(&next);
            let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
            points.push(0);
            points.push(wire.len());
            points.sort_unstable();
            let pieces: Vec<&[u8]> = points.windows(2).map(|w| &wire[w[0]..w[1]]).collect();
            let (body, rest) = run(BodyFraming::Chunked, &Limits::default(), &pieces).expect("valid encoding");
            prop_assert_eq!(body, chunks.concat());
            prop_assert_eq!(rest, next);
        }
    }
}
