//! Model routing and account selection (SPEC §2): which provider and account
//! serve a requested model, by `modelMappings`, the providers' model lists and
//! the load-balance strategy, and which accounts are resting after failures.
//!
//! Built once per config load; on the request path everything is a hash
//! lookup and a few relaxed atomics.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crate::config::{Config, ProviderKind, Strategy};
use crate::stats::{Counter, Label, LabelId, RouteIds, Stats};

/// Consecutive failures after which an account rests (SPEC §2).
pub const FAILURES_BEFORE_REST: u32 = 3;
/// How long it rests.
pub const REST: Duration = Duration::from_secs(60);

/// Milliseconds on a monotonic clock shared by the whole process.
pub fn now_ms() -> u64 {
    static START: OnceLock<Instant> = OnceLock::new();
    START.get_or_init(Instant::now).elapsed().as_millis() as u64
}

fn today() -> u64 {
    crate::stats::unix_time() / 86_400
}

/// A provider as the router sees it: its accounts and how to reach it.
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    pub accounts: Vec<Account>,
    pub native_completions: bool,
    counter: Counter,
    label: LabelId,
}

pub struct Account {
    pub id: String,
    /// `Bearer KEY`, rendered once; empty for an account without a key
    /// (local servers), which then sends no `Authorization` at all.
    pub authorization: Bytes,
    daily_limit: u64,
    enabled: bool,
    day: AtomicU64,
    used_today: AtomicU64,
    failures: AtomicU32,
    resting_until_ms: AtomicU64,
    counter: Counter,
    label: LabelId,
}

impl Account {
    fn new(
        id: &str,
        key: &str,
        daily_limit: u64,
        enabled: bool,
        label: (LabelId, Counter),
    ) -> Account {
        Account {
            id: id.to_owned(),
            authorization: if key.is_empty() {
                Bytes::new()
            } else {
                Bytes::from(format!("Bearer {key}"))
            },
            daily_limit,
            enabled,
            day: AtomicU64::new(today()),
            used_today: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            resting_until_ms: AtomicU64::new(0),
            counter: label.1,
            label: label.0,
        }
    }

    fn used_today(&self) -> u64 {
        if self.day.load(Relaxed) != today() {
            0
        } else {
            self.used_today.load(Relaxed)
        }
    }

    fn is_healthy(&self, now: u64) -> bool {
        self.enabled
            && self.resting_until_ms.load(Relaxed) <= now
            && (self.daily_limit == 0 || self.used_today() < self.daily_limit)
    }

    fn record_use(&self) {
        let d = today();
        if self.day.swap(d, Relaxed) != d {
            self.used_today.store(0, Relaxed);
        }
        self.used_today.fetch_add(1, Relaxed);
        self.counter.fetch_add(1, Relaxed);
    }

    pub fn record_success(&self) {
        self.failures.store(0, Relaxed);
    }

    /// A failed attempt. `retry_after` is the upstream's `Retry-After`, which
    /// rests the account at once for that long.
    pub fn record_failure(&self, retry_after: Option<Duration>) {
        let now = now_ms();
        if let Some(d) = retry_after {
            let until = now + d.as_millis() as u64;
            self.resting_until_ms.fetch_max(until, Relaxed);
        }
        if self.failures.fetch_add(1, Relaxed) + 1 >= FAILURES_BEFORE_REST {
            self.failures.store(0, Relaxed);
            self.resting_until_ms
                .fetch_max(now + REST.as_millis() as u64, Relaxed);
        }
    }
}

/// One way to serve a client-visible model: a provider and the name it uses.
struct Target {
    provider: usize,
    upstream_model: Bytes,
    upstream_label: LabelId,
}

/// A client-visible model with every provider that serves it.
pub struct Route {
    pub name: String,
    targets: Vec<Target>,
    next: AtomicUsize,
    counter: Counter,
    label: LabelId,
}

struct Mapping {
    pattern: String,
    route: usize,
    preferred: Option<usize>,
}

/// The outcome of resolving a requested model.
pub struct Resolved<'a> {
    pub route: &'a Route,
    preferred: Option<usize>,
}

/// A chosen provider + account for one attempt.
pub struct Pick<'a> {
    pub provider: &'a Provider,
    pub account: &'a Account,
    /// The upstream's model name as a JSON string literal.
    pub upstream_model: &'a Bytes,
    index: (usize, usize),
    /// The names this attempt is logged under.
    pub ids: RouteIds,
}

pub struct Router {
    pub providers: Vec<Provider>,
    pub routes: Vec<Route>,
    by_name: HashMap<String, usize>,
    exact_mappings: HashMap<String, (usize, Option<usize>)>,
    wildcard_mappings: Vec<Mapping>,
    strategy: Strategy,
}

impl Router {
    pub fn new(config: &Config, stats: &Stats) -> Router {
        let mut providers = Vec::new();
        let mut routes: Vec<Route> = Vec::new();
        let mut by_name: HashMap<String, usize> = HashMap::new();
        for p in config.providers.iter().filter(|p| p.enabled) {
            let pi = providers.len();
            let mut accounts: Vec<Account> = p
                .accounts
                .iter()
                .map(|a| {
                    let l = stats.label(Label::Account, &format!("{}/{}", p.id, a.id));
                    Account::new(&a.id, &a.api_key, a.daily_limit, a.enabled, l)
                })
                .collect();
            if accounts.is_empty() && matches!(p.kind, ProviderKind::Mock { .. }) {
                let l = stats.label(Label::Account, &format!("{}/default", p.id));
                accounts.push(Account::new("default", "", 0, true, l));
            }
            let (label, counter) = stats.label(Label::Provider, &p.id);
            providers.push(Provider {
                id: p.id.clone(),
                kind: p.kind.clone(),
                accounts,
                native_completions: matches!(p.completions, crate::config::CompletionsMode::Native),
                counter,
                label,
            });
            for (client, upstream) in &p.models {
                let ri = *by_name.entry(client.clone()).or_insert_with(|| {
                    let (label, counter) = stats.label(Label::Model, client);
                    routes.push(Route {
                        name: client.clone(),
                        targets: Vec::new(),
                        next: AtomicUsize::new(0),
                        counter,
                        label,
                    });
                    routes.len() - 1
                });
                routes[ri].targets.push(Target {
                    provider: pi,
                    upstream_model: crate::gateway::json::quoted(upstream),
                    upstream_label: stats.label(Label::UpstreamModel, upstream).0,
                });
            }
        }
        let provider_index = |id: &Option<String>| {
            id.as_ref()
                .and_then(|id| providers.iter().position(|p: &Provider| &p.id == id))
        };
        let mut exact_mappings = HashMap::new();
        let mut wildcard_mappings = Vec::new();
        for m in &config.model_mappings {
            let Some(&route) = by_name.get(&m.actual_model) else {
                continue; // validated at load: only a disabled provider gets here
            };
            let preferred = provider_index(&m.preferred_provider_id);
            if m.request_model.contains('*') {
                wildcard_mappings.push(Mapping {
                    pattern: m.request_model.clone(),
                    route,
                    preferred,
                });
            } else {
                exact_mappings
                    .entry(m.request_model.clone())
                    .or_insert((route, preferred));
            }
        }
        Router {
            providers,
            routes,
            by_name,
            exact_mappings,
            wildcard_mappings,
            strategy: config.load_balance,
        }
    }

    /// Resolve a requested model: an exact mapping, then a served model, then
    /// the first wildcard mapping that matches (SPEC §2: exact beats wildcard).
    pub fn resolve(&self, model: &str) -> Option<Resolved<'_>> {
        let (route, preferred) = if let Some(&(r, p)) = self.exact_mappings.get(model) {
            (r, p)
        } else if let Some(&r) = self.by_name.get(model) {
            (r, None)
        } else {
            let m = self
                .wildcard_mappings
                .iter()
                .find(|m| wildcard_match(m.pattern.as_bytes(), model.as_bytes()))?;
            (m.route, m.preferred)
        };
        Some(Resolved {
            route: &self.routes[route],
            preferred,
        })
    }

    /// Every model a client may ask for by name, for `/v1/models`: served
    /// models and exact mappings.
    pub fn model_names(&self) -> impl Iterator<Item = (&str, &str)> {
        let served = self.routes.iter().map(|r| {
            let owner = r
                .targets
                .first()
                .map(|t| self.providers[t.provider].id.as_str())
                .unwrap_or("chat2api");
            (r.name.as_str(), owner)
        });
        let mapped = self
            .exact_mappings
            .iter()
            .filter(|(name, _)| !self.by_name.contains_key(*name))
            .map(|(name, (r, _))| {
                let owner = self.routes[*r]
                    .targets
                    .first()
                    .map(|t| self.providers[t.provider].id.as_str())
                    .unwrap_or("chat2api");
                (name.as_str(), owner)
            });
        served.chain(mapped)
    }

    /// Choose a provider and account for the next attempt, skipping those in
    /// `tried`. Returns `None` when no healthy account is left.
    pub fn pick<'a>(
        &'a self,
        resolved: &Resolved<'a>,
        tried: &[(usize, usize)],
    ) -> Option<Pick<'a>> {
        let route = resolved.route;
        let now = now_ms();
        let candidates = || {
            route.targets.iter().flat_map(move |t| {
                let p = &self.providers[t.provider];
                p.accounts
                    .iter()
                    .enumerate()
                    .map(move |(ai, a)| (t, p, a, (t.provider, ai)))
            })
        };
        let usable = |idx: &(usize, usize), a: &Account| !tried.contains(idx) && a.is_healthy(now);
        // The preferred provider of a mapping is tried first, whatever the strategy.
        if let Some(pref) = resolved.preferred {
            if let Some((t, p, a, idx)) = candidates()
                .filter(|(t, ..)| t.provider == pref)
                .find(|(_, _, a, idx)| usable(idx, a))
            {
                return Some(self.finish_pick(route, t, p, a, idx));
            }
        }
        let chosen = match self.strategy {
            Strategy::Failover => candidates().find(|(_, _, a, idx)| usable(idx, a)),
            Strategy::FillFirst => candidates()
                .filter(|(_, _, a, idx)| usable(idx, a))
                .min_by_key(|(_, _, a, _)| a.used_today()),
            Strategy::RoundRobin => {
                let n = candidates().count();
                if n == 0 {
                    return None;
                }
                let start = route.next.fetch_add(1, Relaxed) % n;
                candidates()
                    .cycle()
                    .skip(start)
                    .take(n)
                    .find(|(_, _, a, idx)| usable(idx, a))
            }
        };
        let (t, p, a, idx) = chosen?;
        Some(self.finish_pick(route, t, p, a, idx))
    }

    fn finish_pick<'a>(
        &'a self,
        route: &'a Route,
        t: &'a Target,
        p: &'a Provider,
        a: &'a Account,
        idx: (usize, usize),
    ) -> Pick<'a> {
        route.counter.fetch_add(1, Relaxed);
        p.counter.fetch_add(1, Relaxed);
        a.record_use();
        Pick {
            provider: p,
            account: a,
            upstream_model: &t.upstream_model,
            index: idx,
            ids: RouteIds {
                model: route.label,
                provider: p.label,
                account: a.label,
                upstream_model: t.upstream_label,
            },
        }
    }
}

impl Resolved<'_> {
    /// The provider that serves this model first, as `owned_by`.
    pub fn owner<'r>(&self, router: &'r Router) -> &'r str {
        self.route
            .targets
            .first()
            .map(|t| router.providers[t.provider].id.as_str())
            .unwrap_or("chat2api")
    }
}

impl Pick<'_> {
    pub fn index(&self) -> (usize, usize) {
        self.index
    }
}

/// `*` matches any run of bytes (also empty); everything else matches itself.
pub fn wildcard_match(pattern: &[u8], name: &[u8]) -> bool {
    // Iterative glob with single-star backtracking: linear in practice and
    // never recursive, so a hostile pattern in a config cannot blow the stack.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        if p < pattern.len() && pattern[p] == b'*' {
            star = Some((p, n));
            p += 1;
        } else if p < pattern.len() && pattern[p] == name[n] {
            p += 1;
            n += 1;
        } else if let Some((sp, sn)) = star {
            p = sp + 1;
            n = sn + 1;
            star = Some((sp, sn + 1));
        } else {
            return false;
        }
    }
    pattern[p..].iter().all(|b| *b == b'*')
}

/// Shared so the handlers can hold the router across awaits.
pub type SharedRouter = Arc<Router>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards() {
        assert!(wildcard_match(b"gpt-4*", b"gpt-4o"));
        assert!(wildcard_match(b"gpt-4*", b"gpt-4"));
        assert!(wildcard_match(b"*-mini", b"gpt-4o-mini"));
        assert!(wildcard_match(b"a*b", b"axxb"));
        assert!(wildcard_match(b"a*b", b"ab"));
        assert!(!wildcard_match(b"a*b", b"axxbc"));
        assert!(wildcard_match(b"*", b""));
        assert!(!wildcard_match(b"gpt-4*", b"gpt-3.5"));
        assert!(wildcard_match(b"a*b*c", b"aXbYbZc"));
    }

    #[test]
    fn accounts_rest_after_three_failures() {
        let a = Account::new("a", "k", 0, true, (0, Counter::default()));
        let now = now_ms();
        a.record_failure(None);
        a.record_failure(None);
        assert!(a.is_healthy(now));
        a.record_failure(None);
        assert!(!a.is_healthy(now));
        assert!(a.is_healthy(now + REST.as_millis() as u64 + 1000));
    }

    #[test]
    fn daily_limit_is_enforced() {
        let a = Account::new("a", "k", 2, true, (0, Counter::default()));
        a.record_use();
        assert!(a.is_healthy(now_ms()));
        a.record_use();
        assert!(!a.is_healthy(now_ms()));
    }
}
