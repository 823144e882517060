//! Translations between the API dialects chat2api speaks, pure and
//! sans-IO: functions of bytes and event translators fed one event at a
//! time, with no socket, no timer (the one clock read is the `created`
//! second of the objects they make) and no knowledge of routing
//! (docs/architecture.md, "Why this layout"). The gateway decides which
//! translation a request needs and feeds it; each direction is tested here
//! on its own.
//!
//! - `chat.rs`: legacy completions ↔ chat, a stream gathered into one
//!   object and one object replayed as a short stream;
//! - `tool_calls.rs`: the one rule that places streamed tool-call pieces;
//! - `responses.rs`: the Responses API over chat (request → chat, chat
//!   answer → Responses object, chat chunks → Responses events);
//! - `anthropic.rs`: the Anthropic Messages API over chat (Anthropic
//!   clients onto chat providers), and Anthropic's error and model shapes;
//! - `anthropic_upstream.rs`: chat onto Anthropic's Messages API (OpenAI
//!   clients onto Anthropic providers).
//!
//! The Responses translation reads and keeps stored responses through
//! [`StoredResponses`], which the gateway's store implements and
//! registers ([`use_store`]): this layer names no gateway type.

use std::sync::OnceLock;

use bytes::Bytes;
use serde_json::Value;

use crate::api::ApiError;

pub mod anthropic;
pub mod anthropic_upstream;
pub mod chat;
pub mod responses;
pub mod tool_calls;

/// One event of a typed stream: its `event:` name (empty for a chat
/// chunk, which has none) and its `data:` JSON.
pub type NamedEvent = (&'static str, Bytes);

/// A chat stream turned into another dialect's typed events, chunk by
/// chunk (sans-IO: `responses::StreamTranslator`,
/// `anthropic::MessagesTranslator`, `anthropic_upstream::FromMessages`).
pub trait EventTranslator: Send {
    /// A whole chat answer as the dialect's one object. An answer that is
    /// no chat completion, carries an `error` or broke off is a 502.
    fn whole(&self, chat: &[u8]) -> Result<Bytes, ApiError>;
    /// Whether a whole chat answer is one (502 otherwise), without keeping
    /// anything of it: before it is streamed as events.
    fn judge(&self, chat: &[u8]) -> Result<(), ApiError> {
        self.whole(chat).map(drop)
    }
    /// The events one chat chunk makes (none, one or several).
    fn chunk(&mut self, chunk: &[u8]) -> Vec<NamedEvent>;
    /// The closing events once the chat stream ended, or the error to end
    /// with when its events made no answer.
    fn finish(&mut self) -> Result<Vec<NamedEvent>, ApiError>;
    /// The events that end a stream that broke off with `message`.
    fn abort(&mut self, message: &str) -> Vec<NamedEvent>;
    /// An error came inside the chat stream: the request failed.
    fn failed(&self) -> bool;
    /// Whether the dialect's streams end with `data: [DONE]` (OpenAI's
    /// do, and its SDKs skip it; Anthropic's end at `message_stop`).
    fn ends_with_done(&self) -> bool;
    /// The dialect's stream is over before the chat stream is (it ended
    /// with an error event): nothing more is read or sent.
    fn ended(&self) -> bool;
    /// Prompt and completion tokens, when the translator counts them
    /// itself (a native Anthropic stream, whose counts come in two
    /// events); `None`: they are read from each chunk's `usage`.
    fn usage(&self) -> Option<(u64, u64)> {
        None
    }
    /// The upstream's answer reached its end marker without `[DONE]` (an
    /// Anthropic stream's `message_stop`): the stream is finished there.
    fn complete(&self) -> bool {
        false
    }
}

/// The responses kept for later turns, as the Responses translation reads
/// and writes them (docs/wire.md §3, "Stored responses"). The gateway's
/// `store.rs` implements it over process memory and, with `sharedState`,
/// Redis; what a request names is brought into memory before it is
/// translated, so every call here is a memory lookup.
pub trait StoredResponses: Send + Sync {
    /// The input items and the output items of the response stored as
    /// `id`.
    fn response(&self, id: &str) -> Option<(Vec<Value>, Vec<Value>)>;
    /// An output item of a stored response, by its id.
    fn item(&self, id: &str) -> Option<Value>;
    /// Keep a finished `response` (its `id` is the key) with the whole
    /// `input` it answered.
    fn keep(&self, response: Value, input: Vec<Value>);
    /// Whether responses are kept at all.
    fn enabled(&self) -> bool;
    /// How long a response is kept, in seconds, and where (for the 400
    /// that says an id is not kept).
    fn kept_for(&self) -> (u64, &'static str);
}

/// No store: nothing is kept or found (until the gateway registers its
/// own, and in this layer's unit tests).
struct NoStore;

impl StoredResponses for NoStore {
    fn response(&self, _: &str) -> Option<(Vec<Value>, Vec<Value>)> {
        None
    }
    fn item(&self, _: &str) -> Option<Value> {
        None
    }
    fn keep(&self, _: Value, _: Vec<Value>) {}
    fn enabled(&self) -> bool {
        true
    }
    fn kept_for(&self) -> (u64, &'static str) {
        (0, "nowhere")
    }
}

static STORE: OnceLock<&'static dyn StoredResponses> = OnceLock::new();

/// Register the process's response store (once; later calls are ignored,
/// the store itself follows config reloads).
pub fn use_store(store: &'static dyn StoredResponses) {
    let _ = STORE.set(store);
}

/// The registered response store.
fn stored() -> &'static dyn StoredResponses {
    STORE.get().copied().unwrap_or(&NoStore)
}
