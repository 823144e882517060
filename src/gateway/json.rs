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

use super::error::ApiError;

/// Which endpoint a request body is for: it decides the required fields.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Endpoint {
    Chat,
    Completions,
}

#[derive(Deserialize)]
struct RequestView<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(borrow, default)]
    messages: Option<Vec<MessageView<'a>>>,
    #[serde(borrow, default)]
    prompt: Option<&'a RawValue>,
    #[serde(default)]
    stream: Option<bool>,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
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
}

/// Validate a request body for `endpoint` (SPEC §4: 400 on malformed JSON,
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
        .ok_or_else(|| ApiError::invalid("Missing required parameter: 'model'.", Some("model")))?;
    let model: String = serde_json::from_str(raw_model.get())
        .map_err(|_| ApiError::invalid("'model' must be a string.", Some("model")))?;
    if model.is_empty() {
        return Err(ApiError::invalid(
            "'model' must not be empty.",
            Some("model"),
        ));
    }
    let mut info = RequestInfo {
        model,
        model_span: span_in(body, raw_model),
        stream: view.stream.unwrap_or(false),
        include_usage: view
            .stream_options
            .and_then(|o| o.include_usage)
            .unwrap_or(false),
        prompt_text: String::new(),
        prompt_words: 0,
    };
    match endpoint {
        Endpoint::Chat => {
            let messages = view.messages.ok_or_else(|| {
                ApiError::invalid("Missing required parameter: 'messages'.", Some("messages"))
            })?;
            if messages.is_empty() {
                return Err(ApiError::invalid(
                    "'messages' must be a non-empty array.",
                    Some("messages"),
                ));
            }
            if want_text {
                for m in &messages {
                    info.prompt_words += m.content.map_or(0, |c| count_words(&content_text(c)));
                }
                if let Some(last) = messages.iter().rev().find(|m| m.role == "user") {
                    info.prompt_text = last.content.map(content_text).unwrap_or_default();
                }
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
}

#[derive(Deserialize)]
struct AnswerView<'a> {
    #[serde(borrow, default)]
    model: Option<&'a RawValue>,
    #[serde(default)]
    usage: Option<UsageView>,
}

#[derive(Deserialize)]
struct UsageView {
    #[serde(default)]
    prompt_tokens: Option<u64>,
    #[serde(default)]
    completion_tokens: Option<u64>,
}

/// Look inside an upstream answer. `None` when it is not a JSON object; the
/// caller then passes it through untouched.
pub fn inspect_answer(body: &[u8]) -> Option<AnswerInfo> {
    let view: AnswerView = serde_json::from_slice(body).ok()?;
    let usage = view.usage;
    Some(AnswerInfo {
        model_span: view
            .model
            .filter(|m| m.get().starts_with('"'))
            .map(|m| span_in(body, m)),
        prompt_tokens: usage.as_ref().and_then(|u| u.prompt_tokens),
        completion_tokens: usage.as_ref().and_then(|u| u.completion_tokens),
    })
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
