//! One request's entry in the statistics, carried with the request from the
//! moment it reaches a `/v1/` route until its answer is written.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The most tokens one answer is counted for, each way (2^40, about 10^12:
/// far above any model's context, far below an overflow).
pub const MAX_TOKENS_PER_ANSWER: u64 = 1 << 40;

use super::log::{log_error_index, LogRecord, Text, MODEL_BYTES, REQUEST_ID_BYTES};
use super::{access, KeyUsage, LabelId, Stats, NO_LABEL};

/// What a request holds until its answer ends, beside its statistics: the
/// lease of its client key's rules (`crate::limits::Lease`), told the
/// answer's tokens `(prompt, completion)` as its usage reported them, and
/// whether an answer was given: a complete 2xx answer, or one the client
/// left after its first token (the upstream spent tokens on it).
pub trait Hold: Send {
    fn end(self: Box<Self>, tokens: (u64, u64), answered: bool);
}

/// Which labelled names a request was routed to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RouteIds {
    pub model: LabelId,
    pub provider: LabelId,
    pub account: LabelId,
    pub upstream_model: LabelId,
}

impl Default for RouteIds {
    fn default() -> Self {
        RouteIds {
            model: NO_LABEL,
            provider: NO_LABEL,
            account: NO_LABEL,
            upstream_model: NO_LABEL,
        }
    }
}

/// One `/v1/` request's entry in the statistics, carried along with the
/// request and closed once its answer is written. Dropping it unfinished
/// (a client that went away mid-answer) counts as a failure, logged with
/// status 499 as nginx does.
pub struct Tally {
    stats: Arc<Stats>,
    start: Instant,
    ttft: Option<Duration>,
    tokens: (u64, u64),
    route: RouteIds,
    stream: bool,
    finished: bool,
    request_id: Text<REQUEST_ID_BYTES>,
    requested_model: Text<MODEL_BYTES>,
    /// For the access log, kept only while it is on.
    access: Option<Box<AccessFields>>,
    /// The client key that was presented (its index among the enabled
    /// keys) and its usage counters.
    key: Option<(usize, Arc<KeyUsage>)>,
    hold: Option<Box<dyn Hold>>,
}

/// What only the access log needs to know of a request.
struct AccessFields {
    client: SocketAddr,
    method: &'static str,
    path: String,
    route: Option<Arc<str>>,
    dropped_tools: Option<String>,
}

/// The status logged for a request whose client left before its answer ended.
pub const CLIENT_GONE: u16 = 499;

impl Tally {
    pub fn new(stats: &Arc<Stats>) -> Tally {
        stats.request_started();
        Tally {
            stats: stats.clone(),
            start: Instant::now(),
            ttft: None,
            tokens: (0, 0),
            route: RouteIds::default(),
            stream: false,
            finished: false,
            request_id: Text::default(),
            requested_model: Text::default(),
            access: None,
            key: None,
            hold: None,
        }
    }

    /// The client key the request presented: its index among the enabled
    /// keys, and its usage counters (named in the access log).
    pub fn key(&mut self, index: usize, usage: Arc<KeyUsage>) {
        self.key = Some((index, usage));
    }

    /// The index of the client key the request presented.
    pub fn key_index(&self) -> Option<usize> {
        self.key.as_ref().map(|(i, _)| *i)
    }

    /// Hold `hold` until the answer ends (see [`Hold`]).
    pub fn hold(&mut self, hold: Box<dyn Hold>) {
        self.hold = Some(hold);
    }

    /// Who asked for what, for the access log (a no-op while it is off).
    /// The query string is left out: a key may be in it.
    pub fn request_line(&mut self, client: SocketAddr, method: &'static str, target: &[u8]) {
        if !access::enabled() {
            return;
        }
        let path = target.split(|b| *b == b'?').next().unwrap_or_default();
        self.access = Some(Box::new(AccessFields {
            client,
            method,
            path: String::from_utf8_lossy(path).into_owned(),
            route: None,
            dropped_tools: None,
        }));
    }

    /// `provider/account` of the deployment that answered, for the
    /// access log.
    pub fn route_name(&mut self, name: &Arc<str>) {
        if let Some(a) = self.access.as_mut() {
            a.route = Some(name.clone());
        }
    }

    /// The first token reached the client (the first event of a stream, or
    /// the head of a plain answer).
    pub fn first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.start.elapsed());
        }
    }

    /// The answer's token counts, as its `usage` said. They come from the
    /// upstream, which may say anything: each is capped at
    /// [`MAX_TOKENS_PER_ANSWER`], so that no sum or conversion downstream
    /// (statistics, key budgets, Redis settlements) can overflow.
    pub fn tokens(&mut self, prompt: u64, completion: u64) {
        self.tokens = (
            prompt.min(MAX_TOKENS_PER_ANSWER),
            completion.min(MAX_TOKENS_PER_ANSWER),
        );
    }

    pub fn route(&mut self, route: RouteIds) {
        self.route = route;
    }

    /// The answer's `x-request-id`.
    pub fn request_id(&mut self, id: &[u8]) {
        self.request_id = Text::new(id);
    }

    /// The model the client asked for (logged even when unknown).
    pub fn requested_model(&mut self, model: &str) {
        self.requested_model = Text::new(model.as_bytes());
    }

    /// Tools left out of the request on its way upstream, for the access
    /// log (`dropped=…`).
    pub fn dropped_tools(&mut self, tools: &str) {
        if let Some(a) = self.access.as_mut() {
            a.dropped_tools = Some(tools.to_owned());
        }
    }

    pub fn streamed(&mut self) {
        self.stream = true;
    }

    /// Close the record: `ok` is a completed 2xx answer; `error` the code of
    /// an error answer or of a stream that broke off.
    pub fn finish(mut self, status: u16, ok: bool, error: Option<&'static str>) {
        self.close(status, ok, error);
    }

    fn close(&mut self, status: u16, ok: bool, error: Option<&'static str>) {
        self.finished = true;
        let latency = self.start.elapsed();
        let stats = &self.stats;
        stats.request_finished(ok, latency);
        if let Some(ttft) = self.ttft {
            stats.ttft.record(ttft);
        }
        stats.record_tokens(self.tokens.0, self.tokens.1);
        if let Some((_, usage)) = &self.key {
            usage
                .requests
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            usage
                .prompt_tokens
                .fetch_add(self.tokens.0, std::sync::atomic::Ordering::Relaxed);
            usage
                .completion_tokens
                .fetch_add(self.tokens.1, std::sync::atomic::Ordering::Relaxed);
        }
        if let Some(hold) = self.hold.take() {
            let answered = ok || (status == CLIENT_GONE && self.ttft.is_some());
            hold.end(self.tokens, answered);
        }
        let record = LogRecord {
            time_ms: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_millis() as u64)
                .unwrap_or(0),
            status,
            stream: self.stream,
            error: error.map_or(0, log_error_index),
            latency_us: latency.as_micros() as u64,
            ttft_us: self.ttft.map_or(u64::MAX, |d| d.as_micros() as u64),
            tokens: self.tokens,
            route: self.route,
            request_id: std::mem::take(&mut self.request_id),
            requested_model: std::mem::take(&mut self.requested_model),
        };
        stats.log.push(&record);
        if let Some(a) = self.access.take() {
            access::record(&access::Entry {
                unix_ms: record.time_ms,
                client: Some(a.client),
                method: a.method,
                path: &a.path,
                model: &record.requested_model.text(),
                route: a.route.as_deref(),
                status,
                latency_ms: latency.as_secs_f64() * 1000.0,
                ttft_ms: self.ttft.map(|t| t.as_secs_f64() * 1000.0),
                tokens: self.tokens,
                request_id: &record.request_id.text(),
                error,
                dropped_tools: a.dropped_tools.as_deref(),
                key: self.key.as_ref().map(|(_, u)| u.name.as_str()),
            });
        }
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.finished {
            self.close(CLIENT_GONE, false, Some("client_gone"));
        }
    }
}
