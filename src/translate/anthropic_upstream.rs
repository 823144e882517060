//! Chat completions onto a native Anthropic provider (`"type":
//! "anthropic"`, docs/wire.md §3, "Anthropic providers"): a chat request
//! becomes a Messages request, and the Messages answer, whole or streamed,
//! becomes a `chat.completion` or chat chunks. A Responses request reaches
//! the same provider through its chat translation (`responses.rs`): its
//! chat request is turned into a Messages request here, and the chat
//! chunks made here are turned into Responses events there.
//!
//! The reverse of `anthropic.rs` (Anthropic clients onto chat providers).
//! Sans-IO: functions of bytes, tested per direction. A streamed event is
//! read once into borrowed fields (no `serde_json::Value` per event) and
//! makes at most one chat chunk.
//!
//! What the Messages API cannot carry is refused by name (400: `n` above
//! 1, `logprobs`, `response_format`, audio) or left out where it is a hint
//! (`frequency_penalty`, `presence_penalty`, `seed`, `logit_bias`, and any
//! field not named in [`chat_to_messages`]), as docs/wire.md lists.

use std::borrow::Cow;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use serde_json::{json, Map, Value};

use super::anthropic::tool_input;
use super::{EventTranslator, NamedEvent};
use crate::api::ApiError;
use crate::stats::unix_time;

/// `max_tokens` when the chat request gives none: the Messages API requires
/// one, chat does not.
pub const DEFAULT_MAX_TOKENS: u64 = 4096;

/// The `anthropic-version` sent when the client sent none (an OpenAI
/// client's request): the version the Messages API is documented at.
pub const ANTHROPIC_VERSION: &[u8] = b"anthropic-version: 2023-06-01\r\n";

/// What the answer needs to know of its request.
#[derive(Debug, Clone)]
pub struct ChatSeed {
    /// The model name the client asked for, in every answer.
    model: String,
    /// `stream_options.include_usage`: end the stream with a usage chunk.
    include_usage: bool,
    created: u64,
}

fn invalid(message: impl Into<String>, param: &'static str) -> ApiError {
    ApiError::invalid(message, Some(param))
}

/// Budget tokens for chat's `reasoning_effort` (`minimal` and `none` ask
/// for no thinking).
fn thinking_budget(effort: &str) -> Option<u64> {
    match effort {
        "low" => Some(1024),
        "medium" => Some(4096),
        "high" | "xhigh" => Some(16384),
        _ => None,
    }
}

/// A chat completions request as a Messages request for `upstream_model`.
///
/// - `system` and `developer` messages are hoisted into `system` (in
///   order); consecutive messages of one role are merged into one turn;
///   `tool` messages become `tool_result` blocks of a user turn.
/// - Text, images (a data URL as base64, else a URL) and PDF files (as
///   `document` blocks); `tool_calls` as `tool_use` blocks (`arguments` as
///   the `input` object).
/// - `max_completion_tokens` / `max_tokens` (else [`DEFAULT_MAX_TOKENS`]),
///   `temperature`, `top_p`, `stop` → `stop_sequences`, `user` →
///   `metadata.user_id`, `tools`, `tool_choice` (with
///   `parallel_tool_calls: false` as `disable_parallel_tool_use`),
///   `reasoning_effort` → `thinking` with a budget (raising `max_tokens`
///   above it, and leaving out `temperature` and `top_p`, which thinking
///   does not take).
///
/// Errors (400, naming the field): no `messages`, a role or part the
/// Messages API cannot carry, `n` above 1, `logprobs`, a
/// `response_format` other than text, `functions`, tools other than
/// functions.
pub fn chat_to_messages(body: &[u8], upstream_model: &str) -> Result<(Bytes, ChatSeed), ApiError> {
    let req: Value = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid JSON: {e}"), None))?;
    let here = |key: &str| req.get(key).filter(|v| !v.is_null());
    let client_model = here("model")
        .and_then(Value::as_str)
        .unwrap_or("")
        .to_owned();
    if here("n").is_some_and(|n| n.as_u64() != Some(1)) {
        return Err(invalid(
            "'n' other than 1 cannot be sent to an Anthropic provider: the Messages API makes one answer per request.",
            "n",
        ));
    }
    for key in ["temperature", "top_p"] {
        if here(key).is_some_and(|v| !v.is_number()) {
            return Err(invalid(
                format!("'{key}' must be a number."),
                if key == "top_p" {
                    "top_p"
                } else {
                    "temperature"
                },
            ));
        }
    }
    if here("logprobs") == Some(&Value::Bool(true)) {
        return Err(invalid(
            "'logprobs' cannot be sent to an Anthropic provider: the Messages API returns none.",
            "logprobs",
        ));
    }
    if let Some(format) = here("response_format") {
        if format.get("type").and_then(Value::as_str) != Some("text") {
            return Err(invalid(
                "'response_format' (JSON mode, JSON schema) cannot be sent to an Anthropic provider; describe the format in the prompt, or use a tool whose parameters are the schema.",
                "response_format",
            ));
        }
    }
    for legacy in ["functions", "function_call", "audio"] {
        if here(legacy).is_some() {
            return Err(invalid(
                format!("'{legacy}' cannot be sent to an Anthropic provider (use tools)."),
                if legacy == "audio" {
                    "audio"
                } else {
                    "functions"
                },
            ));
        }
    }
    let messages = here("messages")
        .and_then(Value::as_array)
        .ok_or_else(|| invalid("'messages' must be an array.", "messages"))?;
    let mut system: Vec<Value> = Vec::new();
    let mut turns: Vec<(String, Vec<Value>)> = Vec::new();
    for (i, m) in messages.iter().enumerate() {
        let role = m.get("role").and_then(Value::as_str).unwrap_or("");
        let content = m.get("content").unwrap_or(&Value::Null);
        let (role, blocks) = match role {
            "system" | "developer" => {
                system.extend(text_blocks(content, i)?);
                continue;
            }
            "user" => ("user", user_blocks(content, i)?),
            "assistant" => ("assistant", assistant_blocks(m, i)?),
            "tool" => {
                let id = m.get("tool_call_id").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("messages[{i}]: a tool message needs its 'tool_call_id'."),
                        "messages",
                    )
                })?;
                let text: String = text_blocks(content, i)?
                    .iter()
                    .filter_map(|b| b["text"].as_str())
                    .collect::<Vec<_>>()
                    .join("\n");
                ("user", vec![json!({"type": "tool_result", "tool_use_id": id, "content": text})])
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}]: role '{other}' cannot be sent to an Anthropic provider (expected system, developer, user, assistant or tool)."),
                    "messages",
                ))
            }
        };
        if blocks.is_empty() {
            continue;
        }
        match turns.last_mut() {
            Some((last, prior)) if last == role => prior.extend(blocks),
            _ => turns.push((role.to_owned(), blocks)),
        }
    }
    // Within a user turn, tool results come first (the Messages API wants
    // them right after the assistant turn that called the tools).
    for (role, blocks) in &mut turns {
        if role == "user" {
            blocks.sort_by_key(|b| b["type"] != "tool_result");
        }
    }
    if turns.is_empty() {
        return Err(invalid(
            "'messages' holds no user or assistant message with content.",
            "messages",
        ));
    }
    let mut out = Map::new();
    out.insert("model".into(), json!(upstream_model));
    let mut max_tokens = here("max_completion_tokens")
        .or(here("max_tokens"))
        .map(|n| {
            n.as_u64()
                .filter(|n| *n > 0)
                .ok_or_else(|| invalid("'max_tokens' must be a positive integer.", "max_tokens"))
        })
        .transpose()?
        .unwrap_or(DEFAULT_MAX_TOKENS);
    // Thinking is asked for only where the Messages API can take it: not
    // with a forced tool choice, which it refuses with thinking, and not
    // in a conversation that replays tool calls, whose assistant turns
    // would need the signed thinking blocks chat cannot carry back.
    let forces_tool = match here("tool_choice") {
        Some(Value::String(choice)) => choice == "required",
        Some(choice) => choice.is_object(),
        None => false,
    };
    let replays_tools = turns.iter().any(|(role, blocks)| {
        role == "assistant" && blocks.iter().any(|b| b["type"] == "tool_use")
    });
    let thinking = here("reasoning_effort")
        .and_then(Value::as_str)
        .and_then(thinking_budget)
        .filter(|_| !forces_tool && !replays_tools);
    if let Some(budget) = thinking {
        if max_tokens <= budget {
            max_tokens = max_tokens.saturating_add(budget);
        }
        out.insert(
            "thinking".into(),
            json!({"type": "enabled", "budget_tokens": budget}),
        );
    }
    out.insert("max_tokens".into(), json!(max_tokens));
    if !system.is_empty() {
        out.insert("system".into(), Value::Array(system));
    }
    out.insert(
        "messages".into(),
        turns
            .into_iter()
            .map(|(role, content)| json!({"role": role, "content": content}))
            .collect(),
    );
    if thinking.is_none() {
        // Anthropic's range is 0–1 (OpenAI's 0–2), and its newer models
        // take `temperature` or `top_p`, not both: `temperature` wins.
        match (here("temperature").and_then(Value::as_f64), here("top_p")) {
            (Some(t), _) => {
                out.insert("temperature".into(), json!(t.clamp(0.0, 1.0)));
            }
            (None, Some(p)) => {
                out.insert(
                    "top_p".into(),
                    json!(p.as_f64().unwrap_or(1.0).clamp(0.0, 1.0)),
                );
            }
            (None, None) => {}
        }
    }
    let stops: Vec<&Value> = match here("stop") {
        Some(Value::Array(list)) => list.iter().collect(),
        Some(one) => vec![one],
        None => Vec::new(),
    };
    if stops.iter().any(|s| !s.is_string()) {
        return Err(invalid(
            "'stop' must be a string or an array of strings.",
            "stop",
        ));
    }
    // Anthropic refuses empty (or blank) stop sequences.
    let stops: Vec<&Value> = stops
        .into_iter()
        .filter(|s| s.as_str().is_some_and(|s| !s.trim().is_empty()))
        .collect();
    if !stops.is_empty() {
        out.insert("stop_sequences".into(), json!(stops));
    }
    if let Some(user) = here("user").and_then(Value::as_str) {
        out.insert("metadata".into(), json!({"user_id": user}));
    }
    let stream = here("stream") == Some(&Value::Bool(true));
    if stream {
        out.insert("stream".into(), json!(true));
    }
    if let Some(tools) = here("tools") {
        let tools = tools
            .as_array()
            .ok_or_else(|| invalid("'tools' must be an array.", "tools"))?;
        let tools: Vec<Value> = tools
            .iter()
            .enumerate()
            .map(|(i, t)| anthropic_tool(t, i))
            .collect::<Result<_, _>>()?;
        if !tools.is_empty() {
            out.insert("tools".into(), Value::Array(tools));
        }
    }
    let no_parallel = here("parallel_tool_calls") == Some(&Value::Bool(false));
    let choice = match here("tool_choice") {
        Some(choice) => Some(tool_choice(choice)?),
        None if no_parallel && out.contains_key("tools") => Some(json!({"type": "auto"})),
        None => None,
    };
    if choice
        .as_ref()
        .is_some_and(|c| c["type"] != "none" && c["type"] != "auto")
        && !out.contains_key("tools")
    {
        return Err(invalid(
            "'tool_choice' asks for a tool, but 'tools' offers none.",
            "tool_choice",
        ));
    }
    if let Some(mut choice) = choice {
        if no_parallel && choice["type"] != "none" {
            choice["disable_parallel_tool_use"] = json!(true);
        }
        if choice["type"] != "none" || out.contains_key("tools") {
            out.insert("tool_choice".into(), choice);
        }
    }
    let seed = ChatSeed {
        model: client_model,
        include_usage: req
            .pointer("/stream_options/include_usage")
            .and_then(Value::as_bool)
            .unwrap_or(false),
        created: unix_time(),
    };
    Ok((Bytes::from(Value::Object(out).to_string()), seed))
}

/// Text content (a string or text parts) as text blocks; empty text is
/// left out (the Messages API refuses empty text blocks).
fn text_blocks(content: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    match content {
        Value::Null => Ok(Vec::new()),
        Value::String(s) if s.is_empty() => Ok(Vec::new()),
        Value::String(s) => Ok(vec![json!({"type": "text", "text": s})]),
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| match p.get("text").and_then(Value::as_str) {
                Some("") => None,
                Some(text) => Some(Ok(json!({"type": "text", "text": text}))),
                None => Some(Err(invalid(
                    format!(
                        "messages[{i}]: only text parts can go here for an Anthropic provider."
                    ),
                    "messages",
                ))),
            })
            .collect(),
        _ => Err(invalid(
            format!("messages[{i}]: content must be a string or an array of parts."),
            "messages",
        )),
    }
}

/// A `data:MEDIA;base64,DATA` URL's media type and data.
fn data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (media, data) = rest.split_once(',')?;
    let media = media.strip_suffix(";base64")?;
    Some((media, data))
}

/// A user message's content as blocks: text, images, PDF files.
fn user_blocks(content: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    let Value::Array(parts) = content else {
        return text_blocks(content, i);
    };
    let mut blocks = Vec::new();
    for part in parts {
        let kind = part.get("type").and_then(Value::as_str).unwrap_or("");
        match kind {
            "text" => blocks.extend(text_blocks(&Value::Array(vec![part.clone()]), i)?),
            "image_url" => {
                let url = part
                    .pointer("/image_url/url")
                    .or_else(|| part.get("image_url"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| {
                        invalid(
                            format!("messages[{i}]: an image_url part needs its 'url'."),
                            "messages",
                        )
                    })?;
                let source = match data_url(url) {
                    Some((media, data)) if media.starts_with("image/") => {
                        json!({"type": "base64", "media_type": media, "data": data})
                    }
                    _ if url.starts_with("data:") => {
                        return Err(invalid(
                            format!("messages[{i}]: an image given as a data URL must be `data:image/…;base64,…`."),
                            "messages",
                        ))
                    }
                    _ => json!({"type": "url", "url": url}),
                };
                blocks.push(json!({"type": "image", "source": source}));
            }
            "file" => {
                let file = part.get("file").unwrap_or(&Value::Null);
                let Some((media, data)) = file
                    .get("file_data")
                    .and_then(Value::as_str)
                    .and_then(data_url)
                    .filter(|(media, _)| *media == "application/pdf")
                else {
                    return Err(invalid(
                        format!("messages[{i}]: a file part must carry a PDF as a base64 data URL in its 'file_data' for an Anthropic provider (file ids are OpenAI's; other files are not documents it reads)."),
                        "messages",
                    ));
                };
                let mut doc = json!({"type": "document",
                    "source": {"type": "base64", "media_type": media, "data": data}});
                if let Some(name) = file.get("filename").and_then(Value::as_str) {
                    doc["title"] = json!(name);
                }
                blocks.push(doc);
            }
            other => {
                return Err(invalid(
                    format!("messages[{i}]: '{other}' parts cannot be sent to an Anthropic provider (text, image_url and file can)."),
                    "messages",
                ))
            }
        }
    }
    Ok(blocks)
}

/// An assistant message as blocks: its text (or refusal), then each tool
/// call as a `tool_use` block. `reasoning_content` is left out: the
/// Messages API takes back only the signed thinking blocks it made.
fn assistant_blocks(m: &Value, i: usize) -> Result<Vec<Value>, ApiError> {
    let content = m.get("content").unwrap_or(&Value::Null);
    let mut blocks = match content {
        Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").or(p.get("refusal")).and_then(Value::as_str))
            .filter(|t| !t.is_empty())
            .map(|t| json!({"type": "text", "text": t}))
            .collect(),
        other => text_blocks(other, i)?,
    };
    let calls = match m.get("tool_calls") {
        None | Some(Value::Null) => &[][..],
        Some(Value::Array(calls)) => &calls[..],
        Some(_) => {
            return Err(invalid(
                format!("messages[{i}]: 'tool_calls' must be an array."),
                "messages",
            ))
        }
    };
    {
        for call in calls {
            let id = call.get("id").and_then(Value::as_str);
            let name = call.pointer("/function/name").and_then(Value::as_str);
            let (Some(id), Some(name)) = (id, name) else {
                return Err(invalid(
                    format!("messages[{i}]: a tool call needs its 'id' and 'function.name'."),
                    "messages",
                ));
            };
            // Arguments are a JSON string in chat; an object given as is
            // is taken as the input it means.
            let input = match call.pointer("/function/arguments") {
                Some(Value::String(arguments)) => tool_input(arguments),
                Some(Value::Object(o)) => Value::Object(o.clone()),
                None | Some(Value::Null) => json!({}),
                Some(_) => {
                    return Err(invalid(
                        format!(
                        "messages[{i}]: a tool call's 'function.arguments' must be a JSON string."
                    ),
                        "messages",
                    ))
                }
            };
            blocks.push(json!({"type": "tool_use", "id": id, "name": name, "input": input}));
        }
    }
    Ok(blocks)
}

/// A chat function tool as an Anthropic tool.
fn anthropic_tool(t: &Value, i: usize) -> Result<Value, ApiError> {
    if t.get("type").and_then(Value::as_str) != Some("function") {
        return Err(invalid(
            format!("tools[{i}]: only function tools can be sent to an Anthropic provider."),
            "tools",
        ));
    }
    let f = t.get("function").unwrap_or(&Value::Null);
    let name = f
        .get("name")
        .and_then(Value::as_str)
        .ok_or_else(|| invalid(format!("tools[{i}].function.name is required."), "tools"))?;
    let schema = match f.get("parameters") {
        None | Some(Value::Null) => json!({"type": "object", "properties": {}}),
        Some(p) if p.is_object() => p.clone(),
        Some(_) => {
            return Err(invalid(
                format!("tools[{i}].function.parameters must be a JSON Schema object."),
                "tools",
            ))
        }
    };
    let mut tool = json!({"name": name, "input_schema": schema});
    if let Some(d) = f.get("description").and_then(Value::as_str) {
        tool["description"] = json!(d);
    }
    Ok(tool)
}

/// Chat's `tool_choice` as Anthropic's.
fn tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(s) => match s.as_str() {
            "auto" => Ok(json!({"type": "auto"})),
            "required" => Ok(json!({"type": "any"})),
            "none" => Ok(json!({"type": "none"})),
            other => Err(invalid(
                format!("tool_choice '{other}': expected auto, required, none or a function."),
                "tool_choice",
            )),
        },
        _ => match choice.pointer("/function/name").and_then(Value::as_str) {
            Some(name) => Ok(json!({"type": "tool", "name": name})),
            None => Err(invalid(
                "tool_choice: expected auto, required, none or {\"type\": \"function\", \"function\": {\"name\": …}}.",
                "tool_choice",
            )),
        },
    }
}

/// Anthropic's `stop_reason` as chat's `finish_reason`.
fn finish_reason(stop: &str) -> &'static str {
    match stop {
        "max_tokens" | "model_context_window_exceeded" => "length",
        "tool_use" => "tool_calls",
        "refusal" => "content_filter",
        _ => "stop",
    }
}

/// A message id as a chat completion id.
fn chat_id(message_id: &str) -> String {
    format!(
        "chatcmpl-{}",
        message_id.strip_prefix("msg_").unwrap_or(message_id)
    )
}

/// Anthropic's `usage` (its input excludes cached tokens).
#[derive(Deserialize, Default, Clone, Copy, Debug)]
struct Usage {
    #[serde(default, deserialize_with = "count")]
    input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    output_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    cache_read_input_tokens: Option<u64>,
    #[serde(default, deserialize_with = "count")]
    cache_creation_input_tokens: Option<u64>,
}

/// A number the upstream sends, read leniently: a count below zero is 0, a
/// fraction is cut, anything that is no number is absent. One odd field
/// must not lose the whole event it came in.
#[derive(Deserialize)]
#[serde(untagged)]
enum Lenient {
    Whole(u64),
    Negative(i64),
    Fraction(f64),
    Other(serde::de::IgnoredAny),
}

impl Lenient {
    fn count(self) -> Option<u64> {
        match self {
            Lenient::Whole(n) => Some(n),
            Lenient::Negative(n) => Some(n.max(0) as u64),
            Lenient::Fraction(f) if f.is_finite() => Some(f.max(0.0) as u64),
            Lenient::Fraction(_) | Lenient::Other(_) => None,
        }
    }
}

fn count<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u64>, D::Error> {
    Ok(Option::<Lenient>::deserialize(d)?.and_then(Lenient::count))
}

impl Usage {
    /// Chat's `usage`: prompt tokens include the cached ones, which are
    /// also given apart.
    fn chat(&self) -> ChatUsage {
        let cached = self.cache_read_input_tokens.unwrap_or(0);
        // Upstream numbers: added without overflow, whatever they are.
        let prompt = self
            .input_tokens
            .unwrap_or(0)
            .saturating_add(cached)
            .saturating_add(self.cache_creation_input_tokens.unwrap_or(0));
        let completion = self.output_tokens.unwrap_or(0);
        ChatUsage {
            prompt_tokens: prompt,
            completion_tokens: completion,
            total_tokens: prompt.saturating_add(completion),
            prompt_tokens_details: CachedTokens {
                cached_tokens: cached,
            },
        }
    }

    /// Later counts (a `message_delta`'s) over earlier ones.
    fn update(&mut self, later: &Usage) {
        let keep = |mine: &mut Option<u64>, theirs: Option<u64>| {
            if theirs.is_some() {
                *mine = theirs;
            }
        };
        keep(&mut self.input_tokens, later.input_tokens);
        keep(&mut self.output_tokens, later.output_tokens);
        keep(
            &mut self.cache_read_input_tokens,
            later.cache_read_input_tokens,
        );
        keep(
            &mut self.cache_creation_input_tokens,
            later.cache_creation_input_tokens,
        );
    }
}

#[derive(Serialize, Debug)]
struct ChatUsage {
    prompt_tokens: u64,
    completion_tokens: u64,
    total_tokens: u64,
    prompt_tokens_details: CachedTokens,
}

#[derive(Serialize, Debug)]
struct CachedTokens {
    cached_tokens: u64,
}

/// A whole Messages answer (`message` object) as a `chat.completion`:
/// text blocks joined as the content, thinking as `reasoning_content`,
/// `tool_use` blocks as `tool_calls`. No message (an `error` object, no
/// `content`): 502 saying what came.
pub fn message_to_chat(answer: &[u8], seed: &ChatSeed) -> Result<Bytes, ApiError> {
    #[derive(Deserialize)]
    struct Message<'a> {
        #[serde(rename = "type", borrow)]
        kind: Option<Cow<'a, str>>,
        #[serde(borrow)]
        id: Option<Cow<'a, str>>,
        content: Option<Vec<Block>>,
        #[serde(borrow)]
        stop_reason: Option<Cow<'a, str>>,
        #[serde(default)]
        usage: Usage,
        error: Option<Value>,
    }
    #[derive(Deserialize)]
    struct Block {
        #[serde(rename = "type")]
        kind: String,
        text: Option<String>,
        thinking: Option<String>,
        id: Option<String>,
        name: Option<String>,
        input: Option<Value>,
    }
    let broken =
        |what: String| ApiError::Upstream(format!("the upstream answered 200 with {what}"));
    let m: Message = serde_json::from_slice(answer)
        .map_err(|_| broken("a body that is not a Messages answer".into()))?;
    if let Some(error) = m.error.filter(|e| !e.is_null()) {
        return Err(broken(format!(
            "an error: {}",
            super::responses::error_message(&error)
        )));
    }
    let blocks = match (m.content, m.kind.as_deref()) {
        (Some(blocks), None | Some("message")) => blocks,
        _ => return Err(broken("a JSON object that is not a message".into())),
    };
    let (mut text, mut reasoning, mut calls) = (String::new(), String::new(), Vec::new());
    for b in blocks {
        match b.kind.as_str() {
            "text" => text.push_str(b.text.as_deref().unwrap_or("")),
            "thinking" => reasoning.push_str(b.thinking.as_deref().unwrap_or("")),
            "tool_use" => calls.push(json!({"id": b.id.unwrap_or_default(), "type": "function",
                "function": {"name": b.name.unwrap_or_default(),
                    "arguments": b.input.unwrap_or_else(|| json!({})).to_string()}})),
            // Redacted thinking and server tools' blocks have no chat form.
            _ => {}
        }
    }
    let mut message = json!({"role": "assistant",
        "content": if text.is_empty() && !calls.is_empty() { Value::Null } else { json!(text) }});
    if !calls.is_empty() {
        message["tool_calls"] = Value::Array(calls);
    }
    if !reasoning.is_empty() {
        message["reasoning_content"] = json!(reasoning);
    }
    let doc = json!({
        "id": chat_id(m.id.as_deref().unwrap_or("")),
        "object": "chat.completion",
        "created": seed.created,
        "model": seed.model,
        "choices": [{"index": 0, "message": message,
            "finish_reason": finish_reason(m.stop_reason.as_deref().unwrap_or("end_turn"))}],
        "usage": m.usage.chat(),
    });
    Ok(Bytes::from(doc.to_string()))
}

/// One streamed Messages event, read once with its strings borrowed where
/// they hold no escapes.
#[derive(Deserialize)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    /// A block's index; absent (or not a whole number: then the blocks it
    /// names are told apart by arrival alone).
    #[serde(default, deserialize_with = "count")]
    index: Option<u64>,
    #[serde(borrow)]
    message: Option<StartMessage<'a>>,
    #[serde(borrow)]
    content_block: Option<StartBlock<'a>>,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    usage: Option<Usage>,
    #[serde(borrow)]
    error: Option<ErrorField<'a>>,
}

/// An `error` event's `error`: Anthropic's object, or whatever else an
/// upstream put there.
#[derive(Deserialize)]
#[serde(untagged)]
enum ErrorField<'a> {
    #[serde(borrow)]
    Object(ErrorBody<'a>),
    #[serde(borrow)]
    Text(Cow<'a, str>),
    Other(serde::de::IgnoredAny),
}

#[derive(Deserialize)]
struct StartMessage<'a> {
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(default)]
    usage: Usage,
}

#[derive(Deserialize)]
struct StartBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    id: Option<Cow<'a, str>>,
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct Delta<'a> {
    #[serde(borrow)]
    text: Option<Cow<'a, str>>,
    #[serde(borrow)]
    partial_json: Option<Cow<'a, str>>,
    #[serde(borrow)]
    thinking: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stop_reason: Option<Cow<'a, str>>,
}

#[derive(Deserialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type", borrow)]
    kind: Option<Cow<'a, str>>,
    #[serde(borrow)]
    message: Option<Cow<'a, str>>,
}

/// One chat chunk, written without a `Value`.
#[derive(Serialize)]
struct Chunk<'a> {
    id: &'a str,
    object: &'static str,
    created: u64,
    model: &'a str,
    choices: Vec<Choice<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    usage: Option<ChatUsage>,
}

#[derive(Serialize)]
struct Choice<'a> {
    index: u32,
    delta: ChunkDelta<'a>,
    finish_reason: Option<&'static str>,
}

#[derive(Serialize, Default)]
struct ChunkDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    reasoning_content: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tool_calls: Option<[ToolCallDelta<'a>; 1]>,
}

#[derive(Serialize)]
struct ToolCallDelta<'a> {
    index: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none", rename = "type")]
    kind: Option<&'static str>,
    function: FunctionDelta<'a>,
}

#[derive(Serialize)]
struct FunctionDelta<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    name: Option<&'a str>,
    arguments: &'a str,
}

/// A native Anthropic provider's event stream as chat chunks, event by
/// event; for a Responses client, those chunks go on through `then` (the
/// Responses translation). Each content block of the message is one
/// stream of deltas: text and thinking deltas become `content` and
/// `reasoning_content`, a `tool_use` block becomes one tool call (its
/// index counted over the message's tool blocks) whose `input_json_delta`
/// pieces are its `arguments`.
pub struct FromMessages {
    seed: ChatSeed,
    id: String,
    /// The chat tool-call index of each content block that is a tool call,
    /// by its block index (which the upstream sends, and may be anything:
    /// a map, not a table sized by it; a later block of the same index
    /// takes it over).
    tool_blocks: std::collections::HashMap<Option<u64>, u32>,
    tools: u32,
    usage: Usage,
    finish: Option<&'static str>,
    /// `message_stop` came.
    stopped: bool,
    /// An `error` event came: the stream is over.
    errored: bool,
    then: Option<Box<dyn EventTranslator>>,
}

impl FromMessages {
    /// A translator for one answer to `seed`'s request; `then` turns the
    /// chat chunks further (into Responses events), `None` hands them to
    /// a chat client.
    pub fn new(seed: ChatSeed, then: Option<Box<dyn EventTranslator>>) -> FromMessages {
        FromMessages {
            seed,
            id: String::new(),
            tool_blocks: std::collections::HashMap::new(),
            tools: 0,
            usage: Usage::default(),
            finish: None,
            stopped: false,
            errored: false,
            then,
        }
    }

    /// The seed and the further translation, for a whole answer (which is
    /// turned into a chat completion by [`message_to_chat`] first).
    pub fn into_parts(self) -> (ChatSeed, Option<Box<dyn EventTranslator>>) {
        (self.seed, self.then)
    }

    /// A chat chunk of this answer with one choice's `delta`.
    fn chat_chunk(&self, delta: ChunkDelta<'_>, finish: Option<&'static str>) -> Bytes {
        let choice = Choice {
            index: 0,
            delta,
            finish_reason: finish,
        };
        self.encode(vec![choice], None)
    }

    /// A chat chunk of this answer, written out.
    fn encode(&self, choices: Vec<Choice<'_>>, usage: Option<ChatUsage>) -> Bytes {
        let chunk = Chunk {
            id: &self.id,
            object: "chat.completion.chunk",
            created: self.seed.created,
            model: &self.seed.model,
            choices,
            usage,
        };
        Bytes::from(serde_json::to_vec(&chunk).unwrap_or_default())
    }

    /// The chat chunk one Messages event makes, if any; and the error
    /// message of an `error` event.
    fn convert(&mut self, data: &[u8]) -> (Option<Bytes>, Option<String>) {
        let Ok(ev) = serde_json::from_slice::<Event>(data) else {
            // An event that is not even JSON: the upstream is broken, and
            // what it meant is lost; the answer ends on it, said so.
            if serde_json::from_slice::<serde::de::IgnoredAny>(data).is_err() {
                self.errored = true;
                return (None, Some("an event that is not JSON".to_owned()));
            }
            return (None, None);
        };
        match &*ev.kind {
            // A second `message_start` would restart the answer: only
            // its counts are kept.
            "message_start" if !self.id.is_empty() => {
                if let Some(m) = ev.message {
                    self.usage.update(&m.usage);
                }
                (None, None)
            }
            "message_start" => {
                if let Some(m) = ev.message {
                    self.id = chat_id(m.id.as_deref().unwrap_or(""));
                    self.usage.update(&m.usage);
                }
                let delta = ChunkDelta {
                    role: Some("assistant"),
                    content: Some(""),
                    ..ChunkDelta::default()
                };
                (Some(self.chat_chunk(delta, None)), None)
            }
            "content_block_start" => {
                let (index, Some(block)) = (ev.index, ev.content_block) else {
                    return (None, None);
                };
                if block.kind != "tool_use" {
                    return (None, None);
                }
                let call = self.tools;
                self.tools += 1;
                self.tool_blocks.insert(index, call);
                let delta = ChunkDelta {
                    tool_calls: Some([ToolCallDelta {
                        index: call,
                        id: Some(block.id.as_deref().unwrap_or("")),
                        kind: Some("function"),
                        function: FunctionDelta {
                            name: Some(block.name.as_deref().unwrap_or("")),
                            arguments: "",
                        },
                    }]),
                    ..ChunkDelta::default()
                };
                (Some(self.chat_chunk(delta, None)), None)
            }
            "content_block_delta" => {
                let Some(d) = ev.delta else {
                    return (None, None);
                };
                let delta = if let Some(text) = d.text.as_deref() {
                    ChunkDelta {
                        content: Some(text),
                        ..ChunkDelta::default()
                    }
                } else if let Some(thinking) = d.thinking.as_deref() {
                    ChunkDelta {
                        reasoning_content: Some(thinking),
                        ..ChunkDelta::default()
                    }
                } else if let Some(json) = d.partial_json.as_deref() {
                    let Some(call) = self.tool_blocks.get(&ev.index).copied() else {
                        return (None, None);
                    };
                    if json.is_empty() {
                        return (None, None);
                    }
                    ChunkDelta {
                        tool_calls: Some([ToolCallDelta {
                            index: call,
                            id: None,
                            kind: None,
                            function: FunctionDelta {
                                name: None,
                                arguments: json,
                            },
                        }]),
                        ..ChunkDelta::default()
                    }
                } else {
                    // A signature, a citation: nothing chat can carry.
                    return (None, None);
                };
                (Some(self.chat_chunk(delta, None)), None)
            }
            "message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.update(u);
                }
                if self.finish.is_some() {
                    // One finish chunk per answer; a later delta only
                    // updates the counts.
                    return (None, None);
                }
                let stop = ev
                    .delta
                    .and_then(|d| d.stop_reason.map(|s| finish_reason(&s)));
                let finish = stop.unwrap_or("stop");
                self.finish = Some(finish);
                (
                    Some(self.chat_chunk(ChunkDelta::default(), Some(finish))),
                    None,
                )
            }
            "message_stop" => {
                self.stopped = true;
                (None, None)
            }
            "error" => {
                self.errored = true;
                let (kind, message) = match &ev.error {
                    Some(ErrorField::Object(e)) => (e.kind.as_deref(), e.message.as_deref()),
                    Some(ErrorField::Text(text)) => (None, Some(&**text)),
                    Some(ErrorField::Other(_)) | None => (None, None),
                };
                let kind = kind.unwrap_or("api_error");
                let message = message.unwrap_or("the upstream's stream failed");
                (None, Some(format!("{kind}: {message}")))
            }
            // `ping`, and events added later.
            _ => (None, None),
        }
    }

    /// The closing usage chunk (`choices: []`), when the client asked for
    /// one or a further translation counts it.
    fn usage_chunk(&self) -> Bytes {
        self.encode(Vec::new(), Some(self.usage.chat()))
    }
}

/// A chat client's error event data for `message`.
fn chat_error(message: &str) -> Bytes {
    crate::api::error::error_body(message, "upstream_error", None, None)
}

impl EventTranslator for FromMessages {
    fn whole(&self, answer: &[u8]) -> Result<Bytes, ApiError> {
        let chat = message_to_chat(answer, &self.seed)?;
        match &self.then {
            Some(then) => then.whole(&chat),
            None => Ok(chat),
        }
    }

    fn chunk(&mut self, event: &[u8]) -> Vec<NamedEvent> {
        let (chunk, error) = self.convert(event);
        if let Some(message) = error {
            let message = format!("the upstream's stream carried an error: {message}");
            return match &mut self.then {
                Some(then) => then.abort(&message),
                None => vec![("", chat_error(&message))],
            };
        }
        match (chunk, &mut self.then) {
            (Some(chunk), Some(then)) => then.chunk(&chunk),
            (Some(chunk), None) => vec![("", chunk)],
            (None, _) => Vec::new(),
        }
    }

    fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError> {
        if !self.stopped {
            return Err(ApiError::Upstream(
                "the upstream's Messages stream ended before message_stop".into(),
            ));
        }
        // A `message_stop` with no `message_delta` before it: the answer is
        // whole, its stop reason unsaid.
        let mut closing = Vec::new();
        if self.finish.is_none() {
            self.finish = Some("stop");
            closing.push(self.chat_chunk(ChunkDelta::default(), Some("stop")));
        }
        closing.push(self.usage_chunk());
        let usage_asked = self.seed.include_usage;
        match &mut self.then {
            Some(then) => {
                let mut events: Vec<NamedEvent> =
                    closing.iter().flat_map(|c| then.chunk(c)).collect();
                events.extend(then.finish()?);
                Ok(events)
            }
            None => {
                let usage = closing.pop().filter(|_| usage_asked);
                Ok(closing.into_iter().chain(usage).map(|c| ("", c)).collect())
            }
        }
    }

    fn abort(&mut self, message: &str) -> Vec<NamedEvent> {
        match &mut self.then {
            Some(then) => then.abort(message),
            None => vec![("", chat_error(message))],
        }
    }

    fn failed(&self) -> bool {
        self.errored || self.then.as_ref().is_some_and(|t| t.failed())
    }

    fn ends_with_done(&self) -> bool {
        self.then.as_ref().is_none_or(|t| t.ends_with_done())
    }

    fn ended(&self) -> bool {
        self.errored || self.then.as_ref().is_some_and(|t| t.ended())
    }

    fn usage(&self) -> Option<(u64, u64)> {
        let u = self.usage.chat();
        Some((u.prompt_tokens, u.completion_tokens))
    }

    fn complete(&self) -> bool {
        self.stopped
    }
}

/// The fuzz target's body for this direction (`fuzz/fuzz_targets/anthropic.rs`):
/// a chat request, a whole message and a Messages event stream (one event
/// per line) from arbitrary bytes. Never panics; every chunk made is JSON.
pub fn fuzz_anthropic_upstream(data: &[u8]) {
    let _ = chat_to_messages(data, "upstream");
    let seed = ChatSeed {
        model: "alias".into(),
        include_usage: true,
        created: 1,
    };
    let _ = message_to_chat(data, &seed);
    let mut t = FromMessages::new(seed, None);
    let mut out: Vec<NamedEvent> = data
        .split(|b| *b == b'\n')
        .flat_map(|line| EventTranslator::chunk(&mut t, line))
        .collect();
    match t.finish() {
        Ok(closing) => out.extend(closing),
        Err(_) => out.extend(t.abort("cut")),
    }
    for (name, chunk) in &out {
        assert_eq!(*name, "", "chat chunks have no event name");
        let _: Value = serde_json::from_slice(chunk).expect("chunks are JSON");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(body: Value) -> Value {
        let (bytes, _) = chat_to_messages(body.to_string().as_bytes(), "claude-up").unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[test]
    fn system_is_hoisted_roles_merged_and_tool_results_go_in_a_user_turn() {
        let r = request(json!({"model": "c", "messages": [
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "Weather in Oslo and Bergen?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function", "function": {"name": "get", "arguments": "{\"city\":\"Oslo\"}"}},
                {"id": "call_2", "type": "function", "function": {"name": "get", "arguments": ""}}]},
            {"role": "tool", "tool_call_id": "call_1", "content": "rain"},
            {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "sun"}]},
            {"role": "user", "content": "And tomorrow?"},
            {"role": "developer", "content": [{"type": "text", "text": "Use metric."}]}]}));
        assert_eq!(r["model"], "claude-up");
        assert_eq!(r["max_tokens"], DEFAULT_MAX_TOKENS);
        assert_eq!(
            r["system"],
            json!([{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Use metric."}])
        );
        let m = r["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{r}");
        assert_eq!(m[1]["role"], "assistant");
        assert_eq!(m[1]["content"][0]["input"], json!({"city": "Oslo"}));
        assert_eq!(
            m[1]["content"][1]["input"],
            json!({}),
            "empty arguments are {{}}"
        );
        assert_eq!(m[2]["role"], "user");
        assert_eq!(m[2]["content"][0]["type"], "tool_result");
        assert_eq!(m[2]["content"][0]["tool_use_id"], "call_1");
        assert_eq!(m[2]["content"][1]["content"], "sun");
        assert_eq!(
            m[2]["content"][2],
            json!({"type": "text", "text": "And tomorrow?"})
        );
    }

    #[test]
    fn settings_images_tools_and_thinking_are_mapped() {
        let r = request(json!({"model": "c", "max_tokens": 1000, "temperature": 0.5,
            "stop": "END", "user": "u1", "stream": true, "parallel_tool_calls": false,
            "seed": 7, "frequency_penalty": 1,
            "tools": [{"type": "function", "function": {"name": "get", "description": "d",
                "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}],
            "tool_choice": "required",
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "What is this?"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBOR"}},
                {"type": "image_url", "image_url": {"url": "https://x/cat.jpg"}}]}]}));
        assert_eq!(r["max_tokens"], 1000);
        assert_eq!(r["temperature"], 0.5);
        assert_eq!(r["stop_sequences"], json!(["END"]));
        assert_eq!(r["metadata"], json!({"user_id": "u1"}));
        assert_eq!(r["stream"], true);
        assert!(r.get("seed").is_none() && r.get("frequency_penalty").is_none());
        assert_eq!(
            r["tools"][0]["input_schema"]["properties"]["city"]["type"],
            "string"
        );
        assert_eq!(
            r["tool_choice"],
            json!({"type": "any", "disable_parallel_tool_use": true})
        );
        let c = &r["messages"][0]["content"];
        assert_eq!(
            c[1]["source"],
            json!({"type": "base64", "media_type": "image/png", "data": "iVBOR"})
        );
        assert_eq!(
            c[2]["source"],
            json!({"type": "url", "url": "https://x/cat.jpg"})
        );
        let r = request(json!({"model": "c", "max_tokens": 1000, "temperature": 0.5,
            "reasoning_effort": "medium", "messages": [{"role": "user", "content": "Hi"}]}));
        assert_eq!(
            r["thinking"],
            json!({"type": "enabled", "budget_tokens": 4096})
        );
        assert_eq!(r["max_tokens"], 5096, "raised above the budget");
        assert!(r.get("temperature").is_none());
    }

    #[test]
    fn thinking_and_sampling_follow_what_the_messages_api_takes() {
        let ask = json!({"role": "user", "content": "Hi"});
        let call = json!({"role": "assistant", "content": null, "tool_calls": [
            {"id": "c1", "type": "function", "function": {"name": "f", "arguments": "{}"}}]});
        let result = json!({"role": "tool", "tool_call_id": "c1", "content": "ok"});
        let tools = json!([{"type": "function", "function": {"name": "f"}}]);
        // A replayed tool call, or a forced tool: no thinking.
        let r = request(
            json!({"model": "c", "reasoning_effort": "high", "tools": tools,
            "messages": [ask, call, result]}),
        );
        assert!(r.get("thinking").is_none(), "{r}");
        let r = request(
            json!({"model": "c", "reasoning_effort": "high", "tools": tools,
            "tool_choice": "required", "messages": [ask]}),
        );
        assert!(r.get("thinking").is_none(), "{r}");
        let r = request(
            json!({"model": "c", "reasoning_effort": "high", "tools": tools, "messages": [ask]}),
        );
        assert_eq!(r["thinking"]["budget_tokens"], 16384);
        // temperature clamped to 0–1; with top_p, temperature alone.
        let r = request(json!({"model": "c", "temperature": 1.6, "top_p": 0.9, "messages": [ask]}));
        assert_eq!(r["temperature"], 1.0);
        assert!(r.get("top_p").is_none());
        let r = request(json!({"model": "c", "top_p": 0.9, "messages": [ask]}));
        assert_eq!(r["top_p"], 0.9);
    }

    #[test]
    fn untrusted_indices_and_counts_cost_nothing() {
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: true,
            created: 1,
        };
        let mut t = FromMessages::new(seed, None);
        t.chunk(br#"{"type":"message_start","message":{"id":"msg_x","usage":{"input_tokens":18446744073709551615,"cache_read_input_tokens":5}}}"#);
        for index in ["100000000000", "18446744073709551615"] {
            let start = format!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":"t","name":"f"}}}}"#
            );
            assert_eq!(t.chunk(start.as_bytes()).len(), 1);
            let delta = format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"input_json_delta","partial_json":"{{}}"}}}}"#
            );
            assert_eq!(t.chunk(delta.as_bytes()).len(), 1);
        }
        assert_eq!(t.usage().unwrap().0, u64::MAX);
        // Odd indices still make their call and fill it; odd counts and a
        // string error lose nothing else of their event.
        for index in ["-1", "1.5", "\"1\""] {
            let start = format!(
                r#"{{"type":"content_block_start","index":{index},"content_block":{{"type":"tool_use","id":"t","name":"f"}}}}"#
            );
            let made = t.chunk(start.as_bytes());
            assert_eq!(made.len(), 1, "{index}");
            let delta = format!(
                r#"{{"type":"content_block_delta","index":{index},"delta":{{"type":"input_json_delta","partial_json":"{{}}"}}}}"#
            );
            assert_eq!(t.chunk(delta.as_bytes()).len(), 1, "{index}");
        }
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: true,
            created: 1,
        };
        let mut t = FromMessages::new(seed, None);
        let start = t.chunk(br#"{"type":"message_start","message":{"id":"msg_y","usage":{"input_tokens":-5,"output_tokens":2.5}}}"#);
        assert_eq!(start.len(), 1);
        assert_eq!(t.usage(), Some((0, 2)));
        // A second message_start and a second message_delta change
        // nothing the client sees.
        assert!(t
            .chunk(br#"{"type":"message_start","message":{"id":"msg_z"}}"#)
            .is_empty());
        assert_eq!(
            t.chunk(br#"{"type":"message_delta","delta":{"stop_reason":"end_turn"}}"#)
                .len(),
            1
        );
        assert!(t.chunk(br#"{"type":"message_delta","delta":{"stop_reason":"max_tokens"},"usage":{"output_tokens":9}}"#).is_empty());
        assert_eq!(t.usage(), Some((0, 9)));
        let out = t.chunk(br#"{"type":"error","error":"just a string"}"#);
        assert!(String::from_utf8_lossy(&out[0].1).contains("just a string"));
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: false,
            created: 1,
        };
        let mut t = FromMessages::new(seed, None);
        let out = t.chunk(b"{not json");
        assert!(t.failed() && String::from_utf8_lossy(&out[0].1).contains("not JSON"));
    }

    #[test]
    fn what_the_messages_api_cannot_carry_is_refused_by_name() {
        for (body, param) in [
            (json!({"n": 2}), "n"),
            (json!({"logprobs": true}), "logprobs"),
            (
                json!({"response_format": {"type": "json_object"}}),
                "response_format",
            ),
            (json!({"functions": []}), "functions"),
            (
                json!({"tools": [{"type": "custom", "custom": {}}]}),
                "tools",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "input_audio"}]}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "function", "content": "x"}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": ""}]}),
                "messages",
            ),
            (json!({"n": "2"}), "n"),
            (json!({"temperature": "hot"}), "temperature"),
            (json!({"top_p": "x"}), "top_p"),
            (json!({"stop": [1, 2]}), "stop"),
            (json!({"tool_choice": "required"}), "tool_choice"),
            (
                json!({"tools": [{"type": "function", "function": {"name": "f", "parameters": "x"}}]}),
                "tools",
            ),
            (
                json!({"messages": [{"role": "assistant", "tool_calls": "x"}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "image_url",
                    "image_url": {"url": "data:image/png,abc"}}]}]}),
                "messages",
            ),
            (
                json!({"messages": [{"role": "user", "content": [{"type": "file",
                    "file": {"file_data": "data:text/csv;base64,YQ=="}}]}]}),
                "messages",
            ),
        ] {
            let mut req = json!({"model": "c", "messages": [{"role": "user", "content": "Hi"}]});
            for (k, v) in body.as_object().unwrap() {
                req[k] = v.clone();
            }
            let e = chat_to_messages(req.to_string().as_bytes(), "up").unwrap_err();
            let body: Value = serde_json::from_slice(&e.body()).unwrap();
            assert_eq!(body["error"]["param"], param, "{req}: {e}");
        }
    }

    #[test]
    fn a_whole_message_becomes_a_chat_completion() {
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: false,
            created: 1,
        };
        let msg = json!({"id": "msg_1", "type": "message", "role": "assistant", "model": "claude-up",
            "content": [{"type": "thinking", "thinking": "Hmm.", "signature": "s"},
                {"type": "text", "text": "Let me look."},
                {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {"city": "Oslo"}}],
            "stop_reason": "tool_use",
            "usage": {"input_tokens": 10, "output_tokens": 5, "cache_read_input_tokens": 90}});
        let chat: Value =
            serde_json::from_slice(&message_to_chat(msg.to_string().as_bytes(), &seed).unwrap())
                .unwrap();
        assert_eq!(chat["id"], "chatcmpl-1");
        assert_eq!(chat["model"], "claude");
        let m = &chat["choices"][0]["message"];
        assert_eq!(m["content"], "Let me look.");
        assert_eq!(m["reasoning_content"], "Hmm.");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            "{\"city\":\"Oslo\"}"
        );
        assert_eq!(chat["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(chat["usage"]["prompt_tokens"], 100);
        assert_eq!(chat["usage"]["prompt_tokens_details"]["cached_tokens"], 90);
        let err =
            json!({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}});
        assert!(message_to_chat(err.to_string().as_bytes(), &seed).is_err());
        assert!(message_to_chat(b"{}", &seed).is_err());
    }

    fn events() -> Vec<Value> {
        vec![
            json!({"type": "message_start", "message": {"id": "msg_2", "type": "message", "role": "assistant",
                "content": [], "model": "claude-up", "usage": {"input_tokens": 12, "output_tokens": 1}}}),
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
            json!({"type": "ping"}),
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Checking \"Oslo\"."}}),
            json!({"type": "content_block_stop", "index": 0}),
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use", "id": "toolu_1", "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": ""}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "{\"city\":"}}),
            json!({"type": "content_block_delta", "index": 1, "delta": {"type": "input_json_delta", "partial_json": "\"Oslo\"}"}}),
            json!({"type": "content_block_stop", "index": 1}),
            json!({"type": "content_block_start", "index": 2, "content_block": {"type": "tool_use", "id": "toolu_2", "name": "get", "input": {}}}),
            json!({"type": "content_block_delta", "index": 2, "delta": {"type": "input_json_delta", "partial_json": "{}"}}),
            json!({"type": "content_block_stop", "index": 2}),
            json!({"type": "message_delta", "delta": {"stop_reason": "tool_use"}, "usage": {"output_tokens": 30}}),
            json!({"type": "message_stop"}),
        ]
    }

    #[test]
    fn a_message_stream_becomes_chat_chunks() {
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: true,
            created: 1,
        };
        let mut t = FromMessages::new(seed, None);
        let mut chunks: Vec<Value> = Vec::new();
        for e in events() {
            for (name, data) in t.chunk(e.to_string().as_bytes()) {
                assert_eq!(name, "");
                chunks.push(serde_json::from_slice(&data).unwrap());
            }
        }
        for (_, data) in t.finish().unwrap() {
            chunks.push(serde_json::from_slice(&data).unwrap());
        }
        assert!(chunks
            .iter()
            .all(|c| c["model"] == "claude" && c["id"] == "chatcmpl-2"));
        assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
        assert_eq!(
            chunks[1]["choices"][0]["delta"]["content"],
            "Checking \"Oslo\"."
        );
        let calls: Vec<&Value> = chunks
            .iter()
            .filter_map(|c| c["choices"][0]["delta"].get("tool_calls"))
            .collect();
        assert_eq!(calls[0][0]["index"], 0);
        assert_eq!(calls[0][0]["id"], "toolu_1");
        assert_eq!(calls[1][0]["function"]["arguments"], "{\"city\":");
        assert_eq!(
            calls[3][0]["index"], 1,
            "a second tool block is the second call"
        );
        let finish = &chunks[chunks.len() - 2];
        assert_eq!(finish["choices"][0]["finish_reason"], "tool_calls");
        let usage = &chunks[chunks.len() - 1];
        assert_eq!(usage["choices"], json!([]));
        assert_eq!(usage["usage"]["prompt_tokens"], 12);
        assert_eq!(usage["usage"]["completion_tokens"], 30);
        assert_eq!(t.usage(), Some((12, 30)));
        assert!(t.ends_with_done() && !t.failed());
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_input_never_panics(data in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..512)) {
            fuzz_anthropic_upstream(&data);
        }

        #[test]
        fn shuffled_events_never_panic(picks in proptest::collection::vec(0usize..15, 0..24)) {
            let all: Vec<String> = events().iter().map(Value::to_string).collect();
            let lines: Vec<&str> = picks.iter().map(|i| all[*i].as_str()).collect();
            fuzz_anthropic_upstream(lines.join("\n").as_bytes());
        }
    }

    #[test]
    fn a_cut_or_failed_stream_is_no_answer() {
        let seed = ChatSeed {
            model: "claude".into(),
            include_usage: false,
            created: 1,
        };
        let mut t = FromMessages::new(seed.clone(), None);
        for e in &events()[..8] {
            t.chunk(e.to_string().as_bytes());
        }
        assert!(t.finish().is_err(), "cut before message_stop");
        let mut t = FromMessages::new(seed, None);
        t.chunk(events()[0].to_string().as_bytes());
        let out = t.chunk(
            br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#,
        );
        let body: Value = serde_json::from_slice(&out[0].1).unwrap();
        assert!(body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("Overloaded"));
        assert!(t.failed() && t.ended());
    }
}
