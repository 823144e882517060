//! The HTTP/1.1 framing both relays share: where a request ends (head plus
//! `Content-Length` body, RFC 9112 §6) and where an upstream's answer ends.
//! Identical user-space work on both sides, so that the two relays differ
//! only in how they talk to the kernel.

use std::io;

fn bad(what: &'static str) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what)
}

fn content_length(headers: &[httparse::Header<'_>]) -> io::Result<usize> {
    for h in headers {
        if h.name.eq_ignore_ascii_case("content-length") {
            return std::str::from_utf8(h.value)
                .ok()
                .and_then(|v| v.trim().parse().ok())
                .ok_or(bad("Content-Length is not a number"));
        }
        if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(bad("chunked framing is not part of this measurement"));
        }
    }
    Ok(0)
}

/// The length in bytes of the first whole request in `buf` (head and body),
/// `None` while it is incomplete.
pub fn request_len(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf).map_err(|_| bad("malformed request"))? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(head) => {
            let total = head + content_length(req.headers)?;
            Ok((buf.len() >= total).then_some(total))
        }
    }
}

/// Follows one upstream answer across the reads it arrives in, to tell when
/// it is complete (and the connection free for the next request).
#[derive(Default)]
pub struct Answer {
    /// The head, when it arrived over more than one read.
    head: Vec<u8>,
    /// Head plus body, once the head is parsed.
    total: Option<usize>,
    /// Bytes of this answer seen so far.
    seen: usize,
}

impl Answer {
    /// Takes the next read of the answer; `Ok(true)` when the answer is
    /// complete. An upstream sending past the end is an error (no
    /// pipelining here).
    pub fn feed(&mut self, bytes: &[u8]) -> io::Result<bool> {
        self.seen += bytes.len();
        if self.total.is_none() {
            let parsed = if self.head.is_empty() {
                parse_head(bytes)?
            } else {
                None
            };
            self.total = match parsed {
                Some(total) => Some(total),
                None => {
                    self.head.extend_from_slice(bytes);
                    parse_head(&self.head)?
                }
            };
        }
        match self.total {
            Some(total) if self.seen == total => {
                *self = Answer::default();
                Ok(true)
            }
            Some(total) if self.seen > total => Err(bad("upstream sent past its answer")),
            _ => Ok(false),
        }
    }
}

fn parse_head(buf: &[u8]) -> io::Result<Option<usize>> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut res = httparse::Response::new(&mut headers);
    match res.parse(buf).map_err(|_| bad("malformed answer"))? {
        httparse::Status::Partial => Ok(None),
        httparse::Status::Complete(head) => Ok(Some(head + content_length(res.headers)?)),
    }
}
