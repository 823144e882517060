//! Borrowed views of the JSON the gateway must look inside: client requests
//! and upstream answers.
//!
//! No `serde_json::Value` is built: the views borrow from the body, the whole
//! document is still validated by the parse, and the `model` field is located
//! as a byte range so that it can be replaced by emitting
//! `prefix | name | suffix` slices of the original `Bytes`.

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::ops::Range;

use super::form::{self, Form};
use crate::api::{ApiError, Endpoint};

/// The largest `dimensions` the mock makes an embedding of.
pub const MAX_DIMENSIONS: usize = 8192;

#[derive(Deserialize)]
struct RequestView<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    /// Checked by [`check_messages`]; read as messages only for the mock.
    #[serde(borrow, default)]
    messages: Option<&'a RawValue>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(borrow, default)]
    input: Option<&'a RawValue>,
    #[serde(default)]
    dimensions: Option<usize>,
    #[serde(borrow, default)]
    encoding_format: Option<Cow<'a, str>>,
    /// A string for speech (`mp3`, `wav`, `pcm`, …), an object for chat:
    /// read only for speech.
    #[serde(borrow, default)]
    response_format: Option<&'a RawValue>,
    /// Speech: `audio` (bytes) or `sse` (events); read only for speech.
    #[serde(borrow, default)]
    stream_format: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
    /// The answer's length limit, under its three names (chat, newer
    /// chat, Responses); read as a number only for the mock.
    #[serde(borrow, default)]
    max_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_completion_tokens: Option<&'a RawValue>,
    #[serde(borrow, default)]
    max_output_tokens: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct MessageView<'a> {
    #[serde(borrow)]
    role: Cow<'a, str>,
    #[serde(borrow, default)]
    content: Option<&'a RawValue>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: Option<bool>,
}

/// What the gateway needs to know about a valid request.
#[derive(Debug)]
pub struct RequestInfo {
    /// The model name the client asked for.
    pub model: String,
    /// Byte range of the `model` value in the body, quotes included.
    pub model_span: Range<usize>,
    pub stream: bool,
    pub include_usage: bool,
    /// Text the mock provider answers to: the last user message (chat) or
    /// the prompt (completions). Small, and only cut out for the mock.
    pub prompt_text: String,
    /// A rough prompt size in words, for the mock's `usage`.
    pub prompt_words: u64,
    /// The texts to embed (`/v1/embeddings`), for the mock only.
    pub inputs: Vec<String>,
    /// The embedding size asked for (`/v1/embeddings`).
    pub dimensions: Option<usize>,
    /// Embeddings as base64 of little-endian `f32`s (`encoding_format`),
    /// as the official SDKs ask by default.
    pub base64: bool,
    /// Speech: the audio format asked for (`response_format`, default mp3).
    pub audio_format: Option<String>,
    /// The most tokens the answer may have (`max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`), for the mock.
    pub max_tokens: Option<u64>,
    /// Transcriptions and translations: the form's fields and parts; then
    /// `model_span` is the raw text of the `model` field, not a JSON string.
    pub form: Option<Form>,
}

impl RequestInfo {
    /// A request for `model`, whose value sits at `model_span` of the body.
    pub fn new(model: String, model_span: Range<usize>) -> RequestInfo {
        RequestInfo {
            model,
            model_span,
            stream: false,
            include_usage: false,
            prompt_text: String::new(),
            prompt_words: 0,
            inputs: Vec::new(),
            dimensions: None,
            base64: false,
            audio_format: None,
            max_tokens: None,
            form: None,
        }
    }
}

/// Validate a transcription or translation request: a form with a
/// `model` field and a `file` part (400 otherwise, naming what is wrong).
pub fn parse_form_request(
    body: &[u8],
    content_type: Option<&[u8]>,
) -> Result<RequestInfo, ApiError> {
    let form = form::parse_form(body, form::boundary(content_type)?)?;
    if form.file.is_none() {
        return Err(ApiError::invalid(
            "Missing required parameter: 'file' (the audio, as a file part).",
            Some("file"),
        ));
    }
    // Checked to be UTF-8 by `parse_form`.
    let model = String::from_utf8_lossy(&body[form.model.clone()]).into_owned();
    let mut info = RequestInfo::new(model, form.model.clone());
    info.stream = form.stream;
    info.form = Some(form);
    Ok(info)
}

/// Validate a request body for `endpoint` (docs/wire.md §4: 400 on malformed JSON,
/// missing `model` or `messages`/`prompt`, wrong types).
pub fn parse_request(
    body: &[u8],
    endpoint: Endpoint,
    want_text: bool,
) -> Result<RequestInfo, ApiError> {
    let first = body.iter().find(|b| !b.is_ascii_whitespace());
    if first != Some(&b'{') {
        return Err(if first.is_none() {
            ApiError::invalid("The request body is empty; expected a JSON object.", None)
        } else {
            ApiError::invalid("The request body must be a JSON object.", None)
        });
    }
    let view: RequestView = match serde_json::from_slice(body) {
        Ok(v) => v,
        Err(e) => return Err(describe_error(body, e)),
    };
    let raw_model = view
        .model
        .ok_or_else(|| ApiError::invalid("Missing required parameter: 'model' (chat2api routes every request by its model; GET /v1/models lists them).", Some("model")))?;
    let model: String = serde_json::from_str(raw_model.get())
        .map_err(|_| ApiError::invalid("'model' must be a string.", Some("model")))?;
    if model.is_empty() {
        return Err(ApiError::invalid(
            "'model' must not be empty.",
            Some("model"),
        ));
    }
    let mut info = RequestInfo::new(model, span_in(body, raw_model));
    info.stream = view.stream.unwrap_or(false);
    info.include_usage = view
        .stream_options
        .and_then(|o| o.include_usage)
        .unwrap_or(false);
    info.dimensions = view.dimensions.filter(|d| (1..=MAX_DIMENSIONS).contains(d));
    info.base64 = view.encoding_format.as_deref() == Some("base64");
    info.max_tokens = [
        view.max_tokens,
        view.max_completion_tokens,
        view.max_output_tokens,
    ]
    .into_iter()
    .flatten()
    .find_map(|n| serde_json::from_str::<u64>(n.get()).ok());
    match endpoint {
        Endpoint::Chat => {
            let raw = view.messages.ok_or_else(|| {
                ApiError::invalid("Missing required parameter: 'messages'.", Some("messages"))
            })?;
            check_messages(raw.get().as_bytes())
                .map_err(|message| ApiError::invalid(message, Some("messages")))?;
            if want_text {
                let messages: Vec<MessageView> = serde_json::from_str(raw.get()).map_err(|e| {
                    ApiError::invalid(format!("Invalid 'messages': {e}"), Some("messages"))
                })?;
                for m in &messages {
                    info.prompt_words += m.content.map_or(0, |c| count_words(&content_text(c)));
                }
                if let Some(last) = messages.iter().rev().find(|m| m.role == "user") {
                    info.prompt_text = last.content.map(content_text).unwrap_or_default();
                }
            }
        }
        Endpoint::Images => {
            info.stream = false;
            let prompt = view
                .prompt
                .and_then(|p| serde_json::from_str::<String>(p.get()).ok());
            let prompt = prompt.ok_or_else(|| {
                ApiError::invalid(
                    "Missing required parameter: 'prompt' (a string).",
                    Some("prompt"),
                )
            })?;
            if want_text {
                info.prompt_words = count_words(&prompt);
                info.prompt_text = prompt;
            }
        }
        Endpoint::Responses => {
            let input = view.input.filter(|i| i.get() != "null").ok_or_else(|| {
                ApiError::invalid("Missing required parameter: 'input'.", Some("input"))
            })?;
            if want_text {
                info.prompt_text = response_input_text(input);
                info.prompt_words = count_words(&info.prompt_text);
            }
        }
        Endpoint::Speech => {
            // `stream_format: "sse"` asks for audio in events (newer TTS
            // models): then the answer is re-framed, the alias restored.
            info.stream = view.stream_format.is_some_and(|f| f.get() == "\"sse\"");
            let raw = view.input.filter(|i| i.get() != "null").ok_or_else(|| {
                ApiError::invalid(
                    "Missing required parameter: 'input' (the text to speak).",
                    Some("input"),
                )
            })?;
            let input = serde_json::from_str::<String>(raw.get())
                .map_err(|_| ApiError::invalid("'input' must be a string.", Some("input")))?;
            info.audio_format = view
                .response_format
                .and_then(|f| serde_json::from_str::<String>(f.get()).ok());
            if want_text {
                info.prompt_words = count_words(&input);
                info.prompt_text = input;
            }
        }
        Endpoint::Transcriptions | Endpoint::Translations => {
            // Read by `parse_form_request`; a JSON body is no form.
            return Err(ApiError::invalid(
                "This endpoint takes a multipart/form-data body (a 'file' part and a 'model' field).",
                None,
            ));
        }
        Endpoint::Messages => {
            // The Anthropic translation reads the rest (`anthropic.rs`).
            let raw = view
                .messages
                .ok_or_else(|| ApiError::invalid("messages: Field required.", Some("messages")))?;
            if !raw.get().starts_with('[') {
                return Err(ApiError::invalid(
                    "messages: Input should be a valid list.",
                    Some("messages"),
                ));
            }
        }
        Endpoint::Embeddings | Endpoint::Moderations => {
            info.stream = false;
            let input = view.input.filter(|i| i.get() != "null").ok_or_else(|| {
                ApiError::invalid("Missing required parameter: 'input'.", Some("input"))
            })?;
            if want_text {
                // A string, strings, or token arrays (embedded by their text).
                let value: serde_json::Value = serde_json::from_str(input.get()).map_err(|e| {
                    ApiError::invalid(format!("Invalid 'input': {e}"), Some("input"))
                })?;
                info.inputs = match value {
                    serde_json::Value::Array(items) => items
                        .iter()
                        .map(|i| i.as_str().map_or_else(|| i.to_string(), str::to_owned))
                        .collect(),
                    other => vec![other
                        .as_str()
                        .map_or_else(|| other.to_string(), str::to_owned)],
                };
                info.prompt_words = info.inputs.iter().map(|t| count_words(t)).sum();
            }
        }
        Endpoint::Completions => {
            let prompt = view.prompt.ok_or_else(|| {
                ApiError::invalid("Missing required parameter: 'prompt'.", Some("prompt"))
            })?;
            let text = prompt_text(prompt).ok_or_else(|| {
                ApiError::invalid(
                    "'prompt' must be a string or an array of strings.",
                    Some("prompt"),
                )
            })?;
            if want_text {
                info.prompt_words = count_words(&text);
                info.prompt_text = text;
            }
        }
    }
    Ok(info)
}

/// The `model` a JSON body names, when it is a JSON object with a string
/// `model`, for the log of a request refused for another reason.
pub fn model_of(body: &[u8]) -> Option<String> {
    #[derive(Deserialize)]
    struct ModelOnly {
        model: Option<String>,
    }
    serde_json::from_slice::<ModelOnly>(body)
        .ok()?
        .model
        .filter(|m| !m.is_empty())
}

/// Turn a serde error into a 400 that names the offending parameter. Runs
/// only on the error path, so the path tracking costs nothing on success.
fn describe_error(body: &[u8], err: serde_json::Error) -> ApiError {
    if err.is_syntax() || err.is_eof() {
        return ApiError::invalid(
            format!("We could not parse the JSON body of your request: {err}"),
            None,
        );
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    let path = match serde_path_to_error::deserialize::<_, RequestView>(&mut de) {
        Err(e) => e.path().to_string(),
        Ok(_) => String::new(),
    };
    let param = ["model", "messages", "prompt", "stream_options", "stream"]
        .into_iter()
        .find(|p| {
            path == *p || path.starts_with(&format!("{p}.")) || path.starts_with(&format!("{p}["))
        });
    let message = match param {
        Some(_) => format!("Invalid type for '{path}': {err}"),
        None => format!("Invalid request body: {err}"),
    };
    ApiError::invalid(message, param)
}

/// The text of a chat message `content`: a string, or the `text` parts of an
/// array of content parts.
fn content_text(raw: &RawValue) -> String {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Content {
        Text(String),
        Parts(Vec<Part>),
        Other(serde::de::IgnoredAny),
    }
    #[derive(Deserialize)]
    struct Part {
        #[serde(default)]
        text: Option<String>,
    }
    match serde_json::from_str::<Content>(raw.get()) {
        Ok(Content::Text(s)) => s,
        Ok(Content::Parts(parts)) => parts
            .into_iter()
            .filter_map(|p| p.text)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    }
}

/// The text of a Responses API `input`: the string itself, or the last
/// user item's content (a string or `input_text` parts).
fn response_input_text(raw: &RawValue) -> String {
    // Only the mock reads it, off the data path.
    let text_of = |content: &serde_json::Value| match content {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Array(parts) => parts
            .iter()
            .filter_map(|p| p.get("text").and_then(serde_json::Value::as_str))
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    match serde_json::from_str::<serde_json::Value>(raw.get()) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(serde_json::Value::Array(items)) => items
            .iter()
            .rev()
            .find(|i| i.get("role").and_then(serde_json::Value::as_str) == Some("user"))
            .and_then(|i| i.get("content"))
            .map(text_of)
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn prompt_text(raw: &RawValue) -> Option<String> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Prompt {
        One(String),
        Many(Vec<String>),
    }
    match serde_json::from_str::<Prompt>(raw.get()).ok()? {
        Prompt::One(s) => Some(s),
        Prompt::Many(v) => Some(v.join("\n")),
    }
}

pub fn count_words(s: &str) -> u64 {
    s.split_whitespace().count() as u64
}

/// Where `raw` (borrowed from `body`) sits in `body`. Both point into the same
/// allocation, so the difference of the addresses is the offset.
fn span_in(body: &[u8], raw: &RawValue) -> Range<usize> {
    let start = (raw.get().as_ptr() as usize).saturating_sub(body.as_ptr() as usize);
    start..start + raw.get().len()
}

/// What the gateway reads from an upstream answer (a whole JSON response or one
/// streamed chunk).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct AnswerInfo {
    pub model_span: Option<Range<usize>>,
    pub prompt_tokens: Option<u64>,
    pub completion_tokens: Option<u64>,
    /// The object has a top-level `error` member (an upstream's error
    /// event inside a stream).
    pub error: bool,
    /// The object has a top-level `choices` array (a chat or text
    /// completion). Reliable only from [`inspect_answer`], which walks it
    /// all; the per-event shortcuts may stop before it.
    pub choices: bool,
}

/// `usage` of a chat or text completion, or (`input_tokens`,
/// `output_tokens`) of a Responses object or an Anthropic message, whose
/// input leaves out the tokens read from and written to the prompt cache
/// (`cache_read_input_tokens`, `cache_creation_input_tokens`), counted
/// here as prompt tokens too.
#[derive(Deserialize)]
struct UsageView {
    #[serde(default, alias = "input_tokens")]
    prompt_tokens: Option<u64>,
    #[serde(default, alias = "output_tokens")]
    completion_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
}

impl UsageView {
    /// Prompt tokens, the prompt cache's included (upstream numbers, added
    /// without overflow).
    fn prompt(&self) -> Option<u64> {
        self.prompt_tokens.map(|p| {
            p.saturating_add(self.cache_read_input_tokens.unwrap_or(0))
                .saturating_add(self.cache_creation_input_tokens.unwrap_or(0))
        })
    }
}

/// The token counts of a Responses stream's terminal event
/// (`response.completed`, `.incomplete`, `.failed`), whose `usage` sits
/// inside its `response`: `(input, output)`.
pub fn terminal_usage(event: &[u8]) -> Option<(u64, u64)> {
    #[derive(Deserialize)]
    struct Terminal {
        response: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        usage: Option<UsageView>,
    }
    let usage = serde_json::from_slice::<Terminal>(event)
        .ok()?
        .response
        .usage?;
    Some((
        usage.prompt().unwrap_or(0),
        usage.completion_tokens.unwrap_or(0),
    ))
}

/// Look inside an upstream answer: where its top-level `model` string is,
/// and its `usage` counts. `None` when it is not a JSON object; the caller
/// then passes it through untouched.
///
/// This runs on every answer and every streamed event, so it does not parse
/// the document: it walks the top-level object's structure (strings found
/// with memchr, nested values skipped by bracket depth) and parses only the
/// small `usage` object when there is one. The upstream's JSON is forwarded,
/// not trusted or validated, so a structural walk is all that is needed.
pub fn inspect_answer(body: &[u8]) -> Option<AnswerInfo> {
    let fields = top_level_fields(body, false)?;
    let usage = fields
        .usage
        .and_then(|span| serde_json::from_slice::<UsageView>(&body[span]).ok());
    Some(AnswerInfo {
        model_span: fields.model,
        prompt_tokens: usage.as_ref().and_then(UsageView::prompt),
        completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
        error: fields.error,
        choices: fields.choices,
    })
}

/// [`inspect_answer`] for one streamed event, without walking all of it:
/// the walk stops at the top-level `model` (among the first members of a
/// chunk), and the whole object is walked only when its bytes hold a
/// `"usage"` key followed by an object, which only the last event or two of
/// a stream do, or an `"error"` that is not `null`. Those two are found
/// with a SIMD substring search, far cheaper than a walk; a `"usage"`
/// inside a string value is escaped (`\"usage\"`) and never matches.
pub fn inspect_event(event: &[u8]) -> Option<AnswerInfo> {
    if may_carry_usage(event) || may_carry_error(event) {
        return inspect_answer(event);
    }
    let fields = top_level_fields(event, true)?;
    Some(AnswerInfo {
        model_span: fields.model,
        error: fields.error,
        ..AnswerInfo::default()
    })
}

/// Whether `doc` has a `"usage"` key whose value is an object.
fn may_carry_usage(doc: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"usage\""));
    key_values(doc, &FINDER).any(|value| value == b'{')
}

/// Whether `doc` has an `"error"` key whose value is not `null`.
fn may_carry_error(doc: &[u8]) -> bool {
    static FINDER: std::sync::LazyLock<memchr::memmem::Finder<'static>> =
        std::sync::LazyLock::new(|| memchr::memmem::Finder::new(b"\"error\""));
    key_values(doc, &FINDER).any(|value| value != b'n')
}

/// The first byte of the value after each place `key` (a quoted name)
/// stands as a key in `doc`, at any depth. Inside a string the quotes
/// would be escaped, so every match is a real key or string value.
fn key_values<'a>(
    doc: &'a [u8],
    key: &'a memchr::memmem::Finder<'static>,
) -> impl Iterator<Item = u8> + 'a {
    key.find_iter(doc).filter_map(move |at| {
        let colon = skip_ws(doc, at + key.needle().len());
        (doc.get(colon) == Some(&b':')).then(|| doc.get(skip_ws(doc, colon + 1)).copied())?
    })
}

/// The `type` member of an event (every Anthropic Messages event and
/// every Responses event opens with it); `None` when there is none.
pub fn event_type(event: &[u8]) -> Option<String> {
    let mut kind = None;
    walk_members(event, |key, value| {
        if key == b"type" {
            kind = serde_json::from_slice::<String>(&event[value]).ok();
            return Walk::Stop;
        }
        Walk::Go
    })?;
    kind
}

/// The token counts of an Anthropic `message_start` event, whose `usage`
/// sits inside its `message`: `(input, output)`, the input counting the
/// tokens read from and written to the prompt cache too.
pub fn message_start_usage(event: &[u8]) -> Option<(u64, u64)> {
    #[derive(Deserialize)]
    struct Start {
        message: Inner,
    }
    #[derive(Deserialize)]
    struct Inner {
        usage: Option<UsageView>,
    }
    let u = serde_json::from_slice::<Start>(event).ok()?.message.usage?;
    Some((u.prompt().unwrap_or(0), u.completion_tokens.unwrap_or(0)))
}

/// [`inspect_event`] for the events of one stream, which an upstream sends
/// in one shape: `{"id":"chatcmpl-1","object":"chat.completion.chunk",
/// "created":1,"model":"…` opens every chunk with the same bytes. The bytes
/// before the `model` value of the last event walked are kept; an event
/// that opens with the very same bytes has its `model` value at the same
/// offset (the walk up to there would read the same bytes and decide the
/// same), so it costs one comparison instead of a walk.
#[derive(Debug, Default)]
pub struct EventInspector {
    /// Bytes up to the opening quote of the `model` value; empty when no
    /// event had one yet.
    prefix: Vec<u8>,
}

impl EventInspector {
    pub fn inspect(&mut self, event: &[u8]) -> Option<AnswerInfo> {
        let at = self.prefix.len();
        let same_opening = at > 0 && event.get(..at) == Some(&self.prefix[..]);
        if same_opening
            && event.get(at) == Some(&b'"')
            && !may_carry_usage(event)
            && !may_carry_error(event)
        {
            if let Some(end) = string_end(event, at) {
                return Some(AnswerInfo {
                    model_span: Some(at..end),
                    ..AnswerInfo::default()
                });
            }
        }
        let info = inspect_event(event)?;
        if let Some(span) = &info.model_span {
            if span.start != at || !same_opening {
                self.prefix.clear();
                self.prefix.extend_from_slice(&event[..span.start]);
            }
        }
        Some(info)
    }
}

/// Value spans of the top-level fields the gateway cares about.
#[derive(Debug, Default, PartialEq, Eq)]
struct TopLevel {
    /// The `model` value, quotes included, when it is a string.
    model: Option<Range<usize>>,
    /// The `usage` value, when it is an object.
    usage: Option<Range<usize>>,
    /// An `error` member was seen (before the walk stopped).
    error: bool,
    /// A `choices` array was seen (before the walk stopped).
    choices: bool,
}

/// Walk the members of the top-level object in `doc`. `None` when `doc` is
/// not structurally a JSON object; the first occurrence of a key wins.
/// With `stop_at_model`, the walk ends at the `model` member, and what
/// follows it is not looked at.
fn top_level_fields(doc: &[u8], stop_at_model: bool) -> Option<TopLevel> {
    let mut found = TopLevel::default();
    walk_members(doc, |key, value| {
        match (key, doc[value.start]) {
            (b"model", b'"') if stop_at_model => {
                found.model = Some(value);
                return Walk::Stop;
            }
            (b"model", b'"') if found.model.is_none() => found.model = Some(value),
            // Responses API events carry the model inside `response`, and
            // an Anthropic `message_start` inside `message`.
            (b"response" | b"message", b'{') if found.model.is_none() => {
                let base = value.start;
                walk_members(&doc[value.clone()], |k, v| {
                    if k == b"model" && doc[base + v.start] == b'"' {
                        found.model = Some(base + v.start..base + v.end);
                        return Walk::Stop;
                    }
                    Walk::Go
                });
                if stop_at_model && found.model.is_some() {
                    return Walk::Stop;
                }
            }
            (b"usage", b'{') if found.usage.is_none() => found.usage = Some(value),
            (b"error", c) => found.error |= c != b'n',
            (b"choices", b'[') => found.choices = true,
            _ => {}
        }
        Walk::Go
    })?;
    Some(found)
}

/// Whether a member walk goes on.
enum Walk {
    Go,
    Stop,
}

/// Calls `visit` with each member of the object that `doc` holds (after
/// optional whitespace): the key's bytes (escapes left as they are) and
/// the value's span in `doc`. `None` when `doc` is not structurally an
/// object up to where the walk went; `Some` once `visit` says stop.
fn walk_members(doc: &[u8], mut visit: impl FnMut(&[u8], Range<usize>) -> Walk) -> Option<()> {
    let mut i = skip_ws(doc, 0);
    if doc.get(i) != Some(&b'{') {
        return None;
    }
    i = skip_ws(doc, i + 1);
    if doc.get(i) == Some(&b'}') {
        return Some(());
    }
    loop {
        if doc.get(i) != Some(&b'"') {
            return None;
        }
        let key_end = string_end(doc, i)?;
        let key = &doc[i + 1..key_end - 1];
        i = skip_ws(doc, key_end);
        if doc.get(i) != Some(&b':') {
            return None;
        }
        let start = skip_ws(doc, i + 1);
        let end = value_end(doc, start)?;
        if let Walk::Stop = visit(key, start..end) {
            return Some(());
        }
        i = skip_ws(doc, end);
        match doc.get(i) {
            Some(b',') => i = skip_ws(doc, i + 1),
            Some(b'}') => return Some(()),
            _ => return None,
        }
    }
}

/// Checks a `messages` value that the parser already found to be valid
/// JSON: a non-empty array of objects, each with a string `role`. Walks
/// the bytes instead of building a `Vec` of messages.
fn check_messages(raw: &[u8]) -> Result<(), &'static str> {
    const NOT_AN_ARRAY: &str = "'messages' must be a non-empty array.";
    let mut i = skip_ws(raw, 0);
    if raw.get(i) != Some(&b'[') {
        return Err(NOT_AN_ARRAY);
    }
    i = skip_ws(raw, i + 1);
    if raw.get(i) == Some(&b']') {
        return Err(NOT_AN_ARRAY);
    }
    loop {
        let end = value_end(raw, i).ok_or(NOT_AN_ARRAY)?;
        let mut role = false;
        walk_members(&raw[i..end], |key, value| {
            role |= key == b"role" && raw[i + value.start] == b'"';
            Walk::Go
        })
        .ok_or("Each message must be an object.")?;
        if !role {
            return Err("Each message needs a string 'role'.");
        }
        i = skip_ws(raw, end);
        match raw.get(i) {
            Some(b',') => i = skip_ws(raw, i + 1),
            Some(b']') => return Ok(()),
            _ => return Err(NOT_AN_ARRAY),
        }
    }
}

fn skip_ws(doc: &[u8], mut i: usize) -> usize {
    while matches!(doc.get(i), Some(b' ' | b'\t' | b'\r' | b'\n')) {
        i += 1;
    }
    i
}

/// `doc[start]` is an opening quote: the index just past the closing one.
fn string_end(doc: &[u8], start: usize) -> Option<usize> {
    let mut i = start + 1;
    loop {
        i += memchr::memchr2(b'"', b'\\', doc.get(i..)?)?;
        if doc[i] == b'"' {
            return Some(i + 1);
        }
        i += 2; // a backslash and the byte it escapes
    }
}

/// The index just past the value starting at `doc[start]`: a string, an
/// object or array (nested values skipped by depth), or a scalar.
fn value_end(doc: &[u8], start: usize) -> Option<usize> {
    match *doc.get(start)? {
        b'"' => string_end(doc, start),
        b'{' | b'[' => {
            let mut depth = 0usize;
            let mut i = start;
            loop {
                match *doc.get(i)? {
                    b'"' => {
                        i = string_end(doc, i)?;
                        continue;
                    }
                    b'{' | b'[' => depth += 1,
                    b'}' | b']' => {
                        depth -= 1;
                        if depth == 0 {
                            return Some(i + 1);
                        }
                    }
                    _ => {}
                }
                i += 1;
            }
        }
        _ => {
            let len = doc[start..]
                .iter()
                .position(|b| matches!(b, b',' | b'}' | b']' | b' ' | b'\t' | b'\r' | b'\n'))?;
            (len > 0).then_some(start + len)
        }
    }
}

/// `body` with the bytes in `span` replaced by `with`, as three slices that
/// share `body`'s storage.
pub fn splice(body: &Bytes, span: Range<usize>, with: &Bytes) -> [Bytes; 3] {
    [
        body.slice(..span.start),
        with.clone(),
        body.slice(span.end..),
    ]
}

/// A model name as a JSON string literal, quotes included.
pub fn quoted(name: &str) -> Bytes {
    Bytes::from(serde_json::to_string(name).unwrap_or_else(|_| "\"\"".to_owned()))
}

/// Fuzzing entry point: request validation and answer inspection must
/// never panic, and a located `model` span must hold a JSON string.
#[doc(hidden)]
pub fn fuzz_request_json(data: &[u8]) {
    for endpoint in [Endpoint::Chat, Endpoint::Completions] {
        if let Ok(info) = parse_request(data, endpoint, true) {
            assert_eq!(data[info.model_span.start], b'"');
            assert_eq!(data[info.model_span.end - 1], b'"');
        }
    }
    if let Some(AnswerInfo {
        model_span: Some(span),
        ..
    }) = inspect_answer(data)
    {
        assert_eq!(data[span.start], b'"');
        assert_eq!(data[span.end - 1], b'"');
    }
    // Where serde reads a valid object, the structural walk finds the same
    // (serde also reads a struct from an array, which is not an answer).
    #[derive(Deserialize)]
    struct Reference<'a> {
        #[serde(borrow, default)]
        model: Option<&'a RawValue>,
    }
    let is_object = data.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'{');
    if let Some(reference) = is_object
        .then(|| serde_json::from_slice::<Reference>(data).ok())
        .flatten()
    {
        let expected = reference
            .model
            .filter(|m| m.get().starts_with('"'))
            .map(|m| span_in(data, m));
        assert_eq!(
            top_level_fields(data, false).and_then(|f| f.model),
            expected
        );
        // On a valid object the per-event shortcuts see what the full walk
        // sees (but `choices`, which only the full walk looks for), also for
        // an event that opens like the one before it.
        let whole = inspect_answer(data).map(|info| AnswerInfo {
            choices: false,
            ..info
        });
        let event = |info: Option<AnswerInfo>| {
            info.map(|info| AnswerInfo {
                choices: false,
                ..info
            })
        };
        assert_eq!(event(inspect_event(data)), whole);
        let mut inspector = EventInspector::default();
        assert_eq!(event(inspector.inspect(data)), whole);
        assert_eq!(event(inspector.inspect(data)), whole);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_the_model_and_the_last_user_message() {
        let body = br#"{"messages":[{"role":"user","content":"first"},{"role":"assistant","content":"x"},{"role":"user","content":[{"type":"text","text":"Hello"},{"type":"text","text":"there"}]}], "model" : "DeepSeek-V3.2","stream":true,"stream_options":{"include_usage":true},"tools":[]}"#;
        let info = parse_request(body, Endpoint::Chat, true).unwrap();
        assert_eq!(info.model, "DeepSeek-V3.2");
        assert_eq!(&body[info.model_span.clone()], br#""DeepSeek-V3.2""#);
        assert!(info.stream && info.include_usage);
        assert_eq!(info.prompt_text, "Hello there");
    }

    #[test]
    fn rejects_bad_requests_with_their_param() {
        let cases: &[(&[u8], Endpoint, Option<&str>)] = &[
            (b"", Endpoint::Chat, None),
            (b"[1]", Endpoint::Chat, None),
            (b"{\"model\":", Endpoint::Chat, None),
            (
                br#"{"messages":[{"role":"user","content":"x"}]}"#,
                Endpoint::Chat,
                Some("model"),
            ),
            (br#"{"model":"m"}"#, Endpoint::Chat, Some("messages")),
            (
                br#"{"model":"m","messages":[]}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":"m","messages":"hi"}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":"m","messages":[{"content":"x"}]}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":"m","messages":[1]}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":"m","messages":[{"role":5}]}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":"m","messages":[{"role":"user"}, "x"]}"#,
                Endpoint::Chat,
                Some("messages"),
            ),
            (
                br#"{"model":5,"messages":[{"role":"user"}]}"#,
                Endpoint::Chat,
                Some("model"),
            ),
            (
                br#"{"model":"m","messages":[{"role":"user"}],"stream":"yes"}"#,
                Endpoint::Chat,
                Some("stream"),
            ),
            (br#"{"model":"m"}"#, Endpoint::Completions, Some("prompt")),
            (
                br#"{"model":"m","prompt":{"a":1}}"#,
                Endpoint::Completions,
                Some("prompt"),
            ),
        ];
        for (body, ep, param) in cases {
            match parse_request(body, *ep, false) {
                Err(ApiError::InvalidRequest { param: p, .. }) => {
                    assert_eq!(p, *param, "{}", String::from_utf8_lossy(body))
                }
                other => panic!("{}: {other:?}", String::from_utf8_lossy(body)),
            }
        }
    }

    #[test]
    fn the_structural_walk_finds_top_level_fields_only() {
        let cases: &[(&str, Option<&str>, Option<&str>)] = &[
            (r#"{"model":"m"}"#, Some(r#""m""#), None),
            (
                r#" { "id" : "x" , "model" : "a\"b" , "usage":{"prompt_tokens":1}} "#,
                Some(r#""a\"b""#),
                Some(r#"{"prompt_tokens":1}"#),
            ),
            // Nested `model` keys and look-alikes inside strings are not it.
            (
                r#"{"choices":[{"model":"inner","t":"\"model\":\"no\""}],"model":"outer"}"#,
                Some(r#""outer""#),
                None,
            ),
            (
                r#"{"meta":{"model":"inner"},"n":[1,2,{"a":[]}],"x":null,"y":-1.5e3,"model":"m"}"#,
                Some(r#""m""#),
                None,
            ),
            // A non-string model is left alone; the first occurrence wins.
            (r#"{"model":5,"usage":null}"#, None, None),
            (r#"{"model":"a","model":"b"}"#, Some(r#""a""#), None),
            (r#"{}"#, None, None),
        ];
        for (doc, model, usage) in cases {
            let f = top_level_fields(doc.as_bytes(), false).unwrap_or_else(|| panic!("{doc}"));
            assert_eq!(f.model.map(|r| &doc[r]), *model, "{doc}");
            assert_eq!(f.usage.map(|r| &doc[r]), *usage, "{doc}");
            fuzz_request_json(doc.as_bytes());
        }
        for not_object in [
            "",
            "[]",
            "\"model\"",
            "{\"model\" \"m\"}",
            "{\"a\":1",
            "{\"a\":\"unterminated}",
            "{\"a\":1 \"b\":2}",
        ] {
            assert_eq!(
                top_level_fields(not_object.as_bytes(), false),
                None,
                "{not_object}"
            );
        }
    }

    #[test]
    fn events_are_inspected_up_to_the_model_unless_they_carry_usage() {
        /// An event, its model value and its (prompt, completion) tokens.
        type Case = (&'static str, Option<&'static str>, Option<(u64, u64)>);
        let cases: &[Case] = &[
            (
                r#"{"id":"c","model":"up","choices":[{"delta":{"content":"\"usage\": {"}}]}"#,
                Some(r#""up""#),
                None,
            ),
            (
                r#"{"id":"c","model":"up","choices":[],"usage":{"prompt_tokens":2,"completion_tokens":3}}"#,
                Some(r#""up""#),
                Some((2, 3)),
            ),
            (
                r#"{"id":"c","model":"up","usage" : null}"#,
                Some(r#""up""#),
                None,
            ),
            (
                r#"{"choices":[{"model":"inner"}],"model":"up"}"#,
                Some(r#""up""#),
                None,
            ),
            // Past the model the walk stops: a broken tail is forwarded as is.
            (r#"{"model":"up","choices":[}"#, Some(r#""up""#), None),
        ];
        for (doc, model, usage) in cases {
            let info = inspect_event(doc.as_bytes()).unwrap_or_else(|| panic!("{doc}"));
            assert_eq!(info.model_span.map(|r| &doc[r]), *model, "{doc}");
            let tokens = info.prompt_tokens.zip(info.completion_tokens);
            assert_eq!(tokens, *usage, "{doc}");
            fuzz_request_json(doc.as_bytes());
        }
        assert_eq!(inspect_event(b"[1]"), None);
    }

    #[test]
    fn the_inspector_reuses_the_opening_of_the_last_event_only_when_it_matches() {
        let events = [
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up","choices":[]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up-2","choices":[{"delta":{"content":"x"}}]}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up","choices":[],"usage":{"prompt_tokens":4,"completion_tokens":2}}"#,
            // Same length of opening, other bytes: walked again.
            r#"{"id":"c2","object":"chat.completion.chunk","created":1,"choices":[],"model":"z"}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":5}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"up"}"#,
            r#"{"id":"c1","object":"chat.completion.chunk","created":1,"model":"unterminated"#,
        ];
        let mut inspector = EventInspector::default();
        for event in events {
            assert_eq!(
                inspector.inspect(event.as_bytes()),
                inspect_event(event.as_bytes()),
                "{event}"
            );
        }
    }

    #[test]
    fn fuzz_seeds_replay() {
        let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/fuzz/corpus/request_json");
        for entry in std::fs::read_dir(dir).unwrap() {
            fuzz_request_json(&std::fs::read(entry.unwrap().path()).unwrap());
        }
    }

    #[test]
    fn answers_are_spliced_without_copying() {
        let body = Bytes::from_static(br#"{"id":"x","model":"deepseek-chat","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#);
        let info = inspect_answer(&body).unwrap();
        assert_eq!(info.prompt_tokens, Some(3));
        assert_eq!(info.completion_tokens, Some(5));
        let parts = splice(&body, info.model_span.unwrap(), &quoted("DeepSeek-V3.2"));
        let joined: Vec<u8> = parts.iter().flat_map(|p| p.iter().copied()).collect();
        assert_eq!(
            joined,
            br#"{"id":"x","model":"DeepSeek-V3.2","usage":{"prompt_tokens":3,"completion_tokens":5,"total_tokens":8}}"#
        );
        assert_eq!(parts[0].as_ptr(), body.as_ptr());
        assert!(inspect_answer(b"not json").is_none());
    }
}
