//! Client tests against a tiny mock server on raw tokio sockets.
//!
//! The mock reads each request with the crate's own parser, reports it
//! (head bytes exactly as received, decoded body, connection number) and
//! answers from a script shared by all its connections, so a test can
//! assert both what went on the wire and how many connections were opened.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_rustls::TlsAcceptor;

use super::*;
use crate::http1::{parse_request, BodyDecoder, Frame, HttpError, Limits};

const SHORT: Duration = Duration::from_millis(200);
/// A body deadline no test reaches.
const LONG: Duration = Duration::from_secs(10);
const OK_BODY: &[u8] = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok";

/// What the mock does after writing a reply.
#[derive(Clone, Copy, Debug)]
enum After {
    /// Wait for the next request on the same connection.
    KeepOpen,
    /// Close the connection.
    Close,
    /// Keep the connection open and never read or write again.
    Hang,
}

/// One scripted answer: pieces written `pause` apart, then `after`.
struct Step {
    pieces: Vec<Vec<u8>>,
    pause: Duration,
    after: After,
}

fn reply(bytes: &[u8], after: After) -> Step {
    Step {
        pieces: vec![bytes.to_vec()],
        pause: Duration::ZERO,
        after,
    }
}

/// A request as the mock saw it.
#[derive(Debug)]
struct Seen {
    head: String,
    body: Vec<u8>,
    conn: usize,
}

struct Mock {
    addr: SocketAddr,
    accepts: Arc<AtomicUsize>,
    seen: mpsc::UnboundedReceiver<Seen>,
}

impl Mock {
    async fn start(steps: Vec<Step>, tls: Option<TlsAcceptor>) -> Mock {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("local addr");
        let accepts = Arc::new(AtomicUsize::new(0));
        let steps = Arc::new(Mutex::new(VecDeque::from(steps)));
        let (tx, seen) = mpsc::unbounded_channel();
        let counter = Arc::clone(&accepts);
        tokio::spawn(async move {
            while let Ok((tcp, _)) = listener.accept().await {
                let conn = counter.fetch_add(1, Ordering::SeqCst) + 1;
                let (steps, tx, tls) = (Arc::clone(&steps), tx.clone(), tls.clone());
                tokio::spawn(async move {
                    match tls {
                        None => serve(tcp, conn, steps, tx).await,
                        Some(acceptor) => {
                            if let Ok(stream) = acceptor.accept(tcp).await {
                                serve(stream, conn, steps, tx).await;
                            }
                        }
                    }
                });
            }
        });
        Mock {
            addr,
            accepts,
            seen,
        }
    }

    async fn plain(steps: Vec<Step>) -> Mock {
        Mock::start(steps, None).await
    }

    fn accepts(&self) -> usize {
        self.accepts.load(Ordering::SeqCst)
    }

    async fn next_request(&mut self) -> Seen {
        tokio::time::timeout(Duration::from_secs(1), self.seen.recv())
            .await
            .expect("the mock received a request in time")
            .expect("mock running")
    }

    fn upstream(&self, cfg: UpstreamConfig) -> Upstream {
        Upstream::new(false, "127.0.0.1", self.addr.port(), "/v1", None, cfg)
            .expect("valid upstream")
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    conn: usize,
    steps: Arc<Mutex<VecDeque<Step>>>,
    tx: mpsc::UnboundedSender<Seen>,
) {
    let limits = Limits::default();
    let mut buf = BytesMut::new();
    loop {
        let head = loop {
            match parse_request(&mut buf, &limits) {
                Ok(Some(head)) => break head,
                Ok(None) => {}
                Err(_) => return,
            }
            if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                return;
            }
        };
        let mut decoder = BodyDecoder::new(head.framing(), &limits);
        let mut body = Vec::new();
        loop {
            match decoder.decode(&mut buf) {
                Ok(Some(Frame::Data(d))) => body.extend_from_slice(&d),
                Ok(Some(Frame::End)) => break,
                Ok(None) => {
                    if !matches!(stream.read_buf(&mut buf).await, Ok(n) if n > 0) {
                        return;
                    }
                }
                Err(_) => return,
            }
        }
        let head = String::from_utf8_lossy(head.as_bytes()).into_owned();
        let _ = tx.send(Seen { head, body, conn });
        let step = steps.lock().expect("script lock").pop_front();
        let Some(step) = step else { return };
        for (i, piece) in step.pieces.iter().enumerate() {
            if i > 0 {
                tokio::time::sleep(step.pause).await;
            }
            if stream.write_all(piece).await.is_err() || stream.flush().await.is_err() {
                return;
            }
        }
        match step.after {
            After::KeepOpen => {}
            After::Close => return,
            After::Hang => std::future::pending::<()>().await,
        }
    }
}

fn cfg() -> UpstreamConfig {
    UpstreamConfig {
        connect_timeout: SHORT,
        ..UpstreamConfig::default()
    }
}

fn get(path: &str) -> UpstreamRequest<'_> {
    UpstreamRequest {
        method: "GET",
        path,
        authorization: None,
        account_fields: b"",
        forward: None,
        content_type: None,
        body: &[],
        first_byte_timeout: Duration::from_secs(1),
    }
}

async fn get_body(up: &Upstream) -> Result<Bytes, UpstreamError> {
    up.send(get("/models")).await?.collect(1 << 20, LONG).await
}

#[tokio::test]
async fn request_is_written_as_specified() {
    let mut mock = Mock::plain(vec![reply(OK_BODY, After::KeepOpen)]).await;
    let up = mock.upstream(cfg());
    let mut raw = BytesMut::from(
        &b"POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\n\
           Authorization: Bearer sk-client\r\nX-API-Key: sk-client\r\nCookie: s=1\r\n\
           Content-Type: application/json\r\nContent-Length: 0\r\n\
           Connection: keep-alive, X-Hop\r\nKeep-Alive: timeout=5\r\nTE: trailers\r\n\
           Accept-Encoding: gzip, br\r\nX-Hop: secret\r\n\
           User-Agent: test/1.0\r\nOpenAI-Beta: assistants=v2\r\n\
           OpenAI-Organization: org-client\r\nOpenAI-Project: proj-client\r\n\r\n"[..],
    );
    let client = parse_request(&mut raw, &Limits::default())
        .expect("valid")
        .expect("complete");
    let body = [
        Bytes::from_static(b"{\"model\":"),
        Bytes::new(),
        Bytes::from_static(b"\"up\",\"messages\":[]"),
        Bytes::from_static(b"}"),
    ];
    let response = up
        .send(UpstreamRequest {
            method: "POST",
            path: "/chat/completions",
            authorization: Some(b"Bearer sk-upstream"),
            account_fields: b"OpenAI-Organization: org-account\r\n",
            forward: Some(&client),
            content_type: None,
            body: &body,
            first_byte_timeout: Duration::from_secs(1),
        })
        .await
        .expect("response");
    assert_eq!(response.status(), 200);
    let seen = mock.next_request().await;
    let port = mock.addr.port();
    assert_eq!(
        seen.head,
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\n\
             Host: 127.0.0.1:{port}\r\n\
             Authorization: Bearer sk-upstream\r\n\
             OpenAI-Organization: org-account\r\n\
             Content-Type: application/json\r\n\
             Content-Length: 28\r\n\
             Accept-Encoding: identity\r\n\
             User-Agent: test/1.0\r\n\
             OpenAI-Beta: assistants=v2\r\n\r\n"
        )
    );
    assert_eq!(seen.body, b"{\"model\":\"up\",\"messages\":[]}");
}

#[tokio::test]
async fn get_without_body_has_no_content_headers() {
    let mut mock = Mock::plain(vec![reply(OK_BODY, After::KeepOpen)]).await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    let seen = mock.next_request().await;
    let port = mock.addr.port();
    assert_eq!(
        seen.head,
        format!("GET /v1/models HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nAccept-Encoding: identity\r\n\r\n")
    );
}

#[tokio::test]
async fn content_length_response_is_read_and_pooled() {
    let mock = Mock::plain(vec![reply(
        b"HTTP/1.1 201 Created\r\nX-Request-Id: r1\r\nContent-Length: 11\r\n\r\nhello world",
        After::KeepOpen,
    )])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("response");
    assert_eq!(response.status(), 201);
    assert_eq!(response.head().header("x-request-id"), Some(&b"r1"[..]));
    assert_eq!(
        response.collect(100, LONG).await.expect("body"),
        "hello world"
    );
    assert_eq!(response.data().await, Ok(None));
    assert_eq!(up.idle_connections(), 1);
}

#[tokio::test]
async fn chunked_response_is_decoded_and_pooled() {
    let mock = Mock::plain(vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-Trailer: t\r\n\r\n",
        After::KeepOpen,
    )])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("response");
    let mut body = Vec::new();
    while let Some(piece) = response.data().await.expect("piece") {
        body.extend_from_slice(&piece);
    }
    assert_eq!(body, b"hello world");
    assert_eq!(up.idle_connections(), 1);
}

#[tokio::test]
async fn close_delimited_response_ends_at_eof_and_is_not_pooled() {
    let mock = Mock::plain(vec![
        reply(b"HTTP/1.1 200 OK\r\n\r\nuntil the end", After::Close),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "until the end");
    assert_eq!(up.idle_connections(), 0);
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn connection_close_response_is_not_pooled() {
    let mock = Mock::plain(vec![
        reply(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok",
            After::KeepOpen,
        ),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(up.idle_connections(), 0);
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn sequential_requests_reuse_one_connection() {
    let mut mock = Mock::plain(vec![
        reply(OK_BODY, After::KeepOpen),
        reply(OK_BODY, After::KeepOpen),
        reply(b"HTTP/1.1 204 No Content\r\n\r\n", After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    for _ in 0..2 {
        assert_eq!(get_body(&up).await.expect("body"), "ok");
    }
    // A body-less response frees its connection without a read.
    let response = up.send(get("/x")).await.expect("response");
    assert_eq!(response.status(), 204);
    assert_eq!(up.idle_connections(), 1);
    assert_eq!(mock.accepts(), 1);
    assert_eq!(up.connections_opened(), 1);
    for _ in 0..3 {
        assert_eq!(mock.next_request().await.conn, 1);
    }
}

#[tokio::test]
async fn interim_responses_are_skipped() {
    let mock = Mock::plain(vec![reply(
        b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 103 Early Hints\r\nLink: </a>\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
        After::KeepOpen,
    )])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("response");
    assert_eq!(response.status(), 200);
    assert_eq!(response.collect(10, LONG).await.expect("body"), "ok");
}

#[tokio::test]
async fn response_dropped_mid_body_closes_its_connection() {
    let mock = Mock::plain(vec![
        reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly ten b",
            After::KeepOpen,
        ),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("response");
    assert_eq!(
        response.data().await.expect("piece"),
        Some(Bytes::from_static(b"only ten b"))
    );
    drop(response);
    assert_eq!(up.idle_connections(), 0);
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn idle_connection_closed_by_server_is_replaced() {
    let mock = Mock::plain(vec![
        reply(OK_BODY, After::Close),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(up.idle_connections(), 1);
    // Let the FIN reach us, as it would during a real idle period.
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn reused_connection_closed_before_the_head_is_retried_once() {
    let mut mock = Mock::plain(vec![
        reply(OK_BODY, After::KeepOpen),
        // Reads the second request, then closes without a byte: the
        // keep-alive race as the client sees it.
        reply(b"", After::Close),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(get_body(&up).await.expect("retried body"), "ok");
    assert_eq!(mock.accepts(), 2);
    let mut conns = Vec::new();
    for _ in 0..3 {
        conns.push(mock.next_request().await.conn);
    }
    // The second request went out twice: on the stale connection, then on
    // a fresh one.
    assert_eq!(conns, [1, 1, 2]);
}

#[tokio::test]
async fn fresh_connection_is_never_retried() {
    let mut mock = Mock::plain(vec![
        reply(b"", After::Close),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await, Err(UpstreamError::ClosedEarly));
    mock.next_request().await;
    assert_eq!(mock.accepts(), 1);
    assert_eq!(up.connections_opened(), 1);
}

#[tokio::test]
async fn reused_connection_is_not_retried_after_response_bytes() {
    let mock = Mock::plain(vec![
        reply(OK_BODY, After::KeepOpen),
        reply(b"HTTP/1.1 200 OK\r\nContent-", After::Close),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(get_body(&up).await, Err(UpstreamError::ClosedEarly));
    assert_eq!(mock.accepts(), 1);
}

#[tokio::test]
async fn refused_connection_is_a_connect_error() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let port = listener.local_addr().expect("addr").port();
    drop(listener);
    let up = Upstream::new(false, "127.0.0.1", port, "/v1", None, cfg()).expect("valid");
    match get_body(&up).await {
        Err(UpstreamError::Connect(msg)) => assert!(msg.contains("127.0.0.1"), "{msg}"),
        other => panic!("expected Connect, got {other:?}"),
    }
}

#[tokio::test]
async fn silent_upstream_is_a_first_byte_timeout() {
    let mock = Mock::plain(vec![reply(b"", After::Hang)]).await;
    let up = mock.upstream(cfg());
    let started = tokio::time::Instant::now();
    let err = up
        .send(UpstreamRequest {
            first_byte_timeout: SHORT,
            ..get("/x")
        })
        .await
        .expect_err("no answer");
    assert_eq!(err, UpstreamError::FirstByteTimeout);
    assert!(err.is_timeout());
    assert!(started.elapsed() < Duration::from_secs(1));
    assert_eq!(up.idle_connections(), 0);
}

#[tokio::test]
async fn conflicting_framing_is_a_protocol_error_and_not_pooled() {
    let mock = Mock::plain(vec![
        reply(
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            After::KeepOpen,
        ),
        reply(OK_BODY, After::KeepOpen),
    ])
    .await;
    let up = mock.upstream(cfg());
    match up.send(get("/x")).await {
        Err(UpstreamError::Protocol(HttpError::Malformed(_))) => {}
        other => panic!("expected Protocol(Malformed), got {other:?}"),
    }
    assert_eq!(up.idle_connections(), 0);
    // The upstream still serves on a new connection.
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn bad_chunk_mid_body_is_a_protocol_error() {
    let mock = Mock::plain(vec![reply(
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\nzz\r\n",
        After::KeepOpen,
    )])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("head is fine");
    assert_eq!(response.data().await, Ok(Some(Bytes::from_static(b"ok"))));
    assert!(matches!(
        response.data().await,
        Err(UpstreamError::Protocol(_))
    ));
    // The error sticks; the connection is gone.
    assert!(matches!(
        response.data().await,
        Err(UpstreamError::Protocol(_))
    ));
    assert_eq!(up.idle_connections(), 0);
}

#[tokio::test]
async fn body_cut_short_is_closed_early() {
    let mock = Mock::plain(vec![reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc",
        After::Close,
    )])
    .await;
    let up = mock.upstream(cfg());
    assert_eq!(get_body(&up).await, Err(UpstreamError::ClosedEarly));
}

#[tokio::test]
async fn collect_refuses_a_body_over_its_maximum() {
    let mock = Mock::plain(vec![
        reply(b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello", After::KeepOpen),
        reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n",
            After::KeepOpen,
        ),
    ])
    .await;
    let up = mock.upstream(cfg());
    let too_large = Err(UpstreamError::Protocol(HttpError::BodyTooLarge));
    assert_eq!(
        up.send(get("/x")).await.expect("r").collect(4, LONG).await,
        too_large
    );
    assert_eq!(
        up.send(get("/x")).await.expect("r").collect(5, LONG).await,
        too_large
    );
    assert_eq!(up.idle_connections(), 0);
}

#[tokio::test]
async fn data_is_cancel_safe_under_select() {
    let mock = Mock::plain(vec![Step {
        pieces: vec![
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n".to_vec(),
            b"6\r\nevent1\r\n".to_vec(),
            b"6\r\nevent2\r\n0\r\n\r\n".to_vec(),
        ],
        pause: Duration::from_millis(40),
        after: After::KeepOpen,
    }])
    .await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("response");
    let mut body = Vec::new();
    let mut timer_fired = 0;
    loop {
        tokio::select! {
            piece = response.data() => match piece.expect("piece") {
                Some(piece) => body.extend_from_slice(&piece),
                None => break,
            },
            _ = tokio::time::sleep(Duration::from_millis(5)) => timer_fired += 1,
        }
    }
    assert_eq!(body, b"event1event2");
    assert!(timer_fired > 0, "the read was never cancelled");
    assert_eq!(up.idle_connections(), 1);
}

#[tokio::test]
async fn invalid_path_is_refused_before_connecting() {
    let up = Upstream::new(false, "127.0.0.1", 9, "/v1", None, cfg()).expect("valid");
    let err = up.send(get("/a b")).await.expect_err("space in path");
    assert!(matches!(
        err,
        UpstreamError::Protocol(HttpError::Malformed(_))
    ));
    assert_eq!(up.connections_opened(), 0);
    assert!(Upstream::new(false, "bad host", 80, "/v1", None, cfg()).is_err());
    assert!(Upstream::new(false, "", 80, "/v1", None, cfg()).is_err());
}

/// A self-signed certificate for `localhost` and `127.0.0.1`, its PEM in a
/// unique temp file, and a TLS acceptor serving it.
fn tls_fixture() -> (TlsAcceptor, PathBuf) {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let rcgen::CertifiedKey { cert, key_pair } =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])
            .expect("certificate");
    let path = std::env::temp_dir().join(format!(
        "chat2api-upstream-ca-{}-{}.pem",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::SeqCst)
    ));
    std::fs::write(&path, cert.pem()).expect("write PEM");
    let key = rustls_pki_types::PrivateKeyDer::Pkcs8(key_pair.serialize_der().into());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("protocol versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], key)
        .expect("server config");
    (TlsAcceptor::from(Arc::new(config)), path)
}

#[tokio::test]
async fn tls_with_private_ca_succeeds_and_pools() {
    let (acceptor, ca) = tls_fixture();
    let mut mock = Mock::start(
        vec![
            reply(OK_BODY, After::KeepOpen),
            reply(OK_BODY, After::KeepOpen),
        ],
        Some(acceptor),
    )
    .await;
    let up = Upstream::new(true, "localhost", mock.addr.port(), "/v1", Some(&ca), cfg())
        .expect("valid upstream");
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 1);
    let port = mock.addr.port();
    assert!(mock
        .next_request()
        .await
        .head
        .contains(&format!("\r\nHost: localhost:{port}\r\n")));
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn tls_to_an_ip_address_verifies_the_ip_san() {
    let (acceptor, ca) = tls_fixture();
    let mock = Mock::start(vec![reply(OK_BODY, After::KeepOpen)], Some(acceptor)).await;
    let up = Upstream::new(true, "127.0.0.1", mock.addr.port(), "", Some(&ca), cfg())
        .expect("valid upstream");
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    let _ = std::fs::remove_file(ca);
}

#[tokio::test]
async fn tls_without_the_private_ca_fails_the_handshake() {
    let (acceptor, ca) = tls_fixture();
    let _ = std::fs::remove_file(ca);
    let mock = Mock::start(vec![reply(OK_BODY, After::KeepOpen)], Some(acceptor)).await;
    let up = Upstream::new(true, "localhost", mock.addr.port(), "/v1", None, cfg())
        .expect("valid upstream");
    match get_body(&up).await {
        Err(UpstreamError::Tls(msg)) => assert!(!msg.is_empty()),
        other => panic!("expected Tls, got {other:?}"),
    }
}

#[test]
fn request_debug_redacts_the_key() {
    let request = UpstreamRequest {
        authorization: Some(b"Bearer sk-secret"),
        ..get("/x")
    };
    let shown = format!("{request:?}");
    assert!(!shown.contains("sk-secret"), "{shown}");
    assert!(shown.contains("<redacted>"), "{shown}");
}

#[tokio::test]
async fn idle_probe_sees_eof_and_stray_bytes() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut pairs = Vec::new();
    for _ in 0..3 {
        let client = tokio::net::TcpStream::connect(addr).await.expect("connect");
        let (server, _) = listener.accept().await.expect("accept");
        pairs.push((Stream::plain(client, None), server));
    }
    let (quiet, _quiet_server) = pairs.remove(0);
    let (closed, closed_server) = pairs.remove(0);
    let (chatty, mut chatty_server) = pairs.remove(0);
    drop(closed_server);
    chatty_server
        .write_all(b"HTTP/1.1 200")
        .await
        .expect("write");
    tokio::time::sleep(Duration::from_millis(50)).await;
    assert!(quiet.is_idle_healthy());
    assert!(!closed.is_idle_healthy());
    assert!(!chatty.is_idle_healthy());
}

/// Pools are sharded by worker and a worker never borrows another's
/// connection (a socket belongs to the runtime that opened it): two
/// workers, each a thread with its own runtime as `crate::server` runs
/// them, make three requests each over one connection each.
#[test]
fn reuse_is_per_worker() {
    let steps = (0..6).map(|_| reply(OK_BODY, After::KeepOpen)).collect();
    // The mock serves from a runtime thread of its own.
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let mock = runtime.block_on(Mock::plain(steps));
    let up = Arc::new(mock.upstream(cfg()));
    let workers: Vec<_> = (0..2)
        .map(|index| {
            let up = Arc::clone(&up);
            std::thread::spawn(move || {
                pool::set_thread_shard(index);
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("runtime");
                for _ in 0..3 {
                    assert_eq!(rt.block_on(get_body(&up)).expect("body"), "ok");
                }
                // The worker's connection must not outlive its runtime.
                drop(up);
            })
        })
        .collect();
    for w in workers {
        w.join().expect("worker ran");
    }
    assert_eq!(mock.accepts(), 2);
}

#[tokio::test]
async fn a_body_that_stalls_misses_its_deadline_and_the_connection_is_dropped() {
    let stalled = reply(
        b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n{\"id\":",
        After::Hang,
    );
    let mock = Mock::plain(vec![stalled, reply(OK_BODY, After::KeepOpen)]).await;
    let up = mock.upstream(cfg());
    let mut response = up.send(get("/x")).await.expect("head arrives");
    let started = std::time::Instant::now();
    assert_eq!(
        response.collect(1 << 20, SHORT).await,
        Err(UpstreamError::BodyTimeout)
    );
    assert!(started.elapsed() < SHORT * 5, "{:?}", started.elapsed());
    assert!(UpstreamError::BodyTimeout.is_timeout());
    assert_eq!(up.idle_connections(), 0);
    // The next request gets a connection of its own and its answer.
    assert_eq!(get_body(&up).await.expect("body"), "ok");
    assert_eq!(mock.accepts(), 2);
}

#[test]
fn response_fuzz_seeds_replay() {
    let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/upstream_response");
    for entry in std::fs::read_dir(dir).expect("seed corpus") {
        fuzz_response(&std::fs::read(entry.expect("entry").path()).expect("seed"));
    }
}
