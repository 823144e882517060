//! The file format of docs/wire.md §2 as serde structs, and their conversion into a
//! [`Config`]: defaults filled in, vendor shorthand expanded, durations turned
//! from milliseconds into [`Duration`]s.
//!
//! Every struct denies unknown keys so a typo is an error naming its path.
//! Fields are `Option` where the file may leave them out, so the defaults live
//! in one place (the conversion) rather than in serde attributes.

use super::document::{self, Node};
use super::{
    builtin_providers, default_account, default_workers, index_path, invalid, key_path,
    vendor_models, vendors, AccessLog, Account, ApiKey, BaseUrl, Config, ConfigError, Endpoint,
    EndpointMode, HostedTools, KeyRules, Limits, Management, MockFailures, MockProfile,
    ModelMapping, Provider, ProviderKind, ResponsesStore, SharedState, Strategy, DEFAULT_HOST,
    DEFAULT_MANAGEMENT_PORT, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RESERVE_TOKENS,
    DEFAULT_RETRY_COUNT, DEFAULT_SHARED_SYNC, DEFAULT_SHARED_TIMEOUT, MOCK_MODEL,
};
use serde::de::{self, value::MapAccessDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The longest pause a mock profile may ask for, in milliseconds.
const MAX_MOCK_DELAY_MS: u64 = 600_000;
/// The longest mock answer, in words.
const MAX_ANSWER_TOKENS: u32 = 100_000;

/// Type the expanded document and convert it. Not validated yet.
pub(super) fn into_config(node: Node, env: Env<'_>) -> Result<Config, ConfigError> {
    let raw: RawConfig = serde_path_to_error::deserialize(node).map_err(typed_error)?;
    raw.into_config(env)
}

/// Turn a serde error into the variant that says the most: unknown keys get
/// their own variant, and a missing or repeated field is reported at the
/// field's own path rather than its parent's.
fn typed_error(e: serde_path_to_error::Error<document::Error>) -> ConfigError {
    let path = document::normalize_root(&e.path().to_string()).to_owned();
    let message = e.into_inner().to_string();
    if message.starts_with("unknown field `") {
        // serde_path_to_error already appended the offending key to the path.
        return ConfigError::UnknownKey { path };
    }
    let field_of = |prefix: &str| {
        message
            .strip_prefix(prefix)
            .and_then(|rest| rest.strip_suffix('`'))
            .map(|field| key_path(&path, field))
    };
    if let Some(field_path) = field_of("missing field `") {
        return invalid(&field_path, "is required");
    }
    if let Some(field_path) = field_of("duplicate field `") {
        return invalid(&field_path, "is given twice");
    }
    ConfigError::Invalid { path, message }
}

#[derive(Deserialize)]
#[serde(
    deny_unknown_fields,
    rename_all = "camelCase",
    expecting = "a chat2api config object"
)]
struct RawConfig {
    host: Option<String>,
    port: Option<u16>,
    #[serde(default)]
    api_keys: Vec<RawApiKey>,
    load_balance_strategy: Option<Strategy>,
    /// Milliseconds.
    request_timeout: Option<u64>,
    retry_count: Option<u32>,
    /// Worker threads; absent or 0 = one per available core.
    workers: Option<usize>,
    access_log: Option<AccessLog>,
    management: Option<RawManagement>,
    responses_store: Option<RawResponsesStore>,
    shared_state: Option<RawSharedState>,
    /// Absent = the built-in providers; present but empty is an error.
    providers: Option<Vec<RawProvider>>,
    #[serde(default)]
    model_mappings: Vec<RawModelMapping>,
    limits: Option<RawLimits>,
}

/// `"sk-..."` or `{"name", "key", "enabled"}`.
enum RawApiKey {
    Bare(String),
    Full(RawApiKeyObject),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawApiKeyObject {
    name: Option<String>,
    key: String,
    enabled: Option<bool>,
    models: Option<Vec<String>>,
    rpm: Option<u64>,
    tpm: Option<u64>,
    max_concurrent: Option<u64>,
    daily_requests: Option<u64>,
    daily_tokens: Option<u64>,
    expires_at: Option<RawInstant>,
    reserve_tokens: Option<u64>,
}

/// An instant: Unix seconds, or RFC 3339 text (`2027-01-31T00:00:00Z`,
/// or a date alone for its UTC midnight).
#[derive(Deserialize)]
#[serde(untagged, expecting = "Unix seconds or an RFC 3339 date-time")]
enum RawInstant {
    Seconds(u64),
    Text(String),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawSharedState {
    redis: String,
    /// Milliseconds.
    timeout: Option<u64>,
    budgets: Option<FailMode>,
    /// Milliseconds.
    sync_interval: Option<u64>,
}

/// What budgets do while Redis cannot be reached.
#[derive(Deserialize, Clone, Copy, PartialEq, Eq)]
#[serde(rename_all = "kebab-case")]
enum FailMode {
    FailOpen,
    FailClosed,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawManagement {
    enabled: Option<bool>,
    host: Option<String>,
    port: Option<u16>,
    secret: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawResponsesStore {
    enabled: Option<bool>,
    max_responses: Option<usize>,
    max_bytes: Option<usize>,
    /// Milliseconds.
    ttl: Option<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawProvider {
    /// Defaults to the type name.
    id: Option<String>,
    /// `openai`, `mock` or a vendor name.
    #[serde(rename = "type")]
    kind: String,
    base_url: Option<String>,
    ca_file: Option<PathBuf>,
    accounts: Option<Vec<RawAccount>>,
    models: Option<RawModels>,
    completions: Option<EndpointMode>,
    responses: Option<EndpointMode>,
    hosted_tools: Option<HostedTools>,
    /// Endpoint names (`chat.completions`, `embeddings`, …).
    endpoints: Option<Vec<String>>,
    enabled: Option<bool>,
    /// Mock only.
    text: Option<String>,
    /// Mock only, milliseconds.
    first_token_ms: Option<u64>,
    /// Mock only, milliseconds.
    token_delay_ms: Option<u64>,
    /// Mock only, milliseconds.
    token_jitter_ms: Option<u64>,
    /// Mock only, words.
    answer_tokens: Option<u32>,
    /// Mock only.
    failures: Option<RawFailures>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawFailures {
    #[serde(default)]
    rate_limit: f64,
    #[serde(default)]
    server_error: f64,
    #[serde(default)]
    cut_stream: f64,
    retry_after_seconds: Option<u64>,
}

/// A model given as an object: its upstream name and what it serves.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawModel {
    /// Defaults to the client name.
    upstream: Option<String>,
    endpoints: Option<Vec<String>>,
}

/// A model's value in the `models` map: the upstream name, or an object.
enum RawModelValue {
    Name(String),
    Full(RawModel),
}

impl<'de> Deserialize<'de> for RawModelValue {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelVisitor;

        impl<'de> Visitor<'de> for ModelVisitor {
            type Value = RawModelValue;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"an upstream model name or {"upstream", "endpoints"}"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawModelValue, E> {
                Ok(RawModelValue::Name(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawModelValue, A::Error> {
                // The derived struct still rejects unknown keys, at their path.
                RawModel::deserialize(MapAccessDeserializer::new(map)).map(RawModelValue::Full)
            }
        }

        deserializer.deserialize_any(ModelVisitor)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawAccount {
    id: String,
    api_key: Option<String>,
    daily_limit: Option<u64>,
    enabled: Option<bool>,
    organization: Option<String>,
    project: Option<String>,
}

/// `{"client": "upstream" | {"upstream", "endpoints"}, ...}` in file
/// order, or `["same-name", ...]`; and the endpoint names of models given
/// as objects.
struct RawModels(Vec<(String, String)>, Vec<(String, Vec<String>)>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawModelMapping {
    request_model: String,
    actual_model: String,
    preferred_provider_id: Option<String>,
}

/// Sizes in bytes (or counts), durations in milliseconds; any key may be left
/// out and keeps its docs/wire.md §6 default.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct RawLimits {
    max_head_bytes: usize,
    max_headers: usize,
    max_uri_bytes: usize,
    max_body_bytes: u64,
    max_chunk_ext_bytes: usize,
    max_trailer_bytes: usize,
    header_read_timeout: u64,
    body_read_timeout: u64,
    send_timeout: u64,
    keep_alive_timeout: u64,
    upstream_connect_timeout: u64,
    stream_idle_timeout: u64,
    drain_timeout: u64,
    upstream_idle_timeout: u64,
    upstream_max_idle: usize,
    upstream_max_conns: usize,
    upstream_queue_timeout: u64,
    sse_keepalive_interval: u64,
    max_connections: usize,
    max_answer_bytes: usize,
    max_event_bytes: usize,
}

impl<'de> Deserialize<'de> for RawApiKey {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct KeyVisitor;

        impl<'de> Visitor<'de> for KeyVisitor {
            type Value = RawApiKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(r#"a key string or {"name", "key", "enabled"}"#)
            }

            fn visit_str<E: de::Error>(self, v: &str) -> Result<RawApiKey, E> {
                Ok(RawApiKey::Bare(v.to_owned()))
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawApiKey, A::Error> {
                // Hand the same MapAccess to the derived struct so unknown keys
                // are still rejected and their path still tracked.
                RawApiKeyObject::deserialize(MapAccessDeserializer::new(map)).map(RawApiKey::Full)
            }
        }

        deserializer.deserialize_any(KeyVisitor)
    }
}

impl<'de> Deserialize<'de> for RawModels {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ModelsVisitor;

        impl<'de> Visitor<'de> for ModelsVisitor {
            type Value = RawModels;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(
                    "a map of client model name to upstream model name, or a list of model names",
                )
            }

            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<RawModels, A::Error> {
                let mut models = Vec::new();
                while let Some(name) = seq.next_element::<String>()? {
                    models.push((name.clone(), name));
                }
                Ok(RawModels(models, Vec::new()))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawModels, A::Error> {
                // Entries arrive in file order; duplicates are left for
                // validation, which reports them with the provider's path.
                let mut models = Vec::new();
                let mut endpoints = Vec::new();
                while let Some((client, value)) = map.next_entry::<String, RawModelValue>()? {
                    let upstream = match value {
                        RawModelValue::Name(name) => name,
                        RawModelValue::Full(m) => {
                            if let Some(list) = m.endpoints {
                                endpoints.push((client.clone(), list));
                            }
                            m.upstream.unwrap_or_else(|| client.clone())
                        }
                    };
                    models.push((client, upstream));
                }
                Ok(RawModels(models, endpoints))
            }
        }

        deserializer.deserialize_any(ModelsVisitor)
    }
}

impl Default for RawLimits {
    fn default() -> RawLimits {
        let d = Limits::default();
        RawLimits {
            max_head_bytes: d.max_head_bytes,
            max_headers: d.max_headers,
            max_uri_bytes: d.max_uri_bytes,
            max_body_bytes: d.max_body_bytes,
            max_chunk_ext_bytes: d.max_chunk_ext_bytes,
            max_trailer_bytes: d.max_trailer_bytes,
            header_read_timeout: millis(d.header_read_timeout),
            body_read_timeout: millis(d.body_read_timeout),
            send_timeout: millis(d.send_timeout),
            keep_alive_timeout: millis(d.keep_alive_timeout),
            upstream_connect_timeout: millis(d.upstream_connect_timeout),
            stream_idle_timeout: millis(d.stream_idle_timeout),
            drain_timeout: millis(d.drain_timeout),
            upstream_idle_timeout: millis(d.upstream_idle_timeout),
            upstream_max_idle: d.upstream_max_idle,
            upstream_max_conns: d.upstream_max_conns,
            upstream_queue_timeout: millis(d.upstream_queue_timeout),
            sse_keepalive_interval: millis(d.sse_keepalive_interval),
            max_connections: d.max_connections,
            max_answer_bytes: d.max_answer_bytes,
            max_event_bytes: d.max_event_bytes,
        }
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl RawLimits {
    fn into_limits(self) -> Limits {
        let ms = Duration::from_millis;
        Limits {
            max_head_bytes: self.max_head_bytes,
            max_headers: self.max_headers,
            max_uri_bytes: self.max_uri_bytes,
            max_body_bytes: self.max_body_bytes,
            max_chunk_ext_bytes: self.max_chunk_ext_bytes,
            max_trailer_bytes: self.max_trailer_bytes,
            header_read_timeout: ms(self.header_read_timeout),
            body_read_timeout: ms(self.body_read_timeout),
            send_timeout: ms(self.send_timeout),
            keep_alive_timeout: ms(self.keep_alive_timeout),
            upstream_connect_timeout: ms(self.upstream_connect_timeout),
            stream_idle_timeout: ms(self.stream_idle_timeout),
            drain_timeout: ms(self.drain_timeout),
            upstream_idle_timeout: ms(self.upstream_idle_timeout),
            upstream_max_idle: self.upstream_max_idle,
            upstream_max_conns: self.upstream_max_conns,
            upstream_queue_timeout: ms(self.upstream_queue_timeout),
            sse_keepalive_interval: ms(self.sse_keepalive_interval),
            max_connections: self.max_connections,
            max_answer_bytes: self.max_answer_bytes,
            max_event_bytes: self.max_event_bytes,
        }
    }
}

impl RawConfig {
    fn into_config(self, env: Env<'_>) -> Result<Config, ConfigError> {
        let providers = match self.providers {
            None => builtin_providers(env),
            Some(list) => list
                .into_iter()
                .enumerate()
                .map(|(i, p)| p.into_provider(&index_path("providers", i), env))
                .collect::<Result<_, _>>()?,
        };
        let management = match self.management {
            None => Management::default(),
            Some(m) => Management {
                enabled: m.enabled.unwrap_or(true),
                host: m
                    .host
                    .map_or_else(|| DEFAULT_HOST.to_owned(), |h| unbracket(&h).to_owned()),
                port: m.port.unwrap_or(DEFAULT_MANAGEMENT_PORT),
                secret: m.secret,
            },
        };
        let d = ResponsesStore::default();
        let responses_store = match self.responses_store {
            None => d,
            Some(r) => {
                for (key, value) in [("maxResponses", r.max_responses), ("maxBytes", r.max_bytes)] {
                    if value == Some(0) {
                        return Err(invalid(
                            &key_path("responsesStore", key),
                            "must be more than 0 (set \"enabled\": false to keep nothing)",
                        ));
                    }
                }
                if r.ttl == Some(0) {
                    return Err(invalid(
                        "responsesStore.ttl",
                        "must be more than 0 (set \"enabled\": false to keep nothing)",
                    ));
                }
                ResponsesStore {
                    enabled: r.enabled.unwrap_or(d.enabled),
                    max_responses: r.max_responses.unwrap_or(d.max_responses),
                    max_bytes: r.max_bytes.unwrap_or(d.max_bytes),
                    ttl: r.ttl.map_or(d.ttl, Duration::from_millis),
                }
            }
        };
        Ok(Config {
            host: self
                .host
                .map_or_else(|| DEFAULT_HOST.to_owned(), |h| unbracket(&h).to_owned()),
            port: self.port.unwrap_or(DEFAULT_PORT),
            api_keys: self
                .api_keys
                .into_iter()
                .enumerate()
                .map(|(i, k)| k.into_api_key(i))
                .collect::<Result<_, _>>()?,
            load_balance: self.load_balance_strategy.unwrap_or_default(),
            request_timeout: self
                .request_timeout
                .map_or(DEFAULT_REQUEST_TIMEOUT, Duration::from_millis),
            retry_count: self.retry_count.unwrap_or(DEFAULT_RETRY_COUNT),
            workers: self
                .workers
                .filter(|&n| n > 0)
                .unwrap_or_else(default_workers),
            access_log: self.access_log.unwrap_or_default(),
            management,
            responses_store,
            shared_state: self
                .shared_state
                .map(RawSharedState::into_shared)
                .transpose()?,
            providers,
            model_mappings: self
                .model_mappings
                .into_iter()
                .map(|m| ModelMapping {
                    request_model: m.request_model,
                    actual_model: m.actual_model,
                    preferred_provider_id: m.preferred_provider_id,
                })
                .collect(),
            limits: self.limits.unwrap_or_default().into_limits(),
            source: None,
        })
    }
}

/// `[::1]` → `::1`: listen hosts are stored without brackets, but writing them
/// the URL way is natural.
pub(crate) fn unbracket(host: &str) -> &str {
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

impl RawApiKey {
    /// `index` names keys given without a name (`key1`, `key2`, ...).
    fn into_api_key(self, index: usize) -> Result<ApiKey, ConfigError> {
        let default_name = || format!("key{}", index + 1);
        Ok(match self {
            RawApiKey::Bare(key) => ApiKey {
                name: default_name(),
                key,
                enabled: true,
                rules: KeyRules {
                    reserve_tokens: DEFAULT_RESERVE_TOKENS,
                    ..KeyRules::default()
                },
            },
            RawApiKey::Full(k) => {
                let expires_at = match k.expires_at {
                    None => None,
                    Some(RawInstant::Seconds(s)) => Some(s.saturating_mul(1000)),
                    Some(RawInstant::Text(t)) => Some(parse_rfc3339_ms(&t).ok_or_else(|| {
                        invalid(
                            &key_path(&index_path("apiKeys", index), "expiresAt"),
                            format!("`{t}` is not an RFC 3339 date-time (like 2027-01-31T00:00:00Z) or a date"),
                        )
                    })?),
                };
                ApiKey {
                    name: k.name.unwrap_or_else(default_name),
                    key: k.key,
                    enabled: k.enabled.unwrap_or(true),
                    rules: KeyRules {
                        models: k.models.unwrap_or_default(),
                        rpm: k.rpm,
                        tpm: k.tpm,
                        max_concurrent: k.max_concurrent,
                        daily_requests: k.daily_requests,
                        daily_tokens: k.daily_tokens,
                        expires_at,
                        reserve_tokens: k.reserve_tokens.unwrap_or(DEFAULT_RESERVE_TOKENS),
                    },
                }
            }
        })
    }
}

impl RawSharedState {
    fn into_shared(self) -> Result<SharedState, ConfigError> {
        check_redis_url(&self.redis)?;
        for (key, value) in [
            ("timeout", self.timeout),
            ("syncInterval", self.sync_interval),
        ] {
            if value == Some(0) {
                return Err(invalid(
                    &key_path("sharedState", key),
                    "must be more than 0 ms",
                ));
            }
        }
        Ok(SharedState {
            redis: self.redis,
            timeout: self
                .timeout
                .map_or(DEFAULT_SHARED_TIMEOUT, Duration::from_millis),
            budgets_fail_closed: self.budgets == Some(FailMode::FailClosed),
            sync_interval: self
                .sync_interval
                .map_or(DEFAULT_SHARED_SYNC, Duration::from_millis),
        })
    }
}

/// `redis://[:PASSWORD@]HOST[:PORT][/DB]`, as the Redis client reads it;
/// the message never quotes the URL (it may hold a password).
fn check_redis_url(url: &str) -> Result<(), ConfigError> {
    let path = "sharedState.redis";
    if !url.starts_with("redis://") {
        return Err(invalid(
            path,
            "must be a redis://HOST:PORT/DB URL (rediss:// and unix sockets are not supported)",
        ));
    }
    match redis::Client::open(url) {
        Ok(_) => Ok(()),
        Err(e) => Err(invalid(
            path,
            format!("is not a Redis URL this client can use ({:?})", e.kind()),
        )),
    }
}

/// Unix milliseconds of an RFC 3339 date-time (`2027-01-31T12:00:00Z`,
/// `…T12:00:00.5+02:00`) or of a date alone (its UTC midnight); `None` if
/// it is neither.
pub(crate) fn parse_rfc3339_ms(text: &str) -> Option<u64> {
    let b = text.as_bytes();
    let num = |r: std::ops::Range<usize>| -> Option<i64> {
        let s = b.get(r)?;
        s.iter()
            .all(u8::is_ascii_digit)
            .then(|| s.iter().fold(0i64, |n, d| n * 10 + i64::from(d - b'0')))
    };
    if b.len() < 10 || b[4] != b'-' || b[7] != b'-' {
        return None;
    }
    let (y, m, d) = (num(0..4)?, num(5..7)?, num(8..10)?);
    if !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return None;
    }
    let days = days_from_civil(y, m, d);
    let mut ms = days * 86_400_000;
    if b.len() > 10 {
        if !matches!(b[10], b'T' | b't' | b' ') || b.len() < 19 || b[13] != b':' || b[16] != b':' {
            return None;
        }
        let (h, mi, s) = (num(11..13)?, num(14..16)?, num(17..19)?);
        if h > 23 || mi > 59 || s > 60 {
            return None;
        }
        ms += (h * 3600 + mi * 60 + s) * 1000;
        let mut i = 19;
        if b.get(i) == Some(&b'.') {
            i += 1;
            let start = i;
            while b.get(i).is_some_and(u8::is_ascii_digit) {
                i += 1;
            }
            if i == start {
                return None;
            }
            let frac = &text[start..i.min(start + 3)];
            ms += frac.parse::<i64>().ok()? * 10i64.pow(3 - frac.len() as u32);
        }
        match b.get(i..)? {
            b"Z" | b"z" => {}
            [sign @ (b'+' | b'-'), ..] if b.len() == i + 6 && b[i + 3] == b':' => {
                let offset = (num(i + 1..i + 3)? * 60 + num(i + 4..i + 6)?) * 60_000;
                ms += if *sign == b'+' { -offset } else { offset };
            }
            _ => return None,
        }
    }
    u64::try_from(ms).ok()
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's
/// `days_from_civil`).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

impl RawAccount {
    fn into_account(self) -> Account {
        Account {
            id: self.id,
            api_key: self.api_key.unwrap_or_default(),
            daily_limit: self.daily_limit.unwrap_or(0),
            enabled: self.enabled.unwrap_or(true),
            organization: self.organization.filter(|o| !o.is_empty()),
            project: self.project.filter(|p| !p.is_empty()),
        }
    }
}

fn into_accounts(list: Vec<RawAccount>) -> Vec<Account> {
    list.into_iter().map(RawAccount::into_account).collect()
}

/// Accounts of an upstream that takes keys: an `apiKey` that is given but
/// empty (most often a `${VAR}` set to nothing) is an error, as sending no
/// key would only earn 401s; an account for an upstream that needs no key
/// leaves `apiKey` out.
fn keyed_accounts(list: Vec<RawAccount>, path: &str) -> Result<Vec<Account>, ConfigError> {
    for (i, a) in list.iter().enumerate() {
        if a.api_key.as_deref() == Some("") {
            let at = key_path(&index_path(&key_path(path, "accounts"), i), "apiKey");
            return Err(invalid(
                &at,
                "is empty (a variable set to nothing?); leave apiKey out for an upstream that needs no key",
            ));
        }
    }
    Ok(into_accounts(list))
}

/// The parts of a provider whose defaults depend on its `type`.
struct TypeParts {
    kind: ProviderKind,
    accounts: Vec<Account>,
    models: Vec<(String, String)>,
    /// Endpoint names of models given as objects.
    model_endpoints: Vec<(String, Vec<String>)>,
}

/// Endpoint names as [`Endpoint`]s; an unknown one is an error at `path`
/// that lists the names there are.
fn endpoint_list(names: &[String], path: &str) -> Result<Vec<Endpoint>, ConfigError> {
    if names.is_empty() {
        return Err(invalid(
            path,
            "names no endpoint; leave it out to serve them all",
        ));
    }
    if let Some(i) = (1..names.len()).find(|&i| names[..i].contains(&names[i])) {
        return Err(invalid(&index_path(path, i), "is given twice"));
    }
    names
        .iter()
        .enumerate()
        .map(|(i, name)| {
            Endpoint::from_name(name).ok_or_else(|| {
                let known: Vec<&str> = crate::api::ENDPOINTS.iter().map(|e| e.name()).collect();
                invalid(
                    &index_path(path, i),
                    format!(
                        "unknown endpoint `{name}`; expected one of: {}",
                        known.join(", ")
                    ),
                )
            })
        })
        .collect()
}

/// The endpoints of an Anthropic provider: those it was given (each one
/// it can serve, see [`vendors::ANTHROPIC_ENDPOINTS`]), else all of those.
/// `completions` and `responses` modes do not apply to it.
fn anthropic_endpoints(
    path: &str,
    modes_given: &[&'static str],
    endpoints: Option<Vec<Endpoint>>,
    model_endpoints: &[(String, Vec<Endpoint>)],
) -> Result<Vec<Endpoint>, ConfigError> {
    if let Some(key) = modes_given.first() {
        return Err(invalid(
            &key_path(path, key),
            "does not apply to \"type\": \"anthropic\" (its chat completions and Responses requests are always translated to the Messages API)",
        ));
    }
    let served = |list: &[Endpoint], at: &str| {
        match list
            .iter()
            .position(|e| !vendors::ANTHROPIC_ENDPOINTS.contains(e))
        {
            Some(i) => Err(invalid(
                &index_path(at, i),
                format!(
                    "`{}` is not served by an Anthropic provider (it serves chat.completions, responses and messages)",
                    list[i].name()
                ),
            )),
            None => Ok(()),
        }
    };
    for (model, list) in model_endpoints {
        let at = key_path(&key_path(&key_path(path, "models"), model), "endpoints");
        served(list, &at)?;
    }
    match endpoints {
        Some(list) => {
            served(&list, &key_path(path, "endpoints"))?;
            Ok(list)
        }
        None => Ok(vendors::ANTHROPIC_ENDPOINTS.to_vec()),
    }
}

impl RawProvider {
    /// `path` is `providers[i]`. Checks that depend on the type happen here;
    /// the rest is left to `Config::validate`.
    fn into_provider(self, path: &str, env: Env<'_>) -> Result<Provider, ConfigError> {
        let id = self.id.clone().unwrap_or_else(|| self.kind.clone());
        // An Anthropic provider's chat and Responses requests are always
        // translated: these keys say nothing for it.
        let completions_given: Vec<&'static str> = [
            ("completions", self.completions.is_some()),
            ("responses", self.responses.is_some()),
        ]
        .iter()
        .filter(|(_, given)| *given)
        .map(|(key, _)| *key)
        .collect();
        let completions = self.completions.unwrap_or_default();
        let responses = self.responses.unwrap_or_default();
        let hosted_tools = self.hosted_tools.unwrap_or_default();
        let enabled = self.enabled.unwrap_or(true);
        let endpoints = match &self.endpoints {
            Some(names) => Some(endpoint_list(names, &key_path(path, "endpoints"))?),
            None => None,
        };
        let TypeParts {
            kind,
            accounts,
            models,
            model_endpoints,
        } = if self.kind == "mock" {
            self.mock_parts(path)?
        } else if let Some(vendor) = vendors::vendor(&self.kind) {
            self.vendor_parts(path, vendor, env)?
        } else {
            let vendor_names: Vec<&str> = vendors::VENDORS.iter().map(|v| v.name).collect();
            return Err(invalid(
                &key_path(path, "type"),
                format!(
                    "unknown provider type `{}`; expected \"mock\" or one of: {}",
                    self.kind,
                    vendor_names.join(", ")
                ),
            ));
        };
        let models_path = key_path(path, "models");
        let model_endpoints: Vec<(String, Vec<Endpoint>)> = model_endpoints
            .into_iter()
            .map(|(model, names)| {
                let at = key_path(&key_path(&models_path, &model), "endpoints");
                Ok((model, endpoint_list(&names, &at)?))
            })
            .collect::<Result<_, ConfigError>>()?;
        let endpoints = match kind.is_anthropic() {
            true => Some(anthropic_endpoints(
                path,
                &completions_given,
                endpoints,
                &model_endpoints,
            )?),
            false => endpoints,
        };
        Ok(Provider {
            id,
            kind,
            accounts,
            models,
            completions,
            responses,
            hosted_tools,
            endpoints,
            model_endpoints,
            enabled,
        })
    }

    fn mock_parts(self, path: &str) -> Result<TypeParts, ConfigError> {
        let not_for_mock = [
            ("baseUrl", self.base_url.is_some()),
            ("caFile", self.ca_file.is_some()),
            // The mock speaks every endpoint itself.
            ("completions", self.completions.is_some()),
            ("responses", self.responses.is_some()),
            ("hostedTools", self.hosted_tools.is_some()),
        ];
        if let Some((key, _)) = not_for_mock.iter().find(|(_, given)| *given) {
            return Err(invalid(
                &key_path(path, key),
                "does not apply to \"type\": \"mock\"",
            ));
        }
        for (key, ms) in [
            ("firstTokenMs", self.first_token_ms),
            ("tokenDelayMs", self.token_delay_ms),
            ("tokenJitterMs", self.token_jitter_ms),
        ] {
            if ms.is_some_and(|ms| ms > MAX_MOCK_DELAY_MS) {
                return Err(invalid(
                    &key_path(path, key),
                    format!("must be at most {MAX_MOCK_DELAY_MS} (ten minutes)"),
                ));
            }
        }
        if self.answer_tokens.is_some_and(|n| n > MAX_ANSWER_TOKENS) {
            return Err(invalid(
                &key_path(path, "answerTokens"),
                format!("must be at most {MAX_ANSWER_TOKENS}"),
            ));
        }
        let token_delay = Duration::from_millis(self.token_delay_ms.unwrap_or(0));
        let token_jitter = Duration::from_millis(self.token_jitter_ms.unwrap_or(0));
        if token_jitter > token_delay {
            return Err(invalid(
                &key_path(path, "tokenJitterMs"),
                "must be at most tokenDelayMs (a pause cannot be negative)",
            ));
        }
        if self.answer_tokens == Some(0) {
            return Err(invalid(
                &key_path(path, "answerTokens"),
                "must be at least 1",
            ));
        }
        let failures = match self.failures {
            Some(f) => {
                let at = key_path(path, "failures");
                for (key, share) in [
                    ("rateLimit", f.rate_limit),
                    ("serverError", f.server_error),
                    ("cutStream", f.cut_stream),
                ] {
                    if !(0.0..=1.0).contains(&share) {
                        return Err(invalid(
                            &key_path(&at, key),
                            "must be a share between 0 and 1",
                        ));
                    }
                }
                if f.rate_limit + f.server_error + f.cut_stream > 1.0 {
                    return Err(invalid(&at, "the shares add up to more than 1"));
                }
                MockFailures {
                    rate_limit: f.rate_limit,
                    server_error: f.server_error,
                    cut_stream: f.cut_stream,
                    retry_after: f.retry_after_seconds.unwrap_or(1),
                }
            }
            None => MockFailures::default(),
        };
        let kind = ProviderKind::Mock(MockProfile {
            text: self.text,
            first_token: Duration::from_millis(self.first_token_ms.unwrap_or(0)),
            token_delay,
            token_jitter,
            answer_tokens: self.answer_tokens,
            failures,
        });
        // The mock needs no key, but routing works on accounts, so it gets one.
        let accounts = match self.accounts {
            Some(list) => into_accounts(list),
            None => vec![default_account(String::new())],
        };
        let (models, model_endpoints) = match self.models {
            Some(m) => (m.0, m.1),
            None => (
                vec![(MOCK_MODEL.to_owned(), MOCK_MODEL.to_owned())],
                Vec::new(),
            ),
        };
        Ok(TypeParts {
            kind,
            accounts,
            models,
            model_endpoints,
        })
    }

    /// `openai` and every named vendor. The vendor's models and env-var key
    /// are only implied while `baseUrl` is the vendor's own: a vendor key must
    /// never be sent to some other host.
    fn vendor_parts(
        self,
        path: &str,
        vendor: &'static vendors::Vendor,
        env: Env<'_>,
    ) -> Result<TypeParts, ConfigError> {
        let mock_only = [
            ("text", self.text.is_some()),
            ("firstTokenMs", self.first_token_ms.is_some()),
            ("tokenDelayMs", self.token_delay_ms.is_some()),
            ("tokenJitterMs", self.token_jitter_ms.is_some()),
            ("answerTokens", self.answer_tokens.is_some()),
            ("failures", self.failures.is_some()),
        ];
        if let Some((key, _)) = mock_only.iter().find(|(_, given)| *given) {
            return Err(invalid(
                &key_path(path, key),
                "only applies to \"type\": \"mock\"",
            ));
        }
        let vendor_url =
            BaseUrl::parse(vendor.base_url).map_err(|m| invalid(&key_path(path, "type"), m))?;
        let base_url = match &self.base_url {
            Some(url) => BaseUrl::parse(url).map_err(|m| invalid(&key_path(path, "baseUrl"), m))?,
            None => vendor_url.clone(),
        };
        let own_url = base_url == vendor_url;
        let required = |key: &str| {
            invalid(
                &key_path(path, key),
                format!(
                    "is required: `{}` defaults only apply with baseUrl {}",
                    vendor.name, vendor.base_url
                ),
            )
        };
        let (models, model_endpoints) = match self.models {
            Some(m) => (m.0, m.1),
            None if own_url => (vendor_models(vendor), Vec::new()),
            None => return Err(required("models")),
        };
        let accounts = match self.accounts {
            Some(list) => keyed_accounts(list, path)?,
            None if !own_url => return Err(required("accounts")),
            None => match env(vendor.env_var).filter(|k| !k.is_empty()) {
                Some(key) => vec![default_account(key)],
                None => {
                    return Err(invalid(
                        &key_path(path, "accounts"),
                        format!("none listed and {} is not set", vendor.env_var),
                    ))
                }
            },
        };
        let kind = vendor.kind(base_url, self.ca_file);
        Ok(TypeParts {
            kind,
            accounts,
            models,
            model_endpoints,
        })
    }
}
