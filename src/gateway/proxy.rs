//! Forwarding one attempt to an OpenAI-compatible upstream, and re-framing its
//! answer for the client.
//!
//! The request body goes out as `prefix | upstream model | suffix` slices of
//! the client's own body; a plain answer comes back with `model` spliced to
//! the client's name the same way; a streamed answer is re-framed event by
//! event by [`UpstreamStream`], each event written the moment it is complete.

use bytes::Bytes;
use std::sync::Arc;
use std::time::Duration;

use super::json::{self, RequestInfo};
use super::router::{Cause, Failure, Pick, Scope};
use super::stream::pace::PreparedStream;
use super::stream::passthrough::ByteStream;
use super::stream::upstream::{Native, Translation, UpstreamStream};
use super::stream::EventStream;
use super::{stream_response, Gateway, Response};
use crate::api::{ApiError, Body, Endpoint};
use crate::http1::RequestHead;
use crate::sse::encode::event_fields;
use crate::sse::SseDecoder;
use crate::stats::Tally;
use crate::translate::anthropic_upstream::{self, FromMessages};
use crate::translate::{anthropic, chat as translate, responses, EventTranslator};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};

/// How one attempt at one deployment ended.
pub enum Attempt {
    /// The answer to give the client.
    Done(Response),
    /// This deployment failed in a way another may not.
    Failed(FailedAttempt),
}

/// One failed attempt, described once: the answer the client gets if no
/// retry is left, the scope the failure belongs to (deployment, account or
/// origin), and its cause with the status and `Retry-After` it came with.
/// The retry loop records it in the router's health from this value alone.
pub struct FailedAttempt {
    pub answer: Response,
    pub scope: Scope,
    pub failure: Failure,
}

impl FailedAttempt {
    /// The [`Attempt`] that failed this way.
    fn attempt(
        answer: Response,
        scope: Scope,
        cause: Cause,
        status: u16,
        retry_after: Option<Duration>,
    ) -> Attempt {
        Attempt::Failed(FailedAttempt {
            answer,
            scope,
            failure: Failure {
                cause,
                status,
                retry_after,
            },
        })
    }
}

/// The scope an upstream status belongs to, or `None` when the request
/// itself is at fault (other 4xx): then nothing rests, no other deployment
/// is tried, and the client gets the upstream's answer (docs/wire.md §2).
fn classify_status(status: u16) -> Option<(Scope, Cause)> {
    match status {
        429 => Some((Scope::Deployment, Cause::RateLimit)),
        // The client's organization and project are never forwarded, so a
        // refused key is the account's own.
        401 | 403 => Some((Scope::Account, Cause::KeyRefused)),
        408 => Some((Scope::Deployment, Cause::Timeout)),
        _ if status >= 500 => Some((Scope::Deployment, Cause::ServerError)),
        _ => None,
    }
}

/// The scope of a failure before any answer: connections that cannot be
/// made belong to the origin, a missed deadline or a broken answer to the
/// deployment.
fn classify_error(e: &UpstreamError) -> (Scope, Cause) {
    match e {
        UpstreamError::Connect(_) | UpstreamError::ConnectTimeout | UpstreamError::Tls(_) => {
            (Scope::Origin, Cause::Unreachable)
        }
        e if e.is_timeout() => (Scope::Deployment, Cause::Timeout),
        _ => (Scope::Deployment, Cause::ServerError),
    }
}

/// Upstream answer headers the client gets too (docs/wire.md §4): the request id
/// and OpenAI's timing and rate-limit figures (Anthropic's: `request-id` and
/// its `anthropic-ratelimit-*` family).
const PASSED_HEADERS: &[&str] = &[
    "x-request-id",
    "request-id",
    "anthropic-ratelimit-requests-limit",
    "anthropic-ratelimit-requests-remaining",
    "anthropic-ratelimit-requests-reset",
    "anthropic-ratelimit-tokens-limit",
    "anthropic-ratelimit-tokens-remaining",
    "anthropic-ratelimit-tokens-reset",
    "anthropic-ratelimit-input-tokens-limit",
    "anthropic-ratelimit-input-tokens-remaining",
    "anthropic-ratelimit-input-tokens-reset",
    "anthropic-ratelimit-output-tokens-limit",
    "anthropic-ratelimit-output-tokens-remaining",
    "anthropic-ratelimit-output-tokens-reset",
    "openai-processing-ms",
    "x-ratelimit-limit-requests",
    "x-ratelimit-limit-tokens",
    "x-ratelimit-remaining-requests",
    "x-ratelimit-remaining-tokens",
    "x-ratelimit-reset-requests",
    "x-ratelimit-reset-tokens",
];

/// The upstream's [`PASSED_HEADERS`] that it sent.
fn passed_headers(head: &crate::http1::ResponseHead) -> Vec<(&'static str, Bytes)> {
    PASSED_HEADERS
        .iter()
        .filter_map(|name| Some((*name, head.header_bytes(name)?)))
        .collect()
}

/// `resp` with `passed` added to its headers.
fn with_upstream_headers(mut resp: Response, passed: &[(&'static str, Bytes)]) -> Response {
    resp.headers.extend_from_slice(passed);
    resp
}

/// `Retry-After` (RFC 9110 §10.2.3): delay-seconds or an HTTP-date, as the
/// time from now; a date in the past is no delay.
pub fn retry_after(value: &[u8]) -> Option<Duration> {
    let text = std::str::from_utf8(value).ok()?.trim();
    if let Ok(secs) = text.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    let at = http_date(text)?;
    Some(Duration::from_secs(
        at.saturating_sub(crate::stats::unix_time()),
    ))
}

/// An IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`, RFC 9110 §5.6.7) as
/// Unix seconds; the obsolete forms are not accepted.
fn http_date(text: &str) -> Option<u64> {
    let rest = text.get(5..)?; // "Sun, "
    let mut parts = rest.split(' ');
    let day: u64 = parts.next()?.parse().ok()?;
    const MONTHS: [&str; 12] = [
        "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
    ];
    let name = parts.next()?;
    let month = MONTHS.iter().position(|m| *m == name)? as u64 + 1;
    let year: u64 = parts.next()?.parse().ok()?;
    let mut hms = parts.next()?.split(':').map(|n| n.parse::<u64>().ok());
    let (h, m, s) = (hms.next()??, hms.next()??, hms.next()??);
    if parts.next()? != "GMT"
        || !(1..=31).contains(&day)
        || year < 1970
        || h > 23
        || m > 59
        || s > 60
    {
        return None;
    }
    // Days from the civil date (Howard Hinnant's algorithm), March-based.
    let (y, mo) = if month <= 2 {
        (year - 1, month + 9)
    } else {
        (year, month - 3)
    };
    let era = y / 400;
    let yoe = y - era * 400;
    let doy = (153 * mo + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = (era * 146_097 + doe).checked_sub(719_468)?;
    Some(days * 86_400 + h * 3600 + m * 60 + s)
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
    // A `completions: "chat"` or `responses: "chat"` provider gets a chat
    // request instead, and its answers are turned back into the
    // endpoint's shape.
    let mut translate = None;
    // Hosted tools the Responses translation left out, named in a header.
    let mut dropped_tools = None;
    let anthropic = pick.provider.anthropic;
    let via_chat = match endpoint {
        _ if anthropic => false,
        Endpoint::Completions => !pick.provider.native_completions,
        Endpoint::Responses => !pick.provider.native_responses,
        // A chat provider gets Messages requests as chat requests.
        Endpoint::Messages => true,
        _ => false,
    };
    let (path, parts) = if anthropic && endpoint != Endpoint::Messages {
        // A native Anthropic provider: chat (and Responses, through chat)
        // as a Messages request; its answers back through chat.
        let upstream_model: String =
            serde_json::from_slice(pick.upstream_model).unwrap_or_default();
        let mut then: Option<Box<dyn EventTranslator>> = None;
        let chat = match endpoint {
            Endpoint::Responses => responses_via_chat(pick, body, info, &upstream_model, tally)
                .map(|(chat, seed, dropped)| {
                    dropped_tools = dropped;
                    then = Some(Box::new(responses::StreamTranslator::new(seed)));
                    chat
                }),
            _ => Ok(body.clone()),
        };
        let messages =
            chat.and_then(|chat| anthropic_upstream::chat_to_messages(&chat, &upstream_model));
        match messages {
            Ok((messages, seed)) => {
                translate = Some(Translation::FromMessages(Box::new(FromMessages::new(
                    seed, then,
                ))));
                ("/messages", [messages, Bytes::new(), Bytes::new()])
            }
            Err(e) => return Attempt::Done(Response::error(&e)),
        }
    } else if via_chat {
        let upstream_model: String =
            serde_json::from_slice(pick.upstream_model).unwrap_or_default();
        let chat = match endpoint {
            Endpoint::Responses => responses_via_chat(pick, body, info, &upstream_model, tally)
                .map(|(chat, seed, dropped)| {
                    dropped_tools = dropped;
                    translate = Some(Translation::Events(Box::new(
                        responses::StreamTranslator::new(seed),
                    )));
                    chat
                }),
            Endpoint::Messages => anthropic::request_to_chat(body, &info.model, &upstream_model)
                .map(|(chat, seed)| {
                    translate = Some(Translation::Events(Box::new(
                        anthropic::MessagesTranslator::new(seed),
                    )));
                    chat
                }),
            _ => translate::completion_to_chat(body, &upstream_model).inspect(|_| {
                translate = Some(Translation::Completions(info.model.clone()));
            }),
        };
        match chat {
            Ok(chat) => ("/chat/completions", [chat, Bytes::new(), Bytes::new()]),
            Err(e) => return Attempt::Done(Response::error(&e)),
        }
    } else if info.form.is_some() {
        // A form field holds the name as text, not as a JSON string.
        let upstream_model: String =
            serde_json::from_slice(pick.upstream_model).unwrap_or_default();
        let name = Bytes::from(upstream_model);
        (
            endpoint.upstream_path(),
            json::splice(body, info.model_span.clone(), &name),
        )
    } else {
        let path = endpoint.upstream_path();
        (
            path,
            json::splice(body, info.model_span.clone(), pick.upstream_model),
        )
    };
    let account_fields = account_fields(pick, head);
    let request = UpstreamRequest {
        method: "POST",
        path,
        authorization: Some(&pick.account.authorization[..]).filter(|a| !a.is_empty()),
        account_fields: &account_fields,
        forward: Some(head),
        // A form keeps its own type: the boundary is in it.
        content_type: info.form.as_ref().and(head.header("content-type")),
        body: &parts,
        first_byte_timeout: gw.config.request_timeout,
    };
    let mut resp = match upstream.send(request).await {
        Ok(r) => r,
        Err(e) => {
            let (scope, cause) = classify_error(&e);
            let err = if e.is_timeout() {
                ApiError::UpstreamTimeout
            } else {
                ApiError::Upstream(e.to_string())
            };
            return FailedAttempt::attempt(Response::error(&err), scope, cause, 0, None);
        }
    };
    let status = resp.status();
    if !(200..300).contains(&status) {
        let retry_after = resp.head().header("retry-after").and_then(retry_after);
        let answer = passthrough_error(gw, status, &mut resp).await;
        let answer = with_upstream_headers(answer, &passed_headers(resp.head()));
        return match classify_status(status) {
            Some((scope, cause)) => {
                FailedAttempt::attempt(answer, scope, cause, status, retry_after)
            }
            None => Attempt::Done(answer),
        };
    }
    if let Some(t) = tally.as_mut() {
        if !info.stream {
            t.first_token();
        }
    }
    let mut passed = passed_headers(resp.head());
    if let Some(tools) = dropped_tools {
        passed.push(("x-chat2api-dropped-tools", tools));
    }
    // A 2xx that is no answer (empty, HTML, events that make no answer) is
    // the deployment's failure, and is retried elsewhere; a stall is a
    // timeout, anything else a server error.
    let settle = |answer: Result<Response, ApiError>| match answer {
        Ok(answer) => {
            pick.record_success();
            Attempt::Done(with_upstream_headers(answer, &passed))
        }
        Err(e) => {
            let cause = match e {
                ApiError::UpstreamTimeout => Cause::Timeout,
                _ => Cause::ServerError,
            };
            let answer = with_upstream_headers(Response::error(&e), &passed);
            FailedAttempt::attempt(answer, Scope::Deployment, cause, status, None)
        }
    };
    // Audio answers: events are re-framed with the alias restored, asked
    // for or not; a JSON transcript is judged and its model restored like
    // any JSON answer; audio, text and subtitles pass byte for byte.
    let sse = is_media_type(resp.head(), b"text/event-stream");
    if endpoint.passes_bytes() && !sse {
        let transcript =
            endpoint != Endpoint::Speech && is_media_type(resp.head(), b"application/json");
        let answer = match transcript {
            true => match collect(gw, &mut resp).await {
                Ok(body) => transcript_answer(body, &client_model, info, tally),
                Err(e) => Err(e),
            },
            false => byte_answer(gw, endpoint, resp).await,
        };
        return settle(answer);
    }
    let stream = info.stream || (endpoint.passes_bytes() && sse);
    let answer = match judge_and_collect(gw, &mut resp, stream).await {
        Ok(answer) => answer,
        Err(e) => return settle(Err(e)),
    };
    settle(answer_for(
        gw,
        resp,
        answer,
        client_model,
        translate,
        endpoint,
        info,
        tally,
    ))
}

/// A Responses request as the chat request it becomes for this pick's
/// provider (hosted tools dropped or refused as it says), with what the
/// answer must echo, and the names of the hosted tools left out (also
/// written to the record), for the `x-chat2api-dropped-tools` header.
fn responses_via_chat(
    pick: &Pick<'_>,
    body: &[u8],
    info: &RequestInfo,
    upstream_model: &str,
    tally: &mut Option<Tally>,
) -> Result<(Bytes, responses::Seed, Option<Bytes>), ApiError> {
    let (chat, seed) = responses::request_to_chat_with(
        body,
        &info.model,
        upstream_model,
        pick.provider.hosted_tools,
    )?;
    let mut dropped = None;
    if !seed.dropped_tools.is_empty() {
        let names = seed.dropped_tools.join(", ");
        if let Some(t) = tally.as_mut() {
            t.dropped_tools(&names);
        }
        dropped = Some(Bytes::from(names));
    }
    Ok((chat, seed, dropped))
}

/// The account's own header lines for a request from `head`; for an
/// Anthropic provider with `anthropic-version` added when the client named
/// none (an OpenAI client), as Anthropic's API requires one.
pub fn account_fields<'a>(pick: &'a Pick<'_>, head: &RequestHead) -> std::borrow::Cow<'a, [u8]> {
    match pick.provider.anthropic && head.header("anthropic-version").is_none() {
        true => [
            &pick.account.fields[..],
            anthropic_upstream::ANTHROPIC_VERSION,
        ]
        .concat()
        .into(),
        false => pick.account.fields[..].into(),
    }
}

/// Whether an answer's `Content-Type` is `media` (RFC 9110 §8.3.1: the
/// type and subtype, case-insensitive, before any parameters).
fn is_media_type(head: &crate::http1::ResponseHead, media: &[u8]) -> bool {
    head.header("content-type").is_some_and(|ct| {
        let end = ct
            .iter()
            .position(|b| *b == b';' || b.is_ascii_whitespace())
            .unwrap_or(ct.len());
        ct[..end].eq_ignore_ascii_case(media)
    })
}

/// A JSON transcript (`{"text": …}`): whole, its `model` (if any) set to
/// the client's name; or, where a stream was asked for, as the events a
/// streamed transcription sends (`transcript.text.delta`, `.done`).
fn transcript_answer(
    body: Bytes,
    client_model: &Bytes,
    info: &RequestInfo,
    tally: &mut Option<Tally>,
) -> Result<Response, ApiError> {
    if !info.stream {
        return plain_answer(body, client_model, false, tally);
    }
    #[derive(serde::Deserialize)]
    struct Transcript {
        text: String,
    }
    let t: Transcript = serde_json::from_slice(&body).map_err(|_| not_an_answer(&body))?;
    let events = [
        serde_json::json!({"type": "transcript.text.delta", "delta": t.text}),
        serde_json::json!({"type": "transcript.text.done", "text": t.text}),
    ];
    let events = events
        .iter()
        .map(|e| (Bytes::new(), Bytes::from(e.to_string())))
        .collect();
    Ok(stream_response(
        EventStream::Prepared(PreparedStream::ready(events)),
        None,
    ))
}

/// An audio endpoint's 2xx answer, passed on as it comes with the
/// upstream's `Content-Type` (speech audio, transcripts as JSON or text).
/// No answer, 502: an HTML page, speech with an empty body, or JSON where
/// speech was asked for (an error in a 200). An empty text or subtitle
/// transcript is a valid answer (docs/wire.md §4, "Audio"). The first piece is read before the
/// answer begins, so that an empty body can still be told.
async fn byte_answer(
    gw: &Gateway,
    endpoint: Endpoint,
    mut resp: UpstreamResponse,
) -> Result<Response, ApiError> {
    let content_type = resp
        .head()
        .header_bytes("content-type")
        .unwrap_or_else(|| Bytes::from_static(b"application/octet-stream"));
    let is = |media: &[u8]| is_media_type(resp.head(), media);
    if is(b"text/html") {
        return Err(ApiError::Upstream(
            "the upstream answered 200 with HTML".into(),
        ));
    }
    if endpoint == Endpoint::Speech && is(b"application/json") {
        let body = collect(gw, &mut resp).await?;
        let what = match carried_error(&body) {
            Some(message) => format!("an error: {message}"),
            None => "JSON instead of audio".to_owned(),
        };
        return Err(ApiError::Upstream(format!(
            "the upstream answered 200 with {what}"
        )));
    }
    let wait = gw.config.limits.stream_idle_timeout;
    let first = loop {
        match tokio::time::timeout(wait, resp.data()).await {
            Err(_) => {
                return Err(ApiError::Upstream(format!(
                    "the upstream sent its head, then nothing for {} ms",
                    wait.as_millis()
                )))
            }
            Ok(Err(e)) => return Err(ApiError::Upstream(e.to_string())),
            // A silent clip transcribes to nothing: an empty text, srt or
            // vtt transcript is an answer, passed on as one (JSON was
            // judged before, where an empty body is none). Speech with no
            // audio is no answer.
            Ok(Ok(None)) if endpoint != Endpoint::Speech => {
                let mut answer = Response::json(200, Bytes::new());
                answer.content_type = "";
                answer.headers = vec![("Content-Type", content_type)];
                return Ok(answer);
            }
            Ok(Ok(None)) => {
                return Err(ApiError::Upstream(
                    "the upstream answered 200 with an empty body".into(),
                ))
            }
            Ok(Ok(Some(piece))) if piece.is_empty() => {}
            Ok(Ok(Some(piece))) => break piece,
        }
    };
    let stream = ByteStream::new(resp, wait, first);
    let mut answer = stream_response(EventStream::Bytes(Box::new(stream)), None);
    answer.content_type = "";
    answer.headers = vec![("Content-Type", content_type)];
    Ok(answer)
}

/// The client's answer from a judged 2xx body.
#[allow(clippy::too_many_arguments)]
fn answer_for(
    gw: &Gateway,
    resp: UpstreamResponse,
    answer: Answer,
    client_model: Bytes,
    translate: Option<Translation>,
    endpoint: Endpoint,
    info: &RequestInfo,
    tally: &mut Option<Tally>,
) -> Result<Response, ApiError> {
    match answer {
        Answer::Stream(first) => {
            let native = match (endpoint, &translate) {
                (Endpoint::Responses, None) => Native::Responses,
                (Endpoint::Messages, None) => Native::Messages,
                _ => Native::Chat,
            };
            let stream = UpstreamStream::new(
                &gw.config.limits,
                resp,
                client_model,
                translate,
                native,
                first,
            );
            // The caller attaches the tally to whichever answer it returns.
            let stream = EventStream::Upstream(Box::new(stream));
            Ok(stream_response(stream, None))
        }
        Answer::Whole(answer) => {
            // A native Anthropic provider's message: a chat completion
            // first, then on as any chat provider's answer.
            let (answer, translate) = match translate {
                Some(Translation::FromMessages(t)) => {
                    let (seed, then) = t.into_parts();
                    let chat = anthropic_upstream::message_to_chat(&answer, &seed)?;
                    (chat, then.map(Translation::Events))
                }
                other => (answer, other),
            };
            let answer = match translate {
                Some(Translation::Completions(name)) => {
                    translate::chat_to_completion(&answer, &name).unwrap_or(answer)
                }
                Some(Translation::Events(t)) => return translated_answer(&answer, t, info, tally),
                Some(Translation::FromMessages(_)) | None => answer,
            };
            if !info.stream {
                // A chat or text completion has its choices (a translated
                // one was checked when it was made).
                let completion = matches!(endpoint, Endpoint::Chat | Endpoint::Completions);
                return plain_answer(answer, &client_model, completion, tally);
            }
            // A whole answer where a stream was asked for: a short stream,
            // in the dialect asked for.
            if endpoint == Endpoint::Messages {
                return messages_short_stream(answer, &client_model, tally);
            }
            match translate::answer_to_events(&answer, &info.model) {
                Some(events) => {
                    let events = events.into_iter().map(|e| (Bytes::new(), e)).collect();
                    let stream = EventStream::Prepared(PreparedStream::ready(events));
                    Ok(stream_response(stream, None))
                }
                None => Err(not_an_answer(&answer)),
            }
        }
    }
}

/// An Anthropic provider's whole `message` where a stream was asked for
/// (`/v1/messages` passed through): the client's model set, and the
/// events a stream of it would have been, without `[DONE]`; 502 when it
/// is no message.
fn messages_short_stream(
    answer: Bytes,
    client_model: &Bytes,
    tally: &mut Option<Tally>,
) -> Result<Response, ApiError> {
    let info = json::inspect_answer(&answer).ok_or_else(|| not_an_answer(&answer))?;
    if let Some(t) = tally.as_mut() {
        t.tokens(
            info.prompt_tokens.unwrap_or(0),
            info.completion_tokens.unwrap_or(0),
        );
    }
    let message = match info.model_span {
        Some(span) => Bytes::from(json::splice(&answer, span, client_model).concat()),
        None => answer.clone(),
    };
    let events = anthropic::message_to_events(&message).ok_or_else(|| not_an_answer(&answer))?;
    let events = events
        .into_iter()
        .map(|(name, data)| (event_fields(Some(name.as_bytes()), None), data))
        .collect();
    let stream = PreparedStream::ready(events).without_done();
    Ok(stream_response(EventStream::Prepared(stream), None))
}

/// A whole chat answer for a client of another dialect (Responses,
/// Anthropic Messages): its one object, or (a stream was asked for) its
/// event sequence.
fn translated_answer(
    chat: &[u8],
    mut translator: Box<dyn EventTranslator>,
    info: &RequestInfo,
    tally: &mut Option<Tally>,
) -> Result<Response, ApiError> {
    if let (Some(t), Some(usage)) = (tally.as_mut(), json::inspect_answer(chat)) {
        t.tokens(
            usage.prompt_tokens.unwrap_or(0),
            usage.completion_tokens.unwrap_or(0),
        );
    }
    if !info.stream {
        return Ok(Response::json(200, translator.whole(chat)?));
    }
    // Judged as a whole first: an error, no choices, no finish_reason.
    translator.judge(chat)?;
    let Some(chunks) = translate::answer_to_events(chat, &info.model) else {
        return Err(not_an_answer(chat));
    };
    let mut events: Vec<crate::translate::NamedEvent> =
        chunks.iter().flat_map(|c| translator.chunk(c)).collect();
    match translator.finish() {
        Ok(closing) => events.extend(closing),
        Err(e) => return Err(e),
    }
    let events = events
        .into_iter()
        .map(|(name, data)| (event_fields(Some(name.as_bytes()), None), data))
        .collect();
    let mut stream = PreparedStream::ready(events);
    if !translator.ends_with_done() {
        stream = stream.without_done();
    }
    Ok(stream_response(EventStream::Prepared(stream), None))
}

/// What the upstream's 2xx body turned out to be.
enum Answer {
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
/// - plain asked: the body is collected; SSE is gathered into one object.
///
/// Whether a whole answer is a JSON object at all is left to the one walk
/// that reads it ([`plain_answer`], [`translate::answer_to_events`]).
async fn judge_and_collect(
    gw: &Gateway,
    resp: &mut UpstreamResponse,
    stream: bool,
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
        return translate::aggregate_events(events.iter().map(|e| &e[..]))
            .map(Answer::Whole)
            .ok_or_else(|| match events.iter().find_map(|e| carried_error(e)) {
                Some(message) => {
                    ApiError::Upstream(format!("the upstream's stream carried an error: {message}"))
                }
                None => ApiError::Upstream(
                    "the upstream streamed events that do not make up a completion".into(),
                ),
            });
    }
    Ok(Answer::Whole(body))
}

/// The most of an unlabelled body read to tell SSE from JSON.
const SNIFF_BYTES: usize = 64;

/// Whether a body opens like an event stream: after an optional BOM and
/// blank lines, a comment or a `data`, `event`, `id` or `retry` field.
fn looks_like_sse(body: &[u8]) -> bool {
    sniff_sse(body) == Some(true)
}

/// [`looks_like_sse`] on the start of a body: `None` while the bytes so
/// far could still become either (empty, blank lines, part of a BOM or of
/// a field name).
fn sniff_sse(body: &[u8]) -> Option<bool> {
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
fn carried_error(doc: &[u8]) -> Option<String> {
    let v: serde_json::Value = serde_json::from_slice(doc).ok()?;
    let error = v.get("error").filter(|e| !e.is_null())?;
    Some(responses::error_message(error))
}

/// 502 for a 2xx body that is not an answer, naming what it looks like.
fn not_an_answer(body: &[u8]) -> ApiError {
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
fn plain_answer(
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
/// shape when it is not already in it (docs/wire.md §4). A body that stalls or
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

    #[test]
    fn retry_after_takes_seconds_and_http_dates() {
        assert_eq!(retry_after(b" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(
            http_date("Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(784_111_777)
        );
        assert_eq!(http_date("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(
            http_date("Tue, 29 Feb 2028 23:59:59 GMT"),
            Some(1_835_481_599)
        );
        // A date in the past is no delay; a date ahead is its distance.
        assert_eq!(
            retry_after(b"Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(Duration::ZERO)
        );
        let ahead = crate::stats::unix_time() + 120;
        let days = ahead / 86_400;
        let date = format_http_date(ahead);
        let got = retry_after(date.as_bytes()).expect("parsed");
        assert!(
            (119..=120).contains(&got.as_secs()),
            "{date}: {got:?} ({days})"
        );
        for bad in [
            "",
            "soon",
            "-1",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 32 Nov 1994 08:49:37 GMT",
        ] {
            assert_eq!(retry_after(bad.as_bytes()), None, "{bad}");
        }
    }

    /// The inverse of `http_date`, for the test (weekday left generic),
    /// from the access log's RFC 3339 rendering of the same instant.
    fn format_http_date(unix: u64) -> String {
        let iso = crate::stats::access::rfc3339(unix * 1000); // 2026-11-30T00:21:00.000Z
        let (y, m, d, time) = (&iso[..4], &iso[5..7], &iso[8..10], &iso[11..19]);
        const MONTHS: [&str; 12] = [
            "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
        ];
        let month = MONTHS[m.parse::<usize>().expect("month") - 1];
        format!("Mon, {d} {month} {y} {time} GMT")
    }
}
