//! `completions: "chat"` providers (SPEC §2): a `/v1/completions` request is
//! sent upstream as a chat request, and the chat answer (plain or streamed)
//! comes back as `text_completion` objects.
//!
//! This is the one place that builds JSON trees per request: it serves
//! providers that lack the legacy endpoint, off the zero-copy fast path.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::error::ApiError;

/// Completion-only parameters that a chat endpoint would refuse or
/// misread (`logprobs` is a number there and a boolean here).
const COMPLETION_ONLY: &[&str] = &["prompt", "echo", "best_of", "suffix", "logprobs"];

/// The chat request for a completion request: the prompt becomes one user
/// message; every other parameter passes through.
pub fn completion_to_chat(body: &[u8], upstream_model: &str) -> Result<Bytes, ApiError> {
    let mut req: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid request body: {e}"), None))?;
    let prompt = match req.get("prompt") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(parts)) => parts
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join("\n"),
        _ => String::new(),
    };
    for key in COMPLETION_ONLY {
        req.remove(*key);
    }
    req.insert("model".into(), Value::String(upstream_model.to_owned()));
    req.insert(
        "messages".into(),
        json!([{"role": "user", "content": prompt}]),
    );
    Ok(Bytes::from(Value::Object(req).to_string()))
}

/// A `chat.completion` (or one `chat.completion.chunk`) as the matching
/// `text_completion` object. `None` when it is not a chat answer; the
/// caller then passes it through.
pub fn chat_to_completion(answer: &[u8], client_model: &str) -> Option<Bytes> {
    let v: Value = serde_json::from_slice(answer).ok()?;
    let obj = v.as_object()?;
    let choices = obj.get("choices")?.as_array()?;
    let choices: Vec<Value> = choices
        .iter()
        .map(|c| {
            let text = c
                .pointer("/message/content")
                .or_else(|| c.pointer("/delta/content"))
                .and_then(Value::as_str)
                .unwrap_or("");
            json!({
                "text": text,
                "index": c.get("index").cloned().unwrap_or(json!(0)),
                "logprobs": null,
                "finish_reason": c.get("finish_reason").cloned().unwrap_or(Value::Null),
            })
        })
        .collect();
    let mut out = json!({
        "id": obj.get("id").cloned().unwrap_or(Value::Null),
        "object": "text_completion",
        "created": obj.get("created").cloned().unwrap_or(Value::Null),
        "model": client_model,
        "choices": choices,
    });
    if let Some(usage) = obj.get("usage").filter(|u| !u.is_null()) {
        out["usage"] = usage.clone();
    }
    Some(Bytes::from(out.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_becomes_a_chat_request() {
        let body = br#"{"model":"m","prompt":["a","b"],"max_tokens":5,"echo":false,"logprobs":2}"#;
        let out: Value = serde_json::from_slice(&completion_to_chat(body, "up").unwrap()).unwrap();
        assert_eq!(out["model"], "up");
        assert_eq!(out["messages"][0]["content"], "a\nb");
        assert_eq!(out["max_tokens"], 5);
        assert!(
            out.get("prompt").is_none()
                && out.get("echo").is_none()
                && out.get("logprobs").is_none()
        );
    }

    #[test]
    fn answers_and_chunks_become_text_completions() {
        let plain = br#"{"id":"c1","object":"chat.completion","created":7,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"hi"},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let v: Value = serde_json::from_slice(&chat_to_completion(plain, "mine").unwrap()).unwrap();
        assert_eq!(v["object"], "text_completion");
        assert_eq!(v["model"], "mine");
        assert_eq!(v["choices"][0]["text"], "hi");
        assert_eq!(v["usage"]["total_tokens"], 2);
        let chunk = br#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{"index":0,"delta":{"content":" there"},"finish_reason":null}]}"#;
        let v: Value = serde_json::from_slice(&chat_to_completion(chunk, "mine").unwrap()).unwrap();
        assert_eq!(v["choices"][0]["text"], " there");
        assert!(v.get("usage").is_none());
        assert!(chat_to_completion(b"[1]", "x").is_none());
    }
}
