//! The request log: a ring of the most recent requests, written without a
//! lock, read by the management API.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use super::{json_str, round3, LabelId, RouteIds, Stats};

/// Error codes a log record can name, by index (0 = none). Codes outside
/// this list are logged as `error`.
pub(super) const LOG_ERRORS: &[&str] = &[
    "",
    "error",
    "invalid_request_error",
    "missing_api_key",
    "invalid_api_key",
    "not_found",
    "model_not_found",
    "method_not_allowed",
    "request_timeout",
    "request_too_large",
    "uri_too_long",
    "headers_too_large",
    "bad_request",
    "no_available_account",
    "upstream_error",
    "upstream_timeout",
    "upstream_status",
    "stream_error",
    "client_gone",
    "rate_limit_exceeded",
    "server_shutting_down",
    "server_overloaded",
    "upstream_stream_error",
    "mock_rate_limit",
    "mock_server_error",
    "mock_cut_stream",
    "expired_api_key",
    "budget_unavailable",
];

/// Whether the request log names `code` (rather than logging `error`).
pub fn is_logged_code(code: &str) -> bool {
    LOG_ERRORS.contains(&code)
}

pub(super) fn log_error_index(code: &str) -> u8 {
    LOG_ERRORS.iter().position(|c| *c == code).unwrap_or(1) as u8
}

/// One finished request, as the log keeps it: numbers only, no keys, no
/// bodies, names by label id.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct LogRecord {
    pub(super) time_ms: u64,
    pub(super) status: u16,
    pub(super) stream: bool,
    pub(super) error: u8,
    pub(super) latency_us: u64,
    pub(super) ttft_us: u64,
    pub(super) tokens: (u64, u64),
    pub(super) route: RouteIds,
    /// The answer's `x-request-id`, zero-padded (cut at its length).
    pub(super) request_id: Text<REQUEST_ID_BYTES>,
    /// The model the client asked for, even one no provider serves.
    pub(super) requested_model: Text<MODEL_BYTES>,
}

/// How much of a request id the log keeps (OpenAI's are 36 bytes).
pub const REQUEST_ID_BYTES: usize = 48;
/// How much of a requested model name the log keeps.
pub const MODEL_BYTES: usize = 64;

/// A short text of at most `N` bytes, zero-padded, for a log slot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Text<const N: usize>([u8; N]);

impl<const N: usize> Default for Text<N> {
    fn default() -> Self {
        Text([0; N])
    }
}

impl<const N: usize> Text<N> {
    /// The first `N` bytes of `s` (a multi-byte character cut in two is
    /// shown lossily).
    pub fn new(s: &[u8]) -> Self {
        let mut t = [0u8; N];
        let n = s.len().min(N);
        t[..n].copy_from_slice(&s[..n]);
        Text(t)
    }

    fn words(&self) -> impl Iterator<Item = u64> + '_ {
        self.0.chunks(8).map(|c| {
            let mut w = [0u8; 8];
            w[..c.len()].copy_from_slice(c);
            u64::from_le_bytes(w)
        })
    }

    fn from_words(words: &[u64]) -> Self {
        let mut t = [0u8; N];
        for (chunk, w) in t.chunks_mut(8).zip(words) {
            chunk.copy_from_slice(&w.to_le_bytes()[..chunk.len()]);
        }
        Text(t)
    }

    /// The text, up to its padding.
    pub fn text(&self) -> std::borrow::Cow<'_, str> {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        String::from_utf8_lossy(&self.0[..len])
    }

    /// As a JSON string, or `null` when empty.
    fn json(&self) -> String {
        let len = self.0.iter().position(|b| *b == 0).unwrap_or(N);
        match len {
            0 => "null".to_owned(),
            _ => json_str(&String::from_utf8_lossy(&self.0[..len])),
        }
    }
}

/// How many recent requests the log keeps.
pub const LOG_CAPACITY: usize = 256;
/// Words of a slot: 7 of numbers, then the request id and the model.
const FIXED_WORDS: usize = 7;
const ID_WORDS: usize = REQUEST_ID_BYTES / 8;
const LOG_WORDS: usize = FIXED_WORDS + ID_WORDS + MODEL_BYTES / 8;

/// A ring of the most recent requests, written without a lock.
///
/// Each slot is a seqlock made of atomics: the writer marks the slot odd,
/// stores the words and marks it even with its sequence number; a reader
/// keeps a slot only if it saw the same even mark before and after reading
/// the words. The Release/Acquire pairs order the words against the marks;
/// this is the one place in this module that needs more than `Relaxed`.
pub(super) struct RequestLog {
    next: AtomicU64,
    slots: Box<[LogSlot]>,
}

struct LogSlot {
    seq: AtomicU64,
    words: [AtomicU64; LOG_WORDS],
}

impl RequestLog {
    pub(super) fn new() -> RequestLog {
        RequestLog {
            next: AtomicU64::new(0),
            slots: (0..LOG_CAPACITY)
                .map(|_| LogSlot {
                    seq: AtomicU64::new(0),
                    words: std::array::from_fn(|_| AtomicU64::new(0)),
                })
                .collect(),
        }
    }

    pub(super) fn push(&self, r: &LogRecord) {
        use std::sync::atomic::{fence, Ordering::Release};
        let n = self.next.fetch_add(1, Relaxed);
        let slot = &self.slots[(n % LOG_CAPACITY as u64) as usize];
        slot.seq.store(2 * n + 1, Relaxed);
        fence(Release);
        let fixed = [
            r.time_ms,
            r.status as u64 | (r.stream as u64) << 16 | (r.error as u64) << 24,
            r.latency_us,
            r.ttft_us,
            r.tokens.0.min(u32::MAX as u64) | r.tokens.1.min(u32::MAX as u64) << 32,
            r.route.model as u64 | (r.route.provider as u64) << 32,
            r.route.account as u64 | (r.route.upstream_model as u64) << 32,
        ];
        let words = fixed
            .into_iter()
            .chain(r.request_id.words())
            .chain(r.requested_model.words());
        for (w, v) in slot.words.iter().zip(words) {
            w.store(v, Relaxed);
        }
        slot.seq.store(2 * n + 2, Release);
    }

    /// The records still in the ring, newest first.
    fn records(&self) -> Vec<LogRecord> {
        use std::sync::atomic::{fence, Ordering::Acquire};
        let mut out: Vec<(u64, LogRecord)> = Vec::with_capacity(LOG_CAPACITY);
        for slot in self.slots.iter() {
            let before = slot.seq.load(Acquire);
            if before == 0 || before % 2 == 1 {
                continue;
            }
            let w: [u64; LOG_WORDS] = std::array::from_fn(|i| slot.words[i].load(Relaxed));
            fence(Acquire);
            if slot.seq.load(Relaxed) != before {
                continue; // overwritten while we read it
            }
            let lo = |x: u64| (x & 0xffff_ffff) as u32;
            out.push((
                before,
                LogRecord {
                    time_ms: w[0],
                    status: (w[1] & 0xffff) as u16,
                    stream: (w[1] >> 16) & 1 == 1,
                    error: ((w[1] >> 24) & 0xff) as u8,
                    latency_us: w[2],
                    ttft_us: w[3],
                    tokens: (w[4] & 0xffff_ffff, w[4] >> 32),
                    route: RouteIds {
                        model: lo(w[5]),
                        provider: (w[5] >> 32) as u32,
                        account: lo(w[6]),
                        upstream_model: (w[6] >> 32) as u32,
                    },
                    request_id: Text::from_words(&w[FIXED_WORDS..FIXED_WORDS + ID_WORDS]),
                    requested_model: Text::from_words(&w[FIXED_WORDS + ID_WORDS..]),
                },
            ));
        }
        out.sort_by_key(|(seq, _)| std::cmp::Reverse(*seq));
        out.into_iter().map(|(_, r)| r).collect()
    }
}

impl Stats {
    /// The request log of `/v0/management/logs`, newest first: a JSON array.
    pub fn log_json(&self) -> String {
        let records = self.log.records();
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        let name = |id: LabelId| Stats::label_name(&labels, id).map(json_str);
        let entries: Vec<String> = records
            .iter()
            .map(|r| {
                let opt = |v: Option<String>| v.unwrap_or_else(|| "null".to_owned());
                let ms = |us: u64| round3(us as f64 / 1000.0);
                format!(
                    "{{\"time\":{},\"requestId\":{},\"requestedModel\":{},\"model\":{},\"actualModel\":{},\"provider\":{},\"account\":{},\"status\":{},\"latency\":{},\"ttft\":{},\"stream\":{},\"tokens\":{{\"prompt\":{},\"completion\":{}}},\"error\":{}}}",
                    r.time_ms,
                    r.request_id.json(),
                    r.requested_model.json(),
                    opt(name(r.route.model)),
                    opt(name(r.route.upstream_model)),
                    opt(name(r.route.provider)),
                    opt(name(r.route.account)),
                    r.status,
                    ms(r.latency_us),
                    if r.ttft_us == u64::MAX { "null".to_owned() } else { ms(r.ttft_us).to_string() },
                    r.stream,
                    r.tokens.0,
                    r.tokens.1,
                    match r.error {
                        0 => "null".to_owned(),
                        e => json_str(LOG_ERRORS.get(e as usize).copied().unwrap_or("error")),
                    },
                )
            })
            .collect();
        format!("[{}]", entries.join(","))
    }
}
