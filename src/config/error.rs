//! Config errors: each names the file or the key path it is about, in one line,
//! so `--check-config` and a failed SIGHUP restart can print it as is.

use std::fmt;
use std::path::PathBuf;

/// Why a config could not be loaded. Key paths look like
/// `providers[1].accounts[0].apiKey`; `""` is the top level.
#[derive(Debug)]
pub enum ConfigError {
    /// The file could not be read.
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The text is not JSON. `line` and `column` are 1-based, as in serde_json;
    /// `path_in_file` is the key path the parser had reached.
    Json {
        path_in_file: String,
        message: String,
        line: usize,
        column: usize,
    },
    /// A key the format does not know (often a typo); `path` ends with the key.
    UnknownKey { path: String },
    /// A `${VAR}` reference to an unset variable, in the value at `path`.
    MissingEnv { var: String, path: String },
    /// Valid JSON with a wrong type, a bad value or a broken cross-reference.
    Invalid { path: String, message: String },
}

impl ConfigError {
    /// The key path the error is about, if any.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Io { .. } => None,
            ConfigError::Json { path_in_file, .. } => Some(path_in_file),
            ConfigError::UnknownKey { path }
            | ConfigError::MissingEnv { path, .. }
            | ConfigError::Invalid { path, .. } => Some(path),
        }
    }
}

/// The top level has an empty path; say so in words.
fn shown(path: &str) -> &str {
    if path.is_empty() {
        "(top level)"
    } else {
        path
    }
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConfigError::Io { path, source } => {
                write!(f, "cannot read config file {}: {source}", path.display())
            }
            ConfigError::Json {
                path_in_file,
                message,
                line,
                column,
            } => {
                write!(
                    f,
                    "config is not valid JSON at line {line}, column {column}"
                )?;
                if !path_in_file.is_empty() {
                    write!(f, " (in `{path_in_file}`)")?;
                }
                write!(f, ": {message}")
            }
            ConfigError::UnknownKey { path } => {
                let key = path.rsplit(['.', ']']).next().unwrap_or(path);
                match home_of(key) {
                    Some(home) => write!(
                        f,
                        "config key `{path}` is in the wrong place: `{key}` belongs {home}"
                    ),
                    None => write!(
                        f,
                        "unknown config key `{path}` (keys are camelCase; check the spelling)"
                    ),
                }
            }
            ConfigError::MissingEnv { var, path } => write!(
                f,
                "config key `{}` uses ${{{var}}}, but environment variable {var} is not set",
                shown(path)
            ),
            ConfigError::Invalid { path, message } => {
                write!(f, "invalid config key `{}`: {message}", shown(path))
            }
        }
    }
}

impl std::error::Error for ConfigError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConfigError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

/// Where a known key belongs, for a key found in the wrong section.
fn home_of(key: &str) -> Option<&'static str> {
    const HOMES: &[(&str, &[&str])] = &[
        (
            "at the top level",
            &[
                "host",
                "port",
                "apiKeys",
                "loadBalanceStrategy",
                "requestTimeout",
                "retryCount",
                "workers",
                "accessLog",
                "management",
                "responsesStore",
                "sharedState",
                "providers",
                "modelMappings",
                "limits",
            ],
        ),
        (
            "in `responsesStore`",
            &["enabled", "maxResponses", "maxBytes", "ttl"],
        ),
        (
            "in `limits`",
            &[
                "maxHeadBytes",
                "maxHeaders",
                "maxUriBytes",
                "maxBodyBytes",
                "maxChunkExtBytes",
                "maxTrailerBytes",
                "headerReadTimeout",
                "bodyReadTimeout",
                "sendTimeout",
                "keepAliveTimeout",
                "upstreamConnectTimeout",
                "streamIdleTimeout",
                "drainTimeout",
                "upstreamIdleTimeout",
                "upstreamMaxIdle",
                "upstreamMaxConns",
                "upstreamQueueTimeout",
                "sseKeepaliveInterval",
                "maxConnections",
                "maxAnswerBytes",
                "maxEventBytes",
            ],
        ),
        (
            "in a `providers[]` entry",
            &[
                "type",
                "baseUrl",
                "accounts",
                "models",
                "completions",
                "responses",
                "hostedTools",
                "endpoints",
                "caFile",
                "text",
                "firstTokenMs",
                "tokenDelayMs",
                "tokenJitterMs",
                "answerTokens",
                "failures",
            ],
        ),
        ("in a model object of `providers[].models`", &["upstream"]),
        (
            "in a mock provider's `failures`",
            &["rateLimit", "serverError", "cutStream", "retryAfterSeconds"],
        ),
        (
            "in a `providers[].accounts[]` entry",
            &["apiKey", "dailyLimit", "organization", "project"],
        ),
        ("in `management`", &["secret"]),
        (
            "in an `apiKeys[]` object",
            &[
                "rpm",
                "tpm",
                "maxConcurrent",
                "dailyRequests",
                "dailyTokens",
                "expiresAt",
                "reserveTokens",
            ],
        ),
        ("in `sharedState`", &["redis", "budgets", "syncInterval"]),
        (
            "in a `modelMappings[]` entry",
            &["requestModel", "actualModel", "preferredProviderId"],
        ),
    ];
    HOMES
        .iter()
        .find(|(_, keys)| keys.contains(&key))
        .map(|(home, _)| *home)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A key of this round's provider and model settings, put at the wrong
    /// level, is pointed to where it belongs.
    #[test]
    fn misplaced_keys_are_pointed_home() {
        for (path, home) in [
            ("firstTokenMs", "in a `providers[]` entry"),
            (
                "providers[0].accounts[0].responses",
                "in a `providers[]` entry",
            ),
            ("providers[0].rateLimit", "in a mock provider's `failures`"),
            (
                "providers[0].upstream",
                "in a model object of `providers[].models`",
            ),
        ] {
            let err = ConfigError::UnknownKey { path: path.into() };
            assert!(err.to_string().ends_with(home), "{err}");
        }
    }
}
