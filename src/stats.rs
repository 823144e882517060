//! Live statistics: lock-free counters behind `/health`, `/stats` and (later)
//! the management API.
//!
//! Owns every metric the process keeps. The request path only ever does
//! `fetch_add` on atomics it already holds a handle to; the one mutex here guards
//! the *registry* of labelled counters, touched when a config is loaded and when
//! stats are read, never while a request is served.
//!
//! Ordering: every atomic uses `Relaxed`. The figures are independent tallies;
//! no reader infers anything about one counter from another, so no
//! happens-before edge is needed.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A shared counter handle, resolved once at config load.
pub type Counter = Arc<AtomicU64>;

/// The three families of labelled usage counters of SPEC §3 `/stats`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Label {
    Model,
    Provider,
    Account,
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
    latency: Histogram,
    ttft: Histogram,
    per_minute: MinuteWindow,
    labels: Mutex<Vec<(Label, String, Counter)>>,
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
        }
    }

    /// The counter for `(label, name)`, created on first use. Called at config
    /// load; the same name keeps its count across restarts.
    pub fn counter(&self, label: Label, name: &str) -> Counter {
        let mut labels = self.labels.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, _, c)) = labels.iter().find(|(l, n, _)| *l == label && n == name) {
            return c.clone();
        }
        let c = Counter::default();
        labels.push((label, name.to_owned(), c.clone()));
        c
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
    pub fn request_finished(&self, ok: bool, latency: Duration) {
        if ok {
            self.success.fetch_add(1, Relaxed);
        } else {
            self.failed.fetch_add(1, Relaxed);
        }
        self.latency.record(latency);
    }

    pub fn record_ttft(&self, ttft: Duration) {
        self.ttft.record(ttft);
    }

    pub fn record_tokens(&self, prompt: u64, completion: u64) {
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
        s.request_started();
        s.request_finished(true, Duration::from_millis(12));
        s.record_tokens(3, 4);
        let v: serde_json::Value = serde_json::from_str(&s.stats_json("running", 8080)).unwrap();
        assert_eq!(v["modelUsage"]["DeepSeek-V3.2"], 7);
        assert_eq!(v["totalRequests"], 1);
        assert_eq!(v["successRate"], 1.0);
        assert_eq!(v["tokens"]["completion"], 4);
        let h: serde_json::Value = serde_json::from_str(&s.health_json()).unwrap();
        assert_eq!(h["statistics"]["successRequests"], 1);
    }
}
