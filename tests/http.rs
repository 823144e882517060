//! The HTTP/1.1 server over real sockets: keep-alive, pipelining, body
//! framing, limits and malformed input. Each adversarial case ends by proving
//! the server still serves a normal request.

mod support;

use std::time::Duration;
use support::{TestGateway, CHAT_BODY};

const OPEN: &str = r#"{"providers":[{"id":"local","type":"mock","models":["mock-echo"]}]}"#;

/// The `OPEN` config with a `limits` object.
fn with_limits(limits: &str) -> String {
    format!(
        r#"{{"providers":[{{"id":"local","type":"mock","models":["mock-echo"]}}],"limits":{limits}}}"#
    )
}

fn chat_request(extra: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n{extra}Content-Length: {}\r\n\r\n{CHAT_BODY}",
        CHAT_BODY.len()
    )
}

fn chunked_request(pieces: &[&str]) -> String {
    let mut s = String::from(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n",
    );
    for p in pieces {
        s.push_str(&format!("{:x}\r\n{p}\r\n", p.len()));
    }
    s.push_str("0\r\n\r\n");
    s
}

async fn still_serves(gw: &TestGateway) {
    let r = gw.post_json("/v1/chat/completions", None, CHAT_BODY).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("Hello there!"));
}

#[tokio::test]
async fn keep_alive_serves_many_requests_on_one_connection() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    for _ in 0..5 {
        c.send(chat_request("").as_bytes()).await;
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 200);
        assert_eq!(r.header("access-control-allow-origin"), Some("*"));
        assert!(r.header("connection").is_none());
    }
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    let all = format!(
        "{}GET /health HTTP/1.1\r\nHost: x\r\n\r\n{}GET /nope HTTP/1.1\r\nHost: x\r\n\r\n",
        chat_request(""),
        chat_request("")
    );
    c.send(all.as_bytes()).await;
    let mut got = Vec::new();
    for _ in 0..4 {
        got.push(c.response().await.unwrap());
    }
    assert_eq!(
        got.iter().map(|r| r.status).collect::<Vec<_>>(),
        [200, 200, 200, 404]
    );
    assert_eq!(got[0].json()["object"], "chat.completion");
    assert_eq!(got[1].json()["status"], "running");
}

#[tokio::test]
async fn chunked_body_split_at_every_byte() {
    let gw = TestGateway::start(OPEN).await;
    let (a, b) = CHAT_BODY.split_at(20);
    let req = chunked_request(&[a, b]);
    let bytes = req.as_bytes();
    // Every two-way split of the whole request on one keep-alive connection.
    let mut c = gw.connect().await;
    for split in (1..bytes.len()).step_by(7) {
        c.send(&bytes[..split]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        c.send(&bytes[split..]).await;
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 200, "split at {split}");
        assert_eq!(r.json()["model"], "mock-echo");
    }
    // And byte by byte.
    let mut c = gw.connect().await;
    for byte in bytes {
        c.send(std::slice::from_ref(byte)).await;
    }
    assert_eq!(c.response().await.unwrap().status, 200);
}

#[tokio::test]
async fn expect_100_continue_gets_an_interim_answer() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    let req = chat_request("Expect: 100-continue\r\n");
    let (head, body) = req.split_at(req.find("\r\n\r\n").unwrap() + 4);
    c.send(head.as_bytes()).await;
    let mut interim = [0u8; 25];
    tokio::io::AsyncReadExt::read_exact(&mut c.stream, &mut interim)
        .await
        .unwrap();
    assert_eq!(&interim, b"HTTP/1.1 100 Continue\r\n\r\n");
    c.send(body.as_bytes()).await;
    assert_eq!(c.response().await.unwrap().status, 200);
}

#[tokio::test]
async fn http10_is_answered_then_closed() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    c.send(b"GET /health HTTP/1.0\r\n\r\n").await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed().await);
}

#[tokio::test]
async fn connection_close_is_honoured() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    c.send(chat_request("Connection: close\r\n").as_bytes())
        .await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(r.header("connection"), Some("close"));
    assert!(c.is_closed().await);
}

/// Malformed framing is answered 400 and the connection closed (docs/wire.md §4).
#[tokio::test]
async fn malformed_framing_is_400_and_close() {
    let gw = TestGateway::start(OPEN).await;
    let cases = [
        // CL + TE: request smuggling (RFC 9112 §6.1).
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // Duplicate Content-Length.
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nContent-Length: 5\r\n\r\nhello",
        // Malformed Content-Length.
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: +5\r\n\r\nhello",
        // Bad chunk size.
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n",
        // Transfer-Encoding not ending in chunked.
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: identity\r\n\r\n",
        // Transfer-Encoding on HTTP/1.0.
        "POST /v1/chat/completions HTTP/1.0\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        // A bad header line.
        "GET /health HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n",
        // Not HTTP at all.
        "HELLO\r\n\r\n",
    ];
    for raw in cases {
        let mut c = gw.connect().await;
        c.send(raw.as_bytes()).await;
        let r = c
            .response()
            .await
            .unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(r.status, 400, "{raw:?}: {}", r.text());
        assert!(r.json()["error"]["message"].is_string());
        assert_eq!(r.header("connection"), Some("close"), "{raw:?}");
        assert!(c.is_closed().await, "{raw:?}");
    }
    still_serves(&gw).await;
}

/// RFC 9112 §3.2: an HTTP/1.1 request without Host, with two, or with an
/// invalid one is 400 and closed; then the server still serves.
#[tokio::test]
async fn host_rules_of_rfc_9112_are_enforced() {
    let gw = TestGateway::start(OPEN).await;
    let body = format!(
        "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{CHAT_BODY}",
        CHAT_BODY.len()
    );
    for host in [
        "",
        "Host: evil.example/../admin\r\n",
        "Host: a\r\nHost: b\r\n",
        "Host: a b\r\n",
    ] {
        let raw = format!("POST /v1/chat/completions HTTP/1.1\r\n{host}{body}");
        let mut c = gw.connect().await;
        c.send(raw.as_bytes()).await;
        let r = c
            .response()
            .await
            .unwrap_or_else(|| panic!("no answer to {raw:?}"));
        assert_eq!(r.status, 400, "{raw:?}: {}", r.text());
        assert!(
            r.json()["error"]["message"]
                .as_str()
                .unwrap()
                .contains("host"),
            "{}",
            r.text()
        );
        assert!(c.is_closed().await, "{raw:?}");
    }
    still_serves(&gw).await;
}

/// RFC 9112 §3.2.2: the absolute-form is accepted and served as its path by
/// the gateway itself, whatever host it names (never proxied there).
#[tokio::test]
async fn absolute_form_targets_are_served_as_their_path() {
    let gw = TestGateway::start(OPEN).await;
    for target in [
        "http://gw/v1/chat/completions",
        "HTTP://elsewhere.example:9/v1/chat/completions?x=1",
    ] {
        let raw = chat_request("").replacen("/v1/chat/completions", target, 1);
        let mut c = gw.connect().await;
        c.send(raw.as_bytes()).await;
        let r = c.response().await.unwrap();
        assert_eq!(r.status, 200, "{target}: {}", r.text());
        assert_eq!(r.json()["model"], "mock-echo");
    }
    let mut c = gw.connect().await;
    c.send(b"GET http://gw/health HTTP/1.1\r\nHost: gw\r\n\r\n")
        .await;
    let r = c.response().await.unwrap();
    assert_eq!(
        (r.status, r.json()["status"].as_str()),
        (200, Some("running"))
    );
    still_serves(&gw).await;
}

#[tokio::test]
async fn limits_have_their_status_codes() {
    let gw = TestGateway::start(&with_limits(
        r#"{"maxBodyBytes":1000,"maxUriBytes":100,"maxHeadBytes":2000,"maxHeaders":10}"#,
    ))
    .await;
    // Body over the limit, announced by Content-Length.
    let r = gw
        .request("POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n")
        .await;
    assert_eq!(r.status, 413);
    // Body over the limit, chunked.
    let big = "x".repeat(900);
    let r = gw.request(&chunked_request(&[&big, &big])).await;
    assert_eq!(r.status, 413);
    // URI over the limit.
    let r = gw.get(&format!("/health?{}", "a".repeat(200))).await;
    assert_eq!(r.status, 414);
    // Header section over the limit.
    let r = gw
        .request(&format!(
            "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
            "b".repeat(3000)
        ))
        .await;
    assert_eq!(r.status, 431);
    // Too many headers.
    let many: String = (0..20).map(|i| format!("X-H{i}: v\r\n")).collect();
    let r = gw
        .request(&format!("GET /health HTTP/1.1\r\nHost: x\r\n{many}\r\n"))
        .await;
    assert_eq!(r.status, 431);
    still_serves(&gw).await;
}

#[tokio::test]
async fn slow_headers_are_cut_off_with_408() {
    let gw = TestGateway::start(&with_limits(r#"{"headerReadTimeout":300}"#)).await;
    let mut c = gw.connect().await;
    c.send(b"GET /health HTTP/1.1\r\nHo").await;
    let r = c.response().await.unwrap();
    assert_eq!(r.status, 408);
    assert!(c.is_closed().await);
    still_serves(&gw).await;
}

#[tokio::test]
async fn idle_keep_alive_connections_are_closed() {
    let gw = TestGateway::start(&with_limits(r#"{"keepAliveTimeout":200}"#)).await;
    let mut c = gw.connect().await;
    c.send(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n").await;
    assert_eq!(c.response().await.unwrap().status, 200);
    let start = std::time::Instant::now();
    assert!(c.is_closed().await);
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_client_closing_mid_request_does_not_hurt() {
    let gw = TestGateway::start(OPEN).await;
    for cut in [10, 60, 120] {
        let mut c = gw.connect().await;
        let req = chat_request("");
        c.send(&req.as_bytes()[..cut]).await;
        drop(c);
    }
    still_serves(&gw).await;
}

#[tokio::test]
async fn head_requests_get_headers_only() {
    let gw = TestGateway::start(OPEN).await;
    let mut c = gw.connect().await;
    c.send(b"HEAD /health HTTP/1.1\r\nHost: x\r\n\r\nGET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .await;
    let r = c.response_to(true).await.unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.header("content-length")
            .unwrap()
            .parse::<usize>()
            .unwrap()
            > 0
    );
    let r = c.response().await.unwrap();
    assert_eq!(r.json()["status"], "running");
}

/// A client that stops reading its answer is cut off after `sendTimeout`.
#[tokio::test]
async fn a_client_that_stops_reading_is_cut_off() {
    // More than the server's largest send buffer (4 MiB here) can hold.
    let text = "a".repeat(16 << 20);
    let gw = TestGateway::start(&format!(
        r#"{{"providers":[{{"id":"m","type":"mock","models":["big"],"text":"{text}"}},
                          {{"id":"local","type":"mock","models":["mock-echo"]}}],
            "limits":{{"sendTimeout":300}}}}"#
    ))
    .await;
    let mut c = support::Client::with_small_receive_buffer(gw.addr, 64 << 10).await;
    let body = r#"{"model":"big","messages":[{"role":"user","content":"x"}]}"#;
    c.send(support::post_request("/v1/chat/completions", "", body).as_bytes())
        .await;
    // Not reading: the gateway's write stalls, then times out.
    let start = std::time::Instant::now();
    loop {
        let s = gw.get("/stats").await.json();
        if s["failedRequests"] == 1 {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "still writing: {s}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let mut total = 0usize;
    let mut tmp = vec![0u8; 1 << 16];
    loop {
        match tokio::io::AsyncReadExt::read(&mut c.stream, &mut tmp).await {
            Ok(0) | Err(_) => break,
            Ok(n) => total += n,
        }
    }
    assert!(
        total < text.len(),
        "the whole answer arrived: {total} bytes"
    );
    still_serves(&gw).await;
}
