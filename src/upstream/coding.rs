//! Content codings (RFC 9110 §8.4): undoing the `gzip`, `deflate` or `br`
//! an upstream applied to its body although we asked for `identity`.
//!
//! Sans-IO: body pieces in (already de-framed), decoded pieces out. It owns
//! no socket and knows nothing of JSON or SSE; the response reading the
//! socket ([`super::UpstreamResponse`]) runs every piece through it, so a
//! plain answer and a stream are decoded alike.
//!
//! A small compressed input can stand for a huge output (a "zip bomb"), so
//! input is fed in steps of [`STEP`] bytes and a call returns once it has
//! produced [`MAX_OUTPUT`] bytes, keeping the rest of its input for the
//! next call: what one call holds is bounded, and the caller's own limits
//! (`maxAnswerBytes`, `maxEventBytes`) bound the total.

use std::io::Write;

use bytes::Bytes;

/// Input fed to a deflate decompressor at once: deflate expands at most
/// about 1032 times, so a step yields at most ~264 KiB.
const STEP: usize = 256;
/// The same for brotli, whose commands copy up to 16 MiB each: a few bytes
/// can hold little more than one such command.
const BROTLI_STEP: usize = 8;
/// Output after which a call returns (the rest of its input waits).
pub const MAX_OUTPUT: usize = 256 * 1024;

/// A decompressor for one body.
pub struct ContentDecoder {
    codec: Codec,
    /// Input not fed yet (a call stopped at `MAX_OUTPUT`).
    pending: Bytes,
    /// Any input at all: an empty body is no corrupt stream.
    fed: bool,
}

enum Codec {
    Gzip(flate2::write::GzDecoder<Vec<u8>>),
    Deflate(flate2::write::ZlibDecoder<Vec<u8>>),
    Brotli(Box<brotli_decompressor::DecompressorWriter<Vec<u8>>>),
}

impl ContentDecoder {
    /// The decoder for a `Content-Encoding` value: `Ok(None)` for none or
    /// `identity`; an error naming the coding for anything else (several
    /// codings at once included), which the gateway answers with 502.
    pub fn for_encoding(value: &[u8]) -> Result<Option<ContentDecoder>, String> {
        let name = value.trim_ascii();
        let codec = if name.is_empty() || name.eq_ignore_ascii_case(b"identity") {
            return Ok(None);
        } else if name.eq_ignore_ascii_case(b"gzip") || name.eq_ignore_ascii_case(b"x-gzip") {
            Codec::Gzip(flate2::write::GzDecoder::new(Vec::new()))
        } else if name.eq_ignore_ascii_case(b"deflate") {
            Codec::Deflate(flate2::write::ZlibDecoder::new(Vec::new()))
        } else if name.eq_ignore_ascii_case(b"br") {
            Codec::Brotli(Box::new(brotli_decompressor::DecompressorWriter::new(
                Vec::new(),
                4096,
            )))
        } else {
            return Err(format!(
                "the upstream's answer uses the content-encoding '{}', which chat2api cannot decode",
                String::from_utf8_lossy(name)
            ));
        };
        Ok(Some(ContentDecoder {
            codec,
            pending: Bytes::new(),
            fed: false,
        }))
    }

    /// Input is waiting from an earlier call that stopped at `MAX_OUTPUT`.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Feed `piece` (after any input still pending) and take what it
    /// decodes to, at most about `MAX_OUTPUT` bytes; may be empty while the
    /// decompressor waits for more. Errors on input that is not valid for
    /// the coding.
    pub fn push(&mut self, piece: Bytes) -> std::io::Result<Bytes> {
        let mut input = match self.pending.is_empty() {
            true => piece,
            false if piece.is_empty() => std::mem::take(&mut self.pending),
            false => {
                let mut joined = Vec::with_capacity(self.pending.len() + piece.len());
                joined.extend_from_slice(&self.pending);
                joined.extend_from_slice(&piece);
                self.pending = Bytes::new();
                Bytes::from(joined)
            }
        };
        self.fed |= !input.is_empty();
        let step = match self.codec {
            Codec::Brotli(_) => BROTLI_STEP,
            _ => STEP,
        };
        while !input.is_empty() && self.output_len() < MAX_OUTPUT {
            let step = input.split_to(input.len().min(step));
            self.write(&step)?;
        }
        self.pending = input;
        Ok(self.take_output())
    }

    /// The body ended: the rest of the output. Errors when the compressed
    /// data ended before its own end (a cut body).
    pub fn finish(&mut self) -> std::io::Result<Bytes> {
        if !self.fed {
            // An empty body (a 204-like answer that still names a coding).
            return Ok(Bytes::new());
        }
        let rest = std::mem::take(&mut self.pending);
        self.write(&rest)?;
        match &mut self.codec {
            Codec::Gzip(d) => d.try_finish()?,
            Codec::Deflate(d) => d.try_finish()?,
            // `close` checks that the stream reached its last meta-block.
            Codec::Brotli(d) => d.close()?,
        }
        Ok(self.take_output())
    }

    /// Feed one step. flate2's writers hand a write's output over only at
    /// the next write or a flush, so each step is flushed: the output is
    /// then counted where it is bounded, and a stream's last event does not
    /// wait for the upstream's next piece.
    fn write(&mut self, input: &[u8]) -> std::io::Result<()> {
        match &mut self.codec {
            Codec::Gzip(d) => d.write_all(input).and_then(|()| d.flush()),
            Codec::Deflate(d) => d.write_all(input).and_then(|()| d.flush()),
            Codec::Brotli(d) => d.write_all(input),
        }
    }

    fn output_len(&self) -> usize {
        match &self.codec {
            Codec::Gzip(d) => d.get_ref().len(),
            Codec::Deflate(d) => d.get_ref().len(),
            Codec::Brotli(d) => d.get_ref().len(),
        }
    }

    fn take_output(&mut self) -> Bytes {
        let out = match &mut self.codec {
            Codec::Gzip(d) => std::mem::take(d.get_mut()),
            Codec::Deflate(d) => std::mem::take(d.get_mut()),
            Codec::Brotli(d) => std::mem::take(d.get_mut()),
        };
        Bytes::from(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    fn zlib(data: &[u8]) -> Vec<u8> {
        let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(data).unwrap();
        e.finish().unwrap()
    }

    /// Decodes `encoded` fed in pieces of `size`, as a response would.
    fn decode(coding: &str, encoded: &[u8], size: usize) -> std::io::Result<Vec<u8>> {
        let mut d = ContentDecoder::for_encoding(coding.as_bytes())
            .unwrap()
            .unwrap();
        let mut out = Vec::new();
        for piece in encoded.chunks(size) {
            out.extend_from_slice(&d.push(Bytes::copy_from_slice(piece))?);
            while d.has_pending() {
                out.extend_from_slice(&d.push(Bytes::new())?);
            }
        }
        out.extend_from_slice(&d.finish()?);
        Ok(out)
    }

    #[test]
    fn gzip_and_deflate_decode_at_every_piece_size() {
        let text = br#"{"id":"x","object":"chat.completion","model":"m","choices":[]}"#.repeat(50);
        for size in [1, 7, 100, 1 << 20] {
            assert_eq!(decode("gzip", &gzip(&text), size).unwrap(), text);
            assert_eq!(decode("x-gzip", &gzip(&text), size).unwrap(), text);
            assert_eq!(decode("deflate", &zlib(&text), size).unwrap(), text);
        }
    }

    #[test]
    fn brotli_decodes() {
        // "hello" compressed with brotli quality 11 (from the reference encoder).
        let encoded = [0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f, 0x03];
        assert_eq!(decode("br", &encoded, 1).unwrap(), b"hello");
        assert_eq!(decode("BR", &encoded, 100).unwrap(), b"hello");
    }

    #[test]
    fn identity_and_unknown_codings() {
        assert!(ContentDecoder::for_encoding(b"identity").unwrap().is_none());
        assert!(ContentDecoder::for_encoding(b" ").unwrap().is_none());
        for unknown in [&b"zstd"[..], b"gzip, br", b"compress"] {
            let err = ContentDecoder::for_encoding(unknown).err().unwrap();
            assert!(err.contains("content-encoding"), "{err}");
        }
    }

    #[test]
    fn a_cut_or_corrupt_body_is_an_error() {
        let full = gzip(&b"data: {}\n\n".repeat(100));
        assert!(decode("gzip", &full[..full.len() - 5], 64).is_err());
        assert!(decode("gzip", b"not gzip at all", 4).is_err());
    }

    /// What a piece decodes to comes out with that piece: an event of a
    /// compressed stream is not held back until the next one.
    #[test]
    fn each_piece_comes_out_at_once() {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        e.write_all(b"data: {\"a\":1}\n\n").unwrap();
        e.flush().unwrap(); // a sync flush, as a server flushing per event does
        let first = e.get_ref().clone();
        let mut d = ContentDecoder::for_encoding(b"gzip").unwrap().unwrap();
        let out = d.push(Bytes::from(first)).unwrap();
        assert_eq!(&out[..], b"data: {\"a\":1}\n\n");
        let mut b = ContentDecoder::for_encoding(b"br").unwrap().unwrap();
        let hello = [0x0b, 0x02, 0x80, 0x68, 0x65, 0x6c, 0x6c, 0x6f];
        assert_eq!(
            &b.push(Bytes::copy_from_slice(&hello)).unwrap()[..],
            b"hello"
        );
    }

    #[test]
    fn an_empty_body_is_not_corrupt_but_a_cut_brotli_one_is() {
        let mut d = ContentDecoder::for_encoding(b"gzip").unwrap().unwrap();
        assert!(d.finish().unwrap().is_empty());
        let mut b = ContentDecoder::for_encoding(b"br").unwrap().unwrap();
        b.push(Bytes::from_static(&[0x0b, 0x02, 0x80, 0x68]))
            .unwrap();
        assert!(b.finish().is_err());
    }

    #[test]
    fn a_bomb_comes_out_in_bounded_pieces() {
        let bomb = gzip(&vec![b'a'; 20 * MAX_OUTPUT]);
        let mut d = ContentDecoder::for_encoding(b"gzip").unwrap().unwrap();
        let first = d.push(Bytes::from(bomb)).unwrap();
        assert!(first.len() < 2 * MAX_OUTPUT, "{}", first.len());
        assert!(d.has_pending());
        let mut total = first.len();
        while d.has_pending() {
            let more = d.push(Bytes::new()).unwrap();
            assert!(more.len() < 2 * MAX_OUTPUT);
            total += more.len();
        }
        total += d.finish().unwrap().len();
        assert_eq!(total, 20 * MAX_OUTPUT);
    }
}
