//! Starting, stopping and restarting the proxy listener (docs/wire.md §1, §5): what
//! signals and the management API's quick actions do.
//!
//! Owns the running proxy listener and its status. A restart re-reads the
//! config and builds its gateway first, so a broken file never takes a
//! working proxy down. The lock here serialises the actions with each other;
//! no proxied request ever takes it.
//!
//! A config port of 0 asks the OS for a free port once; later starts and
//! restarts keep that port, so clients and the status page do not lose the
//! gateway when it is stopped and started again.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Mutex;

use crate::config::Config;
use crate::gateway::Gateway;
use crate::server::Listener;
use crate::stats::DeploymentHealth;
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

/// Why a start or restart did not happen.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ControlError {
    /// The config could not be loaded, or its gateway not built (a CA file
    /// that cannot be read). A restart refused for this changed nothing.
    Config(String),
    /// The listener could not bind. After a start, the proxy is in the
    /// `error` status; a restart onto a new port keeps the old one serving.
    Bind(String),
}

impl ControlError {
    pub fn message(&self) -> &str {
        match self {
            ControlError::Config(m) | ControlError::Bind(m) => m,
        }
    }
}

impl fmt::Display for ControlError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.message())
    }
}

impl std::error::Error for ControlError {}

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

impl StatusView {
    pub fn is_running(&self) -> bool {
        self.status == Status::Running
    }
}

struct State {
    config: Config,
    listener: Option<Listener>,
    /// Generations replaced by a restart or stopped, still draining; the
    /// process waits for them too before it exits.
    retired: Vec<Listener>,
    /// The gateway last started: its routing health is shown, also while
    /// the proxy is stopped.
    gateway: Option<Arc<Gateway>>,
    status: Status,
    error: Option<String>,
    /// The port last bound (differs from the config's when that is 0), and
    /// the one a config port of 0 stands for from then on.
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
                retired: Vec::new(),
                gateway: None,
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
    pub async fn start(&self) -> Result<(), ControlError> {
        let mut state = self.state.lock().await;
        self.start_locked(&mut state).await
    }

    async fn start_locked(&self, state: &mut State) -> Result<(), ControlError> {
        if state.listener.is_some() {
            return Ok(());
        }
        let launched = match self.build_gateway(&state.config) {
            Ok(gateway) => self.bind(&state.config, state.port, gateway).await,
            Err(e) => Err(e),
        };
        match launched {
            Ok((listener, gateway)) => {
                self.install(state, listener, &gateway);
                Ok(())
            }
            Err(e) => {
                state.status = Status::Error;
                state.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    fn build_gateway(&self, config: &Config) -> Result<Arc<Gateway>, ControlError> {
        Gateway::new(config.clone(), self.stats.clone())
            .map(Arc::new)
            .map_err(ControlError::Config)
    }

    /// Bind the listener of `config` (port 0 = `pinned`, when one was bound).
    async fn bind(
        &self,
        config: &Config,
        pinned: u16,
        gateway: Arc<Gateway>,
    ) -> Result<(Listener, Arc<Gateway>), ControlError> {
        let (host, port) = (&config.host, effective_port(config.port, pinned));
        match Listener::start(gateway.clone(), host, port, config.workers).await {
            Ok(listener) => Ok((listener, gateway)),
            Err(e) => Err(ControlError::Bind(format!(
                "cannot listen on {}: {e}",
                authority(host, port)
            ))),
        }
    }

    fn install(&self, state: &mut State, listener: Listener, gateway: &Arc<Gateway>) {
        state.gateway = Some(gateway.clone());
        state.port = listener.local_addr().port();
        gateway.set_bound_port(state.port);
        state.listener = Some(listener);
        state.status = Status::Running;
        state.error = None;
        self.stats.proxy_started();
    }

    /// Stop the running listener's accepting, if any; its connections
    /// finish in the background, up to the drain timeout, and `shutdown`
    /// waits for them.
    async fn close_locked(&self, state: &mut State) {
        state.retired.retain(|l| !l.finished());
        if let Some(mut listener) = state.listener.take() {
            listener.close().await;
            state.retired.push(listener);
        }
        self.stats.proxy_stopped();
    }

    /// Stop accepting and close the port; in-flight requests and streams
    /// finish in the background, up to the drain timeout.
    pub async fn stop(&self) {
        let mut state = self.state.lock().await;
        self.close_locked(&mut state).await;
        state.status = Status::Stopped;
        state.error = None;
    }

    /// Re-read the config, then stop and start with it. A config that fails
    /// to load or to build is refused and the proxy keeps running as it was.
    ///
    /// On the same address the new generation takes over the running one's
    /// sockets ([`Listener::adopt`]): the port never closes and no
    /// connection is refused or lost. On a new port the new listener is
    /// bound before the old one closes, so a port that is taken is refused
    /// too. Only a new host on the same port must close the old listener
    /// first; a failed bind then leaves the `error` status.
    pub async fn restart(&self) -> Result<(), ControlError> {
        let config = (self.load)().map_err(ControlError::Config)?;
        let gateway = self.build_gateway(&config)?;
        let mut state = self.state.lock().await;
        let running_port = state.listener.as_ref().map(|l| l.local_addr().port());
        let new_port = effective_port(config.port, state.port);
        let same_address = running_port == Some(new_port) && config.host == state.config.host;
        if let Some(running) = state.listener.as_ref().filter(|_| same_address) {
            let listener = Listener::adopt(gateway.clone(), running, config.workers)
                .await
                .map_err(|e| {
                    ControlError::Bind(format!(
                        "cannot take over {}: {e}; still serving the old config",
                        authority(&config.host, new_port)
                    ))
                })?;
            self.close_locked(&mut state).await;
            state.config = config;
            self.install(&mut state, listener, &gateway);
            return Ok(());
        }
        if running_port.is_some_and(|p| p != new_port) {
            let (listener, gateway) = self
                .bind(&config, state.port, gateway)
                .await
                .map_err(|e| ControlError::Bind(format!("{e}; still serving the old config")))?;
            self.close_locked(&mut state).await;
            state.config = config;
            self.install(&mut state, listener, &gateway);
            return Ok(());
        }
        self.close_locked(&mut state).await;
        state.config = config;
        match self.bind(&state.config, state.port, gateway).await {
            Ok((listener, gateway)) => {
                self.install(&mut state, listener, &gateway);
                Ok(())
            }
            Err(e) => {
                state.status = Status::Error;
                state.error = Some(e.to_string());
                Err(e)
            }
        }
    }

    /// Stop and wait for the drain of every generation, the running one
    /// and those that restarts and stops left draining (process exit).
    /// Returns the connections that were still open at their deadline.
    pub async fn shutdown(&self) -> usize {
        let waiters: Vec<_> = {
            let mut state = self.state.lock().await;
            self.close_locked(&mut state).await;
            state.status = Status::Stopped;
            state.retired.iter().map(Listener::waiter).collect()
        };
        // Waited for without the lock: status and statistics still answer.
        let mut left = 0;
        for waiter in waiters {
            left += waiter.wait().await;
        }
        left
    }

    pub async fn status(&self) -> StatusView {
        let state = self.state.lock().await;
        StatusView {
            status: state.status,
            error: state.error.clone(),
            host: state.config.host.clone(),
            port: state.port,
            uptime_ms: self.stats.uptime_ms(),
            connections: state
                .listener
                .iter()
                .chain(&state.retired)
                .map(Listener::connections)
                .sum(),
        }
    }

    /// The gateway last started (its routing and health), if any.
    pub async fn gateway(&self) -> Option<Arc<Gateway>> {
        self.state.lock().await.gateway.clone()
    }

    /// The routing health of the gateway last started, as the `/stats`
    /// `health` object; `None` before any start.
    pub async fn health_json(&self) -> Option<String> {
        self.gateway().await.map(|g| g.router().health_json())
    }

    /// Every deployment's health, for `/metrics` (none before any start).
    pub async fn deployment_health(&self) -> Vec<DeploymentHealth> {
        self.gateway()
            .await
            .map(|g| g.deployment_health())
            .unwrap_or_default()
    }

    /// The drain timeout of the running config.
    pub async fn drain_timeout(&self) -> Duration {
        self.state.lock().await.config.limits.drain_timeout
    }
}

/// The port to bind: the config's, or for 0 the one bound before (if any).
fn effective_port(configured: u16, pinned: u16) -> u16 {
    if configured == 0 {
        pinned
    } else {
        configured
    }
}

/// `host:port`, with an IPv6 host in brackets.
pub fn authority(host: &str, port: u16) -> String {
    if host.contains(':') {
        format!("[{host}]:{port}")
    } else {
        format!("{host}:{port}")
    }
}
