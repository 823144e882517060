//! The file format of SPEC §2 as serde structs, and their conversion into a
//! [`Config`]: defaults filled in, vendor shorthand expanded, durations turned
//! from milliseconds into [`Duration`]s.
//!
//! Every struct denies unknown keys so a typo is an error naming its path.
//! Fields are `Option` where the file may leave them out, so the defaults live
//! in one place (the conversion) rather than in serde attributes.

use super::document::{self, Node};
use super::{
    builtin_providers, default_account, default_workers, index_path, invalid, key_path,
    vendor_models, vendors, AccessLog, Account, ApiKey, BaseUrl, CompletionsMode, Config,
    ConfigError, Limits, Management, ModelMapping, Provider, ProviderKind, Strategy, DEFAULT_HOST,
    DEFAULT_MANAGEMENT_PORT, DEFAULT_PORT, DEFAULT_REQUEST_TIMEOUT, DEFAULT_RETRY_COUNT,
    MOCK_MODEL,
};
use serde::de::{self, value::MapAccessDeserializer, MapAccess, SeqAccess, Visitor};
use serde::{Deserialize, Deserializer};
use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

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
    completions: Option<CompletionsMode>,
    enabled: Option<bool>,
    /// Mock only.
    text: Option<String>,
    /// Mock only, milliseconds.
    token_delay_ms: Option<u64>,
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

/// `{"client": "upstream", ...}` in file order, or `["same-name", ...]`.
struct RawModels(Vec<(String, String)>);

#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct RawModelMapping {
    request_model: String,
    actual_model: String,
    preferred_provider_id: Option<String>,
}

/// Sizes in bytes (or counts), durations in milliseconds; any key may be left
/// out and keeps its SPEC §6 default.
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
                Ok(RawModels(models))
            }

            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<RawModels, A::Error> {
                // Entries arrive in file order; duplicates are left for
                // validation, which reports them with the provider's path.
                let mut models = Vec::new();
                while let Some(entry) = map.next_entry::<String, String>()? {
                    models.push(entry);
                }
                Ok(RawModels(models))
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
                .collect(),
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
    fn into_api_key(self, index: usize) -> ApiKey {
        let default_name = || format!("key{}", index + 1);
        match self {
            RawApiKey::Bare(key) => ApiKey {
                name: default_name(),
                key,
                enabled: true,
            },
            RawApiKey::Full(k) => ApiKey {
                name: k.name.unwrap_or_else(default_name),
                key: k.key,
                enabled: k.enabled.unwrap_or(true),
            },
        }
    }
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
}

impl RawProvider {
    /// `path` is `providers[i]`. Checks that depend on the type happen here;
    /// the rest is left to `Config::validate`.
    fn into_provider(self, path: &str, env: Env<'_>) -> Result<Provider, ConfigError> {
        let id = self.id.clone().unwrap_or_else(|| self.kind.clone());
        let completions = self.completions.unwrap_or_default();
        let enabled = self.enabled.unwrap_or(true);
        let TypeParts {
            kind,
            accounts,
            models,
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
        Ok(Provider {
            id,
            kind,
            accounts,
            models,
            completions,
            enabled,
        })
    }

    fn mock_parts(self, path: &str) -> Result<TypeParts, ConfigError> {
        let not_for_mock = [
            ("baseUrl", self.base_url.is_some()),
            ("caFile", self.ca_file.is_some()),
        ];
        if let Some((key, _)) = not_for_mock.iter().find(|(_, given)| *given) {
            return Err(invalid(
                &key_path(path, key),
                "does not apply to \"type\": \"mock\"",
            ));
        }
        let kind = ProviderKind::Mock {
            text: self.text,
            token_delay: Duration::from_millis(self.token_delay_ms.unwrap_or(0)),
        };
        // The mock needs no key, but routing works on accounts, so it gets one.
        let accounts = match self.accounts {
            Some(list) => into_accounts(list),
            None => vec![default_account(String::new())],
        };
        let models = match self.models {
            Some(m) => m.0,
            None => vec![(MOCK_MODEL.to_owned(), MOCK_MODEL.to_owned())],
        };
        Ok(TypeParts {
            kind,
            accounts,
            models,
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
            ("tokenDelayMs", self.token_delay_ms.is_some()),
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
        let models = match self.models {
            Some(m) => m.0,
            None if own_url => vendor_models(vendor),
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
        let kind = ProviderKind::OpenAi {
            base_url,
            ca_file: self.ca_file,
        };
        Ok(TypeParts {
            kind,
            accounts,
            models,
        })
    }
}
