//! Starting, stopping and restarting the proxy listener (SPEC §1, §5): what
//! signals and the management API's quick actions do.
//!
//! Owns the running proxy listener and its status. A restart re-reads the
//! config first, so a broken file never takes a working proxy down. The lock
//! here serialises the actions with each other; no request ever takes it.

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::Listener;
use crate::stats::Stats;

/// Re-reads the config (file and command-line overrides) for a restart.
pub type Loader = Box<dyn Fn() -> Result<Config, String> + Send + Sync>;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Status {
    Running,
    Stopped,
    Error,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Running => "running",
            Status::Stopped => "stopped",
            Status::Error => "error",
        }
    }
}

/// A snapshot for `/v0/management/proxy/status`.
#[derive(Clone, Debug)]
pub struct StatusView {
    pub status: Status,
    pub error: Option<String>,
    pub host: String,
    pub port: u16,
    pub uptime_ms: u64,
    pub connections: usize,
}

struct State {
    config: Config,
    listener: Option<Listener>,
    status: Status,
    error: Option<String>,
    /// The port actually bound (differs from the config's when that is 0).
    port: u16,
}

pub struct ProxyControl {
    stats: Arc<Stats>,
    load: Loader,
    state: Mutex<State>,
}

impl ProxyControl {
    pub fn new(config: Config, stats: Arc<Stats>, load: Loader) -> ProxyControl {
        let port = config.port;
        ProxyControl {
            stats,
            load,
            state: Mutex::new(State {
                config,
                listener: None,
                status: Status::Stopped,
                error: None,
                port,
            }),
        }
    }

    pub fn stats(&self) -> &Arc<Stats> {
        &self.stats
    }

    /// Bind and serve with the current config; a no-op when running. A bind
    /// failure leaves the proxy in the `error` status with the reason.
    pub async fn start(&self) -> Result<(), String> {
        let mut state = self.state.lock().await;
        self.start_locked(&mut state).await
    }

    async fn start_locked(&self, state: &mut State) -> Result<(), String> {
        if state.listener.is_some() {
            return Ok(());
        }
        let gateway = Gateway::new(state.config.clone(), self.stats.clone());
        let result = match gateway {
            Ok(gateway) => {
                let gateway = Arc::new(gateway);
                let (host, port) = (state.config.host.clone(), state.config.port);
                Listener::start(gateway.clone(), &host, port)
                    .await
                    .map(|l| (l, gateway))
                    .map_err(|e| format!("cannot listen on {host}:{port}: {e}"))
            }
            Err(e) => Err(e),
        };
        match result {
            Ok((listener, gateway)) => {
                state.port = listener.local_addr().port();
                gateway.set_bound_port(state.port);
                state.listener = Some(listener);
                state.status = Status::Running;
                state.error = None;
                self.stats.proxy_started();
                Ok(())
            }
            Err(e) => {
                state.status = Status::Error;
                state.error = Some(e.clone());
                Err(e)
            }
        }
    }

    /// Stop accepting and close the port; in-flight requests and streams
    /// finish in the background, up to the drain timeout.
    pub async fn stop(&self) {
        let mut state = self.state.lock().await;
        if let Some(mut listener) = state.listener.take() {
            listener.close().await;
            let drain = state.config.limits.drain_timeout;
            tokio::spawn(async move { listener.drain(drain).await });
        }
        state.status = Status::Stopped;
        state.error = None;
        self.stats.proxy_stopped();
    }

    /// Re-read the config, then stop and start with it. A config that fails
    /// to load is refused and the proxy keeps running as it was.
    pub async fn restart(&self) -> Result<(), String> {
        let config = (self.load)()?;
        let mut state = self.state.lock().await;
        if let Some(mut listener) = state.listener.take() {
            listener.close().await;
            let drain = state.config.limits.drain_timeout;
            tokio::spawn(async move { listener.drain(drain).await });
        }
        self.stats.proxy_stopped();
        state.config = config;
        self.start_locked(&mut state).await
    }

    /// Stop and wait for the drain (process exit). Returns the connections
    /// still open at the deadline.
    pub async fn shutdown(&self) -> usize {
        let mut state = self.state.lock().await;
        state.status = Status::Stopped;
        self.stats.proxy_stopped();
        match state.listener.take() {
            Some(listener) => listener.stop(state.config.limits.drain_timeout).await,
            None => 0,
        }
    }

    pub async fn status(&self) -> StatusView {
        let state = self.state.lock().await;
        StatusView {
            status: state.status,
            error: state.error.clone(),
            host: state.config.host.clone(),
            port: state.port,
            uptime_ms: self.stats.uptime_ms(),
            connections: state.listener.as_ref().map_or(0, Listener::connections),
        }
    }

    /// The drain timeout of the running config.
    pub async fn drain_timeout(&self) -> Duration {
        self.state.lock().await.config.limits.drain_timeout
    }
}
