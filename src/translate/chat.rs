//! Pure translations between answer shapes, sans-IO:
//!
//! - `completions: "chat"` providers (docs/wire.md §2): a `/v1/completions` request
//!   is sent upstream as a chat request, and the chat answer (plain or
//!   streamed) comes back as `text_completion` objects;
//! - answers whose shape does not match the request (docs/wire.md §4): the events
//!   of a stream gathered into one object ([`aggregate_events`]), and one
//!   object turned into the events of a short stream
//!   ([`answer_to_events`]).
//!
//! This is the one place that builds JSON trees per request: it serves
//! providers that lack the legacy endpoint and upstreams that misbehave,
//! off the zero-copy fast path.

use std::collections::BTreeMap;

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::tool_calls::ToolCallRule;
use crate::api::ApiError;

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

/// One choice being gathered from stream chunks.
#[derive(Default)]
struct Gathered {
    role: Option<Value>,
    content: Option<String>,
    /// `reasoning_content` (DeepSeek's thinking mode) and `refusal`,
    /// gathered like the content.
    reasoning: Option<String>,
    refusal: Option<String>,
    /// `text_completion` chunks carry `text` instead of a delta.
    text: Option<String>,
    /// Tool calls in the order they opened, arguments concatenated.
    tool_calls: Vec<Map<String, Value>>,
    /// Which call each tool-call delta belongs to.
    rule: ToolCallRule,
    finish_reason: Value,
}

/// The events of a streamed answer (`chat.completion.chunk` or
/// `text_completion` payloads, `[DONE]` left out) gathered into the one
/// object a plain request expects: contents and tool-call arguments
/// concatenated per choice, the last `finish_reason` and `usage`, `id`,
/// `created` and `model` from the first event that has them. `None` when
/// an event is not a JSON object or carries an `error`, or there is none.
pub fn aggregate_events<'a>(events: impl IntoIterator<Item = &'a [u8]>) -> Option<Bytes> {
    let mut head = Map::new();
    let mut usage = Value::Null;
    let mut text_completion = false;
    let mut choices: BTreeMap<u64, Gathered> = BTreeMap::new();
    let mut any = false;
    for event in events {
        let Value::Object(chunk) = serde_json::from_slice(event).ok()? else {
            return None;
        };
        if chunk.get("error").is_some_and(|e| !e.is_null()) {
            return None;
        }
        any = true;
        for key in ["id", "created", "model", "system_fingerprint"] {
            if let Some(v) = chunk.get(key).filter(|v| !v.is_null()) {
                head.entry(key).or_insert_with(|| v.clone());
            }
        }
        text_completion |= chunk.get("object").and_then(Value::as_str) == Some("text_completion");
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            usage = u.clone();
        }
        for c in chunk
            .get("choices")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let index = c.get("index").and_then(Value::as_u64).unwrap_or(0);
            let g = choices.entry(index).or_default();
            if let Some(text) = c.get("text").and_then(Value::as_str) {
                g.text.get_or_insert_with(String::new).push_str(text);
            }
            let delta = c.get("delta").or_else(|| c.get("message"));
            if let Some(role) = delta.and_then(|d| d.get("role")).filter(|r| !r.is_null()) {
                g.role = Some(role.clone());
            }
            let text_of = |key: &str| content_text(delta?.get(key)?);
            for (key, into) in [
                ("content", &mut g.content),
                ("reasoning_content", &mut g.reasoning),
                ("refusal", &mut g.refusal),
            ] {
                if let Some(piece) = text_of(key) {
                    into.get_or_insert_with(String::new).push_str(&piece);
                }
            }
            let calls = delta
                .and_then(|d| d.get("tool_calls"))
                .and_then(Value::as_array);
            for call in calls.into_iter().flatten() {
                let (at, opens) = g.rule.place_delta(call);
                if opens {
                    g.tool_calls.push(Map::new());
                }
                merge_tool_call(&mut g.tool_calls[at], call);
            }
            if let Some(reason) = c.get("finish_reason").filter(|r| !r.is_null()) {
                g.finish_reason = reason.clone();
            }
        }
    }
    if !any {
        return None;
    }
    let choices: Vec<Value> = choices
        .into_iter()
        .map(|(index, g)| {
            if text_completion {
                return json!({"index": index, "text": g.text.unwrap_or_default(),
                    "logprobs": null, "finish_reason": g.finish_reason});
            }
            let mut message = Map::new();
            message.insert("role".into(), g.role.unwrap_or_else(|| json!("assistant")));
            message.insert(
                "content".into(),
                g.content.map_or(Value::Null, Value::String),
            );
            for (key, value) in [("reasoning_content", g.reasoning), ("refusal", g.refusal)] {
                if let Some(value) = value {
                    message.insert(key.into(), Value::String(value));
                }
            }
            if !g.tool_calls.is_empty() {
                let calls = g.tool_calls.into_iter().map(Value::Object).collect();
                message.insert("tool_calls".into(), Value::Array(calls));
            }
            json!({"index": index, "message": message, "logprobs": null,
                "finish_reason": g.finish_reason})
        })
        .collect();
    let object = if text_completion {
        "text_completion"
    } else {
        "chat.completion"
    };
    let mut out = head;
    out.insert("object".into(), json!(object));
    out.insert("choices".into(), Value::Array(choices));
    if !usage.is_null() {
        out.insert("usage".into(), usage);
    }
    Some(Bytes::from(Value::Object(out).to_string()))
}

/// A chat message's (or delta's) text: a string, or the texts of its
/// content parts (some providers send `[{"type": "text", "text": …}]`);
/// `None` for anything else. The one reading of chat content, for every
/// translation.
pub fn content_text(content: &Value) -> Option<String> {
    match content {
        Value::String(s) => Some(s.clone()),
        Value::Array(parts) => Some(
            parts
                .iter()
                .filter_map(|p| p.get("text").and_then(Value::as_str))
                .collect(),
        ),
        _ => None,
    }
}

/// One streamed tool-call delta into the call gathered so far: `id`,
/// `type` and the function's `name` as they come, `arguments` appended.
fn merge_tool_call(call: &mut Map<String, Value>, delta: &Value) {
    for key in ["id", "type"] {
        if let Some(v) = delta.get(key).filter(|v| !v.is_null()) {
            call.insert(key.into(), v.clone());
        }
    }
    let function = call
        .entry("function")
        .or_insert_with(|| json!({"name": "", "arguments": ""}));
    if let (Some(f), Some(d)) = (function.as_object_mut(), delta.get("function")) {
        if let Some(name) = d.get("name").and_then(Value::as_str) {
            f.insert("name".into(), json!(name));
        }
        // Appended in place: pieces may number in the thousands. An
        // upstream that sends an object gets it written out.
        let piece = match d.get("arguments") {
            Some(Value::String(s)) => std::borrow::Cow::Borrowed(&s[..]),
            None | Some(Value::Null) => std::borrow::Cow::Borrowed(""),
            Some(other) => std::borrow::Cow::Owned(other.to_string()),
        };
        match f.get_mut("arguments") {
            Some(Value::String(joined)) => joined.push_str(&piece),
            _ => {
                f.insert("arguments".into(), json!(piece));
            }
        }
    }
}

/// A whole `chat.completion` or `text_completion` as the payloads of a
/// short stream (`[DONE]` not included): one chunk per choice carrying all
/// of it, then a chunk with the `usage` when there is one. `model` is the
/// client's name. `None` when it is not such an object.
pub fn answer_to_events(answer: &[u8], client_model: &str) -> Option<Vec<Bytes>> {
    let Value::Object(obj) = serde_json::from_slice(answer).ok()? else {
        return None;
    };
    let choices = obj.get("choices")?.as_array()?;
    let text_completion = obj.get("object").and_then(Value::as_str) == Some("text_completion");
    let object = if text_completion {
        "text_completion"
    } else {
        "chat.completion.chunk"
    };
    let chunk = |choices: Value, usage: Option<&Value>| {
        let mut c = json!({
            "id": obj.get("id").cloned().unwrap_or(Value::Null),
            "object": object,
            "created": obj.get("created").cloned().unwrap_or(Value::Null),
            "model": client_model,
            "choices": choices,
        });
        if let Some(f) = obj.get("system_fingerprint") {
            c["system_fingerprint"] = f.clone();
        }
        if let Some(u) = usage {
            c["usage"] = u.clone();
        }
        Bytes::from(c.to_string())
    };
    let mut events = Vec::with_capacity(choices.len() + 1);
    for c in choices {
        let index = c.get("index").cloned().unwrap_or(json!(0));
        let finish = c.get("finish_reason").cloned().unwrap_or(Value::Null);
        let choice = if text_completion {
            json!({"index": index, "text": c.get("text").cloned().unwrap_or(json!("")),
                "logprobs": null, "finish_reason": finish})
        } else {
            let mut delta = c
                .get("message")
                .and_then(Value::as_object)
                .cloned()
                .unwrap_or_default();
            if let Some(Value::Array(calls)) = delta.get_mut("tool_calls") {
                for (i, call) in calls.iter_mut().enumerate() {
                    if let Some(call) = call.as_object_mut() {
                        call.insert("index".into(), json!(i));
                    }
                }
            }
            json!({"index": index, "delta": delta, "logprobs": null, "finish_reason": finish})
        };
        events.push(chunk(json!([choice]), None));
    }
    if let Some(usage) = obj.get("usage").filter(|u| !u.is_null()) {
        events.push(chunk(json!([]), Some(usage)));
    }
    Some(events)
}

#[cfg(test)]
mod tests {
    #[test]
    fn tool_calls_gather_apart_without_index_and_in_linear_time() {
        let events = [
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_a","function":{"name":"fa","arguments":"{\"x\":1}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_b","function":{"name":"fb","arguments":{"y":2}}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let answer = aggregate_events(events.iter().map(|e| e.as_bytes())).unwrap();
        let v: Value = serde_json::from_slice(&answer).unwrap();
        let calls = v["choices"][0]["message"]["tool_calls"].as_array().unwrap();
        assert_eq!(calls.len(), 2, "{v}");
        assert_eq!(calls[0]["function"]["arguments"], "{\"x\":1}");
        assert_eq!(calls[1]["function"]["arguments"], "{\"y\":2}");
        // 20 000 pieces of one call: appended in place, not copied each time.
        let piece = r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"0123456789"}}]}}]}"#;
        let many = vec![piece.as_bytes(); 20_000];
        let answer = aggregate_events(many).unwrap();
        let v: Value = serde_json::from_slice(&answer).unwrap();
        let args = v["choices"][0]["message"]["tool_calls"][0]["function"]["arguments"]
            .as_str()
            .unwrap();
        assert_eq!(args.len(), 200_000);
    }

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

    #[test]
    fn stream_events_gather_into_one_answer() {
        let events = [
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{"index":0,"delta":{"role":"assistant","content":""},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{"index":0,"delta":{"content":"Hel"},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{"index":0,"delta":{"content":"lo","tool_calls":[{"index":0,"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\""}}]},"finish_reason":null}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":7,"model":"up","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}"#,
        ];
        let out = aggregate_events(events.iter().map(|e| e.as_bytes())).unwrap();
        let v: Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(v["object"], "chat.completion");
        assert_eq!(
            (v["id"].clone(), v["model"].clone()),
            (json!("c1"), json!("up"))
        );
        let m = &v["choices"][0]["message"];
        assert_eq!(
            (m["role"].clone(), m["content"].clone()),
            (json!("assistant"), json!("Hello"))
        );
        assert_eq!(m["tool_calls"][0]["function"]["arguments"], "{\"a\":1}");
        assert_eq!(m["tool_calls"][0]["id"], "call_1");
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["total_tokens"], 5);
        let text = [
            r#"{"id":"t","object":"text_completion","choices":[{"index":0,"text":"a"}]}"#,
            r#"{"id":"t","object":"text_completion","choices":[{"index":0,"text":"b","finish_reason":"stop"}]}"#,
        ];
        let v: Value =
            serde_json::from_slice(&aggregate_events(text.iter().map(|e| e.as_bytes())).unwrap())
                .unwrap();
        assert_eq!(
            (v["object"].clone(), v["choices"][0]["text"].clone()),
            (json!("text_completion"), json!("ab"))
        );
        assert!(aggregate_events([&b"not json"[..]]).is_none());
        assert!(aggregate_events([&br#"{"error":{"message":"x"}}"#[..]]).is_none());
        // Reasoning, refusals and content given as parts are gathered too.
        let whole = aggregate_events([
            &br#"{"choices":[{"index":0,"delta":{"reasoning_content":"R1"}}]}"#[..],
            br#"{"choices":[{"index":0,"delta":{"reasoning_content":"R2","content":[{"type":"text","text":"p"}]}}]}"#,
            br#"{"choices":[{"index":0,"delta":{"refusal":"no"},"finish_reason":"stop"}]}"#,
        ])
        .unwrap();
        let v: Value = serde_json::from_slice(&whole).unwrap();
        let m = &v["choices"][0]["message"];
        assert_eq!(
            (
                m["reasoning_content"].as_str(),
                m["content"].as_str(),
                m["refusal"].as_str()
            ),
            (Some("R1R2"), Some("p"), Some("no"))
        );
        assert!(aggregate_events(std::iter::empty()).is_none());
    }

    #[test]
    fn a_whole_answer_becomes_stream_events_that_gather_back() {
        let plain = br#"{"id":"c1","object":"chat.completion","created":7,"model":"up","choices":[{"index":0,"message":{"role":"assistant","content":"hi","tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{}"}}]},"finish_reason":"stop"}],"usage":{"prompt_tokens":1,"completion_tokens":1,"total_tokens":2}}"#;
        let events = answer_to_events(plain, "mine").unwrap();
        assert_eq!(events.len(), 2);
        let first: Value = serde_json::from_slice(&events[0]).unwrap();
        assert_eq!(first["object"], "chat.completion.chunk");
        assert_eq!(first["model"], "mine");
        assert_eq!(first["choices"][0]["delta"]["content"], "hi");
        assert_eq!(first["choices"][0]["delta"]["tool_calls"][0]["index"], 0);
        let back: Value =
            serde_json::from_slice(&aggregate_events(events.iter().map(|e| &e[..])).unwrap())
                .unwrap();
        assert_eq!(back["choices"][0]["message"]["content"], "hi");
        assert_eq!(back["usage"]["total_tokens"], 2);
        assert!(answer_to_events(b"<html>", "m").is_none());
        assert!(answer_to_events(br#"{"no":"choices"}"#, "m").is_none());
    }
}
