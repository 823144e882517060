//! The rest of the OpenAI API over real sockets, against a scripted upstream
//! answering in OpenAI's shapes: audio (speech bytes passed through, forms
//! forwarded byte for byte), the Responses API over a chat-only provider
//! (`responses: "chat"`), endpoints a model is not served on, and the
//! official SDKs calling all of it.

mod support;

use std::time::{Duration, Instant};
use support::upstream::{chat_script, send, MockUpstream, Recorded, Step, SSE_HEAD};
use support::TestGateway;

/// Audio the scripted upstream speaks: every byte value, several times.
fn audio_bytes() -> Vec<u8> {
    (0..3000u32).map(|i| (i * 7 % 256) as u8).collect()
}

/// An OpenAI-shaped upstream. Chat answers say which tools they were
/// offered: with tools, a call of the first one; otherwise "Hello there".
fn script(req: &Recorded) -> Vec<Step> {
    let body = String::from_utf8_lossy(&req.body).into_owned();
    let json = |doc: serde_json::Value| {
        let doc = doc.to_string();
        vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nx-request-id: req_up\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        ))]
    };
    match req.path.as_str() {
        "/v1/audio/speech" => {
            let audio = audio_bytes();
            let (a, b) = audio.split_at(1000);
            let mut first = format!(
                "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nTransfer-Encoding: chunked\r\n\r\n{:x}\r\n",
                a.len()
            )
            .into_bytes();
            first.extend_from_slice(a);
            first.extend_from_slice(b"\r\n");
            let mut rest = format!("{:x}\r\n", b.len()).into_bytes();
            rest.extend_from_slice(b);
            rest.extend_from_slice(b"\r\n0\r\n\r\n");
            // The second half only after a pause: the first must not wait.
            let pause = if body.contains("slow") { 1500 } else { 0 };
            if body.contains("json200") {
                let error = r#"{"error":{"message":"voice not found"}}"#;
                return vec![send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{error}",
                    error.len()
                ))];
            }
            if body.contains("empty") {
                return vec![send(
                    "HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 0\r\n\r\n",
                )];
            }
            if body.contains("cut") {
                let mut cut =
                    b"HTTP/1.1 200 OK\r\nContent-Type: audio/mpeg\r\nContent-Length: 3000\r\n\r\n"
                        .to_vec();
                cut.extend_from_slice(a);
                return vec![Step::Send(cut), Step::Close];
            }
            vec![
                Step::Send(first),
                Step::Sleep(Duration::from_millis(pause)),
                Step::Send(rest),
            ]
        }
        "/v1/audio/transcriptions" | "/v1/audio/translations" => {
            // A silent clip: an empty transcript in every format, or (for
            // `bad-json`) an empty body where JSON was promised.
            if body.contains("SILENCE") {
                let format = ["text", "srt", "vtt", "bad-json"]
                    .into_iter()
                    .find(|f| body.contains(&format!("name=\"response_format\"\r\n\r\n{f}")));
                let (ct, doc) = match format {
                    Some("text") => ("text/plain; charset=utf-8", ""),
                    Some("srt") => ("application/x-subrip", ""),
                    Some("vtt") => ("text/vtt", ""),
                    Some(_) => ("application/json", ""),
                    None => ("application/json", r#"{"text":""}"#),
                };
                return vec![send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: {ct}\r\nContent-Length: {}\r\n\r\n{doc}",
                    doc.len()
                ))];
            }
            let text = format!("heard {} bytes", req.body.len());
            if body.contains("name=\"response_format\"\r\n\r\njson-with-model") {
                return json(serde_json::json!({"text": text, "model": "whisper-1"}));
            }
            if body.contains("name=\"stream\"\r\n\r\ntrue") {
                let mut out = SSE_HEAD.to_owned();
                for ev in [
                    serde_json::json!({"type": "transcript.text.delta", "delta": "heard", "model": "whisper-1"}),
                    serde_json::json!({"type": "transcript.text.done", "text": "heard"}),
                ] {
                    out.push_str(&support::upstream::chunked(&format!("data: {ev}\n\n")));
                }
                out.push_str("0\r\n\r\n");
                return vec![send(out)];
            }
            if body.contains("name=\"response_format\"\r\n\r\ntext") {
                return vec![send(format!(
                    "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: {}\r\n\r\n{text}\n",
                    text.len() + 1
                ))];
            }
            json(serde_json::json!({"text": text}))
        }
        "/v1/embeddings" => {
            let base64 = body.contains("\"base64\"");
            // [0.5, -0.25] as little-endian f32s, base64.
            let embedding = match base64 {
                true => serde_json::json!("AAAAPwAAgL4="),
                false => serde_json::json!([0.5, -0.25]),
            };
            json(
                serde_json::json!({"object": "list", "model": "text-embedding-3-small",
                "data": [{"object": "embedding", "index": 0, "embedding": embedding}],
                "usage": {"prompt_tokens": 1, "total_tokens": 1}}),
            )
        }
        "/v1/moderations" => json(
            serde_json::json!({"id": "modr-1", "model": "omni-moderation-latest",
            "results": [{"flagged": true, "categories": {"violence": true}, "category_scores": {"violence": 0.9}}]}),
        ),
        "/v1/images/generations" => json(serde_json::json!({"created": 1,
            "data": [{"b64_json": "iVBORw0KGgo="}]})),
        "/v1/responses" => {
            let stream = body.contains("\"stream\":true");
            let response = |status: &str, text: &str| {
                serde_json::json!({
                "id": "resp_up", "object": "response", "created_at": 1, "status": status,
                "model": "gpt-up", "output": if text.is_empty() { serde_json::json!([]) } else {
                    serde_json::json!([{"type": "message", "id": "msg_up", "status": "completed", "role": "assistant",
                        "content": [{"type": "output_text", "text": text, "annotations": []}]}]) },
                "usage": {"input_tokens": 2, "output_tokens": 2, "total_tokens": 4}})
            };
            if body.contains("error-200") {
                return json(
                    serde_json::json!({"error": {"message": "quota exceeded", "type": "insufficient_quota"}}),
                );
            }
            if !stream {
                return json(response("completed", "Hello there"));
            }
            let item = serde_json::json!({"type": "message", "id": "msg_up", "status": "in_progress",
                "role": "assistant", "content": []});
            let part = serde_json::json!({"type": "output_text", "text": "", "annotations": []});
            let events = [
                (
                    "response.created",
                    serde_json::json!({"response": response("in_progress", "")}),
                ),
                (
                    "response.output_item.added",
                    serde_json::json!({"output_index": 0, "item": item}),
                ),
                (
                    "response.content_part.added",
                    serde_json::json!({"item_id": "msg_up", "output_index": 0, "content_index": 0, "part": part}),
                ),
                (
                    "response.output_text.delta",
                    serde_json::json!({"item_id": "msg_up", "output_index": 0, "content_index": 0, "delta": "Hello"}),
                ),
                (
                    "response.output_text.delta",
                    serde_json::json!({"item_id": "msg_up", "output_index": 0, "content_index": 0, "delta": " there"}),
                ),
                (
                    "response.completed",
                    serde_json::json!({"response": response("completed", "Hello there")}),
                ),
            ];
            let events: Vec<_> = match () {
                // The upstream's own failure, or a stream that stops short.
                _ if body.contains("fail-stream") => events[..3]
                    .iter()
                    .cloned()
                    .chain([(
                        "response.failed",
                        serde_json::json!({"response": response("failed", "")}),
                    )])
                    .collect(),
                _ if body.contains("no-terminal") => events[..4].to_vec(),
                _ => events.to_vec(),
            };
            let mut out = SSE_HEAD.to_owned();
            for (n, (name, mut data)) in events.into_iter().enumerate() {
                data["type"] = serde_json::json!(name);
                data["sequence_number"] = serde_json::json!(n);
                out.push_str(&support::upstream::chunked(&format!(
                    "event: {name}\ndata: {data}\n\n"
                )));
            }
            out.push_str("0\r\n\r\n");
            vec![send(out)]
        }
        "/v1/chat/completions" => chat_script(req),
        _ => vec![send("HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")],
    }
}

/// A gateway in front of the scripted upstream: `up-*` models forwarded
/// natively, `chat-only` through `responses: "chat"`, `embed-only` served
/// only on embeddings; and the built-in mock as `mock-echo`.
async fn gateway() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start(script).await;
    let config = format!(
        r#"{{"requestTimeout": 5000, "retryCount": 0, "limits": {{"maxBodyBytes": 200000}},
  "providers": [
    {{"id": "up", "type": "openai", "baseUrl": "{base}", "accounts": [{{"id": "a", "apiKey": "sk-up"}}],
      "models": {{"up-model": "gpt-up", "whisper-alias": "whisper-1", "tts-alias": "tts-1",
        "embed-only": {{"upstream": "text-embedding-3-small", "endpoints": ["embeddings"]}}}}}},
    {{"id": "chat-provider", "type": "openai", "baseUrl": "{base}", "responses": "chat",
      "accounts": [{{"id": "a", "apiKey": "sk-up"}}], "models": {{"chat-only": "deepseek-chat"}}}},
    {{"id": "local", "type": "mock", "models": ["mock-echo"]}}]}}"#,
        base = up.base_url()
    );
    (up, TestGateway::start(&config).await)
}

/// A multipart form with a `file` part holding `file`, then `fields`.
fn form(boundary: &str, file: &[u8], fields: &[(&str, &str)]) -> Vec<u8> {
    let mut body = format!(
        "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"speech.mp3\"\r\nContent-Type: audio/mpeg\r\n\r\n"
    )
    .into_bytes();
    body.extend_from_slice(file);
    for (name, value) in fields {
        body.extend_from_slice(
            format!("\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"{name}\"\r\n\r\n{value}").as_bytes(),
        );
    }
    body.extend_from_slice(format!("\r\n--{boundary}--\r\n").as_bytes());
    body
}

fn form_request(path: &str, boundary: &str, body: &[u8]) -> Vec<u8> {
    let mut req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary={boundary}\r\nContent-Length: {}\r\n\r\n",
        body.len()
    )
    .into_bytes();
    req.extend_from_slice(body);
    req
}

#[tokio::test]
async fn speech_audio_streams_through_byte_for_byte() {
    let (up, gw) = gateway().await;
    let r = gw
        .post_json(
            "/v1/audio/speech",
            None,
            r#"{"model":"tts-alias","input":"Hi","voice":"alloy"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("audio/mpeg"));
    assert_eq!(
        r.header("x-request-id").map(|id| id.starts_with("req_")),
        Some(true)
    );
    assert_eq!(r.body, audio_bytes());
    assert_eq!(up.last().json()["model"], "tts-1", "the alias is rewritten");

    // The first piece reaches the client while the upstream still pauses
    // (1.5 s) before the second.
    let mut c = gw.connect().await;
    let body = r#"{"model":"tts-alias","input":"slow","voice":"alloy"}"#;
    c.send(support::post_request("/v1/audio/speech", "", body).as_bytes())
        .await;
    let asked = Instant::now();
    let got = read_until(&mut c.stream, &audio_bytes()[990..1000]).await;
    assert!(
        asked.elapsed() < Duration::from_millis(1200),
        "{:?}",
        asked.elapsed()
    );
    assert!(
        got.len() < 2000,
        "the second half came early: {} bytes",
        got.len()
    );
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Raw bytes from `stream` until `needle` arrived (panics after 5 s).
async fn read_until(stream: &mut tokio::net::TcpStream, needle: &[u8]) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    while !contains(&got, needle) {
        let mut tmp = [0u8; 4096];
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut tmp))
            .await
            .expect("no data within 5 s")
            .expect("read");
        assert!(n > 0, "closed before the bytes came");
        got.extend_from_slice(&tmp[..n]);
    }
    got
}

/// Raw bytes from `stream` until it closes (panics after 5 s).
async fn read_to_close(stream: &mut tokio::net::TcpStream) -> Vec<u8> {
    use tokio::io::AsyncReadExt;
    let mut got = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut got))
        .await
        .expect("not closed within 5 s")
        .expect("read");
    got
}

#[tokio::test]
async fn speech_that_is_no_audio_is_a_502() {
    let (_up, gw) = gateway().await;
    for (input, says) in [
        ("json200", "an error: voice not found"),
        ("empty", "an empty body"),
    ] {
        let body = format!(r#"{{"model":"tts-alias","input":"{input}","voice":"alloy"}}"#);
        let r = gw.post_json("/v1/audio/speech", None, &body).await;
        assert_eq!(r.status, 502, "{input}: {}", r.text());
        assert!(r.text().contains(says), "{input}: {}", r.text());
    }
    let r = gw
        .post_json(
            "/v1/audio/speech",
            None,
            r#"{"model":"tts-alias","input":5}"#,
        )
        .await;
    assert_eq!(r.status, 400);
    assert!(
        r.text().contains("'input' must be a string"),
        "{}",
        r.text()
    );
}

#[tokio::test]
async fn speech_cut_midway_reaches_the_client_cut() {
    let (_up, gw) = gateway().await;
    let mut c = gw.connect().await;
    let body = r#"{"model":"tts-alias","input":"cut","voice":"alloy"}"#;
    c.send(support::post_request("/v1/audio/speech", "", body).as_bytes())
        .await;
    let got = read_to_close(&mut c.stream).await;
    assert!(
        got.starts_with(b"HTTP/1.1 200 OK\r\n"),
        "{}",
        String::from_utf8_lossy(&got)
    );
    assert!(
        contains(&got, &audio_bytes()[990..1000]),
        "what came is passed on"
    );
    assert!(
        !got.ends_with(b"0\r\n\r\n"),
        "no last chunk: the client must see the body cut"
    );
    let s = gw.settled_stats().await;
    assert_eq!(s["failedRequests"], 1, "{s}");
}

#[tokio::test]
async fn transcription_forms_are_forwarded_byte_for_byte_with_the_alias() {
    let (up, gw) = gateway().await;
    let file: Vec<u8> = audio_bytes();
    for (path, format) in [
        ("/v1/audio/transcriptions", "json"),
        ("/v1/audio/translations", "text"),
    ] {
        let body = form(
            "b0undary",
            &file,
            &[("model", "whisper-alias"), ("response_format", format)],
        );
        let mut c = gw.connect().await;
        c.send(&form_request(path, "b0undary", &body)).await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        let got = up.last();
        assert_eq!(got.path, path);
        let expected = form(
            "b0undary",
            &file,
            &[("model", "whisper-1"), ("response_format", format)],
        );
        assert!(
            got.body == expected,
            "{path}: the form must arrive as sent, the model renamed"
        );
        assert_eq!(
            got.header("content-type"),
            Some("multipart/form-data; boundary=b0undary")
        );
        let heard = format!("heard {} bytes", expected.len());
        match format {
            "text" => {
                assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
                assert_eq!(r.text(), format!("{heard}\n"));
            }
            _ => assert_eq!(r.json()["text"], heard),
        }
    }
}

#[tokio::test]
async fn a_form_split_at_every_boundary_arrives_whole() {
    let (up, gw) = gateway().await;
    let body = form(
        "XyZ",
        b"RIFF\r\n--XyZ-no\x00\xff",
        &[("model", "whisper-alias"), ("stream", "false")],
    );
    let expected = form(
        "XyZ",
        b"RIFF\r\n--XyZ-no\x00\xff",
        &[("model", "whisper-1"), ("stream", "false")],
    );
    let request = form_request("/v1/audio/transcriptions", "XyZ", &body);
    let body_at = request.len() - body.len();
    // Every place a delimiter, a part head or a value begins or ends, and
    // the bytes either side.
    let mut splits: Vec<usize> = Vec::new();
    for (i, w) in body.windows(2).enumerate() {
        if w == b"\r\n" || w == b"--" || w[0] == b'"' {
            splits.extend([i, i + 1, i + 2]);
        }
    }
    splits.sort_unstable();
    splits.dedup();
    assert!(splits.len() > 40, "{}", splits.len());
    let mut c = gw.connect().await;
    for at in splits {
        let at = body_at + at.min(body.len());
        c.send(&request[..at]).await;
        tokio::time::sleep(Duration::from_millis(1)).await;
        c.send(&request[at..]).await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, 200, "split at {at}: {}", r.text());
        assert!(up.last().body == expected, "split at {at}");
    }
}

#[tokio::test]
async fn malformed_forms_are_clear_400s_before_any_upstream_call() {
    let (up, gw) = gateway().await;
    let good = form("B", b"x", &[("model", "whisper-alias")]);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            support::post_request("/v1/audio/transcriptions", "", r#"{"model":"whisper-alias"}"#).into_bytes(),
            "multipart/form-data",
        ),
        (form_request("/v1/audio/transcriptions", "B", &good[..good.len() - 8]), "closing boundary"),
        (form_request("/v1/audio/transcriptions", "B", b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-alias\r\n--B--"), "'file'"),
        (form_request("/v1/audio/transcriptions", "B", &form("B", b"x", &[])), "'model'"),
        (form_request("/v1/audio/translations", "", &good), "boundary"),
        (
            form_request("/v1/audio/transcriptions", "B", &form("B", b"x", &[("model", "gpt-4o"), ("model", "whisper-alias")])),
            "'model' field is given twice",
        ),
        (
            form_request(
                "/v1/audio/transcriptions",
                "B",
                b"--B\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\nwhisper-alias\r\n--B\r\nContent-Disposition: form-data; name=\"x\"\r\nContent-Disposition: form-data; name=\"model\"\r\n\r\ngpt-4o\r\n--B--\r\n",
            ),
            "two Content-Disposition headers",
        ),
    ];
    for (request, says) in cases {
        let mut c = gw.connect().await;
        c.send(&request).await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, 400, "{says}: {}", r.text());
        assert!(r.text().contains(says), "{says}: {}", r.text());
    }
    // A form larger than maxBodyBytes is refused from its head alone.
    let mut c = gw.connect().await;
    c.send(b"POST /v1/audio/transcriptions HTTP/1.1\r\nHost: x\r\nContent-Type: multipart/form-data; boundary=B\r\nContent-Length: 300000\r\n\r\n").await;
    let r = c.response().await.expect("an answer before the body");
    assert_eq!(r.status, 413);
    assert_eq!(up.count(), 0, "nothing reached the upstream");
}

#[tokio::test]
async fn streamed_transcripts_pass_their_events() {
    let (_up, gw) = gateway().await;
    let body = form("B", b"x", &[("model", "whisper-alias"), ("stream", "true")]);
    let mut c = gw.connect().await;
    c.send(&form_request("/v1/audio/transcriptions", "B", &body))
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let events = r.events();
    assert!(events[0].contains("transcript.text.delta"), "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    // The alias, as a JSON string, where the upstream named its model.
    let first: serde_json::Value = serde_json::from_str(&events[0]).expect("JSON");
    assert_eq!(first["model"], "whisper-alias");
}

#[tokio::test]
async fn responses_over_a_chat_only_provider() {
    let (up, gw) = gateway().await;
    // Plain: a Responses object with the alias and the usage mapped.
    let r = gw
        .post_json("/v1/responses", None, r#"{"model":"chat-only","input":"Hi","instructions":"Be brief.","max_output_tokens":20}"#)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["object"].as_str(), v["model"].as_str()),
        (Some("response"), Some("chat-only"))
    );
    assert_eq!(v["output"][0]["content"][0]["text"], "Hello there");
    assert_eq!(v["usage"]["input_tokens"], 3);
    assert_eq!(v["max_output_tokens"], 20);
    let sent = up.last();
    assert_eq!(sent.path, "/v1/chat/completions");
    let chat = sent.json();
    assert_eq!(chat["model"], "deepseek-chat");
    assert_eq!(
        chat["messages"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(chat["max_tokens"], 20);

    // Streamed: the typed event sequence, each with its `event:` line.
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"chat-only","input":"Hi","stream":true}"#,
        )
        .await;
    let events = r.sse();
    let names: Vec<&str> = events.iter().filter_map(|e| e.event.as_deref()).collect();
    assert_eq!(names.first(), Some(&"response.created"));
    assert_eq!(names.last(), Some(&"response.completed"));
    let text: String = events
        .iter()
        .filter(|e| e.event.as_deref() == Some("response.output_text.delta"))
        .map(|e| {
            serde_json::from_str::<serde_json::Value>(&e.data).unwrap()["delta"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    assert_eq!(text, "Hello there");
    let done: serde_json::Value = serde_json::from_str(&events[events.len() - 2].data).unwrap();
    assert_eq!(done["response"]["usage"]["total_tokens"], 5);
    assert_eq!(done["response"]["model"], "chat-only");

    // State chat2api does not hold (a response it never made, a stored
    // conversation) is a clear 400, and nothing is sent upstream.
    let before = up.count();
    for (body, param) in [
        (
            r#"{"model":"chat-only","input":"Hi","previous_response_id":"resp_1"}"#,
            "previous_response_id",
        ),
        (
            r#"{"model":"chat-only","input":"Hi","conversation":"conv_1"}"#,
            "conversation",
        ),
    ] {
        let r = gw.post_json("/v1/responses", None, body).await;
        assert_eq!(
            (r.status, r.json()["error"]["param"].as_str()),
            (400, Some(param))
        );
    }
    assert_eq!(up.count(), before);

    // A native provider gets the request as sent, the alias restored in
    // every event.
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"up-model","input":"Hi","stream":true}"#,
        )
        .await;
    for e in r.sse().iter().filter(|e| e.data != "[DONE]") {
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        if let Some(model) = v["response"]["model"].as_str() {
            assert_eq!(model, "up-model");
        }
    }
}

#[tokio::test]
async fn a_model_is_served_only_on_its_endpoints() {
    let (up, gw) = gateway().await;
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"embed-only","messages":[{"role":"user","content":"x"}]}"#,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "model_not_found".into()));
    assert!(r.text().contains("serves: embeddings"), "{}", r.text());
    assert_eq!(up.count(), 0);
    let r = gw
        .post_json(
            "/v1/embeddings",
            None,
            r#"{"model":"embed-only","input":"x"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["model"], "embed-only");
    let models = gw.get("/v1/models").await.json();
    let of = |id: &str| {
        models["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|m| m["id"] == id)
            .unwrap()["endpoints"]
            .clone()
    };
    assert_eq!(of("embed-only"), serde_json::json!(["embeddings"]));
    // Every endpoint, `messages` (the Anthropic translation) included.
    assert_eq!(of("up-model").as_array().unwrap().len(), 10);
}

/// The official Python and JavaScript SDKs call every endpoint against the
/// scripted upstream, through the Responses translation, and the mock.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_call_every_endpoint() {
    let (_up, gw) = gateway().await;
    let base = format!("http://{}/v1", gw.addr);
    let root = std::path::Path::new(support::sdk::ROOT);
    let py = support::sdk::python();
    let node = support::sdk::node();
    let (script, mjs) = (
        root.join("tests/sdk/endpoints_test.py"),
        root.join("tests/sdk/endpoints_test.mjs"),
    );
    tokio::task::spawn_blocking(move || {
        support::sdk::run(std::process::Command::new(py).arg(script).arg(&base));
        support::sdk::run(std::process::Command::new(node).arg(mjs).arg(&base));
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn failed_answers_from_native_upstreams_count_as_failed() {
    let (_up, gw) = gateway().await;
    // A 200 that carries an error is a 502 with the upstream's message.
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"up-model","input":"error-200"}"#,
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("quota exceeded"), "{}", r.text());
    // A Responses stream that fails, or stops before its terminal event.
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"up-model","input":"fail-stream","stream":true}"#,
        )
        .await;
    assert_eq!(
        r.sse()
            .iter()
            .filter_map(|e| e.event.as_deref())
            .next_back(),
        Some("response.failed")
    );
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"up-model","input":"no-terminal","stream":true}"#,
        )
        .await;
    let last = r.events().pop().unwrap();
    assert!(last.contains("ended before response.completed"), "{last}");
    // A chat completion without its choices is no answer.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"up-model","messages":[{"role":"user","content":"no-choices"}]}"#,
        )
        .await;
    assert_eq!(r.status, 502, "{}", r.text());
    assert!(r.text().contains("not an answer"), "{}", r.text());
    // Lines that are no chat chunk are left out; the real ones pass.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"up-model","stream":true,"messages":[{"role":"user","content":"junk"}]}"#,
        )
        .await;
    let events = r.events();
    assert_eq!(events.len(), 2, "{events:?}");
    assert!(
        events[0].contains("\"ok\"") && events[0].contains("up-model"),
        "{events:?}"
    );
    let s = gw.settled_stats().await;
    assert_eq!(
        (s["failedRequests"].as_u64(), s["successRequests"].as_u64()),
        (Some(4), Some(1)),
        "{s}"
    );
}

#[tokio::test]
async fn json_transcripts_carry_the_alias_and_stream_when_asked() {
    let (_up, gw) = gateway().await;
    for stream in ["false", "true"] {
        let body = form(
            "B",
            b"x",
            &[
                ("model", "whisper-alias"),
                ("response_format", "json-with-model"),
                ("stream", stream),
            ],
        );
        let mut c = gw.connect().await;
        c.send(&form_request("/v1/audio/transcriptions", "B", &body))
            .await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, 200, "{}", r.text());
        match stream {
            "false" => assert_eq!(r.json()["model"], "whisper-alias"),
            _ => {
                let events = r.events();
                assert!(events[0].contains("transcript.text.delta"), "{events:?}");
                assert!(events[1].contains("transcript.text.done"), "{events:?}");
            }
        }
    }
}

/// A silent clip transcribes to nothing: an empty text, srt or vtt
/// transcript (and JSON `{"text": ""}`) is a 200 answer, never retried or
/// counted against the deployment, so any number of them rest nothing and
/// a normal transcription still goes through. An empty body where JSON was
/// promised is no answer (502).
#[tokio::test]
async fn empty_transcripts_are_answers_and_rest_nothing() {
    let up = MockUpstream::start(script).await;
    let config = format!(
        r#"{{"requestTimeout": 5000, "retryCount": 1,
  "providers": [{{"id": "up", "type": "openai", "baseUrl": "{}",
    "accounts": [{{"id": "a", "apiKey": "sk-a"}}, {{"id": "b", "apiKey": "sk-b"}}],
    "models": {{"whisper-alias": "whisper-1"}}}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    let ask = |format: &'static str, file: &'static [u8]| {
        let gw = &gw;
        async move {
            let mut fields = vec![("model", "whisper-alias")];
            if !format.is_empty() {
                fields.push(("response_format", format));
            }
            let body = form("B", file, &fields);
            let mut c = gw.connect().await;
            c.send(&form_request("/v1/audio/transcriptions", "B", &body))
                .await;
            c.response().await.expect("an answer")
        }
    };
    for _ in 0..2 {
        for (format, ct) in [
            ("text", "text/plain; charset=utf-8"),
            ("srt", "application/x-subrip"),
            ("vtt", "text/vtt"),
        ] {
            let r = ask(format, b"SILENCE").await;
            assert_eq!(r.status, 200, "{format}: {}", r.text());
            assert_eq!(r.header("content-type"), Some(ct), "{format}");
            assert_eq!(r.header("content-length"), Some("0"), "{format}");
            assert_eq!(r.text(), "", "{format}");
        }
        let r = ask("", b"SILENCE").await;
        assert_eq!(
            (r.status, r.json()["text"].as_str()),
            (200, Some("")),
            "{}",
            r.text()
        );
    }
    let r = ask("bad-json", b"SILENCE").await;
    assert_eq!(r.status, 502, "{}", r.text());
    let r = ask("text", b"speech").await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.text().starts_with("heard "), "{}", r.text());
    let s = gw.settled_stats().await;
    assert_eq!(
        (s["successRequests"].as_u64(), s["failedRequests"].as_u64()),
        (Some(9), Some(1)),
        "{s}"
    );
    // Only the empty JSON body was retried (once, on the other account),
    // and nothing rests.
    assert_eq!(
        (s["retries"].as_u64(), s["rests"].as_u64()),
        (Some(1), Some(0)),
        "{s}"
    );
    assert!(!s["health"].to_string().contains("resting"), "{s}");
}

/// The shape of a JSON value: its keys (recursively) and value kinds, not
/// its values.
fn shape(v: &serde_json::Value) -> serde_json::Value {
    use serde_json::Value;
    match v {
        Value::Object(m) => Value::Object(m.iter().map(|(k, v)| (k.clone(), shape(v))).collect()),
        Value::Array(items) => Value::Array(items.iter().take(1).map(shape).collect()),
        Value::String(_) => "string".into(),
        Value::Number(_) => "number".into(),
        Value::Bool(_) => "bool".into(),
        Value::Null => Value::Null,
    }
}

/// The mock and a `responses: "chat"` provider answer the same Responses
/// request in one shape, plain and streamed: the mock's answers go through
/// the same translation (same keys and kinds in the object, the same event
/// sequence once repeated deltas are counted once).
#[tokio::test]
async fn the_mock_and_a_chat_provider_answer_responses_in_one_shape() {
    let (_up, gw) = gateway().await;
    let ask = |model: &str, stream: bool| {
        format!(r#"{{"model":"{model}","input":"Hi","stream":{stream},"max_output_tokens":50}}"#)
    };
    let mut shapes = Vec::new();
    let mut sequences = Vec::new();
    for model in ["mock-echo", "chat-only"] {
        let r = gw
            .post_json("/v1/responses", None, &ask(model, false))
            .await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let mut v = r.json();
        // Identity and timing differ by nature, not by shape.
        for key in ["id", "created_at"] {
            v[key] = serde_json::Value::Null;
        }
        shapes.push(shape(&v));
        let r = gw.post_json("/v1/responses", None, &ask(model, true)).await;
        let mut names: Vec<String> = r
            .text()
            .lines()
            .filter_map(|l| l.strip_prefix("event: "))
            .map(str::to_owned)
            .collect();
        names.dedup();
        sequences.push(names);
    }
    assert_eq!(shapes[0], shapes[1], "plain");
    assert_eq!(sequences[0], sequences[1], "streamed");
    assert_eq!(
        sequences[0].last().map(String::as_str),
        Some("response.completed")
    );
}

/// Every Responses answer's tokens are counted, plain and streamed, native
/// (the usage inside `response.completed`), translated and from the mock.
#[tokio::test]
async fn responses_tokens_are_counted_plain_and_streamed() {
    for (model, stream) in [
        ("up-model", false),
        ("up-model", true),
        ("chat-only", true),
        ("mock-echo", true),
    ] {
        let (_up, gw) = gateway().await;
        let body = format!(r#"{{"model":"{model}","input":"Hi","stream":{stream}}}"#);
        let r = gw.post_json("/v1/responses", None, &body).await;
        assert_eq!(r.status, 200, "{model}: {}", r.text());
        let s = gw.settled_stats().await;
        let (prompt, completion) = (
            s["tokens"]["prompt"].as_u64().unwrap(),
            s["tokens"]["completion"].as_u64().unwrap(),
        );
        assert!(prompt > 0 && completion > 0, "{model} stream={stream}: {s}");
    }
}

/// A Responses turn with the tools Codex sends (a namespace of functions,
/// `web_search`) onto a chat provider: the namespace flattened, the hosted
/// tool left out and named in a header; chat2api's own answer, replayed as
/// the next turn's input, goes upstream as one assistant message.
#[tokio::test]
async fn an_agent_turn_and_its_replay_reach_a_chat_provider() {
    let (up, gw) = gateway().await;
    let body = r#"{"model":"chat-only","input":"Weather in Oslo?","tools":[
        {"type":"namespace","name":"weather","description":"w","tools":[
            {"type":"function","name":"get","parameters":{"type":"object"}}]},
        {"type":"web_search"}]}"#;
    let r = gw.post_json("/v1/responses", None, body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("x-chat2api-dropped-tools"), Some("web_search"));
    let sent = up.last().json();
    assert_eq!(sent["tools"][0]["function"]["name"], "weather__get");
    assert_eq!(sent["tools"].as_array().unwrap().len(), 1);
    let out = r.json()["output"].clone();
    let call = out
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["type"] == "function_call")
        .unwrap()
        .clone();
    assert_eq!(
        (call["name"].as_str(), call["namespace"].as_str()),
        (Some("get"), Some("weather"))
    );
    // The next turn: the output replayed (call first, as the upstream sent
    // it), then the tool's answer.
    let mut input = vec![serde_json::json!({"role": "user", "content": "Weather in Oslo?"})];
    input.extend(out.as_array().unwrap().iter().rev().cloned());
    input.push(serde_json::json!({"type": "function_call_output", "call_id": call["call_id"], "output": "rain"}));
    let next = serde_json::json!({"model": "chat-only", "input": input, "tools": serde_json::from_str::<serde_json::Value>(body).unwrap()["tools"]});
    let r = gw.post_json("/v1/responses", None, &next.to_string()).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last().json();
    let roles: Vec<&str> = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["role"].as_str().unwrap())
        .collect();
    assert_eq!(roles, ["user", "assistant", "tool"], "{sent}");
    assert_eq!(
        sent["messages"][1]["tool_calls"][0]["function"]["name"],
        "weather__get"
    );
    assert_eq!(
        r.json()["output"][0]["content"][0]["text"],
        "It rains in Oslo."
    );
}

/// Agent loops that keep state in chat2api's response store, onto a
/// chat-only provider: the Python SDK continuing by
/// `previous_response_id` (and reading back, listing and deleting the
/// stored responses), the Vercel AI SDK's default provider over three
/// turns with a tool call, which refers to earlier items by
/// `item_reference`, the OpenAI Agents SDK's tool loop (plain, continued
/// by `previous_response_id`, streamed), and langchain-openai's Responses
/// client through the same loop (plain, streamed, continued).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_loops_continue_from_the_response_store() {
    let (_up, gw) = gateway().await;
    let base = format!("http://{}/v1", gw.addr);
    let root = std::path::Path::new(support::sdk::ROOT);
    let py = support::sdk::python();
    let node = support::sdk::node();
    let (script, mjs) = (
        root.join("tests/sdk/responses_loop_test.py"),
        root.join("tests/sdk/responses_loop_test.mjs"),
    );
    let agents = root.join("tests/sdk/agents_sdk_test.py");
    let langchain = root.join("tests/sdk/langchain_test.py");
    tokio::task::spawn_blocking(move || {
        for (program, script) in [(&py, script), (&node, mjs), (&py, agents), (&py, langchain)] {
            support::sdk::run(
                std::process::Command::new(program)
                    .arg(script)
                    .arg(&base)
                    .arg("chat-only"),
            );
        }
    })
    .await
    .unwrap();
}

/// The store over raw sockets: an `item_reference` to an item chat2api
/// made, resolved; one to an unknown id, a 400 naming it; `GET` of an
/// unknown response, a 404 naming it.
#[tokio::test]
async fn item_references_resolve_from_the_store() {
    let (up, gw) = gateway().await;
    let r = gw
        .post_json(
            "/v1/responses",
            None,
            r#"{"model":"chat-only","input":"Hi"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let item = r.json()["output"][0]["id"].as_str().unwrap().to_owned();
    let body = format!(
        r#"{{"model":"chat-only","input":[{{"role":"user","content":"Hi"}},{{"type":"item_reference","id":"{item}"}},{{"role":"user","content":"More"}}]}}"#
    );
    let r = gw.post_json("/v1/responses", None, &body).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last().json();
    assert_eq!(sent["messages"][1]["role"], "assistant");
    assert_eq!(sent["messages"][1]["content"], "Hello there");
    let body = r#"{"model":"chat-only","input":[{"type":"item_reference","id":"msg_nowhere"}]}"#;
    let r = gw.post_json("/v1/responses", None, body).await;
    assert_eq!(r.status, 400);
    assert!(r.text().contains("msg_nowhere"), "{}", r.text());
    let r = gw.get("/v1/responses/resp_nowhere").await;
    assert_eq!(r.status, 404);
    assert!(r.text().contains("resp_nowhere"), "{}", r.text());
}

/// One request to a gateway child process at `addr`.
async fn call(addr: &str, method: &str, path: &str, body: &str) -> support::Response {
    let mut c = support::Client::connect(addr.parse().unwrap()).await;
    let raw = match method {
        "POST" => support::post_request(path, "", body),
        _ => format!("{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n"),
    };
    c.send(raw.as_bytes()).await;
    c.response().await.expect("a response")
}

/// With `sharedState.redis` the response store lives in Redis (a real
/// `redis-server`): two gateway processes, each with its own memory,
/// continue each other's conversations (`previous_response_id`,
/// `item_reference`), read each other's responses, and a deletion on one
/// holds on the other. While Redis is down, each continues what it made
/// itself, and the other cannot.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_share_stored_responses_through_redis() {
    let mut redis = support::redis::RedisServer::start();
    let config = support::binary::temp_file(
        "shared-store.json",
        &format!(
            r#"{{"sharedState": {{"redis": "{}"}},
  "providers": [{{"id": "local", "type": "mock", "models": ["mock-echo"], "tokenDelayMs": 0}}]}}"#,
            redis.url()
        ),
    );
    let args = [
        "--config",
        config.to_str().unwrap(),
        "--port",
        "0",
        "--management-port",
        "0",
    ];
    let (a, b) = (support::binary::spawn(&args), support::binary::spawn(&args));
    let (a, b) = (a.addr.clone(), b.addr.clone());

    let first = call(
        &a,
        "POST",
        "/v1/responses",
        r#"{"model":"mock-echo","input":"Remember the word teal"}"#,
    )
    .await;
    assert_eq!(first.status, 200, "{}", first.text());
    let id1 = first.json()["id"].as_str().unwrap().to_owned();
    // B continues A's conversation: the input it answered holds A's turn.
    let body =
        format!(r#"{{"model":"mock-echo","previous_response_id":"{id1}","input":"Which word?"}}"#);
    let second = call(&b, "POST", "/v1/responses", &body).await;
    assert_eq!(second.status, 200, "{}", second.text());
    let id2 = second.json()["id"].as_str().unwrap().to_owned();
    let items = call(
        &b,
        "GET",
        &format!("/v1/responses/{id2}/input_items?order=asc"),
        "",
    )
    .await;
    assert_eq!(items.status, 200, "{}", items.text());
    let texts = items.text();
    assert!(
        texts.contains("Remember the word teal") && texts.contains("Which word?"),
        "{texts}"
    );
    // B reads A's response as A sent it.
    let read = call(&b, "GET", &format!("/v1/responses/{id1}"), "").await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), first.json());
    // A refers to the item B made.
    let item2 = second.json()["output"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let body = format!(
        r#"{{"model":"mock-echo","input":[{{"type":"item_reference","id":"{item2}"}},{{"role":"user","content":"And again?"}}]}}"#
    );
    let third = call(&a, "POST", "/v1/responses", &body).await;
    assert_eq!(third.status, 200, "{}", third.text());

    // Deleted on B: gone on A too, although A holds it in memory.
    let deleted = call(&b, "DELETE", &format!("/v1/responses/{id1}"), "").await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    assert_eq!(deleted.json()["deleted"], true);
    assert_eq!(
        call(&a, "GET", &format!("/v1/responses/{id1}"), "")
            .await
            .status,
        404
    );
    let body =
        format!(r#"{{"model":"mock-echo","previous_response_id":"{id1}","input":"Again?"}}"#);
    let refused = call(&a, "POST", "/v1/responses", &body).await;
    assert_eq!(refused.status, 400);
    assert!(
        refused.text().contains(&id1) && refused.text().contains("shared Redis"),
        "{}",
        refused.text()
    );
    assert_eq!(
        call(&b, "DELETE", &format!("/v1/responses/{id1}"), "")
            .await
            .status,
        404
    );

    // Redis down: A continues its own conversation from memory; B, which
    // never saw it, cannot.
    redis.stop();
    let made = call(
        &a,
        "POST",
        "/v1/responses",
        r#"{"model":"mock-echo","input":"Offline"}"#,
    )
    .await;
    assert_eq!(made.status, 200, "{}", made.text());
    let id4 = made.json()["id"].as_str().unwrap().to_owned();
    let body =
        format!(r#"{{"model":"mock-echo","previous_response_id":"{id4}","input":"Still here?"}}"#);
    assert_eq!(call(&a, "POST", "/v1/responses", &body).await.status, 200);
    assert_eq!(call(&b, "POST", "/v1/responses", &body).await.status, 400);
}
