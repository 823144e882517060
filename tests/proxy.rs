//! Forwarding to an OpenAI-compatible upstream (docs/wire.md §2–4), against a mock
//! upstream on raw sockets whose every byte the test scripts.

mod support;

use std::sync::atomic::Ordering::SeqCst;
use std::time::{Duration, Instant};
use support::upstream::{
    chat_answer, chunk, chunked, json_answer, send, sse_event, MockUpstream, Step, SSE_HEAD,
    SSE_HEAD_CLOSE,
};
use support::TestGateway;

fn config(base_url: &str, extra: &str) -> String {
    config_with(base_url, 1, extra)
}

fn config_with(base_url: &str, retries: u32, extra: &str) -> String {
    format!(
        r#"{{
  "apiKeys": ["sk-client"],
  "requestTimeout": 1000,
  "retryCount": {retries},
  "providers": [{{
    "id": "up", "type": "openai", "baseUrl": "{base_url}",
    "accounts": [{{"id": "a", "apiKey": "sk-upstream-a"}}],
    "models": {{"DeepSeek-V3.2": "deepseek-chat", "other": "other-up"}}
  }}]{extra}
}}"#
    )
}

const STREAM_BODY: &str = r#"{"model":"DeepSeek-V3.2","messages":[{"role":"user","content":"Hi"}],"stream":true,"tools":[{"type":"function","function":{"name":"f","parameters":{}}}]}"#;
/// A chat request with the client key, as raw bytes for a raw connection.
fn chat_request(body: &str) -> String {
    format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-client\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

const PLAIN_BODY: &str = r#"{"model":"DeepSeek-V3.2","messages":[{"role":"user","content":"Hi"}],"temperature":0.5,"response_format":{"type":"json_object"}}"#;

/// A chat answer after `delay`, as a busy upstream gives it.
fn answer_after(delay: Duration) -> Vec<Step> {
    let mut steps = vec![Step::Sleep(delay)];
    steps.extend(json_answer(&chat_answer("deepseek-chat", "x")));
    steps
}

#[tokio::test]
async fn plain_request_is_rewritten_both_ways() {
    let up = MockUpstream::start(|_| json_answer(&chat_answer("deepseek-chat", "hey"))).await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let r = gw
        .request(&format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer sk-client\r\nX-API-Key: sk-client\r\nCookie: c=1\r\nConnection: keep-alive, X-Secret\r\nX-Secret: s\r\nKeep-Alive: timeout=5\r\nOpenAI-Organization: org-1\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{PLAIN_BODY}",
            PLAIN_BODY.len()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "DeepSeek-V3.2");
    assert_eq!(v["choices"][0]["message"]["content"], "hey");

    let seen = up.last();
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.header("authorization"), Some("Bearer sk-upstream-a"));
    assert_eq!(seen.header("host"), Some(up.addr.to_string().as_str()));
    for gone in [
        "x-api-key",
        "cookie",
        "x-secret",
        "keep-alive",
        "connection",
    ] {
        assert!(
            seen.header(gone).is_none()
                || gone == "connection" && seen.header(gone) != Some("keep-alive, X-Secret"),
            "{gone} was forwarded"
        );
    }
    // Whose account is charged is the account's business (docs/wire.md §2).
    assert_eq!(seen.header("openai-organization"), None);
    assert_eq!(seen.header("accept-encoding"), Some("identity"));
    assert_eq!(
        seen.header("content-length"),
        Some(seen.body.len().to_string().as_str())
    );
    let body = seen.json();
    assert_eq!(body["model"], "deepseek-chat");
    assert_eq!(body["temperature"], 0.5);
    assert_eq!(body["response_format"]["type"], "json_object");
    // Everything but the model passes through byte for byte.
    let expected = PLAIN_BODY.replace("\"DeepSeek-V3.2\"", "\"deepseek-chat\"");
    assert_eq!(String::from_utf8(seen.body.clone()).unwrap(), expected);

    let s = gw.settled_stats().await;
    assert_eq!(s["tokens"]["prompt"], 3);
    assert_eq!(s["accountUsage"]["up/a"], 1);
}

#[tokio::test]
async fn stream_events_are_reframed_with_the_alias() {
    let up = MockUpstream::start(|_| {
        let mut s = String::from(SSE_HEAD);
        for w in ["Hel", "lo", "!"] {
            s.push_str(&sse_event(w));
        }
        s.push_str(&chunked(": comment\n\ndata: [DONE]\n\n"));
        s.push_str("0\r\n\r\n");
        vec![send(s)]
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    let events = r.events();
    assert_eq!(events.len(), 4, "{events:?}");
    for (e, w) in events.iter().zip(["Hel", "lo", "!"]) {
        assert_eq!(e, &chunk("DeepSeek-V3.2", w));
    }
    assert_eq!(events[3], "[DONE]");
    // The tools passed through untouched.
    assert_eq!(up.last().json()["tools"][0]["function"]["name"], "f");
}

/// Any framing and any cut of the upstream's events gives the same events.
#[tokio::test]
async fn events_cut_anywhere_with_any_line_ending() {
    for eol in ["\n", "\r\n", "\r"] {
        let payloads: Vec<String> = ["a", "b c", "d"]
            .iter()
            .map(|w| chunk("deepseek-chat", w))
            .collect();
        let mut body = String::from(":hi");
        body.push_str(eol);
        body.push_str(eol);
        for p in &payloads {
            body.push_str(&format!("data: {p}{eol}{eol}"));
        }
        body.push_str(&format!("data: [DONE]{eol}{eol}"));
        let step = 1 + body.len() / 40;
        let pieces: Vec<String> = body
            .as_bytes()
            .chunks(step)
            .map(|c| String::from_utf8(c.to_vec()).unwrap())
            .collect();
        let up = MockUpstream::start(move |_| {
            let mut steps = vec![send(SSE_HEAD)];
            for p in &pieces {
                steps.push(send(chunked(p)));
                steps.push(Step::Sleep(Duration::from_millis(1)));
            }
            steps.push(send("0\r\n\r\n"));
            steps
        })
        .await;
        let gw = TestGateway::start(&config(&up.base_url(), "")).await;
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
            .await;
        let events = r.events();
        let expected: Vec<String> = ["a", "b c", "d"]
            .iter()
            .map(|w| chunk("DeepSeek-V3.2", w))
            .chain(["[DONE]".to_owned()])
            .collect();
        assert_eq!(events, expected, "eol {eol:?}");
    }
}

#[tokio::test]
async fn close_delimited_stream_without_done_still_ends_with_done() {
    let up = MockUpstream::start(|_| {
        vec![
            send(format!(
                "{SSE_HEAD_CLOSE}data: {}\n\n",
                chunk("deepseek-chat", "x")
            )),
            Step::Close,
        ]
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
        .await;
    assert_eq!(
        r.events(),
        vec![chunk("DeepSeek-V3.2", "x"), "[DONE]".to_owned()]
    );
    let s = gw.settled_stats().await;
    assert_eq!(s["successRequests"], 1, "{s}");
}

#[tokio::test]
async fn upstream_dying_mid_stream_ends_with_an_error_event_and_close() {
    let up = MockUpstream::start(|_| vec![send(SSE_HEAD), send(sse_event("x")), Step::Close]).await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let mut c = gw.connect().await;
    c.send(chat_request(STREAM_BODY).as_bytes()).await;
    let r = c.response().await.unwrap();
    let events = r.events();
    assert_eq!(events[0], chunk("DeepSeek-V3.2", "x"));
    let last: serde_json::Value = serde_json::from_str(events.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{events:?}");
    assert!(!events.contains(&"[DONE]".to_owned()));
    assert!(c.is_closed().await);
    let s = gw.settled_stats().await;
    assert_eq!(s["failedRequests"], 1);
}

#[tokio::test]
async fn slow_first_byte_is_504() {
    let up = MockUpstream::start(|_| vec![Step::Sleep(Duration::from_secs(3))]).await;
    let gw = TestGateway::start(&config_with(&up.base_url(), 0, "")).await;
    let start = Instant::now();
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!((r.status, r.error_code()), (504, "upstream_timeout".into()));
    assert!(start.elapsed() < Duration::from_millis(2500));
}

#[tokio::test]
async fn refused_connection_is_502() {
    // Bind and drop a listener to get a port nobody listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let gw = TestGateway::start(&config(&format!("http://127.0.0.1:{port}/v1"), "")).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!((r.status, r.error_code()), (502, "upstream_error".into()));
}

#[tokio::test]
async fn upstream_errors_pass_through_after_retries() {
    let up = MockUpstream::start(|req| {
        let key = req.header("authorization").unwrap_or("").to_owned();
        if key.ends_with("-a") {
            vec![send("HTTP/1.1 500 Internal Server Error\r\nContent-Length: 4\r\n\r\noops")]
        } else {
            let body = r#"{"error":{"message":"slow down","type":"rate_limit"}}"#;
            vec![send(format!(
                "HTTP/1.1 429 Too Many Requests\r\nRetry-After: 30\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))]
        }
    })
    .await;
    let cfg = config(&up.base_url(), "").replace(
        r#"[{"id": "a", "apiKey": "sk-upstream-a"}]"#,
        r#"[{"id": "a", "apiKey": "sk-upstream-a"}, {"id": "b", "apiKey": "sk-upstream-b"}]"#,
    );
    let gw = TestGateway::start(&cfg.replace(
        "\"requestTimeout\"",
        "\"loadBalanceStrategy\": \"failover\", \"requestTimeout\"",
    ))
    .await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    // Account a answered 500, so b was tried and its 429 is the answer.
    assert_eq!(up.count(), 2);
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("30"));
    assert_eq!(r.json()["error"]["message"], "slow down");
    // Only a (500, not resting) is left: its error is wrapped in the OpenAI shape.
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!(r.status, 500);
    assert!(r.json()["error"]["message"]
        .as_str()
        .unwrap()
        .contains("oops"));
}

#[tokio::test]
async fn a_single_candidate_is_not_rested_for_consecutive_failures() {
    let up = MockUpstream::start(|_| {
        vec![send(
            "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n",
        )]
    })
    .await;
    let gw = TestGateway::start(&config_with(&up.base_url(), 0, "")).await;
    for _ in 0..4 {
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
            .await;
        assert_eq!(r.status, 503);
        assert_ne!(r.error_code(), "no_available_account");
    }
    // Nowhere else to send it: every request still reached the upstream.
    assert_eq!(up.count(), 4);
}

#[tokio::test]
async fn pooled_connections_are_reused() {
    let up = MockUpstream::start(|_| json_answer(&chat_answer("deepseek-chat", "x"))).await;
    // One worker: each worker keeps its own pool, and new client
    // connections may land on any worker.
    let gw = TestGateway::start(&config(&up.base_url(), r#", "workers": 1"#)).await;
    for _ in 0..5 {
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
            .await;
        assert_eq!(r.status, 200);
    }
    assert_eq!(up.count(), 5);
    assert_eq!(up.accepts.load(SeqCst), 1);
}

/// Streams end `[DONE]` then, as real providers frame them, the last chunk
/// `0\r\n\r\n`: in a later write, or in the same one. Either way the
/// upstream connection goes back to the pool, as a plain answer's does:
/// five streams and five plain answers, interleaved, use one connection.
/// (Until the last chunk arrives the connection is still busy, so the test
/// lets the 30 ms pause pass before it asks again.)
#[tokio::test]
async fn streamed_answers_return_their_upstream_connection_to_the_pool() {
    for together in [false, true] {
        let up = MockUpstream::start(move |req| {
            if !req.json()["stream"].as_bool().unwrap_or(false) {
                return json_answer(&chat_answer("deepseek-chat", "x"));
            }
            let done = chunked("data: [DONE]\n\n");
            let mut steps = vec![send(format!(
                "{SSE_HEAD}{}{}",
                sse_event("a"),
                sse_event("b")
            ))];
            match together {
                true => steps.push(send(format!("{done}0\r\n\r\n"))),
                false => {
                    steps.push(send(done));
                    steps.push(Step::Sleep(Duration::from_millis(30)));
                    steps.push(send("0\r\n\r\n"));
                }
            }
            steps
        })
        .await;
        let gw = TestGateway::start(&config(&up.base_url(), r#", "workers": 1"#)).await;
        for _ in 0..5 {
            let r = gw
                .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
                .await;
            assert_eq!(r.status, 200);
            assert_eq!(r.events().last().map(String::as_str), Some("[DONE]"));
            tokio::time::sleep(Duration::from_millis(200)).await;
            let r = gw
                .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
                .await;
            assert_eq!(r.status, 200);
        }
        assert_eq!(up.count(), 10);
        assert_eq!(
            up.accepts.load(SeqCst),
            1,
            "[DONE] and the last chunk together: {together}"
        );
    }
}

/// A burst above the old idle cap (64), twice: the second burst finds every
/// connection the first one opened in the pool and opens none (a pool that
/// closed the excess would reconnect on every burst, overflowing a small
/// upstream's accept queue). Connections opened per upstream, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bursts_reuse_every_connection_they_opened() {
    const BURST: usize = 120;
    let up = MockUpstream::start(|_| answer_after(Duration::from_millis(300))).await;
    let gw =
        std::sync::Arc::new(TestGateway::start(&config(&up.base_url(), r#", "workers": 1"#)).await);
    for burst in 1..=2 {
        let tasks: Vec<_> = (0..BURST)
            .map(|_| {
                let gw = gw.clone();
                tokio::spawn(async move {
                    gw.post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
                        .await
                        .status
                })
            })
            .collect();
        for t in tasks {
            assert_eq!(t.await.unwrap(), 200);
        }
        let opened = up.accepts.load(SeqCst);
        assert!(
            opened <= BURST,
            "burst {burst}: {opened} connections for {BURST} requests"
        );
    }
    assert_eq!(up.count(), 2 * BURST);
}

/// `limits.upstreamMaxConns` caps an origin's open connections, as nginx's
/// `max_conns` with a `queue`: 48 concurrent requests (plain and streamed)
/// to a slow upstream capped at 4 are all answered, and the upstream never
/// sees a fifth connection, with one worker or with two (each keeping its
/// share of 2, and closing none to make room). Connections opened per
/// upstream, counted.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_capped_upstream_gets_no_more_connections_than_its_cap() {
    const REQUESTS: usize = 48;
    for workers in [1, 2] {
        let up = MockUpstream::start(|req| {
            let mut steps = vec![Step::Sleep(Duration::from_millis(60))];
            match req.json()["stream"].as_bool().unwrap_or(false) {
                false => steps.extend(json_answer(&chat_answer("deepseek-chat", "x"))),
                true => steps.push(send(format!(
                    "{SSE_HEAD}{}{}0\r\n\r\n",
                    sse_event("a"),
                    chunked("data: [DONE]\n\n")
                ))),
            }
            steps
        })
        .await;
        let extra = format!(
            r#", "workers": {workers}, "limits": {{"upstreamMaxConns": 4, "upstreamQueueTimeout": 10000}}"#
        );
        let gw = std::sync::Arc::new(TestGateway::start(&config(&up.base_url(), &extra)).await);
        let tasks: Vec<_> = (0..REQUESTS)
            .map(|n| {
                let gw = gw.clone();
                tokio::spawn(async move {
                    let body = if n % 2 == 0 { PLAIN_BODY } else { STREAM_BODY };
                    let r = gw
                        .post_json("/v1/chat/completions", Some("sk-client"), body)
                        .await;
                    (r.status, r.text())
                })
            })
            .collect();
        for t in tasks {
            let (status, text) = t.await.unwrap();
            assert_eq!(status, 200, "workers {workers}: {text}");
        }
        assert_eq!(up.count(), REQUESTS);
        assert!(
            up.accepts.load(SeqCst) <= 4,
            "workers {workers}: {} connections under a cap of 4",
            up.accepts.load(SeqCst)
        );
    }
}

/// A request that queues at the cap longer than `upstreamQueueTimeout` is
/// refused with 503 `server_overloaded` and `Retry-After`, never sent; the
/// one holding the connection is answered.
#[tokio::test]
async fn a_request_queued_past_the_queue_timeout_gets_503() {
    let up = MockUpstream::start(|_| answer_after(Duration::from_millis(600))).await;
    // One worker: each worker has a share of at least one connection.
    let extra = r#", "workers": 1, "limits": {"upstreamMaxConns": 1, "upstreamQueueTimeout": 100}"#;
    let gw = std::sync::Arc::new(TestGateway::start(&config(&up.base_url(), extra)).await);
    let first = {
        let gw = gw.clone();
        tokio::spawn(async move {
            gw.post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
                .await
        })
    };
    while up.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let refused = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!(refused.status, 503, "{}", refused.text());
    assert_eq!(refused.error_code(), "server_overloaded");
    assert_eq!(refused.header("retry-after"), Some("1"));
    assert!(refused.text().contains("at most 1"), "{}", refused.text());
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(up.count(), 1);
    assert_eq!(up.accepts.load(SeqCst), 1);
}

/// Clients that all leave at once, one of them holding the only upstream
/// connection and ten queued behind it, cost the upstream nothing more:
/// the freed connection slot passes from one departed request to the next,
/// and each sees its client gone before it opens a connection (a handler
/// polled before the client's socket opened one for each). The next live
/// request is served.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_whose_clients_left_while_queued_open_no_connection() {
    use tokio::io::AsyncWriteExt;
    let up = MockUpstream::start(|_| answer_after(Duration::from_millis(400))).await;
    let extra =
        r#", "workers": 1, "limits": {"upstreamMaxConns": 1, "upstreamQueueTimeout": 5000}"#;
    let gw = TestGateway::start(&config(&up.base_url(), extra)).await;
    let mut departing = Vec::new();
    for _ in 0..11 {
        let mut c = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
        c.write_all(chat_request(PLAIN_BODY).as_bytes())
            .await
            .unwrap();
        departing.push(c);
    }
    while up.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    tokio::time::sleep(Duration::from_millis(50)).await;
    drop(departing);
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.count(), 2, "requests of departed clients were sent");
    assert_eq!(
        up.accepts.load(SeqCst),
        2,
        "connections were opened for departed clients"
    );
}

/// An upstream that keeps its body open after `[DONE]`: the client still
/// gets its whole answer at once, and that connection is closed rather
/// than pooled (the next stream opens a new one).
#[tokio::test]
async fn a_stream_whose_body_never_ends_after_done_is_not_pooled() {
    let up = MockUpstream::start(|_| {
        vec![
            send(format!(
                "{SSE_HEAD}{}{}",
                sse_event("a"),
                chunked("data: [DONE]\n\n")
            )),
            Step::Hang,
        ]
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), r#", "workers": 1"#)).await;
    for _ in 0..2 {
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
            .await;
        assert_eq!(r.status, 200);
        assert_eq!(r.events().last().map(String::as_str), Some("[DONE]"));
    }
    assert_eq!(up.accepts.load(SeqCst), 2);
    // Both were given up and closed.
    let deadline = Instant::now() + Duration::from_secs(5);
    while up.peer_closed.load(SeqCst) < 2 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.peer_closed.load(SeqCst), 2);
}

#[tokio::test]
async fn client_disconnect_cancels_the_upstream_at_once() {
    let up = MockUpstream::start(|_| vec![send(SSE_HEAD), send(sse_event("x")), Step::Hang]).await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let mut c = gw.connect().await;
    c.send(chat_request(STREAM_BODY).as_bytes()).await;
    // Wait for the first event, then leave.
    c.read_raw_until(&mut Vec::new(), |got| got.contains("\n\n"))
        .await;
    drop(c);
    let start = Instant::now();
    while up.peer_closed.load(SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "upstream still open after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // While waiting for the first byte too.
    let up2 = MockUpstream::start(|_| vec![Step::Hang]).await;
    let gw2 = TestGateway::start(&config(&up2.base_url(), "").replace("1000", "60000")).await;
    let mut c = gw2.connect().await;
    c.send(chat_request(PLAIN_BODY).as_bytes()).await;
    while up2.count() == 0 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    drop(c);
    let start = Instant::now();
    while up2.peer_closed.load(SeqCst) == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(1),
            "upstream still open after 1 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test]
async fn silent_upstream_gets_keep_alive_comments() {
    let up = MockUpstream::start(|_| {
        vec![
            send(SSE_HEAD),
            Step::Sleep(Duration::from_millis(350)),
            send(chunked(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                chunk("deepseek-chat", "x")
            ))),
            send("0\r\n\r\n"),
        ]
    })
    .await;
    let gw = TestGateway::start(&config(
        &up.base_url(),
        r#", "limits": {"sseKeepaliveInterval": 100}"#,
    ))
    .await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
        .await;
    let text = r.text();
    assert!(text.starts_with(": keep-alive\n"), "{text}");
    assert!(!text.contains(": keep-alive\n\n"), "{text}");
    assert!(text.ends_with("data: [DONE]\n\n"));
}

#[tokio::test]
async fn tls_upstream_with_a_private_ca() {
    let (up, ca) =
        MockUpstream::start_tls(|_| json_answer(&chat_answer("deepseek-chat", "secure"))).await;
    let base = format!("https://localhost:{}/v1", up.addr.port());
    let cfg = config(&base, "").replace(
        r#""baseUrl": ""#,
        &format!(r#""caFile": "{}", "baseUrl": ""#, ca.display()),
    );
    let gw = TestGateway::start(&cfg).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "secure");
    assert_eq!(
        up.last().header("host"),
        Some(format!("localhost:{}", up.addr.port()).as_str())
    );
    // Without the CA the certificate is refused: 502.
    let gw = TestGateway::start(&config(&base, "")).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
        .await;
    assert_eq!((r.status, r.error_code()), (502, "upstream_error".into()));
}

#[tokio::test]
async fn completions_through_a_chat_only_provider() {
    let up = MockUpstream::start(|req| {
        if req.json()["stream"] == true {
            let mut s = String::from(SSE_HEAD);
            s.push_str(&sse_event("Hel"));
            s.push_str(&chunked(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                chunk("deepseek-chat", "lo")
            )));
            s.push_str("0\r\n\r\n");
            vec![send(s)]
        } else {
            json_answer(&chat_answer("deepseek-chat", "Hello"))
        }
    })
    .await;
    let cfg = config(&up.base_url(), "").replace(
        r#""models": {"DeepSeek-V3.2""#,
        r#""completions": "chat", "models": {"DeepSeek-V3.2""#,
    );
    let gw = TestGateway::start(&cfg).await;
    let r = gw
        .post_json(
            "/v1/completions",
            Some("sk-client"),
            r#"{"model":"DeepSeek-V3.2","prompt":"Say hi","max_tokens":7}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert_eq!(v["model"], "DeepSeek-V3.2");
    assert_eq!(v["choices"][0]["text"], "Hello");
    let seen = up.last();
    assert_eq!(seen.path, "/v1/chat/completions");
    let sent = seen.json();
    assert_eq!(sent["messages"][0]["content"], "Say hi");
    assert_eq!(sent["model"], "deepseek-chat");
    assert_eq!(sent["max_tokens"], 7);
    assert!(sent.get("prompt").is_none());

    let r = gw
        .post_json(
            "/v1/completions",
            Some("sk-client"),
            r#"{"model":"DeepSeek-V3.2","prompt":"Say hi","stream":true}"#,
        )
        .await;
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let text: String = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .inspect(|c| {
            assert_eq!(
                (c["object"].as_str(), c["model"].as_str()),
                (Some("text_completion"), Some("DeepSeek-V3.2"))
            )
        })
        .map(|c| c["choices"][0]["text"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(text, "Hello");
}

#[tokio::test]
async fn round_robin_spreads_over_accounts_and_keyless_accounts_send_no_key() {
    let up = MockUpstream::start(|_| json_answer(&chat_answer("deepseek-chat", "x"))).await;
    let cfg = config(&up.base_url(), "").replace(
        r#"[{"id": "a", "apiKey": "sk-upstream-a"}]"#,
        r#"[{"id": "a", "apiKey": "sk-upstream-a"}, {"id": "local"}]"#,
    );
    let gw = TestGateway::start(&cfg).await;
    for _ in 0..4 {
        assert_eq!(
            gw.post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
                .await
                .status,
            200
        );
    }
    let keys: Vec<Option<String>> = up
        .requests
        .lock()
        .unwrap()
        .iter()
        .map(|r| r.header("authorization").map(str::to_owned))
        .collect();
    assert_eq!(
        keys.iter()
            .filter(|k| k.as_deref() == Some("Bearer sk-upstream-a"))
            .count(),
        2
    );
    assert_eq!(keys.iter().filter(|k| k.is_none()).count(), 2);
    let s = gw.settled_stats().await;
    assert_eq!(
        (
            s["accountUsage"]["up/a"].as_u64(),
            s["accountUsage"]["up/local"].as_u64()
        ),
        (Some(2), Some(2))
    );
}

/// docs/wire.md §4: each event is flushed as it arrives; nothing waits for the next.
#[tokio::test]
async fn each_event_reaches_the_client_before_the_next_is_sent() {
    let up = MockUpstream::start(|_| {
        vec![
            send(SSE_HEAD),
            send(sse_event("first")),
            Step::Sleep(Duration::from_millis(600)),
            send(chunked(&format!(
                "data: {}\n\ndata: [DONE]\n\n",
                chunk("deepseek-chat", "second")
            ))),
            send("0\r\n\r\n"),
        ]
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let mut c = gw.connect().await;
    let start = Instant::now();
    c.send(chat_request(STREAM_BODY).as_bytes()).await;
    let mut got = Vec::new();
    c.read_raw_until(&mut got, |got| got.contains("first"))
        .await;
    assert!(
        start.elapsed() < Duration::from_millis(450),
        "the first event waited for the second"
    );
    assert!(!String::from_utf8_lossy(&got).contains("second"));
    c.read_raw_until(&mut got, |got| {
        got.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n")
    })
    .await;
    assert!(String::from_utf8_lossy(&got).contains("second"));
}

#[tokio::test]
async fn malformed_upstream_framing_is_502_and_the_connection_is_dropped() {
    let up = MockUpstream::start(|_| {
        let body = chat_answer("deepseek-chat", "x");
        vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n{body}",
            body.len()
        ))]
    })
    .await;
    let gw = TestGateway::start(&config_with(&up.base_url(), 0, "")).await;
    for _ in 0..2 {
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), PLAIN_BODY)
            .await;
        assert_eq!((r.status, r.error_code()), (502, "upstream_error".into()));
    }
    // Never reused: each request needed a new upstream connection.
    assert_eq!(up.accepts.load(SeqCst), 2);
}

#[tokio::test]
async fn an_idle_gap_inside_a_stream_ends_it_with_an_error_event() {
    let up = MockUpstream::start(|_| vec![send(SSE_HEAD), send(sse_event("x")), Step::Hang]).await;
    let gw = TestGateway::start(&config(
        &up.base_url(),
        r#", "limits": {"streamIdleTimeout": 400, "sseKeepaliveInterval": 100}"#,
    ))
    .await;
    let mut c = gw.connect().await;
    c.send(chat_request(STREAM_BODY).as_bytes()).await;
    let r = c.response().await.unwrap();
    let text = r.text();
    assert!(text.contains(": keep-alive\n"), "{text}");
    assert!(!text.contains(": keep-alive\n\n"), "{text}");
    let last: serde_json::Value = serde_json::from_str(r.events().last().unwrap()).unwrap();
    assert!(
        last["error"]["message"]
            .as_str()
            .unwrap()
            .contains("sent nothing"),
        "{text}"
    );
    assert!(c.is_closed().await);
    // The hanging upstream connection was closed, not pooled.
    let start = Instant::now();
    while up.peer_closed.load(SeqCst) == 0 {
        assert!(start.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// An upstream that closes without ending its last line: a whole chunk is
/// kept, half a chunk is not, and `[DONE]` ends the stream either way.
#[tokio::test]
async fn an_unterminated_last_event_is_kept_only_when_whole() {
    for (tail, kept) in [
        (chunk("deepseek-chat", "last"), true),
        (r#"{"id":"chatcmpl-up","choi"#.to_owned(), false),
    ] {
        let up = MockUpstream::start(move |_| {
            vec![
                send(format!(
                    "{SSE_HEAD_CLOSE}data: {}\n\ndata: {tail}",
                    chunk("deepseek-chat", "first")
                )),
                Step::Close,
            ]
        })
        .await;
        let gw = TestGateway::start(&config(&up.base_url(), "")).await;
        let r = gw
            .post_json("/v1/chat/completions", Some("sk-client"), STREAM_BODY)
            .await;
        let mut expected = vec![chunk("DeepSeek-V3.2", "first")];
        if kept {
            expected.push(chunk("DeepSeek-V3.2", "last"));
        }
        expected.push("[DONE]".to_owned());
        assert_eq!(r.events(), expected);
    }
}

/// `/v1/embeddings` is routed by model like chat: the upstream gets its
/// own model name at `/v1/embeddings`, the client its alias back.
#[tokio::test]
async fn embeddings_are_forwarded_with_the_model_rewritten() {
    let up = MockUpstream::start(|req| {
        assert_eq!(req.path, "/v1/embeddings");
        json_answer(&format!(
            r#"{{"object":"list","data":[{{"object":"embedding","index":0,"embedding":[0.6,0.8]}}],"model":{},"usage":{{"prompt_tokens":1,"total_tokens":1}}}}"#,
            req.json()["model"]
        ))
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let r = gw
        .post_json(
            "/v1/embeddings",
            Some("sk-client"),
            r#"{"model":"DeepSeek-V3.2","input":"hello"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "DeepSeek-V3.2");
    assert_eq!(r.json()["data"][0]["embedding"][1], 0.8);
    assert_eq!(up.last().json()["model"], "deepseek-chat");
    assert_eq!(up.last().json()["input"], "hello");
}

/// A Responses API stream passes through event by event with its `event:`
/// names, the model inside each `response` set back to the client's name.
#[tokio::test]
async fn responses_stream_through_with_event_names_and_the_alias() {
    let up = MockUpstream::start(|req| {
        assert_eq!(req.path, "/v1/responses");
        let model = req.json()["model"].as_str().unwrap().to_owned();
        let body = format!(
            "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"{model}\",\"status\":\"in_progress\"}}}}\n\n\
             event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":\"Hi\"}}\n\n\
             event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{{\"id\":\"resp_1\",\"object\":\"response\",\"model\":\"{model}\",\"status\":\"completed\"}}}}\n\n"
        );
        vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ))]
    })
    .await;
    let gw = TestGateway::start(&config(&up.base_url(), "")).await;
    let r = gw
        .post_json(
            "/v1/responses",
            Some("sk-client"),
            r#"{"model":"DeepSeek-V3.2","input":"Hi","stream":true}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(up.last().json()["model"], "deepseek-chat");
    let events = r.sse();
    assert_eq!(events[0].event.as_deref(), Some("response.created"));
    assert_eq!(
        events[1].event.as_deref(),
        Some("response.output_text.delta")
    );
    for i in [0, 2] {
        let v: serde_json::Value = serde_json::from_str(&events[i].data).unwrap();
        assert_eq!(
            v["response"]["model"], "DeepSeek-V3.2",
            "{}",
            events[i].data
        );
    }
}
