//! Stored responses in Redis (docs/config.md "Several instances"): when
//! `sharedState.redis` is set, the responses chat2api makes are written
//! there too, so that any instance continues any conversation, and a
//! deletion on one instance holds on all.
//!
//! - `c2a:{resp:ID}`: a hash with `response` (the object as sent) and
//!   `input` (the items it answered), both JSON text; or, once deleted,
//!   `deleted` (a tombstone, kept as long as the response would have been).
//! - `c2a:{item:ITEM}`: the id of the response that made output item
//!   `ITEM` (set once: a later response cannot take an item over).
//!
//! Both expire with `responsesStore.ttl`. Writes are sent without waiting;
//! reads wait at most `sharedState.timeout` and happen only for a request
//! that names a stored response or item.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use bytes::Bytes;

use super::{tag, Script, SharedState};

static FORGET_SCRIPT: Script = Script::new(include_str!("forget.lua"));

/// What Redis holds under a response id.
#[derive(Debug)]
pub enum SharedResponse {
    /// The response object and the input items it answered (JSON text).
    Found { response: Bytes, input: Bytes },
    /// Deleted (on any instance) before it expired.
    Deleted,
    /// Never stored there, or expired.
    Missing,
    /// Redis did not answer (down, or slower than `sharedState.timeout`):
    /// decide from this instance's memory.
    Unavailable,
}

impl SharedState {
    /// Writes a stored response, and the index of its output items, for
    /// every instance; both expire after `ttl`. Sent without waiting on
    /// this worker's connection; a failure is counted in `/stats`
    /// `sharedState.errors` (the response stays in this instance's memory).
    pub fn put_response(
        &self,
        id: &str,
        response: Bytes,
        input: Bytes,
        items: &[String],
        ttl: Duration,
    ) {
        let ttl_ms = ttl.as_millis().max(1) as u64;
        let record = tag("resp", id);
        let mut pipe = redis::pipe();
        pipe.cmd("HSET")
            .arg(&record)
            .arg("response")
            .arg(response.as_ref())
            .arg("input")
            .arg(input.as_ref())
            .ignore()
            .cmd("PEXPIRE")
            .arg(&record)
            .arg(ttl_ms)
            .ignore();
        for item in items {
            pipe.cmd("SET")
                .arg(tag("item", item))
                .arg(id)
                .arg("NX")
                .arg("PX")
                .arg(ttl_ms)
                .ignore();
        }
        let Some(mut conn) = self.worker_connection() else {
            self.stats.shared_state.errors.fetch_add(1, Relaxed);
            return;
        };
        let (stats, timeout) = (self.stats.clone(), self.timeout);
        tokio::spawn(async move {
            let call = pipe.query_async::<()>(&mut conn);
            if !matches!(tokio::time::timeout(timeout, call).await, Ok(Ok(()))) {
                stats.shared_state.errors.fetch_add(1, Relaxed);
            }
        });
    }

    /// The response stored as `id`, as Redis holds it.
    pub async fn fetch_response(&self, id: &str) -> SharedResponse {
        let mut cmd = redis::cmd("HMGET");
        cmd.arg(tag("resp", id))
            .arg("response")
            .arg("input")
            .arg("deleted");
        type Fields = (Option<Vec<u8>>, Option<Vec<u8>>, Option<Vec<u8>>);
        match self.query::<Fields>(cmd).await {
            Some((_, _, Some(_))) => SharedResponse::Deleted,
            Some((Some(response), Some(input), None)) => SharedResponse::Found {
                response: Bytes::from(response),
                input: Bytes::from(input),
            },
            Some(_) => SharedResponse::Missing,
            None => SharedResponse::Unavailable,
        }
    }

    /// The id of the response that made output item `item`; `None` when
    /// Redis does not know it or did not answer.
    pub async fn item_owner(&self, item: &str) -> Option<String> {
        let mut cmd = redis::cmd("GET");
        cmd.arg(tag("item", item));
        self.query::<Option<String>>(cmd).await.flatten()
    }

    /// Deletes the response stored as `id` for every instance (a tombstone
    /// that lives `ttl`): whether Redis held it; `None` when Redis did not
    /// answer.
    pub async fn delete_response(&self, id: &str, ttl: Duration) -> Option<bool> {
        if !self.is_up() {
            self.fell_back();
            return None;
        }
        let mut conn = self.worker_connection()?;
        let keys = [tag("resp", id)];
        let args = [(ttl.as_millis().max(1) as u64).to_string()];
        let value = self
            .answer(FORGET_SCRIPT.run(&mut conn, &keys, &args))
            .await?;
        redis::from_redis_value::<i64>(value)
            .ok()
            .map(|had| had == 1)
    }

    /// One command on this worker's connection, waiting at most the
    /// timeout; `None` (and Redis marked down) when it did not answer.
    async fn query<T: redis::FromRedisValue>(&self, cmd: redis::Cmd) -> Option<T> {
        if !self.is_up() {
            self.fell_back();
            return None;
        }
        let Some(mut conn) = self.worker_connection() else {
            self.went_down("cannot be reached from this thread");
            return None;
        };
        self.answer(cmd.query_async::<T>(&mut conn)).await
    }
}
