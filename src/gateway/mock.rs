//! The built-in `mock` provider: deterministic answers with no network, in the
//! exact shapes of the OpenAI API: chat and text completions (plain and
//! streamed), embeddings, moderations, images, speech and transcripts.
//! Responses and Anthropic Messages requests are answered as the chat
//! requests they become, and turned back by the same translations a chat
//! provider's answers go through (`Gateway::mock_translated`), so both have
//! one shape whoever answers.
//!
//! It answers with a configured text, or says plainly that it is the mock and
//! echoes the last user message. Streams go word by word at the profile's
//! pace (time to first token, delay and jitter between words), with injected
//! failures drawn per request, so that benchmarks and SDK tests have a real
//! stream.

use bytes::Bytes;
use serde_json::json;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::json::{count_words, RequestInfo};
use super::stream::pace::{random, MadeEvent, Paced, PacedSource, Pacer};
use crate::api::Endpoint;
use crate::config::{MockFailures, MockProfile};
use crate::stats::unix_time;
use std::time::Duration;

/// What the mock answers: its text, and why it stopped.
pub struct Answer {
    pub text: String,
    /// `stop`, or `length` when the request's `max_tokens` (or
    /// `max_completion_tokens`, `max_output_tokens`) cut it, a word per
    /// token.
    pub finish: &'static str,
}

/// The answer for a request: `answer_tokens` words long when the profile
/// says (the text repeated or cut), then cut to the request's limit.
pub fn answer_text(profile: &MockProfile, info: &RequestInfo) -> Answer {
    let text = sized(profile, base_text(profile.text.as_deref(), info));
    match info.max_tokens {
        Some(max) if count_words(&text) > max => Answer {
            text: text
                .split_whitespace()
                .take(max as usize)
                .collect::<Vec<_>>()
                .join(" "),
            finish: "length",
        },
        _ => Answer {
            text,
            finish: "stop",
        },
    }
}

/// `text` as long as `profile.answer_tokens` says, in words.
fn sized(profile: &MockProfile, text: String) -> String {
    match profile.answer_tokens {
        Some(n) => text
            .split_whitespace()
            .cycle()
            .take(n as usize)
            .collect::<Vec<_>>()
            .join(" "),
        None => text,
    }
}

fn base_text(configured: Option<&str>, info: &RequestInfo) -> String {
    match configured {
        Some(text) => text.to_owned(),
        None if info.prompt_text.is_empty() => {
            "This answer comes from chat2api's built-in mock provider; no upstream was called.".to_owned()
        }
        None => format!(
            "This answer comes from chat2api's built-in mock provider; no upstream was called. You said: {}",
            info.prompt_text
        ),
    }
}

fn next_id(endpoint: Endpoint) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    let n = NEXT.fetch_add(1, Relaxed);
    match endpoint {
        Endpoint::Chat => format!("chatcmpl-mock-{n:08x}"),
        Endpoint::Completions => format!("cmpl-mock-{n:08x}"),
        Endpoint::Embeddings => format!("embd-mock-{n:08x}"),
        Endpoint::Moderations => format!("modr-mock-{n:08x}"),
        Endpoint::Images => format!("img-mock-{n:08x}"),
        Endpoint::Responses => format!("resp_mock{n:016x}"),
        Endpoint::Messages => format!("msg_mock{n:016x}"),
        Endpoint::Speech | Endpoint::Transcriptions | Endpoint::Translations => {
            format!("audio-mock-{n:08x}")
        }
    }
}

/// Samples per second of the mock's speech (OpenAI's `pcm` rate).
const SPEECH_RATE: u32 = 24_000;
/// Seconds of audio per spoken word.
const SECONDS_PER_WORD: f32 = 0.25;
/// The longest mock speech, in seconds.
const MAX_SPEECH_SECONDS: f32 = 30.0;

/// The mock's speech for `/v1/audio/speech`: a quiet 440 Hz tone, a quarter
/// second per word of `input`, as 16-bit mono samples at 24 kHz. `pcm`
/// asks for the bare samples (`audio/pcm`); every other format gets a WAV
/// file (`audio/wav`): the mock encodes no MP3, Opus, AAC or FLAC.
pub fn speech(info: &RequestInfo) -> (&'static str, Bytes) {
    let seconds = (info.prompt_words.max(1) as f32 * SECONDS_PER_WORD).min(MAX_SPEECH_SECONDS);
    let samples = (seconds * SPEECH_RATE as f32) as usize;
    let pcm = info.audio_format.as_deref() == Some("pcm");
    let data_len = samples * 2;
    let mut out = Vec::with_capacity(44 + data_len);
    if !pcm {
        // RIFF/WAVE header, PCM format chunk, then the data chunk.
        out.extend_from_slice(b"RIFF");
        out.extend_from_slice(&(36 + data_len as u32).to_le_bytes());
        out.extend_from_slice(b"WAVEfmt ");
        out.extend_from_slice(&16u32.to_le_bytes());
        out.extend_from_slice(&1u16.to_le_bytes()); // PCM
        out.extend_from_slice(&1u16.to_le_bytes()); // mono
        out.extend_from_slice(&SPEECH_RATE.to_le_bytes());
        out.extend_from_slice(&(SPEECH_RATE * 2).to_le_bytes()); // bytes per second
        out.extend_from_slice(&2u16.to_le_bytes()); // block align
        out.extend_from_slice(&16u16.to_le_bytes()); // bits per sample
        out.extend_from_slice(b"data");
        out.extend_from_slice(&(data_len as u32).to_le_bytes());
    }
    for i in 0..samples {
        let t = i as f32 / SPEECH_RATE as f32;
        let v = (t * 440.0 * std::f32::consts::TAU).sin() * 2000.0;
        out.extend_from_slice(&(v as i16).to_le_bytes());
    }
    let content_type = if pcm { "audio/pcm" } else { "audio/wav" };
    (content_type, Bytes::from(out))
}

/// What the mock "hears" in an uploaded file: the configured text, or a
/// sentence naming the file and its size; as long as the profile says.
pub fn transcript_text(endpoint: Endpoint, profile: &MockProfile, info: &RequestInfo) -> String {
    if let Some(text) = &profile.text {
        return sized(profile, text.clone());
    }
    let form = info.form.as_ref();
    let name = form
        .and_then(|f| f.filename.as_deref())
        .unwrap_or("the audio");
    let bytes = form.and_then(|f| f.file.as_ref()).map_or(0, |f| f.len());
    let what = match endpoint {
        Endpoint::Translations => "translation",
        _ => "transcription",
    };
    sized(
        profile,
        format!("This is chat2api's mock {what} of {name} ({bytes} bytes)."),
    )
}

/// A whole transcription or translation in the form's `response_format`:
/// `json` (default) and `verbose_json` as JSON, `text`, `srt` and `vtt` as
/// text. Returns the content type and the body.
pub fn transcript(endpoint: Endpoint, text: &str, info: &RequestInfo) -> (&'static str, Bytes) {
    let format = info
        .form
        .as_ref()
        .and_then(|f| f.response_format.as_deref())
        .unwrap_or("json");
    let duration = count_words(text) as f32 * SECONDS_PER_WORD;
    let stamp = |secs: f32, sep: char| {
        let ms = (secs * 1000.0) as u64;
        format!(
            "{:02}:{:02}:{:02}{sep}{:03}",
            ms / 3_600_000,
            ms / 60_000 % 60,
            ms / 1000 % 60,
            ms % 1000
        )
    };
    match format {
        "text" => (
            "text/plain; charset=utf-8",
            Bytes::from(format!(
                "{text}
"
            )),
        ),
        "srt" => (
            "text/plain; charset=utf-8",
            Bytes::from(format!(
                "1
{} --> {}
{text}

",
                stamp(0.0, ','),
                stamp(duration, ',')
            )),
        ),
        "vtt" => (
            "text/plain; charset=utf-8",
            Bytes::from(format!(
                "WEBVTT

{} --> {}
{text}

",
                stamp(0.0, '.'),
                stamp(duration, '.')
            )),
        ),
        "verbose_json" => {
            let task = match endpoint {
                Endpoint::Translations => "translate",
                _ => "transcribe",
            };
            let doc = json!({"task": task, "language": "english", "duration": duration, "text": text,
                "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": duration, "text": text,
                    "tokens": [], "temperature": 0.0, "avg_logprob": 0.0,
                    "compression_ratio": 1.0, "no_speech_prob": 0.0}]});
            (crate::api::response::JSON, Bytes::from(doc.to_string()))
        }
        _ => (
            crate::api::response::JSON,
            Bytes::from(json!({"text": text}).to_string()),
        ),
    }
}

/// A streamed transcription (`stream=true`, as gpt-4o-transcribe answers):
/// a `transcript.text.delta` event per word, then `transcript.text.done`.
pub fn transcript_events(text: &str) -> Vec<MadeEvent> {
    let mut events: Vec<serde_json::Value> = text
        .split(' ')
        .enumerate()
        .map(|(i, word)| {
            let delta = if i == 0 {
                word.to_owned()
            } else {
                format!(" {word}")
            };
            json!({"type": "transcript.text.delta", "delta": delta})
        })
        .collect();
    events.push(json!({"type": "transcript.text.done", "text": text}));
    events
        .into_iter()
        .map(|e| MadeEvent {
            content: e["type"] == "transcript.text.delta",
            fields: Bytes::new(),
            data: Bytes::from(e.to_string()),
        })
        .collect()
}

/// OpenAI's moderation categories, none of which the mock flags.
const MODERATION_CATEGORIES: &[&str] = &[
    "harassment",
    "harassment/threatening",
    "hate",
    "hate/threatening",
    "illicit",
    "illicit/violent",
    "self-harm",
    "self-harm/instructions",
    "self-harm/intent",
    "sexual",
    "sexual/minors",
    "violence",
    "violence/graphic",
];

/// The mock's image: a 1×1 grey PNG, base64.
const MOCK_PNG: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAAAAAA6fptVAAAACklEQVR4nGNgYAAAAAMAASsJTYQAAAAASUVORK5CYII=";

/// The mock's embedding size when the request names no `dimensions`
/// (OpenAI's text-embedding-3-small).
const DEFAULT_DIMENSIONS: usize = 1536;

/// A deterministic unit vector of `dims` numbers for `text`: the same text
/// always gives the same vector, different texts (almost surely) others.
fn embedding(text: &str, dims: usize) -> Vec<f32> {
    // FNV-1a of the text seeds a xorshift generator.
    let mut state = text.bytes().fold(0xcbf2_9ce4_8422_2325u64, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01b3)
    }) | 1;
    let mut v: Vec<f32> = (0..dims)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect();
    let norm = v
        .iter()
        .map(|x| x * x)
        .sum::<f32>()
        .sqrt()
        .max(f32::MIN_POSITIVE);
    v.iter_mut().for_each(|x| *x /= norm);
    v
}

/// Standard base64 with padding (RFC 4648 §4).
fn base64(bytes: &[u8]) -> String {
    const ABC: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for c in bytes.chunks(3) {
        let n = u32::from(c[0]) << 16
            | u32::from(*c.get(1).unwrap_or(&0)) << 8
            | u32::from(*c.get(2).unwrap_or(&0));
        for (i, shift) in [18, 12, 6, 0].into_iter().enumerate() {
            out.push(if i <= c.len() {
                ABC[(n >> shift & 63) as usize] as char
            } else {
                '='
            });
        }
    }
    out
}

fn usage(prompt: u64, completion: u64) -> serde_json::Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A whole (non-streamed) answer. Returns the body and the token counts.
pub fn complete(endpoint: Endpoint, answer: &Answer, info: &RequestInfo) -> (Bytes, u64, u64) {
    let (text, finish) = (&answer.text[..], answer.finish);
    let completion = count_words(text);
    let prompt = info.prompt_words;
    let body = match endpoint {
        // Responses and Messages requests reach the mock as the chat
        // request they become (`responses.rs`, `anthropic.rs` turn the
        // answer back, as for a chat provider's).
        Endpoint::Chat | Endpoint::Responses | Endpoint::Messages => json!({
            "id": next_id(endpoint),
            "object": "chat.completion",
            "created": unix_time(),
            "model": info.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": finish
            }],
            "usage": usage(prompt, completion),
            "system_fingerprint": "chat2api-mock"
        }),
        Endpoint::Completions => json!({
            "id": next_id(endpoint),
            "object": "text_completion",
            "created": unix_time(),
            "model": info.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": finish}],
            "usage": usage(prompt, completion)
        }),
        Endpoint::Moderations => {
            // Nothing is ever flagged: every category false, every score 0.
            let categories: serde_json::Map<String, serde_json::Value> = MODERATION_CATEGORIES
                .iter()
                .map(|c| (c.to_string(), json!(false)))
                .collect();
            let scores: serde_json::Map<String, serde_json::Value> = MODERATION_CATEGORIES
                .iter()
                .map(|c| (c.to_string(), json!(0.0)))
                .collect();
            let results: Vec<_> = info
                .inputs
                .iter()
                .map(|_| json!({"flagged": false, "categories": categories, "category_scores": scores}))
                .collect();
            json!({"id": next_id(endpoint), "model": info.model, "results": results})
        }
        // Answered by `speech` and `transcript` (audio and text, not JSON).
        Endpoint::Speech | Endpoint::Transcriptions | Endpoint::Translations => {
            json!({"text": text})
        }
        Endpoint::Images => json!({
            "created": unix_time(),
            "data": [{"b64_json": MOCK_PNG, "revised_prompt": info.prompt_text}],
            "usage": {"input_tokens": prompt, "output_tokens": 0, "total_tokens": prompt}
        }),
        Endpoint::Embeddings => {
            let dims = info.dimensions.unwrap_or(DEFAULT_DIMENSIONS);
            let data: Vec<_> = info
                .inputs
                .iter()
                .enumerate()
                .map(|(i, t)| {
                    let v = embedding(t, dims);
                    let value = match info.base64 {
                        true => json!(base64(
                            &v.iter().flat_map(|x| x.to_le_bytes()).collect::<Vec<_>>()
                        )),
                        false => json!(v),
                    };
                    json!({"object": "embedding", "index": i, "embedding": value})
                })
                .collect();
            return (
                Bytes::from(format!(
                    "{}\n",
                    json!({"object": "list", "data": data, "model": info.model,
                        "usage": {"prompt_tokens": prompt, "total_tokens": prompt}})
                )),
                prompt,
                0,
            );
        }
    };
    (Bytes::from(format!("{body}\n")), prompt, completion)
}

/// What the mock does with one request, drawn from its failure shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fate {
    /// Answered as asked.
    Answer,
    /// 429 with `Retry-After`.
    RateLimit,
    /// 500.
    ServerError,
    /// A stream that stops halfway (a plain request is answered).
    CutStream,
}

/// Draw one request's fate from `failures`.
pub fn fate(failures: &MockFailures) -> Fate {
    if failures.rate_limit + failures.server_error + failures.cut_stream <= 0.0 {
        return Fate::Answer;
    }
    let r = random();
    let mut edge = failures.rate_limit;
    if r < edge {
        return Fate::RateLimit;
    }
    edge += failures.server_error;
    if r < edge {
        return Fate::ServerError;
    }
    edge += failures.cut_stream;
    if r < edge {
        return Fate::CutStream;
    }
    Fate::Answer
}

/// The answer of an injected 429 or 500, shaped as OpenAI's.
pub fn failure_answer(fate: Fate, failures: &MockFailures) -> super::Response {
    use super::Response;
    let (status, code, kind, message) = match fate {
        Fate::RateLimit => (
            429,
            "rate_limit_exceeded",
            "requests",
            "Rate limit reached (injected by the mock: failures.rateLimit).",
        ),
        _ => (
            500,
            "server_error",
            "server_error",
            "The server had an error while processing your request (injected by the mock: failures.serverError).",
        ),
    };
    let mut body = crate::api::error::error_body(message, kind, None, Some(code)).to_vec();
    body.push(b'\n');
    let mut resp = Response::json(status, body);
    resp.error = Some(match fate {
        Fate::RateLimit => "mock_rate_limit",
        _ => "mock_server_error",
    });
    if fate == Fate::RateLimit {
        resp.headers
            .push(("Retry-After", Bytes::from(failures.retry_after.to_string())));
    }
    resp
}

/// A streamed chat or completions answer, word by word at the profile's
/// pace ([`Paced`]).
pub type MockStream = Paced<MockChunks>;

/// The events of a mock stream. Each is built when it is due, so an open
/// stream holds its text and a cursor, not every event at once.
pub struct MockChunks {
    endpoint: Endpoint,
    id: String,
    created: u64,
    model: String,
    text: String,
    /// Byte offset in `text` of the next word.
    pos: usize,
    stage: Stage,
    include_usage: bool,
    /// The finishing chunk's `finish_reason`.
    finish: &'static str,
    /// The prompt's size in words, for `usage`.
    pub prompt_tokens: u64,
    /// The answer's size in words, for `usage`.
    pub completion_tokens: u64,
}

/// Where a mock stream is: the role chunk (chat only), the words, the
/// finishing chunk, the usage chunk (when asked for), then `[DONE]`.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Stage {
    Role,
    Words,
    Finish,
    Usage,
    Done,
}

/// `text` streamed word by word as chat or completions chunks, at the
/// pace of `profile`, cut halfway when `fate` says.
pub fn word_stream(
    endpoint: Endpoint,
    answer: &Answer,
    info: &RequestInfo,
    profile: &MockProfile,
    fate: Fate,
    keep_alive: Duration,
) -> MockStream {
    let text = &answer.text[..];
    let words = text.split(' ').filter(|w| !w.is_empty()).count();
    let chunks = MockChunks {
        endpoint,
        id: next_id(endpoint),
        created: unix_time(),
        model: info.model.clone(),
        text: text.to_owned(),
        pos: 0,
        stage: match endpoint {
            Endpoint::Chat => Stage::Role,
            _ => Stage::Words,
        },
        include_usage: info.include_usage,
        finish: answer.finish,
        prompt_tokens: info.prompt_words,
        completion_tokens: words as u64,
    };
    let pacer = Pacer::new(profile, fate == Fate::CutStream, words + 2).keep_alive(keep_alive);
    Paced::new(chunks, pacer)
}

/// The chunks of the mock's chat stream for `answer`, made ahead, each
/// with whether it carries a word (what the pace waits for): for a
/// translation into another dialect's events, paced like the chat stream.
pub fn chat_chunks(answer: &Answer, info: &RequestInfo) -> Vec<(Bytes, bool)> {
    let text = &answer.text[..];
    let mut chunks = MockChunks {
        endpoint: Endpoint::Chat,
        id: next_id(Endpoint::Chat),
        created: unix_time(),
        model: info.model.clone(),
        text: text.to_owned(),
        pos: 0,
        stage: Stage::Role,
        include_usage: true,
        finish: answer.finish,
        prompt_tokens: info.prompt_words,
        completion_tokens: count_words(text),
    };
    let mut out = Vec::new();
    loop {
        let content = chunks.next_is_content();
        match chunks.next_chunk() {
            Some(chunk) => out.push((chunk, content)),
            None => return out,
        }
    }
}

impl PacedSource for MockChunks {
    fn next_event(&mut self) -> Option<(Bytes, Bytes)> {
        self.next_chunk().map(|chunk| (Bytes::new(), chunk))
    }

    fn next_is_content(&self) -> bool {
        self.stage == Stage::Words && self.text[self.pos..].contains(|c| c != ' ')
    }
}

impl MockChunks {
    fn chunk(&self, choices: serde_json::Value, usage: Option<serde_json::Value>) -> Bytes {
        let object = match self.endpoint {
            Endpoint::Chat => "chat.completion.chunk",
            _ => "text_completion",
        };
        let mut v = json!({"id": self.id, "object": object, "created": self.created, "model": self.model, "choices": choices});
        if self.endpoint == Endpoint::Chat {
            v["system_fingerprint"] = json!("chat2api-mock");
        }
        if let Some(u) = usage {
            v["usage"] = u;
        }
        Bytes::from(v.to_string())
    }

    /// The next word with the space before it (none before the first).
    fn next_word(&mut self) -> Option<String> {
        let rest = &self.text[self.pos..];
        let start = rest.find(|c| c != ' ')?;
        let len = rest[start..].find(' ').unwrap_or(rest.len() - start);
        let word = &rest[start..start + len];
        let piece = if self.pos == 0 {
            word.to_owned()
        } else {
            format!(" {word}")
        };
        self.pos += start + len;
        Some(piece)
    }

    /// The next event's JSON, or `None` once they are all out.
    fn next_chunk(&mut self) -> Option<Bytes> {
        loop {
            match self.stage {
                Stage::Role => {
                    self.stage = Stage::Words;
                    let choice = json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null});
                    return Some(self.chunk(json!([choice]), None));
                }
                Stage::Words => match self.next_word() {
                    Some(piece) => {
                        let choice = match self.endpoint {
                            Endpoint::Chat => {
                                json!({"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null})
                            }
                            _ => {
                                json!({"text": piece, "index": 0, "logprobs": null, "finish_reason": null})
                            }
                        };
                        return Some(self.chunk(json!([choice]), None));
                    }
                    None => self.stage = Stage::Finish,
                },
                Stage::Finish => {
                    self.stage = Stage::Usage;
                    let choice = match self.endpoint {
                        Endpoint::Chat => {
                            json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": self.finish})
                        }
                        _ => {
                            json!({"text": "", "index": 0, "logprobs": null, "finish_reason": self.finish})
                        }
                    };
                    return Some(self.chunk(json!([choice]), None));
                }
                Stage::Usage => {
                    self.stage = Stage::Done;
                    if self.include_usage {
                        let u = usage(self.prompt_tokens, self.completion_tokens);
                        return Some(self.chunk(json!([]), Some(u)));
                    }
                }
                Stage::Done => return None,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embeddings_are_deterministic_unit_vectors_and_base64_is_standard() {
        let a = embedding("hello", 32);
        assert_eq!(a, embedding("hello", 32));
        assert_ne!(a, embedding("other", 32));
        let norm: f32 = a.iter().map(|x| x * x).sum();
        assert!((norm - 1.0).abs() < 1e-4, "{norm}");
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
