//! The gateway: what chat2api answers on its proxy port (docs/wire.md §3–4).
//!
//! Owns routing of paths to handlers, client authentication, request
//! validation, model routing and the answers themselves. It never touches a
//! socket: the connection driver (`crate::server`) hands it a parsed head and
//! body, and writes out the [`Response`] it returns.

pub mod auth;
pub mod form;
pub mod json;
pub mod mock;
pub mod proxy;
pub mod router;
pub mod store;
pub mod stream;

use bytes::Bytes;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use crate::api::request_id;
use crate::api::{self, ApiError, Body, Endpoint};
use crate::config::{Config, Limits, ProviderKind};
use crate::http1::{Method, RequestHead};
use crate::limits::{self, KeyLimits};
use crate::server::Service;
use crate::shared::{self, SharedState};
use crate::stats::{unix_time, Stats, Tally};
use crate::translate::{anthropic, responses, EventTranslator};
use crate::upstream::{Upstream, UpstreamConfig};
use auth::ClientKeys;
use router::Router;
use stream::EventStream;

/// A request turned into a chat request, and the translator that turns the
/// chat answer back into the request's dialect.
type ViaChat = (Bytes, Box<dyn EventTranslator>);

/// The gateway's answers: their streams are [`EventStream`]s.
pub type Response = api::Response<EventStream>;

/// The routes of docs/wire.md §3.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// A model-routed `POST /v1/...` endpoint (chat, completions,
    /// embeddings, moderations, images, responses, audio, messages).
    Api(Endpoint),
    /// `POST /v1/messages/count_tokens` (Anthropic): an estimate.
    CountTokens,
    Models,
    Model,
    /// `/v1/responses/{id}` (and its `input_items`, `cancel`): a response
    /// from the response store (`store.rs`).
    StoredResponse,
    Health,
    Stats,
    Root,
    Preflight,
}

impl Route {
    /// Only `/v1/` routes count in the statistics (docs/wire.md §3).
    fn is_counted(self) -> bool {
        matches!(
            self,
            Route::Api(_)
                | Route::CountTokens
                | Route::Models
                | Route::Model
                | Route::StoredResponse
        )
    }

    pub fn has_body(self) -> bool {
        matches!(self, Route::Api(_) | Route::CountTokens)
    }

    /// Routes of the Anthropic Messages API: their errors take Anthropic's
    /// shape (docs/wire.md §4).
    fn is_anthropic(self) -> bool {
        matches!(self, Route::Api(Endpoint::Messages) | Route::CountTokens)
    }
}

/// Everything one loaded config serves with. Shared by the connections of a
/// listener; a restart builds a new one.
pub struct Gateway {
    pub config: Config,
    pub stats: Arc<Stats>,
    keys: ClientKeys,
    /// The rules and counters of each enabled key, in `keys`' order.
    key_limits: Vec<Arc<KeyLimits>>,
    /// Limits, budgets and rests shared with other instances through
    /// Redis (`sharedState`); `None`: this instance alone.
    shared: Option<Arc<SharedState>>,
    router: Router,
    /// What answers each provider's requests, by router index.
    backends: Vec<Backend>,
    created: u64,
    root: Bytes,
    /// The port the listener actually bound, for `/stats` (the config may
    /// say 0).
    bound_port: std::sync::atomic::AtomicU16,
}

/// One API request as it goes through [`Gateway::complete`]'s phases:
/// what each phase reads, and the statistics record they fill.
struct Exchange<'a> {
    endpoint: Endpoint,
    head: &'a RequestHead,
    body: Bytes,
    /// The record of a counted request, attached to its answer once.
    tally: Option<Tally>,
}

/// What answers one provider's requests.
enum Backend {
    /// The built-in mock, answering in process as its profile says.
    Mock(crate::config::MockProfile),
    /// An HTTP upstream (OpenAI-compatible or Anthropic) and its pool of
    /// keep-alive connections.
    Http(Upstream),
}

impl Gateway {
    pub fn new(config: Config, stats: Arc<Stats>) -> Result<Gateway, String> {
        let router = Router::new(&config, &stats);
        let mut backends = Vec::with_capacity(router.providers.len());
        for p in &router.providers {
            backends.push(match &p.kind {
                ProviderKind::Mock(profile) => Backend::Mock(profile.clone()),
                ProviderKind::OpenAi { base_url, ca_file }
                | ProviderKind::Anthropic { base_url, ca_file } => {
                    let cfg = UpstreamConfig {
                        connect_timeout: config.limits.upstream_connect_timeout,
                        idle_timeout: config.limits.upstream_idle_timeout,
                        max_idle: config.limits.upstream_max_idle,
                        max_conns: config.limits.upstream_max_conns,
                        workers: config.workers,
                        queue_timeout: config.limits.upstream_queue_timeout,
                        // Answers are bounded by the gateway (`maxAnswerBytes`
                        // for plain ones, `maxEventBytes` per streamed event),
                        // not by the request-body limit.
                        limits: crate::http1::Limits {
                            max_body_bytes: u64::MAX,
                            ..crate::server::http_limits(&config.limits)
                        },
                    };
                    let u = Upstream::new(
                        base_url.tls,
                        &base_url.host,
                        base_url.port,
                        &base_url.path,
                        ca_file.as_deref(),
                        cfg,
                    )
                    .map_err(|e| format!("provider '{}': {e}", p.id))?;
                    Backend::Http(u)
                }
            });
        }
        let root = serde_json::json!({
            "name": "chat2api",
            "version": env!("CARGO_PKG_VERSION"),
            "endpoints": [
                "POST /v1/chat/completions",
                "POST /v1/completions",
                "POST /v1/embeddings",
                "POST /v1/moderations",
                "POST /v1/images/generations",
                "POST /v1/responses",
                "POST /v1/audio/speech",
                "POST /v1/audio/transcriptions",
                "POST /v1/audio/translations",
                "POST /v1/messages",
                "POST /v1/messages/count_tokens",
                "GET /v1/responses/:id",
                "GET /v1/responses/:id/input_items",
                "DELETE /v1/responses/:id",
                "GET /v1/models",
                "GET /v1/models/:model",
                "GET /health",
                "GET /stats",
                "GET /"
            ]
        });
        let enabled = || config.api_keys.iter().filter(|k| k.enabled);
        let keys = ClientKeys::new(enabled().map(|k| k.key.clone()));
        let key_limits = enabled()
            .map(|k| {
                Arc::new(KeyLimits::new(
                    &k.name,
                    k.rules.clone(),
                    stats.key_usage(&k.name),
                ))
            })
            .collect();
        let shared = match &config.shared_state {
            Some(c) => Some(SharedState::start(c, router.shared_slots(), stats.clone())?),
            None => {
                stats.shared_state.state.store(0, Relaxed);
                None
            }
        };
        store::store().configure(&config.responses_store, shared.clone());
        crate::translate::use_store(store::store());
        Ok(Gateway {
            keys,
            key_limits,
            shared,
            router,
            backends,
            created: unix_time(),
            root: Bytes::from(format!("{root}\n")),
            bound_port: std::sync::atomic::AtomicU16::new(config.port),
            config,
            stats,
        })
    }
}

impl Service for Gateway {
    type Route = Route;
    type Stream = EventStream;

    fn limits(&self) -> &Limits {
        &self.config.limits
    }

    fn connection_opened(&self) {
        self.stats.connection_opened();
    }

    fn connection_closed(&self) {
        self.stats.connection_closed();
    }

    /// Which route, and may this client use it. A refusal carries its
    /// request id like every answer.
    fn error_answer(&self, path: &[u8], err: &ApiError) -> Response {
        let resp = Response::error(err);
        with_request_id(match anthropic_route(path) {
            true => anthropic_error(resp),
            false => resp,
        })
    }

    fn admit(&self, head: &RequestHead) -> Result<(Route, Option<Tally>), Box<Response>> {
        self.admit_route(head).map_err(|resp| {
            let resp = match anthropic_route(head.path()) {
                true => anthropic_error(*resp),
                false => *resp,
            };
            Box::new(with_request_id(resp))
        })
    }

    async fn serve(
        self: &Arc<Self>,
        route: Route,
        head: &RequestHead,
        body: Bytes,
        tally: Option<Tally>,
    ) -> Response {
        // The models this client's key may use (all, without rules).
        let key = tally
            .as_ref()
            .and_then(Tally::key_index)
            .and_then(|i| self.key_limits.get(i));
        let allowed = |model: &str| key.is_none_or(|k| k.allows_model(model));
        let resp = match route {
            Route::Api(endpoint) => {
                let mut resp = self.complete(endpoint, head, body, tally).await;
                if route.is_anthropic() {
                    resp = anthropic_error(resp);
                }
                return with_request_id(resp);
            }
            Route::CountTokens => {
                let resp = self.count_tokens(head, body, &allowed).await;
                return with_request_id(anthropic_error(resp.with_tally(tally)));
            }
            // Anthropic's SDKs and Claude Code list models in their shape.
            Route::Models if head.header("anthropic-version").is_some() => Response::json_doc(
                200,
                anthropic::models_list(
                    self.router
                        .model_names()
                        .filter(|(id, _)| allowed(id))
                        .map(|(id, _)| (id, self.created)),
                ),
            ),
            Route::Models => Response::json_doc(200, self.models_json(&allowed)),
            Route::Model => self.model_json(
                head.path(),
                head.header("anthropic-version").is_some(),
                &allowed,
            ),
            Route::StoredResponse => stored_response(head).await,
            Route::Health => Response::json_doc(200, self.stats.health_json()),
            Route::Stats => {
                let port = self.bound_port.load(std::sync::atomic::Ordering::Relaxed);
                let health = self.router.health_json();
                Response::json_doc(200, self.stats.stats_json("running", port, Some(&health)))
            }
            Route::Root => Response::json(200, self.root.clone()),
            Route::Preflight => preflight(head),
        };
        with_request_id(resp.with_tally(tally))
    }
}

impl Gateway {
    /// The route of a request and whether this client may use it; the
    /// error answer otherwise (before the body is read).
    fn admit_route(&self, head: &RequestHead) -> Result<(Route, Option<Tally>), Box<Response>> {
        let path = head.path();
        let method = head.method();
        let route = match path {
            b"/v1/chat/completions" => Route::Api(Endpoint::Chat),
            b"/v1/completions" => Route::Api(Endpoint::Completions),
            b"/v1/embeddings" => Route::Api(Endpoint::Embeddings),
            b"/v1/moderations" => Route::Api(Endpoint::Moderations),
            b"/v1/images/generations" => Route::Api(Endpoint::Images),
            b"/v1/responses" => Route::Api(Endpoint::Responses),
            b"/v1/audio/speech" => Route::Api(Endpoint::Speech),
            b"/v1/audio/transcriptions" => Route::Api(Endpoint::Transcriptions),
            b"/v1/audio/translations" => Route::Api(Endpoint::Translations),
            b"/v1/messages" => Route::Api(Endpoint::Messages),
            b"/v1/messages/count_tokens" => Route::CountTokens,
            b"/v1/models" => Route::Models,
            _ if path.starts_with(b"/v1/models/") => Route::Model,
            _ if path.starts_with(b"/v1/responses/") => Route::StoredResponse,
            b"/health" => Route::Health,
            b"/stats" => Route::Stats,
            b"/" => Route::Root,
            _ if method == Method::Options => Route::Preflight,
            _ => return Err(Box::new(Response::error(&ApiError::NotFound))),
        };
        let route = if method == Method::Options {
            Route::Preflight
        } else {
            route
        };
        let mut tally = route.is_counted().then(|| Tally::new(&self.stats));
        let method_ok = match route {
            _ if route.has_body() => method == Method::Post,
            Route::Preflight | Route::StoredResponse => true,
            _ => matches!(method, Method::Get | Method::Head),
        };
        if !method_ok {
            // Every path answers a CORS preflight (OPTIONS) besides its own.
            let allow = match route.has_body() {
                true => "POST, OPTIONS",
                false => "GET, HEAD, OPTIONS",
            };
            return Err(Box::new(
                Response::error(&ApiError::MethodNotAllowed(allow)).with_tally(tally),
            ));
        }
        // `/stats` names providers and accounts: only for clients with a
        // key, when keys are configured (`/health` stays open for load
        // balancers).
        if route.is_counted() || route == Route::Stats {
            let key = match self.keys.check(head) {
                Ok(key) => key.and_then(|i| Some((i, self.key_limits.get(i)?))),
                Err(e) => return Err(Box::new(Response::error(&e).with_tally(tally))),
            };
            if let Some((i, key)) = key {
                if let Some(t) = tally.as_mut() {
                    t.key(i, key.usage.clone());
                }
                if key.expired(crate::stats::unix_time_ms()) {
                    let e = ApiError::KeyExpired(key.name.to_string());
                    return Err(Box::new(Response::error(&e).with_tally(tally)));
                }
            }
        }
        Ok((route, tally))
    }

    /// The routing table and the health of every deployment.
    pub fn router(&self) -> &Router {
        &self.router
    }

    /// Every deployment's health now, as plain values (`/metrics`).
    pub fn deployment_health(&self) -> Vec<crate::stats::DeploymentHealth> {
        let now = router::now_ms();
        self.router
            .deployments()
            .map(|(id, model, h)| crate::stats::DeploymentHealth {
                id,
                model: model.to_owned(),
                resting: h.is_resting(now),
                consecutive_failures: h.consecutive_failures(),
            })
            .collect()
    }

    pub fn set_bound_port(&self, port: u16) {
        self.bound_port
            .store(port, std::sync::atomic::Ordering::Relaxed);
    }

    /// A model object (OpenAI's `id`, `object`, `created`, `owned_by`),
    /// with `endpoints`: the endpoint names it can be used with.
    fn model_object(&self, id: &str, owner: &str) -> serde_json::Value {
        let endpoints: Vec<&str> = match self.router.resolve(id) {
            Some(r) => self
                .router
                .endpoints_of(r.route)
                .map(Endpoint::name)
                .collect(),
            None => Vec::new(),
        };
        serde_json::json!({"id": id, "object": "model", "created": self.created, "owned_by": owner,
            "endpoints": endpoints})
    }

    /// `GET /v1/models`: the models `allowed` lets the client see.
    fn models_json(&self, allowed: &dyn Fn(&str) -> bool) -> String {
        let data: Vec<_> = self
            .router
            .model_names()
            .filter(|(id, _)| allowed(id))
            .map(|(id, owner)| self.model_object(id, owner))
            .collect();
        serde_json::json!({"object": "list", "data": data}).to_string()
    }

    /// `GET /v1/models/{model}`: OpenAI's model object, or Anthropic's
    /// (`anthropic`: the request carried `anthropic-version`).
    fn model_json(&self, path: &[u8], anthropic: bool, allowed: &dyn Fn(&str) -> bool) -> Response {
        let raw = &path[b"/v1/models/".len()..];
        let name = percent_decode(raw);
        match self.router.resolve(&name).filter(|_| allowed(&name)) {
            Some(_) if anthropic => Response::json_doc(
                200,
                anthropic::model_object(&name, self.created).to_string(),
            ),
            Some(r) => {
                let owner = r.owner(&self.router);
                Response::json_doc(200, self.model_object(&name, owner).to_string())
            }
            None if anthropic => anthropic_error(Response::error(&ApiError::ModelNotFound(name))),
            None => Response::error(&ApiError::ModelNotFound(name)),
        }
    }

    /// `POST /v1/messages/count_tokens`: the estimate for a model this
    /// gateway serves (404 otherwise), counted off the worker's thread: a
    /// long prompt takes the tokenizer a while.
    async fn count_tokens(
        &self,
        head: &RequestHead,
        body: Bytes,
        allowed: &(dyn Fn(&str) -> bool + Sync),
    ) -> Response {
        if let Some(model) = json::model_of(&body) {
            if self.router.resolve(&model).is_none() || !allowed(&model) {
                return Response::error(&ApiError::ModelNotFound(model));
            }
            if let Some(exact) = self.native_count(head, &body, &model).await {
                return exact;
            }
        }
        match tokio::task::spawn_blocking(move || anthropic::count_tokens(&body)).await {
            Ok(Ok(n)) => Response::json_doc(200, format!("{{\"input_tokens\":{n}}}")),
            Ok(Err(e)) => Response::error(&e),
            Err(_) => Response::error(&ApiError::Upstream("the token count failed".into())),
        }
    }

    /// `/v1/messages/count_tokens` answered by the native Anthropic
    /// provider that serves `model` (exact, the model's own tokenizer),
    /// its answer or error passed on; `None` when no Anthropic provider
    /// serves it (then the count is estimated here).
    async fn native_count(&self, head: &RequestHead, body: &[u8], model: &str) -> Option<Response> {
        let resolved = self.router.resolve(model)?;
        let pick = self.router.pick(&resolved, Endpoint::Messages, &[]).ok()?;
        if !pick.provider.anthropic {
            return None;
        }
        let Backend::Http(upstream) = &self.backends[pick.index().0] else {
            return None;
        };
        // A body that is no JSON object is answered by the estimate's 400.
        let mut doc: serde_json::Value = serde_json::from_slice(body).ok()?;
        doc.as_object_mut()?.insert(
            "model".into(),
            serde_json::from_slice(pick.upstream_model).ok()?,
        );
        let body = [Bytes::from(doc.to_string())];
        let fields = proxy::account_fields(&pick, head);
        let request = crate::upstream::UpstreamRequest {
            method: "POST",
            path: "/messages/count_tokens",
            authorization: None,
            account_fields: &fields,
            forward: Some(head),
            content_type: None,
            body: &body,
            first_byte_timeout: self.config.request_timeout,
        };
        let limits = &self.config.limits;
        let answer = match upstream.send(request).await {
            Ok(mut resp) => match resp
                .collect(limits.max_answer_bytes, self.config.request_timeout)
                .await
            {
                // A 2xx must be a count; anything else is no answer.
                Ok(body) if (200..300).contains(&resp.status()) => {
                    #[derive(serde::Deserialize)]
                    struct Count {
                        #[serde(rename = "input_tokens")]
                        _input_tokens: u64,
                    }
                    match serde_json::from_slice::<Count>(&body) {
                        Ok(_) => Response::json(200, body),
                        Err(_) => Response::error(&ApiError::Upstream(
                            "the upstream answered count_tokens with no input_tokens count".into(),
                        )),
                    }
                }
                Ok(body) => Response::json(resp.status(), body),
                Err(e) => Response::error(&ApiError::Upstream(e.to_string())),
            },
            Err(e) => Response::error(&proxy::failure::api_error(&e)),
        };
        Some(answer)
    }

    /// An API request through its phases (docs/architecture.md, steps
    /// 5–9): validate → route → key rules → stored responses → attempts,
    /// each a method below over the one [`Exchange`]. A phase that refuses
    /// ends the request with its error; the statistics record is attached
    /// to whatever answer comes out, once, here, and logged when its last
    /// byte is written.
    async fn complete(
        self: &Arc<Self>,
        endpoint: Endpoint,
        head: &RequestHead,
        body: Bytes,
        tally: Option<Tally>,
    ) -> Response {
        let mut ex = Exchange {
            endpoint,
            head,
            body,
            tally,
        };
        let resp = match self.phases(&mut ex).await {
            Ok(resp) => resp,
            Err(e) => Response::error(&e),
        };
        resp.with_tally(ex.tally)
    }

    async fn phases(self: &Arc<Self>, ex: &mut Exchange<'_>) -> Result<Response, ApiError> {
        let info = self.validate(ex)?;
        let resolved = self.route(ex.endpoint, &info)?;
        let quota = self.admit_key(&info, ex.body.len(), &mut ex.tally).await?;
        self.load_stored(ex.endpoint, &ex.body, &resolved).await;
        let mut resp = self.attempts(ex, &info, &resolved).await;
        quota.apply(&mut resp.headers);
        Ok(resp)
    }

    /// Phase "validate": the body checked against its endpoint (400 naming
    /// what is wrong); the record names the model either way, when the
    /// body named one.
    fn validate(&self, ex: &mut Exchange<'_>) -> Result<json::RequestInfo, ApiError> {
        let parsed = parse_request(ex.endpoint, ex.head, &ex.body, false);
        if let Some(t) = ex.tally.as_mut() {
            match &parsed {
                Ok(info) => t.requested_model(&info.model),
                Err(_) => {
                    if let Some(model) = json::model_of(&ex.body) {
                        t.requested_model(&model);
                    }
                }
            }
        }
        parsed
    }

    /// Phase "route": the model's routes (404 for a model nobody serves),
    /// and one of them on this endpoint (404 naming the endpoints it is
    /// served on otherwise).
    fn route(
        &self,
        endpoint: Endpoint,
        info: &json::RequestInfo,
    ) -> Result<router::Resolved<'_>, ApiError> {
        let Some(resolved) = self.router.resolve(&info.model) else {
            return Err(ApiError::ModelNotFound(info.model.clone()));
        };
        if !self.router.serves(&resolved, endpoint) {
            let serves: Vec<&str> = self
                .router
                .endpoints_of(resolved.route)
                .map(Endpoint::name)
                .collect();
            return Err(ApiError::EndpointNotServed {
                model: info.model.clone(),
                path: endpoint.upstream_path(),
                serves: serves.join(", "),
            });
        }
        Ok(resolved)
    }

    /// Phase "stored responses": with Redis, the stored responses and
    /// items a Responses request names are brought into memory, where its
    /// translation reads them (`store.rs`); only for a model some provider
    /// of which answers Responses requests through chat (a native
    /// provider's ids are its own, and never in the store).
    async fn load_stored(&self, endpoint: Endpoint, body: &[u8], resolved: &router::Resolved<'_>) {
        let store = store::store();
        if endpoint == Endpoint::Responses
            && store.is_shared()
            && store.enabled()
            && self.router.translates_responses(resolved)
        {
            let (responses, items) = responses::references(body);
            store.sync(&responses, &items).await;
        }
    }

    /// The key's rules for a valid request of a model it may ask for
    /// (docs/config.md "Key rules"): refused with 404 for a model outside
    /// `models`, 429 when a rule says no, 503 for a budget that fails
    /// closed while Redis is down. An admitted request's lease rides in its
    /// statistics record until the answer's last byte; its `x-ratelimit-*`
    /// figures come back.
    async fn admit_key(
        &self,
        info: &json::RequestInfo,
        body_len: usize,
        tally: &mut Option<Tally>,
    ) -> Result<limits::Quota, ApiError> {
        let Some(key) = tally
            .as_ref()
            .and_then(Tally::key_index)
            .and_then(|i| self.key_limits.get(i))
        else {
            return Ok(limits::Quota::default());
        };
        if !key.allows_model(&info.model) {
            return Err(ApiError::ModelNotFound(info.model.clone()));
        }
        if !key.rules.counts() {
            return Ok(limits::Quota::default());
        }
        let ask = limits::Ask::new(&key.rules, body_len, info.max_tokens);
        let now = limits::unix_now_us();
        let refused = |r: limits::Refusal| {
            key.usage.refused.fetch_add(1, Relaxed);
            ApiError::KeyRateLimited {
                message: r.message(&key.name),
                retry_after_ms: r.retry_after_ms,
            }
        };
        let (quota, lease) = match &self.shared {
            Some(shared) => match shared.admit(key, ask).await {
                shared::Admission::Admitted { quota, lease, day } => {
                    let store: Arc<dyn limits::SettleShared> = shared.clone();
                    let held = Some((store, lease));
                    (quota, limits::Lease::new(key.clone(), ask, day, held))
                }
                shared::Admission::Refused(r) => return Err(refused(r)),
                shared::Admission::Unavailable => {
                    shared.fell_back();
                    if key.rules.has_budget() && shared.budgets_fail_closed() {
                        key.usage.refused.fetch_add(1, Relaxed);
                        return Err(ApiError::BudgetUnavailable);
                    }
                    let quota = key.admit_local(ask, now).map_err(refused)?;
                    (
                        quota,
                        limits::Lease::new(key.clone(), ask, now / limits::DAY_US, None),
                    )
                }
            },
            None => {
                let quota = key.admit_local(ask, now).map_err(refused)?;
                (
                    quota,
                    limits::Lease::new(key.clone(), ask, now / limits::DAY_US, None),
                )
            }
        };
        if let Some(t) = tally.as_mut() {
            t.hold(Box::new(lease));
        }
        Ok(quota)
    }

    /// Try deployments of `resolved` until one answers or `retryCount`
    /// retries are spent; the mock answers in place.
    async fn attempts(
        self: &Arc<Self>,
        ex: &mut Exchange<'_>,
        info: &json::RequestInfo,
        resolved: &router::Resolved<'_>,
    ) -> Response {
        let (endpoint, head, body, tally) = (ex.endpoint, ex.head, &ex.body, &mut ex.tally);
        let mut tried = Vec::new();
        let mut last: Option<Response> = None;
        // The usage counters of the attempt whose answer the client gets:
        // `modelUsage` and the rest count requests, not attempts.
        let mut counted: Option<router::Usage> = None;
        for attempt in 0..=self.config.retry_count {
            let pick = match self.router.pick(resolved, endpoint, &tried) {
                Ok(pick) => pick,
                Err(unavailable) => {
                    if last.is_none() {
                        last = Some(Response::error(&unavailable_error(
                            &info.model,
                            unavailable,
                        )));
                    }
                    break;
                }
            };
            if attempt > 0 {
                self.stats.retried();
            }
            tried.push(pick.index());
            counted = Some(pick.usage());
            if let Some(t) = tally.as_mut() {
                t.route(pick.ids);
                t.route_name(&pick.account.name);
            }
            let upstream = match &self.backends[pick.index().0] {
                Backend::Http(upstream) => upstream,
                Backend::Mock(profile) => {
                    pick.record_success();
                    pick.usage().count();
                    // Injected failures reach the client as they would from a
                    // real provider: not retried, and resting nothing.
                    let fate = mock::fate(&profile.failures);
                    if matches!(fate, mock::Fate::RateLimit | mock::Fate::ServerError) {
                        return mock::failure_answer(fate, &profile.failures);
                    }
                    if !info.stream && !profile.first_token.is_zero() {
                        tokio::time::sleep(profile.first_token).await;
                    }
                    return self.mock_answer(endpoint, head, body, profile, fate, tally);
                }
            };
            // The client's name as a JSON string, for answers and events
            // (a form holds it as bare text).
            let client_model = match info.form {
                Some(_) => json::quoted(&info.model),
                None => body.slice(info.model_span.clone()),
            };
            let attempt = proxy::forward(
                self,
                &pick,
                upstream,
                endpoint,
                head,
                body,
                info,
                client_model,
                tally,
            );
            match attempt.await {
                proxy::Attempt::Done(resp) => {
                    pick.usage().count();
                    return resp;
                }
                proxy::Attempt::Failed(failed) => {
                    if pick.record_failure(failed.scope, failed.failure) {
                        self.stats.rested();
                    }
                    // A Retry-After rests that scope on every instance.
                    if let (Some(shared), Some(after)) = (&self.shared, failed.failure.retry_after)
                    {
                        let after = after.min(router::MAX_RETRY_AFTER).as_millis() as u64;
                        shared.publish_rest(
                            pick.scope_name(failed.scope),
                            crate::stats::unix_time_ms() + after,
                        );
                    }
                    last = Some(failed.answer);
                }
            }
        }
        match counted {
            Some(usage) => usage.count(),
            None => resolved.count_unserved(),
        }
        last.unwrap_or_else(|| {
            Response::error(&ApiError::NoAvailableAccount(info.model.clone(), None))
        })
    }

    /// The built-in mock's answer, plain or streamed.
    fn mock_answer(
        &self,
        endpoint: Endpoint,
        head: &RequestHead,
        body: &[u8],
        profile: &crate::config::MockProfile,
        fate: mock::Fate,
        tally: &mut Option<Tally>,
    ) -> Response {
        // Dialects a chat provider is translated into: the mock answers the
        // chat request they become, through the same translation, so that
        // its answers have the very shape a chat provider's get.
        let model = json::model_of(body).unwrap_or_default();
        // Hosted tools the Responses translation left out, named as for a
        // chat provider.
        let mut dropped = None;
        let translated: Option<Result<ViaChat, ApiError>> = match endpoint {
            Endpoint::Messages => Some(anthropic::request_to_chat(body, &model, &model).map(
                |(chat, seed)| {
                    (
                        chat,
                        Box::new(anthropic::MessagesTranslator::new(seed))
                            as Box<dyn EventTranslator>,
                    )
                },
            )),
            Endpoint::Responses => Some(responses::request_to_chat(body, &model, &model).map(
                |(chat, seed)| {
                    if !seed.dropped_tools.is_empty() {
                        dropped = Some(seed.dropped_tools.join(", "));
                    }
                    (
                        chat,
                        Box::new(responses::StreamTranslator::new(seed))
                            as Box<dyn EventTranslator>,
                    )
                },
            )),
            _ => None,
        };
        if let Some(translated) = translated {
            if let (Some(t), Some(names)) = (tally.as_mut(), dropped.as_deref()) {
                t.dropped_tools(names);
            }
            let mut resp = self.mock_translated(translated, profile, fate, tally);
            if let Some(names) = dropped {
                resp.headers
                    .push(("x-chat2api-dropped-tools", Bytes::from(names)));
            }
            return resp;
        }
        // The mock needs the prompt text, which the first parse skipped.
        let info = match parse_request(endpoint, head, body, true) {
            Ok(info) => info,
            Err(e) => return Response::error(&e),
        };
        match endpoint {
            Endpoint::Speech => {
                let (content_type, audio) = mock::speech(&info);
                let mut resp = Response::json(200, audio);
                resp.content_type = content_type;
                if let Some(t) = tally.as_mut() {
                    t.first_token();
                }
                return resp;
            }
            Endpoint::Transcriptions | Endpoint::Translations => {
                let text = mock::transcript_text(endpoint, profile, &info);
                if info.stream {
                    let events = mock::transcript_events(&text);
                    return stream_response(self.paced(events, profile, fate, true), None);
                }
                let (content_type, answer) = mock::transcript(endpoint, &text, &info);
                let mut resp = Response::json(200, answer);
                resp.content_type = content_type;
                if let Some(t) = tally.as_mut() {
                    t.first_token();
                }
                return resp;
            }
            _ => {}
        }
        let answer = mock::answer_text(profile, &info);
        if info.stream {
            let s = mock::word_stream(
                endpoint,
                &answer,
                &info,
                profile,
                fate,
                self.config.limits.sse_keepalive_interval,
            );
            return stream_response(EventStream::Mock(s), None);
        }
        let (body, prompt, completion) = mock::complete(endpoint, &answer, &info);
        if let Some(t) = tally.as_mut() {
            t.first_token();
            t.tokens(prompt, completion);
        }
        Response::json(200, body)
    }
}

impl Gateway {
    /// The mock's events made ahead, handed out at its profile's pace (and
    /// cut when `fate` says), with keep-alive comments in long pauses;
    /// then `[DONE]` when `end_with_done`.
    fn paced(
        &self,
        events: Vec<stream::pace::MadeEvent>,
        profile: &crate::config::MockProfile,
        fate: mock::Fate,
        end_with_done: bool,
    ) -> EventStream {
        let pacer = stream::pace::Pacer::new(profile, fate == mock::Fate::CutStream, events.len())
            .keep_alive(self.config.limits.sse_keepalive_interval);
        let paced = stream::pace::Paced::new(events.into(), pacer);
        EventStream::Prepared(match end_with_done {
            true => paced,
            false => paced.without_done(),
        })
    }

    /// The mock's answer in a translated dialect (Responses, Anthropic
    /// Messages): the chat answer it gives the `chat` request the client's
    /// request became, turned back by `translator` exactly as a chat
    /// provider's is, and streamed at the mock's pace.
    fn mock_translated(
        &self,
        translated: Result<ViaChat, ApiError>,
        profile: &crate::config::MockProfile,
        fate: mock::Fate,
        tally: &mut Option<Tally>,
    ) -> Response {
        let parsed = translated.and_then(|(chat, translator)| {
            json::parse_request(&chat, Endpoint::Chat, true).map(|info| (info, translator))
        });
        let (info, mut translator) = match parsed {
            Ok(t) => t,
            Err(e) => return Response::error(&e),
        };
        let answer = mock::answer_text(profile, &info);
        if let Some(t) = tally.as_mut() {
            t.tokens(info.prompt_words, json::count_words(&answer.text));
        }
        if !info.stream {
            let (chat, _, _) = mock::complete(Endpoint::Chat, &answer, &info);
            if let Some(t) = tally.as_mut() {
                t.first_token();
            }
            return match translator.whole(&chat) {
                Ok(doc) => Response::json(200, doc),
                Err(e) => Response::error(&e),
            };
        }
        let mut events = Vec::new();
        let made = |name: &str, data, content| stream::pace::MadeEvent {
            fields: crate::sse::encode::event_fields(Some(name.as_bytes()), None),
            data,
            content,
        };
        for (chunk, content) in mock::chat_chunks(&answer, &info) {
            for (i, (name, data)) in translator.chunk(&chunk).into_iter().enumerate() {
                // The pace waits before the first event a word makes.
                events.push(made(name, data, content && i == 0));
            }
        }
        match translator.finish() {
            Ok(closing) => events.extend(closing.into_iter().map(|(n, d)| made(n, d, false))),
            Err(e) => return Response::error(&e),
        }
        let end_with_done = translator.ends_with_done();
        stream_response(self.paced(events, profile, fate, end_with_done), None)
    }
}

/// Validate a request body for `endpoint`: a form for transcriptions and
/// translations, JSON for the rest (400 with what is wrong otherwise).
/// `want_text`: also cut out the prompt text the mock answers to.
fn parse_request(
    endpoint: Endpoint,
    head: &RequestHead,
    body: &[u8],
    want_text: bool,
) -> Result<json::RequestInfo, ApiError> {
    match endpoint.takes_form() {
        true => json::parse_form_request(body, head.header("content-type")),
        false => json::parse_request(body, endpoint, want_text),
    }
}

/// `/v1/responses/{id}`: `GET` the response, `DELETE` it; `GET
/// …/input_items` the input it answered, as a list (docs/wire.md §3,
/// "Stored responses"). 404 for an id the store does not hold; 405 for
/// other methods; `POST …/cancel` is 400 (only background responses can
/// be cancelled, and chat2api runs none).
async fn stored_response(head: &RequestHead) -> Response {
    let rest = &head.path()[b"/v1/responses/".len()..];
    let (id, tail) = match memchr::memchr(b'/', rest) {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, &b""[..]),
    };
    let id = percent_decode(id);
    let store = store::store();
    if head.method() != Method::Delete {
        store.sync(std::slice::from_ref(&id), &[]).await;
    }
    let found = || {
        store
            .get(&id)
            .ok_or_else(|| ApiError::NotStored(id.clone()))
    };
    let answer = match (head.method(), tail) {
        (Method::Get | Method::Head, b"") => found().map(|s| {
            String::from_utf8_lossy(s.response_text()).into_owned()
        }),
        (Method::Get | Method::Head, b"/input_items") => {
            found().map(|s| input_items_page(s.input(), head.query().unwrap_or_default()))
        }
        (Method::Delete, b"") => match store.delete(&id).await {
            true => Ok(serde_json::json!({"id": id, "object": "response", "deleted": true}).to_string()),
            false => Err(ApiError::NotStored(id.clone())),
        },
        (Method::Post, b"/cancel") => found().and_then(|_| {
            Err(ApiError::invalid(
                "Only background responses can be cancelled; chat2api answers while the request is open.",
                None,
            ))
        }),
        (_, b"") => Err(ApiError::MethodNotAllowed("GET, HEAD, DELETE, OPTIONS")),
        (_, b"/input_items") => Err(ApiError::MethodNotAllowed("GET, HEAD, OPTIONS")),
        (_, b"/cancel") => Err(ApiError::MethodNotAllowed("POST, OPTIONS")),
        _ => Err(ApiError::NotFound),
    };
    match answer {
        Ok(doc) => Response::json_doc(200, doc),
        Err(e) => Response::error(&e),
    }
}

/// A page of a stored response's input items, as OpenAI lists them
/// (`GET /v1/responses/{id}/input_items`): `order` `desc` (the default,
/// newest first) or `asc`, `limit` 1–100 (default 20), `after` an item id
/// to start after.
fn input_items_page(mut items: Vec<serde_json::Value>, query: &[u8]) -> String {
    let query = String::from_utf8_lossy(query);
    let param = |name: &str| {
        query
            .split('&')
            .find_map(|kv| kv.strip_prefix(name)?.strip_prefix('='))
            .map(percent_decode_str)
    };
    if param("order").as_deref() != Some("asc") {
        items.reverse();
    }
    if let Some(after) = param("after") {
        if let Some(at) = items.iter().position(|i| i["id"] == after.as_str()) {
            items.drain(..=at);
        }
    }
    let limit = param("limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 100);
    let has_more = items.len() > limit;
    items.truncate(limit);
    let first = items
        .first()
        .map_or(serde_json::Value::Null, |i| i["id"].clone());
    let last = items
        .last()
        .map_or(serde_json::Value::Null, |i| i["id"].clone());
    serde_json::json!({"object": "list", "data": items, "first_id": first, "last_id": last,
        "has_more": has_more})
    .to_string()
}

fn percent_decode_str(raw: &str) -> String {
    percent_decode(raw.as_bytes())
}

/// Whether `path` is a route of the Anthropic Messages API (or under it:
/// its unknown routes get Anthropic's 404 too).
fn anthropic_route(path: &[u8]) -> bool {
    path == b"/v1/messages" || path.starts_with(b"/v1/messages/")
}

/// An error answer in Anthropic's shape (`{"type":"error","error":{…}}`),
/// its status and headers (`Retry-After`) kept; other answers as they are.
fn anthropic_error(mut resp: Response) -> Response {
    if resp.is_success() {
        return resp;
    }
    let body = match &resp.body {
        Body::Full(b) => b.clone(),
        Body::Spliced(parts) => Bytes::from(parts.concat()),
        Body::Empty | Body::Stream(_) => return resp,
    };
    resp.body = Body::Full(anthropic::error_body(resp.status, &body));
    resp.content_type = api::response::JSON;
    resp.headers
        .retain(|(name, _)| !name.eq_ignore_ascii_case("content-type"));
    resp
}

/// `resp` with an `x-request-id` (docs/wire.md §4): the upstream's when it sent
/// one, else one made here; also written to the request log.
fn with_request_id(mut resp: Response) -> Response {
    let id = match resp.headers.iter().find(|(n, _)| *n == "x-request-id") {
        Some((_, id)) => id.clone(),
        None => {
            let id = request_id::next();
            resp.headers.push(("x-request-id", id.clone()));
            id
        }
    };
    if let Some(t) = resp.tally.as_mut() {
        t.request_id(&id);
    }
    resp
}

/// The answer when no deployment can take a request (docs/wire.md §2): 429 when
/// every candidate rests on rate limits, else 503; both say when to retry.
fn unavailable_error(model: &str, unavailable: router::Unavailable) -> ApiError {
    match unavailable {
        router::Unavailable::Exhausted => ApiError::NoAvailableAccount(model.to_owned(), None),
        router::Unavailable::Resting {
            retry_after,
            rate_limited,
        } => {
            let secs = retry_after.as_millis().div_ceil(1000).max(1) as u64;
            match rate_limited {
                true => ApiError::RateLimited(model.to_owned(), secs),
                false => ApiError::NoAvailableAccount(model.to_owned(), Some(secs)),
            }
        }
    }
}

/// A `text/event-stream` answer (docs/wire.md §4: no buffering anywhere on the way).
pub fn stream_response(stream: EventStream, tally: Option<Tally>) -> Response {
    Response {
        status: 200,
        content_type: api::response::EVENT_STREAM,
        headers: vec![
            ("Cache-Control", Bytes::from_static(b"no-cache")),
            ("X-Accel-Buffering", Bytes::from_static(b"no")),
        ],
        body: Body::Stream(stream),
        tally: None,
        error: None,
    }
    .with_tally(tally)
}

/// CORS preflight: allow any origin, the methods we serve and the headers the
/// browser asks for.
fn preflight(head: &RequestHead) -> Response {
    let allow_headers = head
        .header_bytes("access-control-request-headers")
        .filter(|h| h.len() <= 1024)
        .unwrap_or_else(|| Bytes::from_static(b"Authorization, Content-Type, X-API-Key"));
    Response::preflight(allow_headers)
}

/// Decode `%XX` escapes of a path segment (model ids like `org%2Fmodel`).
fn percent_decode(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        if raw[i] == b'%' && i + 2 < raw.len() {
            let hex = |b: u8| (b as char).to_digit(16);
            if let (Some(h), Some(l)) = (hex(raw[i + 1]), hex(raw[i + 2])) {
                out.push((h * 16 + l) as u8);
                i += 3;
                continue;
            }
        }
        out.push(raw[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}
