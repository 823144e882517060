//! Lifecycle and deadlines (docs/wire.md §1, §6): drains that survive reloads and
//! stops, reloads that lose no request, a deadline on every upstream read,
//! separate limits for requests and answers, the connection cap.

mod support;

use std::io::{Read, Write};
use std::net::TcpStream as StdStream;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::binary::{signal, spawn, stderr_line, temp_file, wait_exit, Running};
use support::upstream::{chunk, send, MockUpstream, Step};
use support::{Client, TestGateway};

const CHAT: &str = r#"{"model":"mock-echo","messages":[{"role":"user","content":"Hi"}]}"#;
const SLOW_STREAM: &str =
    r#"{"model":"mock-slow","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;

/// A config with the plain mock and a slow streaming one (`words` tokens,
/// `delay_ms` apart), the management listener on an ephemeral port.
fn slow_config(name: &str, words: usize, delay_ms: u64, drain_ms: u64) -> std::path::PathBuf {
    let text: Vec<String> = (0..words).map(|i| format!("w{i}")).collect();
    temp_file(
        name,
        &format!(
            r#"{{"host":"127.0.0.1","port":0,
  "management":{{"host":"127.0.0.1","port":0}},
  "limits":{{"drainTimeout":{drain_ms}}},
  "providers":[{{"id":"mock","type":"mock","models":["mock-echo"]}},
    {{"id":"slow","type":"mock","models":["mock-slow"],"tokenDelayMs":{delay_ms},"text":"{}"}}]}}"#,
            text.join(" ")
        ),
    )
}

fn request(body: &str) -> String {
    support::post_request("/v1/chat/completions", "", body)
}

/// Open a stream on a fresh connection and return the socket once the
/// response head has arrived.
fn open_stream(addr: &str) -> StdStream {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(request(SLOW_STREAM).as_bytes()).unwrap();
    let mut head = [0u8; 64];
    let n = s.read(&mut head).unwrap();
    assert!(head[..n].starts_with(b"HTTP/1.1 200"), "{:?}", &head[..n]);
    s
}

/// Everything until the server closes.
fn read_to_close(mut s: StdStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn management_addr(run: &Running) -> String {
    let line = stderr_line(run, "management on http://", Duration::from_secs(5));
    line.split("http://").nth(1).unwrap().trim().to_owned()
}

fn one_shot(addr: &str, raw: &str) -> String {
    let mut s = StdStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.write_all(raw.as_bytes()).unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

/// Streams open across a reload, then SIGTERM: every stream still
/// completes, because shutdown waits for the generation the reload replaced.
#[test]
fn sighup_then_sigterm_lets_every_open_stream_finish() {
    let path = slow_config("hup-term.json", 8, 100, 30_000);
    let mut run = spawn(&["--config", path.to_str().unwrap()]);
    let streams: Vec<_> = (0..10).map(|_| open_stream(&run.addr)).collect();
    signal(&run.child, "-HUP");
    stderr_line(&run, "restarted", Duration::from_secs(5));
    signal(&run.child, "-TERM");
    for s in streams {
        let body = read_to_close(s);
        assert!(body.contains("w7"), "{body}");
        assert!(body.contains("data: [DONE]"), "{body}");
    }
    assert!(wait_exit(&mut run.child, Duration::from_secs(10)).success());
}

/// The same after a stop from the management API: the stopped generation
/// is drained before the process exits, and the management listener
/// answers while it drains.
#[test]
fn stop_then_sigterm_lets_every_open_stream_finish() {
    let path = slow_config("stop-term.json", 8, 100, 30_000);
    let mut run = spawn(&["--config", path.to_str().unwrap()]);
    let mgmt = management_addr(&run);
    let streams: Vec<_> = (0..5).map(|_| open_stream(&run.addr)).collect();
    let stopped = one_shot(
        &mgmt,
        "POST /v0/management/proxy/stop HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
    );
    assert!(stopped.starts_with("HTTP/1.1 200"), "{stopped}");
    signal(&run.child, "-TERM");
    let status = one_shot(
        &mgmt,
        "GET /v0/management/proxy/status HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(status.starts_with("HTTP/1.1 200"), "{status}");
    for s in streams {
        let body = read_to_close(s);
        assert!(body.contains("data: [DONE]"), "{body}");
    }
    assert!(wait_exit(&mut run.child, Duration::from_secs(10)).success());
}

/// At the drain deadline an open stream ends with a `server_shutting_down`
/// error event instead of being cut silently, and the process exits 0.
#[test]
fn the_drain_deadline_ends_open_streams_with_an_error_event() {
    let path = slow_config("deadline.json", 100, 200, 300);
    let mut run = spawn(&["--config", path.to_str().unwrap()]);
    let stream = open_stream(&run.addr);
    let started = Instant::now();
    signal(&run.child, "-TERM");
    let body = read_to_close(stream);
    assert!(body.contains("server_shutting_down"), "{body}");
    assert!(!body.contains("[DONE]"), "{body}");
    assert!(started.elapsed() < Duration::from_secs(5));
    assert!(wait_exit(&mut run.child, Duration::from_secs(10)).success());
}

/// Four clients open a new connection for every request while the config
/// is reloaded ten times: no request is refused, reset or left unanswered.
#[test]
fn reloads_under_new_connection_load_lose_no_request() {
    let path = slow_config("reloads.json", 1, 0, 30_000);
    let mut run = spawn(&["--config", path.to_str().unwrap()]);
    let stop = Arc::new(AtomicBool::new(false));
    let (ok, failed) = (Arc::new(AtomicUsize::new(0)), Arc::new(AtomicUsize::new(0)));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let (addr, stop, ok, failed) =
                (run.addr.clone(), stop.clone(), ok.clone(), failed.clone());
            std::thread::spawn(move || {
                let raw =
                    support::post_request("/v1/chat/completions", "Connection: close\r\n", CHAT);
                while !stop.load(SeqCst) {
                    let answer = StdStream::connect(&addr).map(|mut s| {
                        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
                        let _ = s.write_all(raw.as_bytes());
                        let mut out = String::new();
                        let _ = s.read_to_string(&mut out);
                        out
                    });
                    match answer {
                        Ok(a) if a.starts_with("HTTP/1.1 200") && a.contains("chat.completion") => {
                            ok.fetch_add(1, SeqCst)
                        }
                        _ => failed.fetch_add(1, SeqCst),
                    };
                }
            })
        })
        .collect();
    for _ in 0..10 {
        std::thread::sleep(Duration::from_millis(150));
        signal(&run.child, "-HUP");
        stderr_line(&run, "restarted", Duration::from_secs(5));
    }
    std::thread::sleep(Duration::from_millis(150));
    stop.store(true, SeqCst);
    for c in clients {
        c.join().unwrap();
    }
    eprintln!("{} requests across 10 reloads", ok.load(SeqCst));
    assert!(ok.load(SeqCst) > 100, "only {} requests", ok.load(SeqCst));
    assert_eq!(failed.load(SeqCst), 0, "of {} requests", ok.load(SeqCst));
    signal(&run.child, "-TERM");
    assert!(wait_exit(&mut run.child, Duration::from_secs(10)).success());
}

fn upstream_config(base_url: &str, limits: &str) -> String {
    format!(
        r#"{{
  "requestTimeout": 1000, "retryCount": 0,
  "limits": {{"streamIdleTimeout": 3000{limits}}},
  "providers": [{{"id": "up", "type": "openai", "baseUrl": "{base_url}",
    "accounts": [{{"id": "a", "apiKey": "sk-up"}}],
    "models": {{"m": "up-model"}}}}]
}}"#
    )
}

/// An upstream that sends a head promising 1000 bytes, six of them, and
/// stops: a plain answer, an error body, and a non-SSE answer to a stream
/// request each end in 504 within the request timeout, and the gateway
/// lets go of the upstream connection.
#[tokio::test]
async fn stalled_answers_are_a_504_within_the_deadline() {
    let up = MockUpstream::start(|req| {
        let status = match req.json()["messages"][0]["content"].as_str() {
            Some("error") => "500 Internal Server Error",
            _ => "200 OK",
        };
        vec![
            send(format!(
                "HTTP/1.1 {status}\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{{\"id\":"
            )),
            Step::Hang,
        ]
    })
    .await;
    let gw = TestGateway::start(&upstream_config(&up.base_url(), "")).await;
    for (content, stream) in [("plain", false), ("error", false), ("stream", true)] {
        let body = format!(
            r#"{{"model":"m","stream":{stream},"messages":[{{"role":"user","content":"{content}"}}]}}"#
        );
        let started = Instant::now();
        let r = gw.post_json("/v1/chat/completions", None, &body).await;
        let took = started.elapsed();
        assert_eq!(
            (r.status, r.error_code()),
            (504, "upstream_timeout".into()),
            "{content}"
        );
        assert!(took < Duration::from_millis(2500), "{content}: {took:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while up.peer_closed.load(SeqCst) < 3 && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert_eq!(up.peer_closed.load(SeqCst), 3, "upstream sockets released");
}

/// `maxBodyBytes` bounds request bodies only: a stream many times larger
/// goes through whole, while a plain answer over `maxAnswerBytes` is 502.
#[tokio::test]
async fn answers_have_their_own_limits() {
    const EVENTS: usize = 3000;
    let up = MockUpstream::start(|req| {
        if req.json()["stream"] == true {
            let pad = "x".repeat(1000);
            let mut body = String::new();
            for _ in 0..EVENTS {
                body.push_str(&format!("data: {}\n\n", chunk("up-model", &pad)));
            }
            body.push_str("data: [DONE]\n\n");
            vec![send(format!(
                "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ))]
        } else {
            let body = format!(r#"{{"model":"up-model","pad":"{}"}}"#, "y".repeat(300_000));
            support::upstream::json_answer(&body)
        }
    })
    .await;
    let limits = r#", "maxBodyBytes": 100000, "maxAnswerBytes": 200000"#;
    let gw = TestGateway::start(&upstream_config(&up.base_url(), limits)).await;
    let stream = r#"{"model":"m","stream":true,"messages":[{"role":"user","content":"Hi"}]}"#;
    let r = gw.post_json("/v1/chat/completions", None, stream).await;
    assert_eq!(r.status, 200);
    let events = r.events();
    assert_eq!(events.len(), EVENTS + 1, "every event and [DONE]");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert!(events[0].contains(r#""model":"m""#));
    let plain = r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#;
    let r = gw.post_json("/v1/chat/completions", None, plain).await;
    assert_eq!((r.status, r.error_code()), (502, "upstream_error".into()));
    // The request-body limit still holds.
    let big = format!(
        r#"{{"model":"m","messages":[{{"role":"user","content":"{}"}}]}}"#,
        "z".repeat(150_000)
    );
    let r = gw.post_json("/v1/chat/completions", None, &big).await;
    assert_eq!(r.status, 413);
}

/// Over `maxConnections` a new client gets a prompt 503 with Retry-After;
/// a connection that never sends a byte is closed after the header
/// timeout, not the keep-alive timeout, and the gateway then serves again.
#[tokio::test]
async fn at_the_connection_cap_a_new_client_is_answered_at_once() {
    let gw = TestGateway::start(
        r#"{"limits": {"maxConnections": 4, "headerReadTimeout": 1500, "keepAliveTimeout": 60000},
            "providers": [{"id": "mock", "type": "mock", "models": ["mock-echo"]}]}"#,
    )
    .await;
    let mut silent = Vec::new();
    for _ in 0..4 {
        silent.push(Client::connect(gw.addr).await);
    }
    // Let the workers count them.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let started = Instant::now();
    let r = gw.request(&request(CHAT)).await;
    assert_eq!(
        (r.status, r.error_code()),
        (503, "server_overloaded".into())
    );
    assert_eq!(r.header("retry-after"), Some("1"));
    assert!(started.elapsed() < Duration::from_secs(1));
    // The silent holders are cut at the header timeout ...
    for c in &mut silent {
        assert!(c.is_closed().await);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "{:?}",
        started.elapsed()
    );
    // ... and the next client is served.
    let r = gw.request(&request(CHAT)).await;
    assert_eq!(r.status, 200);
}

/// The gateway's workers share their port through `SO_REUSEPORT`, but a
/// second gateway started on that port is refused rather than let in to
/// take half the connections.
#[test]
fn a_second_gateway_on_the_same_port_is_refused() {
    let path = slow_config("second.json", 1, 0, 30_000);
    let first = spawn(&["--config", path.to_str().unwrap()]);
    let port = first.addr.rsplit(':').next().unwrap();
    let out = std::process::Command::new(support::binary::BIN)
        .args(["--config", path.to_str().unwrap(), "--port", port])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("in use"), "{err}");
    let answer = one_shot(
        &first.addr,
        &support::post_request("/v1/chat/completions", "Connection: close\r\n", CHAT),
    );
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
}
