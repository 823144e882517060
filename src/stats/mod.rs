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

pub mod access;
mod histogram;
mod log;
pub use log::is_logged_code;
mod tally;

pub use log::LOG_CAPACITY;
pub use tally::{Hold, RouteIds, Tally, CLIENT_GONE};

use histogram::{Histogram, MinuteWindow};
use log::RequestLog;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A shared counter handle, resolved once at config load.
pub type Counter = Arc<AtomicU64>;

/// The families of labelled names: the three usage counters of docs/wire.md §3
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

/// One client key's usage since the process started, for `/stats`,
/// `/metrics` and the status page, named by the key's name (never its
/// secret). Kept by name across restarts, like the labelled counters.
#[derive(Debug, Default)]
pub struct KeyUsage {
    /// The key's name (`apiKeys[].name`, or `key<N>`).
    pub name: String,
    /// Requests answered (any status) after the key's rules let them in.
    pub requests: AtomicU64,
    /// Requests refused by one of the key's rules (429, or 503 for a budget
    /// that fails closed).
    pub refused: AtomicU64,
    pub prompt_tokens: AtomicU64,
    pub completion_tokens: AtomicU64,
    /// Requests (and streams) open now under one of the key's rules.
    pub open: AtomicU64,
}

/// The shared state's condition (`sharedState`, docs/config.md): whether
/// Redis answers, and how many decisions fell back to this instance's own
/// counters because it did not.
#[derive(Debug, Default)]
pub struct SharedStateStats {
    /// 0: no `sharedState`; 1: Redis answers; 2: it does not.
    pub state: std::sync::atomic::AtomicU8,
    /// Requests decided on local counters because Redis did not answer in
    /// time (or was known down).
    pub fallbacks: AtomicU64,
    /// Failed Redis calls of any kind (admissions, settlements, syncs).
    pub errors: AtomicU64,
}

impl SharedStateStats {
    pub fn label(&self) -> Option<&'static str> {
        match self.state.load(Relaxed) {
            1 => Some("up"),
            2 => Some("down"),
            _ => None,
        }
    }
}

/// One deployment's health as the operator's views show it (`/metrics`):
/// plain values read once, so that the views need nothing of the router.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct DeploymentHealth {
    /// `provider/account/upstream model`.
    pub id: String,
    /// The client model it serves.
    pub model: String,
    pub resting: bool,
    pub consecutive_failures: u32,
}

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
    /// Attempts after a request's first (on another deployment).
    retries: AtomicU64,
    /// Times a deployment, account or origin was set to rest.
    rests: AtomicU64,
    latency: Histogram,
    ttft: Histogram,
    per_minute: MinuteWindow,
    labels: Mutex<Vec<(Label, String, Counter)>>,
    /// Every client key seen in a config, by name, in order of first sight.
    keys: Mutex<Vec<(String, Arc<KeyUsage>)>>,
    pub shared_state: SharedStateStats,
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
            retries: AtomicU64::new(0),
            rests: AtomicU64::new(0),
            latency: Histogram::new(),
            ttft: Histogram::new(),
            per_minute: MinuteWindow::new(),
            labels: Mutex::new(Vec::new()),
            keys: Mutex::new(Vec::new()),
            shared_state: SharedStateStats::default(),
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

    /// The usage counters of the client key `name`, created on first use
    /// (at config load).
    pub fn key_usage(&self, name: &str) -> Arc<KeyUsage> {
        let mut keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, u)) = keys.iter().find(|(n, _)| n == name) {
            return u.clone();
        }
        let u = Arc::new(KeyUsage {
            name: name.to_owned(),
            ..KeyUsage::default()
        });
        keys.push((name.to_owned(), u.clone()));
        u
    }

    /// Every key's usage: `(name, requests, refused, prompt tokens,
    /// completion tokens, open)`.
    pub fn key_usages(&self) -> Vec<(String, [u64; 5])> {
        let keys = self.keys.lock().unwrap_or_else(|e| e.into_inner());
        keys.iter()
            .map(|(n, u)| {
                (
                    n.clone(),
                    [
                        u.requests.load(Relaxed),
                        u.refused.load(Relaxed),
                        u.prompt_tokens.load(Relaxed),
                        u.completion_tokens.load(Relaxed),
                        u.open.load(Relaxed),
                    ],
                )
            })
            .collect()
    }

    fn label_name(labels: &[(Label, String, Counter)], id: LabelId) -> Option<&str> {
        labels.get(id as usize).map(|(_, n, _)| n.as_str())
    }

    /// A request made another attempt after a failed one.
    pub fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
    }

    /// A failure set a deployment, account or origin to rest.
    pub fn rested(&self) {
        self.rests.fetch_add(1, Relaxed);
    }

    /// `(retries, rests)` so far.
    pub fn retries_and_rests(&self) -> (u64, u64) {
        (self.retries.load(Relaxed), self.rests.load(Relaxed))
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

    /// A request reached a `/v1/` route (docs/wire.md §3: that is when it counts).
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

    /// The `/health` object of docs/wire.md §3.
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

    /// The `/stats` object of docs/wire.md §3.
    pub fn stats_json(&self, status: &str, port: u16, health: Option<&str>) -> String {
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
            "\"tokens\":{{\"prompt\":{},\"completion\":{}}},\"retries\":{},\"rests\":{}",
            self.prompt_tokens.load(Relaxed),
            self.completion_tokens.load(Relaxed),
            self.retries.load(Relaxed),
            self.rests.load(Relaxed)
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
        drop(labels);
        let keys = self.key_usages();
        if !keys.is_empty() {
            out.push_str(",\"keyUsage\":{");
            for (i, (name, [requests, refused, prompt, completion, open])) in
                keys.iter().enumerate()
            {
                if i > 0 {
                    out.push(',');
                }
                let _ = write!(
                    out,
                    "{}:{{\"requests\":{requests},\"refused\":{refused},\"promptTokens\":{prompt},\"completionTokens\":{completion},\"open\":{open}}}",
                    json_str(name)
                );
            }
            out.push('}');
        }
        if let Some(state) = self.shared_state.label() {
            let _ = write!(
                out,
                ",\"sharedState\":{{\"redis\":\"{state}\",\"fallbacks\":{},\"errors\":{}}}",
                self.shared_state.fallbacks.load(Relaxed),
                self.shared_state.errors.load(Relaxed)
            );
        }
        if let Some(health) = health {
            let _ = write!(out, ",\"health\":{health}");
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

/// Milliseconds since the Unix epoch.
pub fn unix_time_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, for `created` fields.
pub fn unix_time() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
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

#[cfg(test)]
mod tests {
    use super::*;

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
        let v: serde_json::Value =
            serde_json::from_str(&s.stats_json("running", 8080, None)).unwrap();
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
        let v: serde_json::Value = serde_json::from_str(&s.stats_json("running", 1, None)).unwrap();
        assert_eq!(v["failedRequests"], 1);
    }
}
