//! Helpers for the integration tests: a gateway started in-process on an
//! ephemeral port, and a raw HTTP/1.1 client that shows exactly what came
//! over the wire.
#![allow(dead_code)]

pub mod agents;
pub mod binary;
pub mod redis;
pub mod sdk;
pub mod upstream;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use chat2api::config::Config;
use chat2api::gateway::Gateway;
use chat2api::server::Listener;
use chat2api::stats::Stats;

/// A gateway listening on 127.0.0.1 with an ephemeral port.
pub struct TestGateway {
    pub addr: SocketAddr,
    pub listener: Option<Listener>,
    pub stats: Arc<Stats>,
}

impl TestGateway {
    /// Start from a JSON config; `host`/`port` are forced to 127.0.0.1:0.
    pub async fn start(json: &str) -> TestGateway {
        let env = |name: &str| std::env::var(name).ok();
        let mut config = Config::from_json(json, &env).expect("test config");
        config.host = "127.0.0.1".into();
        config.port = 0;
        Self::with_config(config).await
    }

    /// The built-in default, as with no config file and no keys set.
    pub async fn builtin() -> TestGateway {
        let mut config = Config::builtin(&|_| None);
        config.host = "127.0.0.1".into();
        config.port = 0;
        Self::with_config(config).await
    }

    pub async fn with_config(config: Config) -> TestGateway {
        let stats = Arc::new(Stats::new());
        let (host, port) = (config.host.clone(), config.port);
        let gateway = Arc::new(Gateway::new(config, stats.clone()).expect("gateway"));
        let workers = gateway.config.workers;
        let listener = Listener::start(gateway.clone(), &host, port, workers)
            .await
            .expect("listen");
        gateway.set_bound_port(listener.local_addr().port());
        stats.proxy_started();
        TestGateway {
            addr: listener.local_addr(),
            listener: Some(listener),
            stats,
        }
    }

    pub async fn connect(&self) -> Client {
        Client::connect(self.addr).await
    }

    /// One request on a fresh connection.
    pub async fn request(&self, raw: &str) -> Response {
        let mut c = self.connect().await;
        c.send(raw.as_bytes()).await;
        c.response().await.expect("a response")
    }

    pub async fn post_json(&self, path: &str, auth: Option<&str>, body: &str) -> Response {
        let auth = auth
            .map(|k| format!("Authorization: Bearer {k}\r\n"))
            .unwrap_or_default();
        self.request(&post_request(path, &auth, body)).await
    }

    pub async fn get(&self, path: &str) -> Response {
        self.request(&format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n"))
            .await
    }

    /// `/stats` once every counted request has finished: a worker records
    /// a request just after writing its answer, so a client that got the
    /// answer may ask before the count moved (waits up to 2 s).
    pub async fn settled_stats(&self) -> serde_json::Value {
        let deadline = std::time::Instant::now() + Duration::from_secs(2);
        loop {
            let r = self.get("/stats").await;
            // With client keys configured /stats wants one; the numbers are
            // the same from the process's own `Stats` (without `health`).
            let s = match r.status {
                401 => {
                    serde_json::from_str(&self.stats.stats_json("running", self.addr.port(), None))
                        .expect("stats JSON")
                }
                _ => r.json(),
            };
            let done = s["successRequests"].as_u64().unwrap_or(0)
                + s["failedRequests"].as_u64().unwrap_or(0);
            if s["totalRequests"].as_u64() == Some(done) || std::time::Instant::now() > deadline {
                return s;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}

/// A raw JSON `POST` to `path` with `headers` (whole lines, each ending in
/// CRLF) after `Host`.
pub fn post_request(path: &str, headers: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\n{headers}Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
}

/// A parsed response, with the body de-chunked.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    /// The body exactly as it came (chunk framing included).
    pub raw_body: Vec<u8>,
}

/// httparse's borrowed header fields as owned `(name, value)` pairs.
pub fn owned_headers(headers: &[httparse::Header<'_>]) -> Vec<(String, String)> {
    headers
        .iter()
        .map(|h| {
            (
                h.name.to_owned(),
                String::from_utf8_lossy(h.value).into_owned(),
            )
        })
        .collect()
}

/// The first header called `name` (ASCII case-insensitive).
pub fn find_header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, v)| v.as_str())
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        find_header(&self.headers, name)
    }

    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("not JSON ({e}): {}", String::from_utf8_lossy(&self.body)))
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The `data:` payloads of an event-stream body.
    pub fn events(&self) -> Vec<String> {
        self.sse().into_iter().map(|e| e.data).collect()
    }

    /// The events of an event-stream body as a conforming client reads
    /// them (WHATWG §9.2.6): the `data` lines of an event joined with LF,
    /// its `event` and `id` fields; comments and blocks without data left
    /// out. Lines end in LF here, as chat2api writes them.
    pub fn sse(&self) -> Vec<SseEvent> {
        let text = self.text();
        let mut events = Vec::new();
        for block in text.split("\n\n") {
            let mut ev = SseEvent::default();
            let mut data: Option<String> = None;
            for line in block.lines() {
                let (name, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match name {
                    "data" => match &mut data {
                        Some(d) => {
                            d.push('\n');
                            d.push_str(value);
                        }
                        None => data = Some(value.to_owned()),
                    },
                    "event" => ev.event = Some(value.to_owned()),
                    "id" => ev.id = Some(value.to_owned()),
                    _ => {}
                }
            }
            if let Some(data) = data {
                ev.data = data;
                events.push(ev);
            }
        }
        events
    }

    pub fn error_code(&self) -> serde_json::Value {
        self.json()["error"]["code"].clone()
    }
}

/// One server-sent event as a client sees it.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct SseEvent {
    pub event: Option<String>,
    pub id: Option<String>,
    pub data: String,
}

/// A raw client connection.
pub struct Client {
    pub stream: TcpStream,
    buf: Vec<u8>,
}

pub const READ_TIMEOUT: Duration = Duration::from_secs(10);

impl Client {
    pub async fn connect(addr: SocketAddr) -> Client {
        let stream = TcpStream::connect(addr).await.expect("connect");
        stream.set_nodelay(true).unwrap();
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    /// A client whose receive buffer is `bytes` large, so that the kernel
    /// cannot soak up a large answer the test does not read.
    pub async fn with_small_receive_buffer(addr: SocketAddr, bytes: u32) -> Client {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(bytes).expect("SO_RCVBUF");
        let stream = socket.connect(addr).await.expect("connect");
        Client {
            stream,
            buf: Vec::new(),
        }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.stream.write_all(bytes).await.expect("send");
    }

    async fn fill(&mut self) -> bool {
        let mut tmp = [0u8; 8192];
        match tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut tmp)).await {
            Ok(Ok(0)) | Ok(Err(_)) => false,
            Ok(Ok(n)) => {
                self.buf.extend_from_slice(&tmp[..n]);
                true
            }
            Err(_) => panic!("no answer within {READ_TIMEOUT:?}"),
        }
    }

    /// Read raw bytes (no HTTP parsing) until what arrived so far satisfies
    /// `done`; returns all of it. Panics if the connection closes first.
    pub async fn read_raw_until(&mut self, got: &mut Vec<u8>, done: impl Fn(&str) -> bool) {
        while !done(&String::from_utf8_lossy(got)) {
            let mut tmp = [0u8; 4096];
            let n = tokio::time::timeout(READ_TIMEOUT, self.stream.read(&mut tmp))
                .await
                .expect("no data within the timeout")
                .expect("read");
            assert!(
                n > 0,
                "closed before the expected bytes: {}",
                String::from_utf8_lossy(got)
            );
            got.extend_from_slice(&tmp[..n]);
        }
    }

    /// Read one response; `None` if the connection closed first.
    pub async fn response(&mut self) -> Option<Response> {
        self.response_to(false).await
    }

    pub async fn response_to(&mut self, head_request: bool) -> Option<Response> {
        let (status, headers, head_len) = loop {
            let mut hs = [httparse::EMPTY_HEADER; 64];
            let mut r = httparse::Response::new(&mut hs);
            match r.parse(&self.buf).expect("valid response head") {
                httparse::Status::Complete(n) => {
                    let headers = owned_headers(r.headers);
                    let status = r.code.unwrap();
                    if (100..200).contains(&status) {
                        self.buf.drain(..n);
                        continue;
                    }
                    break (status, headers, n);
                }
                httparse::Status::Partial => {
                    if !self.fill().await {
                        assert!(self.buf.is_empty(), "connection closed mid-head");
                        return None;
                    }
                }
            }
        };
        self.buf.drain(..head_len);
        let find = |name: &str| find_header(&headers, name);
        let mut body = Vec::new();
        let mut raw_body = Vec::new();
        if head_request || status == 204 || status == 304 {
        } else if find("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
            loop {
                let line_end = loop {
                    if let Some(p) = self.buf.windows(2).position(|w| w == b"\r\n") {
                        break p;
                    }
                    assert!(self.fill().await, "closed inside a chunk size line");
                };
                let size = usize::from_str_radix(
                    std::str::from_utf8(&self.buf[..line_end]).unwrap().trim(),
                    16,
                )
                .expect("hex chunk size");
                while self.buf.len() < line_end + 2 + size + 2 {
                    assert!(self.fill().await, "closed inside a chunk");
                }
                raw_body.extend(self.buf.drain(..line_end + 2 + size + 2));
                let start = raw_body.len() - size - 2;
                body.extend_from_slice(&raw_body[start..start + size]);
                if size == 0 {
                    break;
                }
            }
        } else if let Some(len) = find("content-length") {
            let len: usize = len.parse().unwrap();
            while self.buf.len() < len {
                assert!(self.fill().await, "closed inside a body");
            }
            body = self.buf.drain(..len).collect();
            raw_body = body.clone();
        } else {
            while self.fill().await {}
            body = std::mem::take(&mut self.buf);
            raw_body = body.clone();
        }
        Some(Response {
            status,
            headers,
            body,
            raw_body,
        })
    }

    /// True when the server closed the connection (EOF within the timeout).
    pub async fn is_closed(&mut self) -> bool {
        let mut tmp = [0u8; 64];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut tmp)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

pub const CHAT_BODY: &str =
    r#"{"model":"mock-echo","messages":[{"role":"user","content":"Hello there!"}]}"#;
