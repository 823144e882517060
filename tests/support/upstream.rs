//! A mock OpenAI-compatible upstream on raw tokio sockets, so that the bytes
//! it sends (framing included) are exactly what a test scripts.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;

/// A request as the upstream received it.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Recorded {
    pub fn header(&self, name: &str) -> Option<&str> {
        super::find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("upstream got JSON")
    }
}

/// One step of a scripted answer.
#[derive(Clone, Debug)]
pub enum Step {
    Send(Vec<u8>),
    Sleep(Duration),
    /// Close the connection (after what was sent).
    Close,
    /// Never answer; wait for the peer to close.
    Hang,
}

pub fn send(bytes: impl AsRef<[u8]>) -> Step {
    Step::Send(bytes.as_ref().to_vec())
}

type Script = dyn Fn(&Recorded) -> Vec<Step> + Send + Sync;

pub struct MockUpstream {
    pub addr: SocketAddr,
    pub accepts: Arc<AtomicUsize>,
    /// Connections on which the upstream saw the peer (the gateway) close.
    pub peer_closed: Arc<AtomicUsize>,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
}

impl MockUpstream {
    pub async fn start(
        script: impl Fn(&Recorded) -> Vec<Step> + Send + Sync + 'static,
    ) -> MockUpstream {
        Self::start_with(script, None).await
    }

    /// The same over TLS, with a certificate for `localhost` and 127.0.0.1
    /// signed by a fresh CA; returns the path of that CA's PEM file.
    pub async fn start_tls(
        script: impl Fn(&Recorded) -> Vec<Step> + Send + Sync + 'static,
    ) -> (MockUpstream, std::path::PathBuf) {
        let (acceptor, ca_path) = tls_acceptor();
        (Self::start_with(script, Some(acceptor)).await, ca_path)
    }

    async fn start_with(
        script: impl Fn(&Recorded) -> Vec<Step> + Send + Sync + 'static,
        tls: Option<tokio_rustls::TlsAcceptor>,
    ) -> MockUpstream {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepts = Arc::new(AtomicUsize::new(0));
        let peer_closed = Arc::new(AtomicUsize::new(0));
        let requests = Arc::new(Mutex::new(Vec::new()));
        let script: Arc<Script> = Arc::new(script);
        let (a, p, r) = (accepts.clone(), peer_closed.clone(), requests.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                a.fetch_add(1, SeqCst);
                let _ = stream.set_nodelay(true);
                let (script, r, p) = (script.clone(), r.clone(), p.clone());
                match tls.clone() {
                    None => {
                        tokio::spawn(serve(stream, script, r, p));
                    }
                    Some(acceptor) => {
                        tokio::spawn(async move {
                            if let Ok(s) = acceptor.accept(stream).await {
                                serve(s, script, r, p).await;
                            }
                        });
                    }
                }
            }
        });
        MockUpstream {
            addr,
            accepts,
            peer_closed,
            requests,
        }
    }

    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.addr)
    }

    pub fn last(&self) -> Recorded {
        self.requests
            .lock()
            .unwrap()
            .last()
            .cloned()
            .expect("a request reached the upstream")
    }

    pub fn count(&self) -> usize {
        self.requests.lock().unwrap().len()
    }
}

async fn serve<S: AsyncRead + AsyncWrite + Unpin>(
    mut stream: S,
    script: Arc<Script>,
    log: Arc<Mutex<Vec<Recorded>>>,
    peer_closed: Arc<AtomicUsize>,
) {
    let mut buf = Vec::new();
    loop {
        let Some(req) = read_request(&mut stream, &mut buf).await else {
            peer_closed.fetch_add(1, SeqCst);
            return;
        };
        log.lock().unwrap().push(req.clone());
        for step in script(&req) {
            match step {
                Step::Send(bytes) => {
                    if stream.write_all(&bytes).await.is_err() {
                        peer_closed.fetch_add(1, SeqCst);
                        return;
                    }
                }
                Step::Sleep(d) => {
                    // Sleep, but notice a peer that closes meanwhile.
                    let mut tmp = [0u8; 1024];
                    tokio::select! {
                        _ = tokio::time::sleep(d) => {}
                        r = stream.read(&mut tmp) => {
                            if matches!(r, Ok(0) | Err(_)) {
                                peer_closed.fetch_add(1, SeqCst);
                                return;
                            }
                        }
                    }
                }
                Step::Close => return,
                Step::Hang => {
                    let mut tmp = [0u8; 1024];
                    loop {
                        match stream.read(&mut tmp).await {
                            Ok(0) | Err(_) => {
                                peer_closed.fetch_add(1, SeqCst);
                                return;
                            }
                            Ok(_) => {}
                        }
                    }
                }
            }
        }
    }
}

async fn read_request<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> Option<Recorded> {
    loop {
        let mut hs = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Request::new(&mut hs);
        if let Ok(httparse::Status::Complete(n)) = r.parse(buf) {
            let headers = super::owned_headers(r.headers);
            let method = r.method.unwrap().to_owned();
            let path = r.path.unwrap().to_owned();
            let len: usize = super::find_header(&headers, "content-length")
                .map(|v| v.parse().unwrap())
                .unwrap_or(0);
            while buf.len() < n + len {
                if !fill(stream, buf).await {
                    return None;
                }
            }
            let body = buf[n..n + len].to_vec();
            buf.drain(..n + len);
            return Some(Recorded {
                method,
                path,
                headers,
                body,
            });
        }
        if !fill(stream, buf).await {
            return None;
        }
    }
}

async fn fill<S: AsyncRead + Unpin>(stream: &mut S, buf: &mut Vec<u8>) -> bool {
    let mut tmp = [0u8; 8192];
    match stream.read(&mut tmp).await {
        Ok(0) | Err(_) => false,
        Ok(n) => {
            buf.extend_from_slice(&tmp[..n]);
            true
        }
    }
}

/// A 200 JSON answer with Content-Length.
pub fn json_answer(body: &str) -> Vec<Step> {
    vec![send(format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    ))]
}

/// A chat.completion answer naming `model`.
pub fn chat_answer(model: &str, content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-up", "object": "chat.completion", "created": 1, "model": model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": content}, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5}
    })
    .to_string()
}

/// One chat.completion.chunk event payload.
pub fn chunk(model: &str, content: &str) -> String {
    serde_json::json!({
        "id": "chatcmpl-up", "object": "chat.completion.chunk", "created": 1, "model": model,
        "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": null}]
    })
    .to_string()
}

/// The head of a chunked event-stream answer.
pub const SSE_HEAD: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n";

/// One `data:` event carrying `chunk("deepseek-chat", content)`, as one
/// HTTP chunk of a chunked event-stream body.
pub fn sse_event(content: &str) -> String {
    chunked(&format!("data: {}\n\n", chunk("deepseek-chat", content)))
}

/// The head of a close-delimited event-stream answer: the body ends when
/// the upstream closes.
pub const SSE_HEAD_CLOSE: &str =
    "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nConnection: close\r\n\r\n";

/// `bytes` as one HTTP chunk.
pub fn chunked(bytes: &str) -> String {
    format!("{:x}\r\n{bytes}\r\n", bytes.len())
}

fn tls_acceptor() -> (tokio_rustls::TlsAcceptor, std::path::PathBuf) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let params =
        CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()]).unwrap();
    let cert = params.signed_by(&key, &ca, &ca_key).unwrap();
    static N: AtomicUsize = AtomicUsize::new(0);
    let path = std::env::temp_dir().join(format!(
        "chat2api-test-ca-{}-{}.pem",
        std::process::id(),
        N.fetch_add(1, SeqCst)
    ));
    std::fs::write(&path, ca.pem()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(
            vec![cert.der().clone()],
            rustls_pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into()),
        )
        .unwrap();
    (tokio_rustls::TlsAcceptor::from(Arc::new(config)), path)
}

/// A chat-only upstream (`POST /chat/completions`): a plain or streamed
/// answer, with usage; offered tools, it calls the first one with
/// `{"city":"Oslo"}` (streamed in two pieces), and once a tool message came
/// back it answers "It rains in Oslo.". The first message's content
/// `no-choices` gets a completion without choices, `junk` events that are
/// no chat chunk among real ones.
pub fn chat_script(req: &Recorded) -> Vec<Step> {
    let v = req.json();
    if v["messages"][0]["content"] == "no-choices" {
        let doc = r#"{"id":"c","object":"chat.completion","model":"deepseek-chat"}"#;
        return vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        ))];
    }
    if v["messages"][0]["content"] == "junk" {
        // Lines that are no chat chunk among real ones.
        let real = serde_json::json!({"id": "c", "object": "chat.completion.chunk", "model": "deepseek-chat",
            "choices": [{"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}]});
        let mut out = SSE_HEAD.to_owned();
        for data in [
            "hello world".to_owned(),
            "{broken".to_owned(),
            real.to_string(),
            "[DONE]".to_owned(),
        ] {
            out.push_str(&chunked(&format!("data: {data}\n\n")));
        }
        out.push_str("0\r\n\r\n");
        return vec![send(out)];
    }
    let tool = v["tools"][0]["function"]["name"]
        .as_str()
        .map(str::to_owned);
    let answered_tool = v["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool");
    let (content, calls) = match (&tool, answered_tool) {
        (Some(name), false) => (None, Some(name.clone())),
        (_, true) => (Some("It rains in Oslo."), None),
        _ => (Some("Hello there"), None),
    };
    let reply = ChatReply {
        chat_id: "chatcmpl-up",
        text: content,
        tool: calls
            .as_deref()
            .map(|name| (name, "call_1", r#"{"city":"Oslo"}"#)),
        usage: (3, 2),
    };
    chat_reply(req, &reply)
}

/// What a scripted chat upstream answers (see [`chat_reply`]).
pub struct ChatReply<'a> {
    /// The chat completion's `id`.
    pub chat_id: &'a str,
    pub text: Option<&'a str>,
    /// One tool call: the function's name, the call id, the arguments.
    pub tool: Option<(&'a str, &'a str, &'a str)>,
    /// Prompt and completion tokens.
    pub usage: (u64, u64),
}

/// A chat completion answering `req` (a `chat.completion`, or for a stream
/// request a chunked event stream: a role chunk, a chunk per word, the tool
/// call with its arguments in two pieces, split after their first `:`,
/// the finish chunk, a usage chunk, `[DONE]`).
pub fn chat_reply(req: &Recorded, reply: &ChatReply<'_>) -> Vec<Step> {
    let v = req.json();
    let model = v["model"].as_str().unwrap_or("up").to_owned();
    let (text, tool, chat_id) = (reply.text, reply.tool, reply.chat_id);
    let (prompt, completion) = reply.usage;
    let usage = serde_json::json!({"prompt_tokens": prompt, "completion_tokens": completion,
        "total_tokens": prompt + completion});
    let finish = if tool.is_some() { "tool_calls" } else { "stop" };
    if v["stream"] != true {
        let mut message = serde_json::json!({"role": "assistant", "content": text});
        if let Some((name, call_id, args)) = tool {
            message["tool_calls"] = serde_json::json!([{"id": call_id, "type": "function",
                "function": {"name": name, "arguments": args}}]);
        }
        let doc = serde_json::json!({"id": chat_id, "object": "chat.completion", "created": 1, "model": model,
            "choices": [{"index": 0, "message": message, "finish_reason": finish}], "usage": usage})
        .to_string();
        return vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        ))];
    }
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        serde_json::json!({"id": chat_id, "object": "chat.completion.chunk", "created": 1, "model": model,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})
    };
    let mut chunks = vec![chunk(
        serde_json::json!({"role": "assistant", "content": ""}),
        serde_json::Value::Null,
    )];
    if let Some(text) = text {
        for word in text.split_inclusive(' ') {
            chunks.push(chunk(
                serde_json::json!({"content": word}),
                serde_json::Value::Null,
            ));
        }
    }
    if let Some((name, call_id, args)) = tool {
        let cut = args.find(':').map_or(args.len() / 2, |i| i + 1);
        let (a, b) = args.split_at(cut);
        chunks.push(chunk(
            serde_json::json!({"tool_calls": [{"index": 0, "id": call_id, "type": "function",
            "function": {"name": name, "arguments": a}}]}),
            serde_json::Value::Null,
        ));
        chunks.push(chunk(
            serde_json::json!({"tool_calls": [{"index": 0, "function": {"arguments": b}}]}),
            serde_json::Value::Null,
        ));
    }
    chunks.push(chunk(serde_json::json!({}), serde_json::json!(finish)));
    let mut last = chunk(serde_json::json!({}), serde_json::Value::Null);
    last["choices"] = serde_json::json!([]);
    last["usage"] = usage;
    chunks.push(last);
    let mut out = SSE_HEAD.to_owned();
    for c in chunks {
        out.push_str(&chunked(&format!("data: {c}\n\n")));
    }
    out.push_str(&chunked("data: [DONE]\n\n"));
    out.push_str("0\r\n\r\n");
    vec![send(out)]
}

/// A scripted native Anthropic Messages upstream, the counterpart of
/// [`chat_script`]: `POST /v1/messages` calls the first offered tool
/// (`get_weather`-like, input `{"city":"Oslo"}`) until a `tool_result`
/// comes back, then answers "It rains in Oslo."; without tools it answers
/// "Hello there". With `thinking` asked for, a thinking block (with its
/// signature) comes first. Usage: 3 input tokens, 2 output. Plain or
/// streamed as Anthropic's events (chunked, ending at `message_stop`, no
/// `[DONE]`). A last user message "cut" is a stream cut after its first
/// text delta; "overloaded" a stream whose second event is an
/// `overloaded_error`, then the connection closed; "whole" one message
/// object whether a stream was asked for or not; "cached" 100 more input
/// tokens read from the prompt cache; "refuse" a 400 with Anthropic's error
/// body (its own type and `request_id`); "huge" usage counts of 2^64 - 1;
/// "linger" one more event after `message_stop`, then the body held open
/// for 30 s; "streams-anyway" events even where a plain answer was asked
/// for. `POST /v1/messages/count_tokens`
/// answers 42.
pub fn messages_script(req: &Recorded) -> Vec<Step> {
    let json_reply = |doc: &serde_json::Value| {
        let doc = doc.to_string();
        vec![send(format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nrequest-id: req_native\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        ))]
    };
    if req.path == "/v1/messages/count_tokens" {
        return json_reply(&serde_json::json!({"input_tokens": 42}));
    }
    let v = req.json();
    let model = v["model"].as_str().unwrap_or("claude").to_owned();
    let messages = v["messages"].as_array().cloned().unwrap_or_default();
    let answered = messages.iter().any(|m| {
        m["content"]
            .as_array()
            .is_some_and(|blocks| blocks.iter().any(|b| b["type"] == "tool_result"))
    });
    let last_text = messages
        .last()
        .and_then(|m| match &m["content"] {
            serde_json::Value::String(s) => Some(s.clone()),
            serde_json::Value::Array(b) => {
                b.iter().find_map(|b| b["text"].as_str().map(str::to_owned))
            }
            _ => None,
        })
        .unwrap_or_default();
    let tool = v["tools"][0]["name"].as_str().map(str::to_owned);
    let thinking = v.get("thinking").is_some();
    let (text, call) = match (&tool, answered) {
        (Some(name), false) => (None, Some(name.clone())),
        (_, true) => (Some("It rains in Oslo."), None),
        _ => (Some("Hello there"), None),
    };
    let stop = if call.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    let mut content = Vec::new();
    if thinking {
        content.push(
            serde_json::json!({"type": "thinking", "thinking": "The user asks about Oslo.",
            "signature": "EqQBCkYIARgCIkD+sig/with=chars"}),
        );
    }
    if let Some(text) = text {
        content.push(serde_json::json!({"type": "text", "text": text}));
    }
    if let Some(name) = &call {
        content.push(
            serde_json::json!({"type": "tool_use", "id": "toolu_1", "name": name,
            "input": {"city": "Oslo"}}),
        );
    }
    if last_text == "refuse" {
        let doc = r#"{"type":"error","error":{"type":"not_found_error","message":"model: claude-x"},"request_id":"req_011"}"#;
        return vec![send(format!(
            "HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{doc}",
            doc.len()
        ))];
    }
    let cached = if last_text == "cached" { 100 } else { 0 };
    // "huge": counts no model has; the gateway must not overflow on them.
    let (input, output) = match last_text.as_str() {
        "huge" => (u64::MAX, u64::MAX),
        _ => (3, 2),
    };
    let streams = v["stream"] == true || last_text == "streams-anyway";
    if !streams || last_text == "whole" {
        return json_reply(&serde_json::json!({"id": "msg_native1", "type": "message",
            "role": "assistant", "model": model, "content": content, "stop_reason": stop,
            "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": output,
                "cache_read_input_tokens": cached}}));
    }
    let mut events = vec![
        serde_json::json!({"type": "message_start", "message": {"id": "msg_native1",
        "type": "message", "role": "assistant", "model": model, "content": [], "stop_reason": null,
        "stop_sequence": null, "usage": {"input_tokens": input, "output_tokens": 1,
            "cache_read_input_tokens": cached}}}),
    ];
    if last_text == "overloaded" {
        let error = serde_json::json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}});
        let mut out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n".to_owned();
        out.push_str(&chunked(&format!(
            "event: message_start\ndata: {}\n\n",
            events[0]
        )));
        out.push_str(&chunked(&format!("event: error\ndata: {error}\n\n")));
        return vec![send(out), Step::Close];
    }
    events.push(serde_json::json!({"type": "ping"}));
    for (index, block) in content.iter().enumerate() {
        let (start, deltas) = match block["type"].as_str() {
            Some("thinking") => (
                serde_json::json!({"type": "thinking", "thinking": ""}),
                vec![
                    serde_json::json!({"type": "thinking_delta", "thinking": block["thinking"]}),
                    serde_json::json!({"type": "signature_delta", "signature": block["signature"]}),
                ],
            ),
            Some("text") => (
                serde_json::json!({"type": "text", "text": ""}),
                block["text"]
                    .as_str()
                    .unwrap_or("")
                    .split_inclusive(' ')
                    .map(|w| serde_json::json!({"type": "text_delta", "text": w}))
                    .collect(),
            ),
            _ => (
                serde_json::json!({"type": "tool_use", "id": block["id"], "name": block["name"], "input": {}}),
                vec![
                    serde_json::json!({"type": "input_json_delta", "partial_json": ""}),
                    serde_json::json!({"type": "input_json_delta", "partial_json": "{\"city\":"}),
                    serde_json::json!({"type": "input_json_delta", "partial_json": " \"Oslo\"}"}),
                ],
            ),
        };
        events.push(serde_json::json!({"type": "content_block_start", "index": index, "content_block": start}));
        for delta in deltas {
            events.push(
                serde_json::json!({"type": "content_block_delta", "index": index, "delta": delta}),
            );
        }
        events.push(serde_json::json!({"type": "content_block_stop", "index": index}));
    }
    events.push(serde_json::json!({"type": "message_delta",
        "delta": {"stop_reason": stop, "stop_sequence": null}, "usage": {"output_tokens": output}}));
    events.push(serde_json::json!({"type": "message_stop"}));
    if last_text == "linger" {
        // After message_stop: one more event, then the body held open.
        events.push(
            serde_json::json!({"type": "content_block_delta", "index": 0,
            "delta": {"type": "text_delta", "text": " AFTER-STOP"}}),
        );
    }
    let mut out = "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\nTransfer-Encoding: chunked\r\nrequest-id: req_native\r\n\r\n".to_owned();
    for e in &events {
        out.push_str(&chunked(&format!(
            "event: {}\ndata: {e}\n\n",
            e["type"].as_str().unwrap_or("")
        )));
        if last_text == "cut" && e["delta"]["type"] == "text_delta" {
            // Cut after the first text delta: no last chunk.
            return vec![send(out), Step::Close];
        }
    }
    if last_text == "linger" {
        return vec![send(out), Step::Sleep(std::time::Duration::from_secs(30))];
    }
    if last_text == "linger" {
        return vec![send(out), Step::Sleep(std::time::Duration::from_secs(30))];
    }
    out.push_str("0\r\n\r\n");
    vec![send(out)]
}
