//! Audio endpoints' answers (docs/wire.md §4, "Audio"): speech audio,
//! transcripts and subtitles passed on as the upstream sent them, each
//! piece as it arrives; a JSON transcript judged like any JSON answer, or
//! turned into a transcript's events where a stream was asked for.

use bytes::Bytes;

use super::judge::{carried_error, collect, is_media_type, not_an_answer, plain_answer};
use super::Response;
use crate::api::{ApiError, Endpoint};
use crate::gateway::json::RequestInfo;
use crate::gateway::stream::pace::PreparedStream;
use crate::gateway::stream::passthrough::ByteStream;
use crate::gateway::stream::EventStream;
use crate::gateway::{stream_response, Gateway};
use crate::stats::Tally;
use crate::upstream::UpstreamResponse;

/// A JSON transcript (`{"text": …}`): whole, its `model` (if any) set to
/// the client's name; or, where a stream was asked for, as the events a
/// streamed transcription sends (`transcript.text.delta`, `.done`).
pub(super) fn transcript_answer(
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
pub(super) async fn byte_answer(
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
