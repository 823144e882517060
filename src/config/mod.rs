//! Configuration: the JSON file of docs/wire.md §2, the built-in default of docs/wire.md §1,
//! and the limits of docs/wire.md §6.
//!
//! This module owns the file format (camelCase keys, unknown keys rejected,
//! `${VAR}` expansion), turning it into a validated [`Config`], and describing
//! that config to a human (`--check-config`). It is off the data path: it runs
//! at start and on restart (SIGHUP, management `restart`) and favours clear
//! error messages over speed. It must not open sockets or touch runtime state;
//! the server builds its routing tables from the [`Config`] it returns.
//!
//! Loading is a pipeline, one file per stage:
//! text → `document` (order-preserving JSON tree, `${VAR}` expansion)
//! → [`file`] (typed file structs, vendor shorthand, defaults)
//! → [`Config::validate`] (cross-references and value ranges).
//! Every error carries the key path it is about, e.g. `providers[1].baseUrl`.
//!
//! Durations are whole milliseconds in the file, under plain names
//! (`requestTimeout`, `limits.headerReadTimeout`) as Chat2API writes
//! `requestTimeout`; the one exception, the mock's `tokenDelayMs`, keeps the
//! name the mock provider documents.

mod base_url;
mod document;
mod error;
mod file;
mod table;
pub mod vendors;

pub use base_url::BaseUrl;
pub use error::ConfigError;
pub(crate) use file::unbracket;

pub use crate::api::Endpoint;
use serde::Deserialize;
use std::collections::HashSet;
use std::fmt;
use std::net::Ipv6Addr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Environment variable naming the config file when `--config` is not given.
pub const CONFIG_ENV: &str = "CHAT2API_CONFIG";
/// Default proxy listen host.
pub const DEFAULT_HOST: &str = "127.0.0.1";
/// Default proxy listen port.
pub const DEFAULT_PORT: u16 = 8080;
/// Default management listen port.
pub const DEFAULT_MANAGEMENT_PORT: u16 = 8081;
/// Default upstream first-byte deadline (`requestTimeout`).
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_millis(120_000);
/// Default number of retries on another account after a failed attempt.
pub const DEFAULT_RETRY_COUNT: u32 = 2;
/// Id of the built-in mock provider of the default config.
pub const MOCK_PROVIDER_ID: &str = "mock";
/// The model the mock always serves.
pub const MOCK_MODEL: &str = "mock-echo";
/// The model of the original Proxy Settings page examples, served by the mock
/// in the built-in default until a DeepSeek key is set.
pub const EXAMPLE_MODEL: &str = "DeepSeek-V3.2";
/// Account id used when a provider's accounts are implied rather than listed.
pub const DEFAULT_ACCOUNT_ID: &str = "default";
/// The longest client key, in bytes: longer ones are refused at load, and
/// the gateway's constant-time comparison covers this many bytes.
pub const MAX_KEY_BYTES: usize = 256;
/// Default `limits.upstreamMaxIdle`: as many as `maxConnections` allows
/// requests in flight, so no burst's connections are thrown away.
pub const DEFAULT_UPSTREAM_MAX_IDLE: usize = 20_000;
/// The built-in default's mock streams one token per this delay, so that
/// `curl -N` shows an answer arriving as from a real provider (a config's
/// own mock providers stream at once unless they set `tokenDelayMs`).
pub const BUILTIN_MOCK_TOKEN_DELAY: Duration = Duration::from_millis(25);
/// The most worker threads a config may ask for.
pub const MAX_WORKERS: usize = 256;

/// One worker per core the process may run on (docs/wire.md §6).
pub fn default_workers() -> usize {
    std::thread::available_parallelism()
        .map_or(1, usize::from)
        .min(MAX_WORKERS)
}

/// The whole, validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    /// Proxy listen host: IPv4 or IPv6 literal (no brackets) or host name.
    pub host: String,
    /// Proxy listen port; 0 asks the OS for a free one.
    pub port: u16,
    /// Client keys. Only enabled ones are accepted; none enabled = no auth.
    pub api_keys: Vec<ApiKey>,
    /// How a model's accounts are chosen (`loadBalanceStrategy`).
    pub load_balance: Strategy,
    /// Upstream first-byte deadline (docs/wire.md §6); ms in the file.
    pub request_timeout: Duration,
    /// Further attempts on other accounts after a failed one.
    pub retry_count: u32,
    /// One line per `/v1/` request on stderr (docs/wire.md §5), `accessLog`.
    pub access_log: AccessLog,
    /// Proxy worker threads (`workers`), each with its own runtime, listener
    /// socket and upstream pool shard; at least 1. The file's 0 or absence
    /// means one per available core.
    pub workers: usize,
    /// The management listener (docs/wire.md §5).
    pub management: Management,
    /// What `/v1/responses` keeps for later turns (`responsesStore`).
    pub responses_store: ResponsesStore,
    /// Several instances sharing limits and rests through Redis
    /// (`sharedState`); `None`: this instance alone.
    pub shared_state: Option<SharedState>,
    /// Upstreams, in file order.
    pub providers: Vec<Provider>,
    /// Request-model rewrites, in file order.
    pub model_mappings: Vec<ModelMapping>,
    /// Protocol limits and timeouts (docs/wire.md §6).
    pub limits: Limits,
    /// The file this came from; `None` for the built-in default.
    pub source: Option<PathBuf>,
}

/// A client key. The file accepts a bare string or `{"name", "key", "enabled"}`.
#[derive(Clone, PartialEq, Eq)]
pub struct ApiKey {
    /// Label for humans and logs; `key<N>` (1-based position) when not given.
    pub name: String,
    /// The secret the client sends.
    pub key: String,
    pub enabled: bool,
    /// What the key may use and spend (docs/config.md "Key rules"); all
    /// absent for a bare-string key.
    pub rules: KeyRules,
}

/// The rules of one client key (`apiKeys[]` object form). `None` (or an
/// empty `models`) means no rule of that kind. Counting is by UTC day for
/// the daily budgets; tokens are prompt plus completion tokens as the
/// upstream's `usage` reports them (docs/config.md "Key rules").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct KeyRules {
    /// Client model names (with `*` wildcards) the key may use; others are
    /// 404 `model_not_found` for it. Empty: every model.
    pub models: Vec<String>,
    /// Requests per minute, by GCRA: up to `rpm` in a burst, then one every
    /// `60 s / rpm`.
    pub rpm: Option<u64>,
    /// Tokens per minute, by GCRA over reserved tokens.
    pub tpm: Option<u64>,
    /// Requests (and streams) open at once.
    pub max_concurrent: Option<u64>,
    /// Requests per UTC day.
    pub daily_requests: Option<u64>,
    /// Tokens per UTC day.
    pub daily_tokens: Option<u64>,
    /// The key stops working at this instant (Unix milliseconds).
    pub expires_at: Option<u64>,
    /// Tokens reserved for the answer of a request that sets no
    /// `max_tokens` (or its equivalent), against `tpm` and `dailyTokens`.
    pub reserve_tokens: u64,
}

/// The answer tokens reserved for a request that names no `max_tokens`.
pub const DEFAULT_RESERVE_TOKENS: u64 = 4096;

impl KeyRules {
    /// Whether any rule beyond `models` and `expiresAt` applies, i.e.
    /// whether a request with this key must be counted.
    pub fn counts(&self) -> bool {
        self.rpm.is_some()
            || self.tpm.is_some()
            || self.max_concurrent.is_some()
            || self.daily_requests.is_some()
            || self.daily_tokens.is_some()
    }

    /// Whether any rule at all applies.
    pub fn any(&self) -> bool {
        self.counts() || !self.models.is_empty() || self.expires_at.is_some()
    }

    /// Whether it holds a budget (a daily rule), which `sharedState.budgets`
    /// may make fail closed.
    pub fn has_budget(&self) -> bool {
        self.daily_requests.is_some() || self.daily_tokens.is_some()
    }
}

/// `sharedState`: what several instances agree on through one Redis
/// (docs/config.md "Several instances"; absent = each instance alone).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedState {
    /// `redis://[:PASSWORD@]HOST[:PORT][/DB]`, checked at load.
    pub redis: String,
    /// How long a request waits for Redis before it is decided on this
    /// instance's own counters.
    pub timeout: Duration,
    /// Budgets (`dailyRequests`, `dailyTokens`) refuse requests while Redis
    /// cannot be reached (`"budgets": "fail-closed"`), instead of counting
    /// locally.
    pub budgets_fail_closed: bool,
    /// How often shared rests and account counters are read back.
    pub sync_interval: Duration,
}

/// Defaults of `sharedState`.
pub const DEFAULT_SHARED_TIMEOUT: Duration = Duration::from_millis(100);
pub const DEFAULT_SHARED_SYNC: Duration = Duration::from_millis(250);

/// How the accounts serving a model are chosen (docs/wire.md §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Rotate through healthy accounts.
    #[default]
    RoundRobin,
    /// The healthy account least used today.
    FillFirst,
    /// The first healthy account in file order.
    Failover,
}

/// The management listener.
#[derive(Clone, PartialEq, Eq)]
pub struct Management {
    /// `false` = no management listener at all.
    pub enabled: bool,
    pub host: String,
    pub port: u16,
    /// When set, every API call needs `Authorization: Bearer <secret>`.
    pub secret: Option<String>,
}

/// One upstream.
#[derive(Debug, Clone, PartialEq)]
pub struct Provider {
    /// Unique; appears in stats (`providerUsage`) and logs.
    pub id: String,
    pub kind: ProviderKind,
    /// In file order; at least one for an OpenAI-compatible provider.
    pub accounts: Vec<Account>,
    /// (name clients use, name the upstream expects), in file order
    pub models: Vec<(String, String)>,
    pub completions: EndpointMode,
    /// How `/v1/responses` reaches this provider (`responses`).
    pub responses: EndpointMode,
    /// What a `responses: "chat"` translation does with hosted tools
    /// (`hostedTools`).
    pub hosted_tools: HostedTools,
    /// The endpoints its models serve (`endpoints`); `None` = all.
    pub endpoints: Option<Vec<Endpoint>>,
    /// Client model → the endpoints it serves, for models given as
    /// `{"upstream": …, "endpoints": […]}`; they override `endpoints`.
    pub model_endpoints: Vec<(String, Vec<Endpoint>)>,
    pub enabled: bool,
}

impl Provider {
    /// The endpoints `client_model` serves here; `None` = all.
    pub fn endpoints_of(&self, client_model: &str) -> Option<&[Endpoint]> {
        self.model_endpoints
            .iter()
            .find(|(m, _)| m == client_model)
            .map(|(_, e)| &e[..])
            .or(self.endpoints.as_deref())
    }
}

/// What a provider talks to.
#[derive(Debug, Clone, PartialEq)]
pub enum ProviderKind {
    /// Any OpenAI-compatible HTTP API (also every named vendor).
    OpenAi {
        base_url: BaseUrl,
        /// Extra PEM root certificates to trust, besides the built-in roots.
        ca_file: Option<PathBuf>,
    },
    /// The built-in deterministic provider (no network).
    Mock(MockProfile),
    /// Anthropic's Messages API (`"type": "anthropic"`, docs/config.md
    /// "Anthropic providers"): `/v1/messages` and its `count_tokens` are
    /// forwarded as they are; chat completions and Responses requests are
    /// translated to Messages requests, and the answers back.
    Anthropic {
        base_url: BaseUrl,
        /// Extra PEM root certificates to trust, besides the built-in roots.
        ca_file: Option<PathBuf>,
    },
}

impl ProviderKind {
    /// The base URL and extra roots of a provider reached over HTTP
    /// (`None` for the mock).
    pub fn http(&self) -> Option<(&BaseUrl, Option<&PathBuf>)> {
        match self {
            ProviderKind::OpenAi { base_url, ca_file }
            | ProviderKind::Anthropic { base_url, ca_file } => Some((base_url, ca_file.as_ref())),
            ProviderKind::Mock(_) => None,
        }
    }

    fn ca_file_mut(&mut self) -> Option<&mut PathBuf> {
        match self {
            ProviderKind::OpenAi { ca_file, .. } | ProviderKind::Anthropic { ca_file, .. } => {
                ca_file.as_mut()
            }
            ProviderKind::Mock(_) => None,
        }
    }

    /// Whether this provider speaks Anthropic's Messages API.
    pub fn is_anthropic(&self) -> bool {
        matches!(self, ProviderKind::Anthropic { .. })
    }
}

/// How the mock behaves (README "The mock as a benchmark target"): what it
/// answers, how fast, how long, and how often it fails. The default is an
/// instant, faultless echo.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MockProfile {
    /// Fixed answer text; `None` = the mock's own echo answer.
    pub text: Option<String>,
    /// Time to the first streamed token (`firstTokenMs`), and before a
    /// plain answer.
    pub first_token: Duration,
    /// Pause between streamed tokens (`tokenDelayMs`).
    pub token_delay: Duration,
    /// Each pause varies uniformly by up to this much either way
    /// (`tokenJitterMs`, at most `tokenDelayMs`).
    pub token_jitter: Duration,
    /// Answer length in words (`answerTokens`): the answer text repeated
    /// or cut to it; `None` = the text as it is.
    pub answer_tokens: Option<u32>,
    /// Injected failures (`failures`).
    pub failures: MockFailures,
}

/// Shares of requests the mock fails on purpose, each in `0.0..=1.0`,
/// together at most 1 (`failures` in a mock provider).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MockFailures {
    /// Answered 429 `rate_limit_exceeded` with `Retry-After` (`rateLimit`).
    pub rate_limit: f64,
    /// Answered 500 (`serverError`).
    pub server_error: f64,
    /// Streams that stop halfway, with no `[DONE]` (`cutStream`); plain
    /// requests are not cut.
    pub cut_stream: f64,
    /// The `Retry-After` of an injected 429, in seconds
    /// (`retryAfterSeconds`, default 1).
    pub retry_after: u64,
}

/// An upstream account (API key) of a provider.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    /// Unique within the provider; stats name it `provider/account`.
    pub id: String,
    /// Sent as `Authorization: Bearer`; empty = send no Authorization header
    /// (local servers that need no key). Unused by the mock.
    pub api_key: String,
    /// Requests per day (UTC) before the account is skipped; 0 = unlimited.
    pub daily_limit: u64,
    pub enabled: bool,
    /// Sent as `OpenAI-Organization` with this account's key (a client's
    /// own is never forwarded).
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project` with this account's key.
    pub project: Option<String>,
}

/// A request-model rewrite (docs/wire.md §2 `modelMappings`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelMapping {
    /// Exact name or `*` wildcard pattern; an exact match wins over a wildcard.
    pub request_model: String,
    /// A client model name some provider serves.
    pub actual_model: String,
    /// Try this provider first when it serves `actual_model`.
    pub preferred_provider_id: Option<String>,
}

/// The access log's format (`accessLog`): a text line (default), a JSON
/// object per line, or none.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AccessLog {
    #[default]
    Text,
    Json,
    Off,
}

/// How `/v1/completions` (`completions`) or `/v1/responses` (`responses`)
/// reaches a provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EndpointMode {
    /// Forward the request as is.
    #[default]
    Native,
    /// Translate it to a chat request, and the answer back to the
    /// endpoint's shape (`text_completion`, a Responses object or events).
    Chat,
}

/// The response store (`responsesStore`): what the Responses translation
/// keeps, in process memory, for `previous_response_id`, `item_reference`
/// and `GET /v1/responses/{id}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResponsesStore {
    pub enabled: bool,
    /// Responses kept at most; the oldest goes first.
    pub max_responses: usize,
    /// Bytes kept at most (inputs and outputs as JSON); the oldest go first.
    pub max_bytes: usize,
    /// How long a response is kept.
    pub ttl: Duration,
}

impl Default for ResponsesStore {
    fn default() -> ResponsesStore {
        ResponsesStore {
            enabled: true,
            max_responses: 10_000,
            max_bytes: 128 * 1024 * 1024,
            ttl: Duration::from_secs(3600),
        }
    }
}

/// What a `responses: "chat"` provider does with tools that run on
/// OpenAI's servers (`web_search`, `file_search`, `code_interpreter`, …):
/// file key `hostedTools`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HostedTools {
    /// Leave them out of the chat request and name them in the answer's
    /// `x-chat2api-dropped-tools` header.
    #[default]
    Drop,
    /// Refuse the request with a 400 naming the tool.
    Refuse,
}

/// Protocol limits and timeouts (docs/wire.md §6); file key `limits`, sizes in bytes,
/// durations in milliseconds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Limits {
    /// Request line plus headers; over it → 431.
    pub max_head_bytes: usize,
    /// Header count; over it → 431.
    pub max_headers: usize,
    /// Request target; over it → 414. At most `max_head_bytes`.
    pub max_uri_bytes: usize,
    /// Request body (client to gateway only); over it → 413.
    pub max_body_bytes: u64,
    /// Chunk extensions of one chunk; 0 = reject any extension.
    pub max_chunk_ext_bytes: usize,
    /// Trailer section; 0 = reject any trailer.
    pub max_trailer_bytes: usize,
    /// Whole header section must arrive within this.
    pub header_read_timeout: Duration,
    /// Longest gap between two reads of a request body.
    pub body_read_timeout: Duration,
    /// Longest one write to a client may take (a client that stops reading
    /// is cut off).
    pub send_timeout: Duration,
    /// Idle client connection between requests.
    pub keep_alive_timeout: Duration,
    pub upstream_connect_timeout: Duration,
    /// Longest gap between two upstream events inside a stream.
    pub stream_idle_timeout: Duration,
    /// Grace period for in-flight requests at shutdown; 0 = exit at once.
    pub drain_timeout: Duration,
    /// Pooled idle upstream connections are closed after this; 0 = no pooling.
    pub upstream_idle_timeout: Duration,
    /// Pooled idle upstream connections per origin; 0 = no pooling. The
    /// default keeps every connection a burst opened (each idle one for at
    /// most `upstream_idle_timeout`), so the idle set follows recent demand:
    /// a cap below the concurrency of a burst makes the pool close and
    /// reopen connections on every burst, and a small upstream's accept
    /// queue overflows (1 s SYN retries).
    pub upstream_max_idle: usize,
    /// Upstream connections open at once per origin, idle and busy, shared
    /// out over the workers (`crate::upstream::pool`); 0 = no cap. At its
    /// worker's share a request queues for a connection (nginx's
    /// `max_conns` with `queue`), so a burst does not overflow a small
    /// upstream's accept queue.
    pub upstream_max_conns: usize,
    /// Longest a request queues at `upstream_max_conns`; over it → 503
    /// `server_overloaded`. Zero refuses at once.
    pub upstream_queue_timeout: Duration,
    /// SSE comment sent to the client when a stream is quiet this long; 0 = never.
    pub sse_keepalive_interval: Duration,
    /// Concurrent client connections; a connection over it gets a prompt
    /// 503 `server_overloaded` with `Retry-After` and is closed.
    pub max_connections: usize,
    /// One plain (non-streamed) upstream answer or error body; over it →
    /// 502 `upstream_error`. Streams are not bounded as a whole.
    pub max_answer_bytes: usize,
    /// One event of a streamed upstream answer; over it the stream ends
    /// with an error event.
    pub max_event_bytes: usize,
}

impl Default for Limits {
    /// The defaults of docs/wire.md §6.
    fn default() -> Limits {
        Limits {
            max_head_bytes: 64 * 1024,
            max_headers: 100,
            max_uri_bytes: 8 * 1024,
            max_body_bytes: 50 * 1024 * 1024,
            max_chunk_ext_bytes: 4 * 1024,
            max_trailer_bytes: 16 * 1024,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(10),
            send_timeout: Duration::from_secs(60),
            keep_alive_timeout: Duration::from_secs(60),
            upstream_connect_timeout: Duration::from_secs(5),
            stream_idle_timeout: Duration::from_secs(300),
            drain_timeout: Duration::from_secs(30),
            upstream_idle_timeout: Duration::from_secs(20),
            upstream_max_idle: DEFAULT_UPSTREAM_MAX_IDLE,
            upstream_max_conns: 0,
            upstream_queue_timeout: Duration::from_secs(10),
            sse_keepalive_interval: Duration::from_secs(15),
            max_connections: 20_000,
            max_answer_bytes: 64 * 1024 * 1024,
            max_event_bytes: 16 * 1024 * 1024,
        }
    }
}

impl Default for Management {
    fn default() -> Management {
        Management {
            enabled: true,
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_MANAGEMENT_PORT,
            secret: None,
        }
    }
}

impl Strategy {
    /// The file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Strategy::RoundRobin => "round-robin",
            Strategy::FillFirst => "fill-first",
            Strategy::Failover => "failover",
        }
    }
}

impl fmt::Display for Strategy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl EndpointMode {
    /// The file spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EndpointMode::Native => "native",
            EndpointMode::Chat => "chat",
        }
    }
}

impl fmt::Display for EndpointMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

// Debug output must never carry secrets: configs end up in logs and panics.
impl fmt::Debug for ApiKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ApiKey")
            .field("name", &self.name)
            .field("key", &"<hidden>")
            .field("enabled", &self.enabled)
            .field("rules", &self.rules)
            .finish()
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("id", &self.id)
            .field(
                "api_key",
                &if self.api_key.is_empty() {
                    ""
                } else {
                    "<hidden>"
                },
            )
            .field("daily_limit", &self.daily_limit)
            .field("enabled", &self.enabled)
            .field("organization", &self.organization)
            .field("project", &self.project)
            .finish()
    }
}

impl fmt::Debug for Management {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Management")
            .field("enabled", &self.enabled)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .finish()
    }
}

impl Provider {
    /// The upstream name of client model `model`, if this provider serves it.
    pub fn upstream_model(&self, model: &str) -> Option<&str> {
        self.models
            .iter()
            .find(|(client, _)| client == model)
            .map(|(_, upstream)| upstream.as_str())
    }

    /// Whether this is the built-in mock.
    pub fn is_mock(&self) -> bool {
        matches!(self.kind, ProviderKind::Mock(_))
    }
}

impl Config {
    /// Load from `path`, or from $CHAT2API_CONFIG, or the built-in default when neither is given.
    ///
    /// `${VAR}` references and the built-in default read the process
    /// environment. A relative `caFile` is taken relative to the config file's
    /// directory, so the file works from any working directory.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let env = |name: &str| std::env::var(name).ok();
        let from_env = std::env::var_os(CONFIG_ENV)
            .filter(|p| !p.is_empty())
            .map(PathBuf::from);
        let Some(path) = path.map(Path::to_path_buf).or(from_env) else {
            return Ok(Config::builtin(&env));
        };
        let text = std::fs::read_to_string(&path).map_err(|source| ConfigError::Io {
            path: path.clone(),
            source,
        })?;
        let mut config = Config::from_json(&text, &env)?;
        let dir = path.parent().unwrap_or(Path::new(""));
        for provider in &mut config.providers {
            if let Some(ca) = provider.kind.ca_file_mut() {
                if ca.is_relative() {
                    *ca = dir.join(&*ca);
                }
            }
        }
        config.source = Some(path);
        Ok(config)
    }

    /// Parse a JSON document; `env` resolves ${VAR} references (tests pass a closure).
    ///
    /// `env` also supplies vendor keys where a vendor provider lists no
    /// accounts, and the built-in providers when the file has no `providers`.
    /// The result is validated; `source` is `None` (see [`Config::load`]).
    pub fn from_json(
        text: &str,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let mut node = document::parse(text)?;
        document::expand_env(&mut node, "", env)?;
        let config = file::into_config(node, env)?;
        config.validate()?;
        Ok(config)
    }

    /// docs/wire.md §1 built-in default: mock provider id "mock" serving "mock-echo" and — unless DEEPSEEK_API_KEY is set — "DeepSeek-V3.2"; plus one provider per well-known vendor env var that is set.
    ///
    /// A variable set to the empty string counts as unset.
    pub fn builtin(env: &dyn Fn(&str) -> Option<String>) -> Config {
        Config {
            host: DEFAULT_HOST.to_owned(),
            port: DEFAULT_PORT,
            api_keys: Vec::new(),
            load_balance: Strategy::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            retry_count: DEFAULT_RETRY_COUNT,
            workers: default_workers(),
            access_log: AccessLog::default(),
            management: Management::default(),
            responses_store: ResponsesStore::default(),
            shared_state: None,
            providers: builtin_providers(env),
            model_mappings: Vec::new(),
            limits: Limits::default(),
            source: None,
        }
    }

    /// The effective routing table, human readable, for --check-config: each client model -> provider/account(s) -> upstream model, the mappings, listen addresses, auth on/off (never print secrets/keys: mask them).
    pub fn routing_table(&self) -> String {
        table::render(self)
    }

    /// Whether clients must present a key (at least one enabled `apiKeys` entry).
    pub fn auth_enabled(&self) -> bool {
        self.api_keys.iter().any(|k| k.enabled)
    }

    /// The provider with id `id`.
    pub fn provider(&self, id: &str) -> Option<&Provider> {
        self.providers.iter().find(|p| p.id == id)
    }

    /// Check cross-references and ranges. [`Config::from_json`] runs this;
    /// run it again after changing a config in code (e.g. `Cli::apply`).
    pub fn validate(&self) -> Result<(), ConfigError> {
        check_listen_host("host", &self.host)?;
        if self.request_timeout.is_zero() {
            return Err(invalid("requestTimeout", "must be more than 0 ms"));
        }
        if !(1..=MAX_WORKERS).contains(&self.workers) {
            return Err(invalid(
                "workers",
                format!("must be 0 (one per core) to {MAX_WORKERS}"),
            ));
        }
        self.validate_api_keys()?;
        self.validate_management()?;
        self.validate_providers()?;
        self.validate_mappings()?;
        self.validate_limits()
    }

    fn validate_api_keys(&self) -> Result<(), ConfigError> {
        let mut names = HashSet::new();
        let mut keys = HashSet::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            let path = index_path("apiKeys", i);
            if k.key.is_empty() {
                return Err(invalid(&path, "the key is empty"));
            }
            if k.key.len() > MAX_KEY_BYTES {
                return Err(invalid(
                    &path,
                    format!("the key is longer than {} bytes", MAX_KEY_BYTES),
                ));
            }
            if !names.insert(k.name.as_str()) {
                return Err(invalid(
                    &path,
                    format!("the name `{}` is used twice", k.name),
                ));
            }
            // The message must not quote the key itself.
            if !keys.insert(k.key.as_str()) {
                return Err(invalid(&path, "the same key is listed twice"));
            }
            let r = &k.rules;
            for (rule, value) in [
                ("rpm", r.rpm),
                ("tpm", r.tpm),
                ("maxConcurrent", r.max_concurrent),
                ("dailyRequests", r.daily_requests),
                ("dailyTokens", r.daily_tokens),
                ("reserveTokens", Some(r.reserve_tokens)),
            ] {
                if value == Some(0) {
                    return Err(invalid(
                        &key_path(&path, rule),
                        "must be at least 1 (leave the rule out for no limit)",
                    ));
                }
            }
            if let Some(i) = r.models.iter().position(|m| m.is_empty()) {
                return Err(invalid(
                    &index_path(&key_path(&path, "models"), i),
                    "is empty",
                ));
            }
        }
        Ok(())
    }

    fn validate_management(&self) -> Result<(), ConfigError> {
        let m = &self.management;
        check_listen_host("management.host", &m.host)?;
        if m.secret.as_deref() == Some("") {
            // An empty secret (often an empty ${VAR}) would mean "no auth";
            // make the user say so by leaving it out.
            return Err(invalid(
                "management.secret",
                "is empty; leave `secret` out to run management without one",
            ));
        }
        if m.enabled && m.port != 0 && m.port == self.port && m.host == self.host {
            return Err(invalid(
                "management.port",
                format!("{} is also the proxy port", m.port),
            ));
        }
        Ok(())
    }

    fn validate_providers(&self) -> Result<(), ConfigError> {
        if self.providers.is_empty() {
            return Err(invalid(
                "providers",
                "is empty; leave it out to use the built-in providers",
            ));
        }
        let mut ids = HashSet::new();
        for (i, p) in self.providers.iter().enumerate() {
            let path = index_path("providers", i);
            check_id(&key_path(&path, "id"), &p.id)?;
            if !ids.insert(p.id.as_str()) {
                return Err(invalid(
                    &key_path(&path, "id"),
                    format!("`{}` is used by two providers", p.id),
                ));
            }
            validate_accounts(&path, p)?;
            validate_models(&path, p)?;
            if let Some((_, Some(ca))) = p.kind.http() {
                if ca.as_os_str().is_empty() {
                    return Err(invalid(&key_path(&path, "caFile"), "is empty"));
                }
            }
        }
        Ok(())
    }

    fn validate_mappings(&self) -> Result<(), ConfigError> {
        let mut patterns = HashSet::new();
        for (i, m) in self.model_mappings.iter().enumerate() {
            let path = index_path("modelMappings", i);
            if m.request_model.is_empty() {
                return Err(invalid(&key_path(&path, "requestModel"), "is empty"));
            }
            if !patterns.insert(m.request_model.as_str()) {
                return Err(invalid(
                    &key_path(&path, "requestModel"),
                    format!("`{}` is mapped twice", m.request_model),
                ));
            }
            if !self
                .providers
                .iter()
                .any(|p| p.upstream_model(&m.actual_model).is_some())
            {
                return Err(invalid(
                    &key_path(&path, "actualModel"),
                    format!("no provider serves `{}`", m.actual_model),
                ));
            }
            if let Some(id) = &m.preferred_provider_id {
                let path = key_path(&path, "preferredProviderId");
                let provider = self
                    .provider(id)
                    .ok_or_else(|| invalid(&path, format!("there is no provider `{id}`")))?;
                if provider.upstream_model(&m.actual_model).is_none() {
                    return Err(invalid(
                        &path,
                        format!("provider `{id}` does not serve `{}`", m.actual_model),
                    ));
                }
            }
        }
        Ok(())
    }

    fn validate_limits(&self) -> Result<(), ConfigError> {
        let l = &self.limits;
        // Zero is rejected where it would make every request fail; where zero
        // has a useful meaning ("none allowed", "off") it is documented on the
        // field instead.
        let nonzero_sizes = [
            ("maxHeadBytes", l.max_head_bytes as u64),
            ("maxHeaders", l.max_headers as u64),
            ("maxUriBytes", l.max_uri_bytes as u64),
            ("maxBodyBytes", l.max_body_bytes),
            ("maxConnections", l.max_connections as u64),
            ("maxAnswerBytes", l.max_answer_bytes as u64),
            ("maxEventBytes", l.max_event_bytes as u64),
        ];
        let nonzero_times = [
            ("headerReadTimeout", l.header_read_timeout),
            ("bodyReadTimeout", l.body_read_timeout),
            ("sendTimeout", l.send_timeout),
            ("keepAliveTimeout", l.keep_alive_timeout),
            ("upstreamConnectTimeout", l.upstream_connect_timeout),
            ("streamIdleTimeout", l.stream_idle_timeout),
        ];
        for (key, value) in nonzero_sizes {
            if value == 0 {
                return Err(invalid(&key_path("limits", key), "must be more than 0"));
            }
        }
        for (key, value) in nonzero_times {
            if value.is_zero() {
                return Err(invalid(&key_path("limits", key), "must be more than 0 ms"));
            }
        }
        if l.max_uri_bytes > l.max_head_bytes {
            // The URI is part of the head: 414 could never be answered.
            return Err(invalid(
                "limits.maxUriBytes",
                format!("must not exceed maxHeadBytes ({})", l.max_head_bytes),
            ));
        }
        Ok(())
    }
}

fn validate_accounts(path: &str, p: &Provider) -> Result<(), ConfigError> {
    let accounts_path = key_path(path, "accounts");
    if p.accounts.is_empty() {
        return Err(invalid(
            &accounts_path,
            "a provider needs at least one account",
        ));
    }
    let mut ids = HashSet::new();
    for (j, a) in p.accounts.iter().enumerate() {
        let id_path = key_path(&index_path(&accounts_path, j), "id");
        check_id(&id_path, &a.id)?;
        if !ids.insert(a.id.as_str()) {
            return Err(invalid(
                &id_path,
                format!("`{}` is used twice in this provider", a.id),
            ));
        }
    }
    Ok(())
}

fn validate_models(path: &str, p: &Provider) -> Result<(), ConfigError> {
    let models_path = key_path(path, "models");
    if p.models.is_empty() {
        return Err(invalid(&models_path, "a provider needs at least one model"));
    }
    let mut seen = HashSet::new();
    for (client, upstream) in &p.models {
        if client.is_empty() || upstream.is_empty() {
            return Err(invalid(&models_path, "model names cannot be empty"));
        }
        if !seen.insert(client.as_str()) {
            return Err(invalid(&models_path, format!("`{client}` is listed twice")));
        }
    }
    Ok(())
}

/// Provider and account ids end up in `provider/account` stats keys and
/// Prometheus labels, so they must be non-empty and free of `/`, quotes,
/// whitespace and control characters.
fn check_id(path: &str, id: &str) -> Result<(), ConfigError> {
    if id.is_empty() {
        return Err(invalid(path, "is empty"));
    }
    if let Some(bad) = id
        .chars()
        .find(|&c| c == '/' || c == '"' || c == '\\' || c.is_whitespace() || c.is_control())
    {
        return Err(invalid(path, format!("`{id}` contains {bad:?}")));
    }
    Ok(())
}

/// A listen host: IPv4 or IPv6 literal or a host name. IPv6 is written without
/// brackets so it can be passed to the socket layer as `(host, port)`.
fn check_listen_host(path: &str, host: &str) -> Result<(), ConfigError> {
    if host.contains(':') {
        return host.parse::<Ipv6Addr>().map(|_| ()).map_err(|_| {
            invalid(
                path,
                format!("`{host}` is not an IPv6 address (write it without brackets)"),
            )
        });
    }
    base_url::check_hostname(host).map_err(|message| invalid(path, message))
}

fn builtin_providers(env: &dyn Fn(&str) -> Option<String>) -> Vec<Provider> {
    let key_of = |var: &str| env(var).filter(|v| !v.is_empty());
    let deepseek_key_set = vendors::vendor("deepseek").is_some_and(|v| key_of(v.env_var).is_some());
    let mut mock_models = vec![(MOCK_MODEL.to_owned(), MOCK_MODEL.to_owned())];
    if !deepseek_key_set {
        mock_models.push((EXAMPLE_MODEL.to_owned(), EXAMPLE_MODEL.to_owned()));
    }
    let mut providers = vec![Provider {
        id: MOCK_PROVIDER_ID.to_owned(),
        kind: ProviderKind::Mock(MockProfile {
            token_delay: BUILTIN_MOCK_TOKEN_DELAY,
            ..MockProfile::default()
        }),
        accounts: vec![default_account(String::new())],
        models: mock_models,
        completions: EndpointMode::Native,
        responses: EndpointMode::Native,
        hosted_tools: HostedTools::Drop,
        endpoints: None,
        model_endpoints: Vec::new(),
        enabled: true,
    }];
    for vendor in vendors::VENDORS {
        let Some(key) = key_of(vendor.env_var) else {
            continue;
        };
        let Ok(base_url) = BaseUrl::parse(vendor.base_url) else {
            // The vendor table is tested to parse; skipping keeps start-up
            // total even if an entry were ever broken.
            continue;
        };
        providers.push(Provider {
            id: vendor.name.to_owned(),
            kind: vendor.kind(base_url, None),
            accounts: vec![default_account(key)],
            models: vendor_models(vendor),
            completions: EndpointMode::Native,
            responses: EndpointMode::Native,
            hosted_tools: HostedTools::Drop,
            endpoints: vendor.endpoints(),
            model_endpoints: Vec::new(),
            enabled: true,
        });
    }
    providers
}

/// The one account `default` of a provider that lists none.
pub fn default_account(api_key: String) -> Account {
    Account {
        id: DEFAULT_ACCOUNT_ID.to_owned(),
        api_key,
        daily_limit: 0,
        enabled: true,
        organization: None,
        project: None,
    }
}

fn vendor_models(vendor: &vendors::Vendor) -> Vec<(String, String)> {
    vendor
        .models
        .iter()
        .map(|&(client, upstream)| (client.to_owned(), upstream.to_owned()))
        .collect()
}

/// The name patterns of `modelMappings[].requestModel` and
/// `apiKeys[].models`: `*` matches any run of bytes (also empty);
/// everything else matches itself.
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

fn invalid(path: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.to_owned(),
        message: message.into(),
    }
}

/// `parent.key`, or `key` at the root; the same rendering serde_path_to_error
/// uses, so every error path looks alike.
fn key_path(parent: &str, key: &str) -> String {
    if parent.is_empty() {
        key.to_owned()
    } else {
        format!("{parent}.{key}")
    }
}

/// `parent[index]`.
fn index_path(parent: &str, index: usize) -> String {
    format!("{parent}[{index}]")
}

#[cfg(test)]
mod tests;
