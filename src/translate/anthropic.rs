//! The Anthropic Messages API (`POST /v1/messages`) over chat-completions
//! providers (docs/wire.md §3, "Anthropic Messages"): a Messages request
//! becomes a chat request, and the chat answer, whole or streamed, becomes
//! a `message` object or Anthropic's event sequence. Sans-IO: functions of
//! bytes, tested per direction; the stream translator shares the tool-call
//! rule (`tool_calls.rs`) with every other path.
//!
//! What chat cannot carry is said by name (400) or dropped where a client
//! sends it as a hint (`cache_control`, `top_k`), as docs/wire.md lists.

use bytes::Bytes;
use serde_json::{json, Map, Value};

use super::tool_calls::ToolCallRule;
use super::{EventTranslator, NamedEvent};
use crate::api::request_id::fresh_id;
use crate::api::ApiError;

/// What the answer needs to know of its request.
#[derive(Debug, Clone)]
pub struct MessagesSeed {
    /// The model name the client asked for, echoed in every answer.
    pub model: String,
    /// `stop_sequences`, to tell `stop_sequence` from `end_turn` when the
    /// provider says which one matched.
    pub stop_sequences: Vec<String>,
    /// Server tools (web search, code execution, …) left out: they run on
    /// Anthropic's servers, which a chat provider is not.
    pub dropped_tools: Vec<String>,
}

fn invalid(message: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::invalid(message, Some(param))
}

/// A Messages request as a chat request for `upstream_model`.
///
/// Errors (400, naming the field): `max_tokens` or `messages` missing or
/// mistyped, a role other than `user`, `assistant` or `system`, a content
/// block chat cannot carry (named), `mcp_servers`.
pub fn request_to_chat(
    body: &[u8],
    client_model: &str,
    upstream_model: &str,
) -> Result<(Bytes, MessagesSeed), ApiError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON: {e}"), None))?;
    let max_tokens = req
        .get("max_tokens")
        .and_then(Value::as_u64)
        .filter(|n| *n > 0)
        .ok_or_else(|| {
            invalid(
                "max_tokens: Field required (a positive integer).",
                "max_tokens",
            )
        })?;
    let messages = req
        .get("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("messages: Field required (an array).", "messages"))?;
    if messages.is_empty() {
        return Err(invalid(
            "messages: at least one message is required.",
            "messages",
        ));
    }
    if req.get("mcp_servers").is_some_and(|v| !v.is_null()) {
        return Err(invalid(
            "mcp_servers: MCP servers are run by Anthropic's servers; a chat provider cannot connect to them.",
            "mcp_servers",
        ));
    }
    let mut chat = Vec::new();
    match req.get("system") {
        None | Some(Value::Null) => {}
        Some(system) => {
            chat.push(json!({"role": "system", "content": blocks_text(system, "system")?}))
        }
    }
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        match role {
            "system" => {
                chat.push(json!({"role": "system", "content": blocks_text(content, "messages")?}))
            }
            "user" => user_messages(content, &mut chat)?,
            "assistant" => chat.push(assistant_message(content)?),
            other => {
                return Err(invalid(
                    format!(
                    "messages[{i}].role: '{other}' is not one of 'user', 'assistant', 'system'."
                ),
                    "messages",
                ))
            }
        }
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    out.insert("messages".into(), Value::Array(chat));
    out.insert("max_tokens".into(), json!(max_tokens));
    let mut dropped_tools = Vec::new();
    let tools = match req.get("tools") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(tools)) => &tools[..],
        Some(_) => return Err(invalid("tools: Input should be a valid list.", "tools")),
    };
    if !tools.is_empty() {
        let mut functions = Vec::new();
        for (i, t) in tools.iter().enumerate() {
            let name = t
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
                .ok_or_else(|| invalid(format!("tools.{i}.name: Field required."), "tools"))?;
            match t.get("input_schema") {
                Some(schema) if !schema.is_object() => {
                    return Err(invalid(
                        format!("tools.{i}.input_schema: Input should be an object."),
                        "tools",
                    ))
                }
                // A custom tool: the client runs it, as chat functions are.
                Some(schema) => {
                    let mut f = json!({"name": name, "parameters": schema});
                    if let Some(d) = t.get("description").filter(|d| !d.is_null()) {
                        f["description"] = d.clone();
                    }
                    functions.push(json!({"type": "function", "function": f}));
                }
                None => dropped_tools.push(name.to_owned()),
            }
        }
        if !functions.is_empty() {
            let offered = |name: &Value| {
                functions
                    .iter()
                    .any(|f| f.pointer("/function/name") == Some(name))
            };
            if let Some(choice) = req.get("tool_choice").filter(|c| !c.is_null()) {
                let chosen = tool_choice(choice)?;
                if let Some(name) = chosen.pointer("/function/name") {
                    if !offered(name) {
                        return Err(invalid(
                            format!("tool_choice.name: {name} is none of the tools a chat provider can call."),
                            "tool_choice",
                        ));
                    }
                }
                out.insert("tool_choice".into(), chosen);
                if choice.get("disable_parallel_tool_use") == Some(&Value::Bool(true)) {
                    out.insert("parallel_tool_calls".into(), json!(false));
                }
            }
            out.insert("tools".into(), Value::Array(functions));
        }
    }
    let stop_sequences: Vec<String> = match req.get("stop_sequences") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(seqs)) if seqs.iter().all(Value::is_string) => seqs
            .iter()
            .filter_map(Value::as_str)
            .map(str::to_owned)
            .collect(),
        Some(_) => {
            return Err(invalid(
                "stop_sequences: Input should be a list of strings.",
                "stop_sequences",
            ))
        }
    };
    if !stop_sequences.is_empty() {
        out.insert("stop".into(), json!(stop_sequences));
    }
    for (key, param) in [("temperature", "temperature"), ("top_p", "top_p")] {
        match req.get(key) {
            None | Some(Value::Null) => {}
            Some(v) if v.is_number() => {
                out.insert(key.into(), v.clone());
            }
            Some(_) => return Err(invalid(format!("{key}: Input should be a number."), param)),
        }
    }
    if let Some(user) = req.pointer("/metadata/user_id").and_then(Value::as_str) {
        out.insert("user".into(), json!(user));
    }
    // Extended thinking: the provider's reasoning effort, by budget.
    if req.pointer("/thinking/type").and_then(Value::as_str) == Some("enabled") {
        let budget = req
            .pointer("/thinking/budget_tokens")
            .and_then(Value::as_u64)
            .unwrap_or(0);
        let effort = match budget {
            0..4096 => "low",
            4096..16384 => "medium",
            _ => "high",
        };
        out.insert("reasoning_effort".into(), json!(effort));
    }
    if req.get("stream") == Some(&Value::Bool(true)) {
        out.insert("stream".into(), json!(true));
        out.insert("stream_options".into(), json!({"include_usage": true}));
    }
    let seed = MessagesSeed {
        model: client_model.to_owned(),
        stop_sequences,
        dropped_tools,
    };
    Ok((Bytes::from(Value::Object(out).to_string()), seed))
}

/// `system` (or a system message's content): a string, or text blocks
/// joined by newlines.
fn blocks_text(content: &Value, param: &'static str) -> Result<String, ApiError> {
    match content {
        Value::String(s) => Ok(s.clone()),
        Value::Array(blocks) => {
            let mut texts = Vec::new();
            for b in blocks {
                match b.get("type").and_then(Value::as_str) {
                    Some("text") => texts.push(b.get("text").and_then(Value::as_str).unwrap_or("")),
                    other => {
                        return Err(invalid(
                            format!(
                                "{param}: a '{}' block cannot be part of system text.",
                                other.unwrap_or("?")
                            ),
                            param,
                        ))
                    }
                }
            }
            Ok(texts.join("\n"))
        }
        _ => Err(invalid(
            format!("{param}: expected a string or text blocks."),
            param,
        )),
    }
}

/// A user turn: its `tool_result` blocks as tool messages first (each
/// answers the assistant's call just before), then the rest as one user
/// message. Images inside a tool result follow in a user message, since
/// chat tool messages carry only text.
fn user_messages(content: &Value, chat: &mut Vec<Value>) -> Result<(), ApiError> {
    let blocks = match content {
        Value::String(s) => {
            chat.push(json!({"role": "user", "content": s}));
            return Ok(());
        }
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                "messages: content must be a string or an array of blocks.",
                "messages",
            ))
        }
    };
    let mut parts = Vec::new();
    let mut tool_images = Vec::new();
    for b in blocks {
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => parts.push(json!({"type": "text", "text": block_text(b)?})),
            "image" => parts.push(image_part(b)?),
            "document" => parts.push(document_part(b)?),
            "tool_result" => {
                let id = b.get("tool_use_id").and_then(Value::as_str).unwrap_or("");
                let mut texts = Vec::new();
                match b.get("content") {
                    Some(Value::String(s)) => texts.push(s.clone()),
                    Some(Value::Array(inner)) => {
                        for c in inner {
                            match c.get("type").and_then(Value::as_str) {
                                Some("text") => texts.push(c.get("text").and_then(Value::as_str).unwrap_or("").to_owned()),
                                Some("image") => tool_images.push(image_part(c)?),
                                Some("document") => tool_images.push(document_part(c)?),
                                other => {
                                    return Err(invalid(
                                        format!("messages: a '{}' block inside a tool_result cannot be sent to a chat provider.", other.unwrap_or("?")),
                                        "messages",
                                    ))
                                }
                            }
                        }
                    }
                    None | Some(Value::Null) => {}
                    Some(_) => {
                        return Err(invalid(
                            "messages: a tool_result's content must be a string or blocks.",
                            "messages",
                        ))
                    }
                }
                let mut text = texts.join("\n");
                if b.get("is_error") == Some(&Value::Bool(true)) {
                    text = format!("Error: {text}");
                }
                chat.push(json!({"role": "tool", "tool_call_id": id, "content": text}));
            }
            // Thinking is the assistant's; a client that echoes it in a
            // user turn gains nothing from it upstream.
            "thinking" | "redacted_thinking" => {}
            other => {
                return Err(invalid(
                    format!(
                        "messages: '{other}' content blocks cannot be sent to a chat provider."
                    ),
                    "messages",
                ))
            }
        }
    }
    parts.extend(tool_images);
    match parts.as_slice() {
        [] => {}
        [only] if only["type"] == "text" => {
            chat.push(json!({"role": "user", "content": only["text"]}))
        }
        _ => chat.push(json!({"role": "user", "content": parts})),
    }
    Ok(())
}

/// A `text` block's text (400 when it is no string).
fn block_text(b: &Value) -> Result<&str, ApiError> {
    b.get("text").and_then(Value::as_str).ok_or_else(|| {
        invalid(
            "messages: a text block's 'text' must be a string.",
            "messages",
        )
    })
}

/// An `image` block as a chat image part (base64 as a data URL, or a URL).
fn image_part(b: &Value) -> Result<Value, ApiError> {
    let source = b.get("source").unwrap_or(&Value::Null);
    let url = match source.get("type").and_then(Value::as_str) {
        Some("base64") => format!(
            "data:{};base64,{}",
            source.get("media_type").and_then(Value::as_str).unwrap_or("image/png"),
            source.get("data").and_then(Value::as_str).unwrap_or("")
        ),
        Some("url") => source.get("url").and_then(Value::as_str).unwrap_or("").to_owned(),
        other => {
            return Err(invalid(
                format!("messages: an image with source '{}' cannot be sent to a chat provider (use base64 or url).", other.unwrap_or("?")),
                "messages",
            ))
        }
    };
    Ok(json!({"type": "image_url", "image_url": {"url": url}}))
}

/// A `document` block: plain text as text, a base64 PDF as a chat file
/// part.
fn document_part(b: &Value) -> Result<Value, ApiError> {
    let source = b.get("source").unwrap_or(&Value::Null);
    match source.get("type").and_then(Value::as_str) {
        Some("text") => Ok(json!({"type": "text", "text": source.get("data").and_then(Value::as_str).unwrap_or("")})),
        Some("base64") => {
            let media = source.get("media_type").and_then(Value::as_str).unwrap_or("application/pdf");
            let data = source.get("data").and_then(Value::as_str).unwrap_or("");
            let name = b.get("title").and_then(Value::as_str).unwrap_or("document.pdf");
            Ok(json!({"type": "file", "file": {"filename": name, "file_data": format!("data:{media};base64,{data}")}}))
        }
        other => Err(invalid(
            format!("messages: a document with source '{}' cannot be sent to a chat provider (use text or base64).", other.unwrap_or("?")),
            "messages",
        )),
    }
}

/// An assistant turn: text, `tool_use` blocks as `tool_calls` (their
/// `input` object as the `arguments` string), thinking as
/// `reasoning_content` (which reasoning providers want passed back).
fn assistant_message(content: &Value) -> Result<Value, ApiError> {
    let blocks = match content {
        Value::String(s) => return Ok(json!({"role": "assistant", "content": s})),
        Value::Array(blocks) => blocks,
        _ => {
            return Err(invalid(
                "messages: content must be a string or an array of blocks.",
                "messages",
            ))
        }
    };
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for b in blocks {
        match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => text.push_str(block_text(b)?),
            "thinking" => {
                reasoning.push_str(b.get("thinking").and_then(Value::as_str).unwrap_or(""))
            }
            "redacted_thinking" => {}
            "tool_use" => {
                let field = |key: &str| {
                    b.get(key).and_then(Value::as_str).ok_or_else(|| {
                        invalid(
                            format!("messages: a tool_use block needs its '{key}' (a string)."),
                            "messages",
                        )
                    })
                };
                let (id, name) = (field("id")?, field("name")?);
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                calls.push(json!({"id": id, "type": "function",
                    "function": {"name": name, "arguments": input.to_string()}}));
            }
            other => {
                return Err(invalid(
                    format!(
                        "messages: '{other}' content blocks cannot be sent to a chat provider."
                    ),
                    "messages",
                ))
            }
        }
    }
    let mut m = json!({"role": "assistant", "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        m["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        m["reasoning_content"] = json!(reasoning);
    }
    Ok(m)
}

/// Anthropic's `tool_choice` as chat's.
fn tool_choice(choice: &Value) -> Result<Value, ApiError> {
    Ok(match choice.get("type").and_then(Value::as_str) {
        Some("auto") => json!("auto"),
        Some("any") => json!("required"),
        Some("none") => json!("none"),
        Some("tool") => match choice.get("name").and_then(Value::as_str) {
            Some(name) => json!({"type": "function", "function": {"name": name}}),
            None => return Err(invalid("tool_choice.name: Field required.", "tool_choice")),
        },
        _ => {
            return Err(invalid(
                "tool_choice: expected type auto, any, tool or none.",
                "tool_choice",
            ))
        }
    })
}

/// A tool call's `arguments` string as Anthropic's `input`, always an
/// object: empty arguments are `{}`, and arguments that are no JSON
/// object are kept whole under `"arguments"` rather than lost.
pub(super) fn tool_input(arguments: &str) -> Value {
    if arguments.trim().is_empty() {
        return json!({});
    }
    match serde_json::from_str::<Value>(arguments) {
        Ok(Value::Object(o)) => Value::Object(o),
        _ => json!({"arguments": arguments}),
    }
}

/// Chat's `finish_reason` as Anthropic's `stop_reason` (and the matched
/// stop sequence, where the provider names it in the choice's
/// `stop_reason`, as vLLM does).
fn stop_reason(
    finish: Option<&str>,
    matched: Option<&str>,
    seed: &MessagesSeed,
) -> (&'static str, Value) {
    match finish {
        Some("length") => ("max_tokens", Value::Null),
        Some("tool_calls") | Some("function_call") => ("tool_use", Value::Null),
        Some("content_filter") => ("refusal", Value::Null),
        _ => match matched.filter(|m| seed.stop_sequences.iter().any(|s| s == m)) {
            Some(m) => ("stop_sequence", json!(m)),
            None => ("end_turn", Value::Null),
        },
    }
}

/// Chat `usage` as Anthropic's: cached prompt tokens apart from the rest.
fn usage(u: &Value) -> Value {
    let prompt = u.get("prompt_tokens").and_then(Value::as_u64).unwrap_or(0);
    let cached = u
        .pointer("/prompt_tokens_details/cached_tokens")
        .and_then(Value::as_u64)
        .unwrap_or(0);
    json!({"input_tokens": prompt.saturating_sub(cached),
        "output_tokens": u.get("completion_tokens").and_then(Value::as_u64).unwrap_or(0),
        "cache_read_input_tokens": cached, "cache_creation_input_tokens": 0})
}

/// A message id from the chat answer's id (or a new one).
fn message_id(chat_id: Option<&str>) -> String {
    match chat_id
        .map(|id| id.strip_prefix("chatcmpl-").unwrap_or(id))
        .filter(|t| !t.is_empty())
    {
        Some(tail) => format!("msg_{tail}"),
        None => fresh_id("msg_"),
    }
}

/// A whole `chat.completion` as a `message` object. No chat completion, an
/// `error` object or no choice: 502 saying which.
pub fn chat_to_message(answer: &[u8], seed: &MessagesSeed) -> Result<Bytes, ApiError> {
    let broken = |what: &str| ApiError::Upstream(format!("the upstream answered 200 with {what}"));
    let chat: Value = serde_json::from_slice(answer).map_err(|_| broken("no JSON object"))?;
    if let Some(e) = chat.get("error").filter(|e| !e.is_null()) {
        let message = e
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("an error");
        return Err(ApiError::Upstream(format!(
            "the upstream answered 200 with an error: {message}"
        )));
    }
    let choices = chat.get("choices").and_then(Value::as_array);
    let choice = choices
        .and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64) == Some(0))
                .or(c.first())
        })
        .ok_or_else(|| broken("a completion without choices"))?;
    let message = choice.get("message").unwrap_or(&Value::Null);
    let mut content = Vec::new();
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        content.push(json!({"type": "thinking", "thinking": r, "signature": ""}));
    }
    for key in ["content", "refusal"] {
        if let Some(t) = message
            .get(key)
            .and_then(super::chat::content_text)
            .filter(|t| !t.is_empty())
        {
            content.push(json!({"type": "text", "text": t}));
        }
    }
    let mut ids = std::collections::HashSet::new();
    for call in message
        .get("tool_calls")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
    {
        // Ids repeated by an upstream would make two calls one.
        let id = match call.get("id").and_then(Value::as_str) {
            Some(id) if !id.is_empty() && ids.insert(id) => id.to_owned(),
            _ => fresh_id("toolu_"),
        };
        let f = call.get("function").unwrap_or(&Value::Null);
        let input = match f.get("arguments") {
            Some(Value::Object(o)) => Value::Object(o.clone()),
            Some(Value::String(s)) => tool_input(s),
            None | Some(Value::Null) => json!({}),
            Some(other) => tool_input(&other.to_string()),
        };
        content.push(json!({"type": "tool_use", "id": id,
            "name": f.get("name").and_then(Value::as_str).unwrap_or(""), "input": input}));
    }
    if choice.get("finish_reason").is_none_or(Value::is_null) {
        return Err(broken("an answer without finish_reason (it broke off)"));
    }
    let (reason, sequence) = stop_reason(
        choice.get("finish_reason").and_then(Value::as_str),
        choice.get("stop_reason").and_then(Value::as_str),
        seed,
    );
    let doc = json!({"id": message_id(chat.get("id").and_then(Value::as_str)), "type": "message",
        "role": "assistant", "model": seed.model, "content": content, "stop_reason": reason,
        "stop_sequence": sequence, "usage": usage(chat.get("usage").unwrap_or(&Value::Null))});
    Ok(Bytes::from(doc.to_string()))
}

/// How a streamed tool call's arguments are passed on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Arguments {
    /// Nothing but whitespace came yet.
    Undecided,
    /// They begin as a JSON object: each fragment goes out as it comes.
    Live,
    /// They are no JSON object (`[1,2]`, plain text): held, and sent at the
    /// block's end as `{"arguments": "…"}`, so that `input` is always an
    /// object, as in a whole answer.
    Held,
}

/// One tool call of a Messages stream.
struct StreamCall {
    id: String,
    /// The id is chat2api's own: an upstream id that comes later wins.
    made_id: bool,
    name: String,
    /// Its content block, once opened: when its name is known (the block's
    /// start carries it), or at the end.
    block: Option<u64>,
    /// Argument text not sent yet.
    held: String,
    arguments: Arguments,
}

/// The block open in a Messages stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    Thinking,
    Text,
    /// A tool call: its position in the tool-call rule.
    Tool(usize),
}

/// A chat stream turned into Anthropic's events, chunk by chunk:
/// `message_start` first; content blocks with monotone indices, one open
/// at a time (thinking, text, then each tool call); every text piece and
/// argument fragment passed on as it comes (`text_delta`,
/// `thinking_delta`, `input_json_delta`); at the end `message_delta` with
/// `stop_reason` and usage, then `message_stop`. An error in the chat
/// stream, or a stream that breaks off, ends with an `error` event.
pub struct MessagesTranslator {
    seed: MessagesSeed,
    started: bool,
    ended: bool,
    failed: bool,
    id: String,
    open: Option<Open>,
    /// Index the next block gets.
    next_block: u64,
    rule: ToolCallRule,
    /// The tool calls, by their position in the rule.
    calls: Vec<StreamCall>,
    finish: Option<String>,
    matched: Option<String>,
    usage: Value,
}

impl MessagesTranslator {
    pub fn new(seed: MessagesSeed) -> MessagesTranslator {
        MessagesTranslator {
            seed,
            started: false,
            ended: false,
            failed: false,
            id: String::new(),
            open: None,
            next_block: 0,
            rule: ToolCallRule::default(),
            calls: Vec::new(),
            finish: None,
            matched: None,
            usage: Value::Null,
        }
    }

    fn event(name: &'static str, mut data: Value, out: &mut Vec<NamedEvent>) {
        data["type"] = json!(name);
        out.push((name, Bytes::from(data.to_string())));
    }

    fn start(&mut self, chat_id: Option<&str>, out: &mut Vec<NamedEvent>) {
        if self.started {
            return;
        }
        self.started = true;
        self.id = message_id(chat_id);
        let message = json!({"id": self.id, "type": "message", "role": "assistant", "model": self.seed.model,
            "content": [], "stop_reason": null, "stop_sequence": null,
            "usage": {"input_tokens": 0, "output_tokens": 0}});
        Self::event("message_start", json!({"message": message}), out);
    }

    fn close(&mut self, out: &mut Vec<NamedEvent>) {
        if let Some(Open::Tool(position)) = self.open {
            let call = &mut self.calls[position];
            if call.arguments == Arguments::Held && !call.held.is_empty() {
                let whole = json!({"arguments": std::mem::take(&mut call.held)}).to_string();
                let index = self.next_block - 1;
                Self::event(
                    "content_block_delta",
                    json!({"index": index, "delta": {"type": "input_json_delta", "partial_json": whole}}),
                    out,
                );
            }
        }
        if self.open.take().is_some() {
            Self::event(
                "content_block_stop",
                json!({"index": self.next_block - 1}),
                out,
            );
        }
    }

    /// Opens `block` (closing the one open) unless it is open already;
    /// returns its index.
    fn ensure(&mut self, block: Open, start: Value, out: &mut Vec<NamedEvent>) -> u64 {
        if self.open != Some(block) {
            self.close(out);
            self.open = Some(block);
            self.next_block += 1;
            Self::event(
                "content_block_start",
                json!({"index": self.next_block - 1, "content_block": start}),
                out,
            );
        }
        self.next_block - 1
    }

    /// Passes on what tool call `position` holds: opens its block once its
    /// name is known (or, `at_end`, with whatever name it has), then sends
    /// its argument text as it comes when it is a JSON object; other text
    /// is held for the block's end (see [`Arguments`]).
    fn flush_call(&mut self, position: usize, at_end: bool, out: &mut Vec<NamedEvent>) {
        let call = &self.calls[position];
        let index = match call.block {
            Some(index) => index,
            None if call.name.is_empty() && !at_end => return,
            None => {
                let start =
                    json!({"type": "tool_use", "id": call.id, "name": call.name, "input": {}});
                let index = self.ensure(Open::Tool(position), start, out);
                self.calls[position].block = Some(index);
                index
            }
        };
        let call = &mut self.calls[position];
        if call.arguments == Arguments::Undecided {
            call.arguments = match call.held.trim_start().chars().next() {
                None => return,
                Some('{') => Arguments::Live,
                Some(_) => Arguments::Held,
            };
        }
        if call.arguments == Arguments::Live && !call.held.is_empty() {
            // A piece of a call whose block was closed (an upstream that
            // interleaves parallel calls) still goes to that block's index,
            // where the SDKs gather it.
            let piece = std::mem::take(&mut call.held);
            Self::event(
                "content_block_delta",
                json!({"index": index, "delta": {"type": "input_json_delta", "partial_json": piece}}),
                out,
            );
        }
    }

    fn error(&mut self, message: &str, out: &mut Vec<NamedEvent>) {
        if self.ended {
            return;
        }
        self.ended = true;
        self.failed = true;
        Self::event(
            "error",
            json!({"error": {"type": "api_error", "message": message}}),
            out,
        );
    }
}

impl EventTranslator for MessagesTranslator {
    fn whole(&self, chat: &[u8]) -> Result<Bytes, ApiError> {
        chat_to_message(chat, &self.seed)
    }

    fn chunk(&mut self, data: &[u8]) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        if self.ended {
            return out;
        }
        let Ok(Value::Object(chunk)) = serde_json::from_slice::<Value>(data) else {
            return out;
        };
        if let Some(e) = chunk.get("error").filter(|e| !e.is_null()) {
            let message = e
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("the upstream's stream carried an error");
            self.error(message, &mut out);
            return out;
        }
        self.start(chunk.get("id").and_then(Value::as_str), &mut out);
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = u.clone();
        }
        let choices = chunk.get("choices").and_then(Value::as_array);
        let Some(choice) = choices.and_then(|c| {
            c.iter()
                .find(|c| c.get("index").and_then(Value::as_u64).unwrap_or(0) == 0)
        }) else {
            return out;
        };
        let delta = choice.get("delta").unwrap_or(&Value::Null);
        if let Some(r) = delta
            .get("reasoning_content")
            .and_then(Value::as_str)
            .filter(|r| !r.is_empty())
        {
            let index = self.ensure(
                Open::Thinking,
                json!({"type": "thinking", "thinking": "", "signature": ""}),
                &mut out,
            );
            Self::event(
                "content_block_delta",
                json!({"index": index, "delta": {"type": "thinking_delta", "thinking": r}}),
                &mut out,
            );
        }
        for key in ["content", "refusal"] {
            if let Some(t) = delta
                .get(key)
                .and_then(super::chat::content_text)
                .filter(|t| !t.is_empty())
            {
                let index = self.ensure(Open::Text, json!({"type": "text", "text": ""}), &mut out);
                Self::event(
                    "content_block_delta",
                    json!({"index": index, "delta": {"type": "text_delta", "text": t}}),
                    &mut out,
                );
            }
        }
        for call in delta
            .get("tool_calls")
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
        {
            let (position, opens) = self.rule.place_delta(call);
            let id = call
                .get("id")
                .and_then(Value::as_str)
                .filter(|id| !id.is_empty());
            if opens {
                self.calls.push(StreamCall {
                    id: id.map_or_else(|| fresh_id("toolu_"), str::to_owned),
                    made_id: id.is_none(),
                    name: String::new(),
                    block: None,
                    held: String::new(),
                    arguments: Arguments::Undecided,
                });
            }
            let f = call.get("function").unwrap_or(&Value::Null);
            let c = &mut self.calls[position];
            if let (Some(id), true, None) = (id, c.made_id, c.block) {
                c.id = id.to_owned();
                c.made_id = false;
            }
            if let Some(name) = f
                .get("name")
                .and_then(Value::as_str)
                .filter(|n| !n.is_empty())
            {
                if c.name.is_empty() {
                    c.name = name.to_owned();
                }
            }
            match f.get("arguments") {
                Some(Value::String(piece)) => c.held.push_str(piece),
                None | Some(Value::Null) => {}
                Some(other) => c.held.push_str(&other.to_string()),
            }
            self.flush_call(position, false, &mut out);
        }
        if let Some(f) = choice.get("finish_reason").and_then(Value::as_str) {
            self.finish = Some(f.to_owned());
            self.matched = choice
                .get("stop_reason")
                .and_then(Value::as_str)
                .map(str::to_owned);
        }
        out
    }

    fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError> {
        let mut out = Vec::new();
        if self.ended {
            return Ok(out);
        }
        if !self.started {
            return Err(ApiError::Upstream(
                "the upstream's stream made no answer".into(),
            ));
        }
        if self.finish.is_none() {
            self.error(
                "the upstream's stream ended before its finish_reason",
                &mut out,
            );
            return Ok(out);
        }
        for position in 0..self.calls.len() {
            if self.calls[position].block.is_none() {
                self.flush_call(position, true, &mut out);
            }
        }
        self.close(&mut out);
        let (reason, sequence) =
            stop_reason(self.finish.as_deref(), self.matched.as_deref(), &self.seed);
        Self::event(
            "message_delta",
            json!({"delta": {"stop_reason": reason, "stop_sequence": sequence},
            "usage": usage(&self.usage)}),
            &mut out,
        );
        Self::event("message_stop", json!({}), &mut out);
        self.ended = true;
        Ok(out)
    }

    fn abort(&mut self, message: &str) -> Vec<NamedEvent> {
        let mut out = Vec::new();
        self.error(message, &mut out);
        out
    }

    fn failed(&self) -> bool {
        self.failed
    }

    fn ends_with_done(&self) -> bool {
        false
    }

    fn ended(&self) -> bool {
        self.ended
    }
}

/// Tokens counted for each image or PDF, whose size an estimate cannot see
/// without decoding it (Anthropic bills an image by its pixels, about
/// 1 600 tokens for a 1.15-megapixel one).
const TOKENS_PER_MEDIA: u64 = 1_600;
/// The framing tokens of each message (role, separators), as OpenAI's
/// counting guide gives them for chat models.
const TOKENS_PER_MESSAGE: u64 = 3;

/// `POST /v1/messages/count_tokens`: an estimate of the request's input
/// tokens, `{"input_tokens": N}` (docs/wire.md §3). The request's text as it
/// would reach a chat provider (system, messages, tool results, tool names,
/// descriptions and schemas) is counted with the o200k_base tokenizer
/// (`tiktoken-rs`), plus [`TOKENS_PER_MESSAGE`] per message and
/// [`TOKENS_PER_MEDIA`] per image or document. Claude's own tokenizer is not
/// public; the README gives the estimate's measured error.
///
/// Errors: 400 when `model` or `messages` is missing, or a block cannot be
/// sent to a chat provider (as for `/v1/messages`).
pub fn count_tokens(body: &[u8]) -> Result<u64, ApiError> {
    let mut req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON: {e}"), None))?;
    if !req.get("model").is_some_and(Value::is_string) {
        return Err(invalid("model: Field required.", "model"));
    }
    // count_tokens takes no max_tokens; the translation wants one.
    req["max_tokens"] = json!(1);
    let (chat, _) = request_to_chat(req.to_string().as_bytes(), "", "")?;
    let chat: Value = serde_json::from_slice(&chat).unwrap_or_default();
    let bpe = tiktoken_rs::o200k_base_singleton();
    let mut tokens = 0u64;
    let mut text = |t: &str| tokens += bpe.encode_ordinary(t).len() as u64;
    let messages = chat["messages"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    let mut media = 0u64;
    for m in messages {
        match &m["content"] {
            Value::String(s) => text(s),
            Value::Array(parts) => {
                for p in parts {
                    match p["type"].as_str() {
                        Some("text") => text(p["text"].as_str().unwrap_or("")),
                        _ => media += 1,
                    }
                }
            }
            _ => {}
        }
        if let Some(r) = m["reasoning_content"].as_str() {
            text(r);
        }
        for call in m["tool_calls"].as_array().into_iter().flatten() {
            text(call["function"]["name"].as_str().unwrap_or(""));
            text(call["function"]["arguments"].as_str().unwrap_or(""));
        }
    }
    for tool in chat["tools"].as_array().into_iter().flatten() {
        text(&tool["function"].to_string());
    }
    Ok(tokens + media * TOKENS_PER_MEDIA + TOKENS_PER_MESSAGE * (messages.len() as u64 + 1))
}

/// A whole `message` object as the events a stream of it would have been
/// (an upstream that answered a stream request with one object):
/// `message_start` (no content yet), each content block opened, filled by
/// one delta (text, thinking and its signature, or a tool's whole input)
/// and closed, `message_delta` with the stop reason and output tokens,
/// `message_stop`. `None` when it is no message.
pub fn message_to_events(message: &[u8]) -> Option<Vec<NamedEvent>> {
    let m: Value = serde_json::from_slice(message).ok()?;
    if m.get("type").and_then(Value::as_str) != Some("message") {
        return None;
    }
    let blocks = m.get("content")?.as_array()?;
    let mut start = m.clone();
    start["content"] = json!([]);
    start["stop_reason"] = Value::Null;
    start["stop_sequence"] = Value::Null;
    let event = |doc: Value| Bytes::from(doc.to_string());
    let mut events = vec![(
        "message_start",
        event(json!({"type": "message_start", "message": start})),
    )];
    for (index, b) in blocks.iter().enumerate() {
        let (open, deltas) = match b.get("type").and_then(Value::as_str).unwrap_or("") {
            "text" => (
                json!({"type": "text", "text": ""}),
                vec![json!({"type": "text_delta", "text": b["text"]})],
            ),
            "thinking" => (
                json!({"type": "thinking", "thinking": ""}),
                vec![
                    json!({"type": "thinking_delta", "thinking": b["thinking"]}),
                    json!({"type": "signature_delta", "signature": b["signature"]}),
                ],
            ),
            "tool_use" | "server_tool_use" => {
                let mut open = b.clone();
                open["input"] = json!({});
                let input = b.get("input").cloned().unwrap_or_else(|| json!({}));
                (
                    open,
                    vec![json!({"type": "input_json_delta", "partial_json": input.to_string()})],
                )
            }
            // Redacted thinking, search results: whole in their opening.
            _ => (b.clone(), Vec::new()),
        };
        events.push((
            "content_block_start",
            event(json!({"type": "content_block_start", "index": index, "content_block": open})),
        ));
        for delta in deltas {
            events.push((
                "content_block_delta",
                event(json!({"type": "content_block_delta", "index": index, "delta": delta})),
            ));
        }
        events.push((
            "content_block_stop",
            event(json!({"type": "content_block_stop", "index": index})),
        ));
    }
    events.push((
        "message_delta",
        event(json!({"type": "message_delta",
            "delta": {"stop_reason": m["stop_reason"], "stop_sequence": m["stop_sequence"]},
            "usage": {"output_tokens": m.pointer("/usage/output_tokens").cloned().unwrap_or(json!(0))}})),
    ));
    events.push(("message_stop", event(json!({"type": "message_stop"}))));
    Some(events)
}

/// An Anthropic event stream gathered into the one `message` it makes
/// (an upstream that streamed where a plain answer was asked for):
/// `message_start`'s message, each block's deltas joined (text, thinking
/// and its signature, a tool's `input` from its JSON pieces),
/// `message_delta`'s stop reason and usage. `None` when an `error` event
/// came or the stream did not reach `message_stop`.
pub fn gather_events<'a>(events: impl IntoIterator<Item = &'a [u8]>) -> Option<Bytes> {
    let mut message: Option<Value> = None;
    // (block index, block, its input's JSON pieces)
    let mut blocks: Vec<(Option<u64>, Value, String)> = Vec::new();
    let mut stopped = false;
    for data in events {
        let Ok(ev) = serde_json::from_slice::<Value>(data) else {
            continue;
        };
        match ev.get("type").and_then(Value::as_str).unwrap_or("") {
            "message_start" => message = ev.get("message").cloned(),
            "content_block_start" => blocks.push((
                ev.get("index").and_then(Value::as_u64),
                ev.get("content_block")
                    .cloned()
                    .unwrap_or_else(|| json!({})),
                String::new(),
            )),
            "content_block_delta" => {
                let index = ev.get("index").and_then(Value::as_u64);
                let Some((_, block, json)) = blocks.iter_mut().rev().find(|b| b.0 == index) else {
                    continue;
                };
                let d = ev.get("delta").unwrap_or(&Value::Null);
                let piece = |key: &str| d.get(key).and_then(Value::as_str).unwrap_or("");
                let mut append = |key: &str| {
                    let joined = format!(
                        "{}{}",
                        block.get(key).and_then(Value::as_str).unwrap_or(""),
                        piece(key)
                    );
                    block[key] = json!(joined);
                };
                match d.get("type").and_then(Value::as_str).unwrap_or("") {
                    "text_delta" => append("text"),
                    "thinking_delta" => append("thinking"),
                    "signature_delta" => block["signature"] = json!(piece("signature")),
                    "input_json_delta" => json.push_str(piece("partial_json")),
                    _ => {}
                }
            }
            "message_delta" => {
                let Some(m) = message.as_mut().filter(|m| m.is_object()) else {
                    continue;
                };
                for key in ["stop_reason", "stop_sequence"] {
                    if let Some(v) = ev.pointer(&format!("/delta/{key}")) {
                        m[key] = v.clone();
                    }
                }
                if let Some(Value::Object(usage)) = ev.get("usage") {
                    if !m["usage"].is_object() {
                        m["usage"] = json!({});
                    }
                    for (k, v) in usage {
                        m["usage"][k] = v.clone();
                    }
                }
            }
            "message_stop" => {
                stopped = true;
                break;
            }
            "error" => return None,
            _ => {}
        }
    }
    let mut m = message.filter(|m| m.is_object() && stopped)?;
    m["content"] = blocks
        .into_iter()
        .map(|(_, mut block, json)| {
            if !json.is_empty() {
                block["input"] = tool_input(&json);
            }
            block
        })
        .collect();
    Some(Bytes::from(m.to_string()))
}

/// Anthropic's error `type` for a status (its API reference, "Errors").
pub fn error_type(status: u16) -> &'static str {
    match status {
        400 | 405 | 408 | 414 | 422 | 431 => "invalid_request_error",
        401 => "authentication_error",
        403 => "permission_error",
        404 => "not_found_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        503 | 529 => "overloaded_error",
        _ => "api_error",
    }
}

/// An error body in Anthropic's shape,
/// `{"type":"error","error":{"type","message"}}`, from an OpenAI-shaped
/// one (chat2api's own, or an upstream's passed on) or any other body.
pub fn error_body(status: u16, body: &[u8]) -> Bytes {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    // Already Anthropic's (an Anthropic provider's own error): as it came,
    // with its own error type and request id.
    if let Some(v) = &parsed {
        if v.get("type").and_then(Value::as_str) == Some("error")
            && v.pointer("/error/type").is_some_and(Value::is_string)
            && v.pointer("/error/message").is_some_and(Value::is_string)
        {
            return Bytes::copy_from_slice(body);
        }
    }
    let message = parsed
        .as_ref()
        .and_then(|v| {
            v.pointer("/error/message")
                .and_then(Value::as_str)
                .map(str::to_owned)
        })
        .unwrap_or_else(|| String::from_utf8_lossy(body).trim().to_owned());
    let doc = json!({"type": "error", "error": {"type": error_type(status), "message": message}});
    let mut out = doc.to_string().into_bytes();
    out.push(b'\n');
    Bytes::from(out)
}

/// One model in Anthropic's shape (`GET /v1/models/{id}`).
pub fn model_object(id: &str, created: u64) -> Value {
    json!({"type": "model", "id": id, "display_name": id,
        "created_at": crate::stats::access::rfc3339(created * 1000)})
}

/// `GET /v1/models` in Anthropic's list shape, for clients that send
/// `anthropic-version`: `(id, created)` of each model.
pub fn models_list<'a>(models: impl Iterator<Item = (&'a str, u64)>) -> String {
    let data: Vec<Value> = models
        .map(|(id, created)| model_object(id, created))
        .collect();
    let first = data.first().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    let last = data.last().map(|m| m["id"].clone()).unwrap_or(Value::Null);
    json!({"data": data, "has_more": false, "first_id": first, "last_id": last}).to_string()
}

/// Fuzzing entry point: any request body is translated or refused, any
/// chat answer becomes a message or a 502, and any chat chunks (one per
/// line) become an event sequence that starts with `message_start` and ends
/// with `message_stop` or an `error` event, with block starts and stops
/// paired, without a panic; `count_tokens` answers or refuses.
#[doc(hidden)]
pub fn fuzz_anthropic(data: &[u8]) {
    let _ = request_to_chat(data, "alias", "upstream");
    let _ = count_tokens(data);
    let seed = MessagesSeed {
        model: "alias".into(),
        stop_sequences: vec!["END".into()],
        dropped_tools: Vec::new(),
    };
    let _ = chat_to_message(data, &seed);
    let mut t = MessagesTranslator::new(seed);
    let mut events: Vec<NamedEvent> = data
        .split(|b| *b == b'\n')
        .flat_map(|line| t.chunk(line))
        .collect();
    match t.finish() {
        Ok(closing) => events.extend(closing),
        Err(_) => events.extend(t.abort("cut")),
    }
    let names: Vec<&str> = events.iter().map(|e| e.0).collect();
    if let Some(first) = names.first() {
        assert!(matches!(*first, "message_start" | "error"), "{names:?}");
        assert!(
            matches!(*names.last().unwrap(), "message_stop" | "error"),
            "{names:?}"
        );
    }
    let starts = names
        .iter()
        .filter(|n| **n == "content_block_start")
        .count();
    let stops = names.iter().filter(|n| **n == "content_block_stop").count();
    assert!(stops <= starts && starts <= stops + 1, "{names:?}");
    for (_, data) in &events {
        let _: Value = serde_json::from_slice(data).expect("events are JSON");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seed() -> MessagesSeed {
        MessagesSeed {
            model: "claude-alias".into(),
            stop_sequences: vec!["END".into()],
            dropped_tools: Vec::new(),
        }
    }

    fn chat_of(body: Value) -> Value {
        let (chat, _) = request_to_chat(body.to_string().as_bytes(), "claude-alias", "up").unwrap();
        serde_json::from_slice(&chat).unwrap()
    }

    #[test]
    fn a_messages_request_becomes_a_chat_request() {
        let chat = chat_of(
            json!({"model": "claude-alias", "max_tokens": 100, "stream": true,
            "system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}],
            "stop_sequences": ["END"], "temperature": 0.5, "top_k": 5, "metadata": {"user_id": "u1"},
            "thinking": {"type": "enabled", "budget_tokens": 8000},
            "tools": [{"name": "read", "description": "Read a file", "input_schema": {"type": "object"}},
                      {"type": "web_search_20250305", "name": "web_search"}],
            "tool_choice": {"type": "any", "disable_parallel_tool_use": true},
            "messages": [
                {"role": "user", "content": [{"type": "text", "text": "Read a.txt"},
                    {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "AAA"}}]},
                {"role": "assistant", "content": [{"type": "thinking", "thinking": "Use read.", "signature": "s"},
                    {"type": "text", "text": "Reading."},
                    {"type": "tool_use", "id": "toolu_1", "name": "read", "input": {"path": "a.txt"}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                    "content": [{"type": "text", "text": "hello"}]}, {"type": "text", "text": "Summarise."}]},
                {"role": "system", "content": "Mid-conversation note."}
            ]}),
        );
        assert_eq!(chat["model"], "up");
        assert_eq!(chat["max_tokens"], 100);
        assert_eq!(chat["stop"], json!(["END"]));
        assert_eq!(chat["user"], "u1");
        assert_eq!(chat["reasoning_effort"], "medium");
        assert_eq!(chat["stream_options"]["include_usage"], true);
        assert!(chat.get("top_k").is_none());
        assert_eq!(
            chat["tools"].as_array().unwrap().len(),
            1,
            "the server tool is left out"
        );
        assert_eq!(chat["tool_choice"], "required");
        assert_eq!(chat["parallel_tool_calls"], false);
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m[0], json!({"role": "system", "content": "Be brief."}));
        assert_eq!(
            m[1]["content"][1]["image_url"]["url"],
            "data:image/png;base64,AAA"
        );
        assert_eq!(
            m[2]["tool_calls"][0]["function"]["arguments"],
            r#"{"path":"a.txt"}"#
        );
        assert_eq!(m[2]["reasoning_content"], "Use read.");
        assert_eq!(m[2]["content"], "Reading.");
        assert_eq!(
            m[3],
            json!({"role": "tool", "tool_call_id": "toolu_1", "content": "hello"})
        );
        assert_eq!(m[4], json!({"role": "user", "content": "Summarise."}));
        assert_eq!(
            m[5],
            json!({"role": "system", "content": "Mid-conversation note."})
        );
    }

    #[test]
    fn what_chat_cannot_carry_is_refused_by_name() {
        for (body, says) in [
            (json!({"model": "m", "messages": []}), "max_tokens"),
            (json!({"model": "m", "max_tokens": 5}), "messages"),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "tool", "content": "x"}]}),
                "'tool'",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "search_result"}]}]}),
                "search_result",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "mcp_servers": [{}]}),
                "mcp_servers",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": []}),
                "at least one message",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": {}}),
                "tools",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"input_schema": {}}]}),
                "tools.0.name",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "tools": [{"name": "f", "input_schema": "x"}]}),
                "input_schema",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}],
                "tools": [{"name": "f", "input_schema": {}}], "tool_choice": {"type": "tool", "name": "web_search"}}),
                "tool_choice.name",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "stop_sequences": "END"}),
                "stop_sequences",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}], "temperature": "hot"}),
                "temperature",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "text", "text": 5}]}]}),
                "'text'",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "assistant", "content": [{"type": "tool_use", "input": {}}]}]}),
                "tool_use",
            ),
            (
                json!({"model": "m", "max_tokens": 5, "messages": [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t", "content": 5}]}]}),
                "tool_result",
            ),
        ] {
            let err = request_to_chat(body.to_string().as_bytes(), "m", "m").expect_err(says);
            assert_eq!(err.status(), 400);
            assert!(
                String::from_utf8_lossy(&err.body()).contains(says),
                "{says}: {:?}",
                err.body()
            );
        }
    }

    #[test]
    fn a_whole_chat_answer_becomes_a_message() {
        let chat = br#"{"id":"chatcmpl-7","choices":[{"index":0,"finish_reason":"tool_calls",
            "message":{"role":"assistant","content":"Hi","reasoning_content":"Think.",
            "tool_calls":[{"id":"call_1","type":"function","function":{"name":"f","arguments":"{\"a\":1}"}},
                          {"id":"call_2","type":"function","function":{"name":"g","arguments":""}}]}}],
            "usage":{"prompt_tokens":10,"completion_tokens":4,"prompt_tokens_details":{"cached_tokens":6}}}"#;
        let m: Value = serde_json::from_slice(&chat_to_message(chat, &seed()).unwrap()).unwrap();
        assert_eq!(m["id"], "msg_7");
        assert_eq!(m["model"], "claude-alias");
        assert_eq!(m["stop_reason"], "tool_use");
        assert_eq!(
            m["content"][0],
            json!({"type": "thinking", "thinking": "Think.", "signature": ""})
        );
        assert_eq!(m["content"][1], json!({"type": "text", "text": "Hi"}));
        assert_eq!(m["content"][2]["input"], json!({"a": 1}));
        assert_eq!(
            m["content"][3]["input"],
            json!({}),
            "tool input is always an object"
        );
        assert_eq!(
            m["usage"],
            json!({"input_tokens": 4, "output_tokens": 4,
            "cache_read_input_tokens": 6, "cache_creation_input_tokens": 0})
        );
        for (finish, matched, reason) in [
            ("stop", None, "end_turn"),
            ("length", None, "max_tokens"),
            ("content_filter", None, "refusal"),
            ("stop", Some("END"), "stop_sequence"),
        ] {
            let (r, seq) = stop_reason(Some(finish), matched, &seed());
            assert_eq!(r, reason);
            assert_eq!(seq.as_str(), matched);
        }
    }

    fn stream(chunks: &[&str]) -> Vec<Value> {
        let mut t = MessagesTranslator::new(seed());
        let mut events: Vec<NamedEvent> =
            chunks.iter().flat_map(|c| t.chunk(c.as_bytes())).collect();
        events.extend(t.finish().unwrap());
        events
            .into_iter()
            .map(|(name, data)| {
                let v: Value = serde_json::from_slice(&data).unwrap();
                assert_eq!(v["type"], name);
                v
            })
            .collect()
    }

    #[test]
    fn a_chat_stream_becomes_anthropic_events() {
        let events = stream(&[
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"role":"assistant","content":null,"reasoning_content":"Hmm."}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":"Let me","tool_calls":[]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"content":" look."}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"call_a","type":"function","function":{"name":"read","arguments":"{\"pa"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"th\":1}"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"call_b","type":"function","function":{"name":"ls","arguments":"{}"}}]}}]}"#,
            r#"{"id":"chatcmpl-1","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
            r#"{"id":"chatcmpl-1","choices":[],"usage":{"prompt_tokens":9,"completion_tokens":3,"prompt_tokens_details":{"cached_tokens":2}}}"#,
        ]);
        let names: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
        assert_eq!(
            names,
            [
                "message_start",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_delta",
                "content_block_stop",
                "content_block_start",
                "content_block_delta",
                "content_block_stop",
                "message_delta",
                "message_stop"
            ]
        );
        assert_eq!(events[0]["message"]["model"], "claude-alias");
        // Blocks: thinking 0, text 1, tools 2 and 3; monotone, one at a time.
        let starts: Vec<(u64, &str)> = events
            .iter()
            .filter(|e| e["type"] == "content_block_start")
            .map(|e| {
                (
                    e["index"].as_u64().unwrap(),
                    e["content_block"]["type"].as_str().unwrap(),
                )
            })
            .collect();
        assert_eq!(
            starts,
            [
                (0, "thinking"),
                (1, "text"),
                (2, "tool_use"),
                (3, "tool_use")
            ]
        );
        assert_eq!(
            events[2]["delta"],
            json!({"type": "thinking_delta", "thinking": "Hmm."})
        );
        let args: String = events
            .iter()
            .filter(|e| e["index"] == 2 && e["delta"]["type"] == "input_json_delta")
            .map(|e| e["delta"]["partial_json"].as_str().unwrap())
            .collect();
        assert_eq!(args, r#"{"path":1}"#, "fragments arrive whole");
        assert_eq!(events[15]["delta"]["stop_reason"], "tool_use");
        assert_eq!(events[15]["usage"]["cache_read_input_tokens"], 2);
        assert_eq!(events[15]["usage"]["input_tokens"], 7);
    }

    /// The tool_use blocks a stream of chat chunks makes, as the SDKs
    /// gather them: (name, input parsed from the joined fragments).
    fn streamed_calls(chunks: &[&str]) -> Vec<(String, Value)> {
        let events = stream(chunks);
        let mut calls: Vec<(u64, String, String)> = Vec::new();
        for e in &events {
            if e["type"] == "content_block_start" && e["content_block"]["type"] == "tool_use" {
                let name = e["content_block"]["name"].as_str().unwrap().to_owned();
                calls.push((e["index"].as_u64().unwrap(), name, String::new()));
            }
            if e["delta"]["type"] == "input_json_delta" {
                let call = calls
                    .iter_mut()
                    .find(|c| c.0 == e["index"].as_u64().unwrap())
                    .unwrap();
                call.2
                    .push_str(e["delta"]["partial_json"].as_str().unwrap());
            }
        }
        calls
            .into_iter()
            .map(|(_, name, json)| {
                let input = if json.is_empty() {
                    json!({})
                } else {
                    serde_json::from_str(&json).unwrap()
                };
                (name, input)
            })
            .collect()
    }

    #[test]
    fn streamed_tool_calls_arrive_whole_whatever_the_upstream_does() {
        let delta = |calls: &str| {
            format!(r#"{{"id":"c","choices":[{{"index":0,"delta":{{"tool_calls":{calls}}}}}]}}"#)
        };
        let finish =
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#
                .to_owned();
        type Case<'a> = (Vec<String>, Vec<(&'a str, Value)>);
        let cases: Vec<Case> = vec![
            // Arguments that are no JSON object: held, sent as an object.
            (
                vec![
                    delta(r#"[{"index":0,"id":"a","function":{"name":"f","arguments":"not "}}]"#),
                    delta(r#"[{"index":0,"function":{"arguments":"json"}}]"#),
                ],
                vec![("f", json!({"arguments": "not json"}))],
            ),
            (
                vec![delta(
                    r#"[{"index":0,"id":"a","function":{"name":"f","arguments":"[1,2]"}}]"#,
                )],
                vec![("f", json!({"arguments": "[1,2]"}))],
            ),
            // The name in a later piece than the id.
            (
                vec![
                    delta(r#"[{"index":0,"id":"a","type":"function"}]"#),
                    delta(r#"[{"index":0,"function":{"name":"f","arguments":"{\"x\":1}"}}]"#),
                ],
                vec![("f", json!({"x": 1}))],
            ),
            // The id after the first piece.
            (
                vec![
                    delta(r#"[{"index":0,"function":{"name":"f","arguments":"{\"a\""}}]"#),
                    delta(r#"[{"index":0,"id":"call_1","function":{"arguments":":1}"}}]"#),
                ],
                vec![("f", json!({"a": 1}))],
            ),
            // Two calls sharing an id and an index, told apart by their names.
            (
                vec![
                    delta(
                        r#"[{"index":0,"id":"call_1","function":{"name":"f","arguments":"{\"a\":1}"}}]"#,
                    ),
                    delta(
                        r#"[{"index":0,"id":"call_1","function":{"name":"g","arguments":"{\"b\":2}"}}]"#,
                    ),
                ],
                vec![("f", json!({"a": 1})), ("g", json!({"b": 2}))],
            ),
            // Arguments given as an object.
            (
                vec![delta(
                    r#"[{"index":0,"id":"a","function":{"name":"f","arguments":{"x":1}}}]"#,
                )],
                vec![("f", json!({"x": 1}))],
            ),
        ];
        for (mut chunks, want) in cases {
            chunks.push(finish.clone());
            let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
            let got = streamed_calls(&chunks);
            let want: Vec<(String, Value)> =
                want.into_iter().map(|(n, v)| (n.to_owned(), v)).collect();
            assert_eq!(got, want, "{chunks:?}");
        }
    }

    #[test]
    fn content_given_as_parts_is_text() {
        let events = stream(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":[{"type":"text","text":"part"}]}}]}"#,
            r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"stop"}]}"#,
        ]);
        assert!(
            events.iter().any(|e| e["delta"]["text"] == "part"),
            "{events:?}"
        );
        let chat = br#"{"choices":[{"index":0,"finish_reason":"stop","message":{"content":[{"type":"text","text":"part"}],
            "tool_calls":[{"id":"c1","function":{"name":"f","arguments":{"x":1}}}]}}]}"#;
        let m: Value = serde_json::from_slice(&chat_to_message(chat, &seed()).unwrap()).unwrap();
        assert_eq!(m["content"][0]["text"], "part");
        assert_eq!(
            m["content"][1]["input"],
            json!({"x": 1}),
            "object arguments kept"
        );
        let cut = br#"{"choices":[{"index":0,"finish_reason":null,"message":{"content":"Hal"}}]}"#;
        assert_eq!(chat_to_message(cut, &seed()).unwrap_err().status(), 502);
    }

    #[test]
    fn an_error_event_is_the_last() {
        let mut t = MessagesTranslator::new(seed());
        t.chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#);
        let out = t.chunk(br#"{"error":{"message":"boom"}}"#);
        assert_eq!(out.last().unwrap().0, "error");
        assert!(t.ended() && t.failed());
        assert!(t
            .chunk(br#"{"id":"c","choices":[{"index":0,"delta":{"content":"more"}}]}"#)
            .is_empty());
        assert!(t.abort("cut").is_empty(), "no second error");
        assert!(t.finish().unwrap().is_empty());
    }

    #[test]
    fn a_stream_that_errs_or_breaks_off_ends_with_an_error_event() {
        let events = stream(&[
            r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
            r#"{"error":{"message":"overloaded"}}"#,
        ]);
        assert_eq!(events.last().unwrap()["error"]["message"], "overloaded");
        let events = stream(&[r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#]);
        assert_eq!(events.last().unwrap()["type"], "error");
        let mut t = MessagesTranslator::new(seed());
        assert!(t.finish().is_err(), "no event at all is no answer");
    }

    #[test]
    fn tokens_are_counted_from_the_text_a_provider_would_get() {
        let n = |body: Value| count_tokens(body.to_string().as_bytes());
        let one =
            n(json!({"model": "m", "messages": [{"role": "user", "content": "Hello, world"}]}))
                .unwrap();
        // "Hello, world" is 3 o200k tokens; 3 per message and 3 to prime.
        assert_eq!(one, 3 + 3 + 3);
        let more = n(json!({"model": "m", "system": "Be brief.", "messages": [{"role": "user", "content": "Hello, world"}],
            "tools": [{"name": "read", "input_schema": {"type": "object"}}]})).unwrap();
        assert!(more > one + 5, "{more}");
        assert_eq!(n(json!({"messages": []})).unwrap_err().status(), 400);
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            fuzz_anthropic(&data);
        }

        #[test]
        fn chunk_like_input_never_panics(
            lines in proptest::collection::vec(proptest::sample::select(vec![
                r#"{"id":"c","choices":[{"index":0,"delta":{"content":"Hi"}}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"reasoning_content":"hm"}}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"id":"a","function":{"name":"f","arguments":"{"}}]}}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":1,"id":"b","function":{"name":"g","arguments":"["}}]}}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{"tool_calls":[{"index":0,"function":{"arguments":"}"}}]}}]}"#,
                r#"{"id":"c","choices":[{"index":0,"delta":{},"finish_reason":"tool_calls"}]}"#,
                r#"{"id":"c","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":1}}"#,
                r#"{"error":{"message":"x"}}"#,
                "not json",
            ]), 0..12),
        ) {
            fuzz_anthropic(lines.join("\n").as_bytes());
        }
    }

    #[test]
    fn a_stream_gathers_into_its_message_and_back() {
        let message = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
            "content": [{"type": "thinking", "thinking": "Hm.", "signature": "sig"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "t1", "name": "get", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use", "stop_sequence": null,
            "usage": {"input_tokens": 3, "output_tokens": 9}});
        let events = message_to_events(message.to_string().as_bytes()).unwrap();
        let gathered = gather_events(events.iter().map(|(_, d)| &d[..])).unwrap();
        let back: Value = serde_json::from_slice(&gathered).unwrap();
        assert_eq!(back["content"], message["content"]);
        assert_eq!(back["stop_reason"], "tool_use");
        assert_eq!(back["usage"]["output_tokens"], 9);
        // Cut before message_stop, or with an error: no message.
        let cut: Vec<&[u8]> = events[..events.len() - 1]
            .iter()
            .map(|(_, d)| &d[..])
            .collect();
        assert!(gather_events(cut).is_none());
        let error: &[u8] = br#"{"type":"error","error":{"type":"overloaded_error","message":"x"}}"#;
        assert!(gather_events([&events[0].1[..], error]).is_none());
    }

    #[test]
    fn errors_take_anthropic_shape() {
        let body = error_body(404, br#"{"error":{"message":"The model 'x' does not exist","type":"invalid_request_error","param":null,"code":"model_not_found"}}"#);
        let v: Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            v,
            json!({"type": "error", "error": {"type": "not_found_error", "message": "The model 'x' does not exist"}})
        );
        assert_eq!(error_type(429), "rate_limit_error");
        assert_eq!(error_type(401), "authentication_error");
        assert_eq!(error_type(502), "api_error");
    }
}
