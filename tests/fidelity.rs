//! Upstreams that misbehave (docs/wire.md §4): whatever the upstream sends, the
//! client gets a valid answer for what it asked (JSON for a plain request,
//! SSE for a stream) carrying its own model name, or an OpenAI-shaped
//! error; and the statistics count what was not a real answer as failed.
//!
//! One scripted upstream plays every misbehaviour, chosen by the upstream
//! model name; the official Python SDK is driven against the same cases
//! (`python_sdk_gets_an_answer_or_a_clean_error_in_every_case`).

mod support;

use std::io::Write;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use support::upstream::{chunk, chunked, send, MockUpstream, Recorded, Step, SSE_HEAD};
use support::TestGateway;

/// Every case, by upstream model name.
const CASES: &[&str] = &[
    "multiline",
    "gzip",
    "deflate",
    "brotli",
    "zstd",
    "sse-as-json",
    "split-opening",
    "json-for-stream",
    "empty",
    "html",
    "text",
    "named-events",
    "error-mid-stream",
    "done-only",
    "pings",
    "ids-paused",
];

fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

fn zlib(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::default());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// A `chat.completion` naming the upstream's model.
fn answer(model: &str) -> String {
    support::upstream::chat_answer(model, "Hello there")
}

/// Two content events and `[DONE]`, as an event-stream body.
fn sse_body(model: &str) -> String {
    format!(
        "data: {}\n\ndata: {}\n\ndata: [DONE]\n\n",
        chunk(model, "Hello"),
        chunk(model, " there")
    )
}

fn head(status: &str, content_type: &str, extra: &str, len: usize) -> String {
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\n{extra}Content-Length: {len}\r\n\r\n"
    )
}

fn with_body(content_type: &str, extra: &str, body: &[u8]) -> Vec<Step> {
    let mut bytes = head("200 OK", content_type, extra, body.len()).into_bytes();
    bytes.extend_from_slice(body);
    vec![Step::Send(bytes)]
}

/// The upstream: what each case sends, for a plain or a streamed request.
fn script(req: &Recorded) -> Vec<Step> {
    let v = req.json();
    let model = v["model"].as_str().unwrap_or_default().to_owned();
    let stream = v["stream"] == true;
    let whole = |ct: &str, extra: &str, body: &[u8]| with_body(ct, extra, body);
    let plain_or_sse = |stream: bool| match stream {
        true => sse_body(&model).into_bytes(),
        false => answer(&model).into_bytes(),
    };
    let ct = |stream: bool| match stream {
        true => "text/event-stream",
        false => "application/json",
    };
    match model.as_str() {
        // One event as pretty-printed JSON over several `data:` lines.
        "multiline" => {
            let pretty = serde_json::to_string_pretty(
                &serde_json::from_str::<serde_json::Value>(&chunk(&model, "Hello there")).unwrap(),
            )
            .unwrap();
            let lines: Vec<String> = pretty.lines().map(|l| format!("data: {l}\n")).collect();
            let body = format!("{}\ndata: [DONE]\n\n", lines.concat());
            match stream {
                true => whole("text/event-stream", "", body.as_bytes()),
                false => whole("application/json", "", answer(&model).as_bytes()),
            }
        }
        "gzip" => whole(
            ct(stream),
            "Content-Encoding: gzip\r\n",
            &gz(&plain_or_sse(stream)),
        ),
        "deflate" => whole(
            ct(stream),
            "Content-Encoding: deflate\r\n",
            &zlib(&plain_or_sse(stream)),
        ),
        "brotli" => {
            let mut out = Vec::new();
            let mut w = brotli_encode_store(&plain_or_sse(stream));
            out.append(&mut w);
            whole(ct(stream), "Content-Encoding: br\r\n", &out)
        }
        "zstd" => whole(
            ct(stream),
            "Content-Encoding: zstd\r\n",
            b"\x28\xb5\x2f\xfd...",
        ),
        // Events labelled as JSON, the second sent a while after the first.
        "sse-as-json" => {
            let first = format!("data: {}\n\n", chunk(&model, "Hello"));
            let rest = format!("data: {}\n\ndata: [DONE]\n\n", chunk(&model, " there"));
            vec![
                send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                    chunked(&first)
                )),
                Step::Sleep(Duration::from_millis(600)),
                send(format!("{}0\r\n\r\n", chunked(&rest))),
            ]
        }
        // Unlabelled events whose first piece tells nothing yet.
        "split-opening" => {
            let rest = format!("ta: {}\n\n", &sse_body(&model)[6..]);
            vec![
                send(format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                    chunked("\r\nda")
                )),
                Step::Sleep(Duration::from_millis(50)),
                send(format!(
                    "{}0\r\n\r\n",
                    chunked(rest.trim_end_matches("\n\n"))
                )),
            ]
        }
        // Always one JSON object, whatever was asked.
        "json-for-stream" => whole("application/json", "", answer(&model).as_bytes()),
        "empty" => whole("application/json", "", b""),
        "html" => whole("text/html", "", b"<html><body>Bad gateway</body></html>"),
        "text" => whole("text/plain", "", b"upstream overloaded, try later"),
        // Typed events, as the Responses API streams them.
        "named-events" => {
            let body = format!(
                "event: delta\nid: 1\ndata: {}\n\nevent: delta\nid: 2\ndata: {}\n\ndata: [DONE]\n\n",
                chunk(&model, "Hello"),
                chunk(&model, " there")
            );
            match stream {
                true => whole("text/event-stream", "", body.as_bytes()),
                false => whole("application/json", "", answer(&model).as_bytes()),
            }
        }
        "error-mid-stream" => {
            let body = format!(
                "data: {}\n\ndata: {{\"error\":{{\"message\":\"overloaded\",\"type\":\"server_error\",\"code\":null}}}}\n\ndata: [DONE]\n\n",
                chunk(&model, "Hello")
            );
            whole("text/event-stream", "", body.as_bytes())
        }
        "done-only" => whole("text/event-stream", "", b"data: [DONE]\n\n"),
        // The head, then only comments for a while, then the answer.
        "pings" => {
            let mut steps = vec![send(SSE_HEAD)];
            for _ in 0..8 {
                steps.push(send(chunked(": ping\n\n")));
                steps.push(Step::Sleep(Duration::from_millis(150)));
            }
            steps.push(send(chunked(&sse_body(&model))));
            steps.push(send("0\r\n\r\n"));
            steps
        }
        // Events with `id:` fields, then silences of several keep-alive
        // intervals (and a comment of the upstream's own) between them.
        "ids-paused" if stream => vec![
            send(SSE_HEAD),
            send(chunked(&format!(
                "event: message\nid: 1\ndata: {}\n\n",
                chunk(&model, "Hello")
            ))),
            Step::Sleep(Duration::from_millis(1000)),
            send(chunked(&format!(
                "event: message\nid: 2\ndata: {}\n\n: upstream ping\n\n",
                chunk(&model, " there")
            ))),
            Step::Sleep(Duration::from_millis(500)),
            send(chunked("id: 3\ndata: [DONE]\n\n")),
            send("0\r\n\r\n"),
        ],
        _ => whole("application/json", "", answer(&model).as_bytes()),
    }
}

/// `data` as a brotli stream of uncompressed meta-blocks (RFC 7932 §9.2),
/// so the test needs no brotli encoder: a stream header for a 64 KiB
/// window, one uncompressed meta-block per 64 KiB, and an empty last one.
fn brotli_encode_store(data: &[u8]) -> Vec<u8> {
    let mut bits = BitWriter::default();
    bits.put(0, 1); // WBITS = 16 (64 KiB window)
    for block in data.chunks(1 << 16) {
        bits.put(0, 1); // ISLAST = 0
        let mlen = block.len() - 1;
        bits.put(0, 2); // MNIBBLES = 4
        bits.put(mlen as u64, 16);
        bits.put(1, 1); // ISUNCOMPRESSED
        bits.align();
        bits.bytes.extend_from_slice(block);
    }
    bits.put(1, 1); // ISLAST
    bits.put(1, 1); // ISLASTEMPTY
    bits.align();
    bits.bytes
}

#[derive(Default)]
struct BitWriter {
    bytes: Vec<u8>,
    acc: u64,
    n: u32,
}

impl BitWriter {
    fn put(&mut self, value: u64, bits: u32) {
        self.acc |= value << self.n;
        self.n += bits;
        while self.n >= 8 {
            self.bytes.push(self.acc as u8);
            self.acc >>= 8;
            self.n -= 8;
        }
    }

    fn align(&mut self) {
        if self.n > 0 {
            self.bytes.push(self.acc as u8);
            self.acc = 0;
            self.n = 0;
        }
    }
}

/// A gateway in front of the scripted upstream: each case is served under
/// `client-<case>` (so every answer must carry the alias, never the
/// upstream's name); keep-alive comments every 400 ms.
async fn gateway() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start(script).await;
    let models: Vec<String> = CASES
        .iter()
        .map(|c| format!(r#""client-{c}": "{c}""#))
        .collect();
    let config = format!(
        r#"{{"requestTimeout": 5000, "retryCount": 0,
  "limits": {{"sseKeepaliveInterval": 400}},
  "providers": [{{"id": "up", "type": "openai", "baseUrl": "{}",
    "accounts": [{{"id": "a", "apiKey": "sk-up"}}], "models": {{{}}}}}]}}"#,
        up.base_url(),
        models.join(", ")
    );
    (up, TestGateway::start(&config).await)
}

fn request(case: &str, stream: bool) -> String {
    format!(
        r#"{{"model":"client-{case}","stream":{stream},"messages":[{{"role":"user","content":"Hi"}}]}}"#
    )
}

async fn ask(gw: &TestGateway, case: &str, stream: bool) -> support::Response {
    gw.post_json("/v1/chat/completions", None, &request(case, stream))
        .await
}

/// The text of a streamed answer, after checking that every event but
/// `[DONE]` is a JSON chunk naming the alias.
fn streamed_text(r: &support::Response, case: &str) -> String {
    assert_eq!(r.status, 200, "{case}: {}", r.text());
    assert_eq!(
        r.header("content-type"),
        Some("text/event-stream"),
        "{case}"
    );
    let events = r.events();
    assert_eq!(
        events.last().map(String::as_str),
        Some("[DONE]"),
        "{case}: {}",
        r.text()
    );
    let mut text = String::new();
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value =
            serde_json::from_str(e).unwrap_or_else(|err| panic!("{case}: {err}: {e:?}"));
        assert_eq!(v["model"], format!("client-{case}"), "{case}: {e}");
        if let Some(t) = v["choices"][0]["delta"]["content"].as_str() {
            text.push_str(t);
        }
    }
    text
}

fn plain_text(r: &support::Response, case: &str) -> String {
    assert_eq!(r.status, 200, "{case}: {}", r.text());
    assert_eq!(r.header("content-type"), Some("application/json"), "{case}");
    let v = r.json();
    assert_eq!(v["model"], format!("client-{case}"), "{case}");
    assert_eq!(v["object"], "chat.completion", "{case}");
    v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap_or_default()
        .to_owned()
}

#[tokio::test]
async fn multi_line_data_events_stay_valid_with_the_alias() {
    let (_up, gw) = gateway().await;
    let r = ask(&gw, "multiline", true).await;
    assert_eq!(streamed_text(&r, "multiline"), "Hello there");
    // Each line of the event is a `data:` line of its own on the wire.
    assert!(r.text().lines().filter(|l| l.starts_with("data: ")).count() > 3);
}

#[tokio::test]
async fn compressed_answers_are_decoded_plain_and_streamed() {
    let (_up, gw) = gateway().await;
    for case in ["gzip", "deflate", "brotli"] {
        assert_eq!(
            plain_text(&ask(&gw, case, false).await, case),
            "Hello there"
        );
        assert_eq!(
            streamed_text(&ask(&gw, case, true).await, case),
            "Hello there"
        );
    }
    for stream in [false, true] {
        let r = ask(&gw, "zstd", stream).await;
        assert_eq!((r.status, r.error_code()), (502, "upstream_error".into()));
        assert!(r.text().contains("zstd"), "{}", r.text());
    }
}

#[tokio::test]
async fn answers_are_judged_by_what_they_are_not_by_their_label() {
    let (_up, gw) = gateway().await;
    // A stream where a plain answer was asked for: gathered into one.
    for case in ["sse-as-json", "named-events", "multiline"] {
        let r = ask(&gw, case, false).await;
        assert_eq!(plain_text(&r, case), "Hello there");
    }
    // One object where a stream was asked for: a short stream.
    let r = ask(&gw, "json-for-stream", true).await;
    assert_eq!(streamed_text(&r, "json-for-stream"), "Hello there");
    // Not an answer at all: 502, plain or streamed.
    for case in ["empty", "html", "text"] {
        for stream in [false, true] {
            let r = ask(&gw, case, stream).await;
            assert_eq!(
                (r.status, r.error_code()),
                (502, "upstream_error".into()),
                "{case} stream={stream}: {}",
                r.text()
            );
        }
    }
}

/// Events labelled `application/json` still stream one by one: the first
/// reaches the client while the upstream holds the second back.
#[tokio::test]
async fn events_labelled_as_json_are_streamed_as_they_come() {
    let (_up, gw) = gateway().await;
    let mut c = gw.connect().await;
    let body = request("sse-as-json", true);
    let started = Instant::now();
    c.send(support::post_request("/v1/chat/completions", "", &body).as_bytes())
        .await;
    let mut got = Vec::new();
    c.read_raw_until(&mut got, |s| s.contains("Hello")).await;
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "{:?}",
        started.elapsed()
    );
    let text = String::from_utf8_lossy(&got);
    assert!(text.contains("text/event-stream"), "{text}");
    assert!(text.contains(r#""model":"client-sse-as-json""#), "{text}");
    assert!(!text.contains("there"), "{text}");
    let r = ask(&gw, "sse-as-json", true).await;
    assert_eq!(streamed_text(&r, "sse-as-json"), "Hello there");
    let r = ask(&gw, "split-opening", true).await;
    assert_eq!(streamed_text(&r, "split-opening"), "Hello there");
}

#[tokio::test]
async fn event_and_id_fields_are_kept() {
    let (_up, gw) = gateway().await;
    let r = ask(&gw, "named-events", true).await;
    assert_eq!(streamed_text(&r, "named-events"), "Hello there");
    let sse = r.sse();
    assert_eq!(sse[0].event.as_deref(), Some("delta"));
    assert_eq!(sse[1].id.as_deref(), Some("2"));
    assert_eq!(sse[2].event, None, "[DONE] has no fields");
}

/// An error object inside a stream is passed on, and the request counts
/// as failed; a stream of `[DONE]` alone is no answer either.
#[tokio::test]
async fn streams_that_are_not_answers_count_as_failed() {
    let (_up, gw) = gateway().await;
    let r = ask(&gw, "error-mid-stream", true).await;
    assert_eq!(r.status, 200);
    let events = r.events();
    assert!(events[1].contains("overloaded"), "{events:?}");
    let r = ask(&gw, "done-only", true).await;
    let events = r.events();
    assert_eq!(events.len(), 1, "{events:?}");
    assert!(events[0].contains("upstream_error"), "{events:?}");
    let ok = ask(&gw, "gzip", true).await;
    assert_eq!(ok.status, 200);
    let stats = gw.settled_stats().await;
    assert_eq!(
        (
            stats["successRequests"].clone(),
            stats["failedRequests"].clone()
        ),
        (1.into(), 2.into()),
        "{stats}"
    );
}

/// An upstream that sends only `: ping` comments for 1.2 s: the client
/// still gets a byte at least every keep-alive interval (400 ms), counted
/// from the last byte written to it.
#[tokio::test]
async fn the_client_never_waits_longer_than_the_keep_alive_interval() {
    let (_up, gw) = gateway().await;
    let mut s = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let body = request("pings", true);
    let raw = support::post_request("/v1/chat/completions", "Connection: close\r\n", &body);
    s.write_all(raw.as_bytes()).await.unwrap();
    let mut last = Instant::now();
    let mut longest = Duration::ZERO;
    let mut all = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = tokio::time::timeout(Duration::from_secs(5), s.read(&mut buf))
            .await
            .expect("a byte within 5 s")
            .unwrap();
        if n == 0 {
            break;
        }
        longest = longest.max(last.elapsed());
        last = Instant::now();
        all.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&all);
    assert!(text.contains(": keep-alive"), "{text}");
    assert!(text.contains("data: [DONE]"), "{text}");
    assert!(
        longest < Duration::from_millis(650),
        "silent for {longest:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_sdk_gets_an_answer_or_a_clean_error_in_every_case() {
    let py = support::sdk::python();
    let (_up, gw) = gateway().await;
    let base = format!("http://{}/v1", gw.addr);
    let script = std::path::Path::new(support::sdk::ROOT).join("tests/sdk/fidelity_test.py");
    tokio::task::spawn_blocking(move || {
        support::sdk::run(std::process::Command::new(py).arg(script).arg(base))
    })
    .await
    .unwrap();
}

/// An event-stream dispatch (HTML §9.2.6) over `text`, made as strict as
/// the strictest client: the `data` of every event dispatched. Like the
/// official Python SDK's decoder (and unlike WHATWG, which drops events
/// with no data), a blank line dispatches an event, even with no data,
/// once the stream carried an `id:` field: a keep-alive followed by a
/// blank line shows up here as an empty event.
fn dispatched(text: &str) -> Vec<String> {
    let (mut out, mut data, mut last_id) = (Vec::new(), None::<String>, false);
    // Only whole lines: what follows the last LF is no line yet.
    for line in text
        .split_inclusive('\n')
        .filter_map(|l| l.strip_suffix('\n'))
    {
        if line.is_empty() {
            if data.is_some() || last_id {
                out.push(data.take().unwrap_or_default());
            }
        } else if let Some(v) = line.strip_prefix("data:") {
            let v = v.strip_prefix(' ').unwrap_or(v);
            let d = data.get_or_insert_with(String::new);
            if !d.is_empty() {
                d.push('\n');
            }
            d.push_str(v);
        } else if line.starts_with("id:") {
            last_id = true;
        }
    }
    out
}

/// Keep-alives written after events with `id:` fields are never read as
/// an event: not by a raw socket read through a WHATWG dispatch, not by
/// curl, not by the official JavaScript SDK or a WHATWG reference parser
/// (`eventsource-parser`), and not by the Python SDK
/// (`python_sdk_gets_an_answer_or_a_clean_error_in_every_case`).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keep_alives_after_event_ids_are_read_as_no_event_by_any_client() {
    let (_up, gw) = gateway().await;
    let r = ask(&gw, "ids-paused", true).await;
    let text = r.text();
    assert!(text.contains(": keep-alive\n"), "{text}");
    assert!(
        text.contains("id: 1\n"),
        "the upstream's ids are kept: {text}"
    );
    let events = dispatched(&text);
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"), "{text}");
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value =
            serde_json::from_str(e).unwrap_or_else(|err| panic!("{err}: {e:?} in {text}"));
        assert_eq!(v["model"], "client-ids-paused");
    }
    assert_eq!(streamed_text(&r, "ids-paused"), "Hello there");

    let base = format!("http://{}/v1", gw.addr);
    let body = request("ids-paused", true);
    let curled = std::env::temp_dir().join(format!("chat2api-curl-{}.sse", std::process::id()));
    let node = support::sdk::node();
    let script = std::path::Path::new(support::sdk::ROOT).join("tests/sdk/keepalive_test.mjs");
    tokio::task::spawn_blocking(move || {
        support::sdk::run(
            std::process::Command::new("curl")
                .args(["-sSfN", "-o"])
                .arg(&curled)
                .args(["-H", "Content-Type: application/json", "-d", &body])
                .arg(format!("{base}/chat/completions")),
        );
        let events = dispatched(&std::fs::read_to_string(&curled).unwrap());
        assert_eq!(events.len(), 3, "curl's copy: {events:?}");
        support::sdk::run(
            std::process::Command::new(node)
                .arg(script)
                .arg(&base)
                .arg(&curled),
        );
        let _ = std::fs::remove_file(&curled);
    })
    .await
    .unwrap();
}
