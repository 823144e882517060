//! Live statistics: lock-free counters behind `/health`, `/stats` and the
//! management API (statistics, request log, metrics).
//!
//! Owns every metric the process keeps. The request path only ever touches
//! atomics it already holds a handle to (counters, histogram buckets, the
//! request log's slots); the one mutex here guards the *registry* of
//! labelled counters, touched when a config is loaded and when stats are
//! read, never while a request is served.
//!
//! Ordering: every counter uses `Relaxed`. The figures are independent
//! tallies; no reader infers anything about one counter from another, so no
//! happens-before edge is needed. The request log's slots are the exception
//! (a seqlock, see `RequestLog`).

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A shared counter handle, resolved once at config load.
pub type Counter = Arc<AtomicU64>;

/// The families of labelled names: the three usage counters of SPEC §3
/// `/stats`, and upstream model names (only named in the request log).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Label {
    Model,
    Provider,
    Account,
    UpstreamModel,
}

/// A labelled name's place in the registry: stable for the process's life,
/// so a log record can name it with a number.
pub type LabelId = u32;
pub const NO_LABEL: LabelId = u32::MAX;

/// Process-lifetime statistics.
pub struct Stats {
    process_start: Instant,
    /// Milliseconds since `process_start` at which the proxy listener last
    /// started; `u64::MAX` while it is stopped.
    proxy_started_ms: AtomicU64,
    total: AtomicU64,
    success: AtomicU64,
    failed: AtomicU64,
    active_connections: AtomicU64,
    prompt_tokens: AtomicU64,
    completion_tokens: AtomicU64,
    latency: Histogram,
    ttft: Histogram,
    per_minute: MinuteWindow,
    labels: Mutex<Vec<(Label, String, Counter)>>,
    log: RequestLog,
}

impl Default for Stats {
    fn default() -> Self {
        Stats::new()
    }
}

impl Stats {
    pub fn new() -> Stats {
        Stats {
            process_start: Instant::now(),
            proxy_started_ms: AtomicU64::new(u64::MAX),
            total: AtomicU64::new(0),
            success: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            active_connections: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            completion_tokens: AtomicU64::new(0),
            latency: Histogram::new(),
            ttft: Histogram::new(),
            per_minute: MinuteWindow::new(),
            labels: Mutex::new(Vec::new()),
            log: RequestLog::new(),
        }
    }

    /// The counter for `(label, name)`, created on first use. Called at config
    /// load; the same name keeps its count across restarts.
    pub fn counter(&self, label: Label, name: &str) -> Counter {
        self.label(label, name).1
    }

    /// The id and counter of `(label, name)`, created on first use.
    pub fn label(&self, label: Label, name: &str) -> (LabelId, Counter) {
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(i) = labels.iter().position(|(l, n, _)| *l == label && n == name) {
            return (i as LabelId, labels[i].2.clone());
        }
        let c = Counter::default();
        labels.push((label, name.to_owned(), c.clone()));
        ((labels.len() - 1) as LabelId, c)
    }

    fn label_name(labels: &[(Label, String, Counter)], id: LabelId) -> Option<&str> {
        labels.get(id as usize).map(|(_, n, _)| n.as_str())
    }

    pub fn proxy_started(&self) {
        let ms = self.process_start.elapsed().as_millis() as u64;
        self.proxy_started_ms.store(ms, Relaxed);
    }

    pub fn proxy_stopped(&self) {
        self.proxy_started_ms.store(u64::MAX, Relaxed);
    }

    /// Milliseconds since the proxy last started (0 while stopped).
    pub fn uptime_ms(&self) -> u64 {
        let started = self.proxy_started_ms.load(Relaxed);
        if started == u64::MAX {
            return 0;
        }
        (self.process_start.elapsed().as_millis() as u64).saturating_sub(started)
    }

    pub fn connection_opened(&self) {
        self.active_connections.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.active_connections.fetch_sub(1, Relaxed);
    }

    pub fn active_connections(&self) -> u64 {
        self.active_connections.load(Relaxed)
    }

    /// A request reached a `/v1/` route (SPEC §3: that is when it counts).
    pub fn request_started(&self) {
        self.total.fetch_add(1, Relaxed);
        self.per_minute.record(self.process_start.elapsed());
    }

    /// The request ended: `ok` is a completed 2xx answer (a stream that ended
    /// with `[DONE]`).
    fn request_finished(&self, ok: bool, latency: Duration) {
        if ok {
            self.success.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        self.latency.record(latency);
    }

    fn record_tokens(&self, prompt: u64, completion: u64) {
        self.prompt_tokens.fetch_add(prompt, Relaxed);
        self.completion_tokens.fetch_add(completion, Relaxed);
    }

    pub fn totals(&self) -> (u64, u64, u64) {
        (
            self.total.load(Relaxed),
            self.success.load(Relaxed),
            self.failed.load(Relaxed),
        )
    }

    /// The `/health` object of SPEC §3.
    pub fn health_json(&self) -> String {
        let (total, success, failed) = self.totals();
        format!(
            "{{\"status\":\"running\",\"uptime\":{},\"statistics\":{{\"totalRequests\":{},\"successRequests\":{},\"failedRequests\":{},\"activeConnections\":{}}}}}",
            self.uptime_ms(),
            total,
            success,
            failed,
            self.active_connections()
        )
    }

    /// The `/stats` object of SPEC §3.
    pub fn stats_json(&self, status: &str, port: u16) -> String {
        let (total, success, failed) = self.totals();
        let finished = success + failed;
        let success_rate = if finished == 0 {
            1.0
        } else {
            success as f64 / finished as f64
        };
        let mut out = String::with_capacity(512);
        let _ = write!(
            out,
            "{{\"status\":{},\"port\":{},\"uptime\":{},\"totalRequests\":{},\"successRequests\":{},\"failedRequests\":{},\"successRate\":{},\"activeConnections\":{},\"requestsPerMinute\":{},\"avgLatency\":{},",
            json_str(status),
            port,
            self.uptime_ms(),
            total,
            success,
            failed,
            round3(success_rate),
            self.active_connections(),
            self.per_minute.count(self.process_start.elapsed()),
            round3(self.latency.mean_ms()),
        );
        for (name, h) in [("latency", &self.latency), ("ttft", &self.ttft)] {
            let _ = write!(
                out,
                "\"{name}\":{{\"p50\":{},\"p90\":{},\"p99\":{}}},",
                round3(h.percentile_ms(0.50)),
                round3(h.percentile_ms(0.90)),
                round3(h.percentile_ms(0.99)),
            );
        }
        let _ = write!(
            out,
            "\"tokens\":{{\"prompt\":{},\"completion\":{}}}",
            self.prompt_tokens.load(Relaxed),
            self.completion_tokens.load(Relaxed)
        );
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        for (label, key) in [
            (Label::Model, "modelUsage"),
            (Label::Provider, "providerUsage"),
            (Label::Account, "accountUsage"),
        ] {
            let _ = write!(out, ",\"{key}\":{{");
            let mut first = true;
            for (_, name, c) in labels.iter().filter(|(l, _, _)| *l == label) {
                let n = c.load(Relaxed);
                if n == 0 {
                    continue;
                }
                if !first {
                    out.push(',');
                }
                first = false;
                let _ = write!(out, "{}:{}", json_str(name), n);
            }
            out.push('}');
        }
        out.push('}');
        out
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

fn round3(x: f64) -> f64 {
    if x.is_finite() {
        (x * 1000.0).round() / 1000.0
    } else {
        0.0
    }
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// A log-linear latency histogram over microseconds: `SUB` buckets per power
/// of two, so any recorded value is reported within 1/SUB (12.5 %) of itself.
/// Fixed size, allocation-free and lock-free to record.
struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^40 µs (~12 days): anything longer lands in the last bucket.
const MAX_POW: u32 = 40;

impl Histogram {
    fn new() -> Histogram {
        let n = ((MAX_POW + 1) as u64 * SUB) as usize;
        Histogram {
            buckets: (0..n).map(|_| AtomicU64::new(0)).collect(),
            sum_us: AtomicU64::new(0),
            count: AtomicU64::new(0),
        }
    }

    fn index(us: u64) -> usize {
        if us < SUB {
            return us as usize;
        }
        let pow = 63 - us.leading_zeros(); // >= SUB_BITS
        let sub = (us >> (pow - SUB_BITS)) & (SUB - 1);
        let idx = ((pow - SUB_BITS + 1) as u64) * SUB + sub;
        idx.min(((MAX_POW + 1) as u64 * SUB) - 1) as usize
    }

    /// The midpoint of bucket `idx`, in µs.
    fn value(idx: usize) -> f64 {
        let idx = idx as u64;
        if idx < SUB {
            return idx as f64;
        }
        let pow = idx / SUB - 1 + SUB_BITS as u64;
        let sub = idx % SUB;
        let low = (1u64 << pow) + (sub << (pow - SUB_BITS as u64));
        let width = 1u64 << (pow - SUB_BITS as u64);
        low as f64 + width as f64 / 2.0
    }

    fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    fn mean_ms(&self) -> f64 {
        let n = self.count.load(Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.sum_us.load(Relaxed) as f64 / n as f64 / 1000.0
    }

    fn percentile_ms(&self, q: f64) -> f64 {
        let counts: Vec<u64> = self.buckets.iter().map(|b| b.load(Relaxed)).collect();
        let total: u64 = counts.iter().sum();
        if total == 0 {
            return 0.0;
        }
        let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, c) in counts.iter().enumerate() {
            seen += c;
            if seen >= rank {
                return Self::value(i) / 1000.0;
            }
        }
        0.0
    }
}

/// Requests in the last 60 seconds: one slot per second, each tagged with the
/// second it counts, so a stale slot is recognised and reset by the next writer.
struct MinuteWindow {
    slots: [(AtomicU64, AtomicU64); 60],
}

impl MinuteWindow {
    fn new() -> MinuteWindow {
        MinuteWindow {
            slots: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
        }
    }

    fn record(&self, now: Duration) {
        let sec = now.as_secs();
        let (stamp, count) = &self.slots[(sec % 60) as usize];
        let old = stamp.load(Relaxed);
        if old != sec && stamp.compare_exchange(old, sec, Relaxed, Relaxed).is_ok() {
            // A racing increment between the swap and this store may be lost;
            // an approximate per-minute rate is all this figure promises.
            count.store(0, Relaxed);
        }
        count.fetch_add(1, Relaxed);
    }

    fn count(&self, now: Duration) -> u64 {
        let sec = now.as_secs();
        self.slots
            .iter()
            .filter(|(stamp, _)| {
                let s = stamp.load(Relaxed);
                s != u64::MAX && s + 60 > sec && s <= sec
            })
            .map(|(_, c)| c.load(Relaxed))
            .sum()
    }
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
        }
    }

    /// The first token reached the client (the first event of a stream, or
    /// the head of a plain answer).
    pub fn first_token(&mut self) {
        if self.ttft.is_none() {
            self.ttft = Some(self.start.elapsed());
        }
    }

    pub fn tokens(&mut self, prompt: u64, completion: u64) {
        self.tokens = (prompt, completion);
    }

    pub fn route(&mut self, route: RouteIds) {
        self.route = route;
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
        stats.log.push(&LogRecord {
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
        });
    }
}

impl Drop for Tally {
    fn drop(&mut self) {
        if !self.finished {
            self.close(CLIENT_GONE, false, Some("client_gone"));
        }
    }
}

/// Error codes a log record can name, by index (0 = none). Codes outside
/// this list are logged as `error`.
const LOG_ERRORS: &[&str] = &[
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
];

fn log_error_index(code: &str) -> u8 {
    LOG_ERRORS.iter().position(|c| *c == code).unwrap_or(1) as u8
}

/// One finished request, as the log keeps it: numbers only, no keys, no
/// bodies, names by label id.
#[derive(Clone, Debug, PartialEq, Eq)]
struct LogRecord {
    time_ms: u64,
    status: u16,
    stream: bool,
    error: u8,
    latency_us: u64,
    ttft_us: u64,
    tokens: (u64, u64),
    route: RouteIds,
}

/// How many recent requests the log keeps.
pub const LOG_CAPACITY: usize = 256;
const LOG_WORDS: usize = 7;

/// A ring of the most recent requests, written without a lock.
///
/// Each slot is a seqlock made of atomics: the writer marks the slot odd,
/// stores the words and marks it even with its sequence number; a reader
/// keeps a slot only if it saw the same even mark before and after reading
/// the words. The Release/Acquire pairs order the words against the marks;
/// this is the one place in this module that needs more than `Relaxed`.
struct RequestLog {
    next: AtomicU64,
    slots: Box<[LogSlot]>,
}

struct LogSlot {
    seq: AtomicU64,
    words: [AtomicU64; LOG_WORDS],
}

impl RequestLog {
    fn new() -> RequestLog {
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

    fn push(&self, r: &LogRecord) {
        use std::sync::atomic::{fence, Ordering::Release};
        let n = self.next.fetch_add(1, Relaxed);
        let slot = &self.slots[(n % LOG_CAPACITY as u64) as usize];
        slot.seq.store(2 * n + 1, Relaxed);
        fence(Release);
        let words = [
            r.time_ms,
            r.status as u64 | (r.stream as u64) << 16 | (r.error as u64) << 24,
            r.latency_us,
            r.ttft_us,
            r.tokens.0.min(u32::MAX as u64) | r.tokens.1.min(u32::MAX as u64) << 32,
            r.route.model as u64 | (r.route.provider as u64) << 32,
            r.route.account as u64 | (r.route.upstream_model as u64) << 32,
        ];
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
                    "{{\"time\":{},\"model\":{},\"actualModel\":{},\"provider\":{},\"account\":{},\"status\":{},\"latency\":{},\"ttft\":{},\"stream\":{},\"tokens\":{{\"prompt\":{},\"completion\":{}}},\"error\":{}}}",
                    r.time_ms,
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

/// A latency distribution, for renderings other than `/stats` (the
/// management API's Prometheus summaries). Milliseconds.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Summary {
    pub count: u64,
    pub sum_ms: f64,
    /// `(quantile, value)` for 0.5, 0.9 and 0.99; 0 when nothing was recorded.
    pub quantiles_ms: [(f64, f64); 3],
}

/// Read-only accessors for the management API's renderings.
impl Stats {
    /// `(prompt, completion)` tokens of finished requests.
    pub fn tokens(&self) -> (u64, u64) {
        (
            self.prompt_tokens.load(Relaxed),
            self.completion_tokens.load(Relaxed),
        )
    }

    pub fn requests_per_minute(&self) -> u64 {
        self.per_minute.count(self.process_start.elapsed())
    }

    /// Latency of finished `/v1/` requests.
    pub fn latency(&self) -> Summary {
        self.latency.summary()
    }

    /// Time to first token.
    pub fn ttft(&self) -> Summary {
        self.ttft.summary()
    }

    /// Every name of one label family with its count, zeros included, in
    /// the order the names were first seen.
    pub fn usage(&self, label: Label) -> Vec<(String, u64)> {
        let labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        labels
            .iter()
            .filter(|(l, _, _)| *l == label)
            .map(|(_, name, c)| (name.clone(), c.load(Relaxed)))
            .collect()
    }
}

impl Histogram {
    fn summary(&self) -> Summary {
        Summary {
            count: self.count.load(Relaxed),
            sum_ms: self.sum_us.load(Relaxed) as f64 / 1000.0,
            quantiles_ms: [0.5, 0.9, 0.99].map(|q| (q, self.percentile_ms(q))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_buckets_stay_within_an_eighth() {
        for us in [0u64, 1, 7, 8, 9, 15, 16, 100, 999, 1000, 12_345, 1 << 30] {
            let v = Histogram::value(Histogram::index(us));
            let err = (v - us as f64).abs();
            assert!(err <= (us as f64 / 8.0).max(1.0), "{us} -> {v}");
        }
    }

    #[test]
    fn percentiles_follow_the_distribution() {
        let h = Histogram::new();
        for ms in 1..=100u64 {
            h.record(Duration::from_millis(ms));
        }
        let p50 = h.percentile_ms(0.5);
        let p99 = h.percentile_ms(0.99);
        assert!((45.0..=56.0).contains(&p50), "{p50}");
        assert!((90.0..=110.0).contains(&p99), "{p99}");
        assert!((h.mean_ms() - 50.5).abs() < 0.01);
    }

    #[test]
    fn minute_window_forgets_old_seconds() {
        let w = MinuteWindow::new();
        w.record(Duration::from_secs(5));
        w.record(Duration::from_secs(5));
        w.record(Duration::from_secs(30));
        assert_eq!(w.count(Duration::from_secs(31)), 3);
        assert_eq!(w.count(Duration::from_secs(66)), 1);
        // Second 65 reuses the slot of second 5 and resets it.
        w.record(Duration::from_secs(65));
        assert_eq!(w.count(Duration::from_secs(65)), 2);
    }

    #[test]
    fn stats_json_is_valid_and_labelled() {
        let s = Stats::new();
        s.proxy_started();
        let m = s.counter(Label::Model, "DeepSeek-V3.2");
        m.fetch_add(7, Relaxed);
        assert!(Arc::ptr_eq(&m, &s.counter(Label::Model, "DeepSeek-V3.2")));
        let s = Arc::new(s);
        let mut t = Tally::new(&s);
        t.tokens(3, 4);
        t.finish(200, true, None);
        let v: serde_json::Value = serde_json::from_str(&s.stats_json("running", 8080)).unwrap();
        assert_eq!(v["modelUsage"]["DeepSeek-V3.2"], 7);
        assert_eq!(v["totalRequests"], 1);
        assert_eq!(v["successRate"], 1.0);
        assert_eq!(v["tokens"]["completion"], 4);
        let h: serde_json::Value = serde_json::from_str(&s.health_json()).unwrap();
        assert_eq!(h["statistics"]["successRequests"], 1);
    }

    #[test]
    fn the_log_keeps_the_newest_requests_with_their_names() {
        let s = Arc::new(Stats::new());
        let route = RouteIds {
            model: s.label(Label::Model, "DeepSeek-V3.2").0,
            provider: s.label(Label::Provider, "deepseek").0,
            account: s.label(Label::Account, "deepseek/main").0,
            upstream_model: s.label(Label::UpstreamModel, "deepseek-chat").0,
        };
        for i in 0..(LOG_CAPACITY + 10) {
            let mut t = Tally::new(&s);
            t.route(route);
            t.tokens(i as u64, 1);
            if i % 2 == 0 {
                t.streamed();
                t.first_token();
            }
            t.finish(200, true, None);
        }
        drop(Tally::new(&s)); // a client that left: logged as 499
        let log: serde_json::Value = serde_json::from_str(&s.log_json()).unwrap();
        let log = log.as_array().unwrap();
        assert_eq!(log.len(), LOG_CAPACITY);
        assert_eq!(log[0]["status"], 499);
        assert_eq!(log[0]["error"], "client_gone");
        assert!(log[0]["model"].is_null());
        let newest = &log[1];
        assert_eq!(newest["model"], "DeepSeek-V3.2");
        assert_eq!(newest["actualModel"], "deepseek-chat");
        assert_eq!(newest["account"], "deepseek/main");
        assert_eq!(newest["tokens"]["prompt"], (LOG_CAPACITY + 9) as u64);
        assert_eq!(newest["stream"], false);
        assert!(newest["ttft"].is_null());
        assert_eq!(log[2]["stream"], true);
        assert!(log[2]["ttft"].is_number());
        let v: serde_json::Value = serde_json::from_str(&s.stats_json("running", 1)).unwrap();
        assert_eq!(v["failedRequests"], 1);
    }
}
