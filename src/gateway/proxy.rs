//! Forwarding one attempt to an OpenAI-compatible upstream, and re-framing its
//! answer for the client.
//!
//! The request body goes out as `prefix | upstream model | suffix` slices of
//! the client's own body; a plain answer comes back with `model` spliced to
//! the client's name the same way; a streamed answer is re-framed event by
//! event by [`UpstreamStream`], each event written the moment it is complete.

use bytes::Bytes;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use super::error::ApiError;
use super::json::{self, Endpoint, RequestInfo};
use super::response::{Body, Response};
use super::router::Pick;
use super::stream::{error_event, EventStream, StreamItem, DONE, KEEP_ALIVE};
use super::{stream_response, translate, Gateway};
use crate::http1::RequestHead;
use crate::sse::SseDecoder;
use crate::stats::Tally;
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};

pub enum Attempt {
    /// The answer to give the client.
    Done(Response),
    /// This account failed in a way another account may not: the response is
    /// what the client gets if no retry is left.
    Failed(Response),
}

/// Statuses after which another account is worth a try: the account's key,
/// quota or the provider's health, not the request, is at fault.
fn is_retryable(status: u16) -> bool {
    matches!(status, 401 | 403 | 408 | 429) || status >= 500
}

#[allow(clippy::too_many_arguments)]
pub async fn forward(
    gw: &Arc<Gateway>,
    pick: &Pick<'_>,
    upstream: &Upstream,
    endpoint: Endpoint,
    head: &RequestHead,
    body: &Bytes,
    info: &RequestInfo,
    client_model: Bytes,
    tally: &mut Option<Tally>,
) -> Attempt {
    // A `completions: "chat"` provider gets a chat request instead, and its
    // answers are turned back into text completions.
    let via_chat = endpoint == Endpoint::Completions && !pick.provider.native_completions;
    let (path, parts) = if via_chat {
        let upstream_model: String =
            serde_json::from_slice(pick.upstream_model).unwrap_or_default();
        match translate::completion_to_chat(body, &upstream_model) {
            Ok(chat) => ("/chat/completions", [chat, Bytes::new(), Bytes::new()]),
            Err(e) => return Attempt::Done(Response::error(&e)),
        }
    } else {
        let path = match endpoint {
            Endpoint::Chat => "/chat/completions",
            Endpoint::Completions => "/completions",
        };
        (
            path,
            json::splice(body, info.model_span.clone(), pick.upstream_model),
        )
    };
    let translate = via_chat.then(|| info.model.clone());
    let request = UpstreamRequest {
        method: "POST",
        path,
        authorization: Some(&pick.account.authorization[..]).filter(|a| !a.is_empty()),
        forward: Some(head),
        content_type: None,
        body: &parts,
        first_byte_timeout: gw.config.request_timeout,
    };
    let mut resp = match upstream.send(request).await {
        Ok(r) => r,
        Err(e) => {
            pick.account.record_failure(None);
            let err = if e.is_timeout() {
                ApiError::UpstreamTimeout
            } else {
                ApiError::Upstream(e.to_string())
            };
            return Attempt::Failed(Response::error(&err));
        }
    };
    let status = resp.status();
    if !(200..300).contains(&status) {
        let retry_after = resp
            .head()
            .header("retry-after")
            .and_then(|v| std::str::from_utf8(v).ok())
            .and_then(|v| v.trim().parse::<u64>().ok())
            .map(Duration::from_secs);
        let answer = passthrough_error(gw, status, &mut resp).await;
        if is_retryable(status) {
            pick.account.record_failure(retry_after);
            return Attempt::Failed(answer);
        }
        return Attempt::Done(answer);
    }
    pick.account.record_success();
    if let Some(t) = tally.as_mut() {
        if !info.stream {
            t.first_token();
        }
    }
    let is_sse = resp
        .head()
        .header("content-type")
        .is_some_and(|ct| ct.len() >= 17 && ct[..17].eq_ignore_ascii_case(b"text/event-stream"));
    if info.stream && is_sse {
        let stream = UpstreamStream {
            response: resp,
            decoder: SseDecoder::new(),
            client_model,
            translate,
            usage: (0, 0),
            inspector: json::EventInspector::default(),
            keep_alive: gw.config.limits.sse_keepalive_interval,
            idle_timeout: gw.config.limits.stream_idle_timeout,
            max_event_bytes: gw.config.limits.max_event_bytes,
            silent: Duration::ZERO,
            upstream_ended: false,
            done: false,
            failed: false,
            ended: false,
        };
        // The caller attaches the tally to whichever answer it returns.
        let stream = EventStream::Upstream(Box::new(stream));
        return Attempt::Done(stream_response(stream, None));
    }
    let answer = match collect(gw, &mut resp).await {
        Ok(b) => b,
        Err(e) => return Attempt::Failed(Response::error(&e)),
    };
    let answer = match &translate {
        Some(name) => translate::chat_to_completion(&answer, name).unwrap_or(answer),
        None => answer,
    };
    Attempt::Done(plain_answer(answer, &client_model, tally))
}

/// A whole JSON answer with `model` set back to the client's name.
fn plain_answer(answer: Bytes, client_model: &Bytes, tally: &mut Option<Tally>) -> Response {
    let mut resp = Response::json(200, Bytes::new());
    let info = json::inspect_answer(&answer).unwrap_or_default();
    if let Some(t) = tally.as_mut() {
        t.tokens(
            info.prompt_tokens.unwrap_or(0),
            info.completion_tokens.unwrap_or(0),
        );
    }
    resp.body = match info.model_span {
        Some(span) => Body::Spliced(json::splice(&answer, span, client_model)),
        None => Body::Full(answer),
    };
    resp
}

/// A whole plain answer or error body: at most `maxAnswerBytes`, all of it
/// within `requestTimeout` of its head (SPEC §6), else 502 or 504.
async fn collect(gw: &Gateway, resp: &mut UpstreamResponse) -> Result<Bytes, ApiError> {
    let limits = &gw.config.limits;
    match resp
        .collect(limits.max_answer_bytes, gw.config.request_timeout)
        .await
    {
        Ok(body) => Ok(body),
        Err(e) if e.is_timeout() => Err(ApiError::UpstreamTimeout),
        Err(e) => Err(ApiError::Upstream(e.to_string())),
    }
}

/// An upstream 4xx/5xx: its status and body, wrapped in the OpenAI error
/// shape when it is not already in it (SPEC §4). A body that stalls or
/// breaks is our 504 or 502 instead.
async fn passthrough_error(gw: &Gateway, status: u16, resp: &mut UpstreamResponse) -> Response {
    let body = match collect(gw, resp).await {
        Ok(body) => body,
        Err(e) => return Response::error(&e),
    };
    #[derive(serde::Deserialize)]
    struct Shape<'a> {
        #[serde(borrow)]
        error: &'a serde_json::value::RawValue,
    }
    let shaped = serde_json::from_slice::<Shape>(&body)
        .map(|s| s.error.get().starts_with('{'))
        .unwrap_or(false);
    let body = if shaped {
        body
    } else {
        let text = String::from_utf8_lossy(&body);
        let message = if text.trim().is_empty() {
            format!("The upstream answered HTTP {status}.")
        } else {
            format!("The upstream answered HTTP {status}: {}", text.trim())
        };
        Bytes::from(
            serde_json::json!({"error": {"message": message, "type": "upstream_error", "param": null, "code": status.to_string()}})
                .to_string(),
        )
    };
    let mut r = Response::json(status, body);
    r.error = Some("upstream_status");
    if let Some(v) = resp.head().header_bytes("retry-after") {
        r.headers.push(("Retry-After", v));
    }
    r
}

/// A streamed upstream answer, re-framed event by event.
pub struct UpstreamStream {
    response: UpstreamResponse,
    decoder: SseDecoder,
    /// The client's model name as a JSON literal, spliced into every chunk.
    client_model: Bytes,
    /// For a `completions: "chat"` provider: the client's model name; each
    /// chat chunk is turned into a `text_completion` chunk.
    translate: Option<String>,
    /// Token counts from the upstream's `usage`, when it sent one.
    usage: (u64, u64),
    /// Finds each event's `model` (SSE events of one stream share a shape).
    inspector: json::EventInspector,
    keep_alive: Duration,
    idle_timeout: Duration,
    /// `maxEventBytes`: the most one event may grow to before the stream
    /// is failed.
    max_event_bytes: usize,
    /// How long the upstream has been silent, in whole keep-alive intervals.
    silent: Duration,
    upstream_ended: bool,
    done: bool,
    failed: bool,
    ended: bool,
}

impl UpstreamStream {
    /// Cancel-safe: the only await is `UpstreamResponse::data`, itself
    /// cancel-safe, and all state changes happen after it returns.
    pub async fn next(&mut self) -> Option<StreamItem> {
        loop {
            if let Some(item) = self.next_ready() {
                return Some(item);
            }
            if self.ended {
                return None;
            }
            // A keep-alive interval of 0 turns the comments off: then only
            // the idle timeout bounds the wait.
            let wait = match self.keep_alive.is_zero() {
                true => self.idle_timeout,
                false => self.keep_alive.min(self.idle_timeout),
            };
            match tokio::time::timeout(wait, self.response.data()).await {
                Ok(Ok(Some(piece))) => {
                    self.silent = Duration::ZERO;
                    self.decoder.push(piece);
                }
                Ok(Ok(None)) => self.upstream_done(),
                Ok(Err(e)) => return Some(self.fail(stream_error(e))),
                Err(_) => {
                    self.silent += wait;
                    if self.silent >= self.idle_timeout {
                        return Some(self.fail(ApiError::Upstream(format!(
                            "the upstream sent nothing for {} s",
                            self.silent.as_secs()
                        ))));
                    }
                    return Some(StreamItem::Raw(Bytes::from_static(KEEP_ALIVE)));
                }
            }
        }
    }

    /// The next item from what has already arrived, without waiting: lets
    /// the writer send every event that is here in one write, and never
    /// hold one back for the next.
    pub fn next_ready(&mut self) -> Option<StreamItem> {
        if self.ended {
            return None;
        }
        loop {
            let event = match self.decoder.next_event() {
                Some(ev) => Some(ev),
                // The last event, without its blank line (see `upstream_done`).
                None if self.upstream_ended => self.decoder.finish().filter(|ev| {
                    ev.is_done()
                        || serde_json::from_slice::<serde::de::IgnoredAny>(&ev.data).is_ok()
                }),
                None => None,
            };
            if let Some(ev) = event {
                if ev.is_done() {
                    return Some(self.finish_done());
                }
                return Some(StreamItem::Data(self.rewrite(ev.data)));
            }
            if self.upstream_ended {
                // SPEC §4: `[DONE]` even when the upstream forgot it.
                return Some(self.finish_done());
            }
            if self.decoder.pending_len() > self.max_event_bytes {
                return Some(self.fail(ApiError::Upstream(format!(
                    "a streamed event exceeded maxEventBytes ({} bytes)",
                    self.max_event_bytes
                ))));
            }
            match self.response.try_data() {
                Poll::Ready(Ok(Some(piece))) => {
                    self.silent = Duration::ZERO;
                    self.decoder.push(piece);
                }
                Poll::Ready(Ok(None)) => self.upstream_done(),
                Poll::Ready(Err(e)) => return Some(self.fail(stream_error(e))),
                Poll::Pending => return None,
            }
        }
    }

    /// The upstream's body ended. An upstream may close without ending its
    /// last line; the line is ended here so that the decoder hands out that
    /// last event, which `next_ready` keeps only when it is `[DONE]` or
    /// complete JSON: a whole chunk whose newline was forgotten is kept, half
    /// a chunk cut by a closed connection is not.
    fn upstream_done(&mut self) {
        self.upstream_ended = true;
        self.decoder.push(Bytes::from_static(b"\n"));
    }

    /// True once nothing more will come: `[DONE]` or an error was handed out.
    pub fn is_ended(&self) -> bool {
        self.ended
    }

    fn rewrite(&mut self, data: Bytes) -> [Bytes; 3] {
        let data = match &self.translate {
            Some(name) => translate::chat_to_completion(&data, name).unwrap_or(data),
            None => data,
        };
        let info = self.inspector.inspect(&data).unwrap_or_default();
        if info.prompt_tokens.is_some() || info.completion_tokens.is_some() {
            self.usage = (
                info.prompt_tokens.unwrap_or(0),
                info.completion_tokens.unwrap_or(0),
            );
        }
        match info.model_span {
            // A translated chunk already names the client's model.
            Some(span) if self.translate.is_none() => json::splice(&data, span, &self.client_model),
            _ => [data, Bytes::new(), Bytes::new()],
        }
    }

    pub fn usage(&self) -> (u64, u64) {
        self.usage
    }

    fn finish_done(&mut self) -> StreamItem {
        self.done = true;
        self.ended = true;
        StreamItem::Raw(Bytes::from_static(DONE))
    }

    fn fail(&mut self, err: ApiError) -> StreamItem {
        self.failed = true;
        self.ended = true;
        StreamItem::Raw(error_event(&err))
    }

    pub fn completed(&self) -> bool {
        self.done
    }

    pub fn failed(&self) -> bool {
        self.failed
    }
}

fn stream_error(e: UpstreamError) -> ApiError {
    ApiError::Upstream(format!("the stream broke off: {e}"))
}
