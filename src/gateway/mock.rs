//! The built-in `mock` provider: deterministic answers with no network, in the
//! exact shapes of the OpenAI API (plain and streamed, chat and completions).
//!
//! It answers with a configured text, or says plainly that it is the mock and
//! echoes the last user message. Streams go word by word, with an optional
//! delay per token, so that benchmarks and SDK tests have a real stream.

use bytes::Bytes;
use serde_json::json;
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::json::{count_words, Endpoint, RequestInfo};
use super::stream::{StreamItem, DONE};
use crate::stats::unix_time;

/// The answer text for a request.
pub fn answer_text(configured: Option<&str>, info: &RequestInfo) -> String {
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
    }
}

fn usage(prompt: u64, completion: u64) -> serde_json::Value {
    json!({"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion})
}

/// A whole (non-streamed) answer. Returns the body and the token counts.
pub fn complete(endpoint: Endpoint, text: &str, info: &RequestInfo) -> (Bytes, u64, u64) {
    let completion = count_words(text);
    let prompt = info.prompt_words;
    let body = match endpoint {
        Endpoint::Chat => json!({
            "id": next_id(endpoint),
            "object": "chat.completion",
            "created": unix_time(),
            "model": info.model,
            "choices": [{
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "logprobs": null,
                "finish_reason": "stop"
            }],
            "usage": usage(prompt, completion),
            "system_fingerprint": "chat2api-mock"
        }),
        Endpoint::Completions => json!({
            "id": next_id(endpoint),
            "object": "text_completion",
            "created": unix_time(),
            "model": info.model,
            "choices": [{"text": text, "index": 0, "logprobs": null, "finish_reason": "stop"}],
            "usage": usage(prompt, completion)
        }),
    };
    (Bytes::from(body.to_string()), prompt, completion)
}

/// A streamed answer: the events are prepared up front (they are small) and
/// handed out one by one, `token_delay` apart.
pub struct MockStream {
    events: VecDeque<Bytes>,
    token_delay: Duration,
    first: bool,
    done: bool,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
}

impl MockStream {
    pub fn new(
        endpoint: Endpoint,
        text: &str,
        info: &RequestInfo,
        token_delay: Duration,
    ) -> MockStream {
        let id = next_id(endpoint);
        let created = unix_time();
        let model = &info.model;
        let words: Vec<&str> = text.split(' ').filter(|w| !w.is_empty()).collect();
        let mut events = VecDeque::with_capacity(words.len() + 3);
        let chunk = |choice: serde_json::Value| -> Bytes {
            let object = match endpoint {
                Endpoint::Chat => "chat.completion.chunk",
                Endpoint::Completions => "text_completion",
            };
            let mut v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [choice]});
            if endpoint == Endpoint::Chat {
                v["system_fingerprint"] = json!("chat2api-mock");
            }
            Bytes::from(v.to_string())
        };
        if endpoint == Endpoint::Chat {
            events.push_back(chunk(json!({"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": null, "finish_reason": null})));
        }
        for (i, w) in words.iter().enumerate() {
            let piece = if i == 0 {
                (*w).to_owned()
            } else {
                format!(" {w}")
            };
            events.push_back(match endpoint {
                Endpoint::Chat => chunk(json!({"index": 0, "delta": {"content": piece}, "logprobs": null, "finish_reason": null})),
                Endpoint::Completions => chunk(json!({"text": piece, "index": 0, "logprobs": null, "finish_reason": null})),
            });
        }
        events.push_back(match endpoint {
            Endpoint::Chat => {
                chunk(json!({"index": 0, "delta": {}, "logprobs": null, "finish_reason": "stop"}))
            }
            Endpoint::Completions => {
                chunk(json!({"text": "", "index": 0, "logprobs": null, "finish_reason": "stop"}))
            }
        });
        let completion = words.len() as u64;
        if info.include_usage {
            let object = match endpoint {
                Endpoint::Chat => "chat.completion.chunk",
                Endpoint::Completions => "text_completion",
            };
            let v = json!({"id": id, "object": object, "created": created, "model": model, "choices": [], "usage": usage(info.prompt_words, completion)});
            events.push_back(Bytes::from(v.to_string()));
        }
        MockStream {
            events,
            token_delay,
            first: true,
            done: false,
            prompt_tokens: info.prompt_words,
            completion_tokens: completion,
        }
    }

    /// Cancel-safe: the only await is the delay before an event, and an event
    /// is removed from the queue only after it.
    pub async fn next(&mut self) -> Option<StreamItem> {
        if self.done {
            return None;
        }
        if !self.token_delay.is_zero() && !self.first && !self.events.is_empty() {
            tokio::time::sleep(self.token_delay).await;
        }
        self.first = false;
        Some(self.pop())
    }

    /// The next event if it is due now: with no token delay, all of them.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        if self.done || !(self.token_delay.is_zero() || self.first) {
            return None;
        }
        self.first = false;
        Some(self.pop())
    }

    fn pop(&mut self) -> StreamItem {
        match self.events.pop_front() {
            Some(ev) => StreamItem::Data([ev, Bytes::new(), Bytes::new()]),
            None => {
                self.done = true;
                StreamItem::Raw(Bytes::from_static(DONE))
            }
        }
    }

    pub fn completed(&self) -> bool {
        self.done
    }
}
