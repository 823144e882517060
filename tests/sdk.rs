//! The official OpenAI SDKs against the real binary, and the README's
//! examples run exactly as written.
//!
//! The SDKs come from PyPI and npm (a virtualenv in `.venv`,
//! `tests/sdk/node_modules`): `.ci/run` installs them, and a test that finds
//! one missing installs it itself (`support::sdk`); none is ever skipped.

mod support;

use std::net::TcpStream;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};
use support::binary::{spawn, temp_file, Running};
use support::sdk::{node, python, run, ROOT};

/// Two gateways: a back one serving the mock, and the front one the SDKs
/// talk to, which serves the mock itself and `proxied-echo` through the back
/// one, so that the SDKs also stream through the upstream client and the
/// SSE re-framer. Returns both servers and the front base URL.
fn gateways() -> (Running, Running, String) {
    let back = temp_file(
        "back",
        r#"{"port":0,"management":{"port":0},"providers":[{"id":"back","type":"mock","models":["mock-echo"]}]}"#,
    );
    let back_server = spawn(&["--config", back.to_str().unwrap()]);
    let back_addr = back_server.addr.clone();
    let front = temp_file(
        "front",
        &format!(
            r#"{{"port":0,"management":{{"port":0}},"apiKeys":["sk-test"],
                "providers":[{{"id":"local","type":"mock","models":["mock-echo","DeepSeek-V3.2"]}},
                  {{"id":"back","type":"openai","baseUrl":"http://{back_addr}/v1",
                    "accounts":[{{"id":"a","apiKey":"sk-back"}}],"models":{{"proxied-echo":"mock-echo"}}}}]}}"#
        ),
    );
    let front_server = spawn(&["--config", front.to_str().unwrap()]);
    let base = format!("http://{}/v1", front_server.addr);
    (back_server, front_server, base)
}

#[test]
fn python_sdk() {
    let py = python();
    let (_back, _front, base) = gateways();
    run(Command::new(py)
        .arg(Path::new(ROOT).join("tests/sdk/sdk_test.py"))
        .args([base.as_str(), "mock-echo", "proxied-echo"]));
}

#[test]
fn javascript_sdk() {
    let node = node();
    let (_back, _front, base) = gateways();
    run(Command::new(node)
        .arg(Path::new(ROOT).join("tests/sdk/sdk_test.mjs"))
        .args([base.as_str(), "mock-echo", "proxied-echo"]));
}

/// The fenced code blocks of the README with the given info string.
fn readme_blocks(lang: &str) -> Vec<String> {
    let readme = std::fs::read_to_string(Path::new(ROOT).join("README.md")).unwrap();
    let mut blocks = Vec::new();
    let mut current: Option<String> = None;
    for line in readme.lines() {
        match &mut current {
            None if line.trim_end() == format!("```{lang}") => current = Some(String::new()),
            Some(block) if line.trim_end() == "```" => {
                blocks.push(std::mem::take(block));
                current = None;
            }
            Some(block) => {
                block.push_str(line);
                block.push('\n');
            }
            None => {}
        }
    }
    blocks
}

fn wait_for(addr: &str) {
    let start = Instant::now();
    while TcpStream::connect(addr).is_err() {
        assert!(start.elapsed() < Duration::from_secs(10));
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The Proxy Settings page's examples, as the README gives them, against a
/// gateway with the first README command's built-in default. It listens on
/// a port of its own (the README's `localhost:8080` is replaced by it), so
/// the tests pass while the user's own gateway holds 8080.
#[test]
fn readme_examples_run_as_written() {
    let server = spawn(&["--port", "0", "--management-port", "0"]);
    wait_for(&server.addr);
    let local = |block: &str| block.replace("localhost:8080", &server.addr);
    let curls = readme_blocks("bash")
        .into_iter()
        .filter(|b| b.starts_with("curl http://localhost:8080/v1/chat/completions"))
        .collect::<Vec<_>>();
    assert!(curls.len() >= 2, "the README lost its curl examples");
    for block in curls {
        let out = Command::new("bash")
            .arg("-c")
            .arg(local(&block))
            .output()
            .unwrap();
        let body = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && body.contains("DeepSeek-V3.2"),
            "{block}\n{body}"
        );
        if block.contains("\"stream\": true") {
            assert!(body.trim_end().ends_with("data: [DONE]"), "{body}");
        }
    }
    // The audio example: speech saved to a file, then transcribed; run in
    // a directory of its own, where it writes hello.wav.
    let audio = readme_blocks("bash")
        .into_iter()
        .find(|b| b.starts_with("curl http://localhost:8080/v1/audio/speech"))
        .expect("the README lost its audio example");
    let dir = std::env::temp_dir().join(format!("chat2api-readme-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let out = Command::new("bash")
        .arg("-c")
        .arg(local(&audio))
        .current_dir(&dir)
        .output()
        .unwrap();
    let wav = std::fs::read(dir.join("hello.wav")).unwrap_or_default();
    let _ = std::fs::remove_dir_all(&dir);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && wav.starts_with(b"RIFF"),
        "{audio}\n{text}"
    );
    assert!(
        text.contains(&format!(
            "mock transcription of hello.wav ({} bytes)",
            wav.len()
        )),
        "{text}"
    );
    // Each SDK example prints the answer: the mock's reply to "Hello!".
    let printed_answer = |out: &std::process::Output| {
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success() && text.contains("You said: Hello!"),
            "{text}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let python_blocks = readme_blocks("python");
    assert!(
        !python_blocks.is_empty(),
        "the README lost its Python example"
    );
    let py = python();
    for block in python_blocks {
        printed_answer(
            &Command::new(&py)
                .arg("-c")
                .arg(local(&block))
                .output()
                .unwrap(),
        );
    }
    let js_blocks = readme_blocks("javascript");
    assert!(
        !js_blocks.is_empty(),
        "the README lost its JavaScript example"
    );
    let node = node();
    for (i, block) in js_blocks.iter().enumerate() {
        // Written beside tests/sdk/node_modules so `import 'openai'` resolves.
        let path = Path::new(ROOT).join(format!("tests/sdk/readme_example_{i}.mjs"));
        std::fs::write(&path, local(block)).unwrap();
        let result = Command::new(&node).arg(&path).output();
        let _ = std::fs::remove_file(&path);
        printed_answer(&result.unwrap());
    }
}

/// The README's key-rules example, as written but for its port, config
/// path and binary: three requests pass, the fourth is refused.
#[test]
fn readme_key_rules_example_runs_as_written() {
    let block = readme_blocks("bash")
        .into_iter()
        .find(|b| b.starts_with("cat > /tmp/keys.json"))
        .expect("the README lost its key-rules example");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
        .to_string();
    let config = std::env::temp_dir().join(format!("chat2api-keys-{}.json", std::process::id()));
    let script = block
        .replace("8090", &port)
        .replace("/tmp/keys.json", config.to_str().unwrap())
        .replace("./target/release/chat2api", env!("CARGO_BIN_EXE_chat2api"));
    let out = Command::new("bash")
        .arg("-c")
        .arg(&script)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&config);
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("200 200 200 429"), "{script}\n{text}");
}

/// Every whole config the README shows (its `json` blocks that are one
/// object) loads: `--check-config` accepts it, with the variables it names
/// set.
#[test]
fn readme_configs_load() {
    let configs: Vec<String> = readme_blocks("json")
        .into_iter()
        .filter(|b| b.trim_start().starts_with('{'))
        .collect();
    assert!(
        configs.iter().any(|c| c.contains("\"anthropic\"")),
        "the README lost its Anthropic provider example"
    );
    for (i, config) in configs.iter().enumerate() {
        let path = std::env::temp_dir().join(format!(
            "chat2api-readme-config-{}-{i}.json",
            std::process::id()
        ));
        std::fs::write(&path, config).unwrap();
        let out = Command::new(env!("CARGO_BIN_EXE_chat2api"))
            .args(["--config", path.to_str().unwrap(), "--check-config"])
            .env("ANTHROPIC_API_KEY", "sk-ant-example")
            .env("REDIS_PASSWORD", "example")
            .env("CI_KEY", "sk-ci-example")
            .output()
            .unwrap();
        let _ = std::fs::remove_file(&path);
        assert!(
            out.status.success(),
            "{config}\n{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
