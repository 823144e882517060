//! The binary itself: flags, `--check-config`, signals (docs/wire.md §1).

mod support;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};
use support::binary::{signal, spawn, temp_file, wait_exit, BIN};

/// Send one whole request on a fresh connection; the answer, read to close.
fn exchange(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

fn get(addr: &str, path: &str) -> String {
    exchange(
        addr,
        &format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"),
    )
}

#[test]
fn version_and_help() {
    let out = Command::new(BIN).arg("--version").output().unwrap();
    assert!(out.status.success());
    assert!(String::from_utf8_lossy(&out.stdout).contains(env!("CARGO_PKG_VERSION")));
    let out = Command::new(BIN).arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for flag in ["--config", "--host", "--port", "--check-config"] {
        assert!(help.contains(flag), "{flag} missing from --help");
    }
    let out = Command::new(BIN).arg("--bogus").output().unwrap();
    assert!(!out.status.success());
}

/// Output to a reader that has gone (`chat2api --help | head -1`) ends the
/// process quietly, with no panic: the pipe's read end is closed before
/// the binary writes.
#[test]
fn a_closed_stdout_is_no_panic() {
    for args in [&["--help"][..], &["--version"], &["--check-config"]] {
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = Command::new(BIN)
            .args(args)
            .env_remove("CHAT2API_CONFIG")
            .stdout(writer)
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!stderr.contains("panicked"), "{args:?}: {stderr}");
        assert!(out.status.success(), "{args:?}: {stderr}");
    }
}

#[test]
fn check_config_prints_the_routing_table_without_secrets() {
    let path = temp_file(
        "ok.json",
        r#"{"apiKeys":["sk-very-secret-client"],
            "providers":[{"id":"up","type":"openai","baseUrl":"http://127.0.0.1:9/v1",
              "accounts":[{"id":"main","apiKey":"sk-very-secret-upstream"}],"models":{"DeepSeek-V3.2":"deepseek-chat"}},
              {"id":"local","type":"mock","models":["mock-echo"]}]}"#,
    );
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{text}");
    assert!(
        text.contains("DeepSeek-V3.2")
            && text.contains("deepseek-chat")
            && text.contains("mock-echo"),
        "{text}"
    );
    assert!(!text.contains("sk-very-secret"), "{text}");
}

#[test]
fn unknown_keys_are_refused_with_their_path() {
    let path = temp_file(
        "typo.json",
        r#"{"providers":[{"id":"local","type":"mock","models":["m"],"tokenDelay":5}]}"#,
    );
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("providers[0].tokenDelay"), "{err}");
}

#[test]
fn sigterm_drains_and_exits_zero() {
    let mut run = spawn(&["--port", "0"]);
    let addr = run.addr.clone();
    assert!(get(&addr, "/health").contains("\"running\""));
    signal(&run.child, "-TERM");
    let status = wait_exit(&mut run.child, Duration::from_secs(10));
    assert!(status.success(), "{status:?}");
    assert!(
        TcpStream::connect(&addr).is_err(),
        "port still open after exit"
    );
}

#[test]
fn sighup_rereads_the_config_file() {
    let path = temp_file(
        "reload.json",
        r#"{"port":0,"providers":[{"id":"local","type":"mock","models":["before"]}]}"#,
    );
    let mut run = spawn(&["--config", path.to_str().unwrap()]);
    let addr = run.addr.clone();
    assert!(get(&addr, "/v1/models").contains("\"before\""));
    let port = addr.rsplit(':').next().unwrap();
    std::fs::write(
        &path,
        format!(
            r#"{{"port":{port},"providers":[{{"id":"local","type":"mock","models":["after"]}}]}}"#
        ),
    )
    .unwrap();
    signal(&run.child, "-HUP");
    let start = Instant::now();
    loop {
        if let Ok(mut s) = TcpStream::connect(&addr) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
            let _ = write!(
                s,
                "GET /v1/models HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
            );
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            if out.contains("\"after\"") {
                break;
            }
        }
        assert!(
            start.elapsed() < Duration::from_secs(10),
            "config not reloaded"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    signal(&run.child, "-INT");
    assert!(wait_exit(&mut run.child, Duration::from_secs(10)).success());
}

/// The open-file soft limit is raised to the hard limit at start, so that
/// `maxConnections` is not capped by a default soft limit of 1024.
#[test]
fn the_open_file_limit_is_raised() {
    let soft_and_hard = |pid: u32| -> Option<(String, String)> {
        let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
        let line = limits.lines().find(|l| l.starts_with("Max open files"))?;
        let mut fields = line["Max open files".len()..].split_whitespace();
        Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
    };
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(format!("ulimit -Sn 256 && exec {BIN} --port 0"))
        .env_remove("CHAT2API_CONFIG")
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let start = Instant::now();
    let raised = loop {
        if let Some((soft, hard)) = soft_and_hard(child.id()) {
            if soft == hard && soft != "256" {
                break true;
            }
        }
        if start.elapsed() > Duration::from_secs(5) {
            break false;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let _ = child.kill();
    let _ = child.wait();
    assert!(raised, "soft limit still {:?}", soft_and_hard(child.id()));
}

fn post_chat(addr: &str, target: &str) -> String {
    let body = r#"{"model":"mock-echo","messages":[{"role":"user","content":"Hi"}]}"#;
    exchange(
        addr,
        &format!(
            "POST {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    )
}

/// One access-log line per request on stderr, within about a second (the
/// lines are buffered), never with a key; as JSON with `--access-log json`.
#[test]
fn the_access_log_has_a_line_per_request_and_no_key() {
    let run = spawn(&["--port", "0", "--management-port", "0"]);
    let answer = post_chat(&run.addr, "/v1/chat/completions?api_key=sk-very-secret");
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    let line = support::binary::stderr_line(&run, "/v1/chat/completions", Duration::from_secs(3));
    for part in [
        "POST /v1/chat/completions",
        "model=mock-echo",
        "status=200",
        "id=req_",
        "route=mock/default",
    ] {
        assert!(line.contains(part), "{part} missing: {line}");
    }
    assert!(!line.contains("sk-very-secret"), "{line}");

    let run = spawn(&[
        "--port",
        "0",
        "--management-port",
        "0",
        "--access-log",
        "json",
    ]);
    post_chat(&run.addr, "/v1/chat/completions");
    let line = support::binary::stderr_line(&run, "/v1/chat/completions", Duration::from_secs(3));
    let v: serde_json::Value = serde_json::from_str(&line).expect("a JSON line");
    assert_eq!(
        (v["status"].clone(), v["model"].clone()),
        (200.into(), "mock-echo".into())
    );
    assert!(v["requestId"].as_str().unwrap().starts_with("req_"), "{v}");
    assert!(v["latency"].is_number() && v["client"].is_string(), "{v}");

    let run = spawn(&[
        "--port",
        "0",
        "--management-port",
        "0",
        "--access-log",
        "off",
    ]);
    post_chat(&run.addr, "/v1/chat/completions");
    std::thread::sleep(Duration::from_millis(1500));
    let lines: Vec<String> = run.stderr.try_iter().collect();
    assert!(
        lines.iter().all(|l| !l.contains("/v1/chat/completions")),
        "{lines:?}"
    );
}

/// What a newcomer gets wrong, answered in one line that says what to do.
#[test]
fn mistakes_get_one_line_that_says_what_to_do() {
    let out = Command::new(BIN).arg("--prot").output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2));
    assert!(err.contains("--prot") && err.contains("--help"), "{err}");
    assert!(!err.contains("Usage:"), "the whole help was printed: {err}");

    let first = spawn(&["--port", "0", "--management-port", "0"]);
    let port = first.addr.rsplit(':').next().unwrap();
    let out = Command::new(BIN)
        .args(["--port", port, "--management-port", "0"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("--port"), "{err}");

    let wrong_place = temp_file(
        "wrong-place.json",
        r#"{"providers":[{"id":"local","type":"mock","models":["m"],"requestTimeout":5}]}"#,
    );
    let empty_key = temp_file(
        "empty-key.json",
        r#"{"providers":[{"id":"o","type":"openai","baseUrl":"http://127.0.0.1:9/v1","accounts":[{"id":"a","apiKey":"${CHAT2API_TEST_EMPTY}"}],"models":["m"]}]}"#,
    );
    for (path, expected) in [
        (&wrong_place, "`requestTimeout` belongs at the top level"),
        (&empty_key, "providers[0].accounts[0].apiKey"),
    ] {
        let out = Command::new(BIN)
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .env("CHAT2API_TEST_EMPTY", "")
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{err}");
        assert!(err.contains(expected), "{err}");
    }

    let open = spawn(&["--host", "0.0.0.0", "--port", "0", "--management-port", "0"]);
    let warning = support::binary::stderr_line(&open, "warning", Duration::from_secs(3));
    assert!(warning.contains("no client keys"), "{warning}");
}

/// The example config the README points to is valid, with its keys from
/// the environment.
#[test]
fn the_example_config_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/chat2api.json");
    let mut cmd = Command::new(BIN);
    cmd.args(["--config", path.to_str().unwrap(), "--check-config"]);
    for var in [
        "CHAT2API_KEY",
        "CHAT2API_CI_KEY",
        "CHAT2API_ADMIN_SECRET",
        "DEEPSEEK_API_KEY",
        "DEEPSEEK_BACKUP_KEY",
    ] {
        cmd.env(var, format!("example-{var}"));
    }
    let out = cmd.output().unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(table.contains("gpt-4* -> DeepSeek-V3.2"), "{table}");
    assert!(
        table.contains("-> local/ollama -> nomic-embed-text  [embeddings]"),
        "{table}"
    );
    assert!(
        table.contains("completions chat, responses chat"),
        "{table}"
    );
    assert!(
        !table.contains("example-DEEPSEEK_API_KEY"),
        "a key was printed: {table}"
    );
}

/// The README's mock benchmark profile (examples/mock-bench.json) loads and
/// `--check-config` shows each provider's profile.
#[test]
fn the_mock_benchmark_example_is_valid() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("examples/mock-bench.json");
    let out = Command::new(BIN)
        .args(["--config", path.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    let table = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        table.contains("first token after 600 ms, 40 ms per token ± 30 ms, 400-word answers, 5% 429, 1% 500, 2% cut streams"),
        "{table}"
    );
    let readme =
        std::fs::read_to_string(std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("README.md"))
            .unwrap();
    let example = std::fs::read_to_string(&path).unwrap();
    assert!(
        readme.contains(&format!("```json\n{example}```")),
        "the README shows examples/mock-bench.json as it is"
    );
}

/// Hosted tools a chat translation left out are named in the access log
/// (and in the answer's `x-chat2api-dropped-tools` header).
#[test]
fn dropped_tools_are_named_in_the_access_log() {
    let run = spawn(&["--port", "0", "--management-port", "0"]);
    let body = r#"{"model":"mock-echo","input":"Hi","tools":[{"type":"web_search"},{"type":"file_search"}]}"#;
    let answer = exchange(
        &run.addr,
        &format!(
            "POST /v1/responses HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        answer.contains("x-chat2api-dropped-tools: web_search, file_search"),
        "{answer}"
    );
    let line = support::binary::stderr_line(&run, "/v1/responses", Duration::from_secs(3));
    assert!(line.contains("dropped=web_search, file_search"), "{line}");
}

/// Out of file descriptors for an upstream connection, chat2api answers 503
/// `server_overloaded` with `Retry-After` (its own limit, docs/wire.md §4),
/// never 502 `upstream_error`, and rests nothing: once descriptors are
/// free the same upstream serves again. The binary runs with an open-file
/// limit of 64 in front of an upstream that holds every request until it
/// is released; held requests take two descriptors each (client and
/// upstream) until one is left, and the next request finds none for its
/// upstream connection: one named by address (its connect fails), then one
/// named by a hostname (the resolver has no descriptor either).
#[test]
fn out_of_descriptors_for_upstream_connections_is_a_503_not_an_upstream_failure() {
    use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
    use std::sync::Arc;
    let upstream = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let up_port = upstream.local_addr().unwrap().port();
    let release = Arc::new(AtomicBool::new(false));
    let released = release.clone();
    std::thread::spawn(move || {
        for conn in upstream.incoming() {
            let Ok(mut conn) = conn else { return };
            let released = released.clone();
            std::thread::spawn(move || {
                let answer = r#"{"id":"c1","object":"chat.completion","created":1,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"ok"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
                let mut buf = [0u8; 4096];
                // One request per read is enough here: each is small and
                // the next is sent only after the answer.
                while matches!(conn.read(&mut buf), Ok(n) if n > 0) {
                    while !released.load(SeqCst) {
                        std::thread::sleep(Duration::from_millis(10));
                    }
                    let head = format!(
                        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n",
                        answer.len()
                    );
                    if conn
                        .write_all(format!("{head}{answer}").as_bytes())
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    let config = temp_file(
        "nofile.json",
        &format!(
            r#"{{"workers": 1, "accessLog": "off", "management": {{"enabled": false}}, "requestTimeout": 60000,
               "providers": [{{"id": "held", "type": "openai", "baseUrl": "http://127.0.0.1:{up_port}/v1",
                 "accounts": [{{"id": "a", "apiKey": "sk-up"}}], "models": {{"m": "up"}}}},
                 {{"id": "named", "type": "openai", "baseUrl": "http://upstream.invalid:{up_port}/v1",
                 "accounts": [{{"id": "a", "apiKey": "sk-up"}}], "models": {{"n": "up"}}}}]}}"#
        ),
    );
    const LIMIT: usize = 64;
    let run = support::binary::spawn_with_nofile(
        LIMIT as u32,
        &["--config", config.to_str().unwrap(), "--port", "0"],
    );
    let pid = run.child.id();
    // Descriptors below the limit: one inherited above it (a test
    // runner's jobserver pipe) takes no place under it.
    let open_fds = || {
        std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<usize>().ok())
            .filter(|&fd| fd < LIMIT)
            .count()
    };
    // Waits until the gateway's count has moved from `before` and then
    // stayed put for 100 ms (it takes descriptors as it accepts and
    // connects, and a few once, lazily, on its first request); the count.
    let settled = |before: usize| {
        let deadline = Instant::now() + Duration::from_secs(5);
        let (mut last, mut same) = (open_fds(), 0);
        while last == before || same < 20 {
            assert!(
                Instant::now() < deadline,
                "{last} descriptors, from {before}"
            );
            std::thread::sleep(Duration::from_millis(5));
            let now = open_fds();
            same = if now == last { same + 1 } else { 0 };
            last = now;
        }
        last
    };
    let body = r#"{"model":"m","messages":[{"role":"user","content":"Hi"}]}"#;
    let request = format!(
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    let mut clients = Vec::new();
    // Held requests take two descriptors each; with two left, an idle
    // client takes one, so that exactly one is left for the last client.
    let mut idle = None;
    let mut open = open_fds();
    while LIMIT - open > 1 {
        let mut c = TcpStream::connect(&run.addr).unwrap();
        if LIMIT - open > 2 {
            c.write_all(request.as_bytes()).unwrap();
            clients.push(c);
        } else {
            idle = Some(c);
        }
        open = settled(open);
    }
    assert_eq!(LIMIT - open, 1, "one descriptor left");
    // One descriptor left: the client gets it, its upstream connection none.
    let mut last = TcpStream::connect(&run.addr).unwrap();
    last.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    last.write_all(request.as_bytes()).unwrap();
    let refused = read_answer(&mut last);
    last.write_all(request.replace("\"m\"", "\"n\"").as_bytes())
        .unwrap();
    let unresolved = read_answer(&mut last);
    for refused in [&refused, &unresolved] {
        assert!(refused.starts_with("HTTP/1.1 503"), "{refused}");
        assert!(
            refused.contains("\"code\":\"server_overloaded\""),
            "{refused}"
        );
        assert!(refused.contains("file descriptor"), "{refused}");
        assert!(
            refused.to_ascii_lowercase().contains("retry-after: 1"),
            "{refused}"
        );
    }
    // Released, every held request is answered by the upstream.
    release.store(true, SeqCst);
    for c in &mut clients {
        c.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let answer = read_answer(c);
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    }
    drop((clients, idle, last));
    // Nothing rested: a new request is served by the same upstream.
    let again = exchange(
        &run.addr,
        &request.replacen("Host: x\r\n", "Host: x\r\nConnection: close\r\n", 1),
    );
    assert!(again.starts_with("HTTP/1.1 200"), "{again}");
}

/// One answer with a `Content-Length` body from `s`; what arrived if the
/// read times out or the connection closes first.
fn read_answer(s: &mut TcpStream) -> String {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let text = String::from_utf8_lossy(&got).into_owned();
        if let Some(end) = text.find("\r\n\r\n") {
            let length = text[..end].lines().find_map(|l| {
                l.to_ascii_lowercase()
                    .strip_prefix("content-length:")
                    .map(|v| v.trim().parse::<usize>().unwrap())
            });
            if let Some(length) = length {
                if text.len() >= end + 4 + length {
                    return text;
                }
            }
        }
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return text,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}
