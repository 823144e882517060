//! Management (docs/wire.md §5): the second listener, with the status page, the
//! status / start / stop / restart API, statistics, the request log and
//! Prometheus metrics.
//!
//! Owns the management routes, the secret check and the
//! `{"success", "data" | "error"}` answers. It serves through the same
//! connection driver as the proxy (`crate::server`), but never counts in the
//! proxy's statistics, and reaches the proxy listener only through
//! [`control::ProxyControl`], its single owner; it must not touch sockets or
//! the gateway itself.

pub mod control;
pub mod metrics;

use bytes::Bytes;
use std::sync::Arc;
use subtle::ConstantTimeEq;

use crate::api::{self, NoStream};
use crate::config::Limits;
use crate::http1::{Method, RequestHead};
use crate::server::Service;
use crate::stats::Tally;
use control::{ControlError, ProxyControl, StatusView};

/// The status page; `{{version}}` is filled in once, at start.
const PAGE: &str = include_str!("page.html");

/// Management calls carry no body worth reading; anything larger is refused
/// (413) before it is buffered.
const MAX_BODY_BYTES: u64 = 64 * 1024;
/// A handful of operators and scrapers; the proxy keeps the rest of the
/// process's file descriptors.
const MAX_CONNECTIONS: usize = 256;

/// The routes of docs/wire.md §5.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    Page,
    Status,
    Start,
    Stop,
    Restart,
    Statistics,
    Logs,
    Metrics,
    Preflight,
}

impl Route {
    fn from_path(path: &[u8]) -> Option<Route> {
        Some(match path {
            b"/" => Route::Page,
            b"/v0/management/proxy/status" => Route::Status,
            b"/v0/management/proxy/start" => Route::Start,
            b"/v0/management/proxy/stop" => Route::Stop,
            b"/v0/management/proxy/restart" => Route::Restart,
            b"/v0/management/statistics" => Route::Statistics,
            b"/v0/management/logs" => Route::Logs,
            b"/metrics" => Route::Metrics,
            _ => return None,
        })
    }

    fn is_action(self) -> bool {
        matches!(self, Route::Start | Route::Stop | Route::Restart)
    }

    /// The `Allow` header of a 405.
    fn allow(self) -> &'static [u8] {
        if self.is_action() {
            b"POST, OPTIONS"
        } else {
            b"GET, HEAD, OPTIONS"
        }
    }
}

/// Why a management call failed; each variant knows its status and code.
#[derive(Debug)]
enum Error {
    /// No secret presented, or the wrong one.
    Unauthorized {
        presented: bool,
    },
    /// A state-changing call from a web page of another origin, when no
    /// secret protects the API (cross-site request forgery).
    CrossOrigin,
    NotFound,
    MethodNotAllowed(Route),
    Control(ControlError),
}

impl Error {
    fn status(&self) -> u16 {
        match self {
            Error::Unauthorized { .. } => 401,
            Error::CrossOrigin => 403,
            Error::NotFound => 404,
            Error::MethodNotAllowed(_) => 405,
            Error::Control(_) => 500,
        }
    }

    fn code(&self) -> &'static str {
        match self {
            Error::Unauthorized { .. } => "unauthorized",
            Error::CrossOrigin => "forbidden",
            Error::NotFound => "not_found",
            Error::MethodNotAllowed(_) => "method_not_allowed",
            Error::Control(ControlError::Config(_)) => "invalid_config",
            Error::Control(ControlError::Bind(_)) => "start_failed",
        }
    }

    fn message(&self) -> &str {
        match self {
            Error::Unauthorized { presented: false } => {
                "This call needs the management secret: send 'Authorization: Bearer SECRET'."
            }
            Error::Unauthorized { presented: true } => "Wrong management secret.",
            Error::CrossOrigin => {
                "Refused a call from a page of another origin; set management.secret to allow it."
            }
            Error::NotFound => "Unknown management route.",
            Error::MethodNotAllowed(_) => "Method not allowed on this route.",
            Error::Control(e) => e.message(),
        }
    }

    fn response(&self) -> Response {
        let body = format!(
            "{{\"success\":false,\"error\":{{\"code\":{},\"message\":{}}}}}",
            json_str(self.code()),
            json_str(self.message())
        );
        let mut r = answer(self.status(), body);
        match self {
            Error::Unauthorized { .. } => r.headers.push((
                "WWW-Authenticate",
                Bytes::from_static(b"Bearer realm=\"chat2api management\""),
            )),
            Error::MethodNotAllowed(route) => {
                r.headers.push(("Allow", Bytes::from_static(route.allow())))
            }
            _ => {}
        }
        r
    }
}

/// The management API, served by a [`crate::server::Listener`].
pub struct Management {
    control: Arc<ProxyControl>,
    secret: Option<Box<[u8]>>,
    limits: Limits,
    page: Bytes,
}

impl Management {
    /// `limits` are the config's at start, with the body and connection caps
    /// lowered to what management needs.
    pub fn new(control: Arc<ProxyControl>, secret: Option<String>, limits: Limits) -> Management {
        let limits = Limits {
            max_body_bytes: limits.max_body_bytes.min(MAX_BODY_BYTES),
            max_connections: limits.max_connections.min(MAX_CONNECTIONS),
            ..limits
        };
        Management {
            control,
            secret: secret.map(|s| s.into_bytes().into_boxed_slice()),
            limits,
            page: Bytes::from(PAGE.replace("{{version}}", env!("CARGO_PKG_VERSION"))),
        }
    }

    /// docs/wire.md §5: with a secret set, every call but the page needs
    /// `Authorization: Bearer SECRET`, compared in constant time.
    fn check_secret(&self, head: &RequestHead) -> Result<(), Error> {
        let Some(secret) = &self.secret else {
            return Ok(());
        };
        let presented = head.header("authorization").and_then(|v| {
            let v = v.trim_ascii();
            (v.len() > 7 && v[..7].eq_ignore_ascii_case(b"bearer ")).then(|| v[7..].trim_ascii())
        });
        match presented {
            None => Err(Error::Unauthorized { presented: false }),
            Some(p) if bool::from(secret.as_ref().ct_eq(p)) => Ok(()),
            Some(_) => Err(Error::Unauthorized { presented: true }),
        }
    }

    /// Without a secret, any web page the operator visits could POST to
    /// `127.0.0.1:8081`; browsers say where such a call comes from in
    /// `Origin`, so a start/stop/restart from another origin is refused.
    /// Clients that send no `Origin` (curl, scripts) are not browsers.
    fn check_origin(&self, head: &RequestHead) -> Result<(), Error> {
        if self.secret.is_some() {
            return Ok(()); // the bearer secret already proves intent
        }
        let Some(origin) = head.header("origin") else {
            return Ok(());
        };
        let authority = origin
            .strip_prefix(b"http://")
            .or_else(|| origin.strip_prefix(b"https://"));
        match (authority, head.header("host")) {
            (Some(a), Some(host)) if a.eq_ignore_ascii_case(host) => Ok(()),
            _ => Err(Error::CrossOrigin),
        }
    }

    fn route(&self, head: &RequestHead) -> Result<Route, Error> {
        let method = head.method();
        let path = head.path();
        if method == Method::Options {
            return Ok(Route::Preflight);
        }
        let route = Route::from_path(path);
        // The page is public; everything else, unknown paths included, is
        // behind the secret, so a stranger learns nothing from 404 vs 405.
        if route != Some(Route::Page) {
            self.check_secret(head)?;
        }
        let route = route.ok_or(Error::NotFound)?;
        let method_ok = if route.is_action() {
            method == Method::Post
        } else {
            matches!(method, Method::Get | Method::Head)
        };
        if !method_ok {
            return Err(Error::MethodNotAllowed(route));
        }
        if route.is_action() {
            self.check_origin(head)?;
        }
        Ok(route)
    }

    /// The answer of an action: the status after it, or why it failed.
    async fn act(&self, route: Route) -> Response {
        let result = match route {
            Route::Start => self.control.start().await,
            Route::Stop => {
                self.control.stop().await;
                Ok(())
            }
            _ => self.control.restart().await,
        };
        match result {
            Ok(()) => success(&status_json(&self.control.status().await)),
            Err(e) => Error::Control(e).response(),
        }
    }
}

/// The management listener's answers: it never streams.
type Response = api::Response<NoStream>;

impl Service for Management {
    type Route = Route;
    type Stream = NoStream;

    fn limits(&self) -> &Limits {
        &self.limits
    }

    fn admit(&self, head: &RequestHead) -> Result<(Route, Option<Tally>), Box<Response>> {
        match self.route(head) {
            Ok(route) => Ok((route, None)),
            Err(e) => Err(Box::new(e.response())),
        }
    }

    async fn serve(
        self: &Arc<Self>,
        route: Route,
        _head: &RequestHead,
        _body: Bytes,
        _tally: Option<Tally>,
    ) -> Response {
        let stats = self.control.stats();
        match route {
            Route::Page => {
                let mut r = answer(200, self.page.clone());
                r.content_type = api::response::HTML;
                r.headers.extend([
                    // The page runs only its own inline code and talks only
                    // to this listener; no other site may frame its buttons.
                    (
                        "Content-Security-Policy",
                        Bytes::from_static(
                            b"default-src 'none'; script-src 'unsafe-inline'; style-src 'unsafe-inline'; connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'",
                        ),
                    ),
                    ("X-Frame-Options", Bytes::from_static(b"DENY")),
                    ("Referrer-Policy", Bytes::from_static(b"no-referrer")),
                ]);
                r
            }
            Route::Status => success(&status_json(&self.control.status().await)),
            Route::Start | Route::Stop | Route::Restart => self.act(route).await,
            Route::Statistics => {
                let s = self.control.status().await;
                let health = self.control.health_json().await;
                success(&stats.stats_json(s.status.as_str(), s.port, health.as_deref()))
            }
            Route::Logs => success(&stats.log_json()),
            Route::Metrics => {
                let s = self.control.status().await;
                let deployments = self.control.deployment_health().await;
                let mut r = answer(200, metrics::render(stats, &s, &deployments));
                r.content_type = api::response::PROMETHEUS;
                r
            }
            Route::Preflight => preflight(),
        }
    }
}

/// A management answer: never cached, never content-sniffed.
fn answer(status: u16, body: impl Into<Bytes>) -> Response {
    let mut r = Response::json(status, body);
    r.headers.extend([
        ("Cache-Control", Bytes::from_static(b"no-store")),
        ("X-Content-Type-Options", Bytes::from_static(b"nosniff")),
    ]);
    r
}

/// `{"success":true,"data":DATA}`, `data` being JSON already.
fn success(data: &str) -> Response {
    answer(200, format!("{{\"success\":true,\"data\":{data}}}\n"))
}

/// The `data` of `/v0/management/proxy/status` (docs/wire.md §5).
fn status_json(s: &StatusView) -> String {
    format!(
        "{{\"isRunning\":{},\"status\":{},\"error\":{},\"host\":{},\"port\":{},\"uptime\":{},\"connections\":{}}}",
        s.is_running(),
        json_str(s.status.as_str()),
        s.error.as_deref().map_or_else(|| "null".to_owned(), json_str),
        json_str(&s.host),
        s.port,
        s.uptime_ms,
        s.connections,
    )
}

/// CORS preflight: a dashboard on another origin may call the API with the
/// secret in `Authorization`.
fn preflight() -> Response {
    Response::preflight(Bytes::from_static(b"Authorization, Content-Type"))
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}
