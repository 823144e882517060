//! Client-key rules (docs/config.md "Key rules"): which models a key may
//! use, and how much it may spend: requests and tokens a minute, requests
//! open at once, requests and tokens a UTC day, and until when.
//!
//! Sans-IO: this module decides on its own counters, in this process
//! ([`KeyLimits::admit_local`]); `crate::shared` makes the same decision in
//! Redis when several instances share one, and falls back to this one when
//! Redis cannot answer. A request that passes holds a [`Lease`] until its
//! answer's last byte: its concurrency slot, and the tokens reserved for it
//! (its prompt estimate plus `max_tokens`), which are settled against the
//! answer's real `usage` when the lease ends.
//!
//! Cost: a key without counting rules costs nothing here. A key with them
//! takes one uncontended mutex at admission and one at the end of the
//! answer; never per event.

pub mod gcra;

use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, Mutex};

use crate::config::KeyRules;
use crate::stats::KeyUsage;

/// Microseconds in a UTC day.
pub const DAY_US: u64 = 86_400_000_000;

/// Now, in Unix microseconds.
pub fn unix_now_us() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as u64)
}

/// What one request asks of its key's rules.
#[derive(Debug, Clone, Copy)]
pub struct Ask {
    /// Tokens reserved: the prompt estimate plus the answer's `max_tokens`
    /// (or the key's `reserveTokens`).
    pub tokens: u64,
}

impl Ask {
    /// The reservation of a request of `body_len` bytes that allows
    /// `max_tokens` answer tokens: about 4 bytes per prompt token (an
    /// over-estimate for JSON, which is the safe side), no tokenizer.
    pub fn new(rules: &KeyRules, body_len: usize, max_tokens: Option<u64>) -> Ask {
        let prompt = (body_len as u64).div_ceil(4);
        Ask {
            tokens: prompt.saturating_add(max_tokens.unwrap_or(rules.reserve_tokens)),
        }
    }
}

/// Why a request was refused, and when to come back (docs/wire.md §4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The rule, as the config names it (`rpm`, `tpm`, `maxConcurrent`,
    /// `dailyRequests`, `dailyTokens`).
    pub rule: &'static str,
    pub limit: u64,
    /// Milliseconds until the request would pass (at least 1).
    pub retry_after_ms: u64,
}

impl Refusal {
    /// The client-facing message: names the key, the rule and the wait.
    pub fn message(&self, key: &str) -> String {
        let what = match self.rule {
            "rpm" => format!("{} requests per minute", self.limit),
            "tpm" => format!("{} tokens per minute", self.limit),
            "maxConcurrent" => format!("{} requests open at once", self.limit),
            "dailyRequests" => format!("{} requests per UTC day", self.limit),
            _ => format!("{} tokens per UTC day", self.limit),
        };
        format!(
            "Rate limit reached for key '{key}' ({}: {what}); retry in {:.3} s.",
            self.rule,
            self.retry_after_ms as f64 / 1000.0
        )
    }
}

/// The `x-ratelimit-*` figures of an admitted request: `(limit,
/// remaining, reset in ms)` for requests and for tokens, as OpenAI sends
/// them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Quota {
    pub requests: Option<(u64, u64, u64)>,
    pub tokens: Option<(u64, u64, u64)>,
}

impl Quota {
    /// Put the key's figures in `headers`, in place of any an upstream
    /// sent for the same family (the client's limits are its key's, not
    /// the provider account's).
    pub fn apply(&self, headers: &mut Vec<(&'static str, bytes::Bytes)>) {
        let ours = self.headers();
        if ours.is_empty() {
            return;
        }
        headers.retain(|(name, _)| !ours.iter().any(|(n, _)| n.eq_ignore_ascii_case(name)));
        headers.extend(ours);
    }

    /// The header lines, `x-ratelimit-{limit,remaining,reset}-{requests,tokens}`.
    pub fn headers(&self) -> Vec<(&'static str, bytes::Bytes)> {
        let mut out = Vec::with_capacity(6);
        let n = |v: u64| bytes::Bytes::from(v.to_string());
        if let Some((limit, remaining, reset)) = self.requests {
            out.push(("x-ratelimit-limit-requests", n(limit)));
            out.push(("x-ratelimit-remaining-requests", n(remaining)));
            out.push(("x-ratelimit-reset-requests", reset_text(reset).into()));
        }
        if let Some((limit, remaining, reset)) = self.tokens {
            out.push(("x-ratelimit-limit-tokens", n(limit)));
            out.push(("x-ratelimit-remaining-tokens", n(remaining)));
            out.push(("x-ratelimit-reset-tokens", reset_text(reset).into()));
        }
        out
    }
}

/// A reset time the way OpenAI writes it: `20ms`, `1.5s`, `6m0s`, `2h3m4s`.
pub fn reset_text(ms: u64) -> String {
    if ms < 1000 {
        return format!("{ms}ms");
    }
    let secs = ms / 1000;
    if secs < 60 {
        let frac = ms % 1000;
        return match frac {
            0 => format!("{secs}s"),
            _ => format!("{secs}.{}s", format!("{frac:03}").trim_end_matches('0')),
        };
    }
    let (h, m, s) = (secs / 3600, secs / 60 % 60, secs % 60);
    match h {
        0 => format!("{m}m{s}s"),
        _ => format!("{h}h{m}m{s}s"),
    }
}

/// One key's counters in this process.
#[derive(Debug, Default)]
struct Local {
    /// GCRA theoretical arrival times, Unix µs.
    rpm_tat: u64,
    tpm_tat: u64,
    /// The UTC day (days since the epoch) the daily counts are for.
    day: u64,
    day_requests: u64,
    day_tokens: u64,
    /// Requests admitted and not yet ended (always counted, also while
    /// Redis decides, so that a fall-back starts from the truth).
    open: u64,
}

/// One enabled client key: its name, rules and counters.
#[derive(Debug)]
pub struct KeyLimits {
    pub name: Arc<str>,
    pub rules: KeyRules,
    local: Mutex<Local>,
    /// Kept in `Stats` by the key's name.
    pub usage: Arc<KeyUsage>,
}

impl KeyLimits {
    pub fn new(name: &str, rules: KeyRules, usage: Arc<KeyUsage>) -> KeyLimits {
        KeyLimits {
            name: name.into(),
            rules,
            local: Mutex::new(Local::default()),
            usage,
        }
    }

    /// Whether the key may use the client model `model` (its `models`
    /// list, `*` wildcards; empty = all).
    pub fn allows_model(&self, model: &str) -> bool {
        self.rules.models.is_empty()
            || self
                .rules
                .models
                .iter()
                .any(|p| crate::config::wildcard_match(p.as_bytes(), model.as_bytes()))
    }

    /// Whether the key has expired at `now_ms` (Unix ms).
    pub fn expired(&self, now_ms: u64) -> bool {
        self.rules.expires_at.is_some_and(|at| now_ms >= at)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Local> {
        self.local.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Decide `ask` on this process's counters at `now` (Unix µs) and, if
    /// it passes, count it (every rule or none: a refusal changes nothing).
    pub fn admit_local(&self, ask: Ask, now: u64) -> Result<Quota, Refusal> {
        let r = &self.rules;
        let mut l = self.lock();
        let day = now / DAY_US;
        if l.day != day {
            l.day = day;
            l.day_requests = 0;
            l.day_tokens = 0;
        }
        let to_midnight = ((day + 1) * DAY_US - now).div_ceil(1000);
        if let Some(max) = r.max_concurrent {
            if l.open >= max {
                return Err(Refusal {
                    rule: "maxConcurrent",
                    limit: max,
                    retry_after_ms: 1000,
                });
            }
        }
        if let Some(max) = r.daily_requests {
            if l.day_requests >= max {
                return Err(Refusal {
                    rule: "dailyRequests",
                    limit: max,
                    retry_after_ms: to_midnight,
                });
            }
        }
        let day_cost = r.daily_tokens.map_or(ask.tokens, |max| ask.tokens.min(max));
        if let Some(max) = r.daily_tokens {
            if l.day_tokens.saturating_add(day_cost) > max {
                return Err(Refusal {
                    rule: "dailyTokens",
                    limit: max,
                    retry_after_ms: to_midnight,
                });
            }
        }
        let mut quota = Quota::default();
        let mut rpm_tat = l.rpm_tat;
        if let Some(rate) = r.rpm {
            match gcra::check(l.rpm_tat, now, rate, 1) {
                gcra::Verdict::Admit {
                    tat,
                    remaining,
                    reset_us,
                } => {
                    rpm_tat = tat;
                    quota.requests = Some((rate, remaining, reset_us.div_ceil(1000)));
                }
                gcra::Verdict::Refuse { retry_us } => {
                    return Err(Refusal {
                        rule: "rpm",
                        limit: rate,
                        retry_after_ms: retry_us.div_ceil(1000).max(1),
                    })
                }
            }
        } else if let Some(max) = r.daily_requests {
            quota.requests = Some((max, max - l.day_requests - 1, to_midnight));
        }
        let mut tpm_tat = l.tpm_tat;
        if let Some(rate) = r.tpm {
            match gcra::check(l.tpm_tat, now, rate, ask.tokens) {
                gcra::Verdict::Admit {
                    tat,
                    remaining,
                    reset_us,
                } => {
                    tpm_tat = tat;
                    quota.tokens = Some((rate, remaining, reset_us.div_ceil(1000)));
                }
                gcra::Verdict::Refuse { retry_us } => {
                    return Err(Refusal {
                        rule: "tpm",
                        limit: rate,
                        retry_after_ms: retry_us.div_ceil(1000).max(1),
                    })
                }
            }
        } else if let Some(max) = r.daily_tokens {
            quota.tokens = Some((max, max - l.day_tokens - day_cost, to_midnight));
        }
        l.rpm_tat = rpm_tat;
        l.tpm_tat = tpm_tat;
        l.day_requests += 1;
        l.day_tokens += day_cost;
        Ok(quota)
    }

    /// The end of a request: its slot back and, for one admitted on this
    /// process's counters, its tokens settled: `tpm_delta` and `day_delta`
    /// used minus charged against `tpm` and against day `day`.
    fn settle_local(&self, settle: Option<(i64, i64, u64)>) {
        let mut l = self.lock();
        l.open = l.open.saturating_sub(1);
        if let Some((tpm_delta, day_delta, day)) = settle {
            if let Some(rate) = self.rules.tpm {
                l.tpm_tat = gcra::settle(l.tpm_tat, rate, tpm_delta);
            }
            if l.day == day {
                l.day_tokens = l.day_tokens.saturating_add_signed(day_delta);
            }
        }
    }

    /// The day tokens charged for `ask` (the reservation, capped at the
    /// daily budget as [`admit_local`](Self::admit_local) caps it).
    pub fn day_cost(&self, ask: Ask) -> u64 {
        self.rules
            .daily_tokens
            .map_or(ask.tokens, |max| ask.tokens.min(max))
    }
}

/// Where the end of a lease is reported besides this process's counters:
/// the shared store, which settles the same lease there
/// (`crate::shared::SharedState`).
pub trait SettleShared: Send + Sync {
    /// `lease` ended having used `tpm_delta` tokens more (or, negative,
    /// fewer) than it was charged against `tpm`, and `day_delta` more than
    /// against the day's budget; it was admitted on UTC day `day`.
    fn settle(&self, key: &KeyLimits, lease: u64, tpm_delta: i64, day_delta: i64, day: u64);
}

/// One admitted request's hold on its key: released, and its tokens
/// settled, when it ends ([`Lease::end`]), or when dropped unended.
pub struct Lease {
    key: Arc<KeyLimits>,
    /// Tokens reserved at admission, against `tpm`.
    reserved: u64,
    /// Tokens charged to the day at admission.
    day_cost: u64,
    day: u64,
    /// Decided in Redis (and its id there), or here (`None`).
    shared: Option<(Arc<dyn SettleShared>, u64)>,
    ended: bool,
}

impl Lease {
    /// A lease on `key` for a request admitted with `ask` on UTC day `day`
    /// (days since the epoch; Redis's day when it admitted it); `shared`:
    /// admitted by the shared store under that lease id.
    pub fn new(
        key: Arc<KeyLimits>,
        ask: Ask,
        day: u64,
        shared: Option<(Arc<dyn SettleShared>, u64)>,
    ) -> Lease {
        key.usage.open.fetch_add(1, Relaxed);
        key.lock().open += 1;
        Lease {
            day_cost: key.day_cost(ask),
            key,
            reserved: ask.tokens,
            day,
            shared,
            ended: false,
        }
    }

    pub fn key(&self) -> &KeyLimits {
        &self.key
    }

    /// The request ended: `tokens` (prompt, completion) from the answer's
    /// usage; `answered`: the client got an answer (see
    /// [`crate::stats::Hold`]). An answer that reported no usage keeps its
    /// whole reservation; a request that got none is charged what it
    /// reported (usually nothing).
    pub fn end(mut self, tokens: (u64, u64), answered: bool) {
        self.close(tokens, answered);
    }

    fn close(&mut self, (prompt, completion): (u64, u64), answered: bool) {
        self.ended = true;
        self.key.usage.open.fetch_sub(1, Relaxed);
        let used = prompt.saturating_add(completion);
        let used = if answered && used == 0 {
            self.reserved
        } else {
            used
        };
        // Against `tpm` the reservation was capped at the rate; the
        // settlement is against what was charged.
        let charged = self
            .key
            .rules
            .tpm
            .map_or(self.reserved, |r| self.reserved.clamp(1, r));
        let signed = |n: u64| i64::try_from(n).unwrap_or(i64::MAX);
        let tpm_delta = signed(used).saturating_sub(signed(charged));
        let day_delta = signed(used).saturating_sub(signed(self.day_cost));
        match &self.shared {
            None => self
                .key
                .settle_local(Some((tpm_delta, day_delta, self.day))),
            Some((store, lease)) => {
                self.key.settle_local(None);
                store.settle(&self.key, *lease, tpm_delta, day_delta, self.day);
            }
        }
    }
}

impl crate::stats::Hold for Lease {
    fn end(self: Box<Self>, tokens: (u64, u64), answered: bool) {
        Lease::end(*self, tokens, answered);
    }
}

impl Drop for Lease {
    fn drop(&mut self) {
        if !self.ended {
            self.close((0, 0), false);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules(f: impl FnOnce(&mut KeyRules)) -> KeyRules {
        let mut r = KeyRules {
            reserve_tokens: 100,
            ..KeyRules::default()
        };
        f(&mut r);
        r
    }

    const NOW: u64 = 20_000 * DAY_US + 3_600_000_000;

    fn key(name: &str, rules: KeyRules) -> KeyLimits {
        KeyLimits::new(name, rules, Arc::default())
    }

    #[test]
    fn concurrency_is_held_until_the_lease_ends() {
        let key = Arc::new(key("k", rules(|r| r.max_concurrent = Some(2))));
        let ask = Ask { tokens: 10 };
        let a = Lease::new(key.clone(), ask, NOW / DAY_US, None);
        key.admit_local(ask, NOW).unwrap();
        let b = Lease::new(key.clone(), ask, NOW / DAY_US, None);
        let refused = key.admit_local(ask, NOW).unwrap_err();
        assert_eq!(refused.rule, "maxConcurrent");
        a.end((1, 1), true);
        assert!(key.admit_local(ask, NOW).is_ok());
        drop(b);
        assert_eq!(key.usage.open.load(Relaxed), 0);
    }

    #[test]
    fn daily_requests_reset_at_utc_midnight() {
        let key = key("k", rules(|r| r.daily_requests = Some(2)));
        let ask = Ask { tokens: 1 };
        assert!(key.admit_local(ask, NOW).is_ok());
        let q = key.admit_local(ask, NOW).unwrap();
        assert_eq!(q.requests, Some((2, 0, 23 * 3_600_000)));
        let r = key.admit_local(ask, NOW).unwrap_err();
        assert_eq!(
            (r.rule, r.retry_after_ms),
            ("dailyRequests", 23 * 3_600_000)
        );
        assert!(key.admit_local(ask, NOW + 23 * 3_600_000_000).is_ok());
    }

    #[test]
    fn tokens_are_reserved_then_settled() {
        let key = Arc::new(key("k", rules(|r| r.tpm = Some(1000))));
        let ask = Ask { tokens: 600 };
        let q = key.admit_local(ask, NOW).unwrap();
        assert_eq!(q.tokens.map(|t| t.1), Some(400));
        let lease = Lease::new(key.clone(), ask, NOW / DAY_US, None);
        assert_eq!(key.admit_local(ask, NOW).unwrap_err().rule, "tpm");
        // 100 used: 500 come back, and 600 fit again.
        lease.end((60, 40), true);
        assert!(key.admit_local(ask, NOW).is_ok());
    }

    #[test]
    fn a_client_that_leaves_mid_answer_is_charged_its_reservation() {
        let stats = Arc::new(crate::stats::Stats::new());
        let key = Arc::new(key("k", rules(|r| r.tpm = Some(1000))));
        let ask = Ask { tokens: 600 };
        let tally = |first_token: bool| {
            key.admit_local(ask, NOW).unwrap();
            let mut t = crate::stats::Tally::new(&stats);
            t.hold(Box::new(Lease::new(key.clone(), ask, NOW / DAY_US, None)));
            if first_token {
                t.first_token();
            }
            t
        };
        // Gone before any answer: nothing was spent, all 600 come back.
        drop(tally(false));
        assert_eq!(gcra::remaining(key.lock().tpm_tat, NOW, 1000), 1000);
        // Gone after the first token, usage never seen: the upstream spent
        // tokens on it, so the reservation stands.
        drop(tally(true));
        assert_eq!(gcra::remaining(key.lock().tpm_tat, NOW, 1000), 400);
        assert_eq!(key.lock().open, 0);
    }

    #[test]
    fn a_refusal_counts_nothing() {
        let key = key(
            "k",
            rules(|r| {
                r.rpm = Some(1);
                r.daily_requests = Some(5);
            }),
        );
        let ask = Ask { tokens: 1 };
        assert!(key.admit_local(ask, NOW).is_ok());
        for _ in 0..10 {
            assert_eq!(key.admit_local(ask, NOW).unwrap_err().rule, "rpm");
        }
        assert_eq!(key.lock().day_requests, 1);
    }

    #[test]
    fn models_and_expiry() {
        let key = key(
            "k",
            rules(|r| {
                r.models = vec!["gpt-4*".into(), "mock-echo".into()];
                r.expires_at = Some(1000);
            }),
        );
        assert!(key.allows_model("gpt-4o") && key.allows_model("mock-echo"));
        assert!(!key.allows_model("gpt-3.5") && !key.allows_model("mock-echo2"));
        assert!(!key.expired(999) && key.expired(1000));
    }

    #[test]
    fn the_keys_figures_replace_the_upstreams() {
        let mut headers = vec![
            ("x-request-id", bytes::Bytes::from_static(b"up")),
            (
                "x-ratelimit-limit-requests",
                bytes::Bytes::from_static(b"10000"),
            ),
            (
                "x-ratelimit-limit-tokens",
                bytes::Bytes::from_static(b"2000000"),
            ),
        ];
        Quota {
            requests: Some((60, 59, 1000)),
            tokens: None,
        }
        .apply(&mut headers);
        let get = |n: &str| -> Vec<&[u8]> {
            headers
                .iter()
                .filter(|(h, _)| *h == n)
                .map(|(_, v)| &v[..])
                .collect()
        };
        assert_eq!(get("x-ratelimit-limit-requests"), [b"60"]);
        assert_eq!(get("x-ratelimit-reset-requests"), [b"1s"]);
        // A family the key has no rule for stays the upstream's.
        assert_eq!(get("x-ratelimit-limit-tokens"), [b"2000000"]);
        assert_eq!(get("x-request-id"), [b"up"]);
    }

    #[test]
    fn reset_times_read_like_openais() {
        for (ms, text) in [
            (20, "20ms"),
            (1000, "1s"),
            (1500, "1.5s"),
            (59_990, "59.99s"),
            (360_000, "6m0s"),
            (7_384_000, "2h3m4s"),
        ] {
            assert_eq!(reset_text(ms), text);
        }
    }
}
