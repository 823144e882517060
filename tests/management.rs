//! The management listener of docs/wire.md §5 over real sockets: the status page,
//! the secret, start / stop / restart of the proxy, statistics, the request
//! log and Prometheus metrics. Most tests build the listeners in-process, as
//! `main` does; the last one checks the binary's wiring.

mod support;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use chat2api::config::Config;
use chat2api::management::control::{Loader, ProxyControl};
use chat2api::management::Management;
use chat2api::server::Listener;
use chat2api::stats::Stats;
use support::{Client, Response, CHAT_BODY};

const SECRET: &str = "s3cret";
const CLIENT_KEY: &str = "sk-client-key-123";
const ACCOUNT_KEY: &str = "sk-account-key-456";

fn config_json(models: &str, secret: Option<&str>) -> String {
    let secret = secret
        .map(|s| format!(r#","secret":"{s}""#))
        .unwrap_or_default();
    format!(
        r#"{{"port":0,"apiKeys":["{CLIENT_KEY}"],"management":{{"port":0{secret}}},
  "providers":[{{"id":"local","type":"mock","tokenDelayMs":30,"models":{models},
                 "accounts":[{{"id":"main","apiKey":"{ACCOUNT_KEY}"}}]}}]}}"#
    )
}

fn temp_path(name: &str) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    std::env::temp_dir().join(format!("chat2api-mgmt-{}-{n}-{name}", std::process::id()))
}

/// A proxy under a [`ProxyControl`] and a management listener over it, as
/// `main` wires them.
struct Harness {
    mgmt: SocketAddr,
    control: Arc<ProxyControl>,
    config_path: PathBuf,
    _listener: Listener,
}

impl Harness {
    async fn start(json: &str) -> Harness {
        let config_path = temp_path("config.json");
        std::fs::write(&config_path, json).unwrap();
        let path = config_path.clone();
        let load = move || Config::load(Some(&path)).map_err(|e| e.to_string());
        let config = load().expect("test config");
        let loader: Loader = Box::new(load);
        let control = Arc::new(ProxyControl::new(
            config.clone(),
            Arc::new(Stats::new()),
            loader,
        ));
        control.start().await.expect("proxy starts");
        let service = Arc::new(Management::new(
            control.clone(),
            config.management.secret.clone(),
            config.limits.clone(),
        ));
        let listener = Listener::start(service, "127.0.0.1", 0, 1).await.unwrap();
        Harness {
            mgmt: listener.local_addr(),
            control,
            config_path,
            _listener: listener,
        }
    }

    async fn with_secret() -> Harness {
        Harness::start(&config_json(r#"["mock-echo"]"#, Some(SECRET))).await
    }

    async fn proxy(&self) -> SocketAddr {
        let port = self.control.status().await.port;
        SocketAddr::from(([127, 0, 0, 1], port))
    }

    /// One management call on a fresh connection.
    async fn call(&self, method: &str, path: &str, secret: Option<&str>) -> Response {
        self.call_with(method, path, secret, "").await
    }

    async fn call_with(
        &self,
        method: &str,
        path: &str,
        secret: Option<&str>,
        extra: &str,
    ) -> Response {
        let auth = secret
            .map(|s| format!("Authorization: Bearer {s}\r\n"))
            .unwrap_or_default();
        let body = if method == "POST" {
            "Content-Length: 0\r\n"
        } else {
            ""
        };
        let mut c = Client::connect(self.mgmt).await;
        c.send(
            format!(
                "{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}{body}{extra}\r\n",
                self.mgmt
            )
            .as_bytes(),
        )
        .await;
        c.response_to(method == "HEAD").await.expect("an answer")
    }

    /// The `data` of a successful call.
    async fn data(&self, method: &str, path: &str) -> serde_json::Value {
        let r = self.call(method, path, Some(SECRET)).await;
        let v = r.json();
        assert_eq!((r.status, &v["success"]), (200, &true.into()), "{v}");
        v["data"].clone()
    }

    async fn status(&self) -> serde_json::Value {
        self.data("GET", "/v0/management/proxy/status").await
    }

    async fn proxy_get(&self, path: &str) -> Response {
        let mut c = Client::connect(self.proxy().await).await;
        c.send(
            format!("GET {path} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\n\r\n")
                .as_bytes(),
        )
        .await;
        c.response().await.expect("an answer")
    }

    async fn chat(&self, body: &str) -> Response {
        let mut c = Client::connect(self.proxy().await).await;
        c.send(
            format!(
                "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            )
            .as_bytes(),
        )
        .await;
        c.response().await.expect("an answer")
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.config_path);
    }
}

fn model_ids(r: &Response) -> Vec<String> {
    r.json()["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_page_is_served_without_the_secret() {
    let h = Harness::with_secret().await;
    let r = h.call("GET", "/", None).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert_eq!(r.header("x-frame-options"), Some("DENY"));
    let page = r.text();
    for action in ["start", "stop", "restart"] {
        assert!(
            page.contains(&format!("data-action=\"{action}\"")),
            "{action}"
        );
    }
    for text in ["Running", "Stopped", "Error", "sessionStorage", "Bearer "] {
        assert!(page.contains(text), "{text}");
    }
    assert!(page.contains(env!("CARGO_PKG_VERSION")) && !page.contains("{{version}}"));
    let head = h.call("HEAD", "/", None).await;
    assert_eq!((head.status, head.body.len()), (200, 0));
    // A browser's preflight carries no secret.
    let r = h
        .call_with(
            "OPTIONS",
            "/v0/management/proxy/stop",
            None,
            "Origin: http://dash.example\r\nAccess-Control-Request-Method: POST\r\n",
        )
        .await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
    assert!(r
        .header("access-control-allow-headers")
        .unwrap()
        .contains("Authorization"));
}

#[tokio::test]
async fn every_api_call_needs_the_secret() {
    let h = Harness::with_secret().await;
    let calls = [
        ("GET", "/v0/management/proxy/status"),
        ("GET", "/v0/management/statistics"),
        ("GET", "/v0/management/logs"),
        ("GET", "/metrics"),
        ("POST", "/v0/management/proxy/stop"),
        ("POST", "/v0/management/proxy/start"),
        ("POST", "/v0/management/proxy/restart"),
        ("GET", "/v0/management/nope"),
    ];
    for (method, path) in calls {
        for secret in [None, Some("wrong"), Some("s3cret-and-more"), Some("")] {
            let r = h.call(method, path, secret).await;
            let v = r.json();
            assert_eq!(r.status, 401, "{method} {path} {secret:?}");
            assert_eq!(v["success"], false);
            assert_eq!(v["error"]["code"], "unauthorized");
            assert!(v["error"]["message"].is_string());
            assert!(r.header("www-authenticate").unwrap().starts_with("Bearer"));
            assert!(!r.text().contains(SECRET));
        }
    }
    // A refused stop stopped nothing.
    assert_eq!(h.status().await["status"], "running");
    // With the secret: unknown routes and wrong methods.
    let r = h.call("GET", "/v0/management/nope", Some(SECRET)).await;
    assert_eq!(
        (r.status, r.json()["error"]["code"].clone()),
        (404, "not_found".into())
    );
    let r = h
        .call("GET", "/v0/management/proxy/stop", Some(SECRET))
        .await;
    assert_eq!(r.status, 405);
    assert_eq!(r.json()["error"]["code"], "method_not_allowed");
    assert_eq!(r.header("allow"), Some("POST, OPTIONS"));
    let r = h
        .call("POST", "/v0/management/proxy/status", Some(SECRET))
        .await;
    assert_eq!(
        (r.status, r.header("allow")),
        (405, Some("GET, HEAD, OPTIONS"))
    );
    // The scheme is case-insensitive, as RFC 9110 §11.1 says.
    let r = h
        .call_with(
            "GET",
            "/v0/management/proxy/status",
            None,
            "Authorization: bearer s3cret\r\n",
        )
        .await;
    assert_eq!(r.status, 200);
    assert_eq!(h.status().await["isRunning"], true);
}

#[tokio::test]
async fn status_describes_the_running_proxy() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    let s = h.status().await;
    assert_eq!(s["isRunning"], true);
    assert_eq!(s["status"], "running");
    assert!(s["error"].is_null());
    assert_eq!(s["host"], "127.0.0.1");
    assert_eq!(s["port"], proxy.port());
    assert!(s["uptime"].is_u64() && s["connections"].is_u64());
    let r = h.proxy_get("/health").await;
    assert_eq!(r.status, 200);
    let r = h
        .call("GET", "/v0/management/proxy/status", Some(SECRET))
        .await;
    assert_eq!(r.header("cache-control"), Some("no-store"));
    assert_eq!(r.header("access-control-allow-origin"), Some("*"));
}

#[tokio::test]
async fn stop_closes_the_port_and_start_serves_it_again() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    let d = h.data("POST", "/v0/management/proxy/stop").await;
    assert_eq!(
        (d["isRunning"].clone(), d["status"].clone()),
        (false.into(), "stopped".into())
    );
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "the proxy port still accepts"
    );
    let s = h.status().await;
    assert_eq!(
        (s["status"].clone(), s["isRunning"].clone()),
        ("stopped".into(), false.into())
    );
    assert_eq!(s["uptime"], 0);
    assert_eq!(s["port"], proxy.port());
    let stats = h.data("GET", "/v0/management/statistics").await;
    assert_eq!(stats["status"], "stopped");
    let metrics = h.call("GET", "/metrics", Some(SECRET)).await.text();
    assert!(metrics.contains("\nchat2api_up 0\n"), "{metrics}");
    // Stopping twice is harmless; the management listener is still up.
    h.data("POST", "/v0/management/proxy/stop").await;
    let d = h.data("POST", "/v0/management/proxy/start").await;
    assert_eq!(
        (d["isRunning"].clone(), d["port"].clone()),
        (true.into(), proxy.port().into())
    );
    let r = h.proxy_get("/v1/models").await;
    assert_eq!(model_ids(&r), ["mock-echo"]);
    assert_eq!(h.status().await["status"], "running");
    // Starting a running proxy is a no-op.
    let d = h.data("POST", "/v0/management/proxy/start").await;
    assert_eq!(d["port"], proxy.port());
}

#[tokio::test]
async fn stop_lets_an_in_flight_stream_finish() {
    let h = Harness::with_secret().await;
    let mut c = Client::connect(h.proxy().await).await;
    let body = r#"{"model":"mock-echo","stream":true,"messages":[{"role":"user","content":"one two three four five six"}]}"#;
    c.send(
        format!(
            "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {CLIENT_KEY}\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await;
    let stats = h.control.stats().clone();
    let start = Instant::now();
    while stats.totals().0 == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "request never arrived"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    h.data("POST", "/v0/management/proxy/stop").await;
    let r = c.response().await.expect("the stream goes on");
    assert_eq!(r.status, 200);
    let events = r.events();
    assert!(events.len() > 3, "{events:?}");
    assert_eq!(events.last().map(String::as_str), Some("[DONE]"));
    assert_eq!(h.status().await["status"], "stopped");
}

#[tokio::test]
async fn restart_rereads_the_config_file() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    std::fs::write(
        &h.config_path,
        config_json(r#"["mock-echo","after-restart"]"#, Some(SECRET)),
    )
    .unwrap();
    let d = h.data("POST", "/v0/management/proxy/restart").await;
    assert_eq!(d["status"], "running");
    assert_eq!(
        d["port"],
        proxy.port(),
        "a port of 0 stays what the OS gave"
    );
    let r = h.proxy_get("/v1/models").await;
    assert_eq!(model_ids(&r), ["mock-echo", "after-restart"]);
}

#[tokio::test]
async fn a_broken_config_is_refused_and_the_proxy_keeps_serving() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    for broken in [
        "{ not json".to_owned(),
        config_json(r#"["mock-echo"]"#, Some(SECRET)).replace("\"port\":0", "\"prot\":0"),
    ] {
        std::fs::write(&h.config_path, broken).unwrap();
        let r = h
            .call("POST", "/v0/management/proxy/restart", Some(SECRET))
            .await;
        let v = r.json();
        assert_eq!(r.status, 500, "{v}");
        assert_eq!(v["success"], false);
        assert_eq!(v["error"]["code"], "invalid_config");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
        let s = h.status().await;
        assert_eq!(
            (s["status"].clone(), s["port"].clone()),
            ("running".into(), proxy.port().into())
        );
        let r = h.proxy_get("/v1/models").await;
        assert_eq!(model_ids(&r), ["mock-echo"]);
    }
}

#[tokio::test]
async fn start_on_a_taken_port_reports_the_error() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    h.data("POST", "/v0/management/proxy/stop").await;
    let blocker = std::net::TcpListener::bind(proxy).expect("the port is free after stop");
    let r = h
        .call("POST", "/v0/management/proxy/start", Some(SECRET))
        .await;
    let v = r.json();
    assert_eq!(r.status, 500, "{v}");
    assert_eq!(v["success"], false);
    assert_eq!(v["error"]["code"], "start_failed");
    let reason = v["error"]["message"].as_str().unwrap().to_owned();
    assert!(reason.contains(&proxy.port().to_string()), "{reason}");
    let s = h.status().await;
    assert_eq!(
        (s["status"].clone(), s["isRunning"].clone()),
        ("error".into(), false.into())
    );
    assert_eq!(s["error"], reason.as_str());
    let stats = h.data("GET", "/v0/management/statistics").await;
    assert_eq!(stats["status"], "error");
    drop(blocker);
    let d = h.data("POST", "/v0/management/proxy/start").await;
    assert_eq!(
        (d["status"].clone(), d["error"].clone()),
        ("running".into(), serde_json::Value::Null)
    );
    assert_eq!(h.proxy_get("/health").await.status, 200);
}

#[tokio::test]
async fn statistics_count_proxy_requests_and_not_management_ones() {
    let h = Harness::with_secret().await;
    assert_eq!(h.chat(CHAT_BODY).await.status, 200);
    assert_eq!(h.chat(CHAT_BODY).await.status, 200);
    let unknown = CHAT_BODY.replace("mock-echo", "no-such-model");
    assert_eq!(h.chat(&unknown).await.status, 404);
    // The proxy's client connections close in the background.
    let stats = h.control.stats().clone();
    let start = Instant::now();
    while stats.active_connections() > 0 {
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "proxy connections stay open"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A management connection kept open while the statistics are read.
    let mut c = Client::connect(h.mgmt).await;
    let get = format!(
        "GET /v0/management/statistics HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {SECRET}\r\n\r\n"
    );
    c.send(get.as_bytes()).await;
    c.response().await.unwrap();
    c.send(get.as_bytes()).await;
    let v = c.response().await.unwrap().json();
    let d = &v["data"];
    assert_eq!(d["status"], "running");
    assert_eq!(d["port"], h.proxy().await.port());
    assert_eq!(d["totalRequests"], 3);
    assert_eq!(d["successRequests"], 2);
    assert_eq!(d["failedRequests"], 1);
    assert_eq!(
        d["activeConnections"], 0,
        "management connections are not counted"
    );
    assert_eq!(d["modelUsage"]["mock-echo"], 2);
    assert_eq!(d["accountUsage"]["local/main"], 2);
    assert!(d["latency"]["p50"].as_f64().unwrap() > 0.0);
    assert!(d["tokens"]["completion"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn the_log_lists_requests_without_keys_or_bodies() {
    let h = Harness::with_secret().await;
    let body = CHAT_BODY.replace("Hello there!", "a very private prompt");
    assert_eq!(h.chat(&body).await.status, 200);
    // The proxy's worker logs the request just after writing its answer.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let r = loop {
        let r = h.call("GET", "/v0/management/logs", Some(SECRET)).await;
        if r.text().contains("mock-echo") || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    let text = r.text();
    for secret in [CLIENT_KEY, ACCOUNT_KEY, SECRET, "very private"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
    let log = r.json()["data"].clone();
    let entry = &log.as_array().expect("an array")[0];
    assert_eq!(entry["model"], "mock-echo");
    assert_eq!(entry["provider"], "local");
    assert_eq!(entry["account"], "local/main");
    assert_eq!(entry["status"], 200);
    assert_eq!(entry["stream"], false);
    assert!(entry["latency"].as_f64().unwrap() > 0.0);
    assert!(entry["time"].as_u64().unwrap() > 1_600_000_000_000);
    assert!(entry["error"].is_null());
}

/// Parse one sample line, `name{k="v",...} value`, by the rules of the text
/// format 0.0.4; returns the name, the labels and the value.
fn parse_sample(line: &str) -> (String, Vec<(String, String)>, f64) {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or_else(|| panic!("no value: {line}"));
    let name = &line[..name_end];
    assert!(
        !name.is_empty() && !name.starts_with(|c: char| c.is_ascii_digit()),
        "{line}"
    );
    let mut rest = &line[name_end..];
    let mut labels = Vec::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let mut chars = inner.char_indices();
        let mut key = String::new();
        let mut end = None;
        while let Some((i, c)) = chars.next() {
            match c {
                '}' => {
                    end = Some(i + 1);
                    break;
                }
                ',' => {}
                '=' => {
                    assert_eq!(chars.next().map(|(_, c)| c), Some('"'), "{line}");
                    let mut value = String::new();
                    loop {
                        match chars
                            .next()
                            .unwrap_or_else(|| panic!("unterminated: {line}"))
                            .1
                        {
                            '\\' => match chars.next().unwrap().1 {
                                'n' => value.push('\n'),
                                c @ ('\\' | '"') => value.push(c),
                                c => panic!("bad escape \\{c} in {line}"),
                            },
                            '"' => break,
                            '\n' => panic!("raw newline in {line}"),
                            c => value.push(c),
                        }
                    }
                    labels.push((std::mem::take(&mut key), value));
                }
                c if c.is_ascii_alphanumeric() || c == '_' => key.push(c),
                c => panic!("unexpected {c:?} in {line}"),
            }
        }
        rest = &inner[end.unwrap_or_else(|| panic!("no closing brace: {line}"))..];
    }
    let value = rest
        .strip_prefix(' ')
        .unwrap_or_else(|| panic!("no space before the value: {line}"));
    let value: f64 = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("bad value: {line}")),
    };
    (name.to_owned(), labels, value)
}

#[tokio::test]
async fn metrics_are_prometheus_text() {
    let h = Harness::with_secret().await;
    assert_eq!(h.chat(CHAT_BODY).await.status, 200);
    // The proxy's worker records the request just after its answer is
    // written, on another thread than the management listener's.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
    let r = loop {
        let r = h.call("GET", "/metrics", Some(SECRET)).await;
        let counted = r
            .text()
            .contains("chat2api_requests_total{result=\"success\"} 1");
        if counted || std::time::Instant::now() > deadline {
            break r;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    };
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("text/plain; version=0.0.4"));
    let text = r.text();
    assert!(text.ends_with('\n'));
    let mut typed: Vec<String> = Vec::new();
    let mut samples = Vec::new();
    for line in text.lines() {
        if let Some(comment) = line.strip_prefix("# ") {
            let mut words = comment.splitn(3, ' ');
            let (kind, name) = (words.next().unwrap(), words.next().unwrap());
            assert!(name.starts_with("chat2api_"), "{line}");
            if kind == "TYPE" {
                let t = words.next().unwrap();
                assert!(["counter", "gauge", "summary"].contains(&t), "{line}");
                typed.push(name.to_owned());
            } else {
                assert_eq!(kind, "HELP", "{line}");
            }
            continue;
        }
        let (name, labels, value) = parse_sample(line);
        let family = name
            .strip_suffix("_sum")
            .or_else(|| name.strip_suffix("_count"))
            .filter(|f| typed.iter().any(|t| t == f))
            .unwrap_or(&name);
        assert_eq!(typed.last().map(String::as_str), Some(family), "{line}");
        samples.push((name, labels, value));
    }
    let find = |name: &str, label: Option<(&str, &str)>| {
        samples
            .iter()
            .find(|(n, l, _)| {
                n == name && label.is_none_or(|(k, v)| l.iter().any(|(lk, lv)| lk == k && lv == v))
            })
            .map(|(_, _, v)| *v)
            .unwrap_or_else(|| panic!("no {name} {label:?} in\n{text}"))
    };
    assert_eq!(
        find("chat2api_requests_total", Some(("result", "success"))),
        1.0
    );
    assert_eq!(
        find(
            "chat2api_deployment_resting",
            Some(("deployment", "local/main/mock-echo"))
        ),
        0.0
    );
    assert_eq!(find("chat2api_rests_total", None), 0.0);
    assert_eq!(
        find("chat2api_requests_total", Some(("result", "failed"))),
        0.0
    );
    assert_eq!(find("chat2api_up", None), 1.0);
    assert_eq!(
        find(
            "chat2api_model_requests_total",
            Some(("model", "mock-echo"))
        ),
        1.0
    );
    assert_eq!(
        find(
            "chat2api_account_requests_total",
            Some(("account", "local/main"))
        ),
        1.0
    );
    assert!(find("chat2api_tokens_total", Some(("kind", "completion"))) > 0.0);
    let p50 = find(
        "chat2api_request_latency_seconds",
        Some(("quantile", "0.5")),
    );
    assert!(p50 > 0.0 && p50 < 5.0, "latency is in seconds: {p50}");
    assert_eq!(find("chat2api_request_latency_seconds_count", None), 1.0);
    assert!(find("chat2api_ttft_seconds", Some(("quantile", "0.99"))) > 0.0);
    for name in [
        "chat2api_uptime_seconds",
        "chat2api_active_connections",
        "chat2api_requests_per_minute",
    ] {
        find(name, None);
    }
}

#[tokio::test]
async fn without_a_secret_other_origins_cannot_act() {
    let h = Harness::start(&config_json(r#"["mock-echo"]"#, None)).await;
    assert_eq!(
        h.call("GET", "/v0/management/proxy/status", None)
            .await
            .status,
        200
    );
    for origin in ["http://evil.example", "null", "http://127.0.0.1:1"] {
        let r = h
            .call_with(
                "POST",
                "/v0/management/proxy/stop",
                None,
                &format!("Origin: {origin}\r\n"),
            )
            .await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].clone()),
            (403, "forbidden".into()),
            "{origin}"
        );
    }
    let s = h
        .call("GET", "/v0/management/proxy/status", None)
        .await
        .json();
    assert_eq!(s["data"]["status"], "running");
    // The page itself (same origin) and clients without Origin may.
    let own = format!("Origin: http://{}\r\n", h.mgmt);
    let r = h
        .call_with("POST", "/v0/management/proxy/stop", None, &own)
        .await;
    assert_eq!(r.status, 200);
    let r = h.call("POST", "/v0/management/proxy/start", None).await;
    assert_eq!(r.json()["data"]["status"], "running");
}

/// The binary: the management address on the second stderr line, the API
/// behind the secret, and a clean exit on SIGTERM.
#[test]
fn the_binary_serves_management_beside_the_proxy() {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::process::{Command, Stdio};
    let path = temp_path("binary.json");
    std::fs::write(&path, config_json(r#"["mock-echo"]"#, Some(SECRET))).unwrap();
    let mut child = Command::new(env!("CARGO_BIN_EXE_chat2api"))
        .args(["--config", path.to_str().unwrap()])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut lines = [String::new(), String::new()];
    for line in &mut lines {
        stderr.read_line(line).unwrap();
    }
    std::thread::spawn(move || {
        let mut sink = String::new();
        let _ = stderr.read_to_string(&mut sink);
    });
    let addr = |line: &str| line.split("http://").nth(1).unwrap().trim().to_owned();
    assert!(lines[0].starts_with("chat2api ") && lines[0].contains(" listening on http://"));
    assert!(
        lines[1].starts_with("chat2api management on http://"),
        "{}",
        lines[1]
    );
    let (proxy, mgmt) = (addr(&lines[0]), addr(&lines[1]));
    let get = |path: &str, auth: &str| {
        let mut s = std::net::TcpStream::connect(&mgmt).unwrap();
        write!(
            s,
            "GET {path} HTTP/1.1\r\nHost: x\r\n{auth}Connection: close\r\n\r\n"
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    assert!(get("/", "").starts_with("HTTP/1.1 200"));
    assert!(get("/v0/management/proxy/status", "").starts_with("HTTP/1.1 401"));
    let status = get(
        "/v0/management/proxy/status",
        &format!("Authorization: Bearer {SECRET}\r\n"),
    );
    let port = proxy.rsplit(':').next().unwrap();
    assert!(status.contains(&format!("\"port\":{port}")), "{status}");
    let ok = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(ok.success());
    let start = Instant::now();
    let exit = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "no exit");
        std::thread::sleep(Duration::from_millis(20));
    };
    assert!(exit.success(), "{exit:?}");
    assert!(
        std::net::TcpStream::connect(&mgmt).is_err(),
        "management still open"
    );
    let _ = std::fs::remove_file(&path);
}

#[tokio::test]
async fn restart_onto_a_taken_port_keeps_the_old_listener() {
    let h = Harness::with_secret().await;
    let proxy = h.proxy().await;
    let blocker = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let taken = blocker.local_addr().unwrap().port();
    std::fs::write(
        &h.config_path,
        config_json(r#"["mock-echo","moved"]"#, Some(SECRET)).replacen(
            "\"port\":0,",
            &format!("\"port\":{taken},"),
            1,
        ),
    )
    .unwrap();
    let r = h
        .call("POST", "/v0/management/proxy/restart", Some(SECRET))
        .await;
    let v = r.json();
    assert_eq!(
        (r.status, v["error"]["code"].clone()),
        (500, "start_failed".into()),
        "{v}"
    );
    assert!(v["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&taken.to_string()));
    let s = h.status().await;
    assert_eq!(
        (s["status"].clone(), s["port"].clone()),
        ("running".into(), proxy.port().into())
    );
    assert_eq!(model_ids(&h.proxy_get("/v1/models").await), ["mock-echo"]);
    // Once the port is free, the same restart moves the proxy there.
    drop(blocker);
    let d = h.data("POST", "/v0/management/proxy/restart").await;
    assert_eq!(d["port"], taken);
    assert!(
        tokio::net::TcpStream::connect(proxy).await.is_err(),
        "the old port is closed"
    );
    assert_eq!(
        model_ids(&h.proxy_get("/v1/models").await),
        ["mock-echo", "moved"]
    );
}

/// The status page carries the live charts, the health of every account
/// and deployment, usage and the recent requests, drawn from the API the
/// page polls (no external assets).
#[tokio::test]
async fn the_page_shows_health_charts_and_recent_requests() {
    let h = Harness::with_secret().await;
    let page = h.call("GET", "/", None).await.text();
    for id in [
        "chart-rps",
        "chart-latency",
        "chart-ttft",
        "accounts",
        "deployments",
        "models",
        "recent",
    ] {
        assert!(page.contains(&format!("id=\"{id}\"")), "{id} missing");
    }
    for external in ["src=\"http", "href=\"http", "url(http", "@import"] {
        assert!(!page.contains(external), "external asset: {external}");
    }
    let stats = h.data("GET", "/v0/management/statistics").await;
    let accounts = stats["health"]["accounts"].as_array().expect("health");
    assert!(accounts.iter().any(|a| a["id"] == "local/main"), "{stats}");
    assert_eq!(accounts[0]["account"]["state"], "healthy");
}
