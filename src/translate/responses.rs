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

use super::chat::content_text;
use super::tool_calls::ToolCallRule;
use super::{EventTranslator, NamedEvent};
use crate::api::request_id::fresh_id;
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
    /// Functions of `namespace` tools, flattened for chat: the chat name
    /// (`namespace__name`), the namespace and the name.
    namespaced: Vec<(String, String, String)>,
    /// Hosted tools left out of the chat request (they run on OpenAI's
    /// servers), by type: the answer names them in a header.
    pub dropped_tools: Vec<String>,
    /// The whole input answered, as items (a previous response's input and
    /// output first, references resolved): kept with the answer unless
    /// the request said `store: false`.
    input: Vec<Value>,
    /// Keep the answer in the response store (`store` not false, the store
    /// enabled).
    keep: bool,
}

impl Seed {
    /// Keeps a finished `response` with the input it answered, unless the
    /// request said `store: false`. A failed response is not kept.
    fn keep(&self, response: &Value) {
        if self.keep && response["status"] != "failed" {
            super::stored().keep(response.clone(), self.input.clone());
        }
    }

    /// A chat function name as the Responses call it stands for: its
    /// name, and its namespace when it was flattened from one.
    fn call_name<'a>(&'a self, chat_name: &'a str) -> (&'a str, Option<&'a str>) {
        match self
            .namespaced
            .iter()
            .find(|(flat, _, _)| flat == chat_name)
        {
            Some((_, ns, name)) => (name, Some(ns)),
            None => (chat_name, None),
        }
    }
}

/// What the translation does with hosted tools (`hostedTools`).
pub use crate::config::HostedTools;

/// Request members that need state kept by OpenAI's servers, which
/// chat2api does not keep (`background: true` is checked where it is read;
/// `previous_response_id` and `item_reference` are served from the
/// response store).
const STATEFUL: &[(&str, &str)] = &[
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

/// The stored responses and output items a Responses request `body` names
/// (`previous_response_id`; `item_reference` inputs, or items that are an
/// `id` alone): what the response store brings from Redis before the
/// request is translated (`store::ResponseStore::sync`). Empty for a body
/// that is not shaped so; its translation then answers it.
pub fn references(body: &[u8]) -> (Vec<String>, Vec<String>) {
    use serde::de::IgnoredAny;
    #[derive(serde::Deserialize)]
    struct Request {
        previous_response_id: Option<String>,
        input: Option<Input>,
    }
    #[derive(serde::Deserialize)]
    #[serde(untagged)]
    enum Input {
        Items(Vec<Item>),
        Other(IgnoredAny),
    }
    #[derive(serde::Deserialize)]
    struct Item {
        #[serde(rename = "type")]
        kind: Option<String>,
        id: Option<String>,
        role: Option<IgnoredAny>,
    }
    let Ok(request) = serde_json::from_slice::<Request>(body) else {
        return (Vec::new(), Vec::new());
    };
    let items = match request.input {
        Some(Input::Items(items)) => items
            .into_iter()
            .filter(|i| match i.kind.as_deref() {
                Some(kind) => kind == "item_reference",
                None => i.role.is_none(),
            })
            .filter_map(|i| i.id)
            .collect(),
        _ => Vec::new(),
    };
    (request.previous_response_id.into_iter().collect(), items)
}

/// The chat completions request for a Responses API `body`, for
/// `upstream_model`; and what the answer must echo. The responses and
/// items it names are read from the response store ([`super::StoredResponses`]): 400 for
/// one it does not hold, for a stored conversation or prompt, and for
/// tools a chat provider cannot run.
pub fn request_to_chat(
    body: &[u8],
    client_model: &str,
    upstream_model: &str,
) -> Result<(Bytes, Seed), ApiError> {
    request_to_chat_with(body, client_model, upstream_model, HostedTools::Drop)
}

/// [`request_to_chat`], with hosted tools dropped or refused as `hosted`
/// says.
pub fn request_to_chat_with(
    body: &[u8],
    client_model: &str,
    upstream_model: &str,
    hosted: HostedTools,
) -> Result<(Bytes, Seed), ApiError> {
    let req: Map<String, Value> = serde_json::from_slice(body)
        .map_err(|e| ApiError::invalid(format!("Invalid request body: {e}"), None))?;
    let here = |key: &str| req.get(key).filter(|v| !v.is_null());
    for &(key, what) in STATEFUL {
        if here(key).is_some() {
            return Err(invalid(
                format!(
                    "'{key}' needs {what} kept by OpenAI's servers; this model's provider speaks only chat completions (responses: \"chat\"), and chat2api keeps only its own responses (use 'previous_response_id', or send the whole conversation in 'input')."
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
            "'background': true runs a response on the server to fetch later; this model's provider speaks only chat completions (responses: \"chat\"), and chat2api answers while the request is open.",
            "background",
        ));
    }
    let mut messages = Vec::new();
    if let Some(instructions) = here("instructions") {
        let text = instructions
            .as_str()
            .ok_or_else(|| invalid("'instructions' must be a string.", "instructions"))?;
        messages.push(json!({"role": "system", "content": text}));
    }
    let mut namespaced = Vec::new();
    let mut dropped_tools = Vec::new();
    let tools = match here("tools") {
        Some(tools) => Some(chat_tools(
            tools,
            hosted,
            &mut namespaced,
            &mut dropped_tools,
        )?),
        None => None,
    };
    let store = super::stored();
    let (kept_secs, kept_where) = store.kept_for();
    // The whole input, as items: a previous response's input and output,
    // then this request's items with references resolved.
    let mut input = Vec::new();
    if let Some(previous) = here("previous_response_id") {
        let id = previous.as_str().ok_or_else(|| {
            invalid(
                "'previous_response_id' must be a string.",
                "previous_response_id",
            )
        })?;
        let (prior_input, prior_output) = store.response(id).ok_or_else(|| {
            invalid(
                format!(
                    "Previous response '{id}' is not stored here: chat2api keeps the responses it makes for {} s (responsesStore), {}, and not those of 'store': false requests; it may have expired, been deleted, come from another gateway or from before a restart.",
                    kept_secs,
                    kept_where
                ),
                "previous_response_id",
            )
        })?;
        input.extend(prior_input);
        input.extend(prior_output);
    }
    match here("input") {
        Some(Value::String(text)) => input.push(json!({"type": "message", "id": fresh_id("msg_"),
            "role": "user", "content": [{"type": "input_text", "text": text}]})),
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                // `{"id": …}` alone is a reference too (its `type` may be
                // left out).
                let reference = match item.get("type").and_then(Value::as_str) {
                    Some(kind) => kind == "item_reference",
                    None => item.get("role").is_none() && item.get("id").is_some(),
                };
                if !reference {
                    input.push(item.clone());
                    continue;
                }
                let id = item.get("id").and_then(Value::as_str).ok_or_else(|| {
                    invalid(
                        format!("input[{i}] is an item reference without its 'id' string."),
                        "input",
                    )
                })?;
                let found = store.item(id).ok_or_else(|| {
                    invalid(
                        format!(
                            "input[{i}] refers to item '{id}', which is not stored here: chat2api keeps the items of the responses it makes for {} s (responsesStore), {}; it may have expired, been deleted or come from another gateway.",
                            kept_secs,
                            kept_where
                        ),
                        "input",
                    )
                })?;
                input.push(found);
            }
        }
        _ => {
            return Err(invalid(
                "'input' must be a string or an array of input items.",
                "input",
            ))
        }
    }
    if input.is_empty() {
        return Err(invalid("'input' must hold at least one item.", "input"));
    }
    input_items(&input, &mut messages)?;
    let mut chat = Map::new();
    chat.insert("model".into(), json!(upstream_model));
    chat.insert("messages".into(), Value::Array(messages));
    for key in SAME_NAME {
        if let Some(v) = here(key) {
            chat.insert((*key).into(), v.clone());
        }
    }
    if let Some(n) = here("max_output_tokens") {
        if !n.is_u64() {
            return Err(invalid(
                "'max_output_tokens' must be a positive integer.",
                "max_output_tokens",
            ));
        }
        chat.insert("max_tokens".into(), n.clone());
    }
    if let Some(effort) = here("reasoning")
        .and_then(|r| r.get("effort"))
        .filter(|e| !e.is_null())
    {
        chat.insert("reasoning_effort".into(), effort.clone());
    }
    if let Some(tools) = tools.filter(|t| t.as_array().is_some_and(|t| !t.is_empty())) {
        chat.insert("tools".into(), tools);
    }
    if let Some(choice) = here("tool_choice") {
        let hosted_choice = choice
            .get("type")
            .and_then(Value::as_str)
            .is_some_and(|t| !matches!(t, "function" | "allowed_tools"));
        match chat_tool_choice(choice) {
            // A tool choice naming a hosted tool that was left out goes
            // with it.
            Err(_) if hosted_choice && hosted == HostedTools::Drop => {}
            chosen => {
                let chosen = chosen?;
                // A choice for tools of which none is left is none.
                if chat.contains_key("tools") || chosen == json!("none") || chosen == json!("auto")
                {
                    chat.insert("tool_choice".into(), chosen);
                }
            }
        }
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
    let keep = here("store") != Some(&Value::Bool(false)) && store.enabled();
    echo.insert("store".into(), json!(keep));
    echo.insert(
        "previous_response_id".into(),
        here("previous_response_id").cloned().unwrap_or(Value::Null),
    );
    let seed = Seed {
        model: client_model.to_owned(),
        echo,
        namespaced,
        dropped_tools,
        input,
        keep,
    };
    Ok((Bytes::from(Value::Object(chat).to_string()), seed))
}

/// Input items as chat messages: messages (text and image parts);
/// `function_call` items as the assistant's tool calls (a namespaced one
/// by its flattened name), `reasoning` items as its `reasoning_content`;
/// `function_call_output` items as tool messages.
///
/// The assistant items of one turn (messages, calls and reasoning, in any
/// order, as a client replays an earlier answer) become one assistant
/// message: chat wants the tool messages right after the message with the
/// calls. Images in tool outputs, which chat tool messages cannot hold,
/// follow the turn's tool messages in a user message.
fn input_items(items: &[Value], messages: &mut Vec<Value>) -> Result<(), ApiError> {
    // The assistant message of the turn being read, by index.
    let mut turn: Option<usize> = None;
    let mut tool_images: Vec<Value> = Vec::new();
    let flush_images = |images: &mut Vec<Value>, messages: &mut Vec<Value>| {
        if !images.is_empty() {
            messages.push(json!({"role": "user", "content": std::mem::take(images)}));
        }
    };
    for (i, item) in items.iter().enumerate() {
        let kind = item.get("type").and_then(Value::as_str);
        let role = item.get("role").and_then(Value::as_str);
        let assistant_item = matches!(kind, Some("function_call" | "reasoning"))
            || (matches!(kind, Some("message") | None) && role == Some("assistant"));
        if kind != Some("function_call_output") {
            flush_images(&mut tool_images, messages);
        }
        if !assistant_item {
            turn = None;
        }
        let at = format!("input[{i}]");
        match (kind, role) {
            (Some("message") | None, Some("assistant")) => {
                let content = message_content(item.get("content"), true, &at)?;
                let m = assistant_turn(messages, &mut turn);
                let text = content.as_str().unwrap_or("");
                match m.get_mut("content") {
                    Some(Value::String(all)) => all.push_str(text),
                    _ => m["content"] = json!(text),
                }
            }
            (Some("message") | None, Some(role)) => {
                let role = match role {
                    "developer" | "system" => "system",
                    "user" => "user",
                    other => {
                        return Err(invalid(
                            format!("{at}.role '{other}' is not one of user, assistant, system, developer."),
                            "input",
                        ))
                    }
                };
                let content = message_content(item.get("content"), false, &at)?;
                messages.push(json!({"role": role, "content": content}));
            }
            (Some("function_call"), _) => {
                let field = |key: &str| {
                    item.get(key)
                        .and_then(Value::as_str)
                        .filter(|v| !v.is_empty())
                        .ok_or_else(|| {
                            invalid(format!("{at} (a function_call) needs its '{key}' string."), "input")
                        })
                };
                let (name, _) = (field("name")?, field("call_id")?);
                let name = match item.get("namespace").and_then(Value::as_str) {
                    Some(ns) => flat_name(ns, name),
                    None => name.to_owned(),
                };
                let call = json!({
                    "id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "type": "function",
                    "function": {
                        "name": name,
                        // Chat takes the arguments as a string only.
                        "arguments": match item.get("arguments") {
                            None | Some(Value::Null) => "{}".to_owned(),
                            other => arguments_text(other),
                        },
                    }
                });
                let m = assistant_turn(messages, &mut turn);
                match m.get_mut("tool_calls").and_then(Value::as_array_mut) {
                    Some(calls) => calls.push(call),
                    None => m["tool_calls"] = json!([call]),
                }
            }
            // Reasoning an earlier answer carried: reasoning providers
            // (DeepSeek's thinking mode) want it back with the turn.
            (Some("reasoning"), _) => {
                let text = reasoning_text(item);
                let m = assistant_turn(messages, &mut turn);
                match m.get_mut("reasoning_content") {
                    Some(Value::String(all)) => all.push_str(&text),
                    _ => m["reasoning_content"] = json!(text),
                }
            }
            (Some("function_call_output"), _) => {
                if !item.get("call_id").is_some_and(Value::is_string) {
                    return Err(invalid(
                        format!("{at} (a function_call_output) needs its 'call_id' string."),
                        "input",
                    ));
                }
                let output = tool_output(item.get("output"), &at, &mut tool_images)?;
                messages.push(json!({
                    "role": "tool",
                    "tool_call_id": item.get("call_id").cloned().unwrap_or(Value::Null),
                    "content": output,
                }));
            }
            (Some("item_reference"), _) => {
                return Err(invalid(
                    format!("{at} refers to a stored item; this model's provider speaks only chat completions (responses: \"chat\"), so chat2api keeps no state for it."),
                    "input",
                ))
            }
            (Some("message") | None, None) => {
                return Err(invalid(format!("{at} has no 'role'."), "input"))
            }
            (other, _) => {
                return Err(invalid(
                    format!(
                        "{at} of type {} cannot be sent to a chat-only provider (responses: \"chat\").",
                        other.unwrap_or("(none)")
                    ),
                    "input",
                ))
            }
        }
    }
    flush_images(&mut tool_images, messages);
    // A turn of reasoning alone (an answer cut on its length) has no
    // content and no calls; chat wants one of them.
    for m in messages.iter_mut() {
        if m["role"] == "assistant" && m["content"].is_null() && m.get("tool_calls").is_none() {
            m["content"] = json!("");
        }
    }
    Ok(())
}

/// The assistant message of the current turn, opened if there is none.
fn assistant_turn<'a>(messages: &'a mut Vec<Value>, turn: &mut Option<usize>) -> &'a mut Value {
    let at = *turn.get_or_insert_with(|| {
        messages.push(json!({"role": "assistant", "content": null}));
        messages.len() - 1
    });
    &mut messages[at]
}

/// The text of a `reasoning` item: its `reasoning_text` content, else its
/// summary.
fn reasoning_text(item: &Value) -> String {
    let texts = |key: &str| -> String {
        item.get(key)
            .and_then(Value::as_array)
            .into_iter()
            .flatten()
            .filter_map(|p| p.get("text").and_then(Value::as_str))
            .collect::<Vec<_>>()
            .join("\n")
    };
    match texts("content") {
        t if !t.is_empty() => t,
        _ => texts("summary"),
    }
}

/// A `function_call_output`'s output as a tool message's text: a string
/// as is; a list of parts, its texts joined, with its images set aside in
/// `images` (for a user message after the turn's tool messages). Files are
/// refused by name.
fn tool_output(
    output: Option<&Value>,
    at: &str,
    images: &mut Vec<Value>,
) -> Result<String, ApiError> {
    let parts = match output {
        None | Some(Value::Null) => return Ok(String::new()),
        Some(Value::String(s)) => return Ok(s.clone()),
        Some(Value::Array(parts)) => parts,
        Some(other) => return Ok(other.to_string()),
    };
    let mut texts = Vec::new();
    for (j, p) in parts.iter().enumerate() {
        match p.get("type").and_then(Value::as_str) {
            Some("input_text" | "output_text" | "text") => {
                texts.push(p.get("text").and_then(Value::as_str).unwrap_or(""));
            }
            Some("input_image") => {
                let Some(url) = p.get("image_url").and_then(Value::as_str) else {
                    return Err(invalid(
                        format!("{at}.output[{j}]: a chat-only provider (responses: \"chat\") takes images by 'image_url' only."),
                        "input",
                    ));
                };
                images.push(json!({"type": "image_url", "image_url": {"url": url}}));
            }
            other => {
                return Err(invalid(
                    format!(
                        "{at}.output[{j}] of type {} cannot be sent to a chat-only provider (responses: \"chat\").",
                        other.unwrap_or("(none)")
                    ),
                    "input",
                ))
            }
        }
    }
    Ok(texts.join("\n"))
}

/// The chat function name of `name` in `namespace` (chat names allow
/// letters, digits, `_` and `-`).
fn flat_name(namespace: &str, name: &str) -> String {
    format!("{namespace}__{name}")
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
/// strict}`) as chat tools (`{type, function: {…}}`); the functions of a
/// `namespace` tool flattened to `namespace__name` (recorded in
/// `namespaced`, so that calls go back under their namespace). Hosted
/// tools (web search, file search, …) run on OpenAI's servers: left out
/// and recorded in `dropped`, or a 400 with [`HostedTools::Refuse`].
fn chat_tools(
    tools: &Value,
    hosted: HostedTools,
    namespaced: &mut Vec<(String, String, String)>,
    dropped: &mut Vec<String>,
) -> Result<Value, ApiError> {
    let tools = tools
        .as_array()
        .ok_or_else(|| invalid("'tools' must be an array.", "tools"))?;
    let mut out = Vec::with_capacity(tools.len());
    for tool in tools {
        match tool.get("type").and_then(Value::as_str) {
            Some("function") => {
                tool_name(tool.get("name"), "a function tool")?;
                out.push(chat_function(tool, None));
            }
            Some("namespace") => {
                let ns = tool_name(tool.get("name"), "a namespace tool")?;
                for inner in tool.get("tools").and_then(Value::as_array).into_iter().flatten() {
                    if inner.get("type").and_then(Value::as_str) != Some("function") {
                        return Err(invalid(
                            format!("A tool of namespace {ns} is no function; a chat-only provider (responses: \"chat\") takes function tools only."),
                            "tools",
                        ));
                    }
                    let name = tool_name(inner.get("name"), "a function of a namespace")?;
                    let flat = flat_name(ns, name);
                    out.push(chat_function(inner, Some(&flat)));
                    namespaced.push((flat, ns.to_owned(), name.to_owned()));
                }
            }
            Some("custom") => {
                return Err(invalid(
                    "Custom (free-form) tools cannot be sent to a chat-only provider (responses: \"chat\"): chat functions take JSON arguments only.",
                    "tools",
                ))
            }
            other if hosted == HostedTools::Drop && other.is_some() => {
                dropped.push(other.unwrap_or_default().to_owned());
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
    let mut names: Vec<&str> = out
        .iter()
        .filter_map(|t| t.pointer("/function/name").and_then(Value::as_str))
        .collect();
    names.sort_unstable();
    if let Some(pair) = names.windows(2).find(|w| w[0] == w[1]) {
        return Err(invalid(
            format!("Two tools would have the chat name '{}' (a namespace's functions are sent as namespace__name).", pair[0]),
            "tools",
        ));
    }
    Ok(Value::Array(out))
}

/// A tool's or namespace's `name`: letters, digits, `_` and `-`, as chat
/// function names must be (else 400 naming `what`).
fn tool_name<'a>(name: Option<&'a Value>, what: &str) -> Result<&'a str, ApiError> {
    name.and_then(Value::as_str)
        .filter(|n| {
            !n.is_empty()
                && n.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
        })
        .ok_or_else(|| {
            invalid(
                format!("{what} needs a 'name' of letters, digits, '_' and '-'."),
                "tools",
            )
        })
}

/// One Responses function tool as a chat tool, under `name` if given.
fn chat_function(tool: &Value, name: Option<&str>) -> Value {
    let mut function = Map::new();
    for key in ["name", "description", "parameters", "strict"] {
        if let Some(v) = tool.get(key).filter(|v| !v.is_null()) {
            function.insert(key.into(), v.clone());
        }
    }
    if let Some(name) = name {
        function.insert("name".into(), json!(name));
    }
    json!({"type": "function", "function": function})
}

/// `tool_choice`: the strings pass; `{type: function, name}` becomes
/// `{type: function, function: {name}}`.
fn chat_tool_choice(choice: &Value) -> Result<Value, ApiError> {
    match choice {
        Value::String(_) => Ok(choice.clone()),
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("function") => {
            let name = o.get("name").and_then(Value::as_str).ok_or_else(|| {
                invalid("'tool_choice.name' must name the function.", "tool_choice")
            })?;
            // A namespaced function goes by its flattened name.
            let name = match o.get("namespace").and_then(Value::as_str) {
                Some(ns) => flat_name(ns, name),
                None => name.to_owned(),
            };
            Ok(json!({"type": "function", "function": {"name": name}}))
        }
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
        "total_tokens": n(chat.get("total_tokens")).max(input.saturating_add(output)),
    })
}

/// A response id: always one of chat2api's own, never derived from the
/// upstream's chat id, which upstreams repeat (some send the same id with
/// every answer) and which would then name two stored responses; 128
/// random bits.
fn response_id(_chat_id: &str) -> String {
    fresh_id("resp_")
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

/// A `function_call` item; `name` with the namespace it came from, if any.
fn function_item(
    id: &str,
    call_id: &str,
    (name, namespace): (&str, Option<&str>),
    arguments: &str,
    status: &str,
) -> Value {
    let mut item = json!({"type": "function_call", "id": id, "call_id": call_id, "name": name,
        "arguments": arguments, "status": status});
    if let Some(ns) = namespace {
        item["namespace"] = json!(ns);
    }
    item
}

/// A `reasoning` item: the chat answer's `reasoning_content` as its
/// `reasoning_text` content (no summary: chat has none).
fn reasoning_item(id: &str, text: &str) -> Value {
    json!({"type": "reasoning", "id": id, "summary": [],
        "content": [{"type": "reasoning_text", "text": text}]})
}

/// A message whose content is a refusal.
fn refusal_item(id: &str, refusal: &str, status: &str) -> Value {
    json!({"type": "message", "id": id, "status": status, "role": "assistant",
        "content": [{"type": "refusal", "refusal": refusal}]})
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
    whole_response(answer, seed, true)
}

/// [`chat_to_response`], kept in the response store only with `keep` (a
/// whole answer judged before it is streamed is kept by the stream).
fn whole_response(answer: &[u8], seed: &Seed, keep: bool) -> Result<Bytes, ApiError> {
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
    if let Some(r) = message
        .get("reasoning_content")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(reasoning_item(&fresh_id("rs_"), r));
    }
    // A message cut on its length is itself incomplete.
    let status = match final_status(finish) {
        "incomplete" => "incomplete",
        _ => "completed",
    };
    let text = message
        .get("content")
        .and_then(content_text)
        .unwrap_or_default();
    if !text.is_empty() {
        output.push(message_item(&fresh_id("msg_"), &text, status));
    }
    if let Some(refusal) = message
        .get("refusal")
        .and_then(Value::as_str)
        .filter(|r| !r.is_empty())
    {
        output.push(refusal_item(&fresh_id("msg_"), refusal, status));
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
            seed.call_name(name),
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
    if keep {
        seed.keep(&response);
    }
    Ok(Bytes::from(response.to_string()))
}

/// What an output item of a stream is.
enum Kind {
    Reasoning,
    Message,
    Refusal,
    Call {
        call_id: String,
        name: String,
        namespace: Option<String>,
    },
}

/// One output item being built from stream chunks.
struct Item {
    id: String,
    kind: Kind,
    /// Its text, reasoning, refusal or arguments so far.
    text: String,
    /// Its place in `output`, once opened (items open in the order they
    /// are sent, which is not always the order they began in).
    output_index: Option<usize>,
    /// Text gathered while the item waited for its turn.
    held: String,
    done: bool,
}

/// The Responses event sequence of a streamed chat answer, built chunk by
/// chunk: `response.created` and `response.in_progress` first; then the
/// output items one after another, each opened (`output_item.added`, and a
/// `content_part.added` for a message), filled and closed (`…done`) before
/// the next opens, as OpenAI streams them:
///
/// - `reasoning_content` → a `reasoning` item (`reasoning_text.delta`);
/// - content → a message item (`output_text.delta` per piece);
/// - `refusal` → a message item with a refusal part (`refusal.delta`);
/// - each tool call → a `function_call` item
///   (`function_call_arguments.delta` per piece), a namespaced one under
///   its namespace.
///
/// The item being sent passes each piece on at once. A reasoning or
/// message item closes when the next kind begins; a call stays open to the
/// end, and calls (or text) that begin meanwhile are gathered and sent
/// whole after it: an upstream may interleave the pieces of parallel calls,
/// which a client must never see. At the end `response.completed` (or
/// `.incomplete` when the chat answer stopped on its length or a content
/// filter, `.failed` when it carried an error or broke off). Every event
/// carries its `type` and `sequence_number`. Events that are not chat
/// chunks are left out.
pub struct StreamTranslator {
    seed: Seed,
    id: String,
    created: u64,
    started: bool,
    finished: bool,
    sequence: u64,
    /// Every item, in the order it began.
    items: Vec<Item>,
    /// Items opened so far (the next one's `output_index`).
    opened: usize,
    /// The item being sent.
    current: Option<usize>,
    /// Which call each tool-call delta belongs to.
    rule: ToolCallRule,
    /// Each call's item, by its position in the rule.
    calls: Vec<usize>,
    finish: Option<String>,
    usage: Value,
    /// Why the response failed (the chat stream carried an error, or
    /// broke off): `{code, message}`.
    error: Option<Value>,
}

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
            opened: 0,
            current: None,
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
        // Some providers send their usage in a chunk without `choices`.
        if let Some(u) = chunk.get("usage").filter(|u| !u.is_null()) {
            self.usage = usage(u);
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
        let pieces = [
            (
                delta
                    .get("reasoning_content")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                Kind::Reasoning,
            ),
            (delta.get("content").and_then(content_text), Kind::Message),
            (
                delta
                    .get("refusal")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                Kind::Refusal,
            ),
        ];
        for (piece, kind) in pieces {
            if let Some(piece) = piece.filter(|p| !p.is_empty()) {
                self.text_piece(kind, &piece, &mut out);
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

    /// A piece of reasoning, text or refusal: to the item of that kind
    /// being sent, else to a new one, sent at once unless a call is being
    /// sent (then it waits its turn).
    fn text_piece(&mut self, kind: Kind, piece: &str, out: &mut Vec<NamedEvent>) {
        let same =
            |item: &Item| std::mem::discriminant(&item.kind) == std::mem::discriminant(&kind);
        let at = match self.current {
            Some(i) if same(&self.items[i]) => i,
            _ => match self
                .items
                .iter()
                .rposition(|item| same(item) && item.output_index.is_none())
            {
                Some(waiting) => waiting,
                None => {
                    let prefix = match kind {
                        Kind::Reasoning => "rs_",
                        _ => "msg_",
                    };
                    self.begin(kind, fresh_id(prefix), out)
                }
            },
        };
        self.fill(at, piece, out);
    }

    /// A new item: sent at once when nothing is being sent or what is
    /// being sent is no call (which then closes); else waiting its turn.
    fn begin(&mut self, kind: Kind, id: String, out: &mut Vec<NamedEvent>) -> usize {
        let at = self.items.len();
        self.items.push(Item {
            id,
            kind,
            text: String::new(),
            output_index: None,
            held: String::new(),
            done: false,
        });
        match self.current {
            Some(i) if matches!(self.items[i].kind, Kind::Call { .. }) => {}
            Some(i) => {
                self.close(i, out);
                self.open(at, out);
            }
            None => self.open(at, out),
        }
        at
    }

    /// Item `at` gets `piece`: sent as a delta when the item is open,
    /// held while it waits.
    fn fill(&mut self, at: usize, piece: &str, out: &mut Vec<NamedEvent>) {
        let item = &mut self.items[at];
        item.text.push_str(piece);
        let Some(index) = item.output_index.filter(|_| !item.done) else {
            item.held.push_str(piece);
            return;
        };
        let id = item.id.clone();
        let (name, data) = match item.kind {
            Kind::Reasoning => (
                "response.reasoning_text.delta",
                json!({"item_id": id,
                "output_index": index, "content_index": 0, "delta": piece}),
            ),
            Kind::Message => (
                "response.output_text.delta",
                json!({"item_id": id,
                "output_index": index, "content_index": 0, "delta": piece, "logprobs": []}),
            ),
            Kind::Refusal => (
                "response.refusal.delta",
                json!({"item_id": id,
                "output_index": index, "content_index": 0, "delta": piece}),
            ),
            Kind::Call { .. } => (
                "response.function_call_arguments.delta",
                json!({"item_id": id,
                "output_index": index, "delta": piece}),
            ),
        };
        self.event(name, data, out);
    }

    /// Opens item `at` (it becomes the one being sent), with what it
    /// gathered while it waited.
    fn open(&mut self, at: usize, out: &mut Vec<NamedEvent>) {
        let index = self.opened;
        self.opened += 1;
        self.current = Some(at);
        self.items[at].output_index = Some(index);
        let item = &self.items[at];
        let id = item.id.clone();
        let added = match &item.kind {
            Kind::Reasoning => json!({"type": "reasoning", "id": id, "summary": [], "content": []}),
            Kind::Message | Kind::Refusal => message_item(&id, "", "in_progress"),
            Kind::Call {
                call_id,
                name,
                namespace,
            } => function_item(
                &id,
                call_id,
                (name, namespace.as_deref()),
                "",
                "in_progress",
            ),
        };
        let part = match item.kind {
            Kind::Reasoning => Some(json!({"type": "reasoning_text", "text": ""})),
            Kind::Message => {
                Some(json!({"type": "output_text", "text": "", "annotations": [], "logprobs": []}))
            }
            Kind::Refusal => Some(json!({"type": "refusal", "refusal": ""})),
            Kind::Call { .. } => None,
        };
        self.event(
            "response.output_item.added",
            json!({"output_index": index, "item": added}),
            out,
        );
        if let Some(part) = part {
            let data =
                json!({"item_id": id, "output_index": index, "content_index": 0, "part": part});
            self.event("response.content_part.added", data, out);
        }
        let held = std::mem::take(&mut self.items[at].held);
        if !held.is_empty() {
            let text = &mut self.items[at].text;
            text.truncate(text.len() - held.len());
            self.fill(at, &held, out);
        }
    }

    /// Closes item `at`: its `…done` events and `output_item.done`, with
    /// `status` for a message.
    fn close(&mut self, at: usize, out: &mut Vec<NamedEvent>) {
        // An item of a response that failed (an error, an answer that
        // broke off) was not completed either.
        let status = match (self.error.is_some(), final_status(self.finish.as_deref())) {
            (true, _) | (_, "incomplete") => "incomplete",
            _ => "completed",
        };
        let item = &mut self.items[at];
        if item.done {
            return;
        }
        item.done = true;
        if self.current == Some(at) {
            self.current = None;
        }
        let Some(index) = item.output_index else {
            return;
        };
        let (id, text) = (item.id.clone(), item.text.clone());
        let base = json!({"item_id": id, "output_index": index, "content_index": 0});
        let with = |key: &str, value: Value| {
            let mut v = base.clone();
            v[key] = value;
            v
        };
        let done = match &item.kind {
            Kind::Reasoning => {
                self.event(
                    "response.reasoning_text.done",
                    with("text", json!(text)),
                    out,
                );
                let part = json!({"type": "reasoning_text", "text": text});
                self.event("response.content_part.done", with("part", part), out);
                reasoning_item(&id, &text)
            }
            Kind::Message => {
                let mut data = with("text", json!(text));
                data["logprobs"] = json!([]);
                self.event("response.output_text.done", data, out);
                let part =
                    json!({"type": "output_text", "text": text, "annotations": [], "logprobs": []});
                self.event("response.content_part.done", with("part", part), out);
                message_item(&id, &text, status)
            }
            Kind::Refusal => {
                self.event("response.refusal.done", with("refusal", json!(text)), out);
                let part = json!({"type": "refusal", "refusal": text});
                self.event("response.content_part.done", with("part", part), out);
                refusal_item(&id, &text, status)
            }
            Kind::Call {
                call_id,
                name,
                namespace,
            } => {
                let item = function_item(
                    &id,
                    call_id,
                    (name, namespace.as_deref()),
                    &text,
                    "completed",
                );
                let data = json!({"item_id": id, "output_index": index, "arguments": text});
                self.event("response.function_call_arguments.done", data, out);
                item
            }
        };
        self.event(
            "response.output_item.done",
            json!({"output_index": index, "item": done}),
            out,
        );
    }

    /// One tool-call delta: a new call begins a `function_call` item, a
    /// later piece adds to its arguments. Which call a delta belongs to is
    /// the one rule of `tool_calls.rs`.
    fn tool_call_delta(&mut self, call: &Value, out: &mut Vec<NamedEvent>) {
        let call_id = call
            .get("id")
            .and_then(Value::as_str)
            .filter(|id| !id.is_empty());
        let name = call.pointer("/function/name").and_then(Value::as_str);
        let at = match self.rule.place_delta(call) {
            (position, false) => self.calls[position],
            (_, true) => {
                // An id another call already has would make two items one.
                let taken = |id: &&str| {
                    self.items
                        .iter()
                        .any(|item| matches!(&item.kind, Kind::Call { call_id: c, .. } if c == id))
                };
                let call_id = call_id
                    .filter(|id| !taken(id))
                    .map_or_else(|| fresh_id("call_"), str::to_owned);
                let (name, namespace) = self.seed.call_name(name.unwrap_or(""));
                let kind = Kind::Call {
                    call_id,
                    name: name.to_owned(),
                    namespace: namespace.map(str::to_owned),
                };
                let at = self.begin(kind, fresh_id("fc_"), out);
                self.calls.push(at);
                at
            }
        };
        // A name that comes in a later delta than the call's first (sent
        // with the item's `done`).
        if let Some(name) = name.filter(|n| !n.is_empty()) {
            let (plain, ns) = self.seed.call_name(name);
            let (plain, ns) = (plain.to_owned(), ns.map(str::to_owned));
            if let Kind::Call {
                name: known,
                namespace,
                ..
            } = &mut self.items[at].kind
            {
                if known.is_empty() {
                    *known = plain;
                    *namespace = ns;
                }
            }
        }
        let piece = arguments_text(call.pointer("/function/arguments"));
        if !piece.is_empty() {
            self.fill(at, &piece, out);
        }
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

    /// The closing events, once the chat stream ended: the item being sent
    /// closed, every waiting one sent whole, then `response.completed`
    /// (`.incomplete`, `.failed`). A stream with no chat chunk, or with
    /// chunks that made no output and no `finish_reason`, is no answer: the
    /// 502 to end it with instead. A stream that broke off (no
    /// `finish_reason`) ends `failed`. Nothing when already finished.
    pub fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError> {
        let mut out = Vec::new();
        if self.finished {
            return Ok(out);
        }
        if self.error.is_none() && self.finish.is_none() {
            if !self.started || self.items.is_empty() {
                // Not finished: the caller ends the stream with `abort`,
                // whose `error` and `response.failed` a client must get.
                return Err(ApiError::Upstream(
                    "the upstream's stream made no chat answer".into(),
                ));
            }
            self.error = Some(json!({"code": "server_error",
                "message": "The upstream's answer broke off before it finished (no finish_reason)."}));
        }
        if let Some(at) = self.current {
            self.close(at, &mut out);
        }
        for at in 0..self.items.len() {
            if self.items[at].output_index.is_none() {
                self.open(at, &mut out);
                self.close(at, &mut out);
            }
        }
        self.finished = true;
        let finish = self.finish.clone();
        let status = match self.error {
            Some(_) => "failed",
            None => final_status(finish.as_deref()),
        };
        let mut sent: Vec<&Item> = self.items.iter().collect();
        sent.sort_by_key(|item| item.output_index);
        let item_status = match status {
            "incomplete" | "failed" => "incomplete",
            _ => "completed",
        };
        let output = sent
            .iter()
            .map(|item| match &item.kind {
                Kind::Reasoning => reasoning_item(&item.id, &item.text),
                Kind::Message => message_item(&item.id, &item.text, item_status),
                Kind::Refusal => refusal_item(&item.id, &item.text, item_status),
                Kind::Call {
                    call_id,
                    name,
                    namespace,
                } => function_item(
                    &item.id,
                    call_id,
                    (name, namespace.as_deref()),
                    &item.text,
                    "completed",
                ),
            })
            .collect();
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
        self.seed.keep(&r);
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
    fn judge(&self, chat: &[u8]) -> Result<(), ApiError> {
        whole_response(chat, &self.seed, false).map(drop)
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
        // State chat2api does not hold: an unknown previous response or
        // item, a stored conversation; and a hosted tool where refused.
        for (body, param) in [
            (
                r#"{"model":"m","input":"x","previous_response_id":"resp_1"}"#,
                "previous_response_id",
            ),
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
            // Hosted tools are refused with `hostedTools: "refuse"` (and
            // dropped by default, `namespaces_are_flattened_and_calls_go_back_under_them`).
            let err = request_to_chat_with(body.as_bytes(), "m", "m", HostedTools::Refuse)
                .expect_err(body);
            assert_eq!(err.status(), 400, "{body}");
            let text = String::from_utf8_lossy(&err.body()).into_owned();
            assert!(text.contains(&format!("\"param\":\"{param}\"")), "{text}");
        }
        for store in ["false", "true"] {
            let body = format!(r#"{{"model":"m","input":"x","store":{store}}}"#);
            assert!(request_to_chat(body.as_bytes(), "m", "m").is_ok());
        }
    }

    /// The tool calls (call id, name, arguments) that a chat stream's
    /// chunks make on the two paths that gather them: a plain answer made
    /// of events, and the Responses events. They must be the same.
    fn calls_on_every_path(chunks: &[&str]) -> [Vec<(String, String, String)>; 2] {
        let plain = crate::translate::chat::aggregate_events(chunks.iter().map(|c| c.as_bytes()))
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

    /// Events of a chat stream as (name, data) pairs, closing included.
    fn translate(seed: Seed, chunks: &[&str]) -> Vec<(&'static str, Value)> {
        let mut t = StreamTranslator::new(seed);
        let mut events: Vec<NamedEvent> =
            chunks.iter().flat_map(|c| t.chunk(c.as_bytes())).collect();
        events.extend(t.finish().unwrap());
        events
            .into_iter()
            .map(|(n, d)| (n, serde_json::from_slice(&d).unwrap()))
            .collect()
    }

    fn chunk(delta: Value, finish: Option<&str>) -> String {
        json!({"id": "chatcmpl-x", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}).to_string()
    }

    #[test]
    fn reasoning_goes_both_ways() {
        let (_, s) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let c1 = chunk(
            json!({"content": null, "reasoning_content": "The user wants "}),
            None,
        );
        let c2 = chunk(json!({"reasoning_content": "the weather."}), None);
        let c3 = chunk(
            json!({"tool_calls": [{"index": 0, "id": "call_1", "function": {"name": "get_weather", "arguments": "{}"}}]}),
            Some("tool_calls"),
        );
        let events = translate(s, &[&c1, &c2, &c3]);
        let names: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert!(
            names.contains(&"response.reasoning_text.delta"),
            "{names:?}"
        );
        let last = &events.last().unwrap().1["response"]["output"];
        assert_eq!(last[0]["type"], "reasoning");
        assert_eq!(last[0]["content"][0]["text"], "The user wants the weather.");
        assert_eq!(last[1]["type"], "function_call");
        // Replayed as the next turn's input: one assistant message with
        // the reasoning, the call, then the tool's answer.
        let (chat, _) = seed(
            &json!({"model": "alias", "input": [
            {"role": "user", "content": "Weather?"},
            last[0], last[1],
            {"type": "function_call_output", "call_id": "call_1", "output": "rain"}]})
            .to_string(),
        );
        let m = chat["messages"].as_array().unwrap();
        assert_eq!(m.len(), 3, "{m:?}");
        assert_eq!(m[1]["reasoning_content"], "The user wants the weather.");
        assert_eq!(m[1]["tool_calls"][0]["id"], "call_1");
        assert_eq!(m[2]["role"], "tool");
    }

    #[test]
    fn one_assistant_turn_stays_one_message_whatever_its_order() {
        let (chat, _) = seed(
            r#"{"model":"alias","input":[
            {"role":"user","content":"Weather?"},
            {"type":"function_call","call_id":"c1","name":"get_weather","arguments":"{}"},
            {"type":"message","role":"assistant","content":[{"type":"output_text","text":"Checking."}]},
            {"type":"function_call_output","call_id":"c1","output":[
                {"type":"input_text","text":"rain"},{"type":"input_image","image_url":"data:image/png;base64,AA"}]},
            {"role":"user","content":"Thanks"}]}"#,
        );
        let m = chat["messages"].as_array().unwrap();
        let roles: Vec<&str> = m.iter().map(|m| m["role"].as_str().unwrap()).collect();
        assert_eq!(
            roles,
            ["user", "assistant", "tool", "user", "user"],
            "{m:?}"
        );
        assert_eq!(m[1]["content"], "Checking.");
        assert_eq!(m[1]["tool_calls"][0]["id"], "c1");
        assert_eq!(m[2]["content"], "rain", "text parts joined, no JSON pasted");
        assert_eq!(
            m[3]["content"][0]["image_url"]["url"],
            "data:image/png;base64,AA"
        );
    }

    #[test]
    fn refusals_become_refusal_parts() {
        let (_, s) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let events = translate(
            s.clone(),
            &[&chunk(
                json!({"refusal": "I can't help with that."}),
                Some("stop"),
            )],
        );
        let names: Vec<&str> = events.iter().map(|e| e.0).collect();
        assert!(
            names.contains(&"response.refusal.delta") && names.contains(&"response.refusal.done"),
            "{names:?}"
        );
        let out = &events.last().unwrap().1["response"]["output"];
        assert_eq!(
            out[0]["content"][0],
            json!({"type": "refusal", "refusal": "I can't help with that."})
        );
        let whole = br#"{"id":"c","choices":[{"index":0,"finish_reason":"stop","message":{"role":"assistant","content":null,"refusal":"No."}}]}"#;
        let r: Value = serde_json::from_slice(&chat_to_response(whole, &s).unwrap()).unwrap();
        assert_eq!(r["output"][0]["content"][0]["type"], "refusal");
    }

    #[test]
    fn items_are_sent_one_after_another_even_when_calls_interleave() {
        let (_, s) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let call = |i: u64, id: Option<&str>, name: Option<&str>, args: &str| {
            let mut c = json!({"index": i, "function": {"arguments": args}});
            if let Some(id) = id {
                c["id"] = json!(id);
            }
            if let Some(name) = name {
                c["function"]["name"] = json!(name);
            }
            chunk(json!({"tool_calls": [c]}), None)
        };
        let chunks = [
            chunk(json!({"content": "Let me check."}), None),
            call(0, Some("a"), Some("f"), "{\"x\""),
            call(1, Some("b"), Some("g"), "{\"y\""),
            call(0, None, None, ":1}"),
            call(1, None, None, ":2}"),
            chunk(json!({}), Some("tool_calls")),
        ];
        let chunks: Vec<&str> = chunks.iter().map(String::as_str).collect();
        let events = translate(s, &chunks);
        // Each item: added, its deltas, done; never two open at once.
        let mut open: Option<u64> = None;
        for (name, data) in &events {
            let index = data["output_index"].as_u64();
            match *name {
                "response.output_item.added" => {
                    assert_eq!(open, None, "{events:?}");
                    open = index;
                }
                "response.output_item.done" => {
                    assert_eq!(open, index);
                    open = None;
                }
                n if n.ends_with(".delta") => assert_eq!(open, index, "{n}"),
                _ => {}
            }
        }
        let out = &events.last().unwrap().1["response"]["output"];
        assert_eq!(out[1]["arguments"], "{\"x\":1}");
        assert_eq!(out[2]["arguments"], "{\"y\":2}");
    }

    #[test]
    fn namespaces_are_flattened_and_calls_go_back_under_them() {
        let body = r#"{"model":"alias","input":"hi","tools":[
            {"type":"namespace","name":"multi_agent_v1","description":"agents","tools":[
                {"type":"function","name":"spawn_agent","parameters":{"type":"object"}}]},
            {"type":"web_search"},
            {"type":"function","name":"shell","parameters":{"type":"object"}}]}"#;
        let (chat, seed) = request_to_chat(body.as_bytes(), "alias", "up").unwrap();
        let chat: Value = serde_json::from_slice(&chat).unwrap();
        let names: Vec<&str> = chat["tools"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["function"]["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, ["multi_agent_v1__spawn_agent", "shell"]);
        assert_eq!(seed.dropped_tools, ["web_search"]);
        let whole = br#"{"id":"c","choices":[{"index":0,"finish_reason":"tool_calls","message":{"role":"assistant",
            "tool_calls":[{"id":"c1","type":"function","function":{"name":"multi_agent_v1__spawn_agent","arguments":"{}"}}]}}]}"#;
        let r: Value = serde_json::from_slice(&chat_to_response(whole, &seed).unwrap()).unwrap();
        assert_eq!(r["output"][0]["name"], "spawn_agent");
        assert_eq!(r["output"][0]["namespace"], "multi_agent_v1");
        // Sent back as input, the call is flattened again.
        let (chat, _) = request_to_chat(
            json!({"model": "m", "input": [r["output"][0]]})
                .to_string()
                .as_bytes(),
            "m",
            "m",
        )
        .unwrap();
        let chat: Value = serde_json::from_slice(&chat).unwrap();
        assert_eq!(
            chat["messages"][0]["tool_calls"][0]["function"]["name"],
            "multi_agent_v1__spawn_agent"
        );
        let refused =
            request_to_chat_with(body.as_bytes(), "alias", "up", HostedTools::Refuse).unwrap_err();
        assert!(String::from_utf8_lossy(&refused.body()).contains("web_search"));
    }

    /// What attacking the agent loop found, each a case: a stream that
    /// makes no answer still ends `failed`; a namespaced name that comes
    /// late keeps its namespace; a namespaced tool choice is flattened; a
    /// replayed reasoning-only turn is a valid chat message; malformed
    /// items and tools are 400s naming what is wrong.
    #[test]
    fn the_agent_loop_holds_against_odd_inputs() {
        let (_, s) = seed(r#"{"model":"alias","input":"hi","stream":true}"#);
        let mut t = StreamTranslator::new(s);
        t.chunk(chunk(json!({"role": "assistant"}), None).as_bytes());
        assert!(t.finish().is_err(), "no answer");
        let names: Vec<&str> = t.abort("no answer").iter().map(|e| e.0).collect();
        assert_eq!(names, ["error", "response.failed"]);

        let body = r#"{"model":"alias","input":"hi","stream":true,"tools":[{"type":"namespace","name":"crm","description":"c",
            "tools":[{"type":"function","name":"find","parameters":{}}]}],
            "tool_choice":{"type":"function","name":"find","namespace":"crm"}}"#;
        let (chat, s) = seed(body);
        assert_eq!(chat["tool_choice"]["function"]["name"], "crm__find");
        let events = translate(
            s,
            &[
                &chunk(
                    json!({"tool_calls": [{"index": 0, "id": "a", "function": {"arguments": "{"}}]}),
                    None,
                ),
                &chunk(
                    json!({"tool_calls": [{"index": 0, "function": {"name": "crm__find", "arguments": "}"}}]}),
                    Some("tool_calls"),
                ),
            ],
        );
        let out = &events.last().unwrap().1["response"]["output"][0];
        assert_eq!(
            (out["name"].as_str(), out["namespace"].as_str()),
            (Some("find"), Some("crm"))
        );

        let (chat, _) = seed(
            r#"{"model":"alias","input":[{"role":"user","content":"hi"},
            {"type":"reasoning","id":"rs_1","summary":[],"content":[{"type":"reasoning_text","text":"hmm"}]},
            {"role":"user","content":"go on"}]}"#,
        );
        assert_eq!(
            chat["messages"][1],
            json!({"role": "assistant", "content": "", "reasoning_content": "hmm"})
        );

        for (body, says) in [
            (r#"{"model":"m","input":[]}"#, "at least one item"),
            (
                r#"{"model":"m","input":[{"type":"function_call","call_id":"c"}]}"#,
                "'name'",
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call","name":"f"}]}"#,
                "'call_id'",
            ),
            (
                r#"{"model":"m","input":[{"type":"function_call_output","output":"x"}]}"#,
                "'call_id'",
            ),
            (
                r#"{"model":"m","input":[{"role":"banana","content":"x"}]}"#,
                "banana",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"function"}]}"#,
                "a function tool",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"namespace","name":"my crm","tools":[]}]}"#,
                "a namespace tool",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"function","name":"crm__f"},{"type":"namespace","name":"crm","tools":[{"type":"function","name":"f"}]}]}"#,
                "crm__f",
            ),
            (
                r#"{"model":"m","input":"x","tool_choice":{"type":"function"}}"#,
                "tool_choice",
            ),
            (
                r#"{"model":"m","input":"x","max_output_tokens":"lots"}"#,
                "max_output_tokens",
            ),
            (
                r#"{"model":"m","input":[{"type":"item_reference"}]}"#,
                "without its 'id'",
            ),
            (
                r#"{"model":"m","input":"x","tools":[{"type":"custom","name":"apply_patch"}]}"#,
                "Custom",
            ),
        ] {
            let err = request_to_chat(body.as_bytes(), "m", "m").expect_err(body);
            assert_eq!(err.status(), 400, "{body}");
            assert!(err.to_string().contains(says), "{body}: {err}");
        }
        // A reference may leave its `type` out; an unknown one is a 400
        // naming it.
        let err =
            request_to_chat(br#"{"model":"m","input":[{"id":"msg_gone"}]}"#, "m", "m").unwrap_err();
        assert!(err.to_string().contains("msg_gone"), "{err}");
        // A hosted tool choice goes with its hosted tool; a required choice
        // with no tool left is no choice.
        let (chat, _) = seed(
            r#"{"model":"m","input":"x","tools":[{"type":"web_search"}],"tool_choice":{"type":"web_search"}}"#,
        );
        assert!(
            chat.get("tool_choice").is_none() && chat.get("tools").is_none(),
            "{chat}"
        );
        let (chat, _) = seed(
            r#"{"model":"m","input":"x","tools":[{"type":"web_search"}],"tool_choice":"required"}"#,
        );
        assert!(chat.get("tool_choice").is_none(), "{chat}");
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
        // chat2api's own id: stored responses need ids no upstream repeats.
        assert!(r["id"].as_str().unwrap().starts_with("resp_"));
        assert_ne!(r["id"], "resp_9x");
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
                // The message closes before the call opens: one item at a
                // time, as OpenAI streams them.
                "response.output_text.done",
                "response.content_part.done",
                "response.output_item.done",
                "response.output_item.added",
                "response.function_call_arguments.delta",
                "response.function_call_arguments.delta",
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
        // Its item was not completed either.
        assert_eq!(
            last(&events)["response"]["output"][0]["status"],
            "incomplete"
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
