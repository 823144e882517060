//! The per-connection driver: the only code that reads and writes client
//! sockets. It feeds bytes to the sans-IO parsers of `crate::http1`, hands
//! complete requests to its [`Service`], and writes the answers back in order
//! (pipelined requests wait in the read buffer until their turn).
//!
//! While a request is being served, the socket is still watched: a client
//! that disconnects cancels its request at once (the upstream request is
//! dropped, and its connection with it).

use bytes::{Bytes, BytesMut};
use std::future::Future;
use std::io::IoSlice;
use std::net::SocketAddr;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio::time::{timeout, timeout_at, Instant};

use super::write::{body_parts, encode_head, write_all_vectored, write_items, Framing, MAX_BATCH};
use super::{reached, Phase, Service};
use crate::api::{ApiError, Body, EventSource, Response};
use crate::config::Limits as ConfigLimits;
use crate::http1::{
    parse_request, BodyDecoder, BodyFraming, Frame, HttpError, Limits, Method, RequestHead, Version,
};
use crate::sse::encode::{error_event, StreamItem};
use crate::stats::Tally;

/// Read-buffer space made available before each read.
const READ_CHUNK: usize = 4096;
/// The largest single reservation while reading a long body, so that a
/// client announcing 50 MiB and sending nothing costs us nothing.
const BODY_CHUNK: usize = 1 << 20;

/// Why a connection ends.
enum End {
    /// Closed cleanly (idle timeout, shutdown, client closed between requests).
    Quiet,
    /// Answer this error, then close.
    Error(ApiError),
}

impl From<HttpError> for End {
    fn from(e: HttpError) -> End {
        End::Error(ApiError::Http {
            status: e.status(),
            message: e.reason(),
        })
    }
}

pub struct Conn<S: Service> {
    stream: TcpStream,
    rbuf: BytesMut,
    wbuf: BytesMut,
    service: Arc<S>,
    limits: Limits,
    timeouts: Timeouts,
    /// The worker's phase: draining closes idle connections, the drain
    /// deadline ends whatever is still being answered.
    phase: watch::Receiver<Phase>,
    /// Requests answered on this connection so far.
    served: u64,
    /// The client's address, for the access log.
    peer: SocketAddr,
}

#[derive(Clone, Copy)]
struct Timeouts {
    header: Duration,
    body: Duration,
    idle: Duration,
    send: Duration,
}

impl<S: Service> Conn<S> {
    pub fn new(
        stream: TcpStream,
        peer: SocketAddr,
        service: Arc<S>,
        phase: watch::Receiver<Phase>,
    ) -> Conn<S> {
        let _ = stream.set_nodelay(true);
        let l: &ConfigLimits = service.limits();
        let timeouts = Timeouts {
            header: l.header_read_timeout,
            body: l.body_read_timeout,
            idle: l.keep_alive_timeout,
            send: l.send_timeout,
        };
        Conn {
            stream,
            rbuf: BytesMut::new(),
            wbuf: BytesMut::with_capacity(512),
            limits: super::http_limits(l),
            timeouts,
            service,
            phase,
            served: 0,
            peer,
        }
    }

    pub async fn run(mut self) {
        self.service.connection_opened();
        let end = self.serve_requests().await;
        if let End::Error(err) = end {
            // The head was not accepted, but its request line may say
            // which route the client meant.
            let resp = self.service.error_answer(request_path(&self.rbuf), &err);
            let _ = self.write_whole(resp, false, true).await;
        }
        let _ = self.stream.shutdown().await;
        self.service.connection_closed();
    }

    async fn serve_requests(&mut self) -> End {
        loop {
            let head = match self.read_head().await {
                Ok(head) => head,
                Err(end) => return end,
            };
            let is_head = head.method() == Method::Head;
            let http10 = head.version() == Version::Http10;
            let mut close = !head.keep_alive();
            let admitted = self.service.admit(&head).map(|(route, mut tally)| {
                if let Some(t) = tally.as_mut() {
                    t.request_line(self.peer, head.method().as_str(), head.target());
                }
                (route, tally)
            });
            let (route, tally) = match admitted {
                Ok(admitted) => admitted,
                Err(mut resp) => {
                    if let Some(t) = resp.tally.as_mut() {
                        t.request_line(self.peer, head.method().as_str(), head.target());
                    }
                    // The body was not read: unless there is none, the
                    // connection cannot be reused (RFC 9112 §9.3).
                    close |= head.framing() != BodyFraming::Empty;
                    self.served += 1;
                    close |= *self.phase.borrow() != Phase::Serving;
                    if self.write_whole(*resp, is_head, close).await.is_err() || close {
                        return End::Quiet;
                    }
                    continue;
                }
            };
            let body = match self.read_body(&head).await {
                Ok(body) => body,
                Err(End::Error(err)) => {
                    let resp = self.service.error_answer(head.path(), &err);
                    let _ = self.write_whole(resp, false, true).await;
                    return End::Quiet;
                }
                Err(end) => return end,
            };
            let Some(resp) = self.serve_watching(route, &head, body, tally).await else {
                return End::Quiet; // the client went away
            };
            self.served += 1;
            close |= *self.phase.borrow() != Phase::Serving;
            let ok = match resp.body {
                Body::Stream(_) => self.write_stream(resp, http10, &mut close).await,
                _ => self.write_whole(resp, is_head, close).await.is_ok(),
            };
            if !ok || close {
                return End::Quiet;
            }
        }
    }

    /// Wait for a whole request head (docs/wire.md §6): on a new connection, up to
    /// the header timeout from the accept; between requests, up to the
    /// keep-alive timeout for the first byte, then the header timeout for
    /// the rest.
    ///
    /// A drain closes a connection only between requests: a connection
    /// that was just accepted may already have its request on the way, and
    /// leaving it unanswered would lose a request the client cannot know
    /// was never seen.
    async fn read_head(&mut self) -> Result<RequestHead, End> {
        let fresh = self.served == 0;
        let mut deadline =
            (fresh || !self.rbuf.is_empty()).then(|| Instant::now() + self.timeouts.header);
        loop {
            if !self.rbuf.is_empty() {
                if let Some(head) = parse_request(&mut self.rbuf, &self.limits)? {
                    return Ok(head);
                }
            }
            self.rbuf.reserve(READ_CHUNK);
            let read = match deadline {
                Some(d) => match timeout_at(d, self.stream.read_buf(&mut self.rbuf)).await {
                    Ok(r) => r,
                    // Nothing at all from a new connection: nobody to answer.
                    Err(_) if self.rbuf.is_empty() => return Err(End::Quiet),
                    Err(_) => return Err(End::Error(ApiError::Timeout)),
                },
                None => {
                    let idle = self.timeouts.idle;
                    // Biased: a request that is already here is served
                    // (and the connection closed after it) rather than
                    // dropped unanswered by a drain.
                    tokio::select! {
                        biased;
                        r = timeout(idle, self.stream.read_buf(&mut self.rbuf)) => match r {
                            Ok(r) => r,
                            Err(_) => return Err(End::Quiet),
                        },
                        _ = reached(&mut self.phase, Phase::Draining) => return Err(End::Quiet),
                    }
                }
            };
            match read {
                Ok(0) | Err(_) => return Err(End::Quiet),
                Ok(_) => {
                    deadline.get_or_insert_with(|| Instant::now() + self.timeouts.header);
                }
            }
        }
    }

    /// Read the request body: zero-copy for `Content-Length` (a slice of the
    /// read buffer), de-chunked into one buffer for `chunked`.
    async fn read_body(&mut self, head: &RequestHead) -> Result<Bytes, End> {
        let framing = head.framing();
        if framing == BodyFraming::Empty {
            return Ok(Bytes::new());
        }
        if head.expect_continue() {
            let have_all = matches!(framing, BodyFraming::Length(n) if self.rbuf.len() as u64 >= n);
            if !have_all
                && self
                    .stream
                    .write_all(b"HTTP/1.1 100 Continue\r\n\r\n")
                    .await
                    .is_err()
            {
                return Err(End::Quiet);
            }
        }
        if let BodyFraming::Length(n) = framing {
            let n = n as usize; // bounded by max_body_bytes in the parser
            while self.rbuf.len() < n {
                self.rbuf.reserve((n - self.rbuf.len()).min(BODY_CHUNK));
                self.read_more().await?;
            }
            return Ok(self.rbuf.split_to(n).freeze());
        }
        let mut decoder = BodyDecoder::new(framing, &self.limits);
        let mut body = BytesMut::new();
        loop {
            match decoder.decode(&mut self.rbuf)? {
                Some(Frame::Data(piece)) => body.extend_from_slice(&piece),
                Some(Frame::End) => return Ok(body.freeze()),
                None => {
                    self.rbuf.reserve(READ_CHUNK);
                    self.read_more().await?;
                }
            }
        }
    }

    /// One read while a body is expected: a gap longer than the body timeout
    /// is a slow client (408), an early EOF a truncated request.
    async fn read_more(&mut self) -> Result<(), End> {
        match timeout(self.timeouts.body, self.stream.read_buf(&mut self.rbuf)).await {
            Err(_) => Err(End::Error(ApiError::Timeout)),
            Ok(Ok(0)) | Ok(Err(_)) => Err(End::Quiet),
            Ok(Ok(_)) => Ok(()),
        }
    }

    /// Serve the request while watching the socket: bytes that arrive are
    /// kept for the next (pipelined) request; EOF means the client is gone,
    /// and dropping the handler future cancels whatever it was waiting on.
    async fn serve_watching(
        &mut self,
        route: S::Route,
        head: &RequestHead,
        body: Bytes,
        tally: Option<Tally>,
    ) -> Option<Response<S::Stream>> {
        let service = self.service.clone();
        let serve = service.serve(route, head, body, tally);
        tokio::pin!(serve);
        // An answer ready at once (the mock's) needs no look at the socket.
        let first = std::future::poll_fn(|cx| Poll::Ready(serve.as_mut().poll(cx))).await;
        if let Poll::Ready(resp) = first {
            return Some(resp);
        }
        let max = self.limits.max_head_bytes;
        loop {
            // The socket first: a handler woken after its client left (say,
            // handed an upstream connection slot freed by another departed
            // client) is dropped before it opens a connection or sends.
            tokio::select! {
                biased;
                r = read_some(&mut self.stream, &mut self.rbuf), if self.rbuf.len() < max => {
                    if !matches!(r, Ok(n) if n > 0) {
                        return None;
                    }
                }
                resp = &mut serve => return Some(resp),
                _ = reached(&mut self.phase, Phase::Deadline) => {
                    return Some(Response::error(&ApiError::ShuttingDown));
                }
            }
        }
    }

    /// Write a whole answer: head and body in one vectored write.
    async fn write_whole(
        &mut self,
        mut resp: Response<S::Stream>,
        is_head: bool,
        close: bool,
    ) -> std::io::Result<()> {
        let parts = body_parts(&resp.body);
        let len: usize = parts.iter().map(|p| p.len()).sum();
        self.wbuf.clear();
        encode_head(&mut self.wbuf, &resp, Framing::Length(len as u64), close);
        let mut slices = [IoSlice::new(&[]); 4];
        slices[0] = IoSlice::new(&self.wbuf);
        let mut n = 1;
        if !is_head {
            for p in parts {
                slices[n] = IoSlice::new(p);
                n += 1;
            }
        }
        let send = self.timeouts.send;
        let result = bounded(send, write_all_vectored(&mut self.stream, &mut slices[..n])).await;
        resp.finish_tally(result.is_ok());
        result
    }

    /// Write a streamed answer as the source yields it, still watching
    /// for the client to leave. Everything already available (the head, the
    /// events that arrived together, the end) goes out in one write; nothing
    /// is ever held back waiting for more. Returns false when the connection
    /// must end.
    async fn write_stream(
        &mut self,
        resp: Response<S::Stream>,
        http10: bool,
        close: &mut bool,
    ) -> bool {
        let framing = if http10 {
            Framing::Close
        } else {
            Framing::Chunked
        };
        *close |= http10;
        self.wbuf.clear();
        encode_head(&mut self.wbuf, &resp, framing, *close);
        let Response {
            body, mut tally, ..
        } = resp;
        let Body::Stream(mut source) = body else {
            return false;
        };
        let mut head_sent = false;
        let mut batch: Vec<StreamItem> = Vec::new();
        let max = self.limits.max_head_bytes;
        let ended = loop {
            batch.clear();
            // A stream whose events never stop coming must still end at
            // the drain deadline (docs/wire.md §6).
            if *self.phase.borrow() == Phase::Deadline {
                let event = error_event(&ApiError::ShuttingDown);
                let head: &[u8] = if head_sent { &[] } else { &self.wbuf };
                let items = [StreamItem::Raw(event)];
                let _ = bounded(
                    self.timeouts.send,
                    write_items(&mut self.stream, head, &items, framing, true),
                )
                .await;
                return false;
            }
            if let Some(item) = source.next_ready() {
                batch.push(item);
            } else {
                // Nothing yet: the head goes out alone, so the client knows
                // the stream began, then wait for the source.
                if !head_sent {
                    let send = self.timeouts.send;
                    if bounded(send, self.stream.write_all(&self.wbuf))
                        .await
                        .is_err()
                    {
                        return false;
                    }
                    head_sent = true;
                }
                tokio::select! {
                    biased;
                    r = read_some(&mut self.stream, &mut self.rbuf), if self.rbuf.len() < max => {
                        if matches!(r, Ok(n) if n > 0) {
                            continue;
                        }
                        return false; // client gone: dropping `source` cancels the upstream
                    }
                    item = source.next() => match item {
                        Some(item) => batch.push(item),
                        None => break false,
                    },
                    _ = reached(&mut self.phase, Phase::Deadline) => {
                        // docs/wire.md §6: a stream still open at the drain deadline
                        // ends with an error event, then the connection.
                        let event = error_event(&ApiError::ShuttingDown);
                        let _ = bounded(
                            self.timeouts.send,
                            write_items(&mut self.stream, &[], &[StreamItem::Raw(event)], framing, true),
                        )
                        .await;
                        return false;
                    }
                };
            }
            while batch.len() < MAX_BATCH {
                match source.next_ready() {
                    Some(item) => batch.push(item),
                    None => break,
                }
            }
            // The first event with data, or an audio body's first bytes.
            let content = source.is_bytes() && !batch.is_empty();
            if content || batch.iter().any(|i| matches!(i, StreamItem::Data { .. })) {
                if let Some(t) = tally.as_mut() {
                    t.first_token();
                }
            }
            let end = source.is_ended();
            let head: &[u8] = if head_sent { &[] } else { &self.wbuf };
            let send = self.timeouts.send;
            // A byte stream cut short ends without its last chunk.
            let last = end && !source.aborted();
            if bounded(
                send,
                write_items(&mut self.stream, head, &batch, framing, last),
            )
            .await
            .is_err()
            {
                return false;
            }
            head_sent = true;
            if end || source.aborted() {
                break true;
            }
        };
        if source.aborted() {
            if let Some(t) = tally.take() {
                t.finish(200, false, source.fault());
            }
            return false;
        }
        if !ended
            && bounded(
                self.timeouts.send,
                write_items(&mut self.stream, &[], &[], framing, true),
            )
            .await
            .is_err()
        {
            return false;
        }
        if let Some(mut t) = tally {
            // A stream made ahead knows no usage of its own: the counts
            // set when it was made stand.
            let (prompt, completion) = source.usage();
            if (prompt, completion) != (0, 0) {
                t.tokens(prompt, completion);
            }
            let fault = source.fault();
            t.finish(200, source.completed() && fault.is_none(), fault);
        }
        // docs/wire.md §4: a stream that failed after it began closes the connection.
        *close |= source.failed();
        // The client has its whole answer; the upstream connection is
        // pooled once its body has ended too.
        source.settle().await;
        true
    }
}

/// A write that must finish within `limit`: a client that stops reading
/// would otherwise hold its connection (and upstream request) forever.
async fn bounded(
    limit: Duration,
    write: impl std::future::Future<Output = std::io::Result<()>>,
) -> std::io::Result<()> {
    timeout(limit, write)
        .await
        .unwrap_or_else(|_| Err(std::io::ErrorKind::TimedOut.into()))
}

/// The path of the request line at the front of `buf` (after any empty
/// lines, RFC 9112 §2.2), or empty when there is none to read.
fn request_path(buf: &[u8]) -> &[u8] {
    let start = buf
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(buf.len());
    let line = &buf[start..];
    let line = &line[..memchr::memchr(b'\n', line).unwrap_or(line.len())];
    let target = line.split(|b| *b == b' ').nth(1).unwrap_or_default();
    let path = &target[..memchr::memchr(b'?', target).unwrap_or(target.len())];
    match path.first() {
        Some(b'/') => path,
        _ => &[],
    }
}

async fn read_some(stream: &mut TcpStream, buf: &mut BytesMut) -> std::io::Result<usize> {
    buf.reserve(READ_CHUNK);
    stream.read_buf(buf).await
}
