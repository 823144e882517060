//! The upstream HTTP/1.1 client: owns the connections to providers.
//!
//! One [`Upstream`] per provider origin (scheme, host, port, base path). It
//! connects (DNS, TCP, TLS, within the connect timeout), writes a request
//! head and its body in one vectored write, waits for the response head
//! within the first-byte timeout, and hands the body out as zero-copy
//! slices of its read buffer. Connections that ended an exchange cleanly go
//! back to a per-upstream [`pool`]; any other connection is closed.
//!
//! Protocol rules live in the sans-IO [`crate::http1`] layer (response heads
//! and body framing) and in `request` (the head we send); this module is the
//! connection driver around them. It must not know about JSON, models,
//! accounts or client keys: the gateway builds the path, the upstream
//! `Authorization` value and the body, and reads what comes back.
//!
//! Files: `mod.rs` the client and its error, [`pool`] the idle set,
//! [`tls`] the rustls configuration, `io` the plain/TLS stream, `request`
//! the request head encoder.

pub mod coding;
mod io;
pub mod pool;
mod request;
pub mod tls;

#[cfg(test)]
mod tests;

use std::fmt;
use std::io::IoSlice;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::http1::{self, BodyDecoder, Frame, HttpError, Limits, RequestHead, ResponseHead};
use io::Stream;
use request::{HeadFields, Target};

/// Bytes the read buffer is grown by before a read. One TLS record is at
/// most 16 KiB of plaintext, so one read can take a whole record.
const READ_CHUNK: usize = 16 * 1024;

/// Settings of one upstream. `Default` gives the config's defaults
/// (`crate::config::Limits`, the one place every default is written).
#[derive(Clone, Debug)]
pub struct UpstreamConfig {
    /// DNS, TCP connect and TLS handshake together.
    pub connect_timeout: Duration,
    /// How long a pooled connection may sit idle before it is dropped.
    pub idle_timeout: Duration,
    /// Idle connections kept for reuse; 0 disables pooling.
    pub max_idle: usize,
    /// Connections open at once, idle and busy, shared out over `workers`;
    /// 0 = no cap ([`pool`]'s module docs).
    pub max_conns: usize,
    /// The proxy workers that send requests (`crate::server`), for the
    /// shares of `max_conns`.
    pub workers: usize,
    /// How long a request may queue for a connection at `max_conns`; zero
    /// refuses it at once.
    pub queue_timeout: Duration,
    /// Limits applied to responses (head size, header count, body size).
    pub limits: Limits,
}

impl Default for UpstreamConfig {
    fn default() -> Self {
        let d = crate::config::Limits::default();
        UpstreamConfig {
            connect_timeout: d.upstream_connect_timeout,
            idle_timeout: d.upstream_idle_timeout,
            max_idle: d.upstream_max_idle,
            max_conns: d.upstream_max_conns,
            workers: crate::config::default_workers(),
            queue_timeout: d.upstream_queue_timeout,
            limits: Limits::default(),
        }
    }
}

/// What went wrong talking to an upstream. The gateway answers 502
/// `upstream_error` for all of them except the timeouts ([`is_timeout`]),
/// which are 504 `upstream_timeout`, and [`QueueTimeout`], which is 503
/// `server_overloaded` (docs/wire.md §4).
///
/// [`is_timeout`]: UpstreamError::is_timeout
/// [`QueueTimeout`]: UpstreamError::QueueTimeout
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// DNS failed, or every address refused or was unreachable.
    Connect(String),
    /// DNS, TCP and TLS did not complete within the connect timeout.
    ConnectTimeout,
    /// The TLS handshake failed (certificate, protocol).
    Tls(String),
    /// A read or write failed after the connection was up (reset etc.).
    Io(String),
    /// The response is not valid HTTP/1.1 or breaks a limit; the connection
    /// was discarded.
    Protocol(HttpError),
    /// No complete response head within the first-byte timeout.
    FirstByteTimeout,
    /// A whole body was wanted and did not arrive within its deadline.
    BodyTimeout,
    /// The upstream closed the connection before a complete head or body.
    ClosedEarly,
    /// The body uses a content-coding we cannot undo, or is not valid for
    /// the coding it names (RFC 9110 §8.4).
    Decode(String),
    /// The request's worker had its share of the origin's `max_conns`
    /// connections busy for the whole queue timeout; the request was never
    /// sent (a retry that queues that long fails with the first attempt's
    /// error instead).
    QueueTimeout {
        /// The cap (`limits.upstreamMaxConns`).
        max_conns: usize,
    },
    /// chat2api had no file descriptor or socket memory for a new
    /// connection (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`): its own
    /// limit, not the upstream's failure; the request was never sent.
    OutOfDescriptors(String),
}

impl UpstreamError {
    /// Whether this is the upstream taking too long to answer (504).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            UpstreamError::FirstByteTimeout | UpstreamError::BodyTimeout
        )
    }
}

impl fmt::Display for UpstreamError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            UpstreamError::Connect(e) => write!(f, "cannot connect to upstream: {e}"),
            UpstreamError::ConnectTimeout => f.write_str("upstream connect timed out"),
            UpstreamError::Tls(e) => write!(f, "upstream TLS handshake failed: {e}"),
            UpstreamError::Io(e) => write!(f, "upstream connection failed: {e}"),
            UpstreamError::Protocol(e) => write!(f, "invalid upstream response: {e}"),
            UpstreamError::FirstByteTimeout => f.write_str("upstream did not answer in time"),
            UpstreamError::BodyTimeout => {
                f.write_str("upstream stopped sending its answer before the end")
            }
            UpstreamError::ClosedEarly => {
                f.write_str("upstream closed the connection before the response was complete")
            }
            UpstreamError::Decode(e) => f.write_str(e),
            UpstreamError::QueueTimeout { max_conns } => write!(
                f,
                "this worker's share of the {max_conns} connections allowed to the upstream stayed busy for the queue timeout"
            ),
            UpstreamError::OutOfDescriptors(e) => {
                write!(f, "no file descriptor for an upstream connection: {e}")
            }
        }
    }
}

impl std::error::Error for UpstreamError {}

/// One request to send. Borrowed from the caller: nothing is copied but the
/// head, which is encoded into a fresh buffer. `Debug` leaves out the
/// `Authorization` value and the body (docs/wire.md §5: no keys, no bodies in logs).
#[derive(Clone, Copy)]
pub struct UpstreamRequest<'a> {
    /// `"POST"` or `"GET"`.
    pub method: &'static str,
    /// Appended to the base path, e.g. `"/chat/completions"`.
    pub path: &'a str,
    /// The whole `Authorization` value, e.g. `b"Bearer sk-..."`.
    pub authorization: Option<&'a [u8]>,
    /// More header lines of the account's, each ending in CRLF (its
    /// `OpenAI-Organization` and `OpenAI-Project`); usually empty.
    pub account_fields: &'a [u8],
    /// The client's head: its end-to-end fields are forwarded.
    pub forward: Option<&'a RequestHead>,
    /// Defaults to `application/json` when the body is not empty.
    pub content_type: Option<&'a [u8]>,
    /// The body as slices, written in one vectored write after the head.
    pub body: &'a [Bytes],
    /// From the end of the write to a complete response head.
    pub first_byte_timeout: Duration,
}

impl fmt::Debug for UpstreamRequest<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let body_len: usize = self.body.iter().map(Bytes::len).sum();
        f.debug_struct("UpstreamRequest")
            .field("method", &self.method)
            .field("path", &self.path)
            .field("authorization", &self.authorization.map(|_| "<redacted>"))
            .field("forward", &self.forward.is_some())
            .field("body_len", &body_len)
            .field("first_byte_timeout", &self.first_byte_timeout)
            .finish_non_exhaustive()
    }
}

/// A connection to one upstream origin, with its pool. Cheap to share in an
/// `Arc`; every method takes `&self`.
pub struct Upstream {
    inner: Arc<Inner>,
}

/// What responses need after `send` returned: the pool to check their
/// connection into, and the limits to decode with.
struct Inner {
    /// Without brackets, for DNS.
    host: String,
    port: u16,
    tls: Option<tls::Connector>,
    target: Target,
    cfg: UpstreamConfig,
    pool: pool::Pool<Stream>,
    /// TCP connections opened. `Relaxed`: a statistic, synchronising nothing.
    opened: AtomicU64,
}

/// A failed attempt, and whether it may be retried on a fresh connection.
struct Failed {
    error: UpstreamError,
    retryable: bool,
}

impl Upstream {
    /// An upstream at `host:port` whose requests go under `base_path`
    /// (`"/v1"`). `tls == false` is plain TCP. `ca_file` adds the PEM
    /// certificates of a private CA to the webpki roots. No connection is
    /// opened until the first request.
    pub fn new(
        tls: bool,
        host: &str,
        port: u16,
        base_path: &str,
        ca_file: Option<&Path>,
        cfg: UpstreamConfig,
    ) -> Result<Upstream, String> {
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        if bare.is_empty()
            || !bare
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_' | b':'))
        {
            return Err(format!("invalid upstream host {host:?}"));
        }
        let connector = match tls {
            true => Some(tls::Connector::new(bare, ca_file)?),
            false => None,
        };
        let target = Target::new(tls, bare, port, base_path)?;
        let pool = pool::Pool::new(cfg.max_idle, cfg.idle_timeout).capped(
            cfg.max_conns,
            cfg.queue_timeout,
            cfg.workers,
        );
        Ok(Upstream {
            inner: Arc::new(Inner {
                host: bare.to_owned(),
                port,
                tls: connector,
                target,
                cfg,
                pool,
                opened: AtomicU64::new(0),
            }),
        })
    }

    /// Connections opened so far (for stats and tests).
    pub fn connections_opened(&self) -> u64 {
        self.inner.opened.load(Ordering::Relaxed)
    }

    /// Idle connections in the pool right now.
    pub fn idle_connections(&self) -> usize {
        self.inner.pool.idle()
    }

    /// Requests queued for a connection at the cap right now.
    pub fn queued_requests(&self) -> usize {
        self.inner.pool.queued()
    }

    /// Sends one request and waits for the final response head (interim 1xx
    /// responses are skipped by the parser).
    ///
    /// A pooled connection is tried first; at its worker's share of the
    /// origin's cap the request queues for one ([`pool`];
    /// [`UpstreamError::QueueTimeout`] after the queue timeout). If a pooled
    /// connection fails before a single byte
    /// of response arrived — the write failed, or it was closed or reset
    /// before the head — the request is sent once more on a fresh
    /// connection. This is the keep-alive race: a server may close an idle
    /// connection at any time (RFC 9112 §9.3.1, §9.6) and our request can
    /// cross its FIN. RFC 9110 §9.2.2 allows retrying a non-idempotent
    /// request only with "some means to detect that the original request was
    /// never applied", and RFC 9112 §9.3.1 tells a proxy not to retry
    /// non-idempotent requests automatically; we take a reused connection
    /// that ends without one response byte as that means, as pingora and
    /// hyper do. The residual risk (an upstream that applied the request,
    /// then died before answering) is accepted for POST to a model API. A
    /// fresh connection, a timeout, or a failure after response bytes
    /// arrived is never retried.
    pub async fn send(&self, req: UpstreamRequest<'_>) -> Result<UpstreamResponse, UpstreamError> {
        if req.method.is_empty()
            || !req.method.bytes().all(|b| b.is_ascii_alphabetic())
            || !request::is_valid_target(req.path.as_bytes())
        {
            return Err(UpstreamError::Protocol(HttpError::Malformed(
                "invalid upstream request method or path",
            )));
        }
        let body_len: u64 = req.body.iter().map(|b| b.len() as u64).sum();
        // RFC 9110 §8.6: a request whose method defines a meaning for content
        // carries Content-Length even when it is 0.
        let content_length = match body_len > 0 || matches!(req.method, "POST" | "PUT" | "PATCH") {
            true => Some(body_len),
            false => None,
        };
        let content_type = match (req.content_type, body_len) {
            (Some(ct), _) => Some(ct),
            (None, 0) => None,
            (None, _) => Some(&b"application/json"[..]),
        };
        let forwarded_len = req.forward.map_or(0, |h| h.as_bytes().len());
        let mut head = BytesMut::with_capacity(256 + forwarded_len);
        request::encode_head(
            &mut head,
            &self.inner.target,
            &HeadFields {
                method: req.method,
                path: req.path,
                authorization: req.authorization,
                account_fields: req.account_fields,
                content_type,
                forward: req.forward,
                content_length,
            },
        );
        // RFC 9112 §6.3 rule 1: a response to HEAD never has a body.
        let head_request = req.method == "HEAD";
        let exchange = |conn, reused| {
            self.exchange(
                conn,
                reused,
                &head,
                req.body,
                req.first_byte_timeout,
                head_request,
            )
        };

        // The second pass is the retry on a fresh connection.
        let mut reuse = true;
        let mut first_failure = None;
        loop {
            let slot = match self.inner.pool.slot(Stream::is_idle_healthy, reuse).await {
                Ok(slot) => slot,
                // A retry's request was sent once already: its answer is
                // the first failure, never "not sent".
                Err(pool::QueueTimeout) => {
                    return Err(first_failure.unwrap_or(UpstreamError::QueueTimeout {
                        max_conns: self.inner.cfg.max_conns,
                    }))
                }
            };
            let opened = match slot {
                pool::Slot::Idle(conn) if reuse => Ok((conn, true)),
                // At the cap the retry may be handed a pooled connection:
                // it gives up its place under the cap for a fresh one.
                pool::Slot::Idle(conn) => {
                    self.connect(conn.into_permit()).await.map(|c| (c, false))
                }
                pool::Slot::Open(permit) => self.connect(permit).await.map(|c| (c, false)),
            };
            let (conn, reused) = match opened {
                Ok(opened) => opened,
                // Likewise a retry with no descriptor for its connection.
                Err(e @ UpstreamError::OutOfDescriptors(_)) => {
                    return Err(first_failure.unwrap_or(e))
                }
                Err(e) => return Err(e),
            };
            match exchange(conn, reused).await {
                Ok(response) => return Ok(response),
                Err(Failed {
                    retryable: true,
                    error,
                }) if reuse => {
                    reuse = false;
                    first_failure = Some(error);
                }
                Err(failed) => return Err(failed.error),
            }
        }
    }

    /// Opens a connection holding `permit`: DNS, TCP (addresses tried in
    /// order), TLS, all within the connect timeout.
    async fn connect(&self, permit: Option<pool::Permit>) -> Result<Stream, UpstreamError> {
        let inner = &*self.inner;
        tokio::time::timeout(inner.cfg.connect_timeout, inner.open(permit))
            .await
            .map_err(|_| UpstreamError::ConnectTimeout)?
    }

    async fn exchange(
        &self,
        mut conn: Stream,
        reused: bool,
        head: &[u8],
        body: &[Bytes],
        first_byte_timeout: Duration,
        head_request: bool,
    ) -> Result<UpstreamResponse, Failed> {
        let fail = |error, retryable: bool| Failed {
            error,
            retryable: reused && retryable,
        };
        // The write shares the budget's length: an upstream that stops
        // reading our body is as stuck as one that never answers.
        match tokio::time::timeout(first_byte_timeout, write_request(&mut conn, head, body)).await {
            Err(_) => return Err(fail(UpstreamError::FirstByteTimeout, false)),
            // Nothing was answered, and the upstream cannot act on a
            // request it did not fully receive.
            Ok(Err(e)) => return Err(fail(UpstreamError::Io(e.to_string()), true)),
            Ok(Ok(())) => {}
        }
        let limits = &self.inner.cfg.limits;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let read = read_head(&mut conn, &mut buf, limits, head_request);
        let head = match tokio::time::timeout(first_byte_timeout, read).await {
            Err(_) => return Err(fail(UpstreamError::FirstByteTimeout, false)),
            Ok(Err(failed)) => return Err(fail(failed.error, failed.retryable)),
            Ok(Ok(head)) => head,
        };
        let coding = head
            .header("content-encoding")
            .map_or(Ok(None), coding::ContentDecoder::for_encoding)
            .map_err(|e| fail(UpstreamError::Decode(e), false))?;
        if head.status() == 101 {
            // We never send Upgrade, so a switch is not allowed
            // (RFC 9110 §15.2.2) and the connection no longer speaks HTTP.
            return Err(fail(
                UpstreamError::Protocol(HttpError::Malformed("unexpected 101 response")),
                false,
            ));
        }
        Ok(UpstreamResponse::new(
            head,
            conn,
            buf,
            coding,
            Arc::clone(&self.inner),
        ))
    }
}

impl fmt::Debug for Upstream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Upstream")
            .field("host", &self.inner.host)
            .field("port", &self.inner.port)
            .field("tls", &self.inner.tls.is_some())
            .field("target", &self.inner.target)
            .field("pool", &self.inner.pool)
            .finish()
    }
}

impl Inner {
    async fn open(&self, permit: Option<pool::Permit>) -> Result<Stream, UpstreamError> {
        let host = self.host.as_str();
        let addrs = match tokio::net::lookup_host((host, self.port)).await {
            Ok(addrs) => addrs,
            // The resolver needs descriptors too (`/etc/hosts`, a socket to
            // the name server), and out of them it may only say that the
            // name did not resolve: a socket of our own tells which it was.
            Err(e) => {
                let ours = is_out_of_descriptors(&e)
                    || std::net::UdpSocket::bind(("127.0.0.1", 0))
                        .is_err_and(|probe| is_out_of_descriptors(&probe));
                let what = format!("resolving {host}: {e}");
                return Err(match ours {
                    true => UpstreamError::OutOfDescriptors(what),
                    false => UpstreamError::Connect(what),
                });
            }
        };
        let mut last_error = None;
        let mut tcp = None;
        for addr in addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                // Out of descriptors here, no other address fares better.
                Err(e) if is_out_of_descriptors(&e) => {
                    return Err(UpstreamError::OutOfDescriptors(format!("{addr}: {e}")));
                }
                Err(e) => last_error = Some(format!("{addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            UpstreamError::Connect(
                last_error.unwrap_or_else(|| format!("{host} resolved to no address")),
            )
        })?;
        self.opened.fetch_add(1, Ordering::Relaxed);
        // Heads and SSE events are small writes that must leave at once;
        // Nagle would hold them for the previous segment's ACK.
        tcp.set_nodelay(true)
            .map_err(|e| UpstreamError::Io(e.to_string()))?;
        match &self.tls {
            None => Ok(Stream::plain(tcp, permit)),
            Some(connector) => connector
                .connect(tcp)
                .await
                .map(|tls| Stream::tls(tls, permit))
                .map_err(UpstreamError::Tls),
        }
    }
}

/// Whether a socket could not be made for want of chat2api's own resources:
/// a file descriptor (`EMFILE` per process, `ENFILE` system-wide) or kernel
/// memory for it (`ENOBUFS`, `ENOMEM`), socket(2) and connect(2).
fn is_out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Writes the head and the body slices with as few `writev` calls as the
/// socket allows (`crate::vectored`), then flushes (TLS buffers records
/// until then).
async fn write_request(conn: &mut Stream, head: &[u8], body: &[Bytes]) -> std::io::Result<()> {
    let mut slices: Vec<IoSlice<'_>> = std::iter::once(head)
        .chain(body.iter().map(|b| &b[..]))
        .filter(|p| !p.is_empty())
        .map(IoSlice::new)
        .collect();
    crate::vectored::write_all(conn, &mut slices).await?;
    conn.flush().await
}

/// Reads until `buf` holds a complete final response head. Retryable when
/// the connection ended before any byte arrived.
async fn read_head(
    conn: &mut Stream,
    buf: &mut BytesMut,
    limits: &Limits,
    head_request: bool,
) -> Result<ResponseHead, Failed> {
    let mut received = 0usize;
    loop {
        match http1::parse_response(buf, limits, head_request) {
            Ok(Some(head)) => return Ok(head),
            Ok(None) => {}
            Err(e) => {
                return Err(Failed {
                    error: UpstreamError::Protocol(e),
                    retryable: false,
                })
            }
        }
        buf.reserve(READ_CHUNK);
        let (error, retryable) = match conn.read_buf(buf).await {
            Ok(0) => (UpstreamError::ClosedEarly, received == 0),
            Ok(n) => {
                received += n;
                continue;
            }
            Err(e) => (UpstreamError::Io(e.to_string()), received == 0),
        };
        return Err(Failed { error, retryable });
    }
}

/// A response whose head has arrived. The body is read with
/// [`data`](Self::data) or [`collect`](Self::collect), de-framed and, when
/// the upstream compressed it, decoded ([`coding`]).
///
/// The connection goes back to the pool when the body is complete, the
/// response allows keep-alive (RFC 9112 §9.3: no `Connection: close`, not
/// close-delimited) and nothing followed the body. Dropping the response
/// before the end of its body closes the connection: the unread rest would
/// otherwise be taken for the next response.
pub struct UpstreamResponse {
    head: ResponseHead,
    decoder: BodyDecoder,
    /// Bytes read but not yet decoded. Persistent across `data` calls, so a
    /// cancelled read loses nothing.
    buf: BytesMut,
    /// `None` once the connection is checked in, closed or failed.
    conn: Option<Stream>,
    upstream: Arc<Inner>,
    keep_alive: bool,
    /// The error that ended the body; repeated on later calls.
    failed: Option<UpstreamError>,
    /// Undoes the body's `Content-Encoding`, if any.
    coding: Option<coding::ContentDecoder>,
    /// The framing's end was seen (and the coding's output flushed).
    ended: bool,
}

impl UpstreamResponse {
    fn new(
        head: ResponseHead,
        conn: Stream,
        buf: BytesMut,
        coding: Option<coding::ContentDecoder>,
        upstream: Arc<Inner>,
    ) -> Self {
        let decoder = BodyDecoder::new(head.framing(), &upstream.cfg.limits);
        let keep_alive = head.keep_alive();
        let mut response = UpstreamResponse {
            head,
            decoder,
            buf,
            conn: Some(conn),
            upstream,
            keep_alive,
            failed: None,
            coding,
            ended: false,
        };
        if response.decoder.is_done() {
            // No body (204, 304, Content-Length: 0): the connection is free
            // now, even if the caller never asks for the body.
            response.finish();
        }
        response
    }

    pub fn status(&self) -> u16 {
        self.head.status()
    }

    pub fn head(&self) -> &ResponseHead {
        &self.head
    }

    /// The next piece of the decoded body, a zero-copy slice of the read
    /// buffer; `Ok(None)` at the end.
    ///
    /// Cancel-safe: the only await is `read_buf` into the response's own
    /// buffer (tokio documents it as cancel-safe, and for TLS the bytes sit
    /// in the rustls session until read), and decoding is synchronous, so
    /// dropping this future inside `select!` loses no byte.
    pub async fn data(&mut self) -> Result<Option<Bytes>, UpstreamError> {
        loop {
            if let Poll::Ready(result) = self.try_data() {
                return result;
            }
            let Some(conn) = self.conn.as_mut() else {
                // The decoder is not done and nothing can be read any more.
                return Err(self.fail(UpstreamError::ClosedEarly));
            };
            self.buf.reserve(READ_CHUNK);
            match conn.read_buf(&mut self.buf).await {
                Ok(0) => match self.decoder.on_eof() {
                    // RFC 9112 §6.3 rule 8: a close-delimited body ends here.
                    Ok(()) => self.conn = None,
                    // RFC 9112 §8: a length or chunked body cut short is
                    // incomplete, never passed on as complete.
                    Err(_) => return Err(self.fail(UpstreamError::ClosedEarly)),
                },
                Ok(_) => {}
                Err(e) => return Err(self.fail(UpstreamError::Io(e.to_string()))),
            }
        }
    }

    /// What [`data`](Self::data) would return from the bytes already read,
    /// without touching the socket: `Poll::Pending` when it would have to
    /// read. Lets a caller gather everything that is already here into one
    /// write without ever waiting for more.
    pub fn try_data(&mut self) -> Poll<Result<Option<Bytes>, UpstreamError>> {
        if let Some(error) = &self.failed {
            return Poll::Ready(Err(error.clone()));
        }
        loop {
            // Output a decompressor held back (a bounded call) comes first.
            if let Some(coding) = self.coding.as_mut().filter(|c| c.has_pending()) {
                match coding.push(Bytes::new()) {
                    Ok(out) if !out.is_empty() => return Poll::Ready(Ok(Some(out))),
                    Ok(_) => {}
                    Err(e) => return Poll::Ready(Err(self.fail(decode_error(e)))),
                }
            }
            if self.ended {
                return Poll::Ready(Ok(None));
            }
            match self.decoder.decode(&mut self.buf) {
                Ok(Some(Frame::Data(data))) => {
                    if self.decoder.is_done() {
                        // The last byte of a Content-Length body: free the
                        // connection without waiting for another call.
                        self.finish();
                    }
                    let Some(coding) = self.coding.as_mut() else {
                        return Poll::Ready(Ok(Some(data)));
                    };
                    match coding.push(data) {
                        Ok(out) if !out.is_empty() => return Poll::Ready(Ok(Some(out))),
                        // The decompressor wants more input.
                        Ok(_) => {}
                        Err(e) => return Poll::Ready(Err(self.fail(decode_error(e)))),
                    }
                }
                Ok(Some(Frame::End)) => {
                    self.finish();
                    self.ended = true;
                    if let Some(mut coding) = self.coding.take() {
                        match coding.finish() {
                            Ok(out) if !out.is_empty() => return Poll::Ready(Ok(Some(out))),
                            Ok(_) => {}
                            Err(e) => return Poll::Ready(Err(self.fail(decode_error(e)))),
                        }
                    }
                    return Poll::Ready(Ok(None));
                }
                Ok(None) => return Poll::Pending,
                Err(e) => return Poll::Ready(Err(self.fail(UpstreamError::Protocol(e)))),
            }
        }
    }

    /// The whole body, at most `max` bytes (else
    /// `Protocol(HttpError::BodyTooLarge)`), all of it within `deadline`
    /// (else `BodyTimeout`); on either error the connection is closed.
    /// One piece is returned as is; several are joined once.
    pub async fn collect(
        &mut self,
        max: usize,
        deadline: Duration,
    ) -> Result<Bytes, UpstreamError> {
        match tokio::time::timeout(deadline, self.collect_within(max)).await {
            Ok(result) => result,
            Err(_) => Err(self.fail(UpstreamError::BodyTimeout)),
        }
    }

    async fn collect_within(&mut self, max: usize) -> Result<Bytes, UpstreamError> {
        let too_large = UpstreamError::Protocol(HttpError::BodyTooLarge);
        if let http1::BodyFraming::Length(n) = self.head.framing() {
            if n > max as u64 {
                return Err(self.fail(too_large));
            }
        }
        let mut parts: Vec<Bytes> = Vec::new();
        let mut total = 0usize;
        while let Some(part) = self.data().await? {
            total = total.saturating_add(part.len());
            if total > max {
                return Err(self.fail(too_large));
            }
            parts.push(part);
        }
        Ok(match parts.len() {
            0 => Bytes::new(),
            1 => parts.swap_remove(0),
            _ => {
                let mut joined = BytesMut::with_capacity(total);
                for part in &parts {
                    joined.extend_from_slice(part);
                }
                joined.freeze()
            }
        })
    }

    /// The body is complete: check the connection in if it may be reused.
    fn finish(&mut self) {
        if let Some(conn) = self.conn.take() {
            // Bytes after the body would be read as the next response (a
            // server that pipelines answers we did not ask for is broken).
            if self.keep_alive && self.buf.is_empty() {
                self.upstream.pool.checkin(conn);
            }
        }
    }

    /// Ends the body with `error`; the connection is closed, never pooled.
    fn fail(&mut self, error: UpstreamError) -> UpstreamError {
        self.conn = None;
        self.buf.clear();
        self.failed = Some(error.clone());
        error
    }
}

impl fmt::Debug for UpstreamResponse {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpstreamResponse")
            .field("status", &self.head.status())
            .field("framing", &self.head.framing())
            .field("open", &self.conn.is_some())
            .finish_non_exhaustive()
    }
}

fn decode_error(e: std::io::Error) -> UpstreamError {
    UpstreamError::Decode(format!(
        "the upstream's compressed answer cannot be decoded: {e}"
    ))
}

/// Fuzzing entry point for what an upstream sends back: the first byte
/// picks a piece size (1..=256), the rest is the response as it came off
/// the socket. The head is parsed, the body de-framed and, when it names a
/// content-coding, decoded, as [`UpstreamResponse`] does it: none of it
/// may panic, and the body must not depend on where the bytes were split.
#[doc(hidden)]
pub fn fuzz_response(data: &[u8]) {
    let Some((&size, wire)) = data.split_first() else {
        return;
    };
    let whole = read_response(std::iter::once(wire));
    let split = read_response(wire.chunks(usize::from(size) + 1));
    assert_eq!(
        whole, split,
        "the body depends on where the input was split"
    );
}

/// The head's status and the decoded body (or that reading failed), read
/// from `pieces` as a connection delivers them.
fn read_response<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> Option<(u16, Vec<u8>)> {
    let limits = Limits {
        max_body_bytes: 1 << 20,
        ..Limits::default()
    };
    let mut pieces = pieces.into_iter();
    let mut buf = BytesMut::new();
    let head = loop {
        match http1::parse_response(&mut buf, &limits, false) {
            Ok(Some(head)) => break head,
            Ok(None) => buf.extend_from_slice(pieces.next()?),
            Err(_) => return None,
        }
    };
    let mut coding = head
        .header("content-encoding")
        .map_or(Ok(None), coding::ContentDecoder::for_encoding)
        .ok()?;
    let mut decoder = BodyDecoder::new(head.framing(), &limits);
    let mut raw = Vec::new();
    loop {
        match decoder.decode(&mut buf) {
            Ok(Some(Frame::Data(piece))) => raw.extend_from_slice(&piece),
            Ok(Some(Frame::End)) => break,
            Ok(None) => match pieces.next() {
                Some(piece) => buf.extend_from_slice(piece),
                None => {
                    decoder.on_eof().ok()?;
                    if matches!(decoder.decode(&mut buf), Ok(Some(Frame::End))) {
                        break;
                    }
                    return None;
                }
            },
            Err(_) => return None,
        }
    }
    // The coding sees the body in one piece here; its own piece-size
    // independence is covered by its tests.
    let body = match coding.as_mut() {
        None => raw,
        Some(c) => {
            let mut out = c.push(Bytes::from(raw)).ok()?.to_vec();
            while c.has_pending() {
                out.extend_from_slice(&c.push(Bytes::new()).ok()?);
                if out.len() > 1 << 24 {
                    return None;
                }
            }
            out.extend_from_slice(&c.finish().ok()?);
            out
        }
    };
    Some((head.status(), body))
}
