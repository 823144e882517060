//! Coding agents through chat2api onto a scripted OpenAI-chat upstream:
//! Claude Code (`@anthropic-ai/claude-code`, run offline with `claude -p`)
//! speaks the Anthropic Messages API to chat2api, Codex CLI
//! (`@openai/codex`, `codex exec` with its default tools) the Responses
//! API; chat2api translates both onto chat completions and back.

mod support;

use support::upstream::{ChatReply, MockUpstream, Recorded, Step};
use support::TestGateway;

/// A reply of the scripted upstream: `text`, or one call of `tool` with
/// `arguments` (call id `call_read`), streamed or whole.
fn chat_reply(req: &Recorded, text: Option<&str>, tool: Option<(&str, &str)>) -> Vec<Step> {
    let reply = ChatReply {
        chat_id: "chatcmpl-a",
        text,
        tool: tool.map(|(name, args)| (name, "call_read", args)),
        usage: (50, 10),
    };
    support::upstream::chat_reply(req, &reply)
}

/// The text of a chat message's content (a string or text parts).
fn content_text(content: &serde_json::Value) -> String {
    match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p["text"].as_str())
            .collect::<Vec<_>>()
            .join(""),
        _ => String::new(),
    }
}

/// `claude -p PROMPT` against `gw`, in `dir`, with a home of its own and
/// nothing sent anywhere but chat2api. Returns its stdout.
fn claude(gw: &TestGateway, dir: &std::path::Path, prompt: &str) -> String {
    let bin = support::agents::agent("claude");
    let home = dir.join("home");
    std::fs::create_dir_all(&home).unwrap();
    let out = std::process::Command::new(bin)
        .args(["-p", prompt, "--model", "claude-test"])
        .current_dir(dir)
        .env("HOME", &home)
        .env("ANTHROPIC_BASE_URL", format!("http://{}", gw.addr))
        .env("ANTHROPIC_API_KEY", "sk-test")
        .env("DISABLE_TELEMETRY", "1")
        .env("DISABLE_AUTOUPDATER", "1")
        .env("DISABLE_ERROR_REPORTING", "1")
        .env("CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC", "1")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("claude runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "claude failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Claude Code answers a plain question, then completes a tool-using task:
/// the upstream calls Claude Code's file-reading tool, Claude Code runs it,
/// the file's contents come back as a tool result, and the final answer
/// that quotes them is printed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claude_code_completes_a_tool_using_task_through_chat2api() {
    let dir = std::env::temp_dir().join(format!("chat2api-claude-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "The secret number is 4217.\n").unwrap();
    let notes_path = notes.display().to_string();
    let up = MockUpstream::start(move |req| {
        let v = req.json();
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        let last_user = messages
            .iter()
            .rev()
            .find(|m| m["role"] == "user")
            .map(|m| content_text(&m["content"]))
            .unwrap_or_default();
        let offers_read = v["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "Read"));
        if let Some(result) = messages.iter().rev().find(|m| m["role"] == "tool") {
            let said = content_text(&result["content"]);
            return chat_reply(req, Some(&format!("The file says: {}", said.trim())), None);
        }
        if offers_read && last_user.contains("notes.txt") {
            let args = serde_json::json!({"file_path": notes_path}).to_string();
            return chat_reply(req, Some("Let me read it."), Some(("Read", &args)));
        }
        chat_reply(req, Some("Hello from the scripted upstream."), None)
    })
    .await;
    let config = format!(
        r#"{{"apiKeys": ["sk-test"], "requestTimeout": 20000, "retryCount": 0,
  "providers": [{{"id": "chat", "type": "openai", "baseUrl": "{}", "accounts": [{{"id": "a", "apiKey": "sk-up"}}],
    "models": {{"claude-test": "up-model"}}}}]}}"#,
        up.base_url()
    );
    let gw = TestGateway::start(&config).await;
    let gw = std::sync::Arc::new(gw);
    let (g, d) = (gw.clone(), dir.clone());
    let hello = tokio::task::spawn_blocking(move || claude(&g, &d, "Say hello"))
        .await
        .unwrap();
    assert!(
        hello.contains("Hello from the scripted upstream."),
        "{hello}"
    );

    let (g, d) = (gw.clone(), dir.clone());
    let answer =
        tokio::task::spawn_blocking(move || claude(&g, &d, "What does notes.txt say? Read it."))
            .await
            .unwrap();
    assert!(answer.contains("The secret number is 4217."), "{answer}");
    // The tool ran on Claude Code's side: its result reached the upstream
    // as a tool message answering the call.
    let reached = up.last().json()["messages"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["role"] == "tool" && m["tool_call_id"] == "call_read");
    assert!(reached, "{}", String::from_utf8_lossy(&up.last().body));
    let _ = std::fs::remove_dir_all(&dir);
}

/// `codex exec PROMPT` against `gw` with its default settings (its tools
/// include a namespace of agent functions and `web_search`), in `dir`, with
/// a home of its own; commands run without approval prompts. Its stdout.
fn codex(gw: &TestGateway, dir: &std::path::Path, prompt: &str) -> String {
    let bin = support::agents::agent("codex");
    let home = dir.join("codex-home");
    std::fs::create_dir_all(home.join(".codex")).unwrap();
    let provider = format!(
        r#"model_providers.c2a={{name="chat2api",base_url="http://{}/v1",wire_api="responses",env_key="CHAT2API_KEY"}}"#,
        gw.addr
    );
    let out = std::process::Command::new(bin)
        .args([
            "exec",
            "--skip-git-repo-check",
            "--dangerously-bypass-approvals-and-sandbox",
        ])
        .args([
            "-c",
            "model_provider=c2a",
            "-c",
            &provider,
            "-m",
            "codex-test",
            prompt,
        ])
        .current_dir(dir)
        .env("HOME", &home)
        .env("CODEX_HOME", home.join(".codex"))
        .env("CHAT2API_KEY", "sk-test")
        .stdin(std::process::Stdio::null())
        .output()
        .expect("codex runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "codex failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    stdout
}

/// Codex CLI with its default settings completes a shell-tool round trip
/// over `responses: "chat"`: its namespace tool is flattened and its
/// `web_search` left out (named in a header), the upstream calls its
/// `exec_command`, Codex runs `cat notes.txt`, and the output comes back
/// in the final answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn codex_completes_a_shell_tool_round_trip_through_chat2api() {
    let dir = std::env::temp_dir().join(format!("chat2api-codex-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("notes.txt"), "The secret number is 4217.\n").unwrap();
    let up = MockUpstream::start(move |req| {
        let v = req.json();
        let messages = v["messages"].as_array().cloned().unwrap_or_default();
        let offers_shell = v["tools"]
            .as_array()
            .is_some_and(|t| t.iter().any(|t| t["function"]["name"] == "exec_command"));
        if let Some(result) = messages.iter().rev().find(|m| m["role"] == "tool") {
            let said = content_text(&result["content"]);
            return chat_reply(
                req,
                Some(&format!("The command printed: {}", said.trim())),
                None,
            );
        }
        let asks_file = messages
            .iter()
            .any(|m| m["role"] == "user" && content_text(&m["content"]).contains("notes.txt"));
        if offers_shell && asks_file {
            return chat_reply(
                req,
                None,
                Some(("exec_command", r#"{"cmd":"cat notes.txt"}"#)),
            );
        }
        chat_reply(req, Some("Hello from the scripted upstream."), None)
    })
    .await;
    let config = format!(
        r#"{{"apiKeys": ["sk-test"], "requestTimeout": 20000, "retryCount": 0,
  "providers": [{{"id": "chat", "type": "openai", "baseUrl": "{}", "responses": "chat",
    "accounts": [{{"id": "a", "apiKey": "sk-up"}}], "models": {{"codex-test": "up-model"}}}}]}}"#,
        up.base_url()
    );
    let gw = std::sync::Arc::new(TestGateway::start(&config).await);
    let (g, d) = (gw.clone(), dir.clone());
    let answer = tokio::task::spawn_blocking(move || codex(&g, &d, "Show me what notes.txt says."))
        .await
        .unwrap();
    assert!(answer.contains("4217"), "{answer}");
    let sent = up.last().json();
    let names: Vec<&str> = sent["tools"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t["function"]["name"].as_str())
        .collect();
    assert!(
        names.iter().any(|n| n.starts_with("multi_agent_v1__")),
        "{names:?}"
    );
    assert!(!names.contains(&"web_search"), "{names:?}");
    let tool = sent["messages"]
        .as_array()
        .unwrap()
        .iter()
        .find(|m| m["role"] == "tool")
        .expect("the command's output came back");
    assert!(content_text(&tool["content"]).contains("4217"), "{tool}");
    let _ = std::fs::remove_dir_all(&dir);
}
