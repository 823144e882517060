//! The response store (docs/wire.md §3, "Stored responses"): the responses
//! chat2api itself makes (a `responses: "chat"` provider's, an Anthropic
//! provider's, the mock's),
//! kept so that a later turn can name them: `previous_response_id`,
//! `item_reference` to any output item of theirs, `GET /v1/responses/{id}`
//! (and `/input_items`), `DELETE /v1/responses/{id}`.
//!
//! One store per process, in memory, kept across config reloads: bounded
//! by count and by bytes (the oldest response goes first) and by age (the
//! `responsesStore` config). It is touched once per Responses request that
//! uses it, never per event: one short lock.
//!
//! With `sharedState.redis` (docs/config.md "Several instances") every
//! response is also written to Redis (`crate::shared`), and Redis decides:
//! before a request that names stored responses or items is translated,
//! [`ResponseStore::sync`] brings what it names into this process's memory
//! (or drops what was deleted on another instance). The translation then
//! reads memory alone, synchronously. While Redis does not answer, each
//! instance continues the conversations it holds itself.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use crate::config::ResponsesStore as Limits;
use crate::shared::{SharedResponse, SharedState};

/// A stored response: the object a client got, and the whole input it
/// answered (the input of the response it continued included). Both are
/// kept as JSON text, which is what their size is counted in: parsed
/// values take several times their text, and the byte bound would not
/// bound the memory. A later turn parses them again.
#[derive(Debug)]
pub struct Stored {
    response: Bytes,
    input: Bytes,
    at: Instant,
    bytes: usize,
    /// Brought from Redis (made by another instance, or before a restart):
    /// dropped here once Redis no longer holds it.
    fetched: bool,
}

impl Stored {
    /// The response object, as it was sent.
    pub fn response_text(&self) -> &Bytes {
        &self.response
    }

    /// The input items it answered.
    pub fn input(&self) -> Vec<Value> {
        serde_json::from_slice(&self.input).unwrap_or_default()
    }

    /// The response's output items.
    pub fn output(&self) -> Vec<Value> {
        output_of(&self.response)
    }
}

fn output_of(response: &[u8]) -> Vec<Value> {
    let response: Value = serde_json::from_slice(response).unwrap_or_default();
    match response.get("output") {
        Some(Value::Array(items)) => items.clone(),
        _ => Vec::new(),
    }
}

#[derive(Default)]
struct Inner {
    by_id: HashMap<String, Arc<Stored>>,
    /// Ids in the order they were stored, for eviction.
    order: VecDeque<String>,
    /// Output item id → the response that made it. Only items chat2api
    /// made are found by reference: a client's own input items could carry
    /// any id, even one of another response's items.
    items: HashMap<String, String>,
    bytes: usize,
}

/// The process's response store. See the module docs.
pub struct ResponseStore {
    inner: Mutex<Inner>,
    limits: Mutex<Limits>,
    /// Redis, when the config shares state between instances.
    shared: Mutex<Option<Arc<SharedState>>>,
}

/// The store of this process.
pub fn store() -> &'static ResponseStore {
    static STORE: OnceLock<ResponseStore> = OnceLock::new();
    STORE.get_or_init(|| ResponseStore::new(Limits::default()))
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// What one index entry costs beyond its two ids (the map's own slots).
const INDEX_ENTRY_BYTES: usize = 64;

impl ResponseStore {
    fn new(limits: Limits) -> ResponseStore {
        ResponseStore {
            inner: Mutex::new(Inner::default()),
            limits: Mutex::new(limits),
            shared: Mutex::new(None),
        }
    }

    /// The bounds of the config in force (a reload applies new ones from
    /// the next response stored), and the Redis it shares responses
    /// through, if any.
    pub fn configure(&self, limits: &Limits, shared: Option<Arc<SharedState>>) {
        *lock(&self.limits) = limits.clone();
        *lock(&self.shared) = shared;
    }

    fn shared(&self) -> Option<Arc<SharedState>> {
        lock(&self.shared).clone()
    }

    /// Whether responses are kept at all (`responsesStore.enabled`).
    pub fn enabled(&self) -> bool {
        lock(&self.limits).enabled
    }

    /// Whether responses are shared with other instances through Redis
    /// (then a request that names one calls [`ResponseStore::sync`] first).
    pub fn is_shared(&self) -> bool {
        lock(&self.shared).is_some()
    }

    /// How long a response is kept, in seconds (for error messages).
    pub fn ttl_secs(&self) -> u64 {
        lock(&self.limits).ttl.as_secs()
    }

    /// Where responses are kept, for error messages.
    pub fn kept_where(&self) -> &'static str {
        match self.is_shared() {
            true => "in the shared Redis",
            false => "in this process only",
        }
    }

    /// Keeps `response` (its `id` is the key) with the `input` it answered;
    /// the oldest responses go to make room. A response larger than the
    /// whole byte bound is not kept. With Redis, it is written there too.
    pub fn put(&self, response: Value, input: Vec<Value>) {
        let limits = lock(&self.limits).clone();
        if !limits.enabled {
            return;
        }
        let Some(id) = response["id"].as_str().map(str::to_owned) else {
            return;
        };
        let item_ids = item_ids(&response);
        let response = Bytes::from(response.to_string());
        let input = Bytes::from(Value::Array(input).to_string());
        if self.put_here(&id, response.clone(), input.clone(), &item_ids, false) {
            if let Some(shared) = self.shared() {
                shared.put_response(&id, response, input, &item_ids, limits.ttl);
            }
        }
    }

    /// Keeps a response in this process's memory; whether it fit.
    fn put_here(
        &self,
        id: &str,
        response: Bytes,
        input: Bytes,
        item_ids: &[String],
        fetched: bool,
    ) -> bool {
        let limits = lock(&self.limits).clone();
        let index: usize = item_ids
            .iter()
            .map(|i| i.len() + id.len() + INDEX_ENTRY_BYTES)
            .sum();
        let bytes = response.len() + input.len() + index;
        if bytes > limits.max_bytes {
            return false;
        }
        let stored = Arc::new(Stored {
            response,
            input,
            at: Instant::now(),
            bytes,
            fetched,
        });
        let mut inner = lock(&self.inner);
        inner.remove(id);
        while !inner.order.is_empty()
            && (inner.order.len() >= limits.max_responses || inner.bytes + bytes > limits.max_bytes)
        {
            let oldest = inner.order.pop_front().unwrap_or_default();
            inner.remove(&oldest);
        }
        for item in item_ids {
            // The response that made an item owns it; a later one that
            // carries it in its input does not take it over.
            inner
                .items
                .entry(item.clone())
                .or_insert_with(|| id.to_owned());
        }
        inner.bytes += bytes;
        inner.order.push_back(id.to_owned());
        inner.by_id.insert(id.to_owned(), stored);
        true
    }

    /// The response stored as `id`, unless it expired.
    pub fn get(&self, id: &str) -> Option<Arc<Stored>> {
        let ttl = lock(&self.limits).ttl;
        let mut inner = lock(&self.inner);
        let stored = inner.by_id.get(id)?.clone();
        if stored.at.elapsed() > ttl {
            inner.remove(id);
            return None;
        }
        Some(stored)
    }

    /// An output item of a stored response, by its id.
    pub fn item(&self, item_id: &str) -> Option<Value> {
        let response_id = lock(&self.inner).items.get(item_id)?.clone();
        let stored = self.get(&response_id)?;
        stored.output().into_iter().find(|i| i["id"] == item_id)
    }

    /// Forgets the response stored as `id` in this process; whether there
    /// was one.
    pub fn forget_here(&self, id: &str) -> bool {
        self.get(id).is_some() && lock(&self.inner).remove(id)
    }

    /// Forgets the response stored as `id`, on every instance when Redis
    /// is shared; whether there was one (here or there).
    pub async fn delete(&self, id: &str) -> bool {
        let ttl = lock(&self.limits).ttl;
        let there = match self.shared().filter(|_| id.len() <= MAX_ID_BYTES) {
            Some(shared) => shared.delete_response(id, ttl).await == Some(true),
            None => false,
        };
        self.forget_here(id) || there
    }

    /// With Redis: brings the responses named by id, and those that made
    /// the output items named, into this process's memory, and drops the
    /// ones deleted on another instance (or expired from Redis after being
    /// brought here). Without Redis, or while it does not answer, memory
    /// stays as it is.
    pub async fn sync(&self, responses: &[String], items: &[String]) {
        let Some(shared) = self.shared() else {
            return;
        };
        // Only what could be an id chat2api made, each once, and a bounded
        // number of them: a request cannot make this instance ask Redis
        // without end.
        let ours = |id: &&String| id.len() <= MAX_ID_BYTES;
        let mut items: Vec<&String> = items.iter().filter(ours).collect();
        items.sort_unstable();
        items.dedup();
        items.truncate(MAX_LOOKUPS);
        let mut ids: Vec<String> = responses.iter().filter(ours).cloned().collect();
        // Items: their owners, asked again (all together, once per
        // request) while some is neither in Redis nor here.
        let mut waits = WRITE_LAG_MS.iter();
        let mut pending = items;
        loop {
            let mut missing = Vec::new();
            for item in pending {
                match shared.item_owner(item).await {
                    Some(owner) => ids.push(owner),
                    None => match lock(&self.inner).items.get(item.as_str()).cloned() {
                        Some(owner) => ids.push(owner),
                        None => missing.push(item),
                    },
                }
            }
            match waits.next() {
                Some(wait) if !missing.is_empty() && shared.is_up() => {
                    tokio::time::sleep(Duration::from_millis(*wait)).await;
                    pending = missing;
                }
                _ => break,
            }
        }
        ids.sort_unstable();
        ids.dedup();
        ids.truncate(MAX_LOOKUPS);
        // Responses: the same, for those Redis does not hold yet.
        let mut pending = ids;
        loop {
            let mut missing = Vec::new();
            for id in pending {
                match shared.fetch_response(&id).await {
                    SharedResponse::Found { response, input } => {
                        if self.get(&id).is_none() {
                            let item_ids =
                                item_ids(&serde_json::from_slice(&response).unwrap_or_default());
                            self.put_here(&id, response, input, &item_ids, true);
                        }
                    }
                    SharedResponse::Deleted => {
                        lock(&self.inner).remove(&id);
                    }
                    SharedResponse::Missing => {
                        let mut inner = lock(&self.inner);
                        match inner.by_id.get(&id).map(|s| s.fetched) {
                            // Brought from Redis, which no longer holds
                            // it: expired there.
                            Some(true) => {
                                inner.remove(&id);
                            }
                            // Made here while Redis was away: kept.
                            Some(false) => {}
                            None => missing.push(id),
                        }
                    }
                    SharedResponse::Unavailable => return,
                }
            }
            match waits.next() {
                Some(wait) if !missing.is_empty() => {
                    tokio::time::sleep(Duration::from_millis(*wait)).await;
                    pending = missing;
                }
                _ => break,
            }
        }
    }
}

/// The longest id looked up in Redis: chat2api's own are under 40 bytes.
const MAX_ID_BYTES: usize = 128;
/// The most ids one request has looked up in Redis (each way).
const MAX_LOOKUPS: usize = 256;

/// The Responses translation's view of the store: memory lookups only
/// (what a request names was brought from Redis by [`ResponseStore::sync`]
/// before it is translated).
impl crate::translate::StoredResponses for ResponseStore {
    fn response(&self, id: &str) -> Option<(Vec<Value>, Vec<Value>)> {
        let stored = self.get(id)?;
        Some((stored.input(), stored.output()))
    }

    fn item(&self, id: &str) -> Option<Value> {
        ResponseStore::item(self, id)
    }

    fn keep(&self, response: Value, input: Vec<Value>) {
        self.put(response, input);
    }

    fn enabled(&self) -> bool {
        ResponseStore::enabled(self)
    }

    fn kept_for(&self) -> (u64, &'static str) {
        (self.ttl_secs(), self.kept_where())
    }
}

/// A response reaches Redis as its answer leaves the instance that made
/// it (the write is not waited for), so a client quick enough to name it
/// at once on another instance can ask before it lands. What Redis does
/// not hold yet (and this instance does not either) is asked again after
/// each of these waits (90 ms in all, once per request whatever it names):
/// only a request naming an id that is nowhere pays them.
const WRITE_LAG_MS: [u64; 4] = [5, 10, 25, 50];

/// The ids of a response's output items.
fn item_ids(response: &Value) -> Vec<String> {
    response["output"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|i| i["id"].as_str().map(str::to_owned))
        .collect()
}

impl Inner {
    fn remove(&mut self, id: &str) -> bool {
        let Some(stored) = self.by_id.remove(id) else {
            return false;
        };
        self.bytes -= stored.bytes;
        self.order.retain(|o| o != id);
        self.items.retain(|_, r| r != id);
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::time::Duration;

    fn response(id: &str, text: &str) -> Value {
        json!({"id": id, "object": "response", "output": [{"type": "message", "id": format!("msg_{id}"),
            "role": "assistant", "content": [{"type": "output_text", "text": text}]}]})
    }

    #[test]
    fn responses_and_their_items_are_found_until_deleted() {
        let s = ResponseStore::new(Limits::default());
        let input = vec![json!({"id": "in_1", "role": "user", "content": "x"})];
        s.put(response("resp_1", "hi"), input);
        assert_eq!(s.get("resp_1").unwrap().output().len(), 1);
        assert_eq!(s.get("resp_1").unwrap().input()[0]["content"], "x");
        assert_eq!(s.item("msg_resp_1").unwrap()["role"], "assistant");
        // A client's input item is no item chat2api made.
        assert!(s.item("in_1").is_none());
        // A later response that carries the item (a replay, or a forged
        // copy) does not take it over, and deleting it loses nothing.
        let forged = json!({"id": "msg_resp_1", "role": "assistant", "content": "FORGED"});
        s.put(response("resp_2", "again"), vec![forged]);
        assert!(s.forget_here("resp_2"));
        assert_eq!(s.item("msg_resp_1").unwrap()["content"][0]["text"], "hi");
        assert!(s.forget_here("resp_1"));
        assert!(s.get("resp_1").is_none() && s.item("msg_resp_1").is_none());
        assert!(!s.forget_here("resp_1"));
    }

    #[test]
    fn the_oldest_go_first_by_count_and_by_bytes() {
        let s = ResponseStore::new(Limits {
            max_responses: 2,
            ..Limits::default()
        });
        for id in ["a", "b", "c"] {
            s.put(response(id, "x"), Vec::new());
        }
        assert!(s.get("a").is_none() && s.get("b").is_some() && s.get("c").is_some());
        // What one of the next responses counts: its text, `[]` for its
        // input, its one index entry.
        let one = response("d", &"y".repeat(100)).to_string().len()
            + 2
            + "msg_d".len()
            + "d".len()
            + INDEX_ENTRY_BYTES;
        let s = ResponseStore::new(Limits {
            max_bytes: one * 2,
            ..Limits::default()
        });
        for id in ["d", "e", "f"] {
            s.put(response(id, &"y".repeat(100)), Vec::new());
        }
        assert!(s.get("d").is_none() && s.get("f").is_some());
        assert!(lock(&s.inner).bytes <= one * 2);
        // Larger than the whole bound: not kept, nothing evicted for it.
        s.put(response("huge", &"z".repeat(one * 3)), Vec::new());
        assert!(s.get("huge").is_none() && s.get("f").is_some());
    }

    #[test]
    fn expired_and_disabled_keep_nothing() {
        let s = ResponseStore::new(Limits {
            ttl: Duration::from_millis(1),
            ..Limits::default()
        });
        s.put(response("a", "x"), Vec::new());
        std::thread::sleep(Duration::from_millis(5));
        assert!(s.get("a").is_none() && s.item("msg_a").is_none());
        let s = ResponseStore::new(Limits {
            enabled: false,
            ..Limits::default()
        });
        s.put(response("a", "x"), Vec::new());
        assert!(s.get("a").is_none());
    }
}
