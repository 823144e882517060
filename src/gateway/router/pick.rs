//! Choosing a deployment for one attempt (docs/wire.md §2): the
//! candidates of a resolved model on an endpoint, by strategy, skipping
//! those tried, out of quota or resting; and what a pick carries to the
//! attempt (its ids, its usage counters, how to record its outcome).

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::{
    endpoint_bit, now_ms, Account, Cause, Failure, Health, Pick, Provider, Resolved, Route, Router,
    Target,
};
use crate::api::Endpoint;
use crate::config::Strategy;
use crate::stats::{Counter, RouteIds};

impl Router {
    /// Choose a deployment for the next attempt, skipping those in `tried`,
    /// those whose account is disabled or out of its daily quota, and those
    /// resting (deployment, account or origin). When none is left, says
    /// why: all were tried, or when the soonest resting one returns.
    pub fn pick<'a>(
        &'a self,
        resolved: &Resolved<'a>,
        endpoint: Endpoint,
        tried: &[(usize, usize)],
    ) -> Result<Pick<'a>, Unavailable> {
        let route = resolved.route;
        let now = now_ms();
        let bit = endpoint_bit(endpoint);
        let single = route.single_on & bit != 0;
        let candidates =
            || {
                route
                    .targets
                    .iter()
                    .filter(move |t| t.endpoints & bit != 0)
                    .flat_map(move |t| {
                        let p = &self.providers[t.provider];
                        p.accounts.iter().zip(&t.deployments).enumerate().map(
                            move |(ai, (a, d))| Candidate {
                                t,
                                p,
                                a,
                                d,
                                idx: (t.provider, ai),
                            },
                        )
                    })
            };
        let available_at = |c: &Candidate| {
            c.p.health
                .available_at(single)
                .max(c.a.health.available_at(single))
                .max(c.d.available_at(single))
        };
        let open = |c: &Candidate| !tried.contains(&c.idx) && c.a.has_quota();
        let usable = |c: &Candidate| open(c) && available_at(c) <= now;
        // The preferred provider of a mapping is tried first, whatever the strategy.
        if let Some(pref) = resolved.preferred {
            if let Some(c) = candidates().filter(|c| c.t.provider == pref).find(usable) {
                return Ok(self.finish_pick(route, c));
            }
        }
        let chosen = match self.strategy {
            Strategy::Failover => candidates().find(usable),
            Strategy::FillFirst => candidates().filter(usable).min_by_key(|c| c.a.used_today()),
            Strategy::RoundRobin => {
                let n = candidates().count();
                let start = route.next.fetch_add(1, Relaxed) % n.max(1);
                candidates().cycle().skip(start).take(n).find(usable)
            }
        };
        if let Some(c) = chosen {
            return Ok(self.finish_pick(route, c));
        }
        // Nothing usable: resting ones say when to come back.
        let mut soonest: Option<u64> = None;
        let mut rate_limited = true;
        for c in candidates().filter(open) {
            let at = available_at(&c);
            soonest = Some(soonest.map_or(at, |s| s.min(at)));
            let on_rate_limit = c.d.rest_cause() == Some(Cause::RateLimit)
                && c.a.health.available_at(single) <= now
                && c.p.health.available_at(single) <= now;
            rate_limited &= on_rate_limit;
        }
        match soonest {
            None => Err(Unavailable::Exhausted),
            Some(at) => Err(Unavailable::Resting {
                retry_after: Duration::from_millis(at.saturating_sub(now)),
                rate_limited,
            }),
        }
    }

    fn finish_pick<'a>(&'a self, route: &'a Route, c: Candidate<'a>) -> Pick<'a> {
        c.a.record_use();
        Pick {
            provider: c.p,
            account: c.a,
            deployment: c.d,
            route,
            upstream_model: &c.t.upstream_model,
            index: c.idx,
            target: c.t,
            ids: RouteIds {
                model: route.label,
                provider: c.p.label,
                account: c.a.label,
                upstream_model: c.t.upstream_label,
            },
        }
    }
}

/// One deployment considered by `pick`.
struct Candidate<'a> {
    t: &'a Target,
    p: &'a Provider,
    a: &'a Account,
    d: &'a Health,
    idx: (usize, usize),
}

/// Why [`Router::pick`] found no deployment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unavailable {
    /// Every candidate was tried for this request already (or none has
    /// quota left today).
    Exhausted,
    /// Every candidate left is resting; the soonest returns after
    /// `retry_after`. `rate_limited`: they all rest on rate limits.
    Resting {
        retry_after: Duration,
        rate_limited: bool,
    },
}

/// The scope a failure belongs to (see the module docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    Deployment,
    Account,
    Origin,
}

impl Resolved<'_> {
    /// Count a request for this model that no deployment took (all
    /// resting): `modelUsage` counts it, no provider or account does.
    pub fn count_unserved(&self) {
        self.route.counter.fetch_add(1, Relaxed);
    }

    /// The provider that serves this model first, as `owned_by`.
    pub fn owner<'r>(&self, router: &'r Router) -> &'r str {
        self.route
            .targets
            .first()
            .map(|t| router.providers[t.provider].id.as_str())
            .unwrap_or("chat2api")
    }
}

impl<'a> Pick<'a> {
    pub fn index(&self) -> (usize, usize) {
        self.index
    }

    /// The attempt got an answer: every scope it went through is well.
    pub fn record_success(&self) {
        self.deployment.record_success();
        self.account.health.record_success();
        self.provider.health.record_success();
    }

    /// The attempt failed in `scope`. Returns whether that scope now rests.
    pub fn record_failure(&self, scope: Scope, failure: Failure) -> bool {
        let health = match scope {
            Scope::Deployment => self.deployment,
            Scope::Account => &self.account.health,
            Scope::Origin => &self.provider.health,
        };
        health.record_failure(failure, now_ms())
    }

    /// The name a failure's scope is shared under with other instances
    /// (`crate::shared::Slots::rests`).
    pub fn scope_name(&self, scope: Scope) -> String {
        let (p, a) = (&self.provider.id, &self.account.id);
        match scope {
            Scope::Deployment => {
                format!("d:{p}/{a}/{}", self.target.upstream_name)
            }
            Scope::Account => format!("a:{p}/{a}"),
            Scope::Origin => format!("o:{p}"),
        }
    }

    /// The usage counters this attempt would count under.
    pub fn usage(&self) -> Usage<'a> {
        Usage([
            &self.route.counter,
            &self.provider.counter,
            &self.account.counter,
        ])
    }
}

/// The `modelUsage`, `providerUsage` and `accountUsage` counters of one
/// attempt, counted once per request, for the attempt whose answer the
/// client gets.
pub struct Usage<'a>([&'a Counter; 3]);

impl Usage<'_> {
    pub fn count(&self) {
        for c in &self.0 {
            c.fetch_add(1, Relaxed);
        }
    }
}
