//! Health per scope (docs/wire.md §2, "Health"): a deployment's, an
//! account's and an origin's failures and rests, and the views of them the
//! operator gets (`/stats` `health`, metrics, the shared-state sync).

use std::sync::atomic::{AtomicU16, AtomicU32, AtomicU64, AtomicU8, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use super::Router;
use crate::shared::Slots;

/// Consecutive failures after which a scope rests (docs/wire.md §2).
pub const FAILURES_BEFORE_REST: u32 = 3;
/// How long it rests.
pub const REST: Duration = Duration::from_secs(60);
/// The longest rest an upstream's `Retry-After` can ask for: a broken or
/// hostile header must not take a model out for good.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(600);

/// Milliseconds on a monotonic clock shared by the whole process.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

/// Why a scope failed, or rests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cause {
    /// 429 from the upstream.
    RateLimit,
    /// 5xx, or an answer that was not a valid one.
    ServerError,
    /// No answer within the deadline.
    Timeout,
    /// The account's key was refused (401/403).
    KeyRefused,
    /// The origin could not be reached (connect, TLS).
    Unreachable,
}

impl Cause {
    const ALL: [Cause; 5] = [
        Cause::RateLimit,
        Cause::ServerError,
        Cause::Timeout,
        Cause::KeyRefused,
        Cause::Unreachable,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Cause::RateLimit => "rate_limited",
            Cause::ServerError => "server_error",
            Cause::Timeout => "timeout",
            Cause::KeyRefused => "key_refused",
            Cause::Unreachable => "unreachable",
        }
    }

    pub(super) fn code(self) -> u8 {
        self as u8 + 1
    }

    pub(super) fn from_code(code: u8) -> Option<Cause> {
        Cause::ALL.get(usize::from(code).checked_sub(1)?).copied()
    }
}

/// The failure state of one scope (a deployment, an account or an origin),
/// in relaxed atomics: each field is a tally of its own, and a reader that
/// sees a rest a moment late only sends one more request into it.
#[derive(Default)]
pub struct Health {
    /// Failures since the last success.
    failures: AtomicU32,
    /// Resting after consecutive failures until then (ms, `now_ms`).
    rest_until: AtomicU64,
    /// Resting on an upstream's `Retry-After` until then.
    retry_after_until: AtomicU64,
    /// Resting on a `Retry-After` another instance learnt, until then
    /// (written by the shared-state sync loop, `crate::shared`).
    shared_until: Arc<AtomicU64>,
    /// The cause of the latest rest (`Cause::code`, 0 = none).
    rest_cause: AtomicU8,
    /// The latest failure: its cause and the upstream's status (0 = none).
    last_cause: AtomicU8,
    last_status: AtomicU16,
}

/// A failed attempt, as the proxy saw it.
#[derive(Clone, Copy, Debug)]
pub struct Failure {
    pub cause: Cause,
    /// The upstream's status; 0 when it did not answer.
    pub status: u16,
    /// The upstream's `Retry-After`.
    pub retry_after: Option<Duration>,
}

impl Health {
    pub(super) fn record_success(&self) {
        if self.failures.load(Relaxed) != 0 {
            self.failures.store(0, Relaxed);
        }
    }

    /// Returns whether the scope now rests.
    pub(super) fn record_failure(&self, f: Failure, now: u64) -> bool {
        self.last_cause.store(f.cause.code(), Relaxed);
        self.last_status.store(f.status, Relaxed);
        let mut rested = false;
        if let Some(d) = f.retry_after {
            let until = now.saturating_add(d.min(MAX_RETRY_AFTER).as_millis() as u64);
            self.retry_after_until.fetch_max(until, Relaxed);
            self.rest_cause.store(f.cause.code(), Relaxed);
            rested = true;
        }
        if self.failures.fetch_add(1, Relaxed) + 1 >= FAILURES_BEFORE_REST {
            self.failures.store(0, Relaxed);
            self.rest_until
                .fetch_max(now + REST.as_millis() as u64, Relaxed);
            self.rest_cause.store(f.cause.code(), Relaxed);
            rested = true;
        }
        rested
    }

    /// When the scope may serve again (ms; at or before `now` = now). For
    /// a model with a single candidate only `Retry-After` rests count.
    pub(super) fn available_at(&self, single: bool) -> u64 {
        let retry_after = self
            .retry_after_until
            .load(Relaxed)
            .max(self.shared_until.load(Relaxed));
        match single {
            true => retry_after,
            false => retry_after.max(self.rest_until.load(Relaxed)),
        }
    }

    pub(super) fn rest_cause(&self) -> Option<Cause> {
        // A rest only another instance saw: it came from a Retry-After,
        // which upstreams send with rate limits.
        Cause::from_code(self.rest_cause.load(Relaxed)).or_else(|| {
            (self.shared_until.load(Relaxed) > self.retry_after_until.load(Relaxed))
                .then_some(Cause::RateLimit)
        })
    }

    /// `{"state","restingUntil","reason","consecutiveFailures","lastError"}`:
    /// `restingUntil` in Unix milliseconds, `lastError` the cause and
    /// status of the latest failure.
    /// `single`: the scope is the only deployment of its model, which
    /// consecutive failures do not rest (see the module docs).
    pub fn json(&self, now: u64, single: bool) -> String {
        let until = self.available_at(single);
        let resting = until > now;
        let mut out = format!(
            "{{\"state\":\"{}\",\"consecutiveFailures\":{}",
            if resting { "resting" } else { "healthy" },
            self.failures.load(Relaxed)
        );
        if resting {
            let unix_ms = crate::stats::unix_time_ms() + (until - now);
            let reason = self.rest_cause().map_or("unknown", Cause::as_str);
            out.push_str(&format!(
                ",\"restingUntil\":{unix_ms},\"reason\":\"{reason}\""
            ));
        }
        if let Some(cause) = Cause::from_code(self.last_cause.load(Relaxed)) {
            out.push_str(&format!(
                ",\"lastError\":{{\"reason\":\"{}\",\"status\":{}}}",
                cause.as_str(),
                self.last_status.load(Relaxed)
            ));
        }
        out.push('}');
        out
    }

    /// Whether it rests at `now` (for metrics).
    pub fn is_resting(&self, now: u64) -> bool {
        self.available_at(false) > now
    }

    pub fn consecutive_failures(&self) -> u32 {
        self.failures.load(Relaxed)
    }
}

impl Router {
    /// `{"accounts":[…],"deployments":[…]}`: the health of every account
    /// (`provider/account`, with its origin's) and every deployment
    /// (`provider/account/upstream-model`, with the client model), for
    /// `/stats`, the management statistics and the status page.
    pub fn health_json(&self) -> String {
        let now = now_ms();
        let mut accounts = Vec::new();
        for p in &self.providers {
            for a in &p.accounts {
                accounts.push(format!(
                    "{{\"id\":{},\"account\":{},\"origin\":{}}}",
                    json_str(&format!("{}/{}", p.id, a.id)),
                    a.health.json(now, false),
                    p.health.json(now, false)
                ));
            }
        }
        let mut deployments = Vec::new();
        for r in &self.routes {
            for t in &r.targets {
                let p = &self.providers[t.provider];
                for (a, d) in p.accounts.iter().zip(&t.deployments) {
                    deployments.push(format!(
                        "{{\"id\":{},\"model\":{},\"health\":{}}}",
                        json_str(&format!("{}/{}/{}", p.id, a.id, t.upstream_name)),
                        json_str(&r.name),
                        // Shown as enforced: the only candidate on an
                        // endpoint it serves ignores consecutive failures.
                        d.json(now, r.single_on & t.endpoints != 0)
                    ));
                }
            }
        }
        format!(
            "{{\"accounts\":[{}],\"deployments\":[{}]}}",
            accounts.join(","),
            deployments.join(",")
        )
    }

    /// Every scope's shared-rest slot and every account with a daily limit,
    /// for the shared-state sync loop (`crate::shared`).
    pub fn shared_slots(&self) -> Slots {
        let mut slots = Slots {
            clock: Some(now_ms),
            ..Slots::default()
        };
        for p in &self.providers {
            slots
                .rests
                .push((format!("o:{}", p.id), p.health.shared_until.clone()));
            for a in &p.accounts {
                slots.rests.push((
                    format!("a:{}/{}", p.id, a.id),
                    a.health.shared_until.clone(),
                ));
                if a.daily_limit > 0 {
                    slots
                        .accounts
                        .push((format!("{}/{}", p.id, a.id), a.today.clone()));
                }
            }
        }
        for (id, _, h) in self.deployments() {
            slots
                .rests
                .push((format!("d:{id}"), h.shared_until.clone()));
        }
        slots
    }

    /// Every deployment as `(id, client model, health)`, for metrics.
    pub fn deployments(&self) -> impl Iterator<Item = (String, &str, &Health)> {
        self.routes.iter().flat_map(move |r| {
            r.targets.iter().flat_map(move |t| {
                let p = &self.providers[t.provider];
                p.accounts.iter().zip(&t.deployments).map(move |(a, d)| {
                    (
                        format!("{}/{}/{}", p.id, a.id, t.upstream_name),
                        r.name.as_str(),
                        d,
                    )
                })
            })
        })
    }
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
