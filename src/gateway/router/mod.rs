//! Model routing and account selection (docs/wire.md §2): which provider and account
//! serve a requested model, by `modelMappings`, the providers' model lists and
//! the load-balance strategy, and what is resting after failures.
//!
//! # Health
//!
//! A *deployment* is one way to serve a client model: a provider's account
//! with the upstream model name it uses. Failures are kept where they
//! belong ([`Health`], one per scope):
//!
//! - per deployment: rate limits (429), 5xx, timeouts and broken answers,
//!   since providers limit and fail per model;
//! - per account: its key refused (401/403);
//! - per origin (a provider's base URL, all its accounts): connections that
//!   cannot be made.
//!
//! Three failures in a row rest a scope for [`REST`]; an upstream's
//! `Retry-After` rests it for that long at once. A model with a single
//! candidate on the endpoint asked for ignores rests from consecutive
//! failures (there is nowhere else to go, and resting would turn a blip
//! into a minute of refusals) but honours `Retry-After`. A client's own error (other 4xx) rests nothing.
//! When every candidate rests, [`Router::pick`] says when the soonest
//! returns and whether they all rest on rate limits.
//!
//! Built once per config load; on the request path everything is a hash
//! lookup and a few relaxed atomics. This file holds the table (providers,
//! accounts, routes and their targets, mappings); `pick.rs` chooses a
//! deployment for an attempt, `health.rs` keeps each scope's health and
//! its views for the operator.

use bytes::Bytes;
use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::Arc;

use crate::api::{Endpoint, ENDPOINTS};
use crate::config::{Config, ProviderKind, Strategy};
use crate::shared::DayCount;
use crate::stats::{Counter, Label, LabelId, RouteIds, Stats};

mod health;
mod pick;
pub use health::{now_ms, Cause, Failure, Health, FAILURES_BEFORE_REST, MAX_RETRY_AFTER, REST};
pub use pick::{Scope, Unavailable, Usage};

fn today() -> u64 {
    crate::stats::unix_time() / 86_400
}

/// A provider as the router sees it: its accounts and how to reach it.
pub struct Provider {
    pub id: String,
    pub kind: ProviderKind,
    pub accounts: Vec<Account>,
    pub native_completions: bool,
    /// `/v1/responses` is forwarded as is (else translated to chat).
    pub native_responses: bool,
    /// What the translation to chat does with hosted tools.
    pub hosted_tools: crate::config::HostedTools,
    /// Speaks Anthropic's Messages API (`"type": "anthropic"`): chat and
    /// Responses requests are translated to it, Messages requests pass.
    pub anthropic: bool,
    /// The origin's health: connections that cannot be made.
    pub health: Health,
    counter: Counter,
    label: LabelId,
}

/// An account as the router sees it: its key, quota and health.
pub struct Account {
    pub id: String,
    /// `Bearer KEY`, rendered once; empty for an account without a key
    /// (local servers), which then sends no `Authorization` at all.
    pub authorization: Bytes,
    /// `OpenAI-Organization` / `OpenAI-Project` header lines (an Anthropic
    /// provider's: `x-api-key`), rendered once.
    pub fields: Bytes,
    daily_limit: u64,
    enabled: bool,
    /// Requests today, by this instance and (with `sharedState`) the others.
    today: Arc<DayCount>,
    /// The account's own health: its key refused.
    pub health: Health,
    /// `provider/account`, as the access log names it.
    pub name: Arc<str>,
    counter: Counter,
    label: LabelId,
}

impl Account {
    /// `anthropic`: the key goes in `x-api-key` (Anthropic's API), not in
    /// `Authorization`.
    fn new(
        config: &crate::config::Account,
        name: String,
        label: (LabelId, Counter),
        anthropic: bool,
    ) -> Account {
        let mut fields = Vec::new();
        if anthropic && !config.api_key.is_empty() {
            fields.extend_from_slice(format!("x-api-key: {}\r\n", config.api_key).as_bytes());
        }
        for (name, value) in [
            ("OpenAI-Organization", &config.organization),
            ("OpenAI-Project", &config.project),
        ] {
            // Validated at load; a value that could end the line is dropped.
            if let Some(v) = value
                .as_deref()
                .filter(|v| v.bytes().all(|b| (b' '..=b'~').contains(&b)))
            {
                fields.extend_from_slice(format!("{name}: {v}\r\n").as_bytes());
            }
        }
        Account {
            id: config.id.clone(),
            authorization: if config.api_key.is_empty() || anthropic {
                Bytes::new()
            } else {
                Bytes::from(format!("Bearer {}", config.api_key))
            },
            fields: Bytes::from(fields),
            daily_limit: config.daily_limit,
            enabled: config.enabled,
            today: Arc::default(),
            health: Health::default(),
            name: name.into(),
            counter: label.1,
            label: label.0,
        }
    }

    fn used_today(&self) -> u64 {
        self.today.total(today())
    }

    /// Enabled and within its daily limit (rests aside).
    fn has_quota(&self) -> bool {
        self.enabled && (self.daily_limit == 0 || self.used_today() < self.daily_limit)
    }

    fn record_use(&self) {
        self.today.record(today());
    }
}

/// One way to serve a client-visible model: a provider and the name it uses.
struct Target {
    provider: usize,
    upstream_model: Bytes,
    upstream_label: LabelId,
    /// The upstream model's name, for health reports.
    upstream_name: String,
    /// One deployment per account of the provider, by account index.
    deployments: Vec<Health>,
    /// The endpoints served here, one bit per [`ENDPOINTS`] index.
    endpoints: u16,
}

/// The bit of `endpoint` in an endpoint mask: its place in [`ENDPOINTS`],
/// which lists them in declaration order (a test in `json` checks it).
fn endpoint_bit(endpoint: Endpoint) -> u16 {
    1 << endpoint as u16
}

/// The mask of a provider's endpoint list (`None` = all).
fn endpoint_mask(list: Option<&[Endpoint]>) -> u16 {
    match list {
        Some(list) => list.iter().fold(0, |m, e| m | endpoint_bit(*e)),
        None => u16::MAX,
    }
}

/// A client-visible model with every provider that serves it.
pub struct Route {
    pub name: String,
    targets: Vec<Target>,
    /// The endpoints (one bit per [`ENDPOINTS`] index) that exactly one
    /// deployment of this model serves: on them, consecutive failures do
    /// not rest that deployment.
    single_on: u16,
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
    /// The deployment's health.
    deployment: &'a Health,
    route: &'a Route,
    /// The upstream's model name as a JSON string literal.
    pub upstream_model: &'a Bytes,
    index: (usize, usize),
    target: &'a Target,
    /// The names this attempt is logged under.
    pub ids: RouteIds,
}

/// Client model names → the deployments that serve them, with their
/// health; picks one per attempt (docs/wire.md §2).
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
                    let name = format!("{}/{}", p.id, a.id);
                    let l = stats.label(Label::Account, &name);
                    Account::new(a, name, l, p.kind.is_anthropic())
                })
                .collect();
            if accounts.is_empty() && matches!(p.kind, ProviderKind::Mock { .. }) {
                let name = format!("{}/default", p.id);
                let l = stats.label(Label::Account, &name);
                let config = crate::config::default_account(String::new());
                accounts.push(Account::new(&config, name, l, false));
            }
            let account_count = accounts.len();
            let (label, counter) = stats.label(Label::Provider, &p.id);
            providers.push(Provider {
                id: p.id.clone(),
                kind: p.kind.clone(),
                accounts,
                native_completions: matches!(p.completions, crate::config::EndpointMode::Native),
                native_responses: matches!(p.responses, crate::config::EndpointMode::Native),
                hosted_tools: p.hosted_tools,
                anthropic: p.kind.is_anthropic(),
                health: Health::default(),
                counter,
                label,
            });
            for (client, upstream) in &p.models {
                let ri = *by_name.entry(client.clone()).or_insert_with(|| {
                    let (label, counter) = stats.label(Label::Model, client);
                    routes.push(Route {
                        name: client.clone(),
                        targets: Vec::new(),
                        single_on: 0,
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
                    upstream_name: upstream.clone(),
                    deployments: (0..account_count).map(|_| Health::default()).collect(),
                    endpoints: endpoint_mask(p.endpoints_of(client)),
                });
            }
        }
        for r in &mut routes {
            r.single_on = ENDPOINTS
                .into_iter()
                .map(endpoint_bit)
                .filter(|bit| {
                    let serving = r.targets.iter().filter(|t| t.endpoints & bit != 0);
                    serving.map(|t| t.deployments.len()).sum::<usize>() == 1
                })
                .fold(0, |mask, bit| mask | bit);
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
    /// the first wildcard mapping that matches (docs/wire.md §2: exact beats wildcard).
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

    /// Whether some provider serves `endpoint` for this route's model.
    /// Whether some provider of a resolved model answers Responses
    /// requests through chat (and so keeps them in the response store):
    /// `responses: "chat"`, an Anthropic provider, or the mock.
    pub fn translates_responses(&self, resolved: &Resolved<'_>) -> bool {
        resolved.route.targets.iter().any(|t| {
            let p = &self.providers[t.provider];
            p.anthropic || !p.native_responses || matches!(p.kind, ProviderKind::Mock(_))
        })
    }

    pub fn serves(&self, resolved: &Resolved<'_>, endpoint: Endpoint) -> bool {
        let bit = endpoint_bit(endpoint);
        resolved
            .route
            .targets
            .iter()
            .any(|t| t.endpoints & bit != 0)
    }

    /// The endpoints some provider serves this model with, in
    /// [`ENDPOINTS`] order, for `/v1/models`.
    pub fn endpoints_of(&self, route: &Route) -> impl Iterator<Item = Endpoint> + '_ {
        let mask = route.targets.iter().fold(0, |m, t| m | t.endpoints);
        ENDPOINTS
            .into_iter()
            .filter(move |e| mask & endpoint_bit(*e) != 0)
    }
}

/// `*` wildcards of `modelMappings` and `apiKeys[].models`.
pub use crate::config::wildcard_match;

/// Shared so the handlers can hold the router across awaits.
pub type SharedRouter = Arc<Router>;

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

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
    fn scopes_rest_after_three_failures_or_on_retry_after() {
        let h = Health::default();
        let now = now_ms();
        let fail = |retry_after| Failure {
            cause: Cause::ServerError,
            status: 500,
            retry_after,
        };
        assert!(!h.record_failure(fail(None), now));
        assert!(!h.record_failure(fail(None), now));
        assert!(h.available_at(false) <= now);
        assert!(h.record_failure(fail(None), now));
        assert!(h.available_at(false) > now);
        // A single candidate ignores rests from consecutive failures ...
        assert!(h.available_at(true) <= now);
        // ... but not an upstream's Retry-After.
        assert!(h.record_failure(fail(Some(Duration::from_secs(2))), now));
        assert_eq!(h.available_at(true), now + 2000);
        let v: serde_json::Value = serde_json::from_str(&h.json(now, false)).unwrap();
        assert_eq!(v["state"], "resting");
        assert_eq!(v["reason"], "server_error");
        assert_eq!(v["lastError"]["status"], 500);
        // A single candidate shows what is enforced for it.
        let single: serde_json::Value = serde_json::from_str(&h.json(now, true)).unwrap();
        assert_eq!(single["state"], "resting", "the Retry-After rest holds");
        // An absurd Retry-After is capped.
        let capped = Health::default();
        capped.record_failure(fail(Some(Duration::from_secs(99_999_999_999))), now);
        assert_eq!(
            capped.available_at(true),
            now + MAX_RETRY_AFTER.as_millis() as u64
        );
    }

    #[test]
    fn daily_limit_is_enforced() {
        let config = crate::config::Account {
            daily_limit: 2,
            ..crate::config::default_account("k".into())
        };
        let a = Account::new(&config, "p/a".into(), (0, Counter::default()), false);
        a.record_use();
        assert!(a.has_quota());
        a.record_use();
        assert!(!a.has_quota());
    }

    /// A model whose chat and embeddings are served by different providers
    /// has one deployment per endpoint: consecutive failures of its only
    /// chat deployment do not rest it, as for a model with one deployment.
    #[test]
    fn the_single_candidate_rule_holds_per_endpoint() {
        let json = r#"{"providers": [
            {"id": "chat", "type": "openai", "baseUrl": "http://127.0.0.1:9/v1", "accounts": [{"id": "a"}],
             "models": {"m": {"endpoints": ["chat.completions"]}}},
            {"id": "embed", "type": "openai", "baseUrl": "http://127.0.0.1:9/v1", "accounts": [{"id": "a"}],
             "models": {"m": {"endpoints": ["embeddings"]}}}]}"#;
        let config = Config::from_json(json, &|_| None).unwrap();
        let stats = Stats::new();
        let router = Router::new(&config, &stats);
        let resolved = router.resolve("m").unwrap();
        for _ in 0..3 {
            let pick = router.pick(&resolved, Endpoint::Chat, &[]).unwrap();
            assert_eq!(pick.provider.id, "chat");
            let failure = Failure {
                cause: Cause::ServerError,
                status: 500,
                retry_after: None,
            };
            pick.record_failure(Scope::Deployment, failure);
        }
        let pick = router
            .pick(&resolved, Endpoint::Chat, &[])
            .expect("not rested");
        assert_eq!(pick.provider.id, "chat");
        let pick = router.pick(&resolved, Endpoint::Embeddings, &[]).unwrap();
        assert_eq!(pick.provider.id, "embed");
    }
}
