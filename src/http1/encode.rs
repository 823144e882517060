//! Small pure helpers for writing HTTP/1.1: reason phrases, the chunk-size
//! line, and decimal Content-Length values.
//!
//! Owns the byte layout of what the writers put around a payload. It must
//! not own or copy payloads: a chunk goes out as three slices —
//! [`ChunkSize::as_bytes`], the data `Bytes`, [`CHUNK_END`] — in one
//! vectored write (RFC 9112 §7.1), and the connection driver does the write.

use bytes::BytesMut;

// A usize needs at most 16 hex digits, which is what `ChunkSize` reserves.
const _: () = assert!(usize::BITS <= 64);

/// The CRLF after each chunk's data (RFC 9112 §7.1).
pub const CHUNK_END: &[u8] = b"\r\n";

/// The last chunk with an empty trailer section: ends a chunked body.
pub const LAST_CHUNK: &[u8] = b"0\r\n\r\n";

/// The reason phrase for a status code. RFC 9112 §4: clients ignore it, so
/// codes without a phrase here get the name of their class.
pub fn reason_phrase(status: u16) -> &'static str {
    match status {
        100 => "Continue",
        101 => "Switching Protocols",
        200 => "OK",
        201 => "Created",
        202 => "Accepted",
        204 => "No Content",
        304 => "Not Modified",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        413 => "Content Too Large",
        414 => "URI Too Long",
        415 => "Unsupported Media Type",
        422 => "Unprocessable Content",
        429 => "Too Many Requests",
        431 => "Request Header Fields Too Large",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => match status / 100 {
            1 => "Informational",
            2 => "Success",
            3 => "Redirection",
            4 => "Client Error",
            _ => "Server Error",
        },
    }
}

/// The chunk-size line `{len:X}\r\n` in a stack buffer (no allocation),
/// written beside the payload with a vectored write, never copied into it.
///
/// `ChunkSize::new(0)` is the last-chunk line; a writer must skip empty
/// data chunks, since a zero size ends the body.
#[derive(Clone, Copy, Debug)]
pub struct ChunkSize {
    buf: [u8; 18],
    len: u8,
}

impl ChunkSize {
    pub fn new(len: usize) -> Self {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        // Significant hex digits, at least one: 1..=16 by the assert above.
        let bits = usize::BITS - len.leading_zeros();
        let digits = bits.div_ceil(4).max(1) as usize;
        let mut buf = [0u8; 18];
        let mut n = len;
        for slot in buf[..digits].iter_mut().rev() {
            *slot = HEX[n & 0xF];
            n >>= 4;
        }
        buf[digits] = b'\r';
        buf[digits + 1] = b'\n';
        ChunkSize {
            buf,
            len: (digits + 2) as u8, // at most 18
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..usize::from(self.len)]
    }
}

/// Appends the decimal digits of `n` to `dst` (for Content-Length) from a
/// stack buffer, without formatting machinery or allocation.
pub fn write_decimal(dst: &mut BytesMut, n: u64) {
    // u64::MAX has 20 decimal digits.
    let mut digits = [0u8; 20];
    let mut start = digits.len();
    let mut n = n;
    loop {
        start -= 1;
        digits[start] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    dst.extend_from_slice(&digits[start..]);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunk_size_lines() {
        assert_eq!(ChunkSize::new(0).as_bytes(), b"0\r\n");
        assert_eq!(ChunkSize::new(1).as_bytes(), b"1\r\n");
        assert_eq!(ChunkSize::new(15).as_bytes(), b"F\r\n");
        assert_eq!(ChunkSize::new(16).as_bytes(), b"10\r\n");
        assert_eq!(ChunkSize::new(16 * 1024).as_bytes(), b"4000\r\n");
        assert_eq!(
            ChunkSize::new(usize::MAX).as_bytes(),
            format!("{:X}\r\n", usize::MAX).as_bytes()
        );
        for n in [2usize, 255, 256, 4095, 65_537, 1 << 40] {
            assert_eq!(
                ChunkSize::new(n).as_bytes(),
                format!("{n:X}\r\n").as_bytes()
            );
        }
    }

    #[test]
    fn decimals() {
        for n in [0u64, 7, 10, 1234, u64::MAX] {
            let mut dst = BytesMut::from(&b"Content-Length: "[..]);
            write_decimal(&mut dst, n);
            assert_eq!(&dst[..], format!("Content-Length: {n}").as_bytes());
        }
    }

    #[test]
    fn reason_phrases() {
        assert_eq!(reason_phrase(200), "OK");
        assert_eq!(reason_phrase(413), "Content Too Large");
        assert_eq!(reason_phrase(431), "Request Header Fields Too Large");
        assert_eq!(reason_phrase(504), "Gateway Timeout");
        assert_eq!(reason_phrase(418), "Client Error");
        assert_eq!(reason_phrase(599), "Server Error");
        for s in [
            100, 200, 204, 400, 401, 403, 404, 405, 408, 413, 414, 429, 431, 500, 501, 502, 503,
            504,
        ] {
            assert!(!reason_phrase(s).is_empty());
        }
    }
}
