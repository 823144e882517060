//! Lock-free distributions: a log-linear latency histogram and a
//! requests-per-minute window. Recording is a few relaxed atomic adds; reading
//! walks the buckets.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use super::Summary;

/// A log-linear latency histogram over microseconds: `SUB` buckets per power
/// of two, so any recorded value is reported within 1/SUB (12.5 %) of itself.
/// Fixed size, allocation-free and lock-free to record.
pub(super) struct Histogram {
    buckets: Box<[AtomicU64]>,
    sum_us: AtomicU64,
    count: AtomicU64,
}

const SUB_BITS: u32 = 3;
const SUB: u64 = 1 << SUB_BITS;
/// Up to 2^40 µs (~12 days): anything longer lands in the last bucket.
const MAX_POW: u32 = 40;

impl Histogram {
    pub(super) fn new() -> Histogram {
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

    pub(super) fn record(&self, d: Duration) {
        let us = d.as_micros().min(u64::MAX as u128) as u64;
        self.buckets[Self::index(us)].fetch_add(1, Relaxed);
        self.sum_us.fetch_add(us, Relaxed);
        self.count.fetch_add(1, Relaxed);
    }

    pub(super) fn mean_ms(&self) -> f64 {
        let n = self.count.load(Relaxed);
        if n == 0 {
            return 0.0;
        }
        self.sum_us.load(Relaxed) as f64 / n as f64 / 1000.0
    }

    pub(super) fn percentile_ms(&self, q: f64) -> f64 {
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
pub(super) struct MinuteWindow {
    slots: [(AtomicU64, AtomicU64); 60],
}

impl MinuteWindow {
    pub(super) fn new() -> MinuteWindow {
        MinuteWindow {
            slots: std::array::from_fn(|_| (AtomicU64::new(u64::MAX), AtomicU64::new(0))),
        }
    }

    pub(super) fn record(&self, now: Duration) {
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

    pub(super) fn count(&self, now: Duration) -> u64 {
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

impl Histogram {
    pub(super) fn summary(&self) -> Summary {
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
}
