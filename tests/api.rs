//! The endpoints and errors of docs/wire.md §3–4 over real sockets, against the
//! built-in mock provider.

mod support;

use support::{TestGateway, CHAT_BODY};

const KEYED: &str = r#"{
  "apiKeys": ["sk-one", {"name": "ci", "key": "sk-two", "enabled": true}, {"name": "old", "key": "sk-off", "enabled": false}],
  "providers": [{"id": "local", "type": "mock", "models": ["mock-echo", "DeepSeek-V3.2"]}],
  "modelMappings": [
    {"requestModel": "gpt-4*", "actualModel": "DeepSeek-V3.2"},
    {"requestModel": "gpt-4o-exact", "actualModel": "mock-echo"}
  ]
}"#;

#[tokio::test]
async fn client_keys_in_all_three_places() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw.post_json("/v1/chat/completions", None, CHAT_BODY).await;
    assert_eq!((r.status, r.error_code()), (401, "missing_api_key".into()));
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-wrong"), CHAT_BODY)
        .await;
    assert_eq!((r.status, r.error_code()), (401, "invalid_api_key".into()));
    assert!(!r.text().contains("sk-wrong"), "keys are never echoed");
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-off"), CHAT_BODY)
        .await;
    assert_eq!(r.status, 401, "a disabled key is refused");
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-one"), CHAT_BODY)
        .await;
    assert_eq!(r.status, 200);
    let r = gw
        .request("GET /v1/models HTTP/1.1\r\nHost: x\r\nX-API-Key: sk-two\r\n\r\n")
        .await;
    assert_eq!(r.status, 200);
    let r = gw.get("/v1/models?api_key=sk-two").await;
    assert_eq!(r.status, 200);
    let r = gw.get("/v1/models?api_key=nope").await;
    assert_eq!(r.status, 401);
    // Unauthenticated routes.
    for path in ["/health", "/"] {
        assert_eq!(gw.get(path).await.status, 200, "{path}");
    }
    // /stats names providers and accounts: a key is needed when keys are set.
    assert_eq!(gw.get("/stats").await.status, 401);
    assert_eq!(gw.get("/stats?api_key=sk-two").await.status, 200);
    // chat2api's own JSON documents end with a newline.
    assert!(gw.get("/health").await.text().ends_with("}\n"));
}

#[tokio::test]
async fn models_list_and_lookup() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw.get("/v1/models?api_key=sk-one").await;
    let v = r.json();
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(
        ids.contains(&"mock-echo") && ids.contains(&"DeepSeek-V3.2"),
        "{ids:?}"
    );
    for m in v["data"].as_array().unwrap() {
        assert_eq!(m["object"], "model");
        assert!(m["created"].is_u64() && m["owned_by"].is_string());
    }
    let r = gw.get("/v1/models/DeepSeek-V3.2?api_key=sk-one").await;
    assert_eq!(r.json()["id"], "DeepSeek-V3.2");
    // A wildcard mapping resolves too; the client sees its own name.
    let r = gw.get("/v1/models/gpt-4-turbo?api_key=sk-one").await;
    assert_eq!(
        (r.status, r.json()["id"].clone()),
        (200, "gpt-4-turbo".into())
    );
    let r = gw.get("/v1/models/nope?api_key=sk-one").await;
    assert_eq!((r.status, r.error_code()), (404, "model_not_found".into()));
}

#[tokio::test]
async fn root_health_stats_and_cors() {
    let gw = TestGateway::start(KEYED).await;
    let v = gw.get("/").await.json();
    assert_eq!(v["name"], "chat2api");
    assert!(v["version"].is_string() && v["endpoints"].is_array());
    let h = gw.get("/health").await.json();
    assert_eq!(h["status"], "running");
    assert!(h["uptime"].is_u64());
    for k in [
        "totalRequests",
        "successRequests",
        "failedRequests",
        "activeConnections",
    ] {
        assert!(h["statistics"][k].is_u64(), "{k}");
    }
    let r = gw
        .request("OPTIONS /v1/chat/completions HTTP/1.1\r\nHost: x\r\nOrigin: http://a\r\nAccess-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: authorization, content-type\r\n\r\n")
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert_eq!(
        r.header("access-control-allow-headers"),
        Some("authorization, content-type")
    );
    assert!(r
        .header("access-control-allow-methods")
        .unwrap()
        .contains("POST"));
}

#[tokio::test]
async fn route_and_method_errors() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw.get("/v1/nothing").await;
    assert_eq!((r.status, r.error_code()), (404, "not_found".into()));
    let r = gw.get("/v1/chat/completions?api_key=sk-one").await;
    assert_eq!(r.status, 405);
    // The methods of the route asked for (RFC 9110 §15.5.6), not one list
    // for every route.
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = gw.post_json("/health", None, "{}").await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let r = gw.post_json("/v1/models", Some("sk-one"), "{}").await;
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
    let put = |path: &str| {
        format!("PUT {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer sk-one\r\nContent-Length: 0\r\n\r\n")
    };
    let r = gw.request(&put("/v1/responses/resp_abc")).await;
    assert_eq!(r.status, 405);
    assert_eq!(r.header("allow"), Some("GET, HEAD, DELETE, OPTIONS"));
    let r = gw.request(&put("/v1/responses/resp_abc/cancel")).await;
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = gw.request(&put("/v1/responses/resp_abc/input_items")).await;
    assert_eq!(r.header("allow"), Some("GET, HEAD, OPTIONS"));
}

#[tokio::test]
async fn invalid_requests_are_400_with_openai_shape() {
    let gw = TestGateway::start(KEYED).await;
    let cases = [
        ("/v1/chat/completions", "{not json", None),
        ("/v1/chat/completions", "", None),
        (
            "/v1/chat/completions",
            r#"{"messages":[{"role":"user","content":"x"}]}"#,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"mock-echo"}"#,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"mock-echo","messages":"x"}"#,
            Some("messages"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":["a"],"messages":[]}"#,
            Some("model"),
        ),
        (
            "/v1/chat/completions",
            r#"{"model":"mock-echo","messages":[{"role":"user"}],"stream":1}"#,
            Some("stream"),
        ),
        (
            "/v1/completions",
            r#"{"model":"mock-echo"}"#,
            Some("prompt"),
        ),
    ];
    for (path, body, param) in cases {
        let r = gw.post_json(path, Some("sk-one"), body).await;
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["type"], "invalid_request_error", "{body}");
        assert_eq!(e["param"].as_str(), param, "{body}");
        assert!(e["message"].as_str().unwrap().len() > 5);
    }
    let r = gw
        .post_json(
            "/v1/chat/completions",
            Some("sk-one"),
            r#"{"model":"nope","messages":[{"role":"user","content":"x"}]}"#,
        )
        .await;
    assert_eq!((r.status, r.error_code()), (404, "model_not_found".into()));
}

#[tokio::test]
async fn mock_chat_plain_and_mapped() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-one"), CHAT_BODY)
        .await;
    let v = r.json();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "mock-echo");
    let content = v["choices"][0]["message"]["content"].as_str().unwrap();
    assert!(
        content.contains("mock") && content.contains("Hello there!"),
        "{content}"
    );
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(
        u["total_tokens"],
        u["prompt_tokens"].as_u64().unwrap() + u["completion_tokens"].as_u64().unwrap()
    );
    // Mapped by wildcard: the client still sees the name it asked for.
    let r = gw
        .post_json(
            "/v1/chat/completions",
            Some("sk-one"),
            r#"{"model":"gpt-4o","messages":[{"role":"user","content":"hi"}]}"#,
        )
        .await;
    assert_eq!(r.json()["model"], "gpt-4o");
}

#[tokio::test]
async fn mock_chat_streamed_word_by_word() {
    let gw = TestGateway::start(KEYED).await;
    let body = r#"{"model":"DeepSeek-V3.2","messages":[{"role":"user","content":"Hello!"}],"stream":true,"stream_options":{"include_usage":true}}"#;
    let r = gw
        .post_json("/v1/chat/completions", Some("sk-one"), body)
        .await;
    assert_eq!(r.status, 200);
    assert!(r
        .header("content-type")
        .unwrap()
        .starts_with("text/event-stream"));
    assert_eq!(r.header("transfer-encoding"), Some("chunked"));
    assert_eq!(r.header("x-accel-buffering"), Some("no"));
    assert_eq!(r.header("cache-control"), Some("no-cache"));
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    assert_eq!(events.iter().filter(|e| *e == "[DONE]").count(), 1);
    let chunks: Vec<serde_json::Value> = events[..events.len() - 1]
        .iter()
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    assert!(chunks
        .iter()
        .all(|c| c["model"] == "DeepSeek-V3.2" && c["object"] == "chat.completion.chunk"));
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert!(text.ends_with("You said: Hello!"), "{text}");
    let usage = chunks.last().unwrap();
    assert_eq!(usage["choices"].as_array().unwrap().len(), 0);
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 3);
    // Events written together share one HTTP chunk, which ends where an
    // event ends; the stream ends with the last chunk right after [DONE].
    let raw = String::from_utf8_lossy(&r.raw_body).into_owned();
    assert!(raw.ends_with("data: [DONE]\n\n\r\n0\r\n\r\n"), "{raw}");
    let mut rest = raw.as_str();
    while let Some((size, after)) = rest.split_once("\r\n") {
        let size = usize::from_str_radix(size, 16).unwrap();
        if size == 0 {
            break;
        }
        assert!(
            after[..size].ends_with("\n\n"),
            "a chunk cut an event: {raw}"
        );
        rest = &after[size + 2..];
    }
}

#[tokio::test]
async fn mock_completions_plain_and_streamed() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw
        .post_json(
            "/v1/completions",
            Some("sk-one"),
            r#"{"model":"mock-echo","prompt":"Say this"}"#,
        )
        .await;
    let v = r.json();
    assert_eq!(v["object"], "text_completion");
    assert!(v["choices"][0]["text"]
        .as_str()
        .unwrap()
        .contains("Say this"));
    let r = gw
        .post_json(
            "/v1/completions",
            Some("sk-one"),
            r#"{"model":"mock-echo","prompt":["a","b"],"stream":true}"#,
        )
        .await;
    let events = r.events();
    assert_eq!(events.last().unwrap(), "[DONE]");
    let first: serde_json::Value = serde_json::from_str(&events[0]).unwrap();
    assert_eq!(first["object"], "text_completion");
    assert!(first["choices"][0]["text"].is_string());
}

#[tokio::test]
async fn mock_with_configured_text_and_delay() {
    let gw = TestGateway::start(
        r#"{"providers":[{"id":"m","type":"mock","models":["fixed"],"text":"one two three","tokenDelayMs":30}]}"#,
    )
    .await;
    let start = std::time::Instant::now();
    let r = gw
        .post_json(
            "/v1/chat/completions",
            None,
            r#"{"model":"fixed","messages":[{"role":"user","content":"x"}],"stream":true}"#,
        )
        .await;
    let text: String = r.events()[..r.events().len() - 1]
        .iter()
        .map(|e| serde_json::from_str::<serde_json::Value>(e).unwrap())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_owned)
        })
        .collect();
    assert_eq!(text, "one two three");
    assert!(start.elapsed() >= std::time::Duration::from_millis(60));
}

#[tokio::test]
async fn stats_count_v1_requests_only() {
    let gw = TestGateway::start(KEYED).await;
    gw.post_json("/v1/chat/completions", Some("sk-one"), CHAT_BODY)
        .await;
    gw.post_json(
        "/v1/chat/completions",
        Some("sk-one"),
        r#"{"model":"DeepSeek-V3.2","messages":[{"role":"user","content":"x"}],"stream":true}"#,
    )
    .await;
    gw.post_json("/v1/chat/completions", Some("bad"), CHAT_BODY)
        .await;
    gw.get("/health").await;
    gw.get("/").await;
    let s = gw.settled_stats().await;
    assert_eq!(s["status"], "running");
    assert_eq!(s["totalRequests"], 3);
    assert_eq!(s["successRequests"], 2);
    assert_eq!(s["failedRequests"], 1);
    assert!((s["successRate"].as_f64().unwrap() - 2.0 / 3.0).abs() < 0.01);
    assert_eq!(s["modelUsage"]["mock-echo"], 1);
    assert_eq!(s["modelUsage"]["DeepSeek-V3.2"], 1);
    assert_eq!(s["providerUsage"]["local"], 2);
    assert_eq!(s["accountUsage"]["local/default"], 2);
    assert!(s["tokens"]["completion"].as_u64().unwrap() > 0);
    assert!(s["requestsPerMinute"].as_u64().unwrap() >= 3);
    for k in ["p50", "p90", "p99"] {
        assert!(s["latency"][k].is_number() && s["ttft"][k].is_number());
    }
}

#[tokio::test]
async fn builtin_default_serves_the_proxy_settings_examples() {
    let gw = TestGateway::builtin().await;
    // The original page's curl example, as written (any key: no auth configured).
    let body = r#"{
"model": "DeepSeek-V3.2",
"messages": [
{"role": "user", "content": "Hello!"}
]
}"#;
    let r = gw
        .post_json("/v1/chat/completions", Some("YOUR_API_KEY"), body)
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "DeepSeek-V3.2");
    assert!(v["choices"][0]["message"]["content"]
        .as_str()
        .unwrap()
        .contains("mock"));
    let r = gw.post_json("/v1/chat/completions", Some("x"), r#"{"model":"mock-echo","messages":[{"role":"user","content":"Hello!"}],"stream":true}"#).await;
    assert_eq!(r.events().last().unwrap(), "[DONE]");
}

/// `/v1/embeddings` on the mock: one deterministic unit vector per input,
/// of the `dimensions` asked for, as floats or as base64 of `f32`s.
#[tokio::test]
async fn mock_embeddings() {
    let gw = TestGateway::start(KEYED).await;
    let ask = |body: &'static str| gw.post_json("/v1/embeddings", Some("sk-one"), body);
    let r = ask(r#"{"model":"mock-echo","input":["hello","hello","other"],"dimensions":8}"#).await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["object"].clone(), v["model"].clone()),
        ("list".into(), "mock-echo".into())
    );
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 3);
    assert_eq!(data[0]["embedding"].as_array().unwrap().len(), 8);
    assert_eq!(data[0]["embedding"], data[1]["embedding"]);
    assert_ne!(data[0]["embedding"], data[2]["embedding"]);
    let r =
        ask(r#"{"model":"mock-echo","input":"hello","dimensions":8,"encoding_format":"base64"}"#)
            .await;
    let b64 = r.json()["data"][0]["embedding"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(b64.len(), 44, "8 f32 = 32 bytes = 44 base64 characters");
    let r = ask(r#"{"model":"mock-echo"}"#).await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "input".into())
    );
    let r = ask(r#"{"model":"mock-echo","input":"x","stream":true}"#).await;
    assert_eq!(
        r.header("content-type"),
        Some("application/json"),
        "never streamed"
    );
}

/// `/v1/moderations` and `/v1/images/generations` on the mock.
#[tokio::test]
async fn mock_moderations_and_images() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw
        .post_json(
            "/v1/moderations",
            Some("sk-one"),
            r#"{"model":"mock-echo","input":["a","b"]}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(v["model"], "mock-echo");
    assert_eq!(v["results"].as_array().unwrap().len(), 2);
    assert_eq!(v["results"][0]["flagged"], false);
    let r = gw
        .post_json(
            "/v1/images/generations",
            Some("sk-one"),
            r#"{"model":"mock-echo","prompt":"a lighthouse"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(r.json()["data"][0]["b64_json"]
        .as_str()
        .unwrap()
        .starts_with("iVBOR"));
    let r = gw
        .post_json(
            "/v1/images/generations",
            Some("sk-one"),
            r#"{"model":"mock-echo"}"#,
        )
        .await;
    assert_eq!(
        (r.status, r.json()["error"]["param"].clone()),
        (400, "prompt".into())
    );
}

/// `/v1/responses` on the mock: a Responses API object, or its typed
/// events one by one with their `event:` names.
#[tokio::test]
async fn mock_responses_plain_and_streamed() {
    let gw = TestGateway::start(KEYED).await;
    let r = gw
        .post_json(
            "/v1/responses",
            Some("sk-one"),
            r#"{"model":"mock-echo","input":"Hello!"}"#,
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text());
    let v = r.json();
    assert_eq!(
        (v["object"].clone(), v["model"].clone()),
        ("response".into(), "mock-echo".into())
    );
    let text = v["output"][0]["content"][0]["text"].as_str().unwrap();
    assert!(text.ends_with("You said: Hello!"), "{text}");
    let r = gw
        .post_json(
            "/v1/responses",
            Some("sk-one"),
            r#"{"model":"mock-echo","stream":true,"input":[{"role":"user","content":[{"type":"input_text","text":"Hi there"}]}]}"#,
        )
        .await;
    let events = r.sse();
    let names: Vec<_> = events.iter().filter_map(|e| e.event.clone()).collect();
    assert_eq!(names.first().map(String::as_str), Some("response.created"));
    assert_eq!(names.last().map(String::as_str), Some("response.completed"));
    let mut deltas = String::new();
    for e in &events[..events.len() - 1] {
        let v: serde_json::Value = serde_json::from_str(&e.data).unwrap();
        assert_eq!(Some(v["type"].as_str().unwrap()), e.event.as_deref());
        if let Some(d) = v["delta"].as_str() {
            deltas.push_str(d);
        }
    }
    assert!(deltas.ends_with("You said: Hi there"), "{deltas}");
    assert_eq!(events.last().unwrap().data, "[DONE]");
}
