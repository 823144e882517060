//! A 2xx body judged by what it is, not by its label (docs/wire.md §4):
//! events or one JSON object, sniffed from its first bytes where the label
//! is missing or wrong; a whole answer collected within its bounds; a plain
//! answer with the client's model spliced in; an upstream's error passed on
//! in the OpenAI shape.

use bytes::Bytes;

use super::Response;
use crate::api::{ApiError, Body};
use crate::gateway::json;
use crate::gateway::Gateway;
use crate::sse::SseDecoder;
use crate::stats::Tally;
use crate::translate::{anthropic, chat as translate, responses};
use crate::upstream::UpstreamResponse;

/// Whether an answer's `Content-Type` is `media` (RFC 9110 §8.3.1: the
/// type and subtype, case-insensitive, before any parameters).
pub(super) fn is_media_type(head: &crate::http1::ResponseHead, media: &[u8]) -> bool {
    head.header("content-type").is_some_and(|ct| {
        let end = ct
            .iter()
            .position(|b| *b == b';' || b.is_ascii_whitespace())
            .unwrap_or(ct.len());
        ct[..end].eq_ignore_ascii_case(media)
    })
}

/// What the upstream's 2xx body turned out to be.
pub(super) enum Answer {
    /// Server-sent events, to be re-framed as they come; the first piece
    /// of the body when it was read to tell.
    Stream(Option<Bytes>),
    /// One JSON object (SSE gathered into one where a plain answer was
    /// asked for).
    Whole(Bytes),
}

/// Judge the body by what it is, not by its label (docs/wire.md §4): an upstream
/// may stream where a plain answer was asked for, label its events
/// `application/json`, or answer a stream request with one object.
///
/// - stream asked: SSE (by `Content-Type`, or by its first bytes) is
///   streamed; anything else is collected whole;
/// - plain asked: the body is collected; SSE is gathered into one object
///   (`messages`: an Anthropic provider's events into one `message`,
///   else chat chunks into one completion).
///
/// Whether a whole answer is a JSON object at all is left to the one walk
/// that reads it ([`plain_answer`], [`translate::answer_to_events`]).
pub(super) async fn judge_and_collect(
    gw: &Gateway,
    resp: &mut UpstreamResponse,
    stream: bool,
    messages: bool,
) -> Result<Answer, ApiError> {
    if stream && is_media_type(resp.head(), b"text/event-stream") {
        return Ok(Answer::Stream(None));
    }
    let body = if stream {
        // Read until the opening tells (a first piece may be a lone CRLF,
        // or cut inside `data:`).
        let wait = gw.config.limits.stream_idle_timeout;
        let mut first: Vec<u8> = Vec::new();
        let mut ended = false;
        loop {
            match tokio::time::timeout(wait, resp.data()).await {
                Err(_) => return Err(ApiError::UpstreamTimeout),
                Ok(Err(e)) => return Err(ApiError::Upstream(e.to_string())),
                Ok(Ok(Some(piece))) => first.extend_from_slice(&piece),
                Ok(Ok(None)) => ended = true,
            }
            match sniff_sse(&first) {
                Some(true) => return Ok(Answer::Stream(Some(Bytes::from(first)))),
                Some(false) => break,
                None if ended || first.len() > SNIFF_BYTES => break,
                None => {}
            }
        }
        let rest = match ended {
            true => Bytes::new(),
            false => collect(gw, resp).await?,
        };
        first.extend_from_slice(&rest);
        Bytes::from(first)
    } else {
        collect(gw, resp).await?
    };
    if looks_like_sse(&body) {
        let mut decoder = SseDecoder::new();
        decoder.push(body);
        // Nothing after `[DONE]` belongs to the answer.
        let events: Vec<Bytes> = std::iter::from_fn(|| decoder.finish())
            .take_while(|ev| !ev.is_done())
            .map(|ev| ev.data)
            .collect();
        let gathered = match messages {
            true => anthropic::gather_events(events.iter().map(|e| &e[..])),
            false => translate::aggregate_events(events.iter().map(|e| &e[..])),
        };
        return gathered.map(Answer::Whole).ok_or_else(|| {
            match events.iter().find_map(|e| carried_error(e)) {
                Some(message) => {
                    ApiError::Upstream(format!("the upstream's stream carried an error: {message}"))
                }
                None => ApiError::Upstream(
                    "the upstream streamed events that do not make up a completion".into(),
                ),
            }
        });
    }
    Ok(Answer::Whole(body))
}

/// The most of an unlabelled body read to tell SSE from JSON.
const SNIFF_BYTES: usize = 64;

/// Whether a body opens like an event stream: after an optional BOM and
/// blank lines, a comment or a `data`, `event`, `id` or `retry` field.
pub(super) fn looks_like_sse(body: &[u8]) -> bool {
    sniff_sse(body) == Some(true)
}

/// [`looks_like_sse`] on the start of a body: `None` while the bytes so
/// far could still become either (empty, blank lines, part of a BOM or of
/// a field name).
pub(super) fn sniff_sse(body: &[u8]) -> Option<bool> {
    const BOM: &[u8] = b"\xEF\xBB\xBF";
    if body.len() < BOM.len() && BOM.starts_with(body) {
        return None;
    }
    let body = body.strip_prefix(BOM).unwrap_or(body);
    let start = body.iter().position(|b| !matches!(b, b'\r' | b'\n'))?;
    let line = &body[start..];
    if line[0] == b':' {
        return Some(true);
    }
    let fields: [&[u8]; 4] = [b"data:", b"event:", b"id:", b"retry:"];
    if fields.iter().any(|f| line.starts_with(f)) {
        return Some(true);
    }
    match fields.iter().any(|f| f.starts_with(line)) {
        true => None,
        false => Some(false),
    }
}

/// The message of a JSON object's non-null `error` member (its
/// `message`, or the error itself written out).
pub(super) fn carried_error(doc: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(doc).ok()?;
    let error = v.get("error").filter(|e| !e.is_null())?;
    Some(responses::error_message(error))
}

/// 502 for a 2xx body that is not an answer, naming what it looks like.
pub(super) fn not_an_answer(body: &[u8]) -> ApiError {
    let trimmed = body.trim_ascii_start();
    let object = trimmed.first() == Some(&b'{')
        && serde_json::from_slice::<serde::de::IgnoredAny>(trimmed).is_ok();
    let what = if object {
        match carried_error(trimmed) {
            Some(message) => format!("an error: {message}"),
            None => "a JSON object that is not an answer".to_owned(),
        }
    } else if trimmed.is_empty() {
        "an empty body".to_owned()
    } else if trimmed.first() == Some(&b'<') {
        "HTML".to_owned()
    } else {
        let shown: String = String::from_utf8_lossy(&trimmed[..trimmed.len().min(60)])
            .chars()
            .filter(|c| !c.is_control())
            .collect();
        format!("a body that is not a JSON object ({shown:?})")
    };
    ApiError::Upstream(format!("the upstream answered 200 with {what}"))
}

/// A whole JSON answer with `model` set back to the client's name; 502
/// when it is not a JSON object (empty, HTML, text), is an `error` object,
/// or (`completion`: a chat or text completion was asked for) has no
/// `choices`.
pub(super) fn plain_answer(
    answer: Bytes,
    client_model: &Bytes,
    completion: bool,
    tally: &mut Option<Tally>,
) -> Result<Response, ApiError> {
    let info = json::inspect_answer(&answer).ok_or_else(|| not_an_answer(&answer))?;
    // An error object with a 2xx status is still an error; a completion
    // without its choices is none.
    if info.error || (completion && !info.choices) {
        return Err(not_an_answer(&answer));
    }
    if let Some(t) = tally.as_mut() {
        t.tokens(
            info.prompt_tokens.unwrap_or(0),
            info.completion_tokens.unwrap_or(0),
        );
    }
    let mut resp = Response::json(200, Bytes::new());
    resp.body = match info.model_span {
        Some(span) => Body::Spliced(json::splice(&answer, span, client_model)),
        None => Body::Full(answer),
    };
    Ok(resp)
}

/// A whole plain answer or error body: at most `maxAnswerBytes`, all of it
/// within `requestTimeout` of its head (docs/wire.md §6), else 502 or 504.
pub(super) async fn collect(gw: &Gateway, resp: &mut UpstreamResponse) -> Result<Bytes, ApiError> {
    let limits = &gw.config.limits;
    match resp
        .collect(limits.max_answer_bytes, gw.config.request_timeout)
        .await
    {
        Ok(body) => Ok(body),
        Err(e) => Err(super::failure::api_error(&e)),
    }
}

/// An upstream 4xx/5xx: its status and body, wrapped in the OpenAI error
/// shape when it is not already in it (docs/wire.md §4). A body that stalls or
/// breaks is our 504 or 502 instead.
pub(super) async fn passthrough_error(
    gw: &Gateway,
    status: u16,
    resp: &mut UpstreamResponse,
) -> Response {
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
        crate::api::error::error_body(&message, "upstream_error", None, Some(&status.to_string()))
    };
    let mut r = Response::json(status, body);
    r.error = Some("upstream_status");
    if let Some(v) = resp.head().header_bytes("retry-after") {
        r.headers.push(("Retry-After", v));
    }
    r
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sse_is_told_from_its_first_bytes() {
        for sse in [
            &b"data: {}"[..],
            b": ping",
            b"\r\n\r\nevent: x",
            b"\xEF\xBB\xBFid: 1",
            b"retry:",
        ] {
            assert_eq!(sniff_sse(sse), Some(true), "{sse:?}");
        }
        for undecided in [&b""[..], b"\r\n", b"\xEF\xBB", b"da", b"\n\nevent", b"re"] {
            assert_eq!(sniff_sse(undecided), None, "{undecided:?}");
        }
        for other in [&b"{\"id\":1}"[..], b"<html>", b"dat x", b"ok"] {
            assert_eq!(sniff_sse(other), Some(false), "{other:?}");
        }
    }
}
