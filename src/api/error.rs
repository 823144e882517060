//! The gateway's errors, each of which knows its answer (docs/wire.md §4): a status
//! code and an OpenAI-shaped body `{"error":{"message","type","param","code"}}`.

use bytes::Bytes;
use std::fmt;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    /// 400: malformed JSON, a missing or mistyped field. `param` names it.
    InvalidRequest {
        message: String,
        param: Option<&'static str>,
    },
    MissingApiKey,
    InvalidApiKey,
    NotFound,
    ModelNotFound(String),
    /// 404: the model exists, but no provider serves it on this endpoint
    /// (`endpoints` in the config): the model, the endpoint's path, and
    /// the endpoints it is served on.
    EndpointNotServed {
        model: String,
        path: &'static str,
        serves: String,
    },
    /// 405: the route does not take this method; the value is the methods
    /// it does take, as the `Allow` header lists them (RFC 9110 §15.5.6).
    MethodNotAllowed(&'static str),
    /// 404: a stored response asked for (`/v1/responses/{id}`) that the
    /// response store does not hold.
    NotStored(String),
    /// A protocol-level error already mapped to its status (413, 414, 431, 400…).
    Http {
        status: u16,
        message: &'static str,
    },
    Timeout,
    /// 503: no deployment of the model can serve now; the seconds until the
    /// soonest resting one returns, when one will.
    NoAvailableAccount(String, Option<u64>),
    /// 429: every deployment of the model rests on rate limits; the seconds
    /// until the soonest returns.
    RateLimited(String, u64),
    /// 429: one of the client key's rules refused the request
    /// (docs/config.md "Key rules"): the message names the key and rule;
    /// milliseconds until it would pass (`Retry-After` rounds them up to
    /// seconds, `retry-after-ms` carries them as they are).
    KeyRateLimited {
        message: String,
        retry_after_ms: u64,
    },
    /// 401: the client key (by name) is past its `expiresAt`.
    KeyExpired(String),
    /// 503: a key's budget cannot be checked: Redis does not answer and
    /// `sharedState.budgets` is `fail-closed`.
    BudgetUnavailable,
    Upstream(String),
    UpstreamTimeout,
    /// 503: the drain deadline of a shutdown, reload or stop came before
    /// the answer was complete (docs/wire.md §6).
    ShuttingDown,
    /// 503: the listener is at `maxConnections` (docs/wire.md §6); sent with
    /// `Retry-After` before the connection is closed.
    Overloaded,
    /// 503: the request's worker had its share of the upstream's
    /// `upstreamMaxConns` connections (the value) busy for the whole
    /// `upstreamQueueTimeout`, and the request was not sent; with
    /// `Retry-After`.
    UpstreamBusy(usize),
    /// 503: no file descriptor (or socket memory) was left in chat2api for
    /// a new upstream connection (`EMFILE`, `ENFILE`, `ENOBUFS`, `ENOMEM`):
    /// chat2api's own limit, not the upstream's failure; the request was
    /// not sent; with `Retry-After`.
    OutOfDescriptors,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&'static str>) -> ApiError {
        ApiError::InvalidRequest {
            message: message.into(),
            param,
        }
    }

    pub fn status(&self) -> u16 {
        match self {
            ApiError::InvalidRequest { .. } => 400,
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::KeyExpired(_) => 401,
            ApiError::NotFound
            | ApiError::NotStored(_)
            | ApiError::ModelNotFound(_)
            | ApiError::EndpointNotServed { .. } => 404,
            ApiError::MethodNotAllowed(_) => 405,
            ApiError::Timeout => 408,
            ApiError::Http { status, .. } => *status,
            ApiError::NoAvailableAccount(..)
            | ApiError::ShuttingDown
            | ApiError::Overloaded
            | ApiError::UpstreamBusy(_)
            | ApiError::OutOfDescriptors
            | ApiError::BudgetUnavailable => 503,
            ApiError::RateLimited(..) | ApiError::KeyRateLimited { .. } => 429,
            ApiError::Upstream(_) => 502,
            ApiError::UpstreamTimeout => 504,
        }
    }

    fn kind(&self) -> &'static str {
        match self {
            ApiError::InvalidRequest { .. }
            | ApiError::NotFound
            | ApiError::NotStored(_)
            | ApiError::ModelNotFound(_)
            | ApiError::EndpointNotServed { .. }
            | ApiError::MethodNotAllowed(_)
            | ApiError::Timeout
            | ApiError::Http { .. } => "invalid_request_error",
            ApiError::MissingApiKey | ApiError::InvalidApiKey | ApiError::KeyExpired(_) => {
                "authentication_error"
            }
            ApiError::NoAvailableAccount(..)
            | ApiError::Upstream(_)
            | ApiError::UpstreamTimeout => "upstream_error",
            ApiError::RateLimited(..) | ApiError::KeyRateLimited { .. } => "rate_limit_error",
            ApiError::ShuttingDown
            | ApiError::Overloaded
            | ApiError::UpstreamBusy(_)
            | ApiError::OutOfDescriptors
            | ApiError::BudgetUnavailable => "server_error",
        }
    }

    fn code(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidRequest { .. } => None,
            ApiError::MissingApiKey => Some("missing_api_key"),
            ApiError::InvalidApiKey => Some("invalid_api_key"),
            ApiError::KeyExpired(_) => Some("expired_api_key"),
            ApiError::KeyRateLimited { .. } => Some("rate_limit_exceeded"),
            ApiError::BudgetUnavailable => Some("budget_unavailable"),
            ApiError::NotFound | ApiError::NotStored(_) => Some("not_found"),
            ApiError::ModelNotFound(_) | ApiError::EndpointNotServed { .. } => {
                Some("model_not_found")
            }
            ApiError::MethodNotAllowed(_) => Some("method_not_allowed"),
            ApiError::Timeout => Some("request_timeout"),
            ApiError::Http { status, .. } => match status {
                413 => Some("request_too_large"),
                414 => Some("uri_too_long"),
                431 => Some("headers_too_large"),
                _ => Some("bad_request"),
            },
            ApiError::NoAvailableAccount(..) => Some("no_available_account"),
            ApiError::RateLimited(..) => Some("rate_limit_exceeded"),
            ApiError::Upstream(_) => Some("upstream_error"),
            ApiError::UpstreamTimeout => Some("upstream_timeout"),
            ApiError::ShuttingDown => Some("server_shutting_down"),
            ApiError::Overloaded | ApiError::UpstreamBusy(_) | ApiError::OutOfDescriptors => {
                Some("server_overloaded")
            }
        }
    }

    fn param(&self) -> Option<&'static str> {
        match self {
            ApiError::InvalidRequest { param, .. } => *param,
            ApiError::ModelNotFound(_)
            | ApiError::EndpointNotServed { .. }
            | ApiError::NoAvailableAccount(..)
            | ApiError::RateLimited(..) => Some("model"),
            _ => None,
        }
    }

    /// The `Retry-After` this answer carries, in seconds.
    pub fn retry_after(&self) -> Option<u64> {
        match self {
            ApiError::NoAvailableAccount(_, s) => *s,
            ApiError::RateLimited(_, s) => Some(*s),
            ApiError::KeyRateLimited { retry_after_ms, .. } => {
                Some(retry_after_ms.div_ceil(1000).max(1))
            }
            ApiError::Overloaded
            | ApiError::UpstreamBusy(_)
            | ApiError::OutOfDescriptors
            | ApiError::BudgetUnavailable => Some(1),
            _ => None,
        }
    }

    /// The code the request log names this error by.
    pub fn log_code(&self) -> &'static str {
        self.code().unwrap_or(self.kind())
    }

    /// The OpenAI-shaped JSON body.
    pub fn body(&self) -> Bytes {
        error_body(&self.to_string(), self.kind(), self.param(), self.code())
    }
}

/// An OpenAI-shaped error body, `{"error":{"message","type","param","code"}}`
/// (docs/wire.md §4): the one place it is written, for chat2api's own errors,
/// the mock's injected ones and an upstream's error that came in another
/// shape.
pub fn error_body(message: &str, kind: &str, param: Option<&str>, code: Option<&str>) -> Bytes {
    let body = serde_json::json!({
        "error": {"message": message, "type": kind, "param": param, "code": code}
    });
    Bytes::from(body.to_string())
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ApiError::InvalidRequest { message, .. } => f.write_str(message),
            ApiError::MissingApiKey => f.write_str(
                "Missing API key: send it as 'Authorization: Bearer KEY', 'X-API-Key: KEY' or '?api_key=KEY'.",
            ),
            ApiError::InvalidApiKey => f.write_str("Invalid API key."),
            ApiError::KeyExpired(name) => write!(f, "The API key '{name}' has expired."),
            ApiError::KeyRateLimited { message, .. } => f.write_str(message),
            ApiError::BudgetUnavailable => f.write_str(
                "The key's budget cannot be checked now (the shared state does not answer, and budgets fail closed); retry shortly.",
            ),
            ApiError::NotFound => f.write_str("Unknown route."),
            ApiError::NotStored(id) => write!(
                f,
                "Response '{id}' is not stored here: chat2api keeps only the responses it makes itself (for responses: \"chat\" providers and the mock), in this process, for the responsesStore TTL, and none of 'store': false requests. A native provider's responses are kept by that provider.",
            ),
            ApiError::ModelNotFound(m) => {
                write!(f, "The model '{m}' does not exist or is not served by this gateway.")
            }
            ApiError::EndpointNotServed {
                model,
                path,
                serves,
            } => write!(
                f,
                "The model '{model}' is not served on /v1{path} by this gateway; it serves: {serves}."
            ),
            ApiError::MethodNotAllowed(_) => f.write_str("Method not allowed on this route."),
            ApiError::Timeout => f.write_str("The client was too slow to send its request."),
            ApiError::Http { message, .. } => f.write_str(message),
            ApiError::NoAvailableAccount(m, retry) => match retry {
                Some(s) => write!(
                    f,
                    "No healthy account is available for the model '{m}'; retry in {s} s."
                ),
                None => write!(
                    f,
                    "No healthy account is available for the model '{m}'; try again later."
                ),
            },
            ApiError::RateLimited(m, s) => write!(
                f,
                "Every upstream of the model '{m}' is rate limited; retry in {s} s."
            ),
            ApiError::Upstream(m) => write!(f, "Upstream error: {m}"),
            ApiError::UpstreamTimeout => {
                f.write_str("The upstream did not answer within the request timeout.")
            }
            ApiError::ShuttingDown => f.write_str(
                "The gateway is shutting down and its drain deadline passed; retry the request.",
            ),
            ApiError::Overloaded => f.write_str(
                "The gateway is at its connection limit; retry after the Retry-After delay.",
            ),
            ApiError::UpstreamBusy(max) => write!(
                f,
                "The upstream's connections (at most {max}, upstreamMaxConns) stayed busy for the queue timeout; the request was not sent; retry after the Retry-After delay."
            ),
            ApiError::OutOfDescriptors => f.write_str(
                "The gateway has no file descriptor left for another upstream connection (its open-file limit); the request was not sent; retry after the Retry-After delay. Operators: raise the limit or set limits.upstreamMaxConns.",
            ),
        }
    }
}

impl std::error::Error for ApiError {}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every code an answer can carry into the request log is one the log
    /// names (an unknown one would show as `error`).
    #[test]
    fn every_error_code_is_named_in_the_request_log() {
        let errors = [
            ApiError::invalid("x", None),
            ApiError::MissingApiKey,
            ApiError::InvalidApiKey,
            ApiError::NotFound,
            ApiError::NotStored("resp_1".into()),
            ApiError::ModelNotFound("m".into()),
            ApiError::EndpointNotServed {
                model: "m".into(),
                path: "/x",
                serves: String::new(),
            },
            ApiError::MethodNotAllowed("GET, HEAD, OPTIONS"),
            ApiError::Http {
                status: 413,
                message: "x",
            },
            ApiError::Timeout,
            ApiError::NoAvailableAccount("m".into(), None),
            ApiError::RateLimited("m".into(), 1),
            ApiError::KeyRateLimited {
                message: "m".into(),
                retry_after_ms: 1500,
            },
            ApiError::KeyExpired("k".into()),
            ApiError::BudgetUnavailable,
            ApiError::Upstream("x".into()),
            ApiError::UpstreamTimeout,
            ApiError::ShuttingDown,
            ApiError::Overloaded,
            ApiError::UpstreamBusy(4),
            ApiError::OutOfDescriptors,
        ];
        let codes = errors.iter().map(ApiError::log_code).chain([
            // Set by the proxy, the stream writer and the mock.
            "upstream_status",
            "stream_error",
            "upstream_stream_error",
            "client_gone",
            "mock_rate_limit",
            "mock_server_error",
            "mock_cut_stream",
        ]);
        for code in codes {
            assert!(crate::stats::is_logged_code(code), "{code}");
        }
    }

    #[test]
    fn bodies_are_openai_shaped() {
        let cases = [
            (
                ApiError::invalid("bad", Some("model")),
                400,
                serde_json::Value::Null,
            ),
            (ApiError::MissingApiKey, 401, "missing_api_key".into()),
            (ApiError::InvalidApiKey, 401, "invalid_api_key".into()),
            (
                ApiError::ModelNotFound("x".into()),
                404,
                "model_not_found".into(),
            ),
            (
                ApiError::NoAvailableAccount("x".into(), None),
                503,
                "no_available_account".into(),
            ),
            (
                ApiError::RateLimited("x".into(), 3),
                429,
                "rate_limit_exceeded".into(),
            ),
            (
                ApiError::Upstream("refused".into()),
                502,
                "upstream_error".into(),
            ),
            (ApiError::UpstreamTimeout, 504, "upstream_timeout".into()),
            (ApiError::ShuttingDown, 503, "server_shutting_down".into()),
            (ApiError::Overloaded, 503, "server_overloaded".into()),
            (ApiError::UpstreamBusy(4), 503, "server_overloaded".into()),
            (ApiError::OutOfDescriptors, 503, "server_overloaded".into()),
        ];
        for (err, status, code) in cases {
            assert_eq!(err.status(), status);
            let v: serde_json::Value = serde_json::from_slice(&err.body()).unwrap();
            let e = &v["error"];
            assert!(e["message"].is_string());
            assert!(e["type"].is_string());
            assert_eq!(e["code"], code);
            assert!(e.as_object().unwrap().contains_key("param"));
        }
    }
}
