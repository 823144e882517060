//! One attempt at one deployment, and its answer for the client
//! (docs/architecture.md, steps 8–9).
//!
//! The request body goes out as `prefix | upstream model | suffix` slices of
//! the client's own body (or as the translation the provider needs: chat
//! for `completions: "chat"` and `responses: "chat"` providers and for
//! Messages requests to chat providers, Messages for Anthropic providers);
//! a plain answer comes back with `model` spliced to the client's name the
//! same way; a streamed answer is re-framed event by event by
//! [`UpstreamStream`], each event written the moment it is complete.
//!
//! - `failure.rs`: how an attempt ended, and a failure's scope and cause
//!   (status classes, `Retry-After`);
//! - `judge.rs`: a 2xx body judged by what it is, not by its label, and
//!   collected; plain answers and passed-on errors;
//! - `audio.rs`: audio and transcript answers.

mod audio;
pub(crate) mod failure;
mod judge;

pub use failure::{retry_after, Attempt, FailedAttempt};

use bytes::Bytes;
use std::sync::Arc;

use super::json::{self, RequestInfo};
use super::router::{Cause, Pick, Scope};
use super::stream::pace::PreparedStream;
use super::stream::upstream::{Native, Translation, UpstreamStream};
use super::stream::EventStream;
use super::{stream_response, Gateway, Response};
use crate::api::{ApiError, Endpoint};
use crate::http1::RequestHead;
use crate::sse::encode::event_fields;
use crate::stats::Tally;
use crate::translate::anthropic_upstream::{self, FromMessages};
use crate::translate::{anthropic, chat as translate, responses, EventTranslator};
use crate::upstream::{Upstream, UpstreamError, UpstreamRequest, UpstreamResponse};
use audio::{byte_answer, transcript_answer};
use failure::{api_error, classify_error, classify_status};
use judge::{
    collect, is_media_type, judge_and_collect, not_an_answer, passthrough_error, plain_answer,
    Answer,
};

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

/// One attempt at `pick`'s deployment over `upstream`: the request sent
/// as the provider needs it (the client's body with the upstream model
/// spliced in, or its translation: chat for a `completions`/`responses:
/// "chat"` provider and for Messages requests to chat providers, Messages
/// for an Anthropic provider), and the answer judged and made into the
/// client's (`answer_for`). `Done` carries the client's answer, success or
/// the client's own error; `Failed` a failure another deployment may not
/// have (docs/wire.md §2).
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
        // Our own cap or our own open-file limit, not the upstream's
        // failure: nothing rests, and no other deployment is tried (on the
        // same origin it would queue as long again, and any other needs a
        // descriptor too); the client gets 503 with Retry-After.
        Err(e @ (UpstreamError::QueueTimeout { .. } | UpstreamError::OutOfDescriptors(_))) => {
            return Attempt::Done(Response::error(&api_error(&e)));
        }
        Err(e) => {
            let (scope, cause) = classify_error(&e);
            let answer = Response::error(&api_error(&e));
            return FailedAttempt::attempt(answer, scope, cause, 0, None);
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
    let answer = match judge_and_collect(gw, &mut resp, stream, anthropic).await {
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
            if let (Some(t), Some(usage)) = (tally.as_mut(), json::inspect_answer(&answer)) {
                t.tokens(
                    usage.prompt_tokens.unwrap_or(0),
                    usage.completion_tokens.unwrap_or(0),
                );
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
