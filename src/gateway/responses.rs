//! The Responses API over a chat-only provider (`responses: "chat"`):
//! a stateless `/v1/responses` request becomes a chat completions request,
//! and the chat answer, whole or streamed, becomes a `response` object or
//! its typed event sequence (OpenAI API reference, "Responses" and
//! "Streaming events").
//!
//! Like `translate`, this builds JSON trees per request: it serves
//! providers that lack the endpoint, off the zero-copy fast path.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::stream::upstream::EventTranslator;
use super::tool_calls::ToolCallRule;
use crate::api::ApiError;
use crate::stats::unix_time;

/// What the answer echoes of the request (the Responses API returns the
/// request's settings with the answer), and the client's model name.
#[derive(Debug, Clone)]
pub struct Seed {
    model: String,
    /// `instructions`, `max_output_tokens`, `temperature`, `top_p`,
    /// `tools`, `tool_choice`, `parallel_tool_calls`, `text`, `metadata`,
    /// `user`, as the client sent them (or their defaults).
    echo: Map<String, Value>,
}

/// Request members that need state kept by the server, which a chat
/// provider cannot give (with `store: true`, `background: true` and
/// `item_reference` inputs, checked where they are read).
const STATEFUL: &[(&str, &str)] = &[
    ("previous_response_id", "a previous response"),
    ("conversation", "a stored conversation"),
    ("prompt", "a stored prompt"),
];

/// Request members passed to the chat request under the same name.
const SAME_NAME: &[&str] = &[
    "temperature",
    "top_p",
    "user",
    "parallel_tool_calls",
    "seed",
    "stop",
    "frequency_penalty",
    "presence_penalty",
    "logit_bias",
    "service_tier",
];

fn invalid(message: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::invalid(message, Some(param))
}

/// The chat completions request for a Responses API `body`, for
/// `upstream_model`; and what the answer must echo. 400 for requests that
/// need server-side state (`previous_response_id`, `conversation`,
/// `store: true`, `item_reference` inputs) or tools other than functions.
pub fn request_to_chat(
    body: &[u8],
    client_model: &str,
    upstream_model: &str,
) -> Result<(Bytes, Seed), ApiError> {
    let req: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid request body: {e}"), None))?;
    let here = |key: &str| req.get(key).filter(|v| !v.is_null());
    for &(key, what) in STATEFUL {
        if here(key).is_some() {
            return Err(invalid(
                format!(
                    "'{key}' needs {what} kept by the server; this model's provider speaks only chat completions (responses: \"chat\"), so chat2api keeps no state for it. Send the whole conversation in 'input' instead."
                ),
                key,
            ));
        }
    }
    for key in ["store", "background"] {
        if here(key).is_some_and(|v| !v.is_boolean()) {
            return Err(invalid(format!("'{key}' must be a boolean."), key));
        }
    }
    if here("background") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "'background': true runs a response on the server to fetch later; this model's provider speaks only chat completions (responses: \"chat\"), and chat2api stores nothing.",
            "background",
        ));
    }
    if here("store") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "'store': true asks for a response that can be retrieved later; this model's provider speaks only chat completions (responses: \"chat\"), and chat2api stores nothing. Leave 'store' out or set it to false.",
            "store",
        ));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = here("instructions") {
        let text = instructions
            .as_str()
            .ok_or_else(|| invalid("'instructions' must be a string.", "instructions"))?;
        messages.push(json!({"role": "system", "content": text}));
    }
    match here("input") {
        Some(Value::String(text)) => messages.push(json!({"role": "user", "content": text})),
        Some(Value::Array(items)) => input_items(items, &mut messages)?,
        _ => {
            return Err(invalid(
                "'input' must be a string or an array of input items.",
                "input",
            ))
        }
    }
    let mut chat = Map::new();
    chat.insert("model".into(), json!(upstream_model));
    chat.insert("messages".into(), Value::Array(messages));
    for key in SAME_NAME {
        if let Some(v) = here(key) {
            chat.insert((*key).into(), v.clone());
        }
    }
    if let Some(n) = here("max_output_tokens") {
        chat.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = here("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|e| !e.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(tools) = here("tools") {
        chat.insert("tools".into(), chat_tools(tools)?);
    }
    if let Some(choice) = here("tool_choice") {
        chat.insert("tool_choice".into(), chat_tool_choice(choice)?);
    }
    if let Some(format) = here("text")
        .and_then(|t| t.get("format"))
        .filter(|f| !f.is_null())
    {
        if let Some(rf) = chat_response_format(format)? {
            chat.insert("response_format".into(), rf);
        }
    }
    if here("stream") == Some(&Value::Bool(true)) {
        chat.insert("stream".into(), json!(true));
        chat.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let mut echo = Map::new();
    for (key, default) in [
        ("instructions", Value::Null),
        ("max_output_tokens", Value::Null),
        ("temperature", json!(1.0)),
        ("top_p", json!(1.0)),
        ("tools", json!([])),
        ("tool_choice", json!("auto")),
        ("parallel_tool_calls", json!(true)),
        ("text", json!({"format": {"type": "text"}})),
        ("metadata", json!({})),
        ("user", Value::Null),
    ] {
        echo.insert(key.into(), here(key).cloned().unwrap_or(default));
    }
    let seed = Seed {
        model: client_model.to_owned(),
        echo,
    };
    Ok((Bytes::from(Value::Object(chat).to_string()), seed))
}

/// Input items as chat messages: messages (text and image parts),
/// `function_call` items as an assistant's tool calls (consecutive ones
/// together), `function_call_output` items as tool messages.
fn input_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), ApiError> {
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("type").and_then(Value::as_str);
        let role = item.get("role").and_then(Value::as_str);
        match (kind, role) {
            (Some("message") | None, Some(role)) => {
                let role = if role == "developer" { "system" } else { role };
                let at = format!("input[{i}]");
                let content = message_content(item.get("content"), role == "assistant", &at)?;
                messages.push(json!({"role": role, "content": content}));
            }
            (Some("function_call"), _) => {
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": item.get("name").cloned().unwrap_or(Value::Null),
                        // Chat takes the arguments as a string only.
                        "arguments": match item.get("arguments") {
                            None | Some(Value::Null) => "{}".to_owned(),
                            other => arguments_text(other),
                        },
                    }
                });
                let open = messages.last_mut().filter(|m| {
                    m["role"] == "assistant" && m.get("tool_calls").is_some()
                });
                match open {
                    Some(m) => m["tool_calls"]
                        .as_array_mut()
                        .expect("tool_calls is an array")
                        .push(call),
                    None => messages.push(
                        json!({"role": "assistant", "content": null, "tool_calls": [call]}),
                    ),
                }
            }
            (Some("function_call_output"), _) => {
                let output = match item.get("output") {
                    Some(Value::String(s)) => s.clone(),
                    Some(other) => other.to_string(),
                    None => String::new(),
                };
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "content": output,
                }));
            }
            // Reasoning carried from an earlier answer: chat has no place for it.
            (Some("reasoning"), _) => {}
            (Some("item_reference"), _) => {
                return Err(invalid(
                    format!("input[{i}] refers to a stored item; this model's provider speaks only chat completions (responses: \"chat\"), so chat2api keeps no state for it."),
                    "input",
                ))
            }
            (Some("message") | None, None) => {
                return Err(invalid(format!("input[{i}] has no 'role'."), "input"))
            }
            (other, _) => {
                return Err(invalid(
                    format!(
                        "input[{i}] of type {} cannot be sent to a chat-only provider (responses: \"chat\").",
                        other.unwrap_or("(none)")
                    ),
                    "input",
                ))
            }
        }
    }
    Ok(())
}

/// A message's content for chat: a string as is; parts as chat parts
/// (`input_text`/`output_text` → `text`, `input_image` with an
/// `image_url` → `image_url`), or for the assistant, whose chat content is
/// text, their text joined. A part chat cannot carry (files, audio, images
/// by file id) or a malformed one is a 400 naming it (`at` is the item's
/// path, `input[i]`).
fn message_content(content: Option<&Value>, assistant: bool, at: &str) -> Result<Value, ApiError> {
    let parts = match content {
        Some(Value::String(s)) => return Ok(json!(s)),
        Some(Value::Array(parts)) => parts,
        _ => {
            return Err(invalid(
                format!("{at}.content must be a string or an array of content parts."),
                "input",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let kind = p.get("type").and_then(Value::as_str);
        let text = p.get("text").and_then(Value::as_str);
        let part = match (kind, text) {
            (Some("input_text" | "output_text" | "text"), Some(text)) => {
                json!({"type": "text", "text": text})
            }
            (Some("refusal"), _) if assistant => {
                json!({"type": "text", "text": p.get("refusal").and_then(Value::as_str).unwrap_or("")})
            }
            (Some("input_image"), _) if !assistant => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    let why = match p.get("image_url") {
                        Some(_) => "its 'image_url' must be a string",
                        None => "a chat-only provider (responses: \"chat\") takes images by 'image_url' only, not by file id",
                    };
                    return Err(invalid(format!("{at}.content[{j}]: {why}."), "input"));
                };
                let mut image = json!({"url": url});
                if let Some(detail) = p.get("detail").filter(|d| !d.is_null()) {
                    image["detail"] = detail.clone();
                }
                json!({"type": "image_url", "image_url": image})
            }
            (Some(kind @ ("input_text" | "output_text" | "text")), None) => {
                return Err(invalid(
                    format!("{at}.content[{j}] of type {kind} has no 'text' string."),
                    "input",
                ))
            }
            (kind, _) => {
                return Err(invalid(
                    format!(
                        "{at}.content[{j}] of type {} cannot be sent to a chat-only provider (responses: \"chat\").",
                        kind.unwrap_or("(none)")
                    ),
                    "input",
                ))
            }
        };
        out.push(part);
    }
    if assistant {
        let text: Vec<&str> = out.iter().filter_map(|p| p["text"].as_str()).collect();
        return Ok(json!(text.join("")));
    }
    Ok(Value::Array(out))
}

/// Responses function tools (`{type, name, description, parameters,
/// strict}`) as chat tools (`{type, function: {…}}`). Built-in tools (web
/// search, file search, …) run on OpenAI's servers: a 400 here.
fn chat_tools(tools: &Value) -> Result<Value, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| invalid("'tools' must be an array.", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                let mut function = Map::new();
                for key in ["name", "description", "parameters", "strict"] {
                    if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
                        function.insert(key.into(), v.clone());
                    }
                }
                out.push(json!({"type": "function", "function": function}));
            }
            other => {
                return Err(invalid(
                    format!(
                        "Tools of type {} run on OpenAI's servers; a chat-only provider (responses: \"chat\") takes function tools only.",
                        other.unwrap_or("(none)")
                    ),
                    "tools",
                ))
            }
        }
    }
    Ok(Value::Array(out))
}

/// `tool_choice`: the strings pass; `{type: function, name}` becomes
/// `{type: function, function: {name}}`.
fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => Ok(
            json!({"type": "function", "function": {"name": o.get("name").cloned().unwrap_or(Value::Null)}}),
        ),
        _ => Err(invalid(
            "'tool_choice' must be \"auto\", \"none\", \"required\" or a function.",
            "tool_choice",
        )),
    }
}

/// `text.format` as chat's `response_format`; `None` for plain text.
fn chat_response_format(format: &Value) -> Result<Option<Value>, ApiError> {
    match format.get("type").and_then(Value::as_str) {
        Some("text") => Ok(None),
        Some("json_object") => Ok(Some(json!({"type": "json_object"}))),
        Some("json_schema") => {
            let mut schema = Map::new();
            for key in ["name", "description", "schema", "strict"] {
                if let Some(v) = format.get(key).filter(|v| !v.is_null()) {
                    schema.insert(key.into(), v.clone());
                }
            }
            Ok(Some(json!({"type": "json_schema", "json_schema": schema})))
        }
        _ => Err(invalid(
            "'text.format.type' must be text, json_object or json_schema.",
            "text",
        )),
    }
}

/// Chat `usage` as Responses `usage`.
fn usage(chat: &Value) -> Value {
    let n = |v: Option<&Value>| v.and_then(Value::as_u64).unwrap_or(0);
    let input = n(chat.get("prompt_tokens"));
    let output = n(chat.get("completion_tokens"));
    json!({
        "input_tokens": input,
        "input_tokens_details": {"cached_tokens": n(chat.pointer("/prompt_tokens_details/cached_tokens"))},
        "output_tokens": output,
        "output_tokens_details": {"reasoning_tokens": n(chat.pointer("/completion_tokens_details/reasoning_tokens"))},
        "total_tokens": n(chat.get("total_tokens")).max(input + output),
    })
}

/// A response id from the upstream's chat id (`chatcmpl-abc` →
/// `resp_abc`, only letters, digits, `-` and `_` kept), or a fresh one.
fn response_id(chat_id: &str) -> String {
    let tail = chat_id.strip_prefix("chatcmpl-").unwrap_or(chat_id);
    let tail: String = tail
        .chars()
        .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_'))
        .take(64)
        .collect();
    match tail.is_empty() {
        true => fresh_id("resp_"),
        false => format!("resp_{tail}"),
    }
}

/// An id no other item of this process has: output items need ids of
/// their own, which upstreams' chat answers do not give (or repeat).
fn fresh_id(prefix: &str) -> String {
    let id = super::request_id::next();
    let hex = id.strip_prefix(b"req_").unwrap_or(&id);
    format!("{prefix}{}", String::from_utf8_lossy(hex))
}

impl Seed {
    /// A `response` object with `status`, `output` items and `usage`.
    fn response(
        &self,
        id: &str,
        created: u64,
        status: &str,
        output: Vec<Value>,
        usage: Value,
        finish: Option<&str>,
    ) -> Value {
        let mut r = Map::new();
        r.insert("id".into(), json!(id));
        r.insert("object".into(), json!("response"));
        r.insert("created_at".into(), json!(created));
        r.insert("status".into(), json!(status));
        r.insert("model".into(), json!(self.model));
        r.insert("error".into(), Value::Null);
        let incomplete = match finish {
            Some("length") if status == "incomplete" => json!({"reason": "max_output_tokens"}),
            Some("content_filter") if status == "incomplete" => json!({"reason": "content_filter"}),
            _ => Value::Null,
        };
        r.insert("incomplete_details".into(), incomplete);
        r.insert("output".into(), Value::Array(output));
        r.insert("usage".into(), usage);
        r.insert("store".into(), json!(false));
        for (k, v) in &self.echo {
            r.insert(k.clone(), v.clone());
        }
        Value::Object(r)
    }
}

/// The status a chat `finish_reason` ends a response with.
fn final_status(finish: Option<&str>) -> &'static str {
    match finish {
        Some("length" | "content_filter") => "incomplete",
        _ => "completed",
    }
}

fn message_item(id: &str, text: &str, status: &str) -> Value {
    let content = match text.is_empty() && status != "completed" {
        true => json!([]),
        false => json!([{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]),
    };
    json!({"type": "message", "id": id, "status": status, "role": "assistant", "content": content})
}

fn function_item(id: &str, call_id: &str, name: &str, arguments: &str, status: &str) -> Value {
    json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status})
}

/// The text of an upstream's `error` member: its `message`, the error
/// itself when it is a string, else the error written out.
pub fn error_message(error: &Value) -> String {
    match error {
        Value::String(s) => s.clone(),
        other => other
            .get("message")
            .and_then(Value::as_str)
            .map_or_else(|| other.to_string(), str::to_owned),
    }
}

/// The choice a single-answer client gets: the one with `index` 0, else
/// the first listed.
fn first_choice(choices: &[Value]) -> Option<&Value> {
    choices
        .iter()
        .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
        .or(choices.first())
}

/// A tool call's arguments as the string chat sends (an upstream that
/// sends an object gets it written out).
fn arguments_text(arguments: Option<&Value>) -> String {
    match arguments {
        Some(Value::String(s)) => s.clone(),
        None | Some(Value::Null) => String::new(),
        Some(other) => other.to_string(),
    }
}

/// A whole `chat.completion` as a `response` object. An answer that is no
/// chat completion, carries an `error`, or has no `finish_reason` (it broke
/// off) is the upstream's failure: 502 saying which.
pub fn chat_to_response(answer: &[u8], seed: &Seed) -> Result<Bytes, ApiError> {
    let broken =
        |what: String| ApiError::Upstream(format!("the upstream answered 200 with {what}"));
    let chat: Value =
        serde_json::from_slice(answer).map_err(|_| broken("a body that is not JSON".into()))?;
    if let Some(error) = chat.get("error").filter(|e| !e.is_null()) {
        return Err(broken(format!("an error: {}", error_message(error))));
    }
    let choice = chat
        .get("choices")
        .and_then(Value::as_array)
        .and_then(|c| first_choice(c))
        .ok_or_else(|| broken("a JSON object that is not a chat completion (no choices)".into()))?;
    let message = choice.get("message").cloned().unwrap_or(Value::Null);
    let finish = choice.get("finish_reason").and_then(Value::as_str);
    if finish.is_none() {
        return Err(broken("an answer that broke off (no finish_reason)".into()));
    }
    let chat_id = chat.get("id").and_then(Value::as_str).unwrap_or("");
    let mut output = Vec::new();
    let text = message.get("content").and_then(Value::as_str).unwrap_or("");
    if !text.is_empty() {
        // A message cut on its length is itself incomplete.
        output.push(message_item(&fresh_id("msg_"), text, final_status(finish)));
    }
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty())
            .map_or_else(|| fresh_id("call_"), str::to_owned);
        let name = call
            .pointer("/function/name")
            .and_then(Value::as_str)
            .unwrap_or("");
        let arguments = arguments_text(call.pointer("/function/arguments"));
        output.push(function_item(
            &fresh_id("fc_"),
            &call_id,
            name,
            &arguments,
            "completed",
        ));
    }
    let created = chat
        .get("created")
        .and_then(Value::as_u64)
        .unwrap_or_else(unix_time);
    let usage = chat.get("usage").map_or(Value::Null, usage);
    let id = response_id(chat_id);
    let response = seed.response(&id, created, final_status(finish), output, usage, finish);
    Ok(Bytes::from(response.to_string()))
}

/// One output item being built from stream chunks.
enum Item {
    Message {
        id: String,
        text: String,
    },
    Call {
        id: String,
        call_id: String,
        name: String,
        arguments: String,
    },
}

/// The Responses event sequence of a streamed chat answer, built chunk by
/// chunk: `response.created` and `response.in_progress` first; a message
/// item (`output_item.added`, `content_part.added`, one
/// `output_text.delta` per content delta) and a `function_call` item per
/// tool call (`function_call_arguments.delta` per piece); at the end each
/// item closed (`…done`) and `response.completed` (or `.incomplete` when
/// the chat answer stopped on its length or a content filter, `.failed`
/// when it carried an error or broke off). Every event carries its `type` and
/// `sequence_number`. Events that are not chat chunks are left out.
pub struct StreamTranslator {
    seed: Seed,
    id: String,
    created: u64,
    started: bool,
    finished: bool,
    sequence: u64,
    items: Vec<Item>,
    /// Which item holds the message text.
    message: Option<usize>,
    /// Which call each tool-call delta belongs to.
    rule: ToolCallRule,
    /// Each call's `call_id` and item, in the order they opened.
    calls: Vec<(String, usize)>,
    finish: Option<String>,
    usage: Value,
    /// Why the response failed (the chat stream carried an error, or
    /// broke off): `{code, message}`.
    error: Option<Value>,
}

/// One event: its name (for the `event:` line) and its data.
pub type NamedEvent = (&'static str, Bytes);

impl StreamTranslator {
    /// A translator for one answer, echoing `seed`'s request settings.
    pub fn new(seed: Seed) -> StreamTranslator {
        StreamTranslator {
            seed,
            id: String::new(),
            created: unix_time(),
            started: false,
            finished: false,
            sequence: 0,
            items: Vec::new(),
            message: None,
            rule: ToolCallRule::default(),
            calls: Vec::new(),
            finish: None,
            usage: Value::Null,
            error: None,
        }
    }

    /// What the answer echoes of the request.
    pub fn seed(&self) -> &Seed {
        &self.seed
    }

    /// The response failed (an error in the chat stream, or a stream that
    /// broke off): the request counts as failed.
    pub fn failed(&self) -> bool {
        self.error.is_some()
    }

    fn event(&mut self, name: &'static str, mut data: Value, out: &mut Vec<NamedEvent>) {
        data["type"] = json!(name);
        data["sequence_number"] = json!(self.sequence);
        self.sequence += 1;
        out.push((name, Bytes::from(data.to_string())));
    }

    fn start(&mut self, chat_id: &str, out: &mut Vec<NamedEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = response_id(chat_id);
        let r = self.seed.response(
            &self.id,
            self.created,
            "in_progress",
            Vec::new(),
            Value::Null,
            None,
        );
        let r = json!({ "response": r });
        self.event("response.created", r.clone(), out);
        self.event("response.in_progress", r, out);
    }

    /// The events for one chat chunk. An `{"error": …}` object becomes an
    /// `error` event, after which nothing more is read and the response
    /// ends `failed`.
    pub fn chunk(&mut self, data: &[u8]) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if self.error.is_some() || self.finished {
            return out;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        let chat_id = chunk
            .get("id")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        if let Some(error) = chunk.get("error").filter(|e| !e.is_null()) {
            self.start(&chat_id, &mut out);
            let code = error
                .get("code")
                .filter(|c| c.is_string())
                .cloned()
                .unwrap_or_else(|| json!("server_error"));
            let message = error_message(error);
            let param = error.get("param").cloned().unwrap_or(Value::Null);
            self.error = Some(json!({"code": code, "message": message}));
            let data = json!({"code": code, "message": message, "param": param});
            self.event("error", data, &mut out);
            return out;
        }
        let Some(choices) = chunk.get("choices").and_then(Value::as_array) else {
            return out;
        };
        if let Some(created) = chunk.get("created").and_then(Value::as_u64) {
            if !self.started {
                self.created = created;
            }
        }
        self.start(&chat_id, &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage(u);
        }
        // Only the first choice is translated: a chunk of another one
        // (`n` > 1) is left out.
        let Some(choice) = choices
            .iter()
            .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        else {
            return out;
        };
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
        }
        let Some(delta) = choice.get("delta") else {
            return out;
        };
        if let Some(text) = delta
            .get("content")
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
        {
            let index = match self.message {
                Some(i) => i,
                None => self.open_message(&mut out),
            };
            if let Item::Message { id, text: all } = &mut self.items[index] {
                all.push_str(text);
                let data = json!({"item_id": id, "output_index": index, "content_index": 0,
                    "delta": text, "logprobs": []});
                self.event("response.output_text.delta", data, &mut out);
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            self.tool_call_delta(call, &mut out);
        }
        out
    }

    /// One tool-call delta: a new call opens a `function_call` item, a
    /// later piece adds to its arguments. Which call a delta belongs to is
    /// the one rule of `tool_calls.rs`.
    fn tool_call_delta(&mut self, call: &Value, out: &mut Vec<NamedEvent>) {
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let index = match self.rule.place_delta(call) {
            (position, false) => self.calls[position].1,
            (_, true) => {
                // An id another call already has would make two items one.
                let taken = |id: &&str| self.calls.iter().any(|(c, _)| c == id);
                let call_id = call_id
                    .filter(|id| !taken(id))
                    .map_or_else(|| fresh_id("call_"), str::to_owned);
                let name = name.unwrap_or("");
                let index = self.items.len();
                let id = fresh_id("fc_");
                let item = function_item(&id, &call_id, name, "", "in_progress");
                self.items.push(Item::Call {
                    id,
                    call_id: call_id.clone(),
                    name: name.to_owned(),
                    arguments: String::new(),
                });
                self.calls.push((call_id, index));
                let data = json!({"output_index": index, "item": item});
                self.event("response.output_item.added", data, out);
                index
            }
        };
        let piece = arguments_text(call.pointer("/function/arguments"));
        if let Item::Call {
            id,
            arguments,
            name: known_name,
            ..
        } = &mut self.items[index]
        {
            // A name that comes in a later delta than the call's first.
            if known_name.is_empty() {
                *known_name = name.unwrap_or("").to_owned();
            }
            if !piece.is_empty() {
                arguments.push_str(&piece);
                let data = json!({"item_id": id, "output_index": index, "delta": piece});
                self.event("response.function_call_arguments.delta", data, out);
            }
        }
    }

    fn open_message(&mut self, out: &mut Vec<NamedEvent>) -> usize {
        let index = self.items.len();
        let id = fresh_id("msg_");
        let item = message_item(&id, "", "in_progress");
        self.items.push(Item::Message {
            id: id.clone(),
            text: String::new(),
        });
        self.message = Some(index);
        self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": item}),
            out,
        );
        let part = json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []});
        self.event(
            "response.content_part.added",
            json!({"item_id": id, "output_index": index, "content_index": 0, "part": part}),
            out,
        );
        index
    }

    /// The closing events of a stream that broke off (`message` says how):
    /// an `error` event, then every item closed and `response.failed`.
    /// Nothing when already finished.
    pub fn abort(&mut self, message: &str) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if self.finished {
            return out;
        }
        self.start("", &mut out);
        if self.error.is_none() {
            let data = json!({"code": "server_error", "message": message, "param": null});
            self.event("error", data, &mut out);
            self.error = Some(json!({"code": "server_error", "message": message}));
        }
        out.extend(self.finish().unwrap_or_default());
        out
    }

    /// The closing events, once the chat stream ended: every item done,
    /// then `response.completed` (`.incomplete`, `.failed`). A stream with
    /// no chat chunk, or with chunks that made no output and no
    /// `finish_reason`, is no answer: the 502 to end it with instead. A
    /// stream that broke off (no `finish_reason`) ends `failed`. Nothing
    /// when already finished.
    pub fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError> {
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        self.finished = true;
        if self.error.is_none() && self.finish.is_none() {
            if !self.started || self.items.is_empty() {
                return Err(ApiError::Upstream(
                    "the upstream's stream made no chat answer".into(),
                ));
            }
            self.error = Some(json!({"code": "server_error",
                "message": "The upstream's answer broke off before it finished (no finish_reason)."}));
        }
        let finish = self.finish.clone();
        let status = match self.error {
            Some(_) => "failed",
            None => final_status(finish.as_deref()),
        };
        // A message cut on its length is itself incomplete.
        let item_status = match status {
            "incomplete" => "incomplete",
            _ => "completed",
        };
        let mut output = Vec::new();
        let items = std::mem::take(&mut self.items);
        for (index, item) in items.iter().enumerate() {
            match item {
                Item::Message { id, text } => {
                    let base = json!({"item_id": id, "output_index": index, "content_index": 0});
                    let mut done = base.clone();
                    done["text"] = json!(text);
                    done["logprobs"] = json!([]);
                    self.event("response.output_text.done", done, &mut out);
                    let mut part = base;
                    part["part"] = json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                    self.event("response.content_part.done", part, &mut out);
                    let item = message_item(id, text, item_status);
                    output.push(item.clone());
                    self.event(
                        "response.output_item.done",
                        json!({"output_index": index, "item": item}),
                        &mut out,
                    );
                }
                Item::Call {
                    id,
                    call_id,
                    name,
                    arguments,
                } => {
                    let data =
                        json!({"item_id": id, "output_index": index, "arguments": arguments});
                    self.event("response.function_call_arguments.done", data, &mut out);
                    let item = function_item(id, call_id, name, arguments, "completed");
                    output.push(item.clone());
                    self.event(
                        "response.output_item.done",
                        json!({"output_index": index, "item": item}),
                        &mut out,
                    );
                }
            }
        }
        let usage = std::mem::take(&mut self.usage);
        let mut r = self.seed.response(
            &self.id,
            self.created,
            status,
            output,
            usage,
            finish.as_deref(),
        );
        if let Some(error) = self.error.clone() {
            r["error"] = error;
        }
        let name = match status {
            "incomplete" => "response.incomplete",
            "failed" => "response.failed",
            _ => "response.completed",
        };
        self.event(name, json!({"response": r}), &mut out);
        Ok(out)
    }
}

/// Fuzzing entry point: any request body is translated or refused, and any
/// chat answer or chunks (one per line) become a response, events or an
/// error, without a panic; events are numbered in order.
#[doc(hidden)]
pub fn fuzz_responses(data: &[u8]) {
    let _ = request_to_chat(data, "alias", "upstream");
    let (_, seed) = request_to_chat(br#"{"model":"m","input":"x"}"#, "m", "m").expect("valid");
    let _ = chat_to_response(data, &seed);
    let mut t = StreamTranslator::new(seed);
    let mut events: Vec<NamedEvent> = data
        .split(|b| *b == b'\n')
        .flat_map(|line| t.chunk(line))
        .collect();
    if let Ok(closing) = t.finish() {
        events.extend(closing);
    }
    for (n, (_, data)) in events.iter().enumerate() {
        let v: Value = serde_json::from_slice(data).expect("events are JSON");
        assert_eq!(v["sequence_number"], n as u64);
    }
}

impl EventTranslator for StreamTranslator {
    fn whole(&self, chat: &[u8]) -> Result<Bytes, ApiError> {
        chat_to_response(chat, &self.seed)
    }
    fn chunk(&mut self, chunk: &[u8]) -> Vec<NamedEvent> {
        StreamTranslator::chunk(self, chunk)
    }
    fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError> {
        StreamTranslator::finish(self)
    }
    fn abort(&mut self, message: &str) -> Vec<NamedEvent> {
        StreamTranslator::abort(self, message)
    }
    fn failed(&self) -> bool {
        StreamTranslator::failed(self)
    }
    fn ends_with_done(&self) -> bool {
        true
    }
    fn ended(&self) -> bool {
        // Its error event is followed by `response.failed` at the end.
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed(body: &str) -> (Value, Seed) {
        let (chat, seed) = request_to_chat(body.as_bytes(), "alias", "up-model").unwrap();
        (serde_json::from_slice(&chat).unwrap(), seed)
    }

    #[test]
    fn a_stateless_request_becomes_a_chat_request() {
        let (chat, _) = seed(
            r#"{"model":"alias","instructions":"Be brief.","max_output_tokens":50,"temperature":0.2,
            "stream":true,"input":[
              {"role":"user","content":[{"type":"input_text","text":"Weather?"},{"type":"input_image","image_url":"data:x"}]},
              {"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{\"city\":\"Oslo\"}"},
              {"type":"function_call","call_id":"c2","name":"get_time","arguments":"{}"},
              {"type":"function_call_output","call_id":"c1","output":"rain"},
              {"role":"developer","content":"Use metric."}],
            "tools":[{"type":"function","name":"get_weather","parameters":{"type":"object"},"strict":true}],
            "tool_choice":{"type":"function","name":"get_weather"},
            "text":{"format":{"type":"json_schema","name":"w","schema":{"type":"object"}}}}"#,
        );
        assert_eq!(chat["model"], "up-model");
        assert_eq!(chat["max_tokens"], 50);
        assert_eq!(chat["stream_options"]["include_usage"], true);
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(m[1]["content"][1]["image_url"]["url"], "data:x");
        assert_eq!(
            m[2]["tool_calls"].as_array().unwrap().len(),
            2,
            "consecutive calls in one message"
        );
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "c1", "content": "rain"})
        );
        assert_eq!(m[4]["role"], "system");
        assert_eq!(chat["tools"][0]["function"]["name"], "get_weather");
        assert_eq!(chat["tool_choice"]["function"]["name"], "get_weather");
        assert_eq!(chat["response_format"]["json_schema"]["name"], "w");
    }

    #[test]
    fn requests_that_need_state_are_400s_naming_the_parameter() {
        for (body, param) in [
            (
                r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
                "previous_response_id",
            ),
            (r#"{"model":"m","input":"x","store":true}"#, "store"),
            (
                r#"{"model":"m","input":"x","conversation":"conv_1"}"#,
                "conversation",
            ),
            (
                r#"{"model":"m","input":[{"type":"item_reference","id":"msg_1"}]}"#,
                "input",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"web_search"}]}"#,
                "tools",
            ),
        ] {
            let err = request_to_chat(body.as_bytes(), "m", "m").expect_err(body);
            assert_eq!(err.status(), 400, "{body}");
            let text = String::from_utf8_lossy(&err.body()).into_owned();
            assert!(text.contains(&format!("\"param\":\"{param}\"")), "{text}");
        }
        assert!(request_to_chat(br#"{"model":"m","input":"x","store":false}"#, "m", "m").is_ok());
    }

    /// The tool calls (call id, name, arguments) that a chat stream's
    /// chunks make on the two paths that gather them: a plain answer made
    /// of events, and the Responses events. They must be the same.
    fn calls_on_every_path(chunks: &[&str]) -> [Vec<(String, String, String)>; 2] {
        let plain =
            crate::gateway::translate::aggregate_events(chunks.iter().map(|c| c.as_bytes()))
                .expect("an answer");
        let plain: Value = serde_json::from_slice(&plain).unwrap();
        let plain = plain["choices"][0]["message"]["tool_calls"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| {
                let f = &c["function"];
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (s(&c["id"]), s(&f["name"]), s(&f["arguments"]))
            })
            .collect();
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(seed);
        for c in chunks {
            t.chunk(c.as_bytes());
        }
        let last = t.finish().unwrap().pop().unwrap();
        let done: Value = serde_json::from_slice(&last.1).unwrap();
        let events = done["response"]["output"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["type"] == "function_call")
            .map(|i| {
                let s = |v: &Value| v.as_str().unwrap_or_default().to_owned();
                (s(&i["call_id"]), s(&i["name"]), s(&i["arguments"]))
            })
            .collect();
        [plain, events]
    }

    #[test]
    fn tool_call_deltas_give_the_same_calls_on_every_path() {
        let chunk = |calls: &str| {
            format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{"tool_calls":{calls}}}}}]}}"#)
        };
        let finish =
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#;
        type Case<'a> = (Vec<String>, Vec<(&'a str, &'a str, &'a str)>);
        let cases: [Case; 3] = [
            // An id first, then the call's index alone: one call.
            (
                vec![
                    chunk(
                        r#"[{"id":"a","type":"function","function":{"name":"f","arguments":"{\"x\":"}}]"#,
                    ),
                    chunk(r#"[{"index":0,"function":{"arguments":"1}"}}]"#),
                ],
                vec![("a", "f", r#"{"x":1}"#)],
            ),
            // Parallel calls that reuse index 0 (Ollama): a new id is a new call.
            (
                vec![
                    chunk(
                        r#"[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{}"}}]"#,
                    ),
                    chunk(
                        r#"[{"index":0,"id":"b","type":"function","function":{"name":"g","arguments":"{\"y\":"}}]"#,
                    ),
                    chunk(r#"[{"index":0,"function":{"arguments":"2}"}}]"#),
                ],
                vec![("a", "f", "{}"), ("b", "g", r#"{"y":2}"#)],
            ),
            // The usual shape: by index, pieces interleaved.
            (
                vec![
                    chunk(
                        r#"[{"index":0,"id":"a","type":"function","function":{"name":"f","arguments":"{"}}]"#,
                    ),
                    chunk(
                        r#"[{"index":1,"id":"b","type":"function","function":{"name":"g","arguments":"{"}}]"#,
                    ),
                    chunk(r#"[{"index":0,"function":{"arguments":"}"}}]"#),
                    chunk(r#"[{"index":1,"function":{"arguments":"}"}}]"#),
                ],
                vec![("a", "f", "{}"), ("b", "g", "{}")],
            ),
        ];
        for (mut chunks, want) in cases {
            chunks.push(finish.to_owned());
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            let want: Vec<(String, String, String)> = want
                .into_iter()
                .map(|(a, b, c)| (a.to_owned(), b.to_owned(), c.to_owned()))
                .collect();
            let [plain, events] = calls_on_every_path(&chunks);
            assert_eq!(plain, want, "plain answer of {chunks:?}");
            assert_eq!(events, want, "Responses events of {chunks:?}");
        }
    }

    #[test]
    fn an_error_in_the_chat_stream_fails_the_response() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(seed);
        let mut events = t.chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#);
        events.extend(t.chunk(br#"{"error":{"message":"overloaded","code":"server_error"}}"#));
        // Nothing after the error counts.
        events.extend(t.chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"more"},"finish_reason":"stop"}]}"#));
        events.extend(t.finish().unwrap());
        let names: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert!(names.contains(&"error"), "{names:?}");
        assert_eq!(names.last(), Some(&"response.failed"));
        let last: Value = serde_json::from_slice(&events.last().unwrap().1).unwrap();
        assert_eq!(last["response"]["status"], "failed");
        assert_eq!(last["response"]["error"]["message"], "overloaded");
    }

    #[test]
    fn a_whole_chat_answer_becomes_a_response() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","max_output_tokens":5}"#);
        let chat = br#"{"id":"chatcmpl-9x","created":7,"model":"up","choices":[{"index":0,
            "message":{"role":"assistant","content":"Hello","tool_calls":[{"id":"call_1","type":"function",
            "function":{"name":"f","arguments":"{}"}}]},"finish_reason":"length"}],
            "usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8,"prompt_tokens_details":{"cached_tokens":1}}}"#;
        let r: Value = serde_json::from_slice(&chat_to_response(chat, &seed).unwrap()).unwrap();
        assert_eq!(r["id"], "resp_9x");
        assert_eq!(r["model"], "alias");
        assert_eq!(r["status"], "incomplete");
        assert_eq!(r["incomplete_details"]["reason"], "max_output_tokens");
        assert_eq!(r["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(r["output"][1]["call_id"], "call_1");
        assert_ne!(r["output"][0]["id"], r["output"][1]["id"]);
        assert_eq!(r["usage"]["input_tokens"], 3);
        assert_eq!(r["usage"]["input_tokens_details"]["cached_tokens"], 1);
        assert_eq!(r["max_output_tokens"], 5);
        for (bad, says) in [
            (&b"{\"object\":\"list\"}"[..], "no choices"),
            (
                br#"{"error":{"message":"context overflow"}}"#,
                "context overflow",
            ),
            (br#"{"error":"plain"}"#, "plain"),
            (
                br#"{"choices":[{"index":0,"message":{"content":"Hel"},"finish_reason":null}]}"#,
                "broke off",
            ),
            (b"<html>", "not JSON"),
        ] {
            let err = chat_to_response(bad, &seed).expect_err(says);
            assert_eq!(err.status(), 502);
            assert!(err.to_string().contains(says), "{err}");
        }
    }

    #[test]
    fn chat_chunks_become_the_responses_event_sequence() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(seed);
        let chunks = [
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"lo"}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\""}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":":1}"}}]},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":4,"total_tokens":6}}"#,
        ];
        let mut events: Vec<NamedEvent> =
            chunks.iter().flat_map(|c| t.chunk(c.as_bytes())).collect();
        events.extend(t.finish().unwrap());
        assert!(t.finish().unwrap().is_empty(), "finished once");
        let names: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert_eq!(
            names,
            [
                "response.created",
                "response.in_progress",
                "response.output_item.added",
                "response.content_part.added",
                "response.output_text.delta",
                "response.output_text.delta",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.function_call_arguments.done",
                "response.output_item.done",
                "response.completed",
            ]
        );
        let data: Vec<Value> = events
            .iter()
            .map(|e| serde_json::from_slice(&e.1).unwrap())
            .collect();
        for (n, d) in data.iter().enumerate() {
            assert_eq!(d["sequence_number"], n as u64);
            assert_eq!(d["type"], names[n]);
        }
        let done = &data[14]["response"];
        assert_eq!(done["model"], "alias");
        assert_eq!(done["output"][0]["content"][0]["text"], "Hello");
        assert_eq!(done["output"][1]["arguments"], "{\"a\":1}");
        assert_eq!(done["usage"]["total_tokens"], 6);
    }

    fn names(events: &[NamedEvent]) -> Vec<&'static str> {
        events.iter().map(|e| e.0).collect()
    }

    fn last(events: &[NamedEvent]) -> Value {
        serde_json::from_slice(&events.last().unwrap().1).unwrap()
    }

    #[test]
    fn streams_that_make_no_answer_or_break_off_are_not_completed() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        // Nothing that is a chat chunk: no answer at all.
        let mut t = StreamTranslator::new(seed.clone());
        for junk in [
            &b"hello"[..],
            b"123",
            b"\"str\"",
            b"[]",
            b"null",
            b"{\"usage\":{}}",
        ] {
            assert!(t.chunk(junk).is_empty());
        }
        assert!(t.finish().is_err());
        // Chunks, but no output and no finish_reason.
        let mut t = StreamTranslator::new(seed.clone());
        t.chunk(br#"{"id":"c","choices":[],"usage":{"prompt_tokens":1}}"#);
        assert!(t.finish().is_err());
        // Output, then the stream broke off: failed, keeping what came.
        let mut t = StreamTranslator::new(seed.clone());
        let mut events =
            t.chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hel"}}]}"#);
        events.extend(t.finish().unwrap());
        assert_eq!(names(&events).last(), Some(&"response.failed"));
        assert!(t.failed());
        assert_eq!(
            last(&events)["response"]["output"][0]["content"][0]["text"],
            "Hel"
        );
        // An error before anything else: created first, then error, then failed.
        let mut t = StreamTranslator::new(seed);
        let mut events = t.chunk(br#"{"error":"a plain string"}"#);
        events.extend(t.finish().unwrap());
        assert_eq!(
            names(&events),
            [
                "response.created",
                "response.in_progress",
                "error",
                "response.failed"
            ]
        );
        let error: Value = serde_json::from_slice(&events[2].1).unwrap();
        assert_eq!(error["message"], "a plain string");
    }

    #[test]
    fn tool_calls_without_index_or_id_stay_apart_and_get_their_own_ids() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(seed);
        let chunks = [
            // Two calls with indexes and no ids.
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"name":"a","arguments":"{}"}},{"index":1,"function":{"name":"b","arguments":"{}"}}]}}]}"#,
            // A call with an id and no index, its name and arguments later.
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"id":"call_x","function":{"arguments":{"k":1}}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"function":{"name":"late"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut events: Vec<NamedEvent> =
            chunks.iter().flat_map(|c| t.chunk(c.as_bytes())).collect();
        events.extend(t.finish().unwrap());
        let output = last(&events)["response"]["output"].clone();
        let output = output.as_array().unwrap();
        assert_eq!(output.len(), 3, "{output:?}");
        assert_eq!(
            output
                .iter()
                .map(|o| o["name"].as_str().unwrap())
                .collect::<Vec<_>>(),
            ["a", "b", "late"]
        );
        assert_eq!(output[2]["call_id"], "call_x");
        assert_eq!(output[2]["arguments"], "{\"k\":1}");
        let ids: std::collections::HashSet<_> = output
            .iter()
            .flat_map(|o| [o["id"].to_string(), o["call_id"].to_string()])
            .collect();
        assert_eq!(ids.len(), 6, "every id and call id unique: {output:?}");
    }

    #[test]
    fn parts_chat_cannot_carry_are_400s_naming_them() {
        for (input, says) in [
            (
                r#"[{"role":"user","content":[{"type":"input_file","file_data":"x"}]}]"#,
                "input[0].content[0] of type input_file",
            ),
            (
                r#"[{"role":"user","content":[{"type":"input_image","file_id":"f"}]}]"#,
                "not by file id",
            ),
            (
                r#"[{"role":"user","content":[{"type":"input_text"}]}]"#,
                "has no 'text'",
            ),
            (r#"[{"role":"user","content":[null]}]"#, "of type (none)"),
            (
                r#"[{"role":"user","content":5}]"#,
                "input[0].content must be",
            ),
        ] {
            let body = format!(r#"{{"model":"m","input":{input}}}"#);
            let err = request_to_chat(body.as_bytes(), "m", "m").expect_err(says);
            assert!(err.to_string().contains(says), "{err}");
        }
        for (body, param) in [
            (
                r#"{"model":"m","input":"x","prompt":{"id":"pmpt_1"}}"#,
                "prompt",
            ),
            (
                r#"{"model":"m","input":"x","background":true}"#,
                "background",
            ),
        ] {
            let err = request_to_chat(body.as_bytes(), "m", "m").expect_err(body);
            let text = String::from_utf8_lossy(&err.body()).into_owned();
            assert!(text.contains(&format!("\"param\":\"{param}\"")), "{text}");
        }
    }

    #[test]
    fn other_choices_and_repeated_call_ids_do_not_merge_items() {
        let (_, seed) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(seed);
        let chunks = [
            r#"{"choices":[{"index":1,"delta":{"content":"B"}},{"index":0,"delta":{"content":"A"}}]}"#,
            r#"{"choices":[{"index":1,"delta":{"tool_calls":[{"index":0,"id":"call_x","function":{"name":"g1","arguments":"{}"}}]}}]}"#,
            r#"{"choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_same","function":{"name":"f","arguments":"{}"}},{"index":1,"id":"call_same","function":{"name":"g","arguments":"{}"}}]},"finish_reason":"tool_calls"}]}"#,
        ];
        let mut events: Vec<NamedEvent> =
            chunks.iter().flat_map(|c| t.chunk(c.as_bytes())).collect();
        events.extend(t.finish().unwrap());
        let output = last(&events)["response"]["output"].clone();
        assert_eq!(output[0]["content"][0]["text"], "A", "{output}");
        let calls: Vec<&Value> = output
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["type"] == "function_call")
            .collect();
        assert_eq!(calls.len(), 2, "choice 1's call left out: {output}");
        assert_eq!(calls[0]["call_id"], "call_same");
        assert_ne!(calls[1]["call_id"], "call_same", "{output}");
    }

    #[test]
    fn store_and_background_must_be_booleans() {
        for body in [
            r#"{"model":"m","input":"x","store":"yes"}"#,
            r#"{"model":"m","input":"x","background":"true"}"#,
        ] {
            let err = request_to_chat(body.as_bytes(), "m", "m").expect_err(body);
            assert!(err.to_string().contains("must be a boolean"), "{err}");
        }
    }
}
