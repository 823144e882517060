//! The Anthropic Messages API (`/v1/messages`, docs/wire.md §3) over real
//! sockets: translated onto a scripted OpenAI-chat upstream and onto the
//! mock, checked on the wire and with the official Anthropic SDKs (Python
//! and JavaScript), which are the judges of the shapes.

mod support;

use support::upstream::{chat_script, messages_script, MockUpstream};
use support::TestGateway;

/// A gateway with client keys: `claude-alias` served by a scripted chat
/// upstream (as `deepseek-chat`), `mock-echo` by the mock.
async fn gateway() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start(chat_script).await;
    let config = format!(
        r#"{{"apiKeys": ["sk-test"], "requestTimeout": 5000, "retryCount": 0,
  "providers": [
    {{"id": "chat", "type": "openai", "baseUrl": "{}", "accounts": [{{"id": "a", "apiKey": "sk-up"}}],
      "models": {{"claude-alias": "deepseek-chat"}}}},
    {{"id": "local", "type": "mock", "models": ["mock-echo"]}}]}}"#,
        up.base_url()
    );
    (up, TestGateway::start(&config).await)
}

const TOOL_ASK: &str = r#"{"model":"claude-alias","max_tokens":256,
  "tools":[{"name":"get_weather","description":"The weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
  "system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
  "messages":[{"role":"user","content":"Weather in Oslo?"}]STREAM}"#;

fn ask(stream: bool) -> String {
    TOOL_ASK.replace("STREAM", if stream { r#","stream":true"# } else { "" })
}

/// What Claude Code sends: `x-api-key`, `anthropic-version`, a query string.
fn messages_request(body: &str, key: &str) -> String {
    format!(
        "POST /v1/messages?beta=true HTTP/1.1\r\nHost: gw\r\nx-api-key: {key}\r\nanthropic-version: 2023-06-01\r\nanthropic-beta: interleaved-thinking-2025-05-14\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

#[tokio::test]
async fn a_tool_call_comes_back_as_a_tool_use_block() {
    let (up, gw) = gateway().await;
    let mut c = gw.connect().await;
    c.send(messages_request(&ask(false), "sk-test").as_bytes())
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let m = r.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "claude-alias");
    assert_eq!(m["stop_reason"], "tool_use");
    assert_eq!(m["content"][0]["type"], "tool_use");
    assert_eq!(
        m["content"][0]["input"],
        serde_json::json!({"city": "Oslo"})
    );
    // The chat request the upstream got: the alias's upstream name, the
    // system message first, the tool as a function, no cache_control.
    let sent = up.last().json();
    assert_eq!(up.last().path, "/v1/chat/completions");
    assert_eq!(sent["model"], "deepseek-chat");
    assert_eq!(
        sent["messages"][0],
        serde_json::json!({"role": "system", "content": "Be brief."})
    );
    assert_eq!(sent["tools"][0]["function"]["name"], "get_weather");
    assert!(!String::from_utf8_lossy(&up.last().body).contains("cache_control"));
    // The client's key is never forwarded.
    assert_eq!(up.last().header("x-api-key"), None);
}

#[tokio::test]
async fn a_stream_is_anthropic_events_without_done() {
    let (_up, gw) = gateway().await;
    let mut c = gw.connect().await;
    c.send(messages_request(&ask(true), "sk-test").as_bytes())
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("text/event-stream"));
    let text = r.text();
    assert!(!text.contains("[DONE]"), "{text}");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.first(), Some(&"message_start"), "{text}");
    assert_eq!(names.last(), Some(&"message_stop"), "{text}");
    assert!(names.contains(&"message_delta"), "{text}");
    let partial: String = r
        .events()
        .iter()
        .filter_map(|e| serde_json::from_str::<serde_json::Value>(e).ok())
        .filter(|v| v["delta"]["type"] == "input_json_delta")
        .map(|v| v["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(partial, r#"{"city":"Oslo"}"#, "every fragment passed on");
    let s = gw.settled_stats().await;
    assert_eq!(s["successRequests"], 1, "{s}");
    assert_eq!(s["tokens"]["prompt"], 3, "{s}");
}

#[tokio::test]
async fn errors_are_in_anthropic_shape_with_their_status() {
    let (_up, gw) = gateway().await;
    for (body, key, status, kind) in [
        (ask(false), "sk-wrong", 401, "authentication_error"),
        (
            ask(false).replace("claude-alias", "no-such"),
            "sk-test",
            404,
            "not_found_error",
        ),
        (
            ask(false).replace("\"max_tokens\":256,", ""),
            "sk-test",
            400,
            "invalid_request_error",
        ),
        (
            "{not json".to_owned(),
            "sk-test",
            400,
            "invalid_request_error",
        ),
    ] {
        let mut c = gw.connect().await;
        c.send(messages_request(&body, key).as_bytes()).await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, status, "{}", r.text());
        let v = r.json();
        assert_eq!(v["type"], "error", "{v}");
        assert_eq!(v["error"]["type"], kind, "{v}");
        assert!(v["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()));
        assert!(r.header("x-request-id").is_some());
    }
}

#[tokio::test]
async fn count_tokens_and_the_model_list_answer_in_anthropic_shape() {
    let (_up, gw) = gateway().await;
    let body = r#"{"model":"claude-alias","messages":[{"role":"user","content":"Hello, world"}]}"#;
    let raw = messages_request(body, "sk-test")
        .replace("/v1/messages?beta=true", "/v1/messages/count_tokens");
    let mut c = gw.connect().await;
    c.send(raw.as_bytes()).await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["input_tokens"], 9);
    let mut c = gw.connect().await;
    c.send(b"GET /v1/models HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-test\r\nanthropic-version: 2023-06-01\r\n\r\n")
        .await;
    let r = c.response().await.expect("an answer");
    let v = r.json();
    assert_eq!(v["has_more"], false, "{v}");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .all(|m| m["type"] == "model"));
}

/// The official Anthropic SDKs, Python and JavaScript: create and stream
/// with a tool round trip onto the chat upstream and the mock,
/// count_tokens, errors.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_anthropic_sdks_work_against_chat_providers_and_the_mock() {
    let py = support::sdk::python();
    let node = support::sdk::node();
    let (_up, gw) = gateway().await;
    let base = format!("http://{}", gw.addr);
    let root = std::path::Path::new(support::sdk::ROOT).join("tests/sdk");
    tokio::task::spawn_blocking(move || {
        support::sdk::run(
            std::process::Command::new(py)
                .arg(root.join("anthropic_test.py"))
                .arg(&base),
        );
        support::sdk::run(
            std::process::Command::new(node)
                .arg(root.join("anthropic_test.mjs"))
                .arg(&base),
        );
    })
    .await
    .unwrap();
}

/// What the Anthropic translation must get right whatever the upstream or
/// the client does (found by attacking it): an error inside the chat
/// stream is the stream's last event, with the upstream read no further;
/// errors of the HTTP layer and of count_tokens keep Anthropic's shape.
#[tokio::test]
async fn errors_of_every_layer_keep_anthropic_shape() {
    let up = MockUpstream::start(|_| {
        let chunk = support::upstream::chunk("up", "Hi");
        vec![
            support::upstream::send(format!(
                "{}{}{}",
                support::upstream::SSE_HEAD,
                support::upstream::chunked(&format!("data: {chunk}\n\n")),
                support::upstream::chunked("data: {\"error\":{\"message\":\"boom\"}}\n\n")
            )),
            support::upstream::Step::Hang,
        ]
    })
    .await;
    let config = format!(
        r#"{{"apiKeys": ["sk-test"], "retryCount": 0, "limits": {{"maxBodyBytes": 100000}},
  "providers": [{{"id": "chat", "type": "openai", "baseUrl": "{}", "accounts": [{{"id": "a"}}],
    "models": {{"claude-alias": "up"}}}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    let mut c = gw.connect().await;
    c.send(messages_request(&ask(true), "sk-test").as_bytes())
        .await;
    let r = c
        .response()
        .await
        .expect("the stream ends at its error event");
    let text = r.text();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(names.last(), Some(&"error"), "{text}");
    assert_eq!(text.matches("boom").count(), 1, "{text}");
    assert!(
        !text.contains("upstream_error"),
        "no OpenAI-shaped error after it: {text}"
    );

    // A body over the limit: the HTTP layer's 413, in Anthropic's shape.
    let mut c = gw.connect().await;
    c.send(b"POST /v1/messages HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-test\r\nContent-Length: 99999999\r\n\r\n")
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 413);
    assert_eq!(
        r.json()["error"]["type"],
        "request_too_large",
        "{}",
        r.text()
    );

    // count_tokens for a model nobody serves; a path under /v1/messages.
    for (path, body, status) in [
        (
            "/v1/messages/count_tokens",
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
            404,
        ),
        ("/v1/messages/batches", "{}", 404),
    ] {
        let raw = messages_request(body, "sk-test").replace("/v1/messages?beta=true", path);
        let mut c = gw.connect().await;
        c.send(raw.as_bytes()).await;
        let r = c.response().await.expect("an answer");
        assert_eq!(r.status, status, "{path}: {}", r.text());
        assert_eq!(r.json()["type"], "error", "{path}: {}", r.text());
    }
}

// ---- A native Anthropic provider (`"type": "anthropic"`) ----

/// A gateway whose `claude-native` is served (as `claude-sonnet-4-5`) by
/// a scripted native Anthropic upstream ([`messages_script`]), and
/// `mock-echo` by the mock.
async fn native_gateway() -> (MockUpstream, TestGateway) {
    let up = MockUpstream::start(messages_script).await;
    let config = format!(
        r#"{{"apiKeys": ["sk-test"], "requestTimeout": 5000, "retryCount": 0,
  "providers": [
    {{"id": "claude", "type": "anthropic", "baseUrl": "{}", "accounts": [{{"id": "a", "apiKey": "sk-ant-up"}}],
      "models": {{"claude-native": "claude-sonnet-4-5"}}}},
    {{"id": "local", "type": "mock", "models": ["mock-echo"]}}]}}"#,
        up.base_url()
    );
    (up, TestGateway::start(&config).await)
}

const NATIVE_ASK: &str = r#"{"model":"claude-native","max_tokens":256,"thinking":{"type":"enabled","budget_tokens":1024},
  "tools":[{"name":"get_weather","input_schema":{"type":"object"},"cache_control":{"type":"ephemeral"}}],
  "messages":[{"role":"user","content":[{"type":"text","text":"Weather in Oslo?","cache_control":{"type":"ephemeral"}}]}]STREAM}"#;

/// `/v1/messages` to an Anthropic provider passes through: the alias
/// rewritten, the account's key in `x-api-key`, the client's
/// `anthropic-version` and `anthropic-beta` forwarded, everything else of
/// the request (cache_control, thinking) byte for byte, and the answer's
/// thinking block and its signature as the upstream sent them.
#[tokio::test]
async fn messages_pass_through_to_an_anthropic_provider() {
    let (up, gw) = native_gateway().await;
    let body = NATIVE_ASK.replace("STREAM", "");
    let mut c = gw.connect().await;
    c.send(messages_request(&body, "sk-test").as_bytes()).await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-up"));
    assert_eq!(sent.header("authorization"), None);
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(
        sent.header("anthropic-beta"),
        Some("interleaved-thinking-2025-05-14")
    );
    let expected = body.replace("\"claude-native\"", "\"claude-sonnet-4-5\"");
    assert_eq!(String::from_utf8_lossy(&sent.body), expected);
    assert!(
        r.text()
            .contains(r#""signature":"EqQBCkYIARgCIkD+sig/with=chars""#),
        "{}",
        r.text()
    );
    let m = r.json();
    assert_eq!(m["model"], "claude-native");
    assert_eq!(
        m["content"][1]["input"],
        serde_json::json!({"city": "Oslo"})
    );
    assert_eq!(r.header("request-id"), Some("req_native"));

    // Streamed: Anthropic's events as they came, the model in
    // `message_start` rewritten, no `[DONE]`; the tokens counted.
    let mut c = gw.connect().await;
    c.send(
        messages_request(
            &NATIVE_ASK.replace("STREAM", r#","stream":true"#),
            "sk-test",
        )
        .as_bytes(),
    )
    .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    assert!(!text.contains("[DONE]"), "{text}");
    assert!(text.contains(r#""model":"claude-native""#), "{text}");
    assert!(!text.contains("claude-sonnet-4-5"), "{text}");
    assert!(
        text.contains(r#""signature":"EqQBCkYIARgCIkD+sig/with=chars","type":"signature_delta""#),
        "{text}"
    );
    assert!(
        text.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{text}"
    );
    let stats = gw.settled_stats().await;
    assert_eq!(stats["keyUsage"]["key1"]["promptTokens"], 6, "{stats}");
    assert_eq!(stats["keyUsage"]["key1"]["completionTokens"], 4, "{stats}");

    // count_tokens is the provider's own (exact).
    let count = r#"{"model":"claude-native","messages":[{"role":"user","content":"Hi"}]}"#;
    let r = gw
        .request(&format!(
            "POST /v1/messages/count_tokens HTTP/1.1\r\nHost: gw\r\nx-api-key: sk-test\r\nanthropic-version: 2023-06-01\r\nContent-Length: {}\r\n\r\n{count}",
            count.len()
        ))
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["input_tokens"], 42);
    assert_eq!(up.last().path, "/v1/messages/count_tokens");
    assert_eq!(up.last().json()["model"], "claude-sonnet-4-5");
}

/// A stream cut before `message_stop` ends with Anthropic's `error` event
/// for a Messages client, and with an error chunk (no `[DONE]`) for a chat
/// client.
#[tokio::test]
async fn a_native_stream_cut_short_ends_with_an_error_event() {
    let (_up, gw) = native_gateway().await;
    let body = r#"{"model":"claude-native","max_tokens":64,"stream":true,"messages":[{"role":"user","content":"cut"}]}"#;
    let mut c = gw.connect().await;
    c.send(messages_request(body, "sk-test").as_bytes()).await;
    let text = c.response().await.expect("an answer").text();
    let error = text
        .split("event: error\ndata: ")
        .nth(1)
        .unwrap_or_else(|| panic!("no error event: {text}"));
    let error: serde_json::Value = serde_json::from_str(error.trim()).expect("error JSON");
    assert_eq!(error["type"], "error");
    assert!(error["error"]["message"]
        .as_str()
        .unwrap()
        .contains("broke off"));
    assert!(!text.contains("message_stop"), "{text}");
    let chat =
        r#"{"model":"claude-native","stream":true,"messages":[{"role":"user","content":"cut"}]}"#;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-test"), chat)
        .await;
    let text = r.text();
    assert!(text.contains("\"Hello"), "{text}");
    assert!(text.contains("\"error\""), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");
}

/// Chat completions onto an Anthropic provider, on the wire: the request
/// the upstream gets (system hoisted, image as base64, tools with their
/// schema, max_tokens always sent, anthropic-version added), and the
/// answer as a chat completion.
#[tokio::test]
async fn chat_completions_reach_an_anthropic_provider() {
    let (up, gw) = native_gateway().await;
    let body = r#"{"model":"claude-native","messages":[{"role":"system","content":"Be brief."},
      {"role":"user","content":[{"type":"text","text":"Weather?"},{"type":"image_url","image_url":{"url":"data:image/jpeg;base64,/9j/AA=="}}]}],
      "tools":[{"type":"function","function":{"name":"get_weather","parameters":{"type":"object","properties":{"city":{"type":"string"}}}}}],
      "reasoning_effort":"low"}"#;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-test"), body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let sent = up.last();
    assert_eq!(sent.path, "/v1/messages");
    assert_eq!(sent.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(sent.header("x-api-key"), Some("sk-ant-up"));
    let m = sent.json();
    assert_eq!(m["model"], "claude-sonnet-4-5");
    assert_eq!(m["system"][0]["text"], "Be brief.");
    assert_eq!(
        m["messages"][0]["content"][1]["source"]["media_type"],
        "image/jpeg"
    );
    assert_eq!(
        m["tools"][0]["input_schema"]["properties"]["city"]["type"],
        "string"
    );
    assert_eq!(m["thinking"]["budget_tokens"], 1024);
    let c = r.json();
    assert_eq!(c["object"], "chat.completion");
    assert_eq!(c["model"], "claude-native");
    assert_eq!(c["choices"][0]["finish_reason"], "tool_calls");
    let msg = &c["choices"][0]["message"];
    assert_eq!(msg["reasoning_content"], "The user asks about Oslo.");
    assert_eq!(msg["tool_calls"][0]["id"], "toolu_1");
    assert_eq!(
        msg["tool_calls"][0]["function"]["arguments"],
        r#"{"city":"Oslo"}"#
    );
    assert_eq!(c["usage"]["prompt_tokens"], 3);
}

/// The OpenAI Python SDK onto an Anthropic provider: chat with tools and
/// an image, plain and streamed; the Responses API with a tool round trip,
/// plain and streamed. And the Anthropic SDKs (Python and JavaScript)
/// onto the same provider, passed through.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sdks_work_against_an_anthropic_provider() {
    let py = support::sdk::python();
    let node = support::sdk::node();
    let (_up, gw) = native_gateway().await;
    let base = format!("http://{}", gw.addr);
    let root = std::path::Path::new(support::sdk::ROOT).join("tests/sdk");
    tokio::task::spawn_blocking(move || {
        support::sdk::run(
            std::process::Command::new(&py)
                .arg(root.join("openai_on_anthropic_test.py"))
                .arg(format!("{base}/v1"))
                .arg("claude-native"),
        );
        support::sdk::run(
            std::process::Command::new(&py)
                .arg(root.join("anthropic_test.py"))
                .arg(&base)
                .arg("claude-native"),
        );
        support::sdk::run(
            std::process::Command::new(node)
                .arg(root.join("anthropic_test.mjs"))
                .arg(&base)
                .arg("claude-native"),
        );
    })
    .await
    .unwrap();
}

/// A native Messages stream that carries an `error` event ends there, with
/// that one error; the provider's own error bodies pass as they came; a
/// whole message where a stream was asked for becomes
/// the events a stream of it would have been; input tokens read from the
/// prompt cache count as prompt tokens, streamed or not.
#[tokio::test]
async fn native_streams_end_once_replay_whole_answers_and_count_the_cache() {
    let (_up, gw) = native_gateway().await;
    let ask = |text: &str, stream: bool| {
        format!(
            r#"{{"model":"claude-native","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"{text}"}}]}}"#
        )
    };
    let mut c = gw.connect().await;
    c.send(messages_request(&ask("overloaded", true), "sk-test").as_bytes())
        .await;
    let text = c.response().await.expect("an answer").text();
    assert_eq!(text.matches("event: error").count(), 1, "{text}");
    assert!(text.contains("overloaded_error"), "{text}");

    let mut c = gw.connect().await;
    c.send(messages_request(&ask("whole", true), "sk-test").as_bytes())
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let text = r.text();
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("event: "))
        .collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop"
        ],
        "{text}"
    );
    assert!(text.contains(r#""model":"claude-native""#), "{text}");
    assert!(text.contains(r#""text":"Hello there""#), "{text}");
    assert!(!text.contains("[DONE]"), "{text}");

    // An Anthropic provider's own error reaches a Messages client as it
    // came: its error type and request id kept.
    let mut c = gw.connect().await;
    c.send(messages_request(&ask("refuse", false), "sk-test").as_bytes())
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["type"], "not_found_error");
    assert_eq!(r.json()["request_id"], "req_011");

    let before = gw.settled_stats().await["keyUsage"]["key1"]["promptTokens"]
        .as_u64()
        .unwrap();
    for stream in [false, true] {
        let mut c = gw.connect().await;
        c.send(messages_request(&ask("cached", stream), "sk-test").as_bytes())
            .await;
        assert_eq!(c.response().await.expect("an answer").status, 200);
    }
    let chat = r#"{"model":"claude-native","messages":[{"role":"user","content":"cached"}]}"#;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-test"), chat)
        .await;
    assert_eq!(r.json()["usage"]["prompt_tokens"], 103);
    assert_eq!(
        r.json()["usage"]["prompt_tokens_details"]["cached_tokens"],
        100
    );
    let after = gw.settled_stats().await["keyUsage"]["key1"]["promptTokens"]
        .as_u64()
        .unwrap();
    assert_eq!(after - before, 3 * 103);
}

/// What an Anthropic upstream may do that it should not, each answered
/// well: `message_stop` ends the answer even when the upstream sends more
/// or holds its body open; events where a plain answer was asked for are
/// gathered into the message (or the chat completion) they make; usage
/// counts of 2^64 - 1 overflow nothing, and a key's concurrency slot comes
/// back after them.
#[tokio::test]
async fn misbehaving_native_upstreams_are_answered_well() {
    let up = MockUpstream::start(messages_script).await;
    let config = format!(
        r#"{{"apiKeys": [{{"name": "ci", "key": "sk-test", "maxConcurrent": 1}}],
  "requestTimeout": 5000, "retryCount": 0,
  "providers": [{{"id": "claude", "type": "anthropic", "baseUrl": "{}",
    "accounts": [{{"id": "a", "apiKey": "sk-ant-up"}}], "models": {{"claude-native": "claude-sonnet-4-5"}}}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    // The key's one slot is held to each answer's last byte, a moment
    // after the client has it: each request waits for it (up to 3 s).
    let slot_back = || async {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        while gw.settled_stats().await["keyUsage"]["ci"]["open"] != 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "the slot never came back"
            );
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
    };
    let ask = |text: &str, stream: bool| {
        format!(
            r#"{{"model":"claude-native","max_tokens":64,"stream":{stream},"messages":[{{"role":"user","content":"{text}"}}]}}"#
        )
    };
    let within = |what| async move {
        tokio::time::timeout(std::time::Duration::from_secs(10), what)
            .await
            .expect("answered at message_stop, not at the upstream's end")
    };
    // message_stop, then more, then a body held open.
    slot_back().await;
    let mut c = gw.connect().await;
    c.send(messages_request(&ask("linger", true), "sk-test").as_bytes())
        .await;
    let text = within(c.response()).await.expect("an answer").text();
    assert!(
        text.trim_end()
            .ends_with(r#"data: {"type":"message_stop"}"#),
        "{text}"
    );
    assert!(
        !text.contains("AFTER-STOP") && !text.contains("event: error"),
        "{text}"
    );
    let chat = r#"{"model":"claude-native","stream":true,"messages":[{"role":"user","content":"linger"}]}"#;
    slot_back().await;
    let mut c = gw.connect().await;
    c.send(
        support::post_request(
            "/v1/chat/completions",
            "Authorization: Bearer sk-test\r\n",
            chat,
        )
        .as_bytes(),
    )
    .await;
    let text = within(c.response()).await.expect("an answer").text();
    assert!(
        text.contains("data: [DONE]") && !text.contains("AFTER-STOP"),
        "{text}"
    );
    assert!(!text.contains("\"error\""), "{text}");

    // Events where a plain answer was asked for.
    slot_back().await;
    let mut c = gw.connect().await;
    c.send(messages_request(&ask("streams-anyway", false), "sk-test").as_bytes())
        .await;
    let r = c.response().await.expect("an answer");
    assert_eq!(r.status, 200, "{}", r.text());
    let m = r.json();
    assert_eq!(m["type"], "message");
    assert_eq!(m["model"], "claude-native");
    assert_eq!(m["content"][0]["text"], "Hello there");
    assert_eq!(m["usage"]["input_tokens"], 3);
    let chat =
        r#"{"model":"claude-native","messages":[{"role":"user","content":"streams-anyway"}]}"#;
    slot_back().await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-test"), chat)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["choices"][0]["message"]["content"], "Hello there");

    // Counts of 2^64 - 1, through every door; the key's one slot comes
    // back after each (a slot is held to the answer's last byte, a moment
    // after the client has it: waited for here, up to 3 s).
    for stream in [false, true] {
        slot_back().await;
        let mut c = gw.connect().await;
        c.send(messages_request(&ask("huge", stream), "sk-test").as_bytes())
            .await;
        assert_eq!(c.response().await.expect("an answer").status, 200);
        for door in ["/v1/chat/completions", "/v1/responses"] {
            slot_back().await;
            let body = match door {
                "/v1/responses" => {
                    format!(r#"{{"model":"claude-native","input":"huge","stream":{stream}}}"#)
                }
                _ => format!(
                    r#"{{"model":"claude-native","stream":{stream},"messages":[{{"role":"user","content":"huge"}}]}}"#
                ),
            };
            let r = gw.post_json(door, Some("sk-test"), &body).await;
            assert_eq!(r.status, 200, "{door} {stream}: {}", r.text());
        }
    }
    let stats = gw.settled_stats().await;
    assert_eq!(stats["keyUsage"]["ci"]["open"], 0, "{stats}");
    assert!(stats["keyUsage"]["ci"]["refused"] == 0, "{stats}");
}
